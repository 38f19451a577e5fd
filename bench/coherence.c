/* coherence.c: `bench_coherence`, time and memory of sae_ortho_coherence (ortho.h) on a random
 * decoder, as one JSON object.
 *
 * W_dec (F, d) with N(0, 1) entries. Reports the wall time of one coherence pass over all F
 * features (F^2 d useful flops: the upper triangle of the Gram, 2 flops per multiply-add), of
 * one penalty + gradient on a random subset of 1024, the peak RSS of the process (the input
 * itself is 4 F d bytes), and the rate of a plain sgemm of one Gram tile shape (1024, 1024, d)
 * through libsae's wrapper (sae__sgemm, internal: this program links the static library) as the
 * roofline, so the coherence rate reads as a share of sgemm.
 *
 * usage: bench_coherence [F] [d] [threads]   (defaults 16384 2304 0)
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "internal.h" /* sae__sgemm */

int main(int argc, char **argv)
{
    int64_t F = argc > 1 ? atoll(argv[1]) : 16384, d = argc > 2 ? atoll(argv[2]) : 2304;
    int32_t threads = argc > 3 ? atoi(argv[3]) : 0;
    float *W = malloc((size_t)(F * d) * sizeof(float));
    float *C = malloc((size_t)1024 * 1024 * sizeof(float));
    int32_t S[1024];
    if (!W || !C)
        return 1;
    sae_rng rng;
    sae_rng_init(&rng, 1, 0);
    for (int64_t i = 0; i < F * d; i++)
        W[i] = sae_rng_normal(&rng);

    int t_eff = threads > 0 ? threads : sae_default_threads();
    int64_t m = F < 1024 ? F : 1024;
    sae__sgemm(false, true, m, m, d, 1.0f, W, d, W, d, 0.0f, C, m, t_eff); /* warm-up */
    double t0 = bench_now();
    int reps = 5;
    for (int r = 0; r < reps; r++)
        sae__sgemm(false, true, m, m, d, 1.0f, W, d, W, d, 0.0f, C, m, t_eff);
    double gemm_gflops = 2.0 * m * m * d * reps / (bench_now() - t0) / 1e9;

    sae_coherence c = SAE_COHERENCE_INIT;
    t0 = bench_now();
    if (sae_ortho_coherence(&c, NULL, W, F, d, d, NULL, 0, threads) != SAE_OK) {
        fprintf(stderr, "%s\n", sae_last_error());
        return 1;
    }
    double t_coh = bench_now() - t0, coh_gflops = (double)F * F * d / t_coh / 1e9;

    float *grad = calloc((size_t)(F * d), sizeof(float));
    double p;
    int64_t n;
    sae_ortho_subset(S, &n, 1024, F, 1, 0);
    t0 = bench_now();
    if (!grad || sae_ortho_penalty(&p, grad, d, 1e-4f, W, F, d, d, S, n, threads) != SAE_OK)
        return 1;
    double t_pen = bench_now() - t0;

    printf("{\"F\": %lld, \"d\": %lld, \"threads\": %d, \"blas_kernels\": \"%s\", "
           "\"coherence_s\": %.3f, \"coherence_gflops\": %.1f, \"sgemm_gflops\": %.1f, "
           "\"share_of_sgemm\": %.3f, \"penalty_grad_subset1024_s\": %.4f, "
           "\"input_mb\": %.1f, \"grad_mb\": %.1f, \"peak_rss_mb\": %.1f, \"mean_cos\": %.6f, "
           "\"max_cos\": %.6f}\n",
           (long long)F, (long long)d, t_eff, sae_blas_kernels(), t_coh, coh_gflops,
           gemm_gflops, coh_gflops / gemm_gflops, t_pen, 4.0 * F * d / 1048576,
           4.0 * F * d / 1048576, bench_peak_rss_mib(), c.mean_cos, c.max_cos);
    free(grad);
    free(W);
    free(C);
    return 0;
}
