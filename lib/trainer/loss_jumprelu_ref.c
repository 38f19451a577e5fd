/* loss_jumprelu_ref.c: the naive twin of loss_jumprelu.c, for the tests.
 *
 * Dense loops in double over every (row, feature): each step function and its straight-through
 * gradient is written out entry by entry, the codes below theta included (the fast path skips
 * those outside the window and takes TARGET_L0's codes at 0 in closed form). The decisions
 * (pre > theta, the window) are taken on float values as torch takes them. */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

typedef struct jr_buffers {
    double *pre, *f, *gpre;  /* (n, F) */
    double *xd, *xp, *r, *gx; /* (n, d) */
    double *dn, *gth, *gdn;  /* (F) ||d_j||, dL/dtheta_j, dL/d||d_j|| */
    float *theta;            /* (F) */
    int64_t *next;           /* (F) */
    uint8_t *fired, *dead;   /* (F) */
    int32_t *list;           /* (F) */
} jr_buffers;

static void free_buffers(jr_buffers *B)
{
    void *all[] = {B->pre,  B->f,     B->gpre, B->xd,   B->xp,    B->r,    B->gx,
                   B->dn,   B->gth,   B->gdn,  B->theta, B->next, B->fired, B->dead,
                   B->list};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sae__free(NULL, all[i]);
}

static sae_status alloc_buffers(jr_buffers *B, int64_t n, int64_t F, int64_t d)
{
    memset(B, 0, sizeof *B);
    const sae__ref_buffer all[] = {{(void **)&B->pre, n * F, 8},  {(void **)&B->f, n * F, 8},
               {(void **)&B->gpre, n * F, 8}, {(void **)&B->xd, n * d, 8},
               {(void **)&B->xp, n * d, 8},   {(void **)&B->r, n * d, 8},
               {(void **)&B->gx, n * d, 8},   {(void **)&B->dn, F, 8},
               {(void **)&B->gth, F, 8},      {(void **)&B->gdn, F, 8},
               {(void **)&B->theta, F, 4},    {(void **)&B->next, F, 8},
               {(void **)&B->fired, F, 1},    {(void **)&B->dead, F, 1},
               {(void **)&B->list, F, 4}};
    sae_status s = sae__ref_buffers_alloc(all, sizeof all / sizeof all[0]);
    if (s != SAE_OK)
        free_buffers(B);
    return s;
}

/* rect((v - theta) / eps) with v rounded to float. */
static bool rect(double v, float theta, float eps)
{
    const float u = ((float)v - theta) / eps;
    return -0.5f < u && u < 0.5f;
}

