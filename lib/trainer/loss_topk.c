/* loss_topk.c: TopK loss with AuxK and its sparse backward (MATH.md "Sparse backward").
 *
 * Only the encoder product t = x' W_enc (n, F) is dense. Per row b (threads own rows):
 *   v_j = (t_bj + b_enc_j) s_j    s_j = ||d_j|| when rescaling (SAELens), else 1
 *   S_b = the k largest v_j (of ReLU(v_j) when ReLU comes first)
 *   f_bj = ReLU(v_bj), u_bj = f_bj / s_j                        (j in S_b)
 *   r_b = b_dec + sum_{S_b} u_bj d_j - x_b                       (= x_hat_b - x_b)
 *   q_bj = r_b . d_j                                             (d_j still in cache)
 * AuxK, once every row's firing is known (dictionary_learning's dead rule needs the batch),
 * over the dead features D:
 *   A_b = the kx largest cand_j = v_bj (SAELens) or ReLU(v_bj), j in D;  c_bj = cand_j / s_j
 *   y_b = [b_dec] + sum_{A_b} c_bj d_j + r_b                     (= e_aux_b - (x_b - x_hat_b))
 *   q'_bj = y_b . d_j
 * Loss = mse(r) + auxk_coefficient * aux(y); dL/dx_hat_b = a_b r_b, dL/de_aux_b = beta y_b:
 *   dL/dpre_bj = a_b q_bj [f_bj > 0]          dL/dpre_bj (AuxK) = beta q'_bj [cand' > 0]
 * (no encoder gradient from AuxK for sparsify). Rescaling leaves these unchanged: the
 * gradients through s_j in the selection and in the decode cancel exactly, so ||d_j|| gets
 * none. The weight gradients are sums over the kept codes (sparse_grad.c); only k + kx
 * decoder rows per batch row are ever read. */
#include <math.h>
#include <string.h>

#include <omp.h>

#include "../kernels/kernels.h"
#include "trainer_internal.h"

static inline float relu(float v) { return v > 0.0f ? v : 0.0f; }

/* y (d) = y - x, returning sum y^2 */
static double subtract_sq(int64_t d, float *restrict y, const float *restrict x)
{
    for (int64_t i = 0; i < d; i++)
        y[i] -= x[i];
    return sae__sumsq(y, d);
}

/* The top-k selection of one row t (x' W_enc, F) into idx / val: v = (t + b_enc) s, ReLU'd
 * first when the convention says so, built in the thread's scratch row. */
static void select_row(const sae__train_cfg *c, const float *t, const float *b_enc,
                       const float *scale, float *v, void *heap, int32_t *idx, float *val)
{
    const int64_t F = c->F;
    if (scale && c->relu_first)
        for (int64_t j = 0; j < F; j++)
            v[j] = relu((t[j] + b_enc[j]) * scale[j]);
    else if (scale)
        for (int64_t j = 0; j < F; j++)
            v[j] = (t[j] + b_enc[j]) * scale[j];
    else if (c->relu_first)
        for (int64_t j = 0; j < F; j++)
            v[j] = relu(t[j] + b_enc[j]);
    else
        for (int64_t j = 0; j < F; j++)
            v[j] = t[j] + b_enc[j];
    sae__topk_select(v, F, c->k, idx, val, heap);
}

/* Forward of row b: selection, decode, residual into G[b], raw q into sel_g. */
static void main_row(sae_trainer *t, int64_t b, const float *xb, const float *scale, float *v,
                     void *heap)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in, k = c->k;
    int32_t *idx = w->sel_idx + b * k;
    float *u = w->sel_u + b * k, *f = w->sel_f + b * k, *q = w->sel_g + b * k;
    select_row(c, w->pre + b * F, t->p.b_enc, scale, v, heap, idx, f);
    double positive = 0, smallest = INFINITY;
    for (int64_t a = 0; a < k; a++) {
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
    sae__gather_axpy(k, idx, u, t->p.W_dec, d, r, d);
    w->row_sums[b * 4 + 0] = subtract_sq(d, r, xb);
    w->row_sums[b * 4 + 1] = positive;
    w->row_sums[b * 4 + 3] = smallest;
    sae__gather_dots(k, idx, f, t->p.W_dec, d, r, d, q); /* kept zeros get no gradient */
}

/* Columns per pass of the AuxK decode: the k_aux decoder row pieces one pass reads (384 x 128
 * floats = 192 KiB at d_in 768) stay in L2 for the dot products that follow. */
#define AUX_COLS 128

