/* cmd_train.c: `sae train --data PATH|synthetic --arch A --d-sae N --steps N --out DIR [...]`:
 * train a standard or TopK SAE with sae_trainer_fit, showing progress, and save it.
 *
 * The stages are separate functions: parse_args, then the data (data.c), open_trainer (a fresh
 * trainer, or with --resume the checkpoint's: train_resume.c), the fit with on_step called
 * after every step (progress, periodic checkpoints, Ctrl-C), and save_result. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "progress.h"
#include "train.h"

static const char usage[] =
    "usage: sae train --data PATH|synthetic --arch A --d-sae N --steps N --out DIR\n"
    "                 [--k K] [--preset P] [--batch B] [--lr X] [--l1 X] [--seed S] [options]\n"
    "\n"
    "Train a sparse autoencoder on activations and save it into directory DIR. Progress goes\n"
    "to stderr: one line redrawn in place on a terminal, plain lines otherwise. Ctrl-C stops\n"
    "after the current step and saves the SAE trained so far.\n"
    "\n"
    "model:\n"
    "  --arch A            standard (ReLU + L1), topk, batchtopk, jumprelu or gated\n"
    "                      (required)\n"
    "  --d-sae N           number of features (required)\n"
    "  --k K               features kept per row (required for topk and batchtopk)\n"
    "  --preset P          saelens (default), dictionary_learning, sparsify (topk only) or\n"
    "                      sae_icm: whose defaults fill every setting not given\n"
    "training:\n"
    "  --steps N           optimiser steps (required)\n"
    "  --batch B           rows per step (default 4096)\n"
    "  --lr X              learning rate (default: the preset's)\n"
    "  --l1 X              sparsity coefficient of standard, jumprelu and gated SAEs\n"
    "                      (default: the preset's)\n"
    "  --warmup N          learning-rate warm-up steps (default: the preset's; 0 for none)\n"
    "  --ortho X           add X * sum_{i>j in S} (d_i . d_j)^2, sae-icm's orthogonality\n"
    "                      penalty on the decoder rows of a random subset S drawn every step\n"
    "                      (default: off, 1e-4 with --preset sae_icm; 0 for none)\n"
    "  --ortho-subset N    rows in S (default 1024; 0 for every feature)\n"
    "  --seed S            seed of the initial weights and of the shuffle (default 0)\n"
    "  --threads T         threads (default: every CPU this process may use)\n"
    "  --no-repeat         stop when the files are used up instead of starting over\n"
    "output:\n"
    "  --out DIR           where to save the SAE (required; created if missing)\n"
    "  --format F          saelens (default) or sparsify (TopK with ReLU before top-k)\n"
    "checkpoints:\n"
    "  --checkpoint PATH   write the whole training state to PATH at the end and on Ctrl-C\n"
    "                      (refused if PATH exists, unless --resume)\n"
    "  --checkpoint-every N  also after every N-th step\n"
    "  --resume            continue from PATH if it exists, up to --steps in all. Give the\n"
    "                      same data and options (--batch, --shuffle, --seed, ...): the\n"
    "                      rows already trained on are skipped, and the result is the same,\n"
    "                      bit for bit, as that of a run never interrupted\n"
    CLI_DATA_HELP
    "  --help              print this help\n";

/* Parse argv into *t; 0, or the exit code of a usage error (printed). --help returns -1. */
static int parse_args(int argc, char **argv, train_args *t)
{
    memset(t, 0, sizeof *t);
    cli_data_init(&t->data);
    cli_train_options_init(&t->opt);
    t->arch = -1, t->opt.format = SAE_FORMAT_SAELENS;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    int rc = 0;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        const char *v = NULL;
        if (!is_opt)
            return cli_usage_error(usage, "train: unexpected argument '%s'", arg);
        if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        }
        if (cli_data_option(&t->data, &a, arg, usage, "train", &rc) ||
            cli_train_option(&t->opt, &a, arg, usage, "train", &rc)) {
            if (rc)
                return rc;
        } else if (cli_opt_is(&a, arg, "--arch")) {
            v = cli_opt_value(&a);
            t->arch = -1;
            for (int32_t id = SAE_ARCH_STANDARD; v && id <= SAE_ARCH_GATED; id++)
                if (!strcmp(v, sae_arch_name(id)))
                    t->arch = id;
            if (t->arch < 0)
                return cli_usage_error(usage, "train: --arch must be standard, topk, batchtopk, "
                                              "jumprelu or gated");
        } else if (cli_opt_is(&a, arg, "--preset")) {
            v = cli_opt_value(&a);
            if (v && !strcmp(v, "saelens"))
                t->preset = SAE_PRESET_SAELENS;
            else if (v && !strcmp(v, "dictionary_learning"))
                t->preset = SAE_PRESET_DICTIONARY_LEARNING;
            else if (v && !strcmp(v, "sparsify"))
                t->preset = SAE_PRESET_SPARSIFY;
            else if (v && !strcmp(v, "sae_icm"))
                t->preset = SAE_PRESET_SAE_ICM;
            else
                return cli_usage_error(usage, "train: --preset must be saelens, "
                                              "dictionary_learning, sparsify or sae_icm");
        } else if (cli_opt_is(&a, arg, "--d-sae")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT32_MAX, &t->d_sae))
                return cli_usage_error(usage, "train: --d-sae needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--l1")) {
            if (!cli_parse_f64(cli_opt_value(&a), &t->l1) || !(t->l1 >= 0))
                return cli_usage_error(usage, "train: --l1 needs a number >= 0");
            t->l1_given = true;
        } else if (cli_opt_is(&a, arg, "--no-repeat")) {
            t->no_repeat = true;
        } else if (cli_opt_is(&a, arg, "--checkpoint")) {
            if (!(t->checkpoint = cli_opt_value(&a)) || !*t->checkpoint)
                return cli_usage_error(usage, "train: --checkpoint needs a path");
        } else if (cli_opt_is(&a, arg, "--checkpoint-every")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &t->checkpoint_every))
                return cli_usage_error(usage, "train: --checkpoint-every needs a positive "
                                              "integer");
        } else if (cli_opt_is(&a, arg, "--resume")) {
            t->resume = true;
        } else {
            return cli_usage_error(usage, "train: unknown option '%s'", arg);
        }
    }
    if ((rc = cli_data_check(&t->data, usage, "train")))
        return rc;
    if (t->arch < 0)
        return cli_usage_error(usage, "train: missing --arch (standard or topk)");
    if (!t->d_sae || !t->opt.steps || !t->opt.out)
        return cli_usage_error(usage, "train: missing %s",
                               !t->d_sae ? "--d-sae" : !t->opt.steps ? "--steps" : "--out");
    if ((t->checkpoint_every || t->resume) && !t->checkpoint)
        return cli_usage_error(usage, "train: %s needs --checkpoint PATH",
                               t->resume ? "--resume" : "--checkpoint-every");
    const bool selects = t->arch == SAE_ARCH_TOPK || t->arch == SAE_ARCH_BATCHTOPK;
    if (selects && !t->opt.k)
        return cli_usage_error(usage, "train: --arch %s needs --k", sae_arch_name(t->arch));
    if (selects && t->opt.k > t->d_sae)
        return cli_usage_error(usage, "train: --k %lld is more than --d-sae %lld",
                               (long long)t->opt.k, (long long)t->d_sae);
    if (!selects && t->opt.k)
        return cli_usage_error(usage, "train: --k is for --arch topk and batchtopk");
    if (selects && t->l1_given)
        return cli_usage_error(usage, "train: --l1 is not for --arch %s (it has no sparsity "
                                      "penalty)", sae_arch_name(t->arch));
    if (t->opt.ortho_subset_given && !t->opt.ortho_given && t->preset != SAE_PRESET_SAE_ICM)
        return cli_usage_error(usage, "train: --ortho-subset needs --ortho X (or --preset "
                                      "sae_icm)");
    if (t->arch != SAE_ARCH_TOPK && t->preset == SAE_PRESET_SPARSIFY)
        return cli_usage_error(usage, "train: the sparsify preset trains TopK SAEs only");
    if (t->opt.format == SAE_FORMAT_SPARSIFY &&
        (t->arch != SAE_ARCH_TOPK || t->preset == SAE_PRESET_SAELENS))
        return cli_usage_error(usage, "train: --format sparsify holds TopK SAEs with ReLU before "
                                      "top-k: use --arch topk with --preset sparsify or "
                                      "dictionary_learning");
    return 0;
}

