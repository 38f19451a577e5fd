/* coherence.c: coherence statistics of decoder rows (ortho.h, sae_coherence), from one pass
 * over the upper triangle of Gram tiles.
 *
 * For blocks A (rows i0.., mi) and B (rows j0.., nj) of S with j0 >= i0: G = A B^T (mi, nj)
 * raw dot products by sgemm; cos_ab = |G_ab| inv_a inv_b with inv = 1 / ||d|| (0 for a zero
 * row), clamped to 1 against rounding. One vectorised pass over the tile (rows spread over the
 * threads; pairs b > a on the diagonal tile) adds |cos|, cos^2 and G^2 to per-row sums in
 * double, takes each row's max and raises per-thread column maxima, which are merged after the
 * pass (a max is exact, so the merge order does not matter). Per-row sums are added in row
 * order, so the result does not depend on the thread count. Memory: a (T, T) tile, two (T, d)
 * blocks, (threads, T) column maxima, O(n) norms and maxima. */
#include <math.h>
#include <string.h>

#include <omp.h>

#include "ortho_internal.h"

typedef struct work {
    float *G, *abuf, *bbuf; /* (T, T), (T, d), (T, d) */
    float *inv;             /* (n): 1 / ||d_k||, 0 for zero rows */
    float *fmax;            /* (n): max_{j != k} |cos_kj| so far */
    float *colmax;          /* (threads, T): column maxima of the current tile, per thread */
    double *row;            /* (T, 3): sum |cos|, sum cos^2, sum G^2 of row a of the block */
    float *row_best;        /* (T) */
    int64_t *row_arg;       /* (T): column (index into S) of row_best */
} work;

/* |cos| of one tile entry: g the raw product, ia and ib the inverse norms. */
static inline float cos_of(float g, float ia, float ib)
{
    float c = fabsf(g) * ia * ib;
    return c < 1.0f ? c : 1.0f;
}

/* Columns b0..nj of one tile row g: adds sum |cos|, sum cos^2 and sum g^2 to acc, raises
 * colmax[b] to |cos_b| and returns the row's max |cos| (-1 when b0 >= nj). inv: the columns'
 * inverse norms. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static float fold_row(const float *g, const float *inv, float ia, int64_t b0, int64_t nj,
                      float *colmax, double *acc)
{
    double s1 = 0, s2 = 0, s3 = 0;
    float best = -1.0f;
#pragma omp simd reduction(+ : s1, s2, s3) reduction(max : best)
    for (int64_t b = b0; b < nj; b++) {
        float c = cos_of(g[b], ia, inv[b]);
        s1 += c, s2 += (double)c * c, s3 += (double)g[b] * g[b];
        best = c > best ? c : best;
        colmax[b] = c > colmax[b] ? c : colmax[b];
    }
    acc[0] += s1, acc[1] += s2, acc[2] += s3;
    return best;
}

/* Fold tile G (mi, nj) of rows i0.., columns j0.. into the work sums. */
static void fold_tile(const work *w, const float *G, int64_t i0, int64_t mi, int64_t j0,
                      int64_t nj, int threads)
{
    const bool diag = i0 == j0;
    const int used = threads > 1 && mi > 64 ? threads : 1;
    memset(w->colmax, 0, (size_t)(used * nj) * sizeof(float)); /* |cos| >= 0 */
#pragma omp parallel num_threads(used) if (used > 1)
    {
        float *colmax = w->colmax + (int64_t)omp_get_thread_num() * nj;
#pragma omp for schedule(dynamic, 16)
        for (int64_t a = 0; a < mi; a++) {
            const float *g = G + a * nj, ia = w->inv[i0 + a];
            const int64_t b0 = diag ? a + 1 : 0;
            float best = fold_row(g, w->inv + j0, ia, b0, nj, colmax, w->row + 3 * a);
            if (best > w->row_best[a]) { /* a new row max: its first column, as a scan finds */
                int64_t b = b0;
                while (b + 1 < nj && cos_of(g[b], ia, w->inv[j0 + b]) != best)
                    b++;
                w->row_best[a] = best, w->row_arg[a] = j0 + b;
            }
            if (best > w->fmax[i0 + a])
                w->fmax[i0 + a] = best;
        }
    }
    for (int t = 0; t < used; t++)
        for (int64_t b = 0; b < nj; b++)
            if (w->colmax[t * nj + b] > w->fmax[j0 + b])
                w->fmax[j0 + b] = w->colmax[t * nj + b];
}

