/* cmd_coherence.c: `sae coherence PATH [--subset N] [--seed S] [--json]`: how far from
 * orthogonal the decoder directions of an SAE are (sae_ortho_coherence, sae_ortho_spectrum). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

static const char usage[] =
    "usage: sae coherence PATH [--subset N] [--seed S] [--json] [options]\n"
    "\n"
    "Coherence of the decoder directions d_j of the SAE at PATH (any format `sae info` reads),\n"
    "over all features or a seeded random subset: max and mean |cos| over the C(n, 2) pairs,\n"
    "the mean over features of their max |cos|, the frame potential sum_{i != j} cos^2 with\n"
    "its lower bound max(0, n^2/d - n), Welch's mean_norm sum_{i,j} cos^2 / n^2 with its\n"
    "bound 1/d (sae-icm), the histogram of per-feature max |cos|, and the singular values and\n"
    "effective ranks (entropy exp(H(sigma / sum sigma)), participation ratio\n"
    "(sum sigma^2)^2 / sum sigma^4) of the same rows. All pairs of F = 65536 features of\n"
    "d = 2304 cost 1e13 flops: minutes on a few cores, in memory of a few Gram tiles.\n"
    "\n"
    "options:\n"
    "  --subset N    measure a random subset of N features (default: all)\n"
    "  --seed S      seed of the subset (default 0)\n"
    "  --json        print one JSON object instead of text\n"
    "  --k K         k for files that do not store it (sae-icm), or to override it\n"
    "  --threads T   threads (default: every CPU this process may use)\n"
    "  --help        print this help\n";

typedef struct coherence_args {
    const char *path;
    int64_t subset, seed, k, threads;
    bool json;
} coherence_args;

/* Parse argv into *c; 0, or the exit code of a usage error (printed). --help returns -1. */
static int parse_args(int argc, char **argv, coherence_args *c)
{
    memset(c, 0, sizeof *c);
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            if (c->path)
                return cli_usage_error(usage, "coherence: unexpected argument '%s'", arg);
            c->path = arg;
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_opt_is(&a, arg, "--json")) {
            c->json = true;
        } else if (cli_opt_is(&a, arg, "--subset")) {
            if (!cli_parse_i64(cli_opt_value(&a), 2, INT32_MAX, &c->subset))
                return cli_usage_error(usage, "coherence: --subset needs an integer >= 2");
        } else if (cli_opt_is(&a, arg, "--seed")) {
            if (!cli_parse_i64(cli_opt_value(&a), 0, INT64_MAX, &c->seed))
                return cli_usage_error(usage, "coherence: --seed needs a non-negative integer");
        } else if (cli_opt_is(&a, arg, "--k")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &c->k))
                return cli_usage_error(usage, "coherence: --k needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--threads")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 4096, &c->threads))
                return cli_usage_error(usage, "coherence: --threads needs an integer in "
                                       "1..4096");
        } else {
            return cli_usage_error(usage, "coherence: unknown option '%s'", arg);
        }
    }
    if (!c->path)
        return cli_usage_error(usage, "coherence: missing PATH (the SAE)");
    return 0;
}

/* What the command measured. */
typedef struct report {
    sae_coherence c;
    int64_t F, n, m;   /* features, rows measured, min(n, d) singular values */
    float *sigma;      /* (m) descending */
    double erank, pr;  /* entropy effective rank, participation ratio */
} report;

static int print_json(const coherence_args *a, const report *r)
{
    cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateObject(), *counts = cJSON_CreateArray();
    cJSON *sp = cJSON_CreateObject();
    if (!o || !h || !counts || !sp) {
        cJSON_Delete(o), cJSON_Delete(h), cJSON_Delete(counts), cJSON_Delete(sp);
        return cli_fail(NULL, "out of memory");
    }
    const sae_coherence *c = &r->c;
    cJSON_AddStringToObject(o, "path", a->path);
    cJSON_AddNumberToObject(o, "d_in", (double)c->d);
    cJSON_AddNumberToObject(o, "d_sae", (double)r->F);
    cJSON_AddNumberToObject(o, "n", (double)c->n);
    if (c->n < r->F)
        cJSON_AddNumberToObject(o, "seed", (double)a->seed);
    cJSON_AddNumberToObject(o, "zero_rows", (double)c->n_zero);
    cJSON_AddNumberToObject(o, "max_cos", c->max_cos);
    cJSON_AddNumberToObject(o, "max_pair_i", (double)c->max_i);
    cJSON_AddNumberToObject(o, "max_pair_j", (double)c->max_j);
    cJSON_AddNumberToObject(o, "mean_cos", c->mean_cos);
    cJSON_AddNumberToObject(o, "sum_cos", c->sum_cos);
    cJSON_AddNumberToObject(o, "mean_max_cos", c->mean_max_cos);
    cJSON_AddNumberToObject(o, "frame_potential", c->frame_potential);
    cJSON_AddNumberToObject(o, "frame_potential_bound", c->frame_potential_bound);
    cJSON_AddNumberToObject(o, "welch_mean_norm", c->welch_mean_norm);
    cJSON_AddNumberToObject(o, "welch_bound", c->welch_bound);
    cJSON_AddNumberToObject(o, "welch_mean_raw", c->welch_mean_raw);
    cJSON_AddNumberToObject(h, "bin_width", 1.0 / SAE_COHERENCE_BINS);
    for (int b = 0; b < SAE_COHERENCE_BINS; b++)
        cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)c->max_cos_hist[b]));
    cJSON_AddItemToObject(h, "counts", counts);
    cJSON_AddItemToObject(o, "max_cos_histogram", h);
    cJSON_AddNumberToObject(sp, "effective_rank", r->erank);
    cJSON_AddNumberToObject(sp, "participation_ratio", r->pr);
    cJSON_AddNumberToObject(sp, "sigma_max", r->sigma[0]);
    cJSON_AddNumberToObject(sp, "sigma_min", r->sigma[r->m - 1]);
    cJSON_AddItemToObject(sp, "singular_values",
                          cJSON_CreateFloatArray(r->sigma, (int)r->m));
    cJSON_AddItemToObject(o, "spectrum", sp);
    return cli_print_json(o);
}

