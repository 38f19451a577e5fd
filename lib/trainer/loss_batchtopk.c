/* loss_batchtopk.c: BatchTopK loss with AuxK and its sparse backward, and the inference
 * threshold rule.
 *
 * As TopK (loss_topk.c) with the selection taken over the whole batch:
 *   v_bj = (t_bj + b_enc_j) s_j   (ReLU'd first when ReLU comes first; s_j = ||d_j|| or 1)
 *   kept = the k n largest v_bj of the batch (ties to the lower row, then feature: radix select
 *          over all n F keys, select.c), so a row keeps any number of codes
 *   f_bj = ReLU(v_bj), u_bj = f_bj / s_j,  r_b = b_dec + sum_kept u_bj d_j - x_b
 *   dL/dpre_bj = a_b (r_b . d_j) [f_bj > 0] (the s_j cancel as in TopK)
 * AuxK (per row, over dead features) and its gradient are TopK's. Firing is a positive code
 * (dictionary_learning's `encoded.sum(0) > 0`, SAELens' `feature_acts > 0`). Work: the encoder
 * product, four passes over the n F keys, then O(k n d_in). */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

static inline float relu(float v) { return v > 0.0f ? v : 0.0f; }

/* The value selection ranks. scale: (F) or NULL. */
static inline float rank_value(const sae__train_cfg *c, float t, float b_enc, const float *scale,
                               int64_t j)
{
    const float v = scale ? (t + b_enc) * scale[j] : t + b_enc;
    return c->relu_first ? relu(v) : v;
}

/* Keep the k n largest: every code above the k-th key and the ties the radix select grants,
 * in row order (lowest rows first). Fills row_ptr, sel_idx and sel_f (the ranked value). */
static void select_batch(sae_trainer *t, int64_t n, const float *scale)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F;
    const int T = c->threads;
    uint32_t *keys = (uint32_t *)w->gpre; /* (n, F): BatchTopK has no dense gradient */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++)
        for (int64_t j = 0; j < F; j++)
            keys[b * F + j] =
                sae__select_key(rank_value(c, w->pre[b * F + j], t->p.b_enc[j], scale, j));
    int64_t granted = 0;
    const uint32_t kth = sae__radix_kth(keys, n * F, c->k * n, &granted);
    int64_t e = 0;
    w->row_ptr[0] = 0;
    for (int64_t b = 0; b < n; b++) {
        const uint32_t *kb = keys + b * F;
        for (int64_t j = 0; j < F; j++)
            if (kb[j] > kth || (kb[j] == kth && granted-- > 0)) {
                w->sel_idx[e] = (int32_t)j;
                w->sel_f[e++] = rank_value(c, w->pre[b * F + j], t->p.b_enc[j], scale, j);
            }
        w->row_ptr[b + 1] = e;
    }
}

/* Row b: codes f (sel_f), decode coefficients u (sel_u), residual into G[b], raw q = r . d_j
 * of the positive codes (sel_g), and the row's sums: ||r||^2, positive codes, smallest
 * positive code (INFINITY if none). */
static void forward_row(sae_trainer *t, int64_t b, const float *xb, const float *scale)
{
    sae__workspace *w = &t->ws;
    const int64_t d = t->cfg.d_in, e0 = w->row_ptr[b], m = w->row_ptr[b + 1] - e0;
    int32_t *idx = w->sel_idx + e0;
    float *u = w->sel_u + e0, *f = w->sel_f + e0, *q = w->sel_g + e0;
    double positive = 0, smallest = INFINITY;
    for (int64_t a = 0; a < m; a++) {
        f[a] = relu(f[a]);
        u[a] = scale ? f[a] / scale[idx[a]] : f[a];
        q[a] = 0.0f;
        if (f[a] > 0.0f) {
            positive += 1;
            smallest = f[a] < smallest ? f[a] : smallest;
        }
    }
    float *r = w->G + b * d;
    memcpy(r, t->p.b_dec, sizeof(float) * (size_t)d);
    sae__gather_axpy(m, idx, u, t->p.W_dec, d, r, d);
    for (int64_t i = 0; i < d; i++)
        r[i] -= xb[i];
    w->row_sums[b * 4 + 0] = sae__sumsq(r, d);
    w->row_sums[b * 4 + 1] = positive;
    w->row_sums[b * 4 + 3] = smallest;
    sae__gather_dots(m, idx, f, t->p.W_dec, d, r, d, q); /* kept zeros get no gradient */
}

