/* cmd_finetune.c: `sae finetune PATH --data PATH|synthetic --out DIR [--ortho X] [...]`:
 * fine-tune an existing SAE with sae-icm's recipe (SAE_PRESET_SAE_ICM, trainer.h) and report
 * the coherence of its decoder and its FVU on rows kept aside, before and after.
 *
 * The stages: parse_args, load the SAE and open the data, read the evaluation rows, measure,
 * make the trainer from the dictionary (its TopK conventions kept), fit with a progress line,
 * export, measure again, save, print. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data.h"
#include "progress.h"
#include "train_options.h"

static const char usage[] =
    "usage: sae finetune PATH --data PATH|synthetic --out DIR [--ortho X] [--ortho-subset N]\n"
    "                    [--unit-norm] [--steps N] [--lr X] [--batch B] [--json] [options]\n"
    "\n"
    "Fine-tune the SAE at PATH (any format `sae info` reads) with the recipe of sae-icm\n"
    "(mrtzmllr/sae-icm): loss = mean ||x_hat - x|| / ||x|| + X * sum_{i>j in S} (d_i . d_j)^2,\n"
    "the orthogonality penalty on the decoder rows d_i of a random subset S drawn every step;\n"
    "AdamW (betas 0.9, 0.95, weight decay 0.01 on every parameter), warm-up then cosine decay\n"
    "to 0, gradient clipping at 1, no decoder normalisation (see --unit-norm). Every parameter\n"
    "trains; TopK SAEs keep their conventions (ReLU order, rescaling). Before and after,\n"
    "prints the decoder's coherence over all pairs of features (max and mean |cos|) and the\n"
    "FVU on the first rows of the data, which are kept aside (not trained on unless the files\n"
    "loop back to them).\n"
    "Writes DIR in PATH's format when it is SAELens or sparsify, else as SAELens.\n"
    "\n"
    "fine-tuning:\n"
    "  --ortho X           weight of the penalty (default 1e-4, sae-icm's; 0 for none)\n"
    "  --ortho-subset N    rows in S (default 1024, sae-icm's; 0 for every feature)\n"
    "  --unit-norm         keep the decoder rows at unit norm (project the gradient, renormalise\n"
    "                      after each step), so the penalty can only turn them, not shrink them\n"
    "  --steps N           optimiser steps (default 1000)\n"
    "  --batch B           rows per step (default 4096)\n"
    "  --lr X              peak learning rate (default 5e-5)\n"
    "  --warmup N          warm-up steps (default 200, or a tenth of --steps if less; 0 none)\n"
    "  --seed S            seed of the subsets and of the shuffle (default 0)\n"
    "  --threads T         threads (default: every CPU this process may use)\n"
    "  --k K               k for files that do not store it (sae-icm)\n"
    "evaluation and output:\n"
    "  --eval-rows N       rows kept aside for the FVU (default 8192)\n"
    "  --out DIR           where to save the fine-tuned SAE (required; created if missing)\n"
    "  --format F          saelens or sparsify (default: PATH's if one of them, else saelens)\n"
    "  --json              print one JSON object instead of text\n"
    CLI_DATA_HELP
    "  (raw .f32/.bin files default to rows of the SAE's d_in)\n"
    "  --help              print this help\n";

typedef struct finetune_args {
    cli_data data;
    cli_train_options opt;    /* opt.format 0: PATH's when writable, else SAELens;
                                 opt.warmup -1: the default */
    const char *path;
    int64_t eval_rows;
    bool unit_norm, json;
} finetune_args;

/* Parse argv into *f; 0, or the exit code of a usage error (printed). --help returns -1. */
static int parse_args(int argc, char **argv, finetune_args *f)
{
    memset(f, 0, sizeof *f);
    cli_data_init(&f->data);
    cli_train_options_init(&f->opt);
    f->opt.steps = 1000, f->eval_rows = 8192;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    int rc = 0;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            if (f->path)
                return cli_usage_error(usage, "finetune: unexpected argument '%s'", arg);
            f->path = arg;
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_data_option(&f->data, &a, arg, usage, "finetune", &rc) ||
                   cli_train_option(&f->opt, &a, arg, usage, "finetune", &rc)) {
            if (rc)
                return rc;
        } else if (cli_opt_is(&a, arg, "--unit-norm")) {
            f->unit_norm = true;
        } else if (cli_opt_is(&a, arg, "--eval-rows")) {
            if (!cli_parse_i64(cli_opt_value(&a), 2, INT64_C(1) << 26, &f->eval_rows))
                return cli_usage_error(usage, "finetune: --eval-rows needs an integer >= 2");
        } else if (cli_opt_is(&a, arg, "--json")) {
            f->json = true;
        } else {
            return cli_usage_error(usage, "finetune: unknown option '%s'", arg);
        }
    }
    if (!f->path)
        return cli_usage_error(usage, "finetune: missing PATH (the SAE to fine-tune)");
    if (!f->opt.out)
        return cli_usage_error(usage, "finetune: missing --out");
    return cli_data_check(&f->data, usage, "finetune");
}

