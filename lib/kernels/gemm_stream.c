/* gemm_stream.c: C = A B for a handful of rows, reading B exactly once.
 *
 *   A: (m, k) lda;  B: (k, n) ldb;  C: (m, n) ldc;  m <= SAE_STREAM_MAX_M
 *
 * With m = 1 (one token) a BLAS gemm is memory-bound on B and also packs it: two passes over
 * weights that do not fit in cache. Here each thread owns a band of C's columns and walks B's
 * rows once, in chunks of columns whose accumulators (m x chunk floats) stay in L2:
 *   C[r, chunk] += A[r, i] * B[i, chunk]   for i = 0..k-1
 * Rows i whose coefficients A[:, i] are all zero are skipped, so decoding sparse codes through
 * this kernel costs O(nnz * n). */
#include <string.h>

#include "kernels.h"

#define STREAM_ACC_FLOATS (64 * 1024)
#define STREAM_MIN_CHUNK 256

/* One chunk of columns [c0, c0 + w) for all m rows. Rows of B go four at a time so that each
 * accumulator load/store serves four multiply-adds; a group whose four coefficients are all
 * zero for a row is skipped for that row. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void stream_chunk(int64_t m, int64_t w, int64_t k, const float *restrict A, int64_t lda,
                         const float *restrict B, int64_t ldb, float *restrict C, int64_t ldc)
{
    for (int64_t r = 0; r < m; r++)
        memset(C + r * ldc, 0, sizeof(float) * (size_t)w);
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        const float *restrict b0 = B + i * ldb, *restrict b1 = b0 + ldb;
        const float *restrict b2 = b1 + ldb, *restrict b3 = b2 + ldb;
        for (int64_t r = 0; r < m; r++) {
            const float a0 = A[r * lda + i], a1 = A[r * lda + i + 1];
            const float a2 = A[r * lda + i + 2], a3 = A[r * lda + i + 3];
            if (a0 == 0.0f && a1 == 0.0f && a2 == 0.0f && a3 == 0.0f)
                continue;
            float *restrict c = C + r * ldc;
            for (int64_t j = 0; j < w; j++)
                c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
        }
    }
    for (; i < k; i++) {
        const float *b = B + i * ldb;
        for (int64_t r = 0; r < m; r++) {
            float a = A[r * lda + i];
            if (a == 0.0f)
                continue;
            float *restrict c = C + r * ldc;
            for (int64_t j = 0; j < w; j++)
                c[j] += a * b[j];
        }
    }
}

void sae__sgemm_stream(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc, int n_threads)
{
    /* Chunk width: the m accumulator rows (m * w floats) stay within ~256 KiB of L2, and each
     * row of B is read in runs of w floats: long runs keep the hardware prefetchers streaming. */
    int64_t w = STREAM_ACC_FLOATS / m;
    w = w < STREAM_MIN_CHUNK ? STREAM_MIN_CHUNK : w / 16 * 16;
    /* The cost is reading B from memory: an element streamed in costs about as much as 16
     * multiply-adds in cache, so the work is k n (m + 16). */
    n_threads = sae__threads_for(n_threads, (double)k * (double)n * (double)(m + 16));
    int64_t per_thread = (n + n_threads - 1) / n_threads;
    if (w > per_thread)
        w = (per_thread + 15) / 16 * 16;
    int64_t chunks = (n + w - 1) / w;
    /* Contiguous bands of chunks per thread: each thread streams its own part of every row. */
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1 && chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t c0 = c * w;
        stream_chunk(m, n - c0 < w ? n - c0 : w, k, A, lda, B + c0, ldb, C + c0, ldc);
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
