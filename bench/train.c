/* train.c: `bench_train`, training-step throughput of libsae, as one JSON object.
 *
 * The workload of ../shared/peers/torch_sae_train.py (d_in 768, d_sae 16384, batch 4096 rows of
 * N(0, 1), the same batch every step):
 *   init:   decoder rows N(0, 1) scaled to unit norm, W_enc = W_dec^T, zero biases
 *   Adam:   lr 1e-4, betas (0.9, 0.999), eps 1e-8, no clipping, no warm-up
 *   decoder: gradient component along each row removed, rows renormalised (ConstrainedAdam)
 *   standard: MSE (sum over d_in, mean over rows) + 5 * mean_b sum_j f_bj ||d_j||
 *   topk:   k = 32, ReLU then top-k; with --auxk-dead P, a fraction P of the features is dead
 *           (drawn once, as in the peer) and AuxK keeps k_aux = d_in/2 of them per row,
 *           ReLU'd candidates decoded without b_dec, coefficient 1/32.
 * The dead mask is held fixed (as the peer's is) by setting the dead counters before every
 * step (sae_trainer_set_since_fired, counted in the step time). Warm-up steps, then the median
 * of the timed steps.
 *
 * One configuration per process: the step times (wall and CPU), the peak RSS of the training
 * (getrusage, taken before anything else is allocated), then, with the trainer freed, the
 * plain BLAS products the step cannot avoid, each at its own shape, as the roofline: one
 * multi-threaded BLAS call (libsae's internal wrapper sae__sgemm) and the tiled product the
 * trainer runs (sae__sgemm_tiles), alternately (this program links the static library):
 *   enc:  pre (B, F) = x' (B, d) W_enc (d, F)        TopK and standard
 *   dec:  x_hat (B, d) = f (B, F) W_dec (F, d)       standard (dense codes)
 *   gpre: G W_dec^T (B, F)                           standard
 *   gdec: dW_dec = f^T G (F, d)                      standard
 *   genc: dW_encT = dpre^T x' (F, d)                 standard
 * Timing them right after the steps, in the same process, lets both see the same machine
 * load; their buffers are smaller than the trainer's, so they do not raise the peak RSS.
 * bench/train.py runs one process per configuration beside PyTorch and compares.
 *
 * usage: bench_train --arch standard|topk [--d-in D] [--d-sae F] [--batch B] [--k K]
 *                    [--threads T] [--steps S] [--warmup W] [--auxk-dead P] [--seed N]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "internal.h"        /* sae__sgemm */
#include "kernels/kernels.h" /* sae__sgemm_tiles */

#define MAX_STEPS 1000

typedef struct bench_cfg {
    int64_t d_in, d_sae, batch, k;
    int threads, steps, warmup;
    double auxk_dead;
    uint64_t seed;
} bench_cfg;

/* The options that reproduce the peer's step (see the top of the file). */
static sae_trainer_options peer_options(const bench_cfg *b, bool topk)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = topk ? SAE_ARCH_TOPK : SAE_ARCH_STANDARD;
    o.preset = SAE_PRESET_DICTIONARY_LEARNING;
    o.d_in = b->d_in, o.d_sae = b->d_sae, o.k = topk ? b->k : 0;
    o.n_threads = b->threads, o.seed = b->seed;
    o.init = SAE_INIT_NORMAL_TIED, o.decoder_init_norm = 1.0;
    o.b_dec_init = SAE_BDEC_ZERO;
    o.lr = 1e-4, o.lr_schedule = SAE_LR_CONSTANT;
    o.warmup_steps = SAE_TRAIN_OFF, o.decay_steps = SAE_TRAIN_OFF;
    o.clip_norm = SAE_TRAIN_OFF;
    o.mse = SAE_MSE_SUM;
    o.decoder_constraint = SAE_DECODER_UNIT_EXACT;
    if (topk) {
        o.topk_relu = SAE_TOPK_RELU_FIRST, o.rescale = SAE_SWITCH_OFF;
        o.auxk = SAE_AUXK_DICTIONARY_LEARNING;
        o.auxk_coefficient = b->auxk_dead > 0 ? 1.0 / 32.0 : SAE_TRAIN_OFF;
        o.k_aux = b->d_in / 2;
        /* dead = counted before the batch, so the mask set below holds for the whole step */
        o.dead_rule = SAE_DEAD_STEPS, o.dead_window = 1000;
    } else {
        o.l1 = SAE_L1_DECODER_NORM, o.l1_coefficient = 5.0;
        o.l1_warmup_steps = SAE_TRAIN_OFF;
    }
    return o;
}

/* One product of the step: C = op(A) op(B), C (m, n), reduction k; operands named by shape:
 * 's' (B, d) rows (x', G), 'w' (F, d) weights, 'f' (B, F) codes or dL/dpre. */
typedef struct product {
    const char *name;
    char a, b;
    bool ta, tb;
} product;