/* ---- measurements ------------------------------------------------------------------------- */

/* What is printed before and after. */
typedef struct measure {
    sae_coherence coh;
    sae_eval_result ev;
} measure;

/* Coherence of every pair of decoder rows, and the metrics on the rows kept aside (src, read
 * from its start). */
static int measure_dict(const finetune_args *f, const sae_dict *dict, sae_source *src,
                        measure *m)
{
    m->coh = (sae_coherence)SAE_COHERENCE_INIT;
    m->ev = (sae_eval_result)SAE_EVAL_RESULT_INIT;
    sae_status s = sae_ortho_dict_coherence(&m->coh, NULL, dict, NULL, 0, (int32_t)f->opt.threads);
    if (s != SAE_OK)
        return cli_fail_status(f->path, s);
    sae_eval_options eo = SAE_EVAL_OPTIONS_INIT;
    eo.n_threads = (int32_t)f->opt.threads;
    if ((s = sae_source_reset(src)) != SAE_OK ||
        (s = sae_dict_evaluate(&m->ev, NULL, dict, src, &eo)) != SAE_OK)
        return cli_fail_status(NULL, s);
    return 0;
}

/* The first eval_rows rows of the data, into *rows (malloc'd) and a source over them. */
static int read_eval_rows(const finetune_args *f, int64_t d, float **rows, sae_source **src)
{
    char what[512];
    cli_data_describe(&f->data, what, sizeof what);
    /* files loop: the rows must not repeat within the evaluation */
    const int64_t total = sae_source_rows(f->data.source);
    if (total >= 0 && total < f->eval_rows)
        return cli_fail(what, "holds %lld rows, fewer than --eval-rows %lld", (long long)total,
                        (long long)f->eval_rows);
    *rows = cli_alloc_array(f->eval_rows * d, sizeof(float));
    if (!*rows)
        return cli_fail(NULL, "out of memory for %lld evaluation rows", (long long)f->eval_rows);
    int64_t got = 0;
    sae_status s = sae_source_next(f->data.source, f->eval_rows, *rows, d, &got);
    if (s != SAE_OK)
        return cli_fail_status(what, s);
    s = sae_source_from_memory(src, got, d, *rows, d, NULL);
    return s == SAE_OK ? 0 : cli_fail_status(NULL, s);
}

/* ---- training ----------------------------------------------------------------------------- */

/* The sae-icm trainer for dict, keeping its TopK conventions. */
static int make_trainer(const finetune_args *f, const sae_dict *dict, sae_trainer **out)
{
    sae_dict_config dc = SAE_DICT_CONFIG_INIT;
    sae_dict_get_config(dict, &dc);
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.preset = SAE_PRESET_SAE_ICM, o.total_steps = f->opt.steps;
    cli_train_options_apply(&f->opt, &o);
    if (f->opt.warmup < 0) { /* sae-icm's 200 steps, or a tenth of a shorter run */
        const int64_t warmup = f->opt.steps / 10 < 200 ? f->opt.steps / 10 : 200;
        o.warmup_steps = warmup > 0 ? warmup : SAE_TRAIN_OFF;
    }
    if (f->unit_norm)
        o.decoder_constraint = SAE_DECODER_UNIT_EXACT;
    if (dc.arch == SAE_ARCH_TOPK) {
        o.topk_relu = dc.flags & SAE_DICT_RELU_BEFORE_TOPK ? SAE_TOPK_RELU_FIRST
                                                           : SAE_TOPK_RELU_AFTER;
        o.rescale = dc.flags & SAE_DICT_RESCALE_BY_DECODER_NORM ? SAE_SWITCH_ON
                                                                : SAE_SWITCH_OFF;
    }
    sae_status s = sae_trainer_create_from(out, dict, &o);
    return s == SAE_OK ? 0 : cli_fail_status(f->path, s);
}

typedef struct fit_state {
    cli_progress bar;
    double loss, ortho, fvu; /* sums since the last line */
    int64_t n;
    sae_train_metrics last;
} fit_state;

