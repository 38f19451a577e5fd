/* penalty.c: the sae-icm orthogonality penalty and its gradient (ortho.h; MATH.md,
 * "Orthogonality"), tiled so that no n x n Gram matrix exists.
 *
 * D_S: (n, d), the rows of S. G = D_S D_S^T with its diagonal zeroed (offdiag),
 *   P     = sum_{i>j} G_ij^2 = 1/2 sum_{i,j} offdiag(G)_ij^2
 *   dP/dD_S = 2 offdiag(G) D_S.
 * For each block A of T rows of S and each block B of T rows: G_AB = A B^T (T, T) by sgemm,
 * zero the diagonal when A = B, add the squares to the rows' sums, acc_A += G_AB B (T, d) by
 * sgemm. Then grad[A] += 2 scale acc_A. Memory: one (T, T) tile, three (T, d) blocks. */
#include <string.h>

#include "ortho_internal.h"

typedef struct work {
    float *G, *abuf, *bbuf, *acc; /* (T, T), (T, d), (T, d), (T, d) */
    double *rowsq;                /* (T) */
} work;

static sae_status penalty_tiled(const sae__ortho_rows *r, int64_t T, int threads, work *w,
                                double *penalty, float *grad, int64_t ldg, float grad_scale)
{
    const int64_t n = r->n, d = r->d;
    double total = 0;
    for (int64_t i0 = 0; i0 < n; i0 += T) {
        int64_t mi = n - i0 < T ? n - i0 : T, lda;
        const float *A = sae__ortho_block(r, i0, mi, w->abuf, &lda);
        memset(w->rowsq, 0, (size_t)mi * sizeof(double));
        for (int64_t j0 = 0; j0 < n; j0 += T) {
            int64_t nj = n - j0 < T ? n - j0 : T;
            int64_t ldb = lda;
            const float *B = j0 == i0 ? A : sae__ortho_block(r, j0, nj, w->bbuf, &ldb);
            float *G = w->G;
            sae_status s = sae__sgemm(false, true, mi, nj, d, 1.0f, A, lda, B, ldb, 0.0f, G, nj,
                                      threads);
            if (s != SAE_OK)
                return s;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && mi > 64)
            for (int64_t a = 0; a < mi; a++) {
                float *g = G + a * nj;
                if (j0 == i0)
                    g[a] = 0.0f; /* the diagonal (d_i . d_i) is not penalised */
                double sq = 0;
                for (int64_t b = 0; b < nj; b++)
                    sq += (double)g[b] * g[b];
                w->rowsq[a] += sq;
            }
            if (grad) {
                s = sae__sgemm(false, false, mi, d, nj, 1.0f, G, nj, B, ldb, j0 == 0 ? 0.0f : 1.0f,
                               w->acc, d, threads);
                if (s != SAE_OK)
                    return s;
            }
        }
        for (int64_t a = 0; a < mi; a++)
            total += w->rowsq[a];
        if (grad) {
            float f = 2.0f * grad_scale;
            for (int64_t a = 0; a < mi; a++) {
                float *g = grad + sae__ortho_id(r, i0 + a) * ldg;
                const float *acc = w->acc + a * d;
                for (int64_t k = 0; k < d; k++)
                    g[k] += f * acc[k];
            }
        }
    }
    *penalty = total / 2; /* every unordered pair was counted twice */
    return SAE_OK;
}

sae_status sae_ortho_penalty(double *penalty, float *grad, int64_t ldg, float grad_scale,
                             const float *W_dec, int64_t n_features, int64_t d, int64_t ld,
                             const int32_t *subset, int64_t n_subset, int32_t n_threads)
{
    return sae__ortho_penalty(penalty, grad, ldg, grad_scale, W_dec, n_features, d, ld, subset,
                              n_subset, n_threads, NULL);
}

sae_status sae__ortho_penalty(double *penalty, float *grad, int64_t ldg, float grad_scale,
                              const float *W_dec, int64_t n_features, int64_t d, int64_t ld,
                              const int32_t *subset, int64_t n_subset, int32_t n_threads,
                              const sae_allocator *allocator)
{
    if (!penalty)
        return sae__fail(SAE_EINVAL, "penalty is NULL");
    if (n_threads < 0)
        return sae__fail(SAE_EINVAL, "n_threads is %d, needs >= 0", (int)n_threads);
    sae__ortho_rows r;
    sae_status s = sae__ortho_rows_init(&r, W_dec, n_features, d, ld, subset, n_subset, 1);
    if (s != SAE_OK)
        return s;
    if (grad && ldg < d)
        return sae__fail(SAE_ESHAPE, "leading dimension of grad is %lld, needs >= %lld",
                         (long long)ldg, (long long)d);
    int64_t T = sae__ortho_tile_rows(d, r.n);
    size_t blocks = (size_t)((subset ? 2 : 0) + (grad ? 1 : 0));
    work w = {0};
    w.G = sae__alloc_array(allocator, (size_t)(T * T) + blocks * (size_t)(T * d),
                           sizeof(float));
    w.rowsq = sae__alloc_array(allocator, (size_t)T, sizeof(double));
    if (w.G && w.rowsq) {
        float *next = w.G + T * T;
        if (subset) {
            w.abuf = next, next += T * d;
            w.bbuf = next, next += T * d;
        }
        if (grad)
            w.acc = next;
        s = penalty_tiled(&r, T, sae__threads(n_threads), &w, penalty, grad, ldg, grad_scale);
    } else {
        s = SAE_ENOMEM;
    }
    sae__free(allocator, w.G);
    sae__free(allocator, w.rowsq);
    return s;
}

sae_status sae_ortho_dict_penalty(double *penalty, float *grad, int64_t ldg, float grad_scale,
                                  const sae_dict *dict, const int32_t *subset, int64_t n_subset,
                                  int32_t n_threads)
{
    const float *W;
    int64_t F, d;
    sae_status s = sae__ortho_dict_decoder(dict, &W, &F, &d);
    if (s != SAE_OK)
        return s;
    return sae_ortho_penalty(penalty, grad, ldg, grad_scale, W, F, d, d, subset, n_subset,
                             n_threads);
}
