/* sparse_grad.c: weight gradients from the kept codes of a TopK, BatchTopK or JumpReLU SAE, or
 * from the positive codes of a ReLU SAE whose L0 is small (MATH.md "Sparse backward").
 *
 * Each kept code (row r, feature j) contributes to row j of both weight gradients:
 *   dW_dec[j]  += cd * G[r]          cd: decode coefficient, G[r]: dL/dx_hat_r (or dL/de_aux)
 *   dW_encT[j] += ce * x'[r mod n]   ce: dL/dpre_rj
 *   db_enc[j]  += ce
 * Scattering the entries row by row would have threads write the same feature rows. Instead
 * the entries are transposed into per-feature lists (CSC, counting sort in row order), and
 * threads own disjoint ranges of features, balanced by their number of entries: every gradient
 * row is written by one thread only, and its sum runs in row order whatever the thread count,
 * so results are bit-identical from run to run and across thread counts.
 * Cache: a list reads whole rows of G and x' at random, so the cost is the bandwidth to them.
 * The main codes and the AuxK codes are accumulated in two sweeps, each over blocks of
 * ROW_BLOCK rows of G and x' (sae__csc_accumulate), so that the rows being read stay in L3.
 * Threads take the feature ranges dynamically; which thread sums a row does not change the
 * sum. */
#include <string.h>

#include "trainer_internal.h"

#define PARTS_MAX 256     /* feature ranges at most */
#define PREFETCH_AHEAD 2  /* entries whose rows are requested ahead of use */
#define ROW_BLOCK 1024    /* rows of G and x' per block: 6 MiB at d_in 768 */

/* Entries per feature of one list (rows b < n, entries [row_ptr[b], row_ptr[b + 1]), or
 * b * width.. when row_ptr is NULL); entries with no effect are dropped. */
static void count_entries(int64_t *ptr, int64_t n, int64_t width, const int64_t *row_ptr,
                          const int32_t *idx, const float *cd, const float *ce)
{
    const int64_t end = row_ptr ? row_ptr[n] : n * width;
    for (int64_t e = 0; e < end; e++)
        if (cd[e] != 0.0f || ce[e] != 0.0f)
            ptr[idx[e] + 1]++;
}

/* Append one list's entries, its rows numbered from row0, to the feature lists. */
static void fill_entries(sae__workspace *w, int64_t n, int64_t width, const int64_t *row_ptr,
                         int64_t row0, const int32_t *idx, const float *cd, const float *ce)
{
    for (int64_t b = 0; b < n; b++) {
        const int64_t e1 = row_ptr ? row_ptr[b + 1] : (b + 1) * width;
        for (int64_t e = row_ptr ? row_ptr[b] : b * width; e < e1; e++) {
            if (cd[e] == 0.0f && ce[e] == 0.0f)
                continue;
            int64_t at = w->csc_fill[idx[e]]++;
            w->csc_row[at] = (int32_t)(row0 + b);
            w->csc_cd[at] = cd[e];
            w->csc_ce[at] = ce[e];
        }
    }
}

void sae__csc_build(sae__workspace *w, int64_t F, int64_t n, int64_t k, const int64_t *row_ptr,
                    int64_t kx)
{
    int64_t *ptr = w->csc_ptr;
    memset(ptr, 0, sizeof(int64_t) * (size_t)(F + 1));
    count_entries(ptr, n, k, row_ptr, w->sel_idx, w->sel_u, w->sel_g);
    if (kx > 0)
        count_entries(ptr, n, kx, NULL, w->aux_idx, w->aux_c, w->aux_g);
    for (int64_t j = 0; j < F; j++)
        ptr[j + 1] += ptr[j];
    memcpy(w->csc_fill, ptr, sizeof(int64_t) * (size_t)F);
    fill_entries(w, n, k, row_ptr, 0, w->sel_idx, w->sel_u, w->sel_g);
    memcpy(w->csc_split, w->csc_fill, sizeof(int64_t) * (size_t)F);
    if (kx > 0)
        fill_entries(w, n, kx, NULL, n, w->aux_idx, w->aux_c, w->aux_g);
}

/* Gradient rows of feature j += the entries [e0, e1) of its list. Whole rows at a time: the
 * two output rows (2 d floats, 6 KiB at d_in 768) stay in L1 while each entry's rows of G and
 * x' stream in front to back. G: (2n, d); xp: (n, d). */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void feature_rows(int64_t d, int64_t n, int64_t e0, int64_t e1, const int32_t *rows,
                         const float *cd, const float *ce, const float *restrict G,
                         const float *restrict xp, float *restrict dWd, float *restrict dWe)
{
    for (int64_t e = e0; e < e1; e++) {
        if (e + PREFETCH_AHEAD < e1) { /* the rows of a later entry, requested in full */
            const int64_t rn = rows[e + PREFETCH_AHEAD];
            const float *gn = G + rn * d, *xn = xp + (rn < n ? rn : rn - n) * d;
            for (int64_t i = 0; i < d; i += 16)
                __builtin_prefetch(gn + i), __builtin_prefetch(xn + i);
        }
        const int64_t r = rows[e];
        const float *restrict gd = G + r * d, *restrict ge = xp + (r < n ? r : r - n) * d;
        const float a = cd[e], c = ce[e];
        for (int64_t i = 0; i < d; i++) {
            dWd[i] += a * gd[i];
            dWe[i] += c * ge[i];
        }
    }
}

