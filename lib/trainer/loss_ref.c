/* loss_ref.c: the naive twin of loss_standard.c, loss_topk.c and loss_batchtopk.c, for the
 * tests (JumpReLU and Gated have their own twins, reached from here).
 *
 * Plain loops in double over dense (n, F) matrices, with the chain rule written out in full:
 * with rescaling the gradient through s_j = ||d_j|| is accumulated term by term (selection
 * v = pre s, decode u = f / s, AuxK likewise) instead of using the fact that it cancels; the
 * decoder-norm L1 goes through the same d||d_j||/dd_j = d_j / ||d_j||; db_dec sums
 * dL/dx'_b = dL/dpre_b W_enc^T row by row. Same conventions as the fast paths (trainer.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "trainer_internal.h"

typedef struct ref_buffers {
    double *pre, *f, *u, *c, *a, *gpre;  /* (n, F) */
    double *xp, *r, *gx, *y, *ge;        /* (n, d) */
    double *dn, *gs;                     /* (F) ||d_j||, dL/d||d_j|| */
    float *row, *val;                    /* (F) */
    int32_t *idx;                        /* (F) */
    uint8_t *fired, *dead;               /* (F) */
} ref_buffers;

static void free_buffers(ref_buffers *B)
{
    void *all[] = {B->pre, B->f, B->u, B->c, B->a, B->gpre, B->xp, B->r, B->gx, B->y, B->ge,
                   B->dn, B->gs, B->row, B->val, B->idx, B->fired, B->dead};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sae__free(NULL, all[i]);
}

/* Every buffer zeroed. */
static sae_status alloc_buffers(ref_buffers *B, int64_t n, int64_t F, int64_t d)
{
    memset(B, 0, sizeof *B);
    const sae__ref_buffer all[] = {{(void **)&B->pre, n * F, 8}, {(void **)&B->f, n * F, 8},
               {(void **)&B->u, n * F, 8},   {(void **)&B->c, n * F, 8},
               {(void **)&B->a, n * F, 8},   {(void **)&B->gpre, n * F, 8},
               {(void **)&B->xp, n * d, 8},  {(void **)&B->r, n * d, 8},
               {(void **)&B->gx, n * d, 8},  {(void **)&B->y, n * d, 8},
               {(void **)&B->ge, n * d, 8},  {(void **)&B->dn, F, 8},
               {(void **)&B->gs, F, 8},      {(void **)&B->row, F, 4},
               {(void **)&B->val, F, 4},     {(void **)&B->idx, F, 4},
               {(void **)&B->fired, F, 1},   {(void **)&B->dead, F, 1}};
    sae_status s = sae__ref_buffers_alloc(all, sizeof all / sizeof all[0]);
    if (s != SAE_OK)
        free_buffers(B);
    return s;
}

sae_status sae__ref_buffers_alloc(const sae__ref_buffer *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        *table[i].p = sae__alloc_array(NULL, (size_t)table[i].count, table[i].size);
        if (!*table[i].p)
            return SAE_ENOMEM;
        memset(*table[i].p, 0, (size_t)table[i].count * table[i].size);
    }
    return SAE_OK;
}

static double dot_df(const double *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t i = 0; i < d; i++)
        s += a[i] * b[i];
    return s;
}

double sae__variance_ref(const double *z, int64_t n, int64_t d)
{
    double tv = 0;
    for (int64_t i = 0; i < d; i++) {
        double m = 0;
        for (int64_t b = 0; b < n; b++)
            m += z[b * d + i];
        m /= (double)n;
        for (int64_t b = 0; b < n; b++)
            tv += (z[b * d + i] - m) * (z[b * d + i] - m);
    }
    return tv;
}

