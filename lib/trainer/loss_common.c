/* loss_common.c: the stages the losses of every architecture share.
 *
 *   x' = x - b_dec  (x without b_dec_input)  (n, d_in)
 *   t = x' W_enc                            (n, F)   one product (W_encT^T) in tiles of
 *                                                    SAE__ENCODE_TILE features, each handed
 *                                                    to the caller's epilogue while in cache;
 *                                                    the passes that read t add b_enc
 *   r = x_hat - x, reconstruction term and dL/dx_hat = a_b r_b per mse variant
 *   db_dec = sum_b dL/dx_hat_b (+ AuxK rows) - db_enc W_enc^T
 * The last line is the encoder's share of b_dec's gradient: x' = x - b_dec gives
 * -sum_b dL/dx'_b = -sum_b dL/dpre_b W_enc^T = -db_enc W_enc^T, one (F) x (F, d_in) product
 * instead of an (n, F) x (F, d_in) one (none without b_dec_input). */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

sae_status sae__encode_dense(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                             sae__tile_fn epilogue, void *user)
{
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    float *xp = t->ws.xp, *pre = t->ws.pre;
    const float *b_dec = t->p.b_dec;
#pragma omp parallel for schedule(dynamic, 64) num_threads(T) if (T > 1 && n > 64)
    for (int64_t b = 0; b < n; b++) {
        if (!c->b_dec_input) {
            memcpy(xp + b * d, x + b * ldx, sizeof(float) * (size_t)d);
            continue;
        }
        for (int64_t i = 0; i < d; i++)
            xp[b * d + i] = x[b * ldx + i] - b_dec[i];
    }
#pragma omp parallel for schedule(dynamic, 256) num_threads(T) if (T > 1)
    for (int64_t j = 0; j < F; j++)
        t->ws.dec_norm[j] = sae__row_norm(t->p.W_dec + j * d, d);
    return sae__sgemm_tiles(false, true, n, F, d, 1.0f, xp, d, t->p.W_encT, d, 0.0f, pre, F,
                            0, SAE__ENCODE_TILE, T, epilogue, user);
}

double sae__total_variance(int64_t n, int64_t d, const float *x, int64_t ldx)
{
    double tv = 0;
    for (int64_t i0 = 0; i0 < d; i0 += 64) { /* blocks of columns, rows read in order */
        int64_t w = d - i0 < 64 ? d - i0 : 64;
        double mean[64] = {0};
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < w; i++)
                mean[i] += x[b * ldx + i0 + i];
        for (int64_t i = 0; i < w; i++)
            mean[i] /= (double)n;
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < w; i++) {
                double e = x[b * ldx + i0 + i] - mean[i];
                tv += e * e;
            }
    }
    return tv;
}

double sae__mse_terms(const sae__train_cfg *c, int64_t n, const float *x, int64_t ldx,
                      const double *sq, int64_t stride, double tv, float *factor)
{
    double total = 0;
    for (int64_t b = 0; b < n; b++) {
        if (c->mse == SAE_MSE_NORMALIZED) { /* mean_b (sum r^2 / sum x^2) */
            const double xx = sae__sumsq(x + b * ldx, c->d_in);
            total += sq[b * stride] / xx;
            factor[b] = (float)(2.0 / ((double)n * xx));
        } else if (c->mse == SAE_MSE_RELATIVE_L2) {
            /* mean_b ||r_b|| / (||x_b|| + 1e-8): a_b = 1 / (n ||r_b|| (||x_b|| + 1e-8)), 0 where
             * r_b = 0 (sae_ortho_relative_l2) */
            const double den = sqrt(sae__sumsq(x + b * ldx, c->d_in)) + 1e-8;
            const double norm = sqrt(sq[b * stride]);
            total += norm / den;
            factor[b] = norm > 0 ? (float)(1.0 / ((double)n * norm * den)) : 0.0f;
        } else {
            total += sq[b * stride];
            factor[b] = (float)(c->mse == SAE_MSE_FVU ? 2.0 / tv : 2.0 / (double)n);
        }
    }
    return c->mse == SAE_MSE_FVU ? total / tv : total / (double)n;
}

void sae__b_dec_grad(sae_trainer *t, int64_t n_rows, const float *G)
{
    sae__b_dec_grad_from(t, n_rows, G, t->gp.b_enc);
}

void sae__b_dec_grad_from(sae_trainer *t, int64_t n_rows, const float *G, const float *sum_dt)
{
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    const int64_t blocks = (d + 63) / 64;
    const int T = c->threads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1 && blocks > 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t i0 = blk * 64, w = d - i0 < 64 ? d - i0 : 64;
        double s[64] = {0};
        for (int64_t r = 0; r < n_rows; r++)
            for (int64_t i = 0; i < w; i++)
                s[i] += G[r * d + i0 + i];
        for (int64_t j = 0; c->b_dec_input && j < F; j++) {
            const double g = sum_dt[j];
            if (g != 0)
                for (int64_t i = 0; i < w; i++)
                    s[i] -= g * t->p.W_encT[j * d + i0 + i];
        }
        for (int64_t i = 0; i < w; i++)
            t->gp.b_dec[i0 + i] = (float)s[i];
    }
}
