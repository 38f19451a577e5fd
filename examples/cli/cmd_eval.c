/* cmd_eval.c: `sae eval PATH (--data PATH|synthetic | --model M ...) [--rows N] [--json]`: the
 * metrics of sae_dict_evaluate, and with a model the loss recovered (sae_dict_loss_recovered),
 * as text (with the density histogram as bars) or as one JSON object. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data.h"
#include "model.h"

#define SYNTHETIC_ROWS 16384 /* default --rows for data that never ends */

static const char usage[] =
    "usage: sae eval PATH --data PATH|synthetic [--rows N] [--json] [options]\n"
    "       sae eval PATH --model M --tokenizer T --text FILE [--hook H] [options]\n"
    "\n"
    "Evaluate the SAE at PATH (any format `sae info` reads) on activations: MSE, FVU\n"
    "(sum ||x - x_hat||^2 / sum ||x - mean x||^2) and explained variance, L0, relative\n"
    "reconstruction bias (sum ||x_hat||^2 / sum <x, x_hat>), shrinkage (mean ||x_hat||/||x||),\n"
    "dead features (never fired), dense features, and the histogram of feature densities\n"
    "(log10 of the fraction of rows on which a feature fires, bins of half a decade).\n"
    "\n"
    "With --model, also the loss recovered at the SAE's hook point: the next-token\n"
    "cross-entropy (CE) of the model clean, with the activations replaced by the SAE's\n"
    "reconstruction (spliced), by zeros, and by their mean over the tokens evaluated; the\n"
    "scores (CE_ablated - CE_spliced) / (CE_ablated - CE_clean), 1 for a perfect SAE; the\n"
    "mean KL(clean || spliced) of the next-token distributions and the KL scores\n"
    "(KL_ablated - KL_spliced) / KL_ablated. Without --data the other metrics are computed on\n"
    "the model's activations at the hook point over the same tokens.\n"
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
    CLI_MODEL_HELP
    "  --hook H            hook point to splice (default: the SAE's hook_name, SAELens names\n"
    "                      such as blocks.2.hook_resid_post mapped to the model's resid_post.2)\n"
    "  --help              print this help\n";

typedef struct eval_args {
    cli_data data;
    cli_model model;
    const char *hook;
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
    cli_model_init(&e->model);
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
        } else if (cli_data_option(&e->data, &a, arg, usage, "eval", &rc) ||
                   cli_model_option(&e->model, &a, arg, usage, "eval", &rc)) {
            if (rc)
                return rc;
        } else if (cli_opt_is(&a, arg, "--hook")) {
            if (!(e->hook = cli_opt_value(&a)))
                return cli_usage_error(usage, "eval: --hook needs a hook point");
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
    if ((rc = cli_model_check(&e->model, usage, "eval", false)))
        return rc;
    if (e->hook && !e->model.model_path)
        return cli_usage_error(usage, "eval: --hook needs --model");
    /* With a model and no --data, the activations come from the model. */
    if (e->model.model_path && !e->data.synthetic && e->data.n_paths == 0 &&
        !e->data.synth_options && !e->data.tensor && !e->data.raw_d)
        return 0;
    return cli_data_check(&e->data, usage, "eval");
}

/* ---- the model ------------------------------------------------------------------------ */

/* The hook point to splice: --hook, else the SAE's hook_name; -1 after printing the error. */
static int32_t pick_hook(const eval_args *e, const sae_dict *dict)
{
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    const char *name = e->hook;
    if (!name && sae_dict_get_config(dict, &cfg) == SAE_OK)
        name = cfg.hook_name;
    char names[256];
    cli_model_hook_names(&e->model, names, sizeof names);
    if (!name) {
        cli_fail(e->path, "the SAE does not say its hook point (no hook_name): give --hook (the "
                 "model has %s)", names);
        return -1;
    }
    const int32_t id = cli_model_find_hook(&e->model, name);
    if (id < 0)
        cli_fail(e->hook ? NULL : e->path, "%s '%s' is not a hook point of %s, which has %s",
                 e->hook ? "--hook" : "the SAE's hook_name", name, e->model.model_path, names);
    return id;
}

