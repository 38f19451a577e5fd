/* coherence.c: `bench_coherence`, time and memory of the orthogonality tools (ortho.h) on a
 * random decoder, as one JSON object.
 *
 * W_dec (F, d) with N(0, 1) entries. Reports:
 * - one coherence pass over all F features (F^2 d useful flops: the upper triangle of the Gram,
 *   2 flops per multiply-add), by wall clock and by process CPU time;
 * - the rate of a plain sgemm of the Gram tile shape the pass uses, (T, T, d) with
 *   T = sae__ortho_tile_rows(d, F) (1024 for d <= 4096 and F >= 1024), through libsae's
 *   wrapper (sae__sgemm, internal: this program links the static library) on the same threads,
 *   timed before and after the pass (the machine may be shared), so the coherence rate reads
 *   as a share of sgemm;
 * - the peak RSS after the pass (the input itself is 4 F d bytes) and so the pass's own memory;
 * - the spectrum (d x d Gram by syrk + ssyevd), Loewdin of a random subset of min(1024, d)
 *   rows, and the penalty + gradient on a random subset of 1024.
 *
 * usage: bench_coherence [F] [d] [threads]   (defaults 16384 2304 0)
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "ortho/ortho_internal.h" /* sae__sgemm, sae__ortho_tile_rows */

/* sgemm GFLOP/s of the (m, m, d) tile shape, by wall clock and per CPU-second x threads. */
static void sgemm_rate(const float *W, int64_t m, int64_t d, int threads, float *C,
                       double *wall_gflops, double *cpu_gflops)
{
    sae__sgemm(false, true, m, m, d, 1.0f, W, d, W + m * d, d, 0.0f, C, m, threads); /* warm */
    const int reps = 5;
    double w0 = bench_now(), c0 = bench_cpu_seconds();
    for (int r = 0; r < reps; r++)
        sae__sgemm(false, true, m, m, d, 1.0f, W, d, W + m * d, d, 0.0f, C, m, threads);
    double flops = 2.0 * m * m * d * reps;
    *wall_gflops = flops / (bench_now() - w0) / 1e9;
    *cpu_gflops = flops / (bench_cpu_seconds() - c0) * threads / 1e9;
}

static int failed(const char *what)
{
    fprintf(stderr, "bench_coherence: %s: %s\n", what, sae_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    int64_t F = argc > 1 ? atoll(argv[1]) : 16384, d = argc > 2 ? atoll(argv[2]) : 2304;
    int32_t threads = argc > 3 ? atoi(argv[3]) : 0;
    if (F < 2 || d < 1 || threads < 0) {
        fprintf(stderr, "usage: bench_coherence [F >= 2] [d >= 1] [threads]\n");
        return 2;
    }
    const int t_eff = threads > 0 ? threads : sae_default_threads();
    /* the tile shape of the pass; the sgemm reads two distinct blocks when F allows */
    const int64_t T = sae__ortho_tile_rows(d, F), m = F >= 2 * T ? T : F / 2;
    float *W = malloc((size_t)(F * d) * sizeof(float));
    float *C = malloc((size_t)(m * m) * sizeof(float));
    if (!W || !C)
        return 1;
    sae_rng rng;
    sae_rng_init(&rng, 1, 0);
    for (int64_t i = 0; i < F * d; i++)
        W[i] = sae_rng_normal(&rng);

    double gemm_wall[2], gemm_cpu[2];
    sgemm_rate(W, m, d, t_eff, C, &gemm_wall[0], &gemm_cpu[0]);
    double rss_input = bench_peak_rss_mib();

    sae_coherence c = SAE_COHERENCE_INIT;
    double w0 = bench_now(), c0 = bench_cpu_seconds();
    if (sae_ortho_coherence(&c, NULL, W, F, d, d, NULL, 0, threads) != SAE_OK)
        return failed("coherence");
    double coh_wall = bench_now() - w0;
    double coh_cpu = bench_cpu_seconds() - c0;
    double rss_coherence = bench_peak_rss_mib();
    sgemm_rate(W, m, d, t_eff, C, &gemm_wall[1], &gemm_cpu[1]);
    double flops = (double)F * F * d;
    double coh_gflops = flops / coh_wall / 1e9, coh_cpu_gflops = flops / coh_cpu * t_eff / 1e9;
    double gemm_w = (gemm_wall[0] + gemm_wall[1]) / 2, gemm_c = (gemm_cpu[0] + gemm_cpu[1]) / 2;

    double erank, pr;
    float *sigma = malloc((size_t)(F < d ? F : d) * sizeof(float));
    w0 = bench_now();
    if (!sigma ||
        sae_ortho_spectrum(sigma, &erank, &pr, W, F, d, d, NULL, 0, threads) != SAE_OK)
        return failed("spectrum");
    double spec_wall = bench_now() - w0;

    int32_t *S = malloc(1024 * sizeof(int32_t));
    int64_t n;
    if (!S)
        return 1;
    sae_ortho_subset(S, &n, d < 1024 ? d : 1024, F, 1, 0);
    w0 = bench_now();
    if (sae_ortho_lowdin(W, NULL, F, d, d, S, n, 0, threads) != SAE_OK)
        return failed("lowdin");
    double lowdin_wall = bench_now() - w0;
    int64_t n_lowdin = n;

    float *grad = calloc((size_t)(F * d), sizeof(float));
    double p;
    sae_ortho_subset(S, &n, 1024, F, 1, 1);
    w0 = bench_now();
    if (!grad || sae_ortho_penalty(&p, grad, d, 1e-4f, W, F, d, d, S, n, threads) != SAE_OK)
        return failed("penalty");
    double pen_wall = bench_now() - w0;

    printf("{\"F\": %lld, \"d\": %lld, \"threads\": %d, \"blas_kernels\": \"%s\", "
           "\"tile\": %lld, \"coherence_s\": %.3f, \"coherence_cpu_s\": %.3f, "
           "\"coherence_gflops\": %.1f, \"coherence_cpu_gflops\": %.1f, "
           "\"sgemm_tile_gflops\": [%.1f, %.1f], \"sgemm_tile_cpu_gflops\": [%.1f, %.1f], "
           "\"share_of_sgemm\": %.3f, \"share_of_sgemm_cpu\": %.3f, "
           "\"input_mb\": %.1f, \"rss_before_mb\": %.1f, \"peak_rss_coherence_mb\": %.1f, "
           "\"coherence_extra_mb\": %.1f, \"mean_cos\": %.6f, \"max_cos\": %.6f, "
           "\"spectrum_s\": %.3f, \"effective_rank\": %.2f, \"participation_ratio\": %.2f, "
           "\"lowdin_rows\": %lld, \"lowdin_s\": %.3f, \"penalty_grad_subset1024_s\": %.4f}\n",
           (long long)F, (long long)d, t_eff, sae_blas_kernels(), (long long)T, coh_wall,
           coh_cpu, coh_gflops, coh_cpu_gflops, gemm_wall[0], gemm_wall[1], gemm_cpu[0],
           gemm_cpu[1], coh_gflops / gemm_w, coh_cpu_gflops / gemm_c, 4.0 * F * d / 1048576,
           rss_input, rss_coherence, rss_coherence - rss_input, c.mean_cos, c.max_cos,
           spec_wall, erank, pr, (long long)n_lowdin, lowdin_wall, pen_wall);
    free(grad);
    free(S);
    free(sigma);
    free(W);
    free(C);
    return 0;
}