/* AuxK forward of row b over the n_dead dead features: selection, decode, y into G[n + b],
 * raw q' (masked) into aux_g. cand: (F) scratch, keys: (F) scratch. */
static void aux_row(sae_trainer *t, int64_t n, int64_t b, int64_t n_dead, int64_t kx,
                    const float *scale, float *cand, uint32_t *keys)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const float *pre = w->pre + b * F;
    const int32_t *dead = w->dead_list;
    for (int64_t a = 0; a < n_dead; a++) {
        const int32_t j = dead[a];
        const float pj = pre[j] + t->p.b_enc[j];
        const float vj = scale ? pj * scale[j] : pj;
        cand[a] = c->auxk == SAE_AUXK_SAELENS ? vj : relu(vj);
    }
    int32_t *idx = w->aux_idx + b * kx;
    float *cc = w->aux_c + b * kx, *g = w->aux_g + b * kx;
    sae__select_large(cand, n_dead, kx, keys, idx, g); /* g holds the candidates for now */
    float *q = cand; /* the candidates are no longer needed: (kx) dot products */
    for (int64_t a = 0; a < kx; a++) {
        const int32_t j = dead[idx[a]];
        idx[a] = j;
        cc[a] = scale ? g[a] / scale[j] : g[a];
        /* which codes send a gradient to the encoder: ReLU'(cand) > 0, and never for
         * sparsify (its FusedEncoder.backward ignores them) */
        const bool passes = c->auxk == SAE_AUXK_SAELENS || g[a] > 0.0f;
        g[a] = passes && c->auxk != SAE_AUXK_SPARSIFY ? 1.0f : 0.0f;
        q[a] = 0.0f;
    }
    float *y = w->G + (n + b) * d;
    const float *r = w->G + b * d;
    double sq = 0;
    for (int64_t i0 = 0; i0 < d; i0 += AUX_COLS) {
        const int64_t width = d - i0 < AUX_COLS ? d - i0 : AUX_COLS;
        for (int64_t i = i0; i < i0 + width; i++) /* decoder() has no bias in dictionary_learning */
            y[i] = c->auxk == SAE_AUXK_DICTIONARY_LEARNING ? 0.0f : t->p.b_dec[i];
        sae__gather_axpy(kx, idx, cc, t->p.W_dec + i0, d, y + i0, width);
        for (int64_t i = i0; i < i0 + width; i++)
            y[i] += r[i];
        sq += sae__sumsq(y + i0, width);
        sae__gather_dots(kx, idx, g, t->p.W_dec + i0, d, y + i0, width, q);
    }
    w->row_sums[b * 4 + 2] = sq;
    for (int64_t a = 0; a < kx; a++)
        g[a] = g[a] != 0.0f ? q[a] : 0.0f;
}

/* The AuxK scalars: the term before its coefficient, and beta with dL/de_aux = beta y. */
static double aux_terms(const sae__train_cfg *c, int64_t n, int64_t n_dead, double sum_sq,
                        double tv, double residual_tv, double *beta)
{
    const double coef = c->auxk_coefficient;
    double scale = (double)n_dead / (double)c->k_aux, aux;
    scale = scale < 1 ? scale : 1;
    if (c->auxk == SAE_AUXK_SAELENS) {
        aux = scale * sum_sq / (double)n;
        *beta = coef * 2.0 * scale / (double)n;
    } else if (c->auxk == SAE_AUXK_SPARSIFY) {
        aux = scale * sum_sq / tv;
        *beta = coef * 2.0 * scale / tv;
    } else { /* mean ||y||^2 / mean ||e - mean e||^2; nan_to_num(0) when the residual is constant */
        aux = residual_tv > 0 ? sum_sq / residual_tv : 0.0;
        *beta = residual_tv > 0 ? coef * 2.0 / residual_tv : 0.0;
    }
    return aux;
}

int64_t sae__auxk_forward(sae_trainer *t, int64_t n, int64_t n_dead, const float *scale,
                          double tv, double *aux, double *beta)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const int64_t kx = c->auxk_coefficient > 0 && n_dead > 0
                           ? (c->k_aux < n_dead ? c->k_aux : n_dead) : 0;
    *aux = 0, *beta = 0;
    if (kx == 0)
        return 0;
    const double residual_tv =
        c->auxk == SAE_AUXK_DICTIONARY_LEARNING ? sae__total_variance(n, d, w->G, d) : 0;
