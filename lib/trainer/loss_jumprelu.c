/* loss_jumprelu.c: JumpReLU loss with straight-through threshold gradients.
 *
 * t = x' W_enc (n, F) is one BLAS product. theta_j = exp(tau_j) (log thresholds) or tau_j, eps
 * the bandwidth, lambda the sparsity coefficient, rect = [-1/2 < u < 1/2] of
 * u = (v - theta)/eps computed in float as torch does:
 *   pre_bj = t_bj + b_enc_j,   f_bj = pre_bj [pre_bj > theta_j]
 *   r_b = b_dec + sum_j f_bj d_j - x_b,   G_b = dL/dx_hat_b = a_b r_b (mse variant)
 * A row's codes (row_ptr, sel_*) are those above theta or inside the window |u| < 1/2: no other
 * code has a gradient. For each, with q_bj = G_b . d_j:
 *   g_bj = dL/df_bj = q_bj (+ lambda/n c ||d_j|| (1 - tanh^2(c f_bj ||d_j||)) for TANH)
 *   dL/dpre_bj = [pre_bj > theta_j] g_bj                 (no STE on the input)
 *   dL/dtheta_j += -(theta_j/eps) rect g_bj              (JumpReLU's STE)
 *                  - (1/eps) rect lambda/n               (STEP: H(pre - theta))
 *                  - (1/eps) rect g_L0, pre > theta      (TARGET_L0, codes above theta)
 * TARGET_L0 steps the codes f, and a code below theta is 0: with m_j codes of feature j above
 * theta, the other n - m_j add (n - m_j) [0 > theta_j] to n L0 and
 * -(1/eps) (n - m_j) rect(-theta_j/eps) g_L0 to dtheta_j, g_L0 = lambda 2 (L0/T - 1) / (T n),
 * without visiting them. TANH: dW_dec_j += (lambda/n sum_b (1 - tanh^2) c f_bj) d_j/||d_j||.
 * Log thresholds: dtau_j = dtheta_j theta_j. db_dec as loss_common.c.
 * The products with the codes run two ways, chosen by their density:
 *   sparse (few codes, trained SAEs): decode and q by gathered rows, dW_dec, dW_encT, db_enc
 *     from per-feature lists (sparse_grad.c): O(codes d_in);
 *   dense (many codes, early training): the codes scattered into an (n, F) block and three BLAS
 *     products, x_hat = f W_dec, Q = G W_dec^T, dW_dec = f^T G, dW_encT = (dL/dpre)^T x', as
 *     loss_standard.c does. Both give the same sums up to rounding (tests check both). */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

/* The dense products win once the codes fill more than 1/DENSE_FROM of the (n, F) block (the
 * gathered rows cost about 4 d_in flops per code at a fraction of BLAS's speed). */
#define DENSE_FROM 8

/* The straight-through window of v around theta. */
static inline bool in_window(float v, float theta, float eps)
{
    const float u = (v - theta) / eps;
    return u > -0.5f && u < 0.5f;
}

/* Pass 1, row b: how many codes it keeps (above theta or in the window). */
static int64_t count_row(const sae_trainer *t, int64_t b, const float *theta, float eps)
{
    const int64_t F = t->cfg.F;
    const float *tb = t->ws.pre + b * F, *b_enc = t->p.b_enc;
    int64_t count = 0;
    for (int64_t j = 0; j < F; j++) {
        const float p = tb[j] + b_enc[j];
        count += p > theta[j] || in_window(p, theta[j], eps);
    }
    return count;
}

/* Pass 2, row b: its codes (sel_idx, sel_u = f, sel_f = 1: every code needs q, sel_g = 0) and
 * per-row sums: positive codes, sum tanh(c f ||d||), codes above theta. */
static void fill_row(sae_trainer *t, int64_t b, const float *theta, float eps)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F;
    const float *tb = w->pre + b * F, *b_enc = t->p.b_enc;
    int64_t e = w->row_ptr[b];
    double positive = 0, tanh_sum = 0, above = 0;
    for (int64_t j = 0; j < F; j++) {
        const float p = tb[j] + b_enc[j];
        const bool on = p > theta[j];
        if (!on && !in_window(p, theta[j], eps))
            continue;
        w->sel_idx[e] = (int32_t)j, w->sel_u[e] = on ? p : 0.0f, w->sel_f[e] = 1.0f;
        w->sel_g[e] = 0.0f;
        e++;
        positive += on && p > 0.0f;
        above += on;
        if (on && c->jumprelu_sparsity == SAE_JUMPRELU_TANH)
            tanh_sum += tanhf((float)c->tanh_scale * p * w->dec_norm[j]);
    }
    double *sums = w->row_sums + b * 4;
    sums[1] = positive, sums[2] = tanh_sum, sums[3] = above;
}

/* Row b's residual into G[b] (sparse: b_dec + the gathered decoder rows; dense: G[b] holds
 * f_b W_dec already) and ||r||^2. */
