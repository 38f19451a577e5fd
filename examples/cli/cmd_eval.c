/* cmd_eval.c: `sae eval PATH --data PATH|synthetic [--rows N] [--json]`: the metrics of
 * sae_dict_evaluate as text (with the density histogram as bars) or as one JSON object. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data.h"

#define SYNTHETIC_ROWS 16384 /* default --rows for data that never ends */

static const char usage[] =
    "usage: sae eval PATH --data PATH|synthetic [--rows N] [--json] [options]\n"
    "\n"
    "Evaluate the SAE at PATH (any format `sae info` reads) on activations: MSE, FVU\n"
    "(sum ||x - x_hat||^2 / sum ||x - mean x||^2) and explained variance, L0, relative\n"
    "reconstruction bias (sum ||x_hat||^2 / sum <x, x_hat>), shrinkage (mean ||x_hat||/||x||),\n"
    "dead features (never fired), dense features, and the histogram of feature densities\n"
    "(log10 of the fraction of rows on which a feature fires, bins of half a decade).\n"
    "\n"
    "options:\n"
    "  --rows N            rows to evaluate (default: every row of the files; 16384 for\n"
    "                      synthetic data)\n"
    "  --json              print one JSON object instead of text\n"
    "  --dense X           density above which a feature is dense, in (0, 1] (default 0.1)\n"
    "  --k K               k for files that do not store it (sae-icm), or to override it\n"
    "  --threads T         threads (default: every CPU this process may use)\n"
    "  --batch B           rows encoded at a time (default 4096); bounds the memory\n"
    CLI_DATA_HELP
    "  (raw .f32/.bin files default to rows of the SAE's d_in)\n"
    "  --help              print this help\n";

typedef struct eval_args {
    cli_data data;
    const char *path;
    int64_t rows, k, threads, batch;
    double dense;
    bool json;
} eval_args;

/* Parse argv into *e; 0, or the exit code of a usage error (printed). --help returns -1. */
static int parse_args(int argc, char **argv, eval_args *e)
{
    memset(e, 0, sizeof *e);
    cli_data_init(&e->data);
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    int rc = 0;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            if (e->path)
                return cli_usage_error(usage, "eval: unexpected argument '%s'", arg);
            e->path = arg;
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_data_option(&e->data, &a, arg, usage, "eval", &rc)) {
            if (rc)
                return rc;
        } else if (cli_opt_is(&a, arg, "--json")) {
            e->json = true;
        } else if (cli_opt_is(&a, arg, "--rows")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &e->rows))
                return cli_usage_error(usage, "eval: --rows needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--dense")) {
            if (!cli_parse_f64(cli_opt_value(&a), &e->dense) || !(e->dense > 0 && e->dense <= 1))
                return cli_usage_error(usage, "eval: --dense needs a number in (0, 1]");
        } else if (cli_opt_is(&a, arg, "--k")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &e->k))
                return cli_usage_error(usage, "eval: --k needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--threads")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 4096, &e->threads))
                return cli_usage_error(usage, "eval: --threads needs an integer in 1..4096");
        } else if (cli_opt_is(&a, arg, "--batch")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_C(1) << 30, &e->batch))
                return cli_usage_error(usage, "eval: --batch needs a positive integer");
        } else {
            return cli_usage_error(usage, "eval: unknown option '%s'", arg);
        }
    }
    if (!e->path)
        return cli_usage_error(usage, "eval: missing PATH (the SAE)");
    return cli_data_check(&e->data, usage, "eval");
}

/* ---- output ----------------------------------------------------------------------------- */

/* A number, or null when it is not finite (FVU of data without variance). */
static void add_number(cJSON *obj, const char *name, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(obj, name, v);
    else
        cJSON_AddNullToObject(obj, name);
}

static int print_json(const eval_args *e, const sae_dict *dict, int32_t format,
                      const sae_eval_result *r)
{
    cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateObject();
    cJSON *counts = cJSON_CreateArray();
    if (!o || !h || !counts) {
        cJSON_Delete(o);
        cJSON_Delete(h);
        cJSON_Delete(counts);
        return cli_fail(NULL, "out of memory");
    }
    char data[512];
    cli_data_describe(&e->data, data, sizeof data);
    cJSON_AddStringToObject(o, "path", e->path);
    cJSON_AddStringToObject(o, "format", sae_format_name(format));
    cJSON_AddStringToObject(o, "architecture", sae_arch_name(sae_dict_arch(dict)));
    cJSON_AddNumberToObject(o, "d_in", (double)sae_dict_d_in(dict));
    cJSON_AddNumberToObject(o, "d_sae", (double)r->d_sae);
    if (sae_dict_k(dict) > 0)
        cJSON_AddNumberToObject(o, "k", (double)sae_dict_k(dict));
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddNumberToObject(o, "rows", (double)r->rows);
    add_number(o, "mse", r->mse);
    add_number(o, "fvu", r->fvu);
    add_number(o, "explained_variance", r->explained_variance);
    add_number(o, "l0", r->l0);
    add_number(o, "relative_reconstruction_bias", r->relative_reconstruction_bias);
    add_number(o, "shrinkage", r->shrinkage);
    cJSON_AddNumberToObject(o, "dead", (double)r->n_dead);
    cJSON_AddNumberToObject(o, "dense", (double)r->n_dense);
    cJSON_AddNumberToObject(o, "dense_threshold", r->dense_threshold);
    cJSON_AddNumberToObject(h, "log10_min", SAE_EVAL_DENSITY_LOG10_MIN);
    cJSON_AddNumberToObject(h, "bin_width", SAE_EVAL_DENSITY_BIN_WIDTH);
    for (int i = 0; i < SAE_EVAL_DENSITY_BINS; i++)
        cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)r->density_histogram[i]));
    cJSON_AddItemToObject(h, "counts", counts);
    cJSON_AddNumberToObject(h, "never_fired", (double)r->n_dead);
    cJSON_AddItemToObject(o, "density_histogram", h);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        return cli_fail(NULL, "out of memory");
    puts(text);
    cJSON_free(text);
    return 0;
}