double sae__mse_ref(const sae__train_cfg *c, int64_t n, const float *x, int64_t ldx,
                    const double *r, double tv, double *gx, double *sq)
{
    const int64_t d = c->d_in;
    double mse = 0;
    *sq = 0;
    for (int64_t b = 0; b < n; b++) {
        double rr = 0, xx = 0;
        for (int64_t i = 0; i < d; i++)
            rr += r[b * d + i] * r[b * d + i], xx += (double)x[b * ldx + i] * x[b * ldx + i];
        *sq += rr;
        double a_b;
        if (c->mse == SAE_MSE_FVU)
            mse += rr / tv, a_b = 2 / tv;
        else if (c->mse == SAE_MSE_NORMALIZED)
            mse += rr / xx / (double)n, a_b = 2 / ((double)n * xx);
        else if (c->mse == SAE_MSE_RELATIVE_L2) /* d||r||/dr = r / ||r|| */
            mse += sqrt(rr) / (sqrt(xx) + 1e-8) / (double)n,
                a_b = rr > 0 ? 1 / ((double)n * sqrt(rr) * (sqrt(xx) + 1e-8)) : 0;
        else
            mse += rr / (double)n, a_b = 2 / (double)n;
        for (int64_t i = 0; i < d; i++)
            gx[b * d + i] = a_b * r[b * d + i];
    }
    return mse;
}

/* Ranked entries of a batch: larger values first, ties to the lower flat index. */
typedef struct ranked {
    float v;
    int64_t e;
} ranked;

static int by_rank(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return a->e < b->e ? -1 : a->e > b->e;
}

/* The k n largest of the batch's ranked values (ReLU'd first if so), by sorting all n F of
 * them, as the kept codes of each row: f = max(v, 0), u = f / s. r: (n F) scratch. */
static void select_batch_ref(const sae__train_cfg *c, ref_buffers *B, int64_t n, ranked *r)
{
    const int64_t F = c->F;
    for (int64_t e = 0; e < n * F; e++) {
        const float v = (float)(B->pre[e] * (c->rescale ? B->dn[e % F] : 1.0));
        r[e] = (ranked){c->relu_first && v < 0 ? 0.0f : v, e};
    }
    qsort(r, (size_t)(n * F), sizeof *r, by_rank);
    for (int64_t a = 0; a < c->k * n; a++) {
        const int64_t e = r[a].e, j = e % F;
        const double s = c->rescale ? B->dn[j] : 1.0, v = B->pre[e] * s;
        B->f[e] = v > 0 ? v : 0;
        B->u[e] = B->f[e] / s;
    }
}

