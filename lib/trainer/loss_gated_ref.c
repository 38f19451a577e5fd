/* loss_gated_ref.c: the naive twin of loss_gated.c, for the tests.
 *
 * Dense loops in double with the chain rule through SAELens' parametrisation written out:
 * pi_mag = x' W_mag + b_mag with W_mag = W_enc * exp(r_mag), so dW_enc gets the gate's share
 * and W_mag's times exp(r_mag), and dr_mag = sum_i dW_mag_ij W_enc_ij exp(r_mag_j); the
 * decoder-norm L1 goes through d||d_j||/dd_j = d_j / ||d_j||; a detached auxiliary decoder is
 * a constant copy. Masks are taken on float values as torch takes them. */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

typedef struct gated_buffers {
    double *gate, *mag, *f, *h, *dgate, *dmag; /* (n, F) */
    double *xd, *xp, *r, *y, *gx, *gy;         /* (n, d) */
    double *dn, *er;                           /* (F) ||d_j||, exp(r_mag_j) */
    int64_t *next;                             /* (F) */
    uint8_t *fired, *dead;                     /* (F) */
    int32_t *list;                             /* (F) */
} gated_buffers;

static void free_buffers(gated_buffers *B)
{
    void *all[] = {B->gate, B->mag, B->f,  B->h,  B->dgate, B->dmag, B->xd,   B->xp,
                   B->r,    B->y,   B->gx, B->gy, B->dn,    B->er,   B->next, B->fired,
                   B->dead, B->list};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sae__free(NULL, all[i]);
}

static sae_status alloc_buffers(gated_buffers *B, int64_t n, int64_t F, int64_t d)
{
    memset(B, 0, sizeof *B);
    const sae__ref_buffer all[] = {{(void **)&B->gate, n * F, 8}, {(void **)&B->mag, n * F, 8},
               {(void **)&B->f, n * F, 8},    {(void **)&B->h, n * F, 8},
               {(void **)&B->dgate, n * F, 8}, {(void **)&B->dmag, n * F, 8},
               {(void **)&B->xd, n * d, 8},   {(void **)&B->xp, n * d, 8},
               {(void **)&B->r, n * d, 8},    {(void **)&B->y, n * d, 8},
               {(void **)&B->gx, n * d, 8},   {(void **)&B->gy, n * d, 8},
               {(void **)&B->dn, F, 8},       {(void **)&B->er, F, 8},
               {(void **)&B->next, F, 8},
               {(void **)&B->fired, F, 1},    {(void **)&B->dead, F, 1},
               {(void **)&B->list, F, 4}};
    sae_status s = sae__ref_buffers_alloc(all, sizeof all / sizeof all[0]);
    if (s != SAE_OK)
        free_buffers(B);
    return s;
}