/* A fresh trainer for rows of width d_in. */
static int make_trainer(const train_args *t, int64_t d_in, sae_trainer **out)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = t->arch, o.d_in = d_in, o.d_sae = t->d_sae, o.k = t->opt.k, o.preset = t->preset;
    o.total_steps = t->opt.steps;
    cli_train_options_apply(&t->opt, &o);
    if (t->l1_given)
        o.l1_coefficient = t->l1 > 0 ? t->l1 : SAE_TRAIN_OFF;
    sae_status s = sae_trainer_create(out, &o);
    return s == SAE_OK ? 0 : cli_fail_status(NULL, s);
}

/* The checkpoint's trainer with --resume when the file exists (*resumed), else a fresh one
 * (refused if a checkpoint would overwrite an existing file). */
static int open_trainer(const train_args *t, int64_t d_in, sae_trainer **out, bool *resumed)
{
    struct stat st;
    const bool exists = t->checkpoint && (stat(t->checkpoint, &st) == 0 || errno != ENOENT);
    *resumed = exists && t->resume;
    if (*resumed)
        return train_resume(t, out);
    if (exists)
        return cli_fail(t->checkpoint, "exists: give --resume to continue from it, or remove "
                        "it to start over");
    if (t->checkpoint) { /* fail now rather than after the training */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", t->checkpoint);
        if (access(dirname(dir), W_OK) != 0)
            return cli_fail(t->checkpoint, "cannot write the checkpoint into %s: %s", dir,
                            strerror(errno));
    }
    return make_trainer(t, d_in, out);
}