static void residual_row(sae_trainer *t, int64_t b, const float *xb, bool dense)
{
    sae__workspace *w = &t->ws;
    const int64_t d = t->cfg.d_in, e0 = w->row_ptr[b];
    float *r = w->G + b * d;
    if (dense) {
        for (int64_t i = 0; i < d; i++)
            r[i] += t->p.b_dec[i];
    } else {
        memcpy(r, t->p.b_dec, sizeof(float) * (size_t)d);
        sae__gather_axpy(w->row_ptr[b + 1] - e0, w->sel_idx + e0, w->sel_u + e0, t->p.W_dec, d,
                         r, d);
    }
    for (int64_t i = 0; i < d; i++)
        r[i] -= xb[i];
    w->row_sums[b * 4] = sae__sumsq(r, d);
}

/* block (n, F) = 0 but for one value per code: sel_u (the codes) or sel_g (dL/dpre). */
static void scatter_codes(sae_trainer *t, int64_t n, const float *val, float *block)
{
    const sae__workspace *w = &t->ws;
    const int64_t F = t->cfg.F;
    const int T = t->cfg.threads;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++) {
        memset(block + b * F, 0, sizeof(float) * (size_t)F);
        for (int64_t e = w->row_ptr[b]; e < w->row_ptr[b + 1]; e++)
            block[b * F + w->sel_idx[e]] = val[e];
    }
}

/* The sparsity scalars of the batch. */
typedef struct sparsity {
    double S;    /* the term before lambda */
    double g_l0; /* TARGET_L0: dL/dH of each step of the codes */
} sparsity;

static sparsity sparsity_terms(const sae_trainer *t, int64_t n, double lambda,
                               const float *theta)
{
    const sae__train_cfg *c = &t->cfg;
    const sae__workspace *w = &t->ws;
    double tanh_sum = 0, above = 0;
    for (int64_t b = 0; b < n; b++)
        tanh_sum += w->row_sums[b * 4 + 2], above += w->row_sums[b * 4 + 3];
    if (c->jumprelu_sparsity == SAE_JUMPRELU_STEP)
        return (sparsity){above / (double)n, 0};
    if (c->jumprelu_sparsity == SAE_JUMPRELU_TANH)
        return (sparsity){tanh_sum / (double)n, 0};
    double steps = above; /* TARGET_L0: sum of H(f - theta) over the batch */
    for (int64_t j = 0; j < c->F; j++)
        if (0.0f > theta[j])
            steps += (double)n - w->feat_sums[2 * c->F + j];
    const double l0 = steps / (double)n, T = c->target_l0;
    return (sparsity){(l0 / T - 1) * (l0 / T - 1), lambda * 2 * (l0 / T - 1) / (T * (double)n)};
}

/* Row b's codes, q_bj in sel_g: dL/dpre into sel_g, its dtheta share into sel_f. */
static void code_grads(sae_trainer *t, int64_t n, int64_t b, const float *theta, float eps,
                       double lambda, sparsity sp)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const float *tb = w->pre + b * c->F;
    const float step_g = (float)(lambda / (double)n), cs = (float)c->tanh_scale;
    for (int64_t e = w->row_ptr[b]; e < w->row_ptr[b + 1]; e++) {
        const int32_t j = w->sel_idx[e];
        const float p = tb[j] + t->p.b_enc[j], th = theta[j], f = w->sel_u[e];
        const bool on = p > th, win = in_window(p, th, eps);
        float g = w->sel_g[e];
        if (c->jumprelu_sparsity == SAE_JUMPRELU_TANH) {
            const float h = tanhf(cs * f * w->dec_norm[j]);
            g += step_g * cs * w->dec_norm[j] * (1.0f - h * h);
        }
        float dtheta = 0.0f;
        if (win) {
            dtheta = -(th / eps) * g;
            if (c->jumprelu_sparsity == SAE_JUMPRELU_STEP)
                dtheta -= step_g / eps;
            if (c->jumprelu_sparsity == SAE_JUMPRELU_TARGET_L0 && on)
                dtheta -= (float)sp.g_l0 / eps;
        }
        w->sel_g[e] = on ? g : 0.0f;
        w->sel_f[e] = dtheta;
    }
}

