/* loss_gated.c: Gated SAE loss and its backward with dense BLAS products (the gate's
 * ReLU(pi_gate) is not sparse).
 *
 *   t = x' W_enc (n, F),  pi_gate = t + b_gate,  pi_mag = t e + b_mag,  e = exp(r_mag)
 *   f = [pi_gate > 0] ReLU(pi_mag),  h = ReLU(pi_gate)               [f; h]: (2n, F) in gpre
 *   [x_hat; e_aux] = [f; h] W_dec + b_dec                             (2n, d) one BLAS call
 *   L = mse(x_hat - x) + lambda/n sum_bj h_bj w_j + alpha/n sum_b ||e_aux_b - x_b||^2
 *       (w_j = ||d_j|| or 1)
 *   G = dL/dx_hat = a_b r_b,  H = dL/de_aux = (2 alpha / n)(e_aux - x)        rows of w->G
 *   dW_dec = f^T G (+ h^T H when attached) (+ lambda/n (sum_b h_bj) d_j/||d_j||)   BLAS
 *   [dL/df; dL/dh] = [G; H] W_dec^T                                   (2n, F) BLAS, over [f; h]
 *   dpi_mag = [f > 0] dL/df,  dpi_gate = [h > 0] (dL/dh + lambda/n w_j)
 *   dt = dpi_gate + e dpi_mag,  dW_encT = dt^T x' (BLAS),  db_gate = sum_b dpi_gate,
 *   db_mag = sum_b dpi_mag,  dr_mag = sum_b dpi_mag t e = sum_b dpi_mag (f - b_mag)
 *   db_dec = sum_b G_b (+ H_b when attached) - (sum_b dt_b) W_encT
 * Detached (dictionary_learning): W_dec and b_dec are constants in the aux term, h still gets
 * its gradient. The masks are taken from the stored f and h (f > 0 means both pass, as
 * f = pi_mag there), not recomputed, so the backward sees exactly the forward's decisions:
 * before [dL/df; dL/dh] overwrites [f; h], t is replaced by M = f where f > 0, -1 where only
 * the gate passes, -2 where it is shut (t itself is no longer needed: t e = f - b_mag). */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

#define COLS 256

/* Row b: f and h into gpre, and per-row sums: sum_j h_bj w_j, positive codes. e: exp(r_mag). */
static void forward_row(sae_trainer *t, int64_t n, int64_t b, const float *e, const float *wj)
{
    const int64_t F = t->cfg.F;
    const float *tb = t->ws.pre + b * F;
    float *f = t->ws.gpre + b * F, *h = t->ws.gpre + (n + b) * F;
    double l1 = 0, positive = 0;
    for (int64_t j = 0; j < F; j++) {
        const float gate = tb[j] + t->p.b_enc[j];
        const float mag = tb[j] * e[j] + t->p.b_mag[j];
        h[j] = gate > 0.0f ? gate : 0.0f;
        f[j] = gate > 0.0f && mag > 0.0f ? mag : 0.0f;
        l1 += wj ? (double)h[j] * wj[j] : h[j];
        positive += f[j] > 0.0f;
    }
    t->ws.row_sums[b * 4 + 1] = positive;
    t->ws.row_sums[b * 4 + 2] = l1;
}

/* Per feature over the rows: sum_b h_bj (feat_sums[0..F)) and whether some f_bj > 0. Threads
 * own blocks of features; rows are summed in order. */
static void column_pass(sae_trainer *t, int64_t n)
{
    const int64_t F = t->cfg.F, blocks = (F + COLS - 1) / COLS;
    const int T = t->cfg.threads;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && blocks > 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * COLS, w = F - j0 < COLS ? F - j0 : COLS;
        double s[COLS] = {0};
        uint8_t any[COLS] = {0};
        for (int64_t b = 0; b < n; b++) {
            const float *f = t->ws.gpre + b * F + j0, *h = t->ws.gpre + (n + b) * F + j0;
            for (int64_t j = 0; j < w; j++) {
                s[j] += h[j];
                any[j] |= f[j] > 0.0f;
            }
        }
        memcpy(t->ws.feat_sums + j0, s, sizeof(double) * (size_t)w);
        memcpy(t->ws.fired + j0, any, (size_t)w);
    }
}

/* The parameter gradients of the encoder side, per block of features (rows in order): reads
 * M (pre), [dL/df; dL/dh] (gpre) and exp(r_mag) (col_tmp), writes dt over M, db_gate, db_mag,
 * dr_mag and sum_b dt_b over exp(r_mag). */
static void encoder_side(sae_trainer *t, int64_t n, const float *wj, double lambda)
{
    const int64_t F = t->cfg.F, blocks = (F + COLS - 1) / COLS;
    const int T = t->cfg.threads;
    const float l1_row = (float)(lambda / (double)n);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && blocks > 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * COLS, w = F - j0 < COLS ? F - j0 : COLS;
        double s_gate[COLS] = {0}, s_mag[COLS] = {0}, s_r[COLS] = {0}, s_dt[COLS] = {0};
        float e[COLS], l1w[COLS];
        for (int64_t j = 0; j < w; j++)
            e[j] = t->ws.col_tmp[j0 + j], l1w[j] = l1_row * (wj ? wj[j0 + j] : 1.0f);
        for (int64_t b = 0; b < n; b++) {
            float *M = t->ws.pre + b * F + j0;
            const float *gf = t->ws.gpre + b * F + j0, *gh = t->ws.gpre + (n + b) * F + j0;
            for (int64_t j = 0; j < w; j++) {
                const float m = M[j];
                const float dmag = m > 0.0f ? gf[j] : 0.0f;
                const float dgate = m > -1.5f ? gh[j] + l1w[j] : 0.0f;
                const float dt = dgate + e[j] * dmag;
                s_gate[j] += dgate, s_mag[j] += dmag, s_dt[j] += dt;
                if (m > 0.0f)
                    s_r[j] += (double)dmag * (m - t->p.b_mag[j0 + j]);
                M[j] = dt;
            }
        }
        for (int64_t j = 0; j < w; j++) {
            t->gp.b_enc[j0 + j] = (float)s_gate[j];
            t->gp.b_mag[j0 + j] = (float)s_mag[j];
            t->gp.r_mag[j0 + j] = (float)s_r[j];
            t->ws.col_tmp[j0 + j] = (float)s_dt[j];
        }
    }
}