sae_status sae__loss_grad_ref(const sae__train_cfg *c, const sae__params *p,
                              const int64_t *since, double l1_coef, int64_t n, const float *x,
                              int64_t ldx, sae__params *g, sae__loss_terms *out)
{
    if (c->arch == SAE_ARCH_JUMPRELU)
        return sae__jumprelu_loss_grad_ref(c, p, since, l1_coef, n, x, ldx, g, out);
    if (c->arch == SAE_ARCH_GATED)
        return sae__gated_loss_grad_ref(c, p, since, l1_coef, n, x, ldx, g, out);
    const int64_t F = c->F, d = c->d_in, k = c->k;
    const bool batch = c->arch == SAE_ARCH_BATCHTOPK;
    const bool topk = c->arch == SAE_ARCH_TOPK || batch; /* codes from a selection */
    ref_buffers B;
    if (alloc_buffers(&B, n, F, d))
        return SAE_ENOMEM;
    for (int64_t j = 0; j < F; j++) {
        double t = 0;
        for (int64_t i = 0; i < d; i++)
            t += (double)p->W_dec[j * d + i] * p->W_dec[j * d + i];
        B.dn[j] = sqrt(t);
    }
#define S(j) (topk && c->rescale ? B.dn[j] : 1.0)

    /* ---- forward: codes f, decode coefficients u, residual r = x_hat - x ---- */
    double *xd = B.y; /* x as doubles, for its variance (y is filled later) */
    double positive = 0;
    for (int64_t b = 0; b < n; b++) {
        for (int64_t i = 0; i < d; i++) {
            B.xp[b * d + i] = (double)x[b * ldx + i] - (c->b_dec_input ? p->b_dec[i] : 0.0f);
            xd[b * d + i] = x[b * ldx + i];
        }
        for (int64_t j = 0; j < F; j++)
            B.pre[b * F + j] = dot_df(B.xp + b * d, p->W_encT + j * d, d) + p->b_enc[j];
    }
    if (batch) {
        ranked *r = sae__alloc_array(NULL, (size_t)(n * F), sizeof *r);
        if (!r) {
            free_buffers(&B);
            return SAE_ENOMEM;
        }
        select_batch_ref(c, &B, n, r);
        sae__free(NULL, r);
    }
    for (int64_t b = 0; b < n; b++) {
        double *pre = B.pre + b * F, *f = B.f + b * F, *u = B.u + b * F;
        if (!topk) {
            for (int64_t j = 0; j < F; j++)
                f[j] = u[j] = pre[j] > 0 ? pre[j] : 0;
        } else if (!batch) { /* (BatchTopK's codes come from select_batch_ref) */
            for (int64_t j = 0; j < F; j++) {
                float v = (float)(pre[j] * S(j));
                B.row[j] = c->relu_first && v < 0 ? 0.0f : v;
            }
            sae__topk_select_ref(B.row, F, k, B.idx, B.val);
            for (int64_t a = 0; a < k; a++) {
                int64_t j = B.idx[a];
                double v = pre[j] * S(j);
                f[j] = v > 0 ? v : 0;
                u[j] = f[j] / S(j);
                if (c->dead_rule != SAE_DEAD_STEPS)
                    B.fired[j] = 1; /* the token rules count a kept feature as fired */
            }
        }
        for (int64_t j = 0; j < F; j++) {
            positive += f[j] > 0;
            B.fired[j] |= f[j] > 0;
        }
        for (int64_t i = 0; i < d; i++) {
            double xh = p->b_dec[i];
            for (int64_t j = 0; j < F; j++)
                xh += u[j] * p->W_dec[j * d + i];
            B.r[b * d + i] = xh - x[b * ldx + i];
        }
    }
    const double tv = sae__variance_ref(xd, n, d);

    /* ---- dead mask ---- */
    int64_t n_dead = 0;
    for (int64_t j = 0; j < F; j++) {
        const bool steps = c->dead_rule == SAE_DEAD_STEPS || c->dead_rule == SAE_DEAD_STEPS_AFTER;
        int64_t next = B.fired[j] ? 0 : since[j] + (steps ? 1 : n);
        B.dead[j] = c->dead_rule == SAE_DEAD_TOKENS_AFTER ? next >= c->dead_window
                    : c->dead_rule == SAE_DEAD_STEPS_AFTER ? next > c->dead_window
                                                           : since[j] > c->dead_window;
        n_dead += B.dead[j];
    }

    /* ---- reconstruction term, dL/dx_hat ---- */
    double sq = 0;
    const double mse = sae__mse_ref(c, n, x, ldx, B.r, tv, B.gx, &sq);

    /* ---- L1 (standard): l1 = sum_b rho_b sum_j f_bj w_j, accumulated in the backward ---- */
    double l1 = 0;
    const bool norm_l1 = !topk && c->l1 == SAE_L1_DECODER_NORM;

    /* ---- AuxK (TopK): chosen codes a (candidates) and decode coefficients c ---- */
    double aux = 0, beta = 0;
    const int64_t kx = topk && c->auxk_coefficient > 0 && n_dead > 0
                           ? (c->k_aux < n_dead ? c->k_aux : n_dead) : 0;
    const bool aux_bias = c->auxk != SAE_AUXK_DICTIONARY_LEARNING;
    if (kx > 0) {
        double aux_sq = 0;
        for (int64_t b = 0; b < n; b++) {
            for (int64_t j = 0; j < F; j++) {
                double v = B.pre[b * F + j] * S(j);
                double cand = c->auxk == SAE_AUXK_SAELENS || v > 0 ? v : 0;
                B.row[j] = B.dead[j] ? (float)cand : -INFINITY;
            }
            sae__topk_select_ref(B.row, F, kx, B.idx, B.val);
            for (int64_t a = 0; a < kx; a++) {
                int64_t j = B.idx[a];
                double v = B.pre[b * F + j] * S(j);
                B.a[b * F + j] = c->auxk == SAE_AUXK_SAELENS || v > 0 ? v : 0;
                B.c[b * F + j] = B.a[b * F + j] / S(j);
            }
            for (int64_t i = 0; i < d; i++) {
                double e = aux_bias ? p->b_dec[i] : 0.0;
                for (int64_t j = 0; j < F; j++)
                    e += B.c[b * F + j] * p->W_dec[j * d + i];
                B.y[b * d + i] = e + B.r[b * d + i]; /* e_aux - (x - x_hat) */
                aux_sq += B.y[b * d + i] * B.y[b * d + i];
            }
        }
        double scale = fmin((double)n_dead / (double)c->k_aux, 1.0);
        if (c->auxk == SAE_AUXK_SAELENS) {
            aux = scale * aux_sq / (double)n, beta = 2 * scale / (double)n;
        } else if (c->auxk == SAE_AUXK_SPARSIFY) {
            aux = scale * aux_sq / tv, beta = 2 * scale / tv;
        } else {
            double rtv = sae__variance_ref(B.r, n, d);
            aux = rtv > 0 ? aux_sq / rtv : 0, beta = rtv > 0 ? 2 / rtv : 0;
        }
        beta *= c->auxk_coefficient;
        for (int64_t e = 0; e < n * d; e++)
            B.ge[e] = beta * B.y[e];
    }

    /* ---- backward through the codes: dL/dpre, dL/ds_j ---- */
    for (int64_t b = 0; b < n; b++) {
        double rho_b = 1.0 / (double)n;
        if (c->l1 == SAE_L1_NORMALIZED) {
            double xx = 0;
            for (int64_t i = 0; i < d; i++)
                xx += (double)x[b * ldx + i] * x[b * ldx + i];
            rho_b = 1.0 / ((double)n * sqrt(xx));
        }
        for (int64_t j = 0; j < F; j++) {
            const float *dj = p->W_dec + j * d;
            const double pre = B.pre[b * F + j], f = B.f[b * F + j];
            const double gu = dot_df(B.gx + b * d, dj, d); /* dL/du_bj */
            double gpre = 0;
            if (!topk) {
                const double wl = norm_l1 ? B.dn[j] : 1.0;
                l1 += rho_b * f * wl;
                gpre = pre > 0 ? gu + l1_coef * rho_b * wl : 0;
                if (norm_l1)
                    B.gs[j] += l1_coef * rho_b * f;
            } else { /* features that were not kept have f = 0: no contribution */
                const double gf = gu / S(j), gv = f > 0 ? gf : 0;
                gpre = gv * S(j);
                B.gs[j] += gv * pre - gu * f / (S(j) * S(j));
            }
            if (B.a[b * F + j] != 0) {
                const double gc = dot_df(B.ge + b * d, dj, d), av = B.a[b * F + j];
                const double ga = gc / S(j);
                const double gv = c->auxk == SAE_AUXK_SAELENS || av > 0 ? ga : 0;
                B.gs[j] -= gc * av / (S(j) * S(j));
                if (c->auxk != SAE_AUXK_SPARSIFY) {
                    gpre += gv * S(j);
                    B.gs[j] += gv * pre;
                }
            }
            B.gpre[b * F + j] = gpre;
        }
    }

    /* ---- parameter gradients ---- */
    for (int64_t j = 0; j < F; j++) {
        const bool through_norm = (topk && c->rescale) || norm_l1;
        for (int64_t i = 0; i < d; i++) {
            double gd = 0, ge = 0;
            for (int64_t b = 0; b < n; b++) {
                gd += B.u[b * F + j] * B.gx[b * d + i] + B.c[b * F + j] * B.ge[b * d + i];
                ge += B.gpre[b * F + j] * B.xp[b * d + i];
            }
            if (through_norm && B.dn[j] > 0)
                gd += B.gs[j] * p->W_dec[j * d + i] / B.dn[j];
            g->W_dec[j * d + i] = (float)gd;
            g->W_encT[j * d + i] = (float)ge;
        }
        double gb = 0;
        for (int64_t b = 0; b < n; b++)
            gb += B.gpre[b * F + j];
        g->b_enc[j] = (float)gb;
    }
    for (int64_t i = 0; i < d; i++) {
        double gb = 0;
        for (int64_t b = 0; b < n; b++) {
            gb += B.gx[b * d + i] + (aux_bias ? B.ge[b * d + i] : 0.0);
            for (int64_t j = 0; c->b_dec_input && j < F; j++) /* x' = x - b_dec */
                gb -= B.gpre[b * F + j] * p->W_encT[j * d + i];
        }
        g->b_dec[i] = (float)gb;
    }
#undef S
    *out = (sae__loss_terms){
        .loss = mse + (topk ? c->auxk_coefficient * aux : l1_coef * l1), .mse = mse,
        .l1 = topk ? 0 : l1, .l1_coef = topk ? 0 : l1_coef, .aux = aux,
        .fvu = tv > 0 ? sq / tv : NAN, .l0 = positive / (double)n, .n_dead = n_dead,
        .row_min_mean = -1.0,
    };
    free_buffers(&B);
    return SAE_OK;
}