sae_status sae__jumprelu_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                   double l1_coef, sae__loss_terms *out)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    const float eps = (float)c->bandwidth;
    sae_status s = sae__encode_dense(t, n, x, ldx, NULL, NULL);
    if (s != SAE_OK)
        return s;
    float *theta = w->col_tmp, *block = w->gpre, *G = w->G;
    for (int64_t j = 0; j < F; j++)
        theta[j] = sae__theta_of(c, t->p.theta[j]);

    /* The codes of each row: count, then fill; the reconstruction. */
    w->row_ptr[0] = 0;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++)
        w->row_ptr[b + 1] = count_row(t, b, theta, eps);
    for (int64_t b = 0; b < n; b++)
        w->row_ptr[b + 1] += w->row_ptr[b];
    const int64_t nnz = w->row_ptr[n];
    const bool dense = c->jumprelu_products == 0 ? nnz > n * F / DENSE_FROM
                                                 : c->jumprelu_products == 1;
    if ((s = sae__ensure_entries(t, nnz, !dense)))
        return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++)
        fill_row(t, b, theta, eps);
    if (dense) {
        scatter_codes(t, n, w->sel_u, block);
        if ((s = sae__sgemm(false, false, n, d, F, 1.0f, block, F, t->p.W_dec, d, 0.0f, G, d,
                            T)))
            return s;
    }
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++)
        residual_row(t, b, x + b * ldx, dense);

    /* Firing, codes above theta per feature (feat_sums[2F..3F)), dead mask, the terms. */
    double *dtheta = w->feat_sums, *gnorm = w->feat_sums + F, *above = w->feat_sums + 2 * F;
    double *db_enc = w->feat_sums + 3 * F;
    memset(w->feat_sums, 0, sizeof(double) * (size_t)(4 * F));
    memset(w->fired, 0, (size_t)F);
    for (int64_t b = 0; b < n; b++)
        for (int64_t e = w->row_ptr[b]; e < w->row_ptr[b + 1]; e++) {
            const int32_t j = w->sel_idx[e];
            above[j] += w->pre[b * F + j] + t->p.b_enc[j] > theta[j];
            w->fired[j] |= w->sel_u[e] > 0.0f;
        }
    const int64_t n_dead = sae__dead_update(c, t->since_fired, w->fired, n, w->counts_next,
                                            w->dead, w->dead_list);
    double sq = 0, positive = 0;
    for (int64_t b = 0; b < n; b++)
        sq += w->row_sums[b * 4], positive += w->row_sums[b * 4 + 1];
    const double tv = sae__total_variance(n, d, x, ldx);
    const double mse = sae__mse_terms(c, n, x, ldx, w->row_sums, 4, tv, w->row_factor);
    const sparsity sp = sparsity_terms(t, n, l1_coef, theta);

    /* Backward: G = a_b r_b, q per code (gathered, or from Q = G W_dec^T), the codes'
     * gradients, then per feature in row order (a fixed summation order). */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 64)
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < d; i++)
            G[b * d + i] *= w->row_factor[b];
    if (dense &&
        (s = sae__sgemm(false, true, n, F, d, 1.0f, G, d, t->p.W_dec, d, 0.0f, block, F, T)))
        return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++) {
        const int64_t e0 = w->row_ptr[b], m = w->row_ptr[b + 1] - e0;
        if (dense)
            for (int64_t e = e0; e < e0 + m; e++)
                w->sel_g[e] = block[b * F + w->sel_idx[e]];
        else
            sae__gather_dots(m, w->sel_idx + e0, w->sel_f + e0, t->p.W_dec, d, G + b * d, d,
                             w->sel_g + e0);
        code_grads(t, n, b, theta, eps, l1_coef, sp);
    }
    const float cs = (float)c->tanh_scale;
    for (int64_t e = 0; e < nnz; e++) {
        const int32_t j = w->sel_idx[e];
        dtheta[j] += w->sel_f[e];
        db_enc[j] += w->sel_g[e];
        const float f = w->sel_u[e];
        if (c->jumprelu_sparsity == SAE_JUMPRELU_TANH && f != 0.0f) {
            const float h = tanhf(cs * f * w->dec_norm[j]);
            gnorm[j] += l1_coef / (double)n * (1.0 - (double)h * h) * cs * f;
        }
    }
    if (dense) {
        scatter_codes(t, n, w->sel_u, block);
        if ((s = sae__sgemm(true, false, F, d, n, 1.0f, block, F, G, d, 0.0f, t->gp.W_dec, d,
                            T)))
            return s;
        scatter_codes(t, n, w->sel_g, block);
        if ((s = sae__sgemm(true, false, F, d, n, 1.0f, block, F, w->xp, d, 0.0f,
                            t->gp.W_encT, d, T)))
            return s;
        for (int64_t j = 0; j < F; j++)
            t->gp.b_enc[j] = (float)db_enc[j];
    } else {
        sae__csc_build(w, F, n, 0, w->row_ptr, 0);
        sae__csc_accumulate(t, n);
    }
    for (int64_t j = 0; j < F; j++) {
        double g = dtheta[j];
        if (c->jumprelu_sparsity == SAE_JUMPRELU_TARGET_L0 && in_window(0.0f, theta[j], eps))
            g -= ((double)n - above[j]) * sp.g_l0 / eps; /* the codes below theta, all at 0 */
        t->gp.theta[j] = (float)(c->log_threshold ? g * theta[j] : g);
        if (gnorm[j] != 0 && w->dec_norm[j] > 0) { /* d||d_j||/dd_j = d_j / ||d_j|| */
            const float a = (float)(gnorm[j] / w->dec_norm[j]);
            for (int64_t i = 0; i < d; i++)
                t->gp.W_dec[j * d + i] += a * t->p.W_dec[j * d + i];
        }
    }
    sae__b_dec_grad(t, n, G);

    *out = (sae__loss_terms){
        .loss = mse + l1_coef * sp.S, .mse = mse, .l1 = sp.S, .l1_coef = l1_coef,
        .fvu = tv > 0 ? sq / tv : NAN, .l0 = positive / (double)n, .n_dead = n_dead,
        .row_min_mean = -1.0, .min_positive = -1.0,
    };
    return SAE_OK;
}