static const product products[] = {
    {"enc", 's', 'w', false, true},  /* pre (B, F) = x' W_encT^T */
    {"dec", 'f', 'w', false, false}, /* x_hat (B, d) = f W_dec */
    {"gpre", 's', 'w', false, true}, /* (B, F) = G W_dec^T */
    {"gdec", 'f', 's', true, false}, /* dW_dec (F, d) = f^T G */
    {"genc", 'f', 's', true, false}, /* dW_encT (F, d) = dpre^T x' */
};

/* One product, once: a single BLAS call on all threads (tiles false) or the tiled product the
 * trainer uses (sae__sgemm_tiles: column tiles of 1024, or row tiles of 512 when C has more
 * rows than columns, each a single-threaded call). */
static void product_once(const bench_cfg *b, const product *q, bool tiles, int64_t m, int64_t n,
                         int64_t k, const float *A, int64_t lda, const float *Bm, int64_t ldb,
                         float *out)
{
    sae_status s = tiles ? sae__sgemm_tiles(q->ta, q->tb, m, n, k, 1.0f, A, lda, Bm, ldb, 0.0f,
                                            out, n, m > n ? 512 : 0, m > n ? 0 : 1024,
                                            b->threads, NULL, NULL)
                         : sae__sgemm(q->ta, q->tb, m, n, k, 1.0f, A, lda, Bm, ldb, 0.0f, out, n,
                                      b->threads);
    if (s != SAE_OK)
        bench_die("sgemm", s);
}

/* Print "sgemm": {...}: per product, the median wall and CPU time of one BLAS call and of the
 * tiled product, the two run alternately (one untimed round first) so that both see the same
 * machine load; "best_s" is the faster median, the roofline. */
static void time_products(const bench_cfg *b, size_t n_products)
{
    const int64_t B = b->batch, d = b->d_in, F = b->d_sae;
    sae_rng rng;
    sae_rng_init(&rng, b->seed, 2);
    const bool wide = n_products > 1; /* only the standard step's products read (B, F) inputs */
    float *s_rows = bench_xmalloc(sizeof(float) * (size_t)(B * d));
    float *w_rows = bench_xmalloc(sizeof(float) * (size_t)(F * d));
    float *f_rows = wide ? bench_xmalloc(sizeof(float) * (size_t)(B * F)) : NULL;
    float *out = bench_xmalloc(sizeof(float) * (size_t)(B * F)); /* (B, F) or smaller */
    bench_fill_normal(s_rows, B * d, 1.0f, &rng);
    bench_fill_normal(w_rows, F * d, 1.0f, &rng);
    if (f_rows)
        bench_fill_normal(f_rows, B * F, 1.0f, &rng);
    printf("\"sgemm\": {");
    for (size_t p = 0; p < n_products; p++) {
        const product *q = &products[p];
        const float *A = q->a == 's' ? s_rows : f_rows, *Bm = q->b == 's' ? s_rows : w_rows;
        const int64_t lda = q->a == 's' ? d : F, ldb = d; /* both B operands have d columns */
        /* op(A) (m, k), op(B) (k, n) */
        const int64_t m = q->ta ? lda : B, k = q->ta ? B : lda, n = q->tb ? F : d;
        double t[2][MAX_STEPS], c[2][MAX_STEPS];
        for (int i = 0; i < 1 + b->steps; i++)
            for (int tiles = 0; tiles < 2; tiles++) {
                const double t0 = bench_now(), c0 = bench_cpu_seconds();
                product_once(b, q, tiles, m, n, k, A, lda, Bm, ldb, out);
                if (i > 0)
                    t[tiles][i - 1] = bench_now() - t0, c[tiles][i - 1] = bench_cpu_seconds() - c0;
            }
        const double one = bench_median(t[0], b->steps), tiled = bench_median(t[1], b->steps);
        const double best = one < tiled ? one : tiled;
        printf("%s\"%s\": {\"blas_s\": %.6f, \"blas_cpu_s\": %.6f, \"tiles_s\": %.6f, "
               "\"tiles_cpu_s\": %.6f, \"best_s\": %.6f, \"best_gflop_s\": %.2f}",
               p ? ", " : "", q->name, one, bench_median(c[0], b->steps), tiled,
               bench_median(c[1], b->steps), best, 2.0 * (double)m * (double)n * (double)k / best * 1e-9);
    }
    printf("}");
    free(s_rows), free(w_rows), free(f_rows), free(out);
}