void sae__csc_accumulate(sae_trainer *t, int64_t n)
{
    sae__workspace *w = &t->ws;
    const int64_t F = t->cfg.F, d = t->cfg.d_in;
    const int T = t->cfg.threads;
    /* Feature ranges of equal cost (a feature costs its entries plus one row write), several
     * per thread, taken dynamically: a thread that loses its core for a while (a shared
     * machine) leaves its remaining ranges to the others. */
    const int64_t total = w->csc_ptr[F] + F;
    int64_t bounds[PARTS_MAX + 1];
    const int parts = T > 1 ? (8 * T < PARTS_MAX ? 8 * T : PARTS_MAX) : 1;
    bounds[0] = 0;
    for (int p = 1, j = 0; p <= parts; p++) {
        const int64_t goal = total * p / parts;
        while (j < F && w->csc_ptr[j] + j < goal)
            j++;
        bounds[p] = p == parts ? F : j;
    }
    /* Two sweeps, the main codes (rows of G below n) then the AuxK codes (rows n..2n), each in
     * blocks of ROW_BLOCK rows: a list's entries are in row order, so each feature continues
     * from a cursor (the spent fill cursors) with the entries of the block. The block's rows of
     * G and x' (6 MiB) stay in L3 for every feature that reads them, where a whole sweep's
     * (25 MB) would not; the output rows are read and written once per block instead. The
     * sums run in the same order as in one pass. */
    int64_t *cursor = w->csc_fill;
    memcpy(cursor, w->csc_ptr, sizeof(int64_t) * (size_t)F);
    for (int sweep = 0; sweep < 2; sweep++)
        for (int64_t b0 = 0; b0 < n; b0 += ROW_BLOCK) {
            const int64_t stop = sweep * n + (n - b0 < ROW_BLOCK ? n : b0 + ROW_BLOCK);
            const bool first = sweep == 0 && b0 == 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1 && parts > 1)
            for (int p = 0; p < parts; p++)
                for (int64_t j = bounds[p]; j < bounds[p + 1]; j++) {
                    float *dWd = t->gp.W_dec + j * d, *dWe = t->gp.W_encT + j * d;
                    if (first) {
                        memset(dWd, 0, sizeof(float) * (size_t)d);
                        memset(dWe, 0, sizeof(float) * (size_t)d);
                    }
                    const int64_t e0 = cursor[j], end = sweep ? w->csc_ptr[j + 1] : w->csc_split[j];
                    int64_t e1 = e0;
                    while (e1 < end && w->csc_row[e1] < stop)
                        e1++;
                    feature_rows(d, n, e0, e1, w->csc_row, w->csc_cd, w->csc_ce, w->G, w->xp,
                                 dWd, dWe);
                    cursor[j] = e1;
                }
        }
#pragma omp parallel for schedule(dynamic, 256) num_threads(T) if (T > 1)
    for (int64_t j = 0; j < F; j++) {
        double s = 0;
        for (int64_t e = w->csc_ptr[j]; e < w->csc_ptr[j + 1]; e++)
            s += w->csc_ce[e];
        t->gp.b_enc[j] = (float)s;
    }
}

void sae__sparse_accumulate_ref(int64_t F, int64_t d, int64_t n, int64_t k,
                                const int64_t *row_ptr, const int32_t *idx, const float *cd,
                                const float *ce, int64_t kx, const int32_t *aux_idx,
                                const float *aux_cd, const float *aux_ce, const float *G,
                                const float *xp, sae__params *grad)
{
    memset(grad->W_dec, 0, sizeof(float) * (size_t)(F * d));
    memset(grad->W_encT, 0, sizeof(float) * (size_t)(F * d));
    memset(grad->b_enc, 0, sizeof(float) * (size_t)F);
    for (int pass = 0; pass < 2; pass++) {
        const int64_t width = pass ? kx : k;
        const int64_t *rp = pass ? NULL : row_ptr;
        const int32_t *ids = pass ? aux_idx : idx;
        const float *a = pass ? aux_cd : cd, *c = pass ? aux_ce : ce;
        for (int64_t b = 0; b < n; b++)
            for (int64_t e = rp ? rp[b] : b * width; e < (rp ? rp[b + 1] : (b + 1) * width);
                 e++) {
                const int64_t j = ids[e];
                for (int64_t i = 0; i < d; i++) {
                    grad->W_dec[j * d + i] += a[e] * G[(pass * n + b) * d + i];
                    grad->W_encT[j * d + i] += c[e] * xp[b * d + i];
                }
                grad->b_enc[j] += c[e];
            }
    }
}
