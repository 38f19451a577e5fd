/* cmd_demo.c: `sae demo`: train SAEs of each architecture side by side on synthetic data whose
 * true features are known (sae_synth), then score how well each one recovered them.
 *
 * Every architecture trains on the same batches (drawn once per step) and is scored on the same
 * held-out rows, so the table compares recipes, not data. The recipes are those of
 * docs/training.md, "Recovering ground truth"; tests/test_recovery.c checks them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The setting of docs/training.md: sae_synth defaults (d = 256, G = 512 true features, 5
 * active per row on average, decay 0.99) and as many learned features as true ones. */
enum {
    DEMO_FEATURES = 512,      /* learned features F */
    DEMO_BATCH = 256,         /* rows per training step */
    DEMO_STEPS = 4000,        /* default steps: 1M rows */
    DEMO_QUICK_STEPS = 200,   /* --quick */
    DEMO_EVAL_ROWS = 16384,   /* held-out rows scored after training */
    DEMO_QUICK_EVAL_ROWS = 2048,
    DEMO_REPORTS = 10         /* progress lines per run */
};

static const char usage[] =
    "usage: sae demo [--threads T] [--steps N] [--seed S] [--quick]\n"
    "\n"
    "Train one SAE per architecture (standard ReLU + L1, TopK), side by side, on synthetic\n"
    "activations built from 512 known feature directions in 256 dimensions, then show how\n"
    "well each recovered those directions: MMCS (mean max cosine between the true features and\n"
    "the learned decoder rows, both ways), MCC (mean |cos| of the best one-to-one matching),\n"
    "FVU, L0 and dead features on held-out rows, and training speed. The recipes are those of\n"
    "docs/training.md (\"Recovering ground truth\").\n"
    "\n"
    "options:\n"
    "  --threads T  threads per call (default: every CPU this process may use)\n"
    "  --steps N    training steps of 256 rows (default 4000)\n"
    "  --seed S     seed of the data and of the weights (default 1)\n"
    "  --quick      200 steps and fewer held-out rows: a smoke test, not a recovery\n"
    "  --help       print this help\n";

/* ---- architectures --------------------------------------------------------------------------- */

/* One architecture: its name in the table and its recipe, which sets the trainer options it
 * needs on top of d_in, d_sae, n_threads, seed and total_steps (set before it runs). A new
 * architecture is one more entry of `archs`. */
typedef struct demo_arch {
    const char *name;
    void (*recipe)(sae_trainer_options *o);
} demo_arch;

/* Warm-up steps of the recipes: 50, or a tenth of a shorter run. */
static int64_t warmup_steps(int64_t total_steps)
{
    const int64_t w = total_steps / 10 < 50 ? total_steps / 10 : 50;
    return w > 0 ? w : SAE_TRAIN_OFF;
}

/* ReLU + L1 on the SAELens preset (free decoder, L1 weighted by decoder norms), with a larger
 * learning rate, L1 coefficient and initial decoder norm than SAELens' language-model defaults
 * fit, short warm-ups, and a linear decay to 0 over the second half of the run. */
static void recipe_standard(sae_trainer_options *o)
{
    o->arch = SAE_ARCH_STANDARD;
    o->preset = SAE_PRESET_SAELENS;
    o->lr = 5e-3;
    o->warmup_steps = warmup_steps(o->total_steps);
    o->decay_steps = o->total_steps / 2 > 0 ? o->total_steps / 2 : SAE_TRAIN_OFF;
    o->l1_coefficient = 0.05;
    o->l1_warmup_steps = warmup_steps(o->total_steps);
    o->decoder_init_norm = 1.0;
}

/* TopK with k = 5 (the true mean L0) on the dictionary_learning preset: unit-norm decoder,
 * geometric-median b_dec, AuxK on features silent for 10240 rows (40 steps). */
static void recipe_topk(sae_trainer_options *o)
{
    o->arch = SAE_ARCH_TOPK;
    o->preset = SAE_PRESET_DICTIONARY_LEARNING;
    o->k = 5;
    o->lr = 1e-3;
    o->warmup_steps = warmup_steps(o->total_steps);
    o->dead_window = 40 * DEMO_BATCH;
}

static const demo_arch archs[] = {
    {"standard", recipe_standard},
    {"topk", recipe_topk},
};
#define N_ARCHS (sizeof archs / sizeof archs[0])