/* The rows to evaluate: --data, or the model's activations at the hook point. */
static int open_rows(eval_args *e, const sae_dict *dict, int32_t hook_id, sae_source **out,
                     char *what, size_t size)
{
    if (e->data.synthetic || e->data.n_paths > 0) {
        int rc = cli_data_open(&e->data, sae_dict_d_in(dict), false, 0, (int32_t)e->threads);
        *out = e->data.source;
        cli_data_describe(&e->data, what, size);
        return rc;
    }
    char tokens[512];
    cli_model_describe(&e->model, tokens, sizeof tokens);
    snprintf(what, size, "%s of %s", e->model.host.hook_names[hook_id], tokens);
    sae_status s = sae_source_from_host(out, &e->model.host, hook_id, e->model.tokens,
                                        e->model.n_seq, e->model.len, e->model.batch_seqs,
                                        e->model.skip_bos, NULL);
    return s == SAE_OK ? 0 : cli_fail_status(e->model.model_path, s);
}

static int loss_recovered(const eval_args *e, const sae_dict *dict, int32_t hook_id,
                          sae_loss_recovered *out)
{
    sae_loss_recovered_options o = SAE_LOSS_RECOVERED_OPTIONS_INIT;
    o.n_threads = (int32_t)e->threads;
    o.seqs_per_batch = e->model.batch_seqs;
    o.skip_bos = e->model.skip_bos;
    sae_status s = sae_dict_loss_recovered(out, &e->model.host, hook_id, dict, e->model.tokens,
                                           e->model.n_seq, e->model.len, &o);
    return s == SAE_OK ? 0 : cli_fail_status(e->model.model_path, s);
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

/* What is printed: the metrics, where the rows came from, and the loss recovered (lr NULL
 * without a model). */
typedef struct eval_report {
    char data[1024];              /* the rows evaluated, for people */
    const sae_eval_result *r;
    const sae_loss_recovered *lr;
    const char *hook;             /* the hook point spliced */
} eval_report;

static cJSON *loss_json(const eval_args *e, const eval_report *rep)
{
    const sae_loss_recovered *lr = rep->lr;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char tokens[512];
    cli_model_describe(&e->model, tokens, sizeof tokens);
    cJSON_AddStringToObject(o, "model", e->model.model_path);
    cJSON_AddStringToObject(o, "hook", rep->hook);
    cJSON_AddStringToObject(o, "tokens", tokens);
    cJSON_AddBoolToObject(o, "skip_bos", e->model.skip_bos);
    cJSON_AddNumberToObject(o, "predictions", (double)lr->n_tokens);
    add_number(o, "ce_clean", lr->ce_clean);
    add_number(o, "ce_spliced", lr->ce_spliced);
    add_number(o, "ce_zero_ablated", lr->ce_zero);
    add_number(o, "ce_mean_ablated", lr->ce_mean);
    add_number(o, "ce_score_zero", lr->score_zero);
    add_number(o, "ce_score_mean", lr->score_mean);
    add_number(o, "kl_spliced", lr->kl_spliced);
    add_number(o, "kl_zero_ablated", lr->kl_zero);
    add_number(o, "kl_mean_ablated", lr->kl_mean);
    add_number(o, "kl_score_zero", lr->kl_score_zero);
    add_number(o, "kl_score_mean", lr->kl_score_mean);
    return o;
}

static int print_json(const eval_args *e, const sae_dict *dict, int32_t format,
                      const eval_report *rep)
{
    const sae_eval_result *r = rep->r;
    cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateObject();
    cJSON *counts = cJSON_CreateArray(), *loss = rep->lr ? loss_json(e, rep) : NULL;
    if (!o || !h || !counts || (rep->lr && !loss)) {
        cJSON_Delete(o);
        cJSON_Delete(h);
        cJSON_Delete(counts);
        cJSON_Delete(loss);
        return cli_fail(NULL, "out of memory");
    }
    cJSON_AddStringToObject(o, "path", e->path);
    cJSON_AddStringToObject(o, "format", sae_format_name(format));
    cJSON_AddStringToObject(o, "architecture", sae_arch_name(sae_dict_arch(dict)));
    cJSON_AddNumberToObject(o, "d_in", (double)sae_dict_d_in(dict));
    cJSON_AddNumberToObject(o, "d_sae", (double)r->d_sae);
    if (sae_dict_k(dict) > 0)
        cJSON_AddNumberToObject(o, "k", (double)sae_dict_k(dict));
    cJSON_AddStringToObject(o, "data", rep->data);
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
    if (loss)
        cJSON_AddItemToObject(o, "loss_recovered", loss);
    return cli_print_json(o);
}

static void print_loss(const eval_args *e, const eval_report *rep)
{
    const sae_loss_recovered *lr = rep->lr;
    char tokens[512];
    cli_model_describe(&e->model, tokens, sizeof tokens);
    printf("loss recovered, SAE spliced at %s; %lld next-token predictions of %s%s:\n",
           rep->hook, (long long)lr->n_tokens, tokens,
           e->model.skip_bos ? ", position 0 left clean" : "");
    printf("  CE clean                     %.6g\n", lr->ce_clean);
    printf("  CE spliced                   %.6g\n", lr->ce_spliced);
    printf("  CE zero-ablated              %.6g  (CE score %.4f)\n", lr->ce_zero,
           lr->score_zero);
    printf("  CE mean-ablated              %.6g  (CE score %.4f)\n", lr->ce_mean,
           lr->score_mean);
    printf("  KL(clean || spliced)         %.6g\n", lr->kl_spliced);
    printf("  KL(clean || zero-ablated)    %.6g  (KL score %.4f)\n", lr->kl_zero,
           lr->kl_score_zero);
    printf("  KL(clean || mean-ablated)    %.6g  (KL score %.4f)\n", lr->kl_mean,
           lr->kl_score_mean);
}

static void print_text(const eval_args *e, const sae_dict *dict, const eval_report *rep)
{
    const sae_eval_result *r = rep->r;
    printf("%s: %s SAE, d_in %lld, d_sae %lld", e->path, sae_arch_name(sae_dict_arch(dict)),
           (long long)sae_dict_d_in(dict), (long long)r->d_sae);
    if (sae_dict_k(dict) > 0)
        printf(", k %lld", (long long)sae_dict_k(dict));
    printf("; %lld rows of %s\n", (long long)r->rows, rep->data);
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
    if (rep->lr)
        print_loss(e, rep);
}

/* The metrics over the rows (and the loss recovered with a model) into *r and *lr. */
static int evaluate(eval_args *e, const sae_dict *dict, eval_report *rep, sae_eval_result *r,
                    sae_loss_recovered *lr)
{
    int32_t hook_id = -1;
    int rc = 0;
    if (e->model.model_path) {
        if ((rc = cli_model_open(&e->model)))
            return rc;
        if ((hook_id = pick_hook(e, dict)) < 0)
            return CLI_EXIT_FAILURE;
        rep->hook = e->model.host.hook_names[hook_id];
    }
    const char *data = rep->data;
    sae_source *src = NULL;
    if ((rc = open_rows(e, dict, hook_id, &src, rep->data, sizeof rep->data)))
        return rc;
    const int64_t d_data = sae_source_d(src);
    if (d_data != sae_dict_d_in(dict)) {
        rc = cli_fail(data, "rows have width %lld; the SAE's d_in is %lld", (long long)d_data,
                      (long long)sae_dict_d_in(dict));
    } else {
        sae_eval_options eo = SAE_EVAL_OPTIONS_INIT;
        eo.n_threads = (int32_t)e->threads;
        eo.max_rows = e->rows ? e->rows : e->data.synthetic ? SYNTHETIC_ROWS : 0;
        eo.block_rows = e->batch;
        eo.dense_threshold = e->dense;
        sae_status s = sae_dict_evaluate(r, NULL, dict, src, &eo);
        if (s != SAE_OK)
            rc = cli_fail_status(data, s);
    }
    if (src != e->data.source)
        sae_source_free(src);
    if (!rc && hook_id >= 0 && !(rc = loss_recovered(e, dict, hook_id, lr)))
        rep->lr = lr;
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    eval_args e;
    int rc = parse_args(argc, argv, &e);
    sae_dict *dict = NULL;
    int32_t format = SAE_FORMAT_AUTO;
    sae_eval_result r = SAE_EVAL_RESULT_INIT;
    sae_loss_recovered lr = SAE_LOSS_RECOVERED_INIT;
    eval_report rep = {"", &r, NULL, NULL};
    if (!rc && !(rc = cli_load_dict(e.path, e.k, &dict, &format)) &&
        !(rc = evaluate(&e, dict, &rep, &r, &lr))) {
        if (e.json)
            rc = print_json(&e, dict, format, &rep);
        else
            print_text(&e, dict, &rep);
        if (!rc && fflush(stdout) != 0)
            rc = cli_fail(NULL, "cannot write to standard output");
    }
    sae_dict_free(dict);
    cli_data_free(&e.data);
    cli_model_free(&e.model);
    return rc < 0 ? 0 : rc;
}
