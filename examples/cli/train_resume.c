/* train_resume.c: `sae train --resume` (train.h). The library restores the whole training state
 * bit for bit (sae_trainer_load); what it cannot know is where the data stood. The sources of
 * `sae train` are deterministic (files in order or shuffled with --seed, the seeded generator),
 * so the rows a run has consumed are the first steps * batch rows of the same source: reading
 * past them puts the source where the interrupted run left it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

static const char *preset_name(int32_t preset)
{
    switch (preset) {
    case SAE_PRESET_SAELENS: return "saelens";
    case SAE_PRESET_DICTIONARY_LEARNING: return "dictionary_learning";
    case SAE_PRESET_SPARSIFY: return "sparsify";
    case SAE_PRESET_SAE_ICM: return "sae_icm";
    default: return "?";
    }
}

/* A setting of the command (when given) that the checkpoint's resolved value must equal. */
typedef struct int_setting {
    const char *name;
    long long saved, asked;
    bool given;
    const char *zero; /* how a saved 0 reads, or NULL for "0" */
} int_setting;

static int disagree(const char *path, const char *name, const char *saved, const char *asked)
{
    return cli_fail(path, "the checkpoint was made with %s %s, this command has %s %s: resume "
                    "with the same settings, or use another --checkpoint", name, saved, name,
                    asked);
}

/* Explicit zeros are negative in resolved options (SAE_TRAIN_OFF). */
static double plain_f(double v) { return v < 0 ? 0 : v; }
static long long plain_i(int64_t v) { return v < 0 ? 0 : (long long)v; }

static int check_options(const train_args *t, int64_t d_in, const sae_trainer_options *o)
{
    const char *path = t->checkpoint;
    char saved[64], asked[64];
    if (o->arch != t->arch)
        return disagree(path, "--arch", sae_arch_name(o->arch), sae_arch_name(t->arch));
    if (o->preset != t->preset)
        return disagree(path, "--preset", preset_name(o->preset), preset_name(t->preset));
    const int_setting ints[] = {
        {"--d-sae", (long long)o->d_sae, (long long)t->d_sae, true, NULL},
        {"--k", (long long)o->k, (long long)t->opt.k, t->opt.k != 0, NULL},
        {"rows of width", (long long)o->d_in, (long long)d_in, true, NULL},
        {"--seed", (long long)o->seed, (long long)t->opt.seed, true, NULL},
        {"--warmup", plain_i(o->warmup_steps), (long long)t->opt.warmup, t->opt.warmup >= 0, NULL},
        /* negative (every feature) reads as --ortho-subset 0 */
        {"--ortho-subset", plain_i(o->ortho_subset), (long long)t->opt.ortho_subset,
         t->opt.ortho_subset_given, NULL},
        /* The loaded trainer keeps the saved thread count, which fixes the summation order. */
        {"--threads", (long long)o->n_threads, (long long)t->opt.threads, t->opt.threads > 0,
         "(not given)"},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].given && ints[i].saved != ints[i].asked) {
            if (ints[i].saved == 0 && ints[i].zero)
                snprintf(saved, sizeof saved, "%s", ints[i].zero);
            else
                snprintf(saved, sizeof saved, "%lld", ints[i].saved);
            snprintf(asked, sizeof asked, "%lld", ints[i].asked);
            return disagree(path, ints[i].name, saved, asked);
        }
    /* The same text gives the same double, and checkpoints store doubles exactly. */
    const struct { const char *name; double saved, asked; bool given; } reals[] = {
        {"--lr", o->lr, t->opt.lr, t->opt.lr > 0},
        {"--l1", plain_f(o->l1_coefficient), t->l1, t->l1_given},
        {"--ortho", plain_f(o->ortho_lambda), t->opt.ortho, t->opt.ortho_given},
    };
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        if (reals[i].given && reals[i].saved != reals[i].asked) {
            snprintf(saved, sizeof saved, "%.17g", reals[i].saved);
            snprintf(asked, sizeof asked, "%.17g", reals[i].asked);
            return disagree(path, reals[i].name, saved, asked);
        }
    /* A run may be extended or shortened when its learning rate does not depend on its length;
     * the sparsify preset decays it to 0 at --steps (trainer.h), cosine and decay phases too. */
    if (o->total_steps != t->opt.steps &&
        (o->preset == SAE_PRESET_SPARSIFY || o->lr_schedule == SAE_LR_COSINE ||
         o->decay_steps > 0))
        return cli_fail(path, "the checkpoint belongs to a run of %lld steps whose learning "
                        "rate schedule depends on its length: resume it with --steps %lld",
                        (long long)o->total_steps, (long long)o->total_steps);
    return 0;
}

/* Read and drop the first `rows` rows of the source, `batch` at a time as the fit reads them. */
static int skip_rows(const train_args *t, int64_t rows)
{
    sae_source *src = t->data.source;
    const int64_t d = sae_source_d(src);
    float *buf = malloc(sizeof *buf * (size_t)(t->opt.batch * d));
    if (!buf)
        return cli_fail(NULL, "out of memory");
    int rc = 0;
    for (int64_t left = rows; left > 0 && !rc;) {
        const int64_t n = left < t->opt.batch ? left : t->opt.batch;
        int64_t got = 0;
        sae_status s = sae_source_next(src, n, buf, d, &got);
        if (s != SAE_OK) {
            char what[512];
            cli_data_describe(&t->data, what, sizeof what);
            rc = cli_fail_status(what, s);
        } else if (got < n) {
            rc = cli_fail(t->checkpoint, "the data ends after %lld rows, before the %lld rows "
                          "the checkpoint was trained on", (long long)(rows - left + got),
                          (long long)rows);
        }
        left -= n;
    }
    free(buf);
    return rc;
}

int train_resume(const train_args *t, sae_trainer **out)
{
    sae_status s = sae_trainer_load(out, t->checkpoint, NULL);
    if (s != SAE_OK) {
        /* The library's message names the file first: name it once. */
        const char *msg = sae_last_error();
        const size_t n = strlen(t->checkpoint);
        if (strncmp(msg, t->checkpoint, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
            msg += n + 2;
        return cli_fail(t->checkpoint, "cannot resume from this checkpoint: %s",
                        *msg ? msg : sae_status_str(s));
    }
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    s = sae_trainer_get_options(*out, &o);
    int rc = s == SAE_OK ? check_options(t, sae_source_d(t->data.source), &o)
                         : cli_fail_status(t->checkpoint, s);
    const int64_t done = sae_trainer_steps(*out);
    if (!rc && done > INT64_MAX / t->opt.batch)
        rc = cli_fail(t->checkpoint, "%lld steps of %lld rows are too many rows to skip",
                      (long long)done, (long long)t->opt.batch);
    if (!rc && done < t->opt.steps)
        rc = skip_rows(t, done * t->opt.batch);
    if (rc) {
        sae_trainer_free(*out);
        *out = NULL;
    }
    return rc;
}
