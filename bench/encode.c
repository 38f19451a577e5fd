/* encode.c: `bench_encode`, encode-only inference throughput of libsae, as one JSON object.
 *
 * The workload of ../shared/peers/torch_encode.py: d_in 768, d_sae 24576, weights
 * N(0, 1)/sqrt(d_in), zero biases, batches of 1, 16, 64, 256 and 4096 rows of N(0, 1) inputs:
 *   relu: f = ReLU((x - b_dec) W_enc + b_enc), dense (n, d_sae) output   (sae_encoder_encode)
 *   topk: TopK k = 32, CSR output                                         (sae_encoder_encode_sparse)
 *   sgemm: C = x W_enc, the plain BLAS call of the same shape, through libsae's own gemm wrapper
 *          (sae__sgemm, internal: this program links the static library), as the roofline.
 * Each number is the median time of R calls after one warm-up call, R as in the PyTorch script
 * (200 for n <= 16, 50 for n <= 256, else 5). bench/encode.py runs this and PyTorch and compares.
 *
 * usage: bench_encode [--threads T] [--batches 1,16,...] [--d-in D] [--d-sae F] [--k K]
 *                     [--reps-scale S]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "internal.h" /* sae__sgemm */

#define MAX_BATCHES 16

/* What is timed: one call of one of the three paths. */
typedef enum { RUN_RELU, RUN_TOPK, RUN_SGEMM } run_kind;

typedef struct run_ctx {
    run_kind kind;
    sae_encoder *enc;
    sae_codes *codes;
    int64_t n, d_in, d_sae;
    const float *x, *W_enc;
    float *out;
    int threads;
} run_ctx;

static void run_once(const run_ctx *c)
{
    sae_status s = SAE_OK;
    switch (c->kind) {
    case RUN_RELU:
        s = sae_encoder_encode(c->enc, c->n, c->x, c->d_in, c->out, c->d_sae, NULL, 0);
        break;
    case RUN_TOPK:
        s = sae_encoder_encode_sparse(c->enc, c->n, c->x, c->d_in, c->codes);
        break;
    case RUN_SGEMM:
        /* C (n, d_sae) = x (n, d_in) W_enc (d_in, d_sae) */
        s = sae__sgemm(false, false, c->n, c->d_sae, c->d_in, 1.0f, c->x, c->d_in, c->W_enc,
                       c->d_sae, 0.0f, c->out, c->d_sae, c->threads);
        break;
    }
    if (s != SAE_OK)
        bench_die(c->kind == RUN_SGEMM ? "sgemm" : "encode", s);
}

static double time_median(const run_ctx *c, int reps)
{
    double *t = bench_xmalloc((size_t)reps * sizeof *t);
    run_once(c); /* warm-up: page in the outputs, size the workspace */
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        run_once(c);
        t[r] = bench_now() - t0;
    }
    double m = bench_median(t, reps);
    free(t);
    return m;
}

