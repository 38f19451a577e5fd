/* loss_topk.c: TopK loss with AuxK and its sparse backward (MATH.md "Sparse backward").
 *
 * Only the encoder product t = x' W_enc (n, F) is dense. Per row b (any thread; a row's
 * results depend on that row only):
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
    float *r = w->G + b * d; /* kept zeros get no gradient: f as the mask */
    memcpy(r, t->p.b_dec, sizeof(float) * (size_t)d);
    w->row_sums[b * 4 + 0] = sae__decode_dots(k, idx, u, f, t->p.W_dec, d, d, NULL, xb, r, q);
    w->row_sums[b * 4 + 1] = positive;
    w->row_sums[b * 4 + 3] = smallest;
}

/* AuxK selection of row b over the n_dead dead features: ids (ascending) into aux_idx,
 * decode coefficients into aux_c, into aux_g 1 where the code sends a gradient to the encoder
 * and 0 elsewhere. cand: (F) scratch, keys: (F) scratch. */
static void aux_select_row(sae_trainer *t, int64_t b, int64_t n_dead, int64_t kx,
                           const float *scale, float *cand, uint32_t *keys)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const float *pre = w->pre + b * c->F;
    const int32_t *dead = w->dead_list;
    /* one loop per convention, each without a branch in its body */
    const float *b_enc = t->p.b_enc;
    if (scale)
        for (int64_t a = 0; a < n_dead; a++)
            cand[a] = (pre[dead[a]] + b_enc[dead[a]]) * scale[dead[a]];
    else
        for (int64_t a = 0; a < n_dead; a++)
            cand[a] = pre[dead[a]] + b_enc[dead[a]];
    if (c->auxk != SAE_AUXK_SAELENS)
        for (int64_t a = 0; a < n_dead; a++)
            cand[a] = relu(cand[a]);
    int32_t *idx = w->aux_idx + b * kx;
    float *cc = w->aux_c + b * kx, *g = w->aux_g + b * kx;
    sae__select_large(cand, n_dead, kx, keys, idx, g); /* g holds the candidates for now */
    for (int64_t a = 0; a < kx; a++) {
        const int32_t j = dead[idx[a]];
        idx[a] = j;
        cc[a] = scale ? g[a] / scale[j] : g[a];
        /* which codes send a gradient to the encoder: ReLU'(cand) > 0, and never for
         * sparsify (its FusedEncoder.backward ignores them) */
        const bool passes = c->auxk == SAE_AUXK_SAELENS || g[a] > 0.0f;
        g[a] = passes && c->auxk != SAE_AUXK_SPARSIFY ? 1.0f : 0.0f;
    }
}

/* Rows per block of the AuxK decode, and features per chunk. Row by row, each token reads its
 * k_aux = 384 decoder rows at random from memory. Block by block, the rows' y (256 x 3 KiB at
 * d_in 768) stay in cache while the decoder rows of one chunk of features (at most 3 MiB) are
 * read by all of them: each decoder row comes from memory about once per block (35% less
 * time than row by row, measured at d_in 768, d_sae 16384, half of the features dead). */
#define AUX_ROWS 256
#define AUX_FEATURES 1024

/* AuxK forward of rows [b0, b1) (b1 - b0 <= AUX_ROWS): y_b = [b_dec] + sum_a c_a d_{j_a} + r_b
 * into G[n + b] and ||y_b||^2 into row_sums, then aux_g[a] = y_b . d_{j_a} where aux_g is
 * not 0. The sums of y run in the same order as row by row (ids ascending). */
static void aux_block(sae_trainer *t, int64_t n, int64_t b0, int64_t b1, int64_t kx)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const float *W = t->p.W_dec;
    int64_t cursor[AUX_ROWS];
    for (int64_t b = b0; b < b1; b++) { /* decoder() has no bias in dictionary_learning */
        float *y = w->G + (n + b) * d;
        if (c->auxk == SAE_AUXK_DICTIONARY_LEARNING)
            memset(y, 0, sizeof(float) * (size_t)d);
        else
            memcpy(y, t->p.b_dec, sizeof(float) * (size_t)d);
    }
    for (int pass = 0; pass < 2; pass++) { /* decode, then the dot products */
        for (int64_t b = b0; b < b1; b++)
            cursor[b - b0] = 0;
        for (int64_t f1 = AUX_FEATURES; f1 - AUX_FEATURES < F; f1 += AUX_FEATURES)
            for (int64_t b = b0; b < b1; b++) {
                const int32_t *idx = w->aux_idx + b * kx;
                const int64_t a0 = cursor[b - b0];
                int64_t a1 = a0;
                while (a1 < kx && idx[a1] < f1)
                    a1++;
                cursor[b - b0] = a1;
                float *y = w->G + (n + b) * d, *g = w->aux_g + b * kx;
                if (pass == 0) {
                    sae__gather_axpy(a1 - a0, idx + a0, w->aux_c + b * kx + a0, W, d, y, d);
                    continue;
                }
                for (int64_t a = a0; a < a1; a++)
                    if (g[a] != 0.0f) {
                        const float one = 1.0f;
                        float q = 0.0f;
                        sae__gather_dots(1, idx + a, &one, W, d, y, d, &q);
                        g[a] = q;
                    }
            }
        for (int64_t b = b0; pass == 0 && b < b1; b++) {
            float *y = w->G + (n + b) * d;
            const float *r = w->G + b * d;
            for (int64_t i = 0; i < d; i++)
                y[i] += r[i];
            w->row_sums[b * 4 + 2] = sae__sumsq(y, d);
        }
    }
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
#pragma omp for schedule(dynamic, 8)
        for (int64_t b = 0; b < n; b++)
            aux_select_row(t, b, n_dead, kx, scale, cand, keys);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b0 = 0; b0 < n; b0 += AUX_ROWS)
            aux_block(t, n, b0, n - b0 < AUX_ROWS ? n : b0 + AUX_ROWS, kx);
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
    sae_status s = sae__encode_dense(t, n, x, ldx, NULL, NULL);
    if (s != SAE_OK)
        return s;
    const float *scale = c->rescale ? w->dec_norm : NULL;

#pragma omp parallel num_threads(c->threads) if (c->threads > 1 && n > 1)
    {
        char *mine = w->thread_scratch + (size_t)omp_get_thread_num() * w->scratch_bytes;
        float *v = (float *)mine;
        void *heap = mine + 8 * (size_t)F;
#pragma omp for schedule(dynamic, 16)
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

#pragma omp parallel for schedule(dynamic, 64) num_threads(c->threads) if (c->threads > 1 && n > 16)
    for (int64_t b = 0; b < n; b++)
        scale_row(t, n, b, w->row_factor[b], kx, (float)beta);

    sae__csc_build(w, F, n, k, NULL, kx);
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
