/* sparse_grad.c: weight gradients from the kept codes of a TopK, BatchTopK or JumpReLU SAE
 * (MATH.md "Sparse backward").
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
 * Cache: a list reads whole rows of G and x' at random, so the cost is the bandwidth from L3.
 * The main codes and the AuxK codes are accumulated in two sweeps, each reading half of G
 * (with x': 25 MB at n = 4096, d_in = 768, inside a 32 MB L3); within a list the columns go in
 * blocks of 64 so that the two accumulators stay in registers. */
#include <string.h>

#include "trainer_internal.h"

#define BLOCK 64

/* Entries per feature of one list (n rows of `width` codes); entries with no effect are dropped. */
static void count_entries(int64_t *ptr, int64_t n, int64_t width, const int32_t *idx,
                          const float *cd, const float *ce)
{
    for (int64_t e = 0; e < n * width; e++)
        if (cd[e] != 0.0f || ce[e] != 0.0f)
            ptr[idx[e] + 1]++;
}

/* Append one list's entries, its rows numbered from row0, to the feature lists. */
static void fill_entries(sae__workspace *w, int64_t n, int64_t width, int64_t row0,
                         const int32_t *idx, const float *cd, const float *ce)
{
    for (int64_t b = 0; b < n; b++)
        for (int64_t a = 0; a < width; a++) {
            int64_t e = b * width + a;
            if (cd[e] == 0.0f && ce[e] == 0.0f)
                continue;
            int64_t at = w->csc_fill[idx[e]]++;
            w->csc_row[at] = (int32_t)(row0 + b);
            w->csc_cd[at] = cd[e];
            w->csc_ce[at] = ce[e];
        }
}

/* Per-feature counts (csc_ptr[j + 1]) to list starts, and the fill cursors at the starts. */
static void start_lists(sae__workspace *w, int64_t F)
{
    for (int64_t j = 0; j < F; j++)
        w->csc_ptr[j + 1] += w->csc_ptr[j];
    memcpy(w->csc_fill, w->csc_ptr, sizeof(int64_t) * (size_t)F);
}

void sae__csc_build(sae__workspace *w, int64_t F, int64_t n, int64_t k, int64_t kx)
{
    int64_t *ptr = w->csc_ptr;
    memset(ptr, 0, sizeof(int64_t) * (size_t)(F + 1));
    count_entries(ptr, n, k, w->sel_idx, w->sel_u, w->sel_g);
    if (kx > 0)
        count_entries(ptr, n, kx, w->aux_idx, w->aux_c, w->aux_g);
    start_lists(w, F);
    fill_entries(w, n, k, 0, w->sel_idx, w->sel_u, w->sel_g);
    memcpy(w->csc_split, w->csc_fill, sizeof(int64_t) * (size_t)F);
    if (kx > 0)
        fill_entries(w, n, kx, n, w->aux_idx, w->aux_c, w->aux_g);
}

void sae__csc_build_rows(sae__workspace *w, int64_t F, int64_t n, int64_t kx)
{
    int64_t *ptr = w->csc_ptr;
    const int64_t *rp = w->row_ptr;
    memset(ptr, 0, sizeof(int64_t) * (size_t)(F + 1));
    count_entries(ptr, 1, rp[n], w->sel_idx, w->sel_u, w->sel_g);
    if (kx > 0)
        count_entries(ptr, n, kx, w->aux_idx, w->aux_c, w->aux_g);
    start_lists(w, F);
    for (int64_t b = 0; b < n; b++) /* row b's codes as a one-row list numbered from b */
        fill_entries(w, 1, rp[b + 1] - rp[b], b, w->sel_idx + rp[b], w->sel_u + rp[b],
                     w->sel_g + rp[b]);
    memcpy(w->csc_split, w->csc_fill, sizeof(int64_t) * (size_t)F);
    if (kx > 0)
        fill_entries(w, n, kx, n, w->aux_idx, w->aux_c, w->aux_g);
}

