/* data.c: --data as an sae_source (data.h). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"

void cli_data_init(cli_data *d)
{
    memset(d, 0, sizeof *d);
    const sae_synth_options so = SAE_SYNTH_OPTIONS_INIT;
    d->synth = so;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_raw(const char *path) { return ends_with(path, ".f32") || ends_with(path, ".bin"); }

static bool is_shard(const char *name) { return ends_with(name, ".safetensors") || is_raw(name); }

bool cli_data_option(cli_data *d, cli_args *a, const char *arg, const char *usage,
                     const char *cmd, int *rc)
{
    const char *bad = NULL; /* what a bad value needed */
    double v = 0;
    int64_t n = 0;
    *rc = 0;
    if (cli_opt_is(a, arg, "--data")) {
        const char *p = cli_opt_value(a);
        const char **grown = NULL;
        if (!p || !*p)
            bad = "--data needs a path or 'synthetic'";
        else if (!strcmp(p, "synthetic"))
            d->synthetic = true;
        else if (!(grown = realloc(d->paths, sizeof *grown * (size_t)(d->n_paths + 1))))
            *rc = cli_fail(NULL, "out of memory");
        else
            d->paths = grown, d->paths[d->n_paths++] = p;
    } else if (cli_opt_is(a, arg, "--tensor")) {
        if (!(d->tensor = cli_opt_value(a)))
            bad = "--tensor needs a name";
    } else if (cli_opt_is(a, arg, "--raw-d")) {
        if (!cli_parse_i64(cli_opt_value(a), 1, INT32_MAX, &d->raw_d))
            bad = "--raw-d needs a positive integer";
    } else if (cli_opt_is(a, arg, "--shuffle")) {
        if (!cli_parse_i64(cli_opt_value(a), 0, INT64_C(1) << 40, &d->shuffle_rows))
            bad = "--shuffle needs a number of rows (>= 0)";
    } else if (!strncmp(arg, "--synth-", 8)) {
        d->synth_options = true;
        if (cli_opt_is(a, arg, "--synth-d")) {
            if (!cli_parse_i64(cli_opt_value(a), 1, INT32_MAX, &d->synth.d))
                bad = "--synth-d needs a positive integer";
        } else if (cli_opt_is(a, arg, "--synth-features")) {
            if (!cli_parse_i64(cli_opt_value(a), 1, INT32_MAX, &d->synth.n_features))
                bad = "--synth-features needs a positive integer";
        } else if (cli_opt_is(a, arg, "--synth-active")) {
            if (!cli_parse_f64(cli_opt_value(a), &v) || !(v > 0))
                bad = "--synth-active needs a positive number";
            d->synth.n_active = v;
        } else if (cli_opt_is(a, arg, "--synth-decay")) {
            if (!cli_parse_f64(cli_opt_value(a), &v) || !(v > 0 && v <= 1))
                bad = "--synth-decay needs a number in (0, 1]";
            d->synth.decay = v;
        } else if (cli_opt_is(a, arg, "--synth-noise")) {
            if (!cli_parse_f64(cli_opt_value(a), &v) || !(v >= 0))
                bad = "--synth-noise needs a number >= 0";
            d->synth.noise_std = v;
        } else if (cli_opt_is(a, arg, "--synth-correlated")) {
            d->synth.correlated = 1;
        } else if (cli_opt_is(a, arg, "--synth-seed")) {
            if (!cli_parse_i64(cli_opt_value(a), 0, INT64_MAX, &n))
                bad = "--synth-seed needs an integer >= 0";
            d->synth.seed = (uint64_t)n;
        } else {
            return false;
        }
    } else {
        return false;
    }
    if (bad)
        *rc = cli_usage_error(usage, "%s: %s", cmd, bad);
    return true;
}

int cli_data_check(const cli_data *d, const char *usage, const char *cmd)
{
    if (!d->synthetic && d->n_paths == 0)
        return cli_usage_error(usage, "%s: missing --data (files, a directory or 'synthetic')",
                               cmd);
    if (d->synthetic && d->n_paths > 0)
        return cli_usage_error(usage, "%s: --data synthetic cannot be mixed with files", cmd);
    if (d->synth_options && !d->synthetic)
        return cli_usage_error(usage, "%s: the --synth-* options need --data synthetic", cmd);
    if (d->synthetic && (d->tensor || d->raw_d))
        return cli_usage_error(usage, "%s: --tensor and --raw-d are for files, not synthetic "
                                      "data", cmd);
    return 0;
}