/* ---- progress --------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct train_state {
    cli_progress bar;
    double loss, l0, fvu; /* sums since the last line */
    int64_t n;            /* steps in those sums */
    sae_train_metrics last;
    const train_args *args;
    const sae_trainer *trainer;
    int64_t start;        /* steps taken before this run (a resumed checkpoint's) */
    int64_t saved_step;   /* the step of the last checkpoint written, -1 for none */
    sae_status save_error; /* a checkpoint could not be written: the fit stops */
} train_state;

/* Write the checkpoint; false (with st->save_error) when it fails. */
static bool write_checkpoint(train_state *st, int64_t step)
{
    sae_status s = sae_trainer_save(st->trainer, st->args->checkpoint);
    if (s != SAE_OK) {
        st->save_error = s;
        return false;
    }
    st->saved_step = step;
    return true;
}

/* After every step: gather the metrics, draw the progress line when due (with their means
 * since the previous line), write the periodic checkpoint, and stop on Ctrl-C. */
static int on_step(void *user, const sae_fit_progress *p, const sae_train_metrics *m)
{
    train_state *st = user;
    st->last = *m;
    /* Counted from the start of the whole run, so a resumed run writes them where the
     * uninterrupted one would. */
    const int64_t step = st->start + p->steps_done, every = st->args->checkpoint_every;
    if (every && step % every == 0 && !write_checkpoint(st, step))
        return 1;
    if (!m->skipped)
        st->loss += m->loss, st->l0 += m->l0, st->fvu += m->fvu, st->n++;
    if (cli_progress_due(&st->bar, p->steps_done, p->elapsed_seconds) && st->n > 0) {
        char fields[160];
        const double n = (double)st->n;
        snprintf(fields, sizeof fields, "loss %.4g  L0 %.1f  FVU %.4f  dead %lld", st->loss / n,
                 st->l0 / n, st->fvu / n, (long long)m->n_dead);
        cli_progress_draw(&st->bar, p->steps_done, p->elapsed_seconds, p->tokens_per_second,
                          fields);
        st->loss = st->l0 = st->fvu = 0, st->n = 0;
    }
    return interrupted ? 1 : 0;
}

/* ---- output ----------------------------------------------------------------------------- */

/* The exported dictionary, named after the hook point its data came from when the data says
 * (`sae capture` files), so that `sae eval --model` and `sae generate` find it without --hook. */
static int save_result(const train_args *t, const sae_trainer *trainer)
{
    sae_dict *dict = NULL, *named = NULL;
    sae_status s = sae_trainer_export(trainer, &dict);
    char hook[256];
    if (s == SAE_OK && cli_data_hook_name(&t->data, hook, sizeof hook)) {
        sae_dict_config c = SAE_DICT_CONFIG_INIT;
        sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
        if ((s = sae_dict_get_config(dict, &c)) == SAE_OK &&
            (s = sae_dict_get_weights(dict, &w)) == SAE_OK) {
            c.hook_name = hook;
            s = sae_dict_create(&named, &c, &w, NULL);
        }
    }
    if (s == SAE_OK)
        s = sae_dict_save(named ? named : dict, t->opt.out, t->opt.format);
    sae_dict_free(named);
    sae_dict_free(dict);
    return s == SAE_OK ? 0 : cli_fail_status(t->opt.out, s);
}