/* Residuals and raw dot products of row b into gradients: a_b for the main codes, beta for
 * the kx AuxK codes. */
static void scale_row(sae_trainer *t, int64_t n, int64_t b, float a_b, int64_t kx, float beta)
{
    sae__workspace *w = &t->ws;
    const int64_t d = t->cfg.d_in;
    float *r = w->G + b * d;
    for (int64_t i = 0; i < d; i++)
        r[i] *= a_b;
    for (int64_t e = w->row_ptr[b]; e < w->row_ptr[b + 1]; e++)
        w->sel_g[e] *= a_b;
    float *y = w->G + (n + b) * d, *g = w->aux_g + b * kx;
    for (int64_t i = 0; kx > 0 && i < d; i++)
        y[i] *= beta;
    for (int64_t a = 0; a < kx; a++)
        g[a] *= beta;
}

sae_status sae__batchtopk_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                    sae__loss_terms *out)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    sae_status s = sae__encode_dense(t, n, x, ldx, NULL, NULL);
    if (s != SAE_OK)
        return s;
    const float *scale = c->rescale ? w->dec_norm : NULL;
    select_batch(t, n, scale);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++)
        forward_row(t, b, x + b * ldx, scale);

    /* Firing, dead mask, the reconstruction term. */
    memset(w->fired, 0, (size_t)F);
    for (int64_t e = 0; e < w->row_ptr[n]; e++)
        w->fired[w->sel_idx[e]] |= w->sel_f[e] > 0.0f;
    double sq = 0, positive = 0, smallest = INFINITY;
    for (int64_t b = 0; b < n; b++) {
        sq += w->row_sums[b * 4], positive += w->row_sums[b * 4 + 1];
        smallest = w->row_sums[b * 4 + 3] < smallest ? w->row_sums[b * 4 + 3] : smallest;
    }
    const int64_t n_dead = sae__dead_update(c, t->since_fired, w->fired, n, w->counts_next,
                                            w->dead, w->dead_list);
    const double tv = sae__total_variance(n, d, x, ldx);
    const double mse = sae__mse_terms(c, n, x, ldx, w->row_sums, 4, tv, w->row_factor);

    double aux = 0, beta = 0;
    const int64_t kx = sae__auxk_forward(t, n, n_dead, scale, tv, &aux, &beta);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 16)
    for (int64_t b = 0; b < n; b++)
        scale_row(t, n, b, w->row_factor[b], kx, (float)beta);

    sae__csc_build(w, F, n, 0, w->row_ptr, kx);
    sae__csc_accumulate(t, n);
    /* AuxK decodes with b_dec for SAELens and sparsify: its rows count for db_dec too. */
    const bool aux_bias = kx > 0 && c->auxk != SAE_AUXK_DICTIONARY_LEARNING;
    sae__b_dec_grad(t, aux_bias ? 2 * n : n, w->G);

    *out = (sae__loss_terms){
        .loss = mse + c->auxk_coefficient * aux, .mse = mse, .aux = aux,
        .fvu = tv > 0 ? sq / tv : NAN, .l0 = positive / (double)n, .n_dead = n_dead,
        .row_min_mean = -1.0, .min_positive = isfinite(smallest) ? smallest : -1.0,
    };
    return SAE_OK;
}

float sae__batchtopk_threshold(const sae__train_cfg *c, int64_t step, float theta, double m)
{
    const double beta = c->threshold_beta;
    if (c->batchtopk_threshold == SAE_BATCHTOPK_THRESHOLD_SAELENS)
        return m >= 0 ? (float)(beta * theta + (1.0 - beta) * m) : theta;
    if (step <= c->threshold_start_step)
        return theta;
    m = m >= 0 ? m : 0.0; /* dictionary_learning: min_activation = 0 without a positive code */
    return theta < 0 ? (float)m : (float)(beta * theta + (1.0 - beta) * m);
}