/* ---- scoring --------------------------------------------------------------------------------- */

/* What the table shows for one architecture. */
typedef struct demo_score {
    double mmcs_true;    /* mean over true features of the best cosine with a decoder row */
    double mmcs_learned; /* mean over decoder rows of the best cosine with a true feature */
    double mcc;          /* mean |cos| of the best one-to-one matching */
    double fvu;          /* on the held-out rows */
    double l0;           /* mean active features per held-out row */
    int64_t dead;        /* features that never fired on the held-out rows */
    double tokens_per_s; /* rows per second of sae_trainer_step */
} demo_score;

/* FVU = sum ||x - x_hat||^2 / sum_b ||x_b - mean x||^2 over (n, d) rows. */
static double fvu(const float *x, const float *x_hat, int64_t n, int64_t d)
{
    double err = 0, var = 0;
    for (int64_t j = 0; j < d; j++) {
        double mean = 0;
        for (int64_t i = 0; i < n; i++)
            mean += x[i * d + j];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) {
            const double e = (double)x[i * d + j] - x_hat[i * d + j];
            const double c = (double)x[i * d + j] - mean;
            err += e * e, var += c * c;
        }
    }
    return var > 0 ? err / var : 0.0;
}

/* Score a trained SAE on the held-out rows x (n, d) against the true directions (G, d). */
static sae_status score(const sae_trainer *t, const sae_synth *syn, const float *x, int64_t n,
                        float *x_hat, int32_t threads, demo_score *out)
{
    const int64_t d = sae_synth_d(syn), G = sae_synth_n_features(syn);
    sae_dict *dict = NULL;
    sae_encoder *enc = NULL;
    sae_codes *codes = NULL;
    unsigned char *fired = calloc(DEMO_FEATURES, 1);
    sae_status s = fired ? sae_trainer_export(t, &dict) : SAE_ENOMEM;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.n_threads = threads;
    if (s == SAE_OK)
        s = sae_dict_get_weights(dict, &w);
    if (s == SAE_OK)
        s = sae_mmcs(w.W_dec, DEMO_FEATURES, d, sae_synth_directions(syn), G, d, d,
                     &out->mmcs_learned, &out->mmcs_true);
    if (s == SAE_OK)
        s = sae_mcc(w.W_dec, DEMO_FEATURES, d, sae_synth_directions(syn), G, d, d, &out->mcc,
                    NULL);
    if (s == SAE_OK)
        s = sae_encoder_create(&enc, dict, &eo);
    if (s == SAE_OK)
        s = sae_codes_create(&codes, NULL);
    if (s == SAE_OK)
        s = sae_encoder_encode_sparse(enc, n, x, d, codes);
    if (s == SAE_OK) {
        const int64_t nnz = sae_codes_nnz(codes);
        const int32_t *idx = sae_codes_indices(codes);
        for (int64_t i = 0; i < nnz; i++)
            fired[idx[i]] = 1;
        out->dead = 0;
        for (int64_t j = 0; j < DEMO_FEATURES; j++)
            out->dead += !fired[j];
        out->l0 = (double)nnz / (double)n;
        s = sae_encoder_reconstruct(enc, n, x, d, x_hat, d, NULL, 0);
    }
    if (s == SAE_OK)
        out->fvu = fvu(x, x_hat, n, d);
    sae_codes_free(codes);
    sae_encoder_free(enc);
    sae_dict_free(dict);
    free(fired);
    return s;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void print_table(const demo_score *sc)
{
    printf("%-13s %10s %13s %7s %7s %6s %5s %9s\n", "architecture", "MMCS(true)",
           "MMCS(learned)", "MCC", "FVU", "L0", "dead", "tokens/s");
    for (size_t a = 0; a < N_ARCHS; a++)
        printf("%-13s %10.3f %13.3f %7.3f %7.3f %6.2f %5lld %9.0f\n", archs[a].name,
               sc[a].mmcs_true, sc[a].mmcs_learned, sc[a].mcc, sc[a].fvu, sc[a].l0,
               (long long)sc[a].dead, sc[a].tokens_per_s);
}

/* One line saying what the table shows, from its numbers: the architectures from best to worst
 * at finding the true features, whether the best amounts to recovery (MMCS(true) >= 0.95, the
 * bar of docs/training.md), and, for an architecture whose learned features are clean but cover
 * the true ones less well, that several of its features learned the same true feature. */
static void print_summary(const demo_score *sc, int64_t steps, double true_l0)
{
    size_t order[N_ARCHS], dup = N_ARCHS;
    for (size_t a = 0; a < N_ARCHS; a++) {
        size_t i = a;
        for (; i > 0 && sc[order[i - 1]].mmcs_true < sc[a].mmcs_true; i--)
            order[i] = order[i - 1];
        order[i] = a;
        if (sc[a].mmcs_learned >= 0.9 && sc[a].mmcs_learned - sc[a].mmcs_true > 0.03 &&
            (dup == N_ARCHS || sc[a].mmcs_true < sc[dup].mmcs_true))
            dup = a;
    }
    const demo_score *best = &sc[order[0]];
    if (best->mmcs_true >= 0.95)
        printf("%s recovered the true features best (MMCS(true)", archs[order[0]].name);
    else
        printf("No architecture recovered the true features (MMCS(true) >= 0.95) in %lld steps; "
               "more --steps help (MMCS(true)", (long long)steps);
    for (size_t i = 0; i < N_ARCHS; i++)
        printf("%s %s %.3f", i ? "," : ":", archs[order[i]].name, sc[order[i]].mmcs_true);
    printf(", true L0 %.2f)", true_l0);
    if (dup < N_ARCHS)
        printf("; %s's features are clean (MMCS(learned) %.3f) but cover fewer true features: "
               "several of them learned the same one", archs[dup].name, sc[dup].mmcs_learned);
    printf(".\n");
}

/* ---- the command ----------------------------------------------------------------------------- */

int cmd_demo(int argc, char **argv)
{
    int64_t threads = sae_default_threads(), steps = -1, seed = 1;
    bool quick = false;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt)
            return cli_usage_error(usage, "demo: unexpected argument '%s'", arg);
        if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_opt_is(&a, arg, "--quick")) {
            quick = true;
        } else if (cli_opt_is(&a, arg, "--threads")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 4096, &threads))
                return cli_usage_error(usage, "demo: --threads needs an integer in 1..4096");
        } else if (cli_opt_is(&a, arg, "--steps")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_C(1) << 40, &steps))
                return cli_usage_error(usage, "demo: --steps needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--seed")) {
            if (!cli_parse_i64(cli_opt_value(&a), 0, INT64_MAX, &seed))
                return cli_usage_error(usage, "demo: --seed needs a non-negative integer");
        } else {
            return cli_usage_error(usage, "demo: unknown option '%s'", arg);
        }
    }
    if (steps < 0)
        steps = quick ? DEMO_QUICK_STEPS : DEMO_STEPS;
    const int64_t n_eval = quick ? DEMO_QUICK_EVAL_ROWS : DEMO_EVAL_ROWS;

    int rc = CLI_EXIT_FAILURE;
    sae_status s;
    sae_synth *syn = NULL;
    sae_trainer *tr[N_ARCHS] = {0};
    demo_score sc[N_ARCHS];
    double busy[N_ARCHS] = {0};
    sae_train_metrics m[N_ARCHS];
    float *x = NULL, *x_eval = NULL, *x_hat = NULL, *codes = NULL;

    sae_synth_options so = SAE_SYNTH_OPTIONS_INIT;
    so.n_active = 5.0; /* sae_synth's default, spelled out for the header line */
    so.seed = (uint64_t)seed;
    so.n_threads = (int32_t)threads;
    if ((s = sae_synth_create(&syn, &so)) != SAE_OK)
        return cli_fail_status("synthetic data", s);
    const int64_t d = sae_synth_d(syn), G = sae_synth_n_features(syn);
    for (size_t i = 0; i < N_ARCHS; i++) {
        sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
        o.d_in = d;
        o.d_sae = DEMO_FEATURES;
        o.n_threads = (int32_t)threads;
        /* The data uses Philox streams (seed, row); the weights (seed + 1, 0), so that row 0
         * and the initial weights do not share their random numbers. */
        o.seed = (uint64_t)seed + 1;
        o.total_steps = steps;
        archs[i].recipe(&o);
        if ((s = sae_trainer_create(&tr[i], &o)) != SAE_OK) {
            rc = cli_fail_status(archs[i].name, s);
            goto done;
        }
        m[i] = (sae_train_metrics)SAE_TRAIN_METRICS_INIT;
    }
    x = cli_alloc_array(DEMO_BATCH * d, sizeof(float));
    x_eval = cli_alloc_array(n_eval * d, sizeof(float));
    x_hat = cli_alloc_array(n_eval * d, sizeof(float));
    codes = cli_alloc_array(DEMO_BATCH * G, sizeof(float));
    if (!x || !x_eval || !x_hat || !codes) {
        rc = cli_fail(NULL, "out of memory");
        goto done;
    }

    printf("libsae %s: %zu SAEs of %d features trained side by side on synthetic data made of "
           "%lld known\nfeatures in %lld dimensions (%g active per row on average): %lld steps "
           "of %d rows, seed %lld,\n%lld thread%s, BLAS kernels %s\n",
           sae_version_string(), N_ARCHS, DEMO_FEATURES, (long long)G, (long long)d,
           so.n_active, (long long)steps, DEMO_BATCH, (long long)seed, (long long)threads,
           threads == 1 ? "" : "s", sae_blas_kernels());
    fflush(stdout);

    /* Train: one batch per step, every architecture steps on it. Progress on stderr. */
    const double t0 = cli_now_seconds();
    const int64_t every = steps >= DEMO_REPORTS ? steps / DEMO_REPORTS : 1;
    const int width = snprintf(NULL, 0, "%lld", (long long)steps);
    for (int64_t step = 1; step <= steps; step++) {
        if ((s = sae_synth_sample(syn, DEMO_BATCH, x, d, NULL, 0)) != SAE_OK) {
            rc = cli_fail_status("synthetic data", s);
            goto done;
        }
        for (size_t i = 0; i < N_ARCHS; i++) {
            const double t = cli_now_seconds();
            if ((s = sae_trainer_step(tr[i], DEMO_BATCH, x, d, &m[i])) != SAE_OK) {
                rc = cli_fail_status(archs[i].name, s);
                goto done;
            }
            busy[i] += cli_now_seconds() - t;
        }
        if (step % every == 0 || step == steps) {
            fprintf(stderr, "step %*lld/%lld %6.1f s", width, (long long)step, (long long)steps,
                    cli_now_seconds() - t0);
            for (size_t i = 0; i < N_ARCHS; i++)
                fprintf(stderr, " | %s: fvu %.3f l0 %.1f", archs[i].name, m[i].fvu, m[i].l0);
            fputc('\n', stderr);
        }
    }

    /* Held-out rows (the generator's next rows, never trained on) and their true L0. */
    int64_t true_nnz = 0;
    for (int64_t r0 = 0; r0 < n_eval; r0 += DEMO_BATCH) {
        const int64_t nb = n_eval - r0 < DEMO_BATCH ? n_eval - r0 : DEMO_BATCH;
        if ((s = sae_synth_sample(syn, nb, x_eval + r0 * d, d, codes, G)) != SAE_OK) {
            rc = cli_fail_status("synthetic data", s);
            goto done;
        }
        for (int64_t i = 0; i < nb * G; i++)
            true_nnz += codes[i] > 0;
    }
    for (size_t i = 0; i < N_ARCHS; i++) {
        if ((s = score(tr[i], syn, x_eval, n_eval, x_hat, (int32_t)threads, &sc[i])) != SAE_OK) {
            rc = cli_fail_status(archs[i].name, s);
            goto done;
        }
        sc[i].tokens_per_s = busy[i] > 0 ? (double)(steps * DEMO_BATCH) / busy[i] : 0.0;
    }

    printf("\n");
    print_table(sc);
    printf("\nMMCS(true): mean over the %lld true features of the best cosine with a learned "
           "decoder row (1: all found).\nMMCS(learned): the same over the learned features. "
           "MCC: mean |cos| of the best one-to-one matching.\nFVU, L0, dead (never fired): on "
           "%lld held-out rows. tokens/s: rows per second of training steps (%.1f s in all).\n",
           (long long)G, (long long)n_eval, cli_now_seconds() - t0);
    print_summary(sc, steps, (double)true_nnz / (double)n_eval);
    rc = fflush(stdout) == 0 ? 0 : cli_fail(NULL, "cannot write to standard output");

done:
    for (size_t i = 0; i < N_ARCHS; i++)
        sae_trainer_free(tr[i]);
    sae_synth_free(syn);
    free(x);
    free(x_eval);
    free(x_hat);
    free(codes);
    return rc;
}
