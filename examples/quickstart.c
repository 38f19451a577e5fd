/* quickstart.c: libsae in one page.
 *
 * Makes a small TopK SAE (d_in 64, d_sae 512, k 8) from random weights, saves it in the SAELens
 * layout, loads it back, encodes a batch of inputs densely and sparsely, reconstructs them and
 * reports what it did. Usage: sae_quickstart [DIR]   (default ./quickstart_sae)
 *
 * Build:  cc quickstart.c $(pkg-config --cflags --libs sae) -lm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sae/sae.h>

enum { D_IN = 64, D_SAE = 512, K = 8, ROWS = 256, ATOMS_PER_INPUT = 4, TIMING_REPS = 50 };

/* Stop with a message when a libsae call fails. */
#define CHECK(call)                                                                              \
    do {                                                                                         \
        sae_status status_ = (call);                                                             \
        if (status_ != SAE_OK) {                                                                 \
            fprintf(stderr, "sae_quickstart: %s failed: %s (%s)\n", #call, sae_last_error(),   \
                    sae_status_str(status_));                                                    \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

static void fail(const char *what)
{
    fprintf(stderr, "sae_quickstart: %s\n", what);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        fail("out of memory");
    return p;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Two optional weight arrays are equal when both hold the same bits (NULL reads as zeros). */
static int same_array(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float va = a ? a[i] : 0.0f, vb = b ? b[i] : 0.0f;
        if (memcmp(&va, &vb, sizeof va) != 0)
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "./quickstart_sae";
    if (argc > 2 || (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))) {
        fprintf(argc > 2 ? stderr : stdout, "usage: sae_quickstart [DIR]   (default %s)\n", dir);
        return argc > 2 ? 2 : 0;
    }
    sae_rng rng;
    sae_rng_init(&rng, 42, 0);

    /* 1. Weights: decoder rows d_j ~ N(0, I) scaled to unit norm; W_enc = W_dec^T (tied init,
     *    as SAELens and dictionary_learning start), b_enc = 0, a small random b_dec. */
    float *W_dec = xcalloc(D_SAE * D_IN, sizeof(float));   /* (d_sae, d_in) */
    float *W_enc = xcalloc(D_IN * D_SAE, sizeof(float));   /* (d_in, d_sae) */
    float *b_enc = xcalloc(D_SAE, sizeof(float));
    float *b_dec = xcalloc(D_IN, sizeof(float));
    for (int j = 0; j < D_SAE; j++) {
        double norm2 = 0;
        for (int i = 0; i < D_IN; i++) {
            float v = sae_rng_normal(&rng);
            W_dec[j * D_IN + i] = v;
            norm2 += (double)v * v;
        }
        float inv = (float)(1.0 / sqrt(norm2));
        for (int i = 0; i < D_IN; i++) {
            W_dec[j * D_IN + i] *= inv;
            W_enc[i * D_SAE + j] = W_dec[j * D_IN + i];
        }
    }
    for (int i = 0; i < D_IN; i++)
        b_dec[i] = 0.1f * sae_rng_normal(&rng);

    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = SAE_ARCH_TOPK;
    cfg.d_in = D_IN;
    cfg.d_sae = D_SAE;
    cfg.k = K;
    cfg.model_name = "none (random weights)";
    cfg.hook_name = "quickstart";
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.b_enc = b_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    sae_dict *made = NULL;
    CHECK(sae_dict_create(&made, &cfg, &w, NULL));

    /* 2. Save in the SAELens layout and load it back. */
    CHECK(sae_dict_save(made, dir, SAE_FORMAT_SAELENS));
    sae_dict *dict = NULL;
    CHECK(sae_dict_load(&dict, dir, NULL));
    sae_dict_weights lw = SAE_DICT_WEIGHTS_INIT;
    sae_dict_config lc = SAE_DICT_CONFIG_INIT;
    CHECK(sae_dict_get_weights(dict, &lw));
    CHECK(sae_dict_get_config(dict, &lc));
    if (lc.arch != SAE_ARCH_TOPK || lc.d_in != D_IN || lc.d_sae != D_SAE || lc.k != K)
        fail("the loaded SAE has a different architecture or size");
    if (!same_array(lw.W_enc, W_enc, D_IN * D_SAE) || !same_array(lw.W_dec, W_dec, D_SAE * D_IN) ||
        !same_array(lw.b_enc, b_enc, D_SAE) || !same_array(lw.b_dec, b_dec, D_IN))
        fail("the weights did not round-trip exactly");

    /* 3. Inputs: each row mixes a few random decoder directions, plus b_dec and a little noise,
     *    so that a k-sparse code can explain most of it. */
    float *x = xcalloc(ROWS * D_IN, sizeof(float));
    for (int r = 0; r < ROWS; r++) {
        float *row = x + r * D_IN;
        for (int a = 0; a < ATOMS_PER_INPUT; a++) {
            int j = (int)sae_rng_below(&rng, D_SAE);
            float c = 1.0f + fabsf(sae_rng_normal(&rng));
            for (int i = 0; i < D_IN; i++)
                row[i] += c * W_dec[j * D_IN + i];
        }
        for (int i = 0; i < D_IN; i++)
            row[i] += b_dec[i] + 0.05f * sae_rng_normal(&rng);
    }

    /* 4. Encode densely and sparsely; the two must agree. */
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.max_rows = ROWS;
    sae_encoder *enc = NULL;
    CHECK(sae_encoder_create(&enc, dict, &eo));
    sae_codes *codes = NULL;
    CHECK(sae_codes_create(&codes, NULL));
    CHECK(sae_codes_reserve(codes, ROWS, (int64_t)ROWS * K));
    float *f = xcalloc(ROWS * D_SAE, sizeof(float));
    float *dense_from_sparse = xcalloc(ROWS * D_SAE, sizeof(float));
    CHECK(sae_encoder_encode(enc, ROWS, x, D_IN, f, D_SAE, NULL, 0));
    CHECK(sae_encoder_encode_sparse(enc, ROWS, x, D_IN, codes));
    const int64_t nnz = sae_codes_nnz(codes);
    const int64_t *off = sae_codes_offsets(codes);
    const int32_t *idx = sae_codes_indices(codes);
    const float *val = sae_codes_values(codes);
    if (sae_codes_rows(codes) != ROWS)
        fail("the sparse codes have the wrong number of rows");
    int64_t max_row_nnz = 0;
    for (int r = 0; r < ROWS; r++) {
        if (off[r + 1] - off[r] > max_row_nnz)
            max_row_nnz = off[r + 1] - off[r];
        for (int64_t p = off[r]; p < off[r + 1]; p++)
            dense_from_sparse[r * D_SAE + idx[p]] = val[p];
    }
    if (max_row_nnz > K)
        fail("a row has more than k non-zero features");
    for (int64_t i = 0; i < (int64_t)ROWS * D_SAE; i++)
        if (fabsf(f[i] - dense_from_sparse[i]) > 1e-5f * (1.0f + fabsf(f[i])))
            fail("dense and sparse encodes disagree");

    /* 5. Reconstruct (x_hat = f W_dec + b_dec) and measure the fraction of variance unexplained:
     *    FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2. */
    float *x_hat = xcalloc(ROWS * D_IN, sizeof(float));
    float *x_dec = xcalloc(ROWS * D_IN, sizeof(float));
    CHECK(sae_encoder_reconstruct(enc, ROWS, x, D_IN, x_hat, D_IN, NULL, 0));
    CHECK(sae_encoder_decode(enc, ROWS, f, D_SAE, x_dec, D_IN));
    double err2 = 0, var = 0;
    for (int i = 0; i < D_IN; i++) {
        double mean = 0;
        for (int r = 0; r < ROWS; r++)
            mean += x[r * D_IN + i];
        mean /= ROWS;
        for (int r = 0; r < ROWS; r++) {
            double e = (double)x[r * D_IN + i] - x_hat[r * D_IN + i];
            double c = (double)x[r * D_IN + i] - mean;
            err2 += e * e, var += c * c;
            if (fabsf(x_hat[r * D_IN + i] - x_dec[r * D_IN + i]) >
                1e-4f * (1.0f + fabsf(x_dec[r * D_IN + i])))
                fail("reconstruct and decode(encode) disagree");
        }
    }
    const double fvu = err2 / var;
    if (!(fvu < 1.0))
        fail("the reconstruction explains none of the variance");

    /* 6. Time each path: median of TIMING_REPS calls on the same batch. */
    double t_dense[TIMING_REPS], t_sparse[TIMING_REPS], t_recon[TIMING_REPS];
    for (int rep = 0; rep < TIMING_REPS; rep++) {
        double t0 = now_seconds();
        CHECK(sae_encoder_encode(enc, ROWS, x, D_IN, f, D_SAE, NULL, 0));
        double t1 = now_seconds();
        CHECK(sae_encoder_encode_sparse(enc, ROWS, x, D_IN, codes));
        double t2 = now_seconds();
        CHECK(sae_encoder_reconstruct(enc, ROWS, x, D_IN, x_hat, D_IN, NULL, 0));
        double t3 = now_seconds();
        t_dense[rep] = t1 - t0, t_sparse[rep] = t2 - t1, t_recon[rep] = t3 - t2;
    }
    qsort(t_dense, TIMING_REPS, sizeof(double), cmp_double);
    qsort(t_sparse, TIMING_REPS, sizeof(double), cmp_double);
    qsort(t_recon, TIMING_REPS, sizeof(double), cmp_double);

    printf("libsae %s, BLAS kernels: %s, %d threads\n", sae_version_string(), sae_blas_kernels(),
           sae_default_threads());
    printf("made a TopK SAE: d_in %d, d_sae %d, k %d (random unit-norm decoder rows, "
           "W_enc = W_dec^T)\n", D_IN, D_SAE, K);
    printf("saved it to %s (SAELens layout) and loaded it back: weights identical\n", dir);
    printf("encoded %d inputs: dense [%d, %d] and sparse (%lld non-zeros, %.2f per row); "
           "they agree\n", ROWS, ROWS, D_SAE, (long long)nnz, (double)nnz / ROWS);
    printf("reconstruction: FVU %.4f (fraction of variance unexplained; 1 = no better than the "
           "batch mean, and these weights are random, not trained)\n", fvu);
    printf("time per batch of %d: dense encode %.1f us, sparse encode %.1f us, "
           "reconstruct %.1f us\n", ROWS, 1e6 * t_dense[TIMING_REPS / 2],
           1e6 * t_sparse[TIMING_REPS / 2], 1e6 * t_recon[TIMING_REPS / 2]);

    sae_codes_free(codes);
    sae_encoder_free(enc);
    sae_dict_free(dict);
    sae_dict_free(made);
    free(W_dec), free(W_enc), free(b_enc), free(b_dec), free(x), free(f);
    free(dense_from_sparse), free(x_hat), free(x_dec);
    return 0;
}