#pragma omp parallel num_threads(c->threads) if (c->threads > 1 && n > 1)
    {
        char *mine = w->thread_scratch + (size_t)omp_get_thread_num() * w->scratch_bytes;
        float *cand = (float *)mine;
        uint32_t *keys = (uint32_t *)(mine + sizeof(float) * (size_t)F);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < n; b++)
            aux_row(t, n, b, n_dead, kx, scale, cand, keys);
    }
    double aux_sq = 0;
    for (int64_t b = 0; b < n; b++)
        aux_sq += w->row_sums[b * 4 + 2];
    *aux = aux_terms(c, n, n_dead, aux_sq, tv, residual_tv, beta);
    return kx;
}

/* Scale the residuals and raw dot products into gradients. */
static void scale_row(sae_trainer *t, int64_t n, int64_t b, float a_b, int64_t kx, float beta)
{
    sae__workspace *w = &t->ws;
    const int64_t d = t->cfg.d_in, k = t->cfg.k;
    float *r = w->G + b * d, *q = w->sel_g + b * k;
    for (int64_t i = 0; i < d; i++)
        r[i] *= a_b;
    for (int64_t a = 0; a < k; a++)
        q[a] *= a_b;
    if (kx > 0) {
        float *y = w->G + (n + b) * d, *g = w->aux_g + b * kx;
        for (int64_t i = 0; i < d; i++)
            y[i] *= beta;
        for (int64_t a = 0; a < kx; a++)
            g[a] *= beta;
    }
}

sae_status sae__topk_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                               sae__loss_terms *out)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in, k = c->k;
    sae_status s = sae__encode_dense(t, n, x, ldx);
    if (s != SAE_OK)
        return s;
    const float *scale = c->rescale ? w->dec_norm : NULL;

#pragma omp parallel num_threads(c->threads) if (c->threads > 1 && n > 1)
    {
        char *mine = w->thread_scratch + (size_t)omp_get_thread_num() * w->scratch_bytes;
        float *v = (float *)mine;
        void *heap = mine + 8 * (size_t)F;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < n; b++)
            main_row(t, b, x + b * ldx, scale, v, heap);
    }

    /* Firing (a positive code for SAELens' rule, being kept for the token rules), dead mask. */
    memset(w->fired, 0, (size_t)F);
    const bool kept_counts = c->dead_rule != SAE_DEAD_STEPS;
    double sum_pos = 0, sum_min = 0, rows_min = 0;
    for (int64_t b = 0; b < n; b++) {
        for (int64_t a = 0; a < k; a++)
            if (kept_counts || w->sel_f[b * k + a] > 0.0f)
                w->fired[w->sel_idx[b * k + a]] = 1;
        sum_pos += w->row_sums[b * 4 + 1];
        if (isfinite(w->row_sums[b * 4 + 3]))
            sum_min += w->row_sums[b * 4 + 3], rows_min += 1;
    }
    const int64_t n_dead = sae__dead_update(c, t->since_fired, w->fired, n, w->counts_next,
                                            w->dead, w->dead_list);

    /* Reconstruction term and the per-row factors a_b of dL/dx_hat_b = a_b r_b. */
    double sq = 0;
    for (int64_t b = 0; b < n; b++)
        sq += w->row_sums[b * 4];
    const double tv = sae__total_variance(n, d, x, ldx);
    const double mse = sae__mse_terms(c, n, x, ldx, w->row_sums, 4, tv, w->row_factor);

    /* AuxK. */
    double aux = 0, beta = 0;
    const int64_t kx = sae__auxk_forward(t, n, n_dead, scale, tv, &aux, &beta);

#pragma omp parallel for schedule(static) num_threads(c->threads) if (c->threads > 1 && n > 16)
    for (int64_t b = 0; b < n; b++)
        scale_row(t, n, b, w->row_factor[b], kx, (float)beta);

    sae__csc_build(w, F, n, k, kx);
    sae__csc_accumulate(t, n);
    /* AuxK decodes with b_dec for SAELens and sparsify: its rows count for db_dec too. */
    const bool aux_bias = kx > 0 && c->auxk != SAE_AUXK_DICTIONARY_LEARNING;
    sae__b_dec_grad(t, aux_bias ? 2 * n : n, w->G);

    *out = (sae__loss_terms){
        .loss = mse + c->auxk_coefficient * aux, .mse = mse, .aux = aux,
        .fvu = tv > 0 ? sq / tv : NAN, .l0 = sum_pos / (double)n, .n_dead = n_dead,
        .row_min_mean = rows_min > 0 ? sum_min / rows_min : -1.0,
    };
    return SAE_OK;
}