sae_status sae__jumprelu_loss_grad_ref(const sae__train_cfg *c, const sae__params *p,
                                       const int64_t *since, double l1_coef, int64_t n,
                                       const float *x, int64_t ldx, sae__params *g,
                                       sae__loss_terms *out)
{
    const int64_t F = c->F, d = c->d_in;
    const float eps = (float)c->bandwidth;
    const double lambda = l1_coef, cs = c->tanh_scale;
    const int32_t mode = c->jumprelu_sparsity;
    jr_buffers B;
    if (alloc_buffers(&B, n, F, d))
        return SAE_ENOMEM;
    for (int64_t j = 0; j < F; j++) {
        double s = 0;
        for (int64_t i = 0; i < d; i++)
            s += (double)p->W_dec[j * d + i] * p->W_dec[j * d + i];
        B.dn[j] = sqrt(s);
        B.theta[j] = sae__theta_of(c, p->theta[j]);
    }

    /* ---- forward ---- */
    double positive = 0;
    for (int64_t b = 0; b < n; b++) {
        for (int64_t i = 0; i < d; i++) {
            B.xd[b * d + i] = x[b * ldx + i];
            B.xp[b * d + i] = B.xd[b * d + i] - (c->b_dec_input ? p->b_dec[i] : 0.0f);
        }
        for (int64_t j = 0; j < F; j++) {
            double pre = p->b_enc[j];
            for (int64_t i = 0; i < d; i++)
                pre += B.xp[b * d + i] * p->W_encT[j * d + i];
            B.pre[b * F + j] = pre;
            B.f[b * F + j] = (float)pre > B.theta[j] ? pre : 0.0;
            positive += B.f[b * F + j] > 0;
            B.fired[j] |= B.f[b * F + j] > 0;
        }
        for (int64_t i = 0; i < d; i++) {
            double xh = p->b_dec[i];
            for (int64_t j = 0; j < F; j++)
                xh += B.f[b * F + j] * p->W_dec[j * d + i];
            B.r[b * d + i] = xh - B.xd[b * d + i];
        }
    }
    const double tv = sae__variance_ref(B.xd, n, d);
    double sq = 0;
    const double mse = sae__mse_ref(c, n, x, ldx, B.r, tv, B.gx, &sq);

    /* ---- sparsity term S ---- */
    double S = 0, g_l0 = 0;
    for (int64_t e = 0; e < n * F; e++) {
        const int64_t j = e % F;
        if (mode == SAE_JUMPRELU_STEP)
            S += (float)B.pre[e] > B.theta[j];
        else if (mode == SAE_JUMPRELU_TANH)
            S += tanh(cs * B.f[e] * B.dn[j]);
        else /* the step of the codes */
            S += (float)B.f[e] > B.theta[j];
    }
    S /= (double)n;
    if (mode == SAE_JUMPRELU_TARGET_L0) {
        const double T = c->target_l0;
        g_l0 = lambda * 2 * (S / T - 1) / (T * (double)n);
        S = (S / T - 1) * (S / T - 1);
    }

    /* ---- backward, entry by entry ---- */
    for (int64_t b = 0; b < n; b++)
        for (int64_t j = 0; j < F; j++) {
            const int64_t e = b * F + j;
            const float th = B.theta[j];
            double q = 0;
            for (int64_t i = 0; i < d; i++)
                q += B.gx[b * d + i] * p->W_dec[j * d + i];
            double gf = q; /* dL/df */
            if (mode == SAE_JUMPRELU_TANH) {
                const double h = tanh(cs * B.f[e] * B.dn[j]);
                gf += lambda / (double)n * cs * B.dn[j] * (1 - h * h);
                B.gdn[j] += lambda / (double)n * (1 - h * h) * cs * B.f[e];
            }
            B.gpre[e] = (float)B.pre[e] > th ? gf : 0.0;       /* JumpReLU: x_grad */
            if (rect(B.pre[e], th, eps))                        /* JumpReLU: threshold_grad */
                B.gth[j] += -((double)th / eps) * gf;
            if (mode == SAE_JUMPRELU_STEP && rect(B.pre[e], th, eps))
                B.gth[j] += -(1.0 / eps) * lambda / (double)n;
            if (mode == SAE_JUMPRELU_TARGET_L0 && rect(B.f[e], th, eps))
                B.gth[j] += -(1.0 / eps) * g_l0;
        }

    /* ---- parameter gradients ---- */
    for (int64_t j = 0; j < F; j++) {
        for (int64_t i = 0; i < d; i++) {
            double gd = 0, ge = 0;
            for (int64_t b = 0; b < n; b++) {
                gd += B.f[b * F + j] * B.gx[b * d + i];
                ge += B.gpre[b * F + j] * B.xp[b * d + i];
            }
            if (B.dn[j] > 0)
                gd += B.gdn[j] * p->W_dec[j * d + i] / B.dn[j];
            g->W_dec[j * d + i] = (float)gd;
            g->W_encT[j * d + i] = (float)ge;
        }
        double gb = 0;
        for (int64_t b = 0; b < n; b++)
            gb += B.gpre[b * F + j];
        g->b_enc[j] = (float)gb;
        g->theta[j] = (float)(c->log_threshold ? B.gth[j] * B.theta[j] : B.gth[j]);
    }
    for (int64_t i = 0; i < d; i++) {
        double gb = 0;
        for (int64_t b = 0; b < n; b++) {
            gb += B.gx[b * d + i];
            for (int64_t j = 0; c->b_dec_input && j < F; j++)
                gb -= B.gpre[b * F + j] * p->W_encT[j * d + i];
        }
        g->b_dec[i] = (float)gb;
    }
    const int64_t n_dead = sae__dead_update(c, since, B.fired, n, B.next, B.dead, B.list);
    *out = (sae__loss_terms){
        .loss = mse + lambda * S, .mse = mse, .l1 = S, .l1_coef = lambda,
        .fvu = tv > 0 ? sq / tv : NAN, .l0 = positive / (double)n, .n_dead = n_dead,
        .row_min_mean = -1.0, .min_positive = -1.0,
    };
    free_buffers(&B);
    return SAE_OK;
}