static void run(const bench_cfg *b, bool topk)
{
    sae_trainer_options o = peer_options(b, topk);
    sae_trainer *t = NULL;
    sae_status s = sae_trainer_create(&t, &o);
    if (s != SAE_OK)
        bench_die("sae_trainer_create", s);

    sae_rng rng;
    sae_rng_init(&rng, b->seed, 1);
    float *x = bench_xmalloc(sizeof(float) * (size_t)(b->batch * b->d_in));
    bench_fill_normal(x, b->batch * b->d_in, 1.0f, &rng);
    int64_t *since = bench_xmalloc(sizeof(int64_t) * (size_t)b->d_sae);
    int64_t n_dead_set = 0;
    for (int64_t j = 0; j < b->d_sae; j++) {
        const bool dead = topk && b->auxk_dead > 0 && sae_rng_uniform(&rng) < b->auxk_dead;
        since[j] = dead ? o.dead_window + 1 : 0;
        n_dead_set += dead;
    }

    double t_steps[MAX_STEPS], cpu_steps[MAX_STEPS];
    sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
    for (int i = 0; i < b->warmup + b->steps; i++) {
        const double t0 = bench_now(), c0 = bench_cpu_seconds();
        if ((s = sae_trainer_set_since_fired(t, since)) != SAE_OK ||
            (s = sae_trainer_step(t, b->batch, x, b->d_in, &m)) != SAE_OK)
            bench_die("sae_trainer_step", s);
        const double dt = bench_now() - t0, dc = bench_cpu_seconds() - c0;
        if (i >= b->warmup)
            t_steps[i - b->warmup] = dt, cpu_steps[i - b->warmup] = dc;
    }
    const double med = bench_median(t_steps, b->steps);
    const double rss = bench_peak_rss_mib();
    sae_trainer_free(t);
    free(x), free(since);

    printf("{\"libsae_version\": \"%s\", \"blas_kernels\": \"%s\", \"arch\": \"%s\", "
           "\"threads\": %d, \"d_in\": %lld, \"d_sae\": %lld, \"batch\": %lld, \"k\": %lld, "
           "\"auxk_dead\": %g, \"dead_set\": %lld, \"warmup\": %d, \"steps\": %d, \"step_s\": [",
           sae_version_string(), sae_blas_kernels(), topk ? "topk" : "standard", b->threads,
           (long long)b->d_in, (long long)b->d_sae, (long long)b->batch,
           (long long)(topk ? b->k : 0), b->auxk_dead, (long long)n_dead_set, b->warmup,
           b->steps);
    for (int i = 0; i < b->steps; i++)
        printf("%s%.6f", i ? ", " : "", t_steps[i]);
    printf("], \"cpu_s\": [");
    for (int i = 0; i < b->steps; i++)
        printf("%s%.6f", i ? ", " : "", cpu_steps[i]);
    printf("], \"median_s\": %.6f, \"tok_s\": %.1f, \"peak_rss_mib\": %.1f, "
           "\"last\": {\"loss\": %.6g, \"mse\": %.6g, \"l1\": %.6g, \"aux\": %.6g, \"l0\": %.2f, "
           "\"n_dead\": %lld, \"grad_norm\": %.6g}, ",
           med, (double)b->batch / med, rss, m.loss, m.mse, m.l1, m.aux, m.l0,
           (long long)m.n_dead, m.grad_norm);
    time_products(b, topk ? 1 : sizeof products / sizeof products[0]);
    printf("}\n");
}

int main(int argc, char **argv)
{
    bench_cfg b = {.d_in = 768, .d_sae = 16384, .batch = 4096, .k = 32, .threads = 2,
                   .steps = 5, .warmup = 2, .auxk_dead = 0.0, .seed = 0};
    int arch = -1; /* 0 standard, 1 topk */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--arch") && v && (!strcmp(v, "standard") || !strcmp(v, "topk")))
            arch = !strcmp(v, "topk"), i++;
        else if (!strcmp(a, "--d-in"))
            b.d_in = bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--d-sae"))
            b.d_sae = bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--batch"))
            b.batch = bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--k"))
            b.k = bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--threads"))
            b.threads = (int)bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--steps"))
            b.steps = (int)bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--warmup"))
            b.warmup = (int)bench_parse_long(a, v, 0), i++;
        else if (!strcmp(a, "--seed"))
            b.seed = (uint64_t)bench_parse_long(a, v, 0), i++;
        else if (!strcmp(a, "--auxk-dead")) {
            b.auxk_dead = v ? atof(v) : -1, i++;
            if (!(b.auxk_dead >= 0 && b.auxk_dead < 1)) {
                fprintf(stderr, "bench_train: --auxk-dead needs a fraction in [0, 1)\n");
                return 2;
            }
        } else {
            arch = -1;
            break;
        }
    }
    if (arch < 0 || b.steps > MAX_STEPS - b.warmup || b.k > b.d_sae) {
        fprintf(stderr,
                "usage: bench_train --arch standard|topk [--d-in D] [--d-sae F] [--batch B]\n"
                "                   [--k K] [--threads T] [--steps S] [--warmup W]\n"
                "                   [--auxk-dead P] [--seed N]   (S + W <= %d, K <= F)\n",
                MAX_STEPS);
        return 2;
    }
    run(&b, arch == 1);
    return 0;
}
