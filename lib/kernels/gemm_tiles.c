/* gemm_tiles.c: a large product as independent single-threaded BLAS calls on tiles of C.
 *
 *   C = alpha op(A) op(B) + beta C      op(A): (m, k);  op(B): (k, n);  C: (m, n) ldc >= n
 *
 * A multi-threaded BLIS call splits its loops statically and meets at a barrier after every
 * packed panel, where a waiting thread spins. On a machine shared with other processes a
 * thread is regularly descheduled for a time slice, and its partner then spins for that whole
 * slice: measured on 2 cores shared with other builds, a 4096 x 16384 x 768 product took 5-7 s
 * with 2 BLIS threads against 2-2.5 s as tiles. Here C is cut into tiles of tile_m rows and
 * tile_n columns; threads take tiles one at a time (dynamic schedule) and run one
 * single-threaded call each, so no thread ever waits for another inside the product, and
 * `epilogue` runs on each tile right after it is written, while it is still in cache.
 * Each tile repacks its rows of op(A) and its columns of op(B): a tile of R rows and C columns
 * does 2 R C k flops for (R + C) k floats packed, so a few hundred rows or columns keep the
 * packing to a few percent of the product.
 * The tiles depend on the shape, tile_m and tile_n only, so the result does not depend on which
 * thread ran which tile, nor on the number of threads. */
#include "kernels.h"

sae_status sae__sgemm_tiles(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                            float beta, float *C, int64_t ldc, int64_t tile_m, int64_t tile_n,
                            int n_threads, sae__tile_fn epilogue, void *user)
{
    tile_m = tile_m < 1 || tile_m > m ? m : tile_m;
    tile_n = tile_n < 1 || tile_n > n ? n : tile_n;
    if (m < 1 || n < 1)
        return SAE_OK;
    const int64_t tiles_m = (m + tile_m - 1) / tile_m, tiles_n = (n + tile_n - 1) / tile_n;
    const int64_t tiles = tiles_m * tiles_n;
    sae_status failed = SAE_OK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n_threads > 1 && tiles > 1)
    for (int64_t t = 0; t < tiles; t++) {
        /* rows [r0, r1) of op(A) and C, columns [c0, c1) of op(B) and C */
        const int64_t r0 = t / tiles_n * tile_m, c0 = t % tiles_n * tile_n;
        const int64_t r1 = m - r0 < tile_m ? m : r0 + tile_m;
        const int64_t c1 = n - c0 < tile_n ? n : c0 + tile_n;
        const float *a = A + (trans_a ? r0 : r0 * lda), *b = B + (trans_b ? c0 * ldb : c0);
        sae_status s = sae__sgemm(trans_a, trans_b, r1 - r0, c1 - c0, k, alpha, a, lda, b, ldb,
                                  beta, C + r0 * ldc + c0, ldc, 1);
        if (s != SAE_OK) {
#pragma omp atomic write
            failed = s;
        } else if (epilogue) {
            epilogue(user, r0, r1, c0, c1);
        }
    }
    return failed;
}