static int on_step(void *user, const sae_fit_progress *p, const sae_train_metrics *m)
{
    fit_state *st = user;
    st->last = *m;
    st->loss += m->loss, st->ortho += m->ortho, st->fvu += m->fvu, st->n++;
    if (cli_progress_due(&st->bar, p->steps_done, p->elapsed_seconds)) {
        char fields[160];
        const double n = (double)st->n;
        snprintf(fields, sizeof fields, "loss %.4g  ortho %.4g  FVU %.4f", st->loss / n,
                 st->ortho / n, st->fvu / n);
        cli_progress_draw(&st->bar, p->steps_done, p->elapsed_seconds, p->tokens_per_second,
                          fields);
        st->loss = st->ortho = st->fvu = 0, st->n = 0;
    }
    return 0;
}

static int fit(const finetune_args *f, sae_trainer *t, fit_state *st, sae_fit_progress *p)
{
    memset(st, 0, sizeof *st);
    cli_progress_init(&st->bar, stderr, f->opt.steps, "steps");
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.steps = f->opt.steps, fo.batch_size = f->opt.batch;
    sae_status s = sae_trainer_fit(t, f->data.source, &fo, p, on_step, st);
    cli_progress_finish(&st->bar);
    if (s != SAE_OK) {
        char what[512];
        cli_data_describe(&f->data, what, sizeof what);
        return cli_fail_status(what, s);
    }
    return 0;
}

/* ---- output ------------------------------------------------------------------------------- */

static void json_measure(cJSON *parent, const char *name, const measure *m)
{
    cJSON *o = cJSON_AddObjectToObject(parent, name);
    cJSON_AddNumberToObject(o, "max_cos", m->coh.max_cos);
    cJSON_AddNumberToObject(o, "mean_cos", m->coh.mean_cos);
    cJSON_AddNumberToObject(o, "mean_max_cos", m->coh.mean_max_cos);
    cJSON_AddNumberToObject(o, "welch_mean_norm", m->coh.welch_mean_norm);
    cJSON_AddNumberToObject(o, "fvu", m->ev.fvu);
    cJSON_AddNumberToObject(o, "l0", m->ev.l0);
}

static int print_json(const finetune_args *f, const sae_dict *dict, const char *out_format,
                      const sae_fit_progress *p, const fit_state *st, const measure m[2],
                      double lambda, int64_t subset)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return cli_fail(NULL, "out of memory");
    cJSON_AddStringToObject(o, "path", f->path);
    cJSON_AddStringToObject(o, "out", f->opt.out);
    cJSON_AddStringToObject(o, "format", out_format);
    cJSON_AddStringToObject(o, "architecture", sae_arch_name(sae_dict_arch(dict)));
    cJSON_AddNumberToObject(o, "d_in", (double)sae_dict_d_in(dict));
    cJSON_AddNumberToObject(o, "d_sae", (double)sae_dict_d_sae(dict));
    cJSON_AddNumberToObject(o, "steps", (double)p->steps_done);
    cJSON_AddNumberToObject(o, "tokens", (double)p->tokens);
    cJSON_AddNumberToObject(o, "ortho_lambda", lambda);
    cJSON_AddNumberToObject(o, "ortho_subset", (double)subset);
    cJSON_AddBoolToObject(o, "unit_norm", f->unit_norm);
    cJSON_AddNumberToObject(o, "eval_rows", (double)m[0].ev.rows);
    json_measure(o, "before", &m[0]);
    json_measure(o, "after", &m[1]);
    cJSON *last = cJSON_AddObjectToObject(o, "last_step");
    cJSON_AddNumberToObject(last, "loss", st->last.loss);
    cJSON_AddNumberToObject(last, "relative_l2", st->last.mse);
    cJSON_AddNumberToObject(last, "ortho", st->last.ortho);
    cJSON_AddNumberToObject(last, "lr", st->last.lr);
    return cli_print_json(o);
}