static void print_text(const eval_args *e, const sae_dict *dict, const sae_eval_result *r)
{
    char data[512];
    cli_data_describe(&e->data, data, sizeof data);
    printf("%s: %s SAE, d_in %lld, d_sae %lld", e->path, sae_arch_name(sae_dict_arch(dict)),
           (long long)sae_dict_d_in(dict), (long long)r->d_sae);
    if (sae_dict_k(dict) > 0)
        printf(", k %lld", (long long)sae_dict_k(dict));
    printf("; %lld rows of %s\n", (long long)r->rows, data);
    printf("  MSE                          %.6g\n", r->mse);
    printf("  FVU                          %.6g  (explained variance %.6g)\n", r->fvu,
           r->explained_variance);
    printf("  L0                           %.3f\n", r->l0);
    printf("  relative reconstruction bias %.6g\n", r->relative_reconstruction_bias);
    printf("  shrinkage ||x_hat||/||x||    %.6g\n", r->shrinkage);
    printf("  dead features                %lld of %lld (never fired)\n", (long long)r->n_dead,
           (long long)r->d_sae);
    printf("  dense features               %lld (fire on more than %g%% of rows)\n",
           (long long)r->n_dense, 100 * r->dense_threshold);

    int first = SAE_EVAL_DENSITY_BINS;
    int64_t max = r->n_dead;
    for (int i = SAE_EVAL_DENSITY_BINS - 1; i >= 0; i--)
        if (r->density_histogram[i] > 0) {
            first = i;
            max = r->density_histogram[i] > max ? r->density_histogram[i] : max;
        }
    printf("feature density (log10 of the fraction of rows on which a feature fires):\n");
    for (int i = first; i < SAE_EVAL_DENSITY_BINS; i++) {
        const double lo = SAE_EVAL_DENSITY_LOG10_MIN + SAE_EVAL_DENSITY_BIN_WIDTH * i;
        char label[32];
        snprintf(label, sizeof label, i + 1 < SAE_EVAL_DENSITY_BINS ? "[%.1f, %.1f)"
                                                                     : "[%.1f, %.1f]",
                 lo, lo + SAE_EVAL_DENSITY_BIN_WIDTH);
        cli_print_bar(label, r->density_histogram[i], max);
    }
    cli_print_bar("never fired", r->n_dead, max);
}

int cmd_eval(int argc, char **argv)
{
    eval_args e;
    int rc = parse_args(argc, argv, &e);
    if (rc) {
        cli_data_free(&e.data);
        return rc < 0 ? 0 : rc;
    }
    sae_dict *dict = NULL;
    int32_t format = SAE_FORMAT_AUTO;
    if ((rc = cli_load_dict(e.path, e.k, &dict, &format)) ||
        (rc = cli_data_open(&e.data, sae_dict_d_in(dict), false, 0, (int32_t)e.threads))) {
        sae_dict_free(dict);
        cli_data_free(&e.data);
        return rc;
    }
    const int64_t d_data = sae_source_d(e.data.source);
    char data[512];
    cli_data_describe(&e.data, data, sizeof data);
    sae_eval_result r = SAE_EVAL_RESULT_INIT;
    if (d_data != sae_dict_d_in(dict)) {
        rc = cli_fail(data, "rows have width %lld; the SAE's d_in is %lld", (long long)d_data,
                      (long long)sae_dict_d_in(dict));
    } else {
        sae_eval_options eo = SAE_EVAL_OPTIONS_INIT;
        eo.n_threads = (int32_t)e.threads;
        eo.max_rows = e.rows ? e.rows : e.data.synthetic ? SYNTHETIC_ROWS : 0;
        eo.block_rows = e.batch;
        eo.dense_threshold = e.dense;
        sae_status s = sae_dict_evaluate(&r, NULL, dict, e.data.source, &eo);
        if (s != SAE_OK)
            rc = cli_fail_status(data, s);
    }
    if (!rc) {
        if (e.json)
            rc = print_json(&e, dict, format, &r);
        else
            print_text(&e, dict, &r);
        if (!rc && fflush(stdout) != 0)
            rc = cli_fail(NULL, "cannot write to standard output");
    }
    sae_dict_free(dict);
    cli_data_free(&e.data);
    return rc;
}