sae_status sae__gated_loss_grad_ref(const sae__train_cfg *c, const sae__params *p,
                                    const int64_t *since, double l1_coef, int64_t n,
                                    const float *x, int64_t ldx, sae__params *g,
                                    sae__loss_terms *out)
{
    const int64_t F = c->F, d = c->d_in;
    const bool norm_l1 = c->l1 == SAE_L1_DECODER_NORM, attached = c->gated_aux_attached;
    const double alpha = c->auxk_coefficient, lambda = l1_coef;
    gated_buffers B;
    if (alloc_buffers(&B, n, F, d))
        return SAE_ENOMEM;
    for (int64_t j = 0; j < F; j++) {
        double s = 0;
        for (int64_t i = 0; i < d; i++)
            s += (double)p->W_dec[j * d + i] * p->W_dec[j * d + i];
        B.dn[j] = sqrt(s);
        B.er[j] = exp((double)p->r_mag[j]); /* W_mag = W_enc exp(r_mag) */
    }

    /* ---- forward: gate, magnitude, codes f, h = ReLU(pi_gate), both reconstructions ---- */
    double positive = 0, l1 = 0, aux_sq = 0;
    for (int64_t b = 0; b < n; b++) {
        for (int64_t i = 0; i < d; i++) {
            B.xd[b * d + i] = x[b * ldx + i];
            B.xp[b * d + i] = B.xd[b * d + i] - (c->b_dec_input ? p->b_dec[i] : 0.0f);
        }
        for (int64_t j = 0; j < F; j++) {
            const int64_t e = b * F + j;
            double gate = p->b_enc[j], mag = p->b_mag[j];
            for (int64_t i = 0; i < d; i++) {
                gate += B.xp[b * d + i] * p->W_encT[j * d + i];
                mag += B.xp[b * d + i] * (p->W_encT[j * d + i] * B.er[j]);
            }
            B.gate[e] = gate, B.mag[e] = mag;
            const bool open = (float)gate > 0.0f;
            B.f[e] = open && (float)mag > 0.0f ? mag : 0.0;
            B.h[e] = open ? gate : 0.0;
            positive += B.f[e] > 0;
            B.fired[j] |= B.f[e] > 0;
            l1 += B.h[e] * (norm_l1 ? B.dn[j] : 1.0) / (double)n;
        }
        for (int64_t i = 0; i < d; i++) {
            double xh = p->b_dec[i], ea = p->b_dec[i];
            for (int64_t j = 0; j < F; j++) {
                xh += B.f[b * F + j] * p->W_dec[j * d + i];
                ea += B.h[b * F + j] * p->W_dec[j * d + i];
            }
            B.r[b * d + i] = xh - B.xd[b * d + i];
            B.y[b * d + i] = ea - B.xd[b * d + i];
            aux_sq += B.y[b * d + i] * B.y[b * d + i];
            B.gy[b * d + i] = alpha * 2.0 / (double)n * B.y[b * d + i];
        }
    }
    const double tv = sae__variance_ref(B.xd, n, d);
    double sq = 0;
    const double mse = sae__mse_ref(c, n, x, ldx, B.r, tv, B.gx, &sq);
    const double aux = aux_sq / (double)n;

    /* ---- backward to the pre-activations ---- */
    for (int64_t b = 0; b < n; b++)
        for (int64_t j = 0; j < F; j++) {
            const int64_t e = b * F + j;
            double gf = 0, gh = lambda / (double)n * (norm_l1 ? B.dn[j] : 1.0);
            for (int64_t i = 0; i < d; i++) {
                gf += B.gx[b * d + i] * p->W_dec[j * d + i];
                gh += B.gy[b * d + i] * p->W_dec[j * d + i];
            }
            const bool open = (float)B.gate[e] > 0.0f;
            B.dmag[e] = open && (float)B.mag[e] > 0.0f ? gf : 0.0; /* f = gate * relu(mag) */
            B.dgate[e] = open ? gh : 0.0;                             /* h = relu(gate) */
        }

    /* ---- parameter gradients ---- */
    for (int64_t j = 0; j < F; j++) {
        const double er = B.er[j];
        double gsum = 0, msum = 0, dr = 0, hsum = 0;
        for (int64_t b = 0; b < n; b++)
            gsum += B.dgate[b * F + j], msum += B.dmag[b * F + j], hsum += B.h[b * F + j];
        for (int64_t i = 0; i < d; i++) {
            double gW_gate = 0, gW_mag = 0, gd = 0;
            for (int64_t b = 0; b < n; b++) {
                gW_gate += B.dgate[b * F + j] * B.xp[b * d + i];
                gW_mag += B.dmag[b * F + j] * B.xp[b * d + i];
                gd += B.f[b * F + j] * B.gx[b * d + i];
                if (attached)
                    gd += B.h[b * F + j] * B.gy[b * d + i];
            }
            if (norm_l1 && B.dn[j] > 0)
                gd += lambda / (double)n * hsum * p->W_dec[j * d + i] / B.dn[j];
            dr += gW_mag * p->W_encT[j * d + i] * er;
            g->W_encT[j * d + i] = (float)(gW_gate + gW_mag * er);
            g->W_dec[j * d + i] = (float)gd;
        }
        g->b_enc[j] = (float)gsum;
        g->b_mag[j] = (float)msum;
        g->r_mag[j] = (float)dr;
    }
    for (int64_t i = 0; i < d; i++) {
        double gb = 0;
        for (int64_t b = 0; b < n; b++) {
            gb += B.gx[b * d + i] + (attached ? B.gy[b * d + i] : 0.0);
            for (int64_t j = 0; c->b_dec_input && j < F; j++) /* x' = x - b_dec, both paths */
                gb -= (B.dgate[b * F + j] + B.dmag[b * F + j] * B.er[j]) * p->W_encT[j * d + i];
        }
        g->b_dec[i] = (float)gb;
    }
    const int64_t n_dead = sae__dead_update(c, since, B.fired, n, B.next, B.dead, B.list);
    *out = (sae__loss_terms){
        .loss = mse + lambda * l1 + alpha * aux, .mse = mse, .l1 = l1, .l1_coef = lambda,
        .aux = aux, .fvu = tv > 0 ? sq / tv : NAN, .l0 = positive / (double)n,
        .n_dead = n_dead, .row_min_mean = -1.0, .min_positive = -1.0,
    };
    free_buffers(&B);
    return SAE_OK;
}