static sae_status coherence_tiled(const sae__ortho_rows *r, int64_t T, int threads, work *w,
                                  sae__coherence_sums *sums)
{
    const int64_t n = r->n, d = r->d;
    *sums = (sae__coherence_sums){.n = n, .d = d, .max_cos = -1.0, .max_i = -1, .max_j = -1};
    for (int64_t k = 0; k < n; k++) {
        const float *x = r->W + sae__ortho_id(r, k) * r->ld;
        double sq = 0;
        for (int64_t c = 0; c < d; c++)
            sq += (double)x[c] * x[c];
        w->inv[k] = sq > 0 ? (float)(1.0 / sqrt(sq)) : 0.0f;
        sums->n_zero += sq == 0;
        sums->sum_sq += sq;
        sums->sum_diag2 += sq * sq;
        w->fmax[k] = 0.0f;
    }
    for (int64_t i0 = 0; i0 < n; i0 += T) {
        int64_t mi = n - i0 < T ? n - i0 : T, lda;
        const float *A = sae__ortho_block(r, i0, mi, w->abuf, &lda);
        memset(w->row, 0, (size_t)(3 * mi) * sizeof(double));
        for (int64_t a = 0; a < mi; a++)
            w->row_best[a] = -1.0f, w->row_arg[a] = -1;
        for (int64_t j0 = i0; j0 < n; j0 += T) {
            int64_t nj = n - j0 < T ? n - j0 : T, ldb = lda;
            const float *B = j0 == i0 ? A : sae__ortho_block(r, j0, nj, w->bbuf, &ldb);
            sae_status s = sae__sgemm(false, true, mi, nj, d, 1.0f, A, lda, B, ldb, 0.0f, w->G,
                                      nj, threads);
            if (s != SAE_OK)
                return s;
            fold_tile(w, w->G, i0, mi, j0, nj, threads);
        }
        for (int64_t a = 0; a < mi; a++) {
            sums->sum_cos += w->row[3 * a];
            sums->sum_cos2 += w->row[3 * a + 1];
            sums->sum_raw2 += w->row[3 * a + 2];
            if (w->row_best[a] > sums->max_cos) { /* pair (column, row): column is later in S */
                sums->max_cos = w->row_best[a];
                sums->max_i = sae__ortho_id(r, w->row_arg[a]);
                sums->max_j = sae__ortho_id(r, i0 + a);
            }
        }
    }
    return SAE_OK;
}

sae_status sae_ortho_coherence(sae_coherence *out, float *feature_max_cos, const float *W_dec,
                               int64_t n_features, int64_t d, int64_t ld, const int32_t *subset,
                               int64_t n_subset, int32_t n_threads)
{
    if (!out || out->struct_size < sizeof(uint32_t))
        return sae__fail(SAE_EINVAL, "out is NULL or its struct_size is not set "
                         "(use SAE_COHERENCE_INIT)");
    if (n_threads < 0)
        return sae__fail(SAE_EINVAL, "n_threads is %d, needs >= 0", (int)n_threads);
    sae__ortho_rows r;
    sae_status s = sae__ortho_rows_init(&r, W_dec, n_features, d, ld, subset, n_subset, 2);
    if (s != SAE_OK)
        return s;
    const int64_t T = sae__ortho_tile_rows(d, r.n), n = r.n;
    const int threads = sae__threads(n_threads);
    work w = {0};
    /* floats: G (T, T), row_best (T), colmax (threads, T), inv (n), abuf and bbuf (T, d) */
    w.G = sae__alloc_array(NULL, (size_t)(T * T + (1 + threads) * T + n +
                                          (subset ? 2 * T * d : 0)), sizeof(float));
    w.row = sae__alloc_array(NULL, (size_t)(3 * T), sizeof(double));
    w.row_arg = sae__alloc_array(NULL, (size_t)T, sizeof(int64_t));
    w.fmax = feature_max_cos ? feature_max_cos
                             : sae__alloc_array(NULL, (size_t)n, sizeof(float));
    sae__coherence_sums sums;
    if (w.G && w.row && w.row_arg && w.fmax) {
        w.row_best = w.G + T * T;
        w.colmax = w.row_best + T;
        w.inv = w.colmax + threads * T;
        if (subset)
            w.abuf = w.inv + n, w.bbuf = w.abuf + T * d;
        s = coherence_tiled(&r, T, threads, &w, &sums);
    } else {
        s = SAE_ENOMEM;
    }
    if (s == SAE_OK) {
        sae_coherence full;
        sae__coherence_finish(&full, &sums, w.fmax);
        sae__write_options(out, &full, sizeof full);
    }
    sae__free(NULL, w.G);
    sae__free(NULL, w.row);
    sae__free(NULL, w.row_arg);
    if (w.fmax != feature_max_cos)
        sae__free(NULL, w.fmax);
    return s;
}

sae_status sae_ortho_dict_coherence(sae_coherence *out, float *feature_max_cos,
                                    const sae_dict *dict, const int32_t *subset,
                                    int64_t n_subset, int32_t n_threads)
{
    const float *W;
    int64_t F, d;
    sae_status s = sae__ortho_dict_decoder(dict, &W, &F, &d);
    if (s != SAE_OK)
        return s;
    return sae_ortho_coherence(out, feature_max_cos, W, F, d, d, subset, n_subset, n_threads);
}
