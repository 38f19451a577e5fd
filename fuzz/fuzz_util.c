/* fuzz_util.c: scratch files and a dictionary smoke run for the fuzz targets (fuzz_util.h). */
#include "fuzz_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[512];
static char path[1024];

/* The scratch directory holds only the flat files the targets wrote. */
static void remove_dir(void)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(fuzz_path(e->d_name));
    if (d)
        closedir(d);
    rmdir(dir);
}

const char *fuzz_dir(void)
{
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/sae-fuzz-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *fuzz_path(const char *name)
{
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    return path;
}

const char *fuzz_write(const char *name, const uint8_t *data, size_t size)
{
    const char *p = fuzz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: writing the input file");
        abort();
    }
    return p;
}

void fuzz_remove(const char *name) { unlink(fuzz_path(name)); }

void fuzz_split(const uint8_t *data, size_t size, size_t *head_size, const uint8_t **tail,
                size_t *tail_size)
{
    const uint8_t *nul = memchr(data, 0, size);
    *head_size = nul ? (size_t)(nul - data) : size;
    *tail = nul ? nul + 1 : data + size;
    *tail_size = nul ? size - *head_size - 1 : 0;
}

void fuzz_run_dict(const sae_dict *dict)
{
    int64_t d = sae_dict_d_in(dict), F = sae_dict_d_sae(dict);
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.n_threads = 1;
    sae_encoder *enc = NULL;
    float *x = malloc(sizeof(float) * (size_t)d), *xh = malloc(sizeof(float) * (size_t)d);
    float *f = malloc(sizeof(float) * (size_t)F);
    if (!x || !xh || !f)
        abort();
    for (int64_t i = 0; i < d; i++)
        x[i] = 1.0f;
    sae_status s = sae_encoder_create(&enc, dict, &o);
    if (s == SAE_OK)
        s = sae_encoder_encode(enc, 1, x, d, f, F, NULL, 0);
    if (s == SAE_OK)
        s = sae_encoder_reconstruct(enc, 1, x, d, xh, d, NULL, 0);
    if (s != SAE_OK && s != SAE_ENUMERIC) {
        fprintf(stderr, "fuzz: a dictionary that loaded cannot encode: %s: %s\n",
                sae_status_str(s), sae_last_error());
        abort();
    }
    sae_encoder_free(enc);
    free(x);
    free(xh);
    free(f);
}

void fuzz_note(const char *what, sae_status status, const char *message)
{
    if (getenv("SAE_FUZZ_VERBOSE"))
        fprintf(stderr, "%s: %s%s%s\n", what, sae_status_str(status), status ? ": " : "",
                status ? message : "");
}