sae_status sae__gated_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                double l1_coef, sae__loss_terms *out)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    const bool attached = c->gated_aux_attached;
    sae_status s = sae__encode_dense(t, n, x, ldx, NULL, NULL);
    if (s != SAE_OK)
        return s;
    const float *wj = c->l1 == SAE_L1_DECODER_NORM ? w->dec_norm : NULL;
    float *fh = w->gpre, *G = w->G, *e = w->col_tmp;
    for (int64_t j = 0; j < F; j++)
        e[j] = expf(t->p.r_mag[j]);

    /* Codes, gate activations, L1 and L0 per row; per feature: sum_b h, fired, dead. */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++)
        forward_row(t, n, b, e, wj);
    column_pass(t, n);
    const int64_t n_dead = sae__dead_update(c, t->since_fired, w->fired, n, w->counts_next,
                                            w->dead, w->dead_list);

    /* Both reconstructions, residuals r (rows 0..n) and y = e_aux - x (rows n..2n). */
    if ((s = sae__sgemm(false, false, 2 * n, d, F, 1.0f, fh, F, t->p.W_dec, d, 0.0f, G, d, T)))
        return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 32)
    for (int64_t r = 0; r < 2 * n; r++) {
        float *row = G + r * d;
        const float *xb = x + (r < n ? r : r - n) * ldx;
        for (int64_t i = 0; i < d; i++)
            row[i] += t->p.b_dec[i] - xb[i];
        w->row_sums[(r < n ? r : r - n) * 4 + (r < n ? 0 : 3)] = sae__sumsq(row, d);
    }
    const double tv = sae__total_variance(n, d, x, ldx);
    const double mse = sae__mse_terms(c, n, x, ldx, w->row_sums, 4, tv, w->row_factor);
    double sq = 0, l1 = 0, positive = 0, aux_sq = 0;
    for (int64_t b = 0; b < n; b++)
        sq += w->row_sums[b * 4], positive += w->row_sums[b * 4 + 1],
            l1 += w->row_sums[b * 4 + 2], aux_sq += w->row_sums[b * 4 + 3];
    l1 /= (double)n;
    const double aux = aux_sq / (double)n;
    const float beta = (float)(c->auxk_coefficient * 2.0 / (double)n);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 32)
    for (int64_t r = 0; r < 2 * n; r++) {
        const float a = r < n ? w->row_factor[r] : beta;
        for (int64_t i = 0; i < d; i++)
            G[r * d + i] *= a;
    }

    /* Decoder: f^T G (+ h^T H), the decoder-norm L1's share through ||d_j||. */
    if ((s = sae__sgemm(true, false, F, d, attached ? 2 * n : n, 1.0f, fh, F, G, d, 0.0f,
                        t->gp.W_dec, d, T)))
        return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && F > 64)
    for (int64_t j = 0; j < F; j++) {
        if (!wj || wj[j] == 0.0f) /* torch's norm backward is 0 at a zero row */
            continue;
        const float a = (float)(l1_coef / (double)n * w->feat_sums[j] / wj[j]);
        for (int64_t i = 0; i < d; i++)
            t->gp.W_dec[j * d + i] += a * t->p.W_dec[j * d + i];
    }

    /* Masks over t, then [dL/df; dL/dh] over [f; h], then the encoder side. */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++) {
        float *M = w->pre + b * F;
        const float *f = fh + b * F, *h = fh + (n + b) * F;
        for (int64_t j = 0; j < F; j++)
            M[j] = f[j] > 0.0f ? f[j] : h[j] > 0.0f ? -1.0f : -2.0f;
    }
    if ((s = sae__sgemm(false, true, 2 * n, F, d, 1.0f, G, d, t->p.W_dec, d, 0.0f, fh, F, T)))
        return s;
    encoder_side(t, n, wj, l1_coef);
    if ((s = sae__sgemm(true, false, F, d, n, 1.0f, w->pre, F, w->xp, d, 0.0f, t->gp.W_encT, d,
                        T)))
        return s;
    sae__b_dec_grad_from(t, attached ? 2 * n : n, G, w->col_tmp);

    *out = (sae__loss_terms){
        .loss = mse + l1_coef * l1 + c->auxk_coefficient * aux, .mse = mse, .l1 = l1,
        .l1_coef = l1_coef, .aux = aux, .fvu = tv > 0 ? sq / tv : NAN,
        .l0 = positive / (double)n, .n_dead = n_dead, .row_min_mean = -1.0,
        .min_positive = -1.0,
    };
    return SAE_OK;
}