static void print_text(const coherence_args *a, const report *r)
{
    const sae_coherence *c = &r->c;
    printf("%s: %lld decoder directions of length %lld", a->path, (long long)c->n,
           (long long)c->d);
    if (c->n < r->F)
        printf(" (a random subset of the %lld features, seed %lld)", (long long)r->F,
               (long long)a->seed);
    printf("\n");
    if (c->n_zero)
        printf("  zero rows                    %lld (cosine 0 with every row)\n",
               (long long)c->n_zero);
    printf("  max |cos|                    %.6f  (features %lld and %lld)\n", c->max_cos,
           (long long)c->max_i, (long long)c->max_j);
    printf("  mean |cos|                   %.6f  (over %lld pairs)\n", c->mean_cos,
           (long long)(c->n * (c->n - 1) / 2));
    printf("  mean max |cos| per feature   %.6f\n", c->mean_max_cos);
    printf("  frame potential              %.6g  (lower bound %.6g)\n", c->frame_potential,
           c->frame_potential_bound);
    printf("  Welch mean_norm              %.6g  (bound 1/d = %.6g)\n", c->welch_mean_norm,
           c->welch_bound);
    printf("  singular values              max %.6g  min %.6g  (%lld of them)\n",
           (double)r->sigma[0], (double)r->sigma[r->m - 1], (long long)r->m);
    printf("  effective rank               %.2f entropy, %.2f participation ratio\n", r->erank,
           r->pr);
    int64_t max = 0;
    for (int b = 0; b < SAE_COHERENCE_BINS; b++)
        max = c->max_cos_hist[b] > max ? c->max_cos_hist[b] : max;
    printf("max |cos| of each feature to the others:\n");
    for (int b = 0; b < SAE_COHERENCE_BINS; b++) {
        char label[32];
        snprintf(label, sizeof label, b + 1 < SAE_COHERENCE_BINS ? "[%.2f, %.2f)" : "[%.2f, %.2f]",
                 (double)b / SAE_COHERENCE_BINS, (double)(b + 1) / SAE_COHERENCE_BINS);
        cli_print_bar(label, c->max_cos_hist[b], max);
    }
}

int cmd_coherence(int argc, char **argv)
{
    coherence_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    sae_dict *dict = NULL;
    if ((rc = cli_load_dict(a.path, a.k, &dict, NULL)))
        return rc;
    report r = {.c = SAE_COHERENCE_INIT, .F = sae_dict_d_sae(dict)};
    const int64_t d = sae_dict_d_in(dict);
    int32_t *subset = NULL;
    sae_status s = SAE_OK;
    r.n = a.subset && a.subset < r.F ? a.subset : r.F;
    r.m = r.n < d ? r.n : d;
    r.sigma = cli_alloc_array(r.m, sizeof(float));
    if (r.n < 2) {
        rc = cli_fail(a.path, "the SAE has %lld feature; coherence needs two", (long long)r.F);
    } else if (!r.sigma ||
               (r.n < r.F && !(subset = cli_alloc_array(r.n, sizeof(int32_t))))) {
        rc = cli_fail(NULL, "out of memory");
    } else if ((subset && (s = sae_ortho_subset(subset, NULL, r.n, r.F, (uint64_t)a.seed, 0))) ||
               (s = sae_ortho_dict_coherence(&r.c, NULL, dict, subset, subset ? r.n : 0,
                                             (int32_t)a.threads)) ||
               (s = sae_ortho_dict_spectrum(r.sigma, &r.erank, &r.pr, dict, subset,
                                            subset ? r.n : 0, (int32_t)a.threads))) {
        rc = cli_fail_status(a.path, s);
    }
    if (!rc) {
        if (a.json)
            rc = print_json(&a, &r);
        else
            print_text(&a, &r);
        if (!rc && fflush(stdout) != 0)
            rc = cli_fail(NULL, "cannot write to standard output");
    }
    free(subset);
    free(r.sigma);
    sae_dict_free(dict);
    return rc;
}