static void print_text(const finetune_args *f, const sae_dict *dict, const char *out_format,
                       const sae_fit_progress *p, const fit_state *st, const measure m[2],
                       double lambda, int64_t subset)
{
    char what[512], rate[32];
    cli_data_describe(&f->data, what, sizeof what);
    cli_format_si(rate, sizeof rate, p->tokens_per_second);
    printf("fine-tuned %s (%s, d_in %lld, d_sae %lld", f->path,
           sae_arch_name(sae_dict_arch(dict)), (long long)sae_dict_d_in(dict),
           (long long)sae_dict_d_sae(dict));
    if (sae_dict_k(dict) > 0)
        printf(", k %lld", (long long)sae_dict_k(dict));
    printf(") for %lld steps on %s: %lld tokens in %.2f s (%s tokens/s)\n",
           (long long)p->steps_done, what, (long long)p->tokens, p->elapsed_seconds, rate);
    printf("orthogonality penalty %g over subsets of %lld features%s\n", lambda,
           (long long)subset, f->unit_norm ? ", unit-norm decoder rows" : "");
    printf("                         before        after\n");
    printf("  max |cos|          %12.6f %12.6f\n", m[0].coh.max_cos, m[1].coh.max_cos);
    printf("  mean |cos|         %12.6f %12.6f\n", m[0].coh.mean_cos, m[1].coh.mean_cos);
    printf("  mean max |cos|     %12.6f %12.6f\n", m[0].coh.mean_max_cos, m[1].coh.mean_max_cos);
    printf("  FVU                %12.6f %12.6f   (%lld rows kept aside)\n", m[0].ev.fvu,
           m[1].ev.fvu, (long long)m[0].ev.rows);
    printf("  L0                 %12.3f %12.3f\n", m[0].ev.l0, m[1].ev.l0);
    printf("last step: loss %.6g  relative L2 %.6g  ortho %.6g  lr %.3g\n", st->last.loss,
           st->last.mse, st->last.ortho, st->last.lr);
    printf("wrote %s (%s)\n", f->opt.out, out_format);
}

int cmd_finetune(int argc, char **argv)
{
    finetune_args f;
    int rc = parse_args(argc, argv, &f);
    if (rc) {
        cli_data_free(&f.data);
        return rc < 0 ? 0 : rc;
    }
    sae_dict *dict = NULL, *tuned = NULL;
    sae_trainer *trainer = NULL;
    sae_source *eval_src = NULL;
    float *eval_x = NULL;
    int32_t in_format = SAE_FORMAT_AUTO;
    measure m[2];
    fit_state st;
    sae_fit_progress p = SAE_FIT_PROGRESS_INIT;
    if ((rc = cli_load_dict(f.path, f.opt.k, &dict, &in_format)) ||
        (rc = cli_data_open(&f.data, sae_dict_d_in(dict), true, f.opt.seed, (int32_t)f.opt.threads)))
        goto done;
    const int64_t d = sae_dict_d_in(dict);
    if (sae_source_d(f.data.source) != d) {
        char what[512];
        cli_data_describe(&f.data, what, sizeof what);
        rc = cli_fail(what, "rows have width %lld; the SAE's d_in is %lld",
                      (long long)sae_source_d(f.data.source), (long long)d);
        goto done;
    }
    if ((rc = read_eval_rows(&f, d, &eval_x, &eval_src)) ||
        (rc = measure_dict(&f, dict, eval_src, &m[0])) ||
        (rc = make_trainer(&f, dict, &trainer)) || (rc = fit(&f, trainer, &st, &p)))
        goto done;
    sae_status s = sae_trainer_export(trainer, &tuned);
    if (s != SAE_OK) {
        rc = cli_fail_status(NULL, s);
        goto done;
    }
    if ((rc = measure_dict(&f, tuned, eval_src, &m[1])))
        goto done;
    const int32_t out_format = f.opt.format ? f.opt.format
                               : in_format == SAE_FORMAT_SPARSIFY ? SAE_FORMAT_SPARSIFY
                                                                  : SAE_FORMAT_SAELENS;
    if ((s = sae_dict_save(tuned, f.opt.out, out_format)) != SAE_OK) {
        rc = cli_fail_status(f.opt.out, s);
        goto done;
    }
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    sae_trainer_get_options(trainer, &o);
    const double lambda = o.ortho_lambda > 0 ? o.ortho_lambda : 0;
    const int64_t F = sae_dict_d_sae(tuned);
    const int64_t subset = o.ortho_subset < 0 || o.ortho_subset > F ? F : o.ortho_subset;
    if (f.json)
        rc = print_json(&f, tuned, sae_format_name(out_format), &p, &st, m, lambda, subset);
    else
        print_text(&f, tuned, sae_format_name(out_format), &p, &st, m, lambda, subset);
    if (!rc && fflush(stdout) != 0)
        rc = cli_fail(NULL, "cannot write to standard output");
done:
    sae_trainer_free(trainer);
    sae_source_free(eval_src);
    free(eval_x);
    sae_dict_free(tuned);
    sae_dict_free(dict);
    cli_data_free(&f.data);
    return rc;
}