int main(int argc, char **argv)
{
    int64_t d_in = 768, d_sae = 24576, k = 32;
    int threads = 2;
    double reps_scale = 1.0;
    int64_t batches[MAX_BATCHES] = {1, 16, 64, 256, 4096};
    int n_batches = 5;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads"))
            threads = (int)bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--d-in"))
            d_in = bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--d-sae"))
            d_sae = bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--k"))
            k = bench_parse_long(a, v, 1), i++;
        else if (!strcmp(a, "--reps-scale")) {
            reps_scale = v ? atof(v) : 0, i++;
            if (!(reps_scale > 0)) {
                fprintf(stderr, "bench_encode: --reps-scale needs a positive number\n");
                return 2;
            }
        } else if (!strcmp(a, "--batches")) {
            if (!v) {
                fprintf(stderr, "bench_encode: --batches needs a list such as 1,16,4096\n");
                return 2;
            }
            n_batches = 0;
            char *copy = strdup(v), *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok && n_batches < MAX_BATCHES;
                 tok = strtok_r(NULL, ",", &save))
                batches[n_batches++] = bench_parse_long("--batches", tok, 1);
            free(copy);
            i++;
        } else {
            fprintf(stderr,
                    "usage: bench_encode [--threads T] [--batches 1,16,64,256,4096] [--d-in D]\n"
                    "                    [--d-sae F] [--k K] [--reps-scale S]\n");
            return !strcmp(a, "--help") ? 0 : 2;
        }
    }
    if (k > d_sae)
        k = d_sae;

    /* Weights: W_enc ~ N(0, 1)/sqrt(d_in) (d_in, d_sae), as in the PyTorch script; the decoder
     * is not used by encode but a dictionary needs one: W_dec ~ N(0, 1)/sqrt(d_sae). */
    sae_rng rng;
    sae_rng_init(&rng, 1234, 0);
    float *W_enc = bench_xmalloc((size_t)(d_in * d_sae) * sizeof(float));
    float *W_dec = bench_xmalloc((size_t)(d_in * d_sae) * sizeof(float));
    bench_fill_normal(W_enc, d_in * d_sae, (float)(1.0 / sqrt((double)d_in)), &rng);
    bench_fill_normal(W_dec, d_in * d_sae, (float)(1.0 / sqrt((double)d_sae)), &rng);
    float *b_enc = calloc((size_t)d_sae, sizeof(float)), *b_dec = calloc((size_t)d_in, sizeof(float));
    if (!b_enc || !b_dec)
        bench_die("allocating biases", SAE_ENOMEM);

    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.b_enc = b_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = SAE_ARCH_STANDARD;
    cfg.d_in = d_in;
    cfg.d_sae = d_sae;
    sae_dict *relu = NULL, *topk = NULL;
    sae_status s = sae_dict_create(&relu, &cfg, &w, NULL);
    if (s != SAE_OK)
        bench_die("sae_dict_create (relu)", s);
    cfg.arch = SAE_ARCH_TOPK;
    cfg.k = k;
    if ((s = sae_dict_create(&topk, &cfg, &w, NULL)) != SAE_OK)
        bench_die("sae_dict_create (topk)", s);
    free(W_dec);

    int64_t max_batch = 1;
    for (int b = 0; b < n_batches; b++)
        max_batch = batches[b] > max_batch ? batches[b] : max_batch;
    float *x = bench_xmalloc((size_t)(max_batch * d_in) * sizeof(float));
    float *out = bench_xmalloc((size_t)(max_batch * d_sae) * sizeof(float));

    printf("{\"libsae_version\": \"%s\", \"blas_kernels\": \"%s\", \"threads\": %d, "
           "\"d_in\": %lld, \"d_sae\": %lld, \"k\": %lld, \"results\": [",
           sae_version_string(), sae_blas_kernels(), threads, (long long)d_in, (long long)d_sae,
           (long long)k);
    for (int b = 0; b < n_batches; b++) {
        const int64_t n = batches[b];
        int reps = n <= 16 ? 200 : n <= 256 ? 50 : 5;
        reps = (int)(reps * reps_scale + 0.5);
        if (reps < 1)
            reps = 1;
        bench_fill_normal(x, n * d_in, 1.0f, &rng);

        sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
        eo.n_threads = threads;
        eo.max_rows = n;
        sae_encoder *enc_relu = NULL, *enc_topk = NULL;
        sae_codes *codes = NULL;
        if ((s = sae_encoder_create(&enc_relu, relu, &eo)) != SAE_OK ||
            (s = sae_encoder_create(&enc_topk, topk, &eo)) != SAE_OK ||
            (s = sae_codes_create(&codes, NULL)) != SAE_OK ||
            (s = sae_codes_reserve(codes, n, n * k)) != SAE_OK)
            bench_die("making the encoders", s);

        run_ctx c = {RUN_RELU, enc_relu, codes, n, d_in, d_sae, x, W_enc, out, threads};
        double t_relu = time_median(&c, reps);
        c.kind = RUN_TOPK, c.enc = enc_topk;
        double t_topk = time_median(&c, reps);
        c.kind = RUN_SGEMM;
        double t_gemm = time_median(&c, reps);
        const double flop = 2.0 * (double)n * (double)d_in * (double)d_sae;

        printf("%s\n  {\"batch\": %lld, \"reps\": %d, "
               "\"relu_dense_s\": %.6e, \"relu_dense_tok_s\": %.1f, "
               "\"topk_sparse_s\": %.6e, \"topk_sparse_tok_s\": %.1f, "
               "\"sgemm_s\": %.6e, \"sgemm_tok_s\": %.1f, \"sgemm_gflop_s\": %.2f}",
               b ? "," : "", (long long)n, reps, t_relu, (double)n / t_relu, t_topk,
               (double)n / t_topk, t_gemm, (double)n / t_gemm, flop / t_gemm * 1e-9);
        fflush(stdout);
        sae_codes_free(codes);
        sae_encoder_free(enc_relu);
        sae_encoder_free(enc_topk);
    }
    printf("\n]}\n");

    sae_dict_free(relu);
    sae_dict_free(topk);
    free(W_enc), free(b_enc), free(b_dec), free(x), free(out);
    return 0;
}