static int add_file(cli_data *d, const char *path)
{
    char **grown = realloc(d->files, sizeof *grown * (size_t)(d->n_files + 1));
    char *copy = grown ? strdup(path) : NULL;
    if (grown)
        d->files = grown;
    if (!copy)
        return cli_fail(NULL, "out of memory");
    d->files[d->n_files++] = copy;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shards of a directory, in name order. */
static int add_directory(cli_data *d, const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return cli_fail(dir, "cannot read the directory");
    const int64_t first = d->n_files;
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(dp));) {
        if (e->d_name[0] == '.' || !is_shard(e->d_name))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rc = add_file(d, path);
    }
    closedir(dp);
    if (rc)
        return rc;
    if (d->n_files == first)
        return cli_fail(dir, "no .safetensors, .f32 or .bin files in the directory");
    qsort(d->files + first, (size_t)(d->n_files - first), sizeof *d->files, compare_names);
    return 0;
}

/* The synthetic source's producer: the generator's next rows, forever. */
static sae_status synth_rows(void *user, int64_t max_rows, float *x, int64_t ldx, int64_t *rows)
{
    sae_status s = sae_synth_sample(user, max_rows, x, ldx, NULL, 0);
    *rows = s == SAE_OK ? max_rows : 0;
    return s;
}

int cli_data_open(cli_data *d, int64_t default_raw_d, bool loop, uint64_t seed,
                  int32_t n_threads)
{
    sae_source_options so = SAE_SOURCE_OPTIONS_INIT;
    so.seed = seed;
    so.shuffle_buffer_rows = d->shuffle_rows;
    sae_status s;
    if (d->synthetic) {
        d->synth.n_threads = n_threads;
        if ((s = sae_synth_create(&d->generator, &d->synth)) != SAE_OK)
            return cli_fail_status("synthetic data", s);
        if ((s = sae_source_from_callback(&d->source, sae_synth_d(d->generator), synth_rows,
                                          d->generator, &so)) != SAE_OK)
            return cli_fail_status(NULL, s);
        return 0;
    }
    for (int64_t i = 0; i < d->n_paths; i++) {
        struct stat st;
        const char *p = d->paths[i];
        if (stat(p, &st) != 0)
            return cli_fail(p, "no such file or directory");
        int rc = S_ISDIR(st.st_mode) ? add_directory(d, p) : add_file(d, p);
        if (rc)
            return rc;
    }
    /* The width of raw files (the source then holds every shard to it). */
    for (int64_t i = 0; i < d->n_files; i++)
        if (is_raw(d->files[i]) && !(so.raw_d = d->raw_d ? d->raw_d : default_raw_d))
            return cli_fail(d->files[i], "a raw float32 file: give its row width with --raw-d N");
    so.tensor_name = d->tensor;
    so.loop = loop;
    s = sae_source_from_files(&d->source, (const char *const *)d->files, d->n_files, &so);
    return s == SAE_OK ? 0 : cli_fail_status(NULL, s);
}

/* The tensor the source reads from r: --tensor, else the only one, else "x" (source.h). */
static const char *tensor_read(const cli_data *d, const sae_st_reader *r)
{
    if (d->tensor)
        return d->tensor;
    return sae_st_count(r) == 1 ? sae_st_tensor_at(r, 0)->name : "x";
}

bool cli_data_hook_name(const cli_data *d, char *buf, size_t size)
{
    bool found = !d->synthetic && d->n_files > 0;
    buf[0] = '\0';
    for (int64_t i = 0; found && i < d->n_files; i++) {
        sae_st_reader *r = NULL;
        found = ends_with(d->files[i], ".safetensors") && sae_st_open(&r, d->files[i]) == SAE_OK;
        if (found) {
            char key[256];
            snprintf(key, sizeof key, "hooks.%s", tensor_read(d, r));
            const char *hook = sae_st_metadata(r, key);
            found = hook && hook[0] && !strchr(hook, ',') && strlen(hook) < size &&
                    (i == 0 || !strcmp(buf, hook));
            if (found)
                snprintf(buf, size, "%s", hook);
        }
        sae_st_close(r);
    }
    if (!found)
        buf[0] = '\0';
    return found;
}

void cli_data_describe(const cli_data *d, char *buf, size_t size)
{
    if (d->synthetic)
        snprintf(buf, size, "synthetic data");
    else if (d->n_files == 1)
        snprintf(buf, size, "%s", d->files[0]);
    else
        snprintf(buf, size, "%lld files", (long long)d->n_files);
}

void cli_data_free(cli_data *d)
{
    sae_source_free(d->source);
    sae_synth_free(d->generator);
    for (int64_t i = 0; i < d->n_files; i++)
        free(d->files[i]);
    free(d->files);
    free(d->paths);
    memset(d, 0, sizeof *d);
}