/* Gradient rows of feature j from its list [e0, e1), added to what they hold when `add`.
 * G: (2n, d); xp: (n, d). */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void feature_rows(int64_t d, int64_t n, int64_t e0, int64_t e1, const int32_t *rows,
                         const float *cd, const float *ce, const float *restrict G,
                         const float *restrict xp, bool add, float *restrict dWd,
                         float *restrict dWe)
{
    for (int64_t i0 = 0; i0 < d; i0 += BLOCK) {
        const int64_t w = d - i0 < BLOCK ? d - i0 : BLOCK;
        float accd[BLOCK] = {0}, acce[BLOCK] = {0};
        if (add) {
            memcpy(accd, dWd + i0, sizeof(float) * (size_t)w);
            memcpy(acce, dWe + i0, sizeof(float) * (size_t)w);
        }
        for (int64_t e = e0; e < e1; e++) {
            const int64_t r = rows[e];
            const float *gd = G + r * d + i0, *ge = xp + (r < n ? r : r - n) * d + i0;
            const float a = cd[e], c = ce[e];
            if (w == BLOCK) { /* fixed trip count: the accumulators live in registers */
                for (int64_t i = 0; i < BLOCK; i++)
                    accd[i] += a * gd[i], acce[i] += c * ge[i];
            } else {
                for (int64_t i = 0; i < w; i++)
                    accd[i] += a * gd[i], acce[i] += c * ge[i];
            }
        }
        memcpy(dWd + i0, accd, sizeof(float) * (size_t)w);
        memcpy(dWe + i0, acce, sizeof(float) * (size_t)w);
    }
}

void sae__csc_accumulate(sae_trainer *t, int64_t n)
{
    const sae__workspace *w = &t->ws;
    const int64_t F = t->cfg.F, d = t->cfg.d_in;
    const int T = t->cfg.threads;
    /* Feature ranges of equal cost: a feature costs its entries plus one row write. */
    const int64_t total = w->csc_ptr[F] + F;
    int64_t bounds[257];
    const int parts = T < 256 ? T : 256;
    bounds[0] = 0;
    for (int p = 1, j = 0; p <= parts; p++) {
        const int64_t goal = total * p / parts;
        while (j < F && w->csc_ptr[j] + j < goal)
            j++;
        bounds[p] = p == parts ? F : j;
    }
    /* Two sweeps: the main codes (rows of G below n), then the AuxK codes (rows n..2n) on top,
     * so each sweep's rows of G and x' (2 x 12.6 MB at n = 4096, d_in = 768) fit in L3. The
     * sums run in the same order as in one sweep. */
    for (int sweep = 0; sweep < 2; sweep++) {
#pragma omp parallel for schedule(static, 1) num_threads(parts) if (parts > 1)
        for (int p = 0; p < parts; p++)
            for (int64_t j = bounds[p]; j < bounds[p + 1]; j++) {
                const int64_t e0 = sweep ? w->csc_split[j] : w->csc_ptr[j];
                const int64_t e1 = sweep ? w->csc_ptr[j + 1] : w->csc_split[j];
                if (sweep && e0 == e1)
                    continue;
                feature_rows(d, n, e0, e1, w->csc_row, w->csc_cd, w->csc_ce, w->G, w->xp,
                             sweep, t->gp.W_dec + j * d, t->gp.W_encT + j * d);
            }
    }
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int64_t j = 0; j < F; j++) {
        double s = 0;
        for (int64_t e = w->csc_ptr[j]; e < w->csc_ptr[j + 1]; e++)
            s += w->csc_ce[e];
        t->gp.b_enc[j] = (float)s;
    }
}

void sae__sparse_accumulate_ref(int64_t F, int64_t d, int64_t n, int64_t k, const int32_t *idx,
                                const float *cd, const float *ce, int64_t kx,
                                const int32_t *aux_idx, const float *aux_cd, const float *aux_ce,
                                const float *G, const float *xp, sae__params *grad)
{
    memset(grad->W_dec, 0, sizeof(float) * (size_t)(F * d));
    memset(grad->W_encT, 0, sizeof(float) * (size_t)(F * d));
    memset(grad->b_enc, 0, sizeof(float) * (size_t)F);
    for (int pass = 0; pass < 2; pass++) {
        const int64_t width = pass ? kx : k;
        const int32_t *ids = pass ? aux_idx : idx;
        const float *a = pass ? aux_cd : cd, *c = pass ? aux_ce : ce;
        for (int64_t b = 0; b < n; b++)
            for (int64_t e = b * width; e < (b + 1) * width; e++) {
                const int64_t j = ids[e];
                for (int64_t i = 0; i < d; i++) {
                    grad->W_dec[j * d + i] += a[e] * G[(pass * n + b) * d + i];
                    grad->W_encT[j * d + i] += c[e] * xp[b * d + i];
                }
                grad->b_enc[j] += c[e];
            }
    }
}
