/* gemm_stream.c: C = A B for a handful of rows, reading B exactly once.
 *
 *   A: (m, k) lda;  B: (k, n) ldb;  C: (m, n) ldc;  m <= SAE_STREAM_MAX_M
 *
 * With m = 1 (one token) a BLAS gemm is memory-bound on B and also packs it: two passes over
 * weights that do not fit in cache. Here each thread owns a band of C's columns and walks B's
 * rows once, in chunks of STREAM_CHUNK columns whose accumulators (m x chunk floats) stay in L1:
 *   C[r, chunk] += A[r, i] * B[i, chunk]   for i = 0..k-1
 * Rows i whose coefficients A[:, i] are all zero are skipped, so decoding sparse codes through
 * this kernel costs O(nnz * n). */
#include <string.h>

#include "kernels.h"

#define STREAM_CHUNK 256

/* One chunk of columns [c0, c0 + w) for all m rows. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void stream_chunk(int64_t m, int64_t w, int64_t k, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc)
{
    for (int64_t r = 0; r < m; r++)
        memset(C + r * ldc, 0, sizeof(float) * (size_t)w);
    for (int64_t i = 0; i < k; i++) {
        const float *b = B + i * ldb;
        for (int64_t r = 0; r < m; r++) {
            float a = A[r * lda + i];
            if (a == 0.0f)
                continue;
            float *c = C + r * ldc;
            for (int64_t j = 0; j < w; j++)
                c[j] += a * b[j];
        }
    }
}

void sae__sgemm_stream(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc, int n_threads)
{
    int64_t chunks = (n + STREAM_CHUNK - 1) / STREAM_CHUNK;
    /* Contiguous bands of chunks per thread: each thread streams its own part of every row. */
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1 && chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t c0 = c * STREAM_CHUNK;
        int64_t w = n - c0 < STREAM_CHUNK ? n - c0 : STREAM_CHUNK;
        stream_chunk(m, w, k, A, lda, B + c0, ldb, C + c0, ldc);
    }
}

void sae__sgemm_ref(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float *C, int64_t ldc)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t i = 0; i < k; i++)
                s += (double)A[r * lda + i] * B[i * ldb + j];
            C[r * ldc + j] = (float)s;
        }
}