/* The run's summary on stdout; start: steps taken before this run (a resumed checkpoint's). */
static void print_summary(const train_args *t, int64_t d_in, int64_t start,
                          const sae_fit_progress *p, const sae_train_metrics *m)
{
    if (start > 0)
        printf("resumed from %s at step %lld\n", t->checkpoint, (long long)start);
    if (start >= t->opt.steps) {
        printf("the checkpoint has taken %lld steps already (--steps %lld): nothing to train\n",
               (long long)start, (long long)t->opt.steps);
        printf("wrote %s (%s)\n", t->opt.out, sae_format_name(t->opt.format));
        return;
    }
    char what[512], rate[32];
    cli_data_describe(&t->data, what, sizeof what);
    cli_format_si(rate, sizeof rate, p->tokens_per_second);
    printf("trained a %s SAE (d_in %lld, d_sae %lld", sae_arch_name(t->arch), (long long)d_in,
           (long long)t->d_sae);
    if (t->opt.k)
        printf(", k %lld", (long long)t->opt.k);
    printf(") for %lld steps on %s: %lld tokens in %.2f s (%s tokens/s)\n",
           (long long)p->steps_done, what, (long long)p->tokens, p->elapsed_seconds, rate);
    if (p->source_ended)
        printf("the data ran out after %lld of %lld steps (--no-repeat)\n",
               (long long)(start + p->steps_done), (long long)t->opt.steps);
    printf("last step: loss %.6g  mse %.6g  L0 %.2f  FVU %.4f  dead %lld  lr %.3g", m->loss,
           m->mse, m->l0, m->fvu, (long long)m->n_dead, m->lr);
    if (m->ortho > 0)
        printf("  ortho %.6g", m->ortho);
    printf("\n");
    if (t->checkpoint)
        printf("wrote the checkpoint %s (step %lld)\n", t->checkpoint,
               (long long)(start + p->steps_done));
    printf("wrote %s (%s)\n", t->opt.out, sae_format_name(t->opt.format));
}

/* Train `steps` steps with the progress display, Ctrl-C stopping after the current step. */
static sae_status run_fit(const train_args *t, sae_trainer *trainer, int64_t steps,
                          train_state *state, sae_fit_progress *p)
{
    cli_progress_init(&state->bar, stderr, steps, "steps");
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.steps = steps, fo.batch_size = t->opt.batch;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C ends the process at once */
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_sa);
    sae_status s = sae_trainer_fit(trainer, t->data.source, &fo, p, on_step, state);
    sigaction(SIGINT, &old_sa, NULL);
    cli_progress_finish(&state->bar);
    return s;
}

int cmd_train(int argc, char **argv)
{
    train_args t;
    int rc = parse_args(argc, argv, &t);
    if (rc) {
        cli_data_free(&t.data);
        return rc < 0 ? 0 : rc;
    }
    struct stat st_out;
    if (stat(t.opt.out, &st_out) == 0 && !S_ISDIR(st_out.st_mode)) {
        cli_data_free(&t.data);
        return cli_fail(t.opt.out, "exists and is not a directory");
    }
    sae_trainer *trainer = NULL;
    bool resumed = false;
    rc = cli_data_open(&t.data, 0, !t.no_repeat, t.opt.seed, (int32_t)t.opt.threads);
    const int64_t d_in = rc ? 0 : sae_source_d(t.data.source);
    if (!rc)
        rc = open_trainer(&t, d_in, &trainer, &resumed);
    if (rc) {
        cli_data_free(&t.data);
        return rc;
    }

    train_state state;
    memset(&state, 0, sizeof state);
    state.args = &t, state.trainer = trainer;
    state.start = sae_trainer_steps(trainer);
    state.saved_step = resumed ? state.start : -1; /* the file holds that step */
    sae_fit_progress p = SAE_FIT_PROGRESS_INIT;
    sae_status s = SAE_OK;
    if (t.opt.steps > state.start)
        s = run_fit(&t, trainer, t.opt.steps - state.start, &state, &p);
    const int64_t step = state.start + p.steps_done;
    /* The final checkpoint, also after Ctrl-C; after an error the last periodic one stays. */
    if ((s == SAE_OK || s == SAE_ECANCELED) && t.checkpoint && state.save_error == SAE_OK &&
        state.saved_step != step)
        write_checkpoint(&state, step);

    if (state.save_error != SAE_OK) {
        rc = cli_fail_status(t.checkpoint, state.save_error);
    } else if (s != SAE_OK && s != SAE_ECANCELED) {
        char what[512];
        cli_data_describe(&t.data, what, sizeof what);
        rc = cli_fail_status(what, s);
    } else if (step == 0) {
        rc = cli_fail(NULL, "the data holds fewer rows than one batch of %lld: nothing trained",
                      (long long)t.opt.batch);
    } else if (!(rc = save_result(&t, trainer))) {
        print_summary(&t, d_in, state.start, &p, &state.last);
        if (s == SAE_ECANCELED)
            rc = cli_fail(NULL, "interrupted after %lld of %lld steps; saved the SAE so far%s",
                          (long long)step, (long long)t.opt.steps,
                          t.checkpoint ? " and the checkpoint (continue with --resume)" : "");
        else if (fflush(stdout) != 0)
            rc = cli_fail(NULL, "cannot write to standard output");
    }
    sae_trainer_free(trainer);
    cli_data_free(&t.data);
    return rc;
}
