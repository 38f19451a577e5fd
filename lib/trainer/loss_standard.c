/* loss_standard.c: ReLU + L1 loss and its backward with dense BLAS products.
 *
 *   f = ReLU(x' W_enc + b_enc)                   (n, F)   in place over the product
 *   r = f W_dec + b_dec - x                      (n, d)   BLAS
 *   L = mse(r) + lambda sum_b rho_b sum_j f_bj w_j
 *       rho_b = 1/n (1/(n ||x_b||) for the OpenAI-normalised L1), w_j = ||d_j|| or 1
 *   G = dL/dx_hat = a_b r_b
 *   dL/dpre = (G W_dec^T + lambda rho_b w_j) [f > 0]    (n, F)   BLAS
 *   dW_dec  = f^T G (+ lambda (sum_b rho_b f_bj) d_j / ||d_j|| for decoder-norm weights)  BLAS
 *   dW_encT = dL/dpre^T x'                        (F, d)   BLAS
 *   db_enc  = sum_b dL/dpre_b,  db_dec = sum_b G_b - db_enc W_enc^T
 * Column sums run over feature blocks owned by one thread each, rows in order. */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

#define COLS 256

/* rho_b of the L1 variant. */
static double l1_row_weight(const sae__train_cfg *c, int64_t n, const float *xb)
{
    if (c->l1 != SAE_L1_NORMALIZED)
        return 1.0 / (double)n;
    return 1.0 / ((double)n * sqrt(sae__sumsq(xb, c->d_in)));
}

/* Per feature over the rows of A (n, F): out_j = sum_b weight_b A_bj (weight NULL: 1), and
 * fired_j = any A_bj > 0 when fired is not NULL. */
static void column_sums(int threads, int64_t n, int64_t F, const float *A, const double *weight,
                        float *out, uint8_t *fired)
{
    const int64_t blocks = (F + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && blocks > 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * COLS, w = F - j0 < COLS ? F - j0 : COLS;
        double s[COLS] = {0};
        uint8_t any[COLS] = {0};
        for (int64_t b = 0; b < n; b++) {
            const float *row = A + b * F + j0;
            const double wb = weight ? weight[b] : 1.0;
            for (int64_t j = 0; j < w; j++) {
                s[j] += wb * row[j];
                any[j] |= row[j] > 0.0f;
            }
        }
        for (int64_t j = 0; j < w; j++)
            out[j0 + j] = (float)s[j];
        if (fired)
            memcpy(fired + j0, any, (size_t)w);
    }
}

sae_status sae__standard_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                   double l1_coef, sae__loss_terms *out)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    sae_status s = sae__encode_dense(t, n, x, ldx);
    if (s != SAE_OK)
        return s;
    float *f = w->pre, *G = w->G, *gpre = w->gpre;
    const float *wj = c->l1 == SAE_L1_DECODER_NORM ? w->dec_norm : NULL;
    double *rho = w->row_weight;

    /* Codes, L0 and the L1 sums per row. */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++) {
        float *fb = f + b * F;
        double l1 = 0, positive = 0;
        for (int64_t j = 0; j < F; j++) {
            const float pre = fb[j] + t->p.b_enc[j];
            fb[j] = pre > 0.0f ? pre : 0.0f;
            l1 += wj ? (double)fb[j] * wj[j] : fb[j];
            positive += fb[j] > 0.0f;
        }
        rho[b] = l1_row_weight(c, n, x + b * ldx);
        w->row_sums[b * 4 + 1] = positive;
        w->row_sums[b * 4 + 2] = l1;
    }
    /* sum_b rho_b f_bj (decoder-norm L1's share of dW_dec) and which features fired. */
    float *rho_f = w->col_tmp;
    column_sums(T, n, F, f, rho, rho_f, w->fired);
    const int64_t n_dead = sae__dead_update(c, t->since_fired, w->fired, n, w->counts_next,
                                            w->dead, w->dead_list);

    /* Reconstruction. */
    if ((s = sae__sgemm(false, false, n, d, F, 1.0f, f, F, t->p.W_dec, d, 0.0f, G, d, T)))
        return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 64)
    for (int64_t b = 0; b < n; b++) {
        double sq = 0;
        for (int64_t i = 0; i < d; i++) {
            float r = G[b * d + i] + t->p.b_dec[i] - x[b * ldx + i];
            G[b * d + i] = r;
            sq += (double)r * r;
        }
        w->row_sums[b * 4] = sq;
    }
    const double tv = sae__total_variance(n, d, x, ldx);
    const double mse = sae__mse_terms(c, n, x, ldx, w->row_sums, 4, tv, w->row_factor);
    double sq = 0, l1 = 0, positive = 0;
    for (int64_t b = 0; b < n; b++)
        sq += w->row_sums[b * 4], positive += w->row_sums[b * 4 + 1],
            l1 += rho[b] * w->row_sums[b * 4 + 2];

    /* Backward. */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 64)
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < d; i++)
            G[b * d + i] *= w->row_factor[b];
    if ((s = sae__sgemm(false, true, n, F, d, 1.0f, G, d, t->p.W_dec, d, 0.0f, gpre, F, T)))
        return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++) {
        const float l1_row = (float)(l1_coef * rho[b]);
        float *gb = gpre + b * F;
        const float *fb = f + b * F;
        for (int64_t j = 0; j < F; j++)
            gb[j] = fb[j] > 0.0f ? gb[j] + l1_row * (wj ? wj[j] : 1.0f) : 0.0f;
    }
    if ((s = sae__sgemm(true, false, F, d, n, 1.0f, f, F, G, d, 0.0f, t->gp.W_dec, d, T)) ||
        (s = sae__sgemm(true, false, F, d, n, 1.0f, gpre, F, w->xp, d, 0.0f, t->gp.W_encT, d, T)))
        return s;
    if (wj) {
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && F > 64)
        for (int64_t j = 0; j < F; j++) {
            if (wj[j] == 0.0f) /* torch's norm backward is 0 at a zero row */
                continue;
            const float a = (float)(l1_coef * rho_f[j] / wj[j]);
            for (int64_t i = 0; i < d; i++)
                t->gp.W_dec[j * d + i] += a * t->p.W_dec[j * d + i];
        }
    }
    column_sums(T, n, F, gpre, NULL, t->gp.b_enc, NULL);
    sae__b_dec_grad(t, n, G);

    *out = (sae__loss_terms){
        .loss = mse + l1_coef * l1, .mse = mse, .l1 = l1, .l1_coef = l1_coef,
        .fvu = tv > 0 ? sq / tv : NAN, .l0 = positive / (double)n, .n_dead = n_dead,
        .row_min_mean = -1.0,
    };
    return SAE_OK;
}
