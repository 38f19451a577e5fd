/* adam.c: gradient clipping by global norm and torch-1.13 Adam / AdamW, fused into one pass.
 *
 * Adam (torch.optim.Adam, single-tensor path, no weight decay), step t = 1, 2, ...:
 *   p = (1 - lr wd) p         AdamW only (torch.optim.AdamW's decoupled decay, before the
 *                             rest; the factor rounded to float as torch's mul_ does)
 *   m = b1 m + (1 - b1) g
 *   v = b2 v + (1 - b2) g g
 *   p = p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * in float with the constants rounded to float as torch does, the bias corrections in double.
 * Clipping (clip_grad_norm_): total = ||(||g_p||)_p||, every gradient times
 * min(max_norm / (total + 1e-6), 1).
 * The update is memory-bound (p, m, v read and written, g read): one pass over the contiguous
 * parameter block, row by row, renormalising each decoder row right after its update. Rows go
 * to the threads in chunks, dynamically: each row's update depends on that row only, and a
 * thread that loses its core for a while (a shared machine) leaves its chunks to the others. */
#include <math.h>

#include "trainer_internal.h"

typedef struct adam_consts {
    float b1, one_minus_b1, b2, one_minus_b2, neg_step, bc2_sqrt, eps, clip;
    float decay; /* 1 - lr wd: exactly 1 for Adam, which leaves p unchanged */
} adam_consts;

static adam_consts consts_for(const sae__train_cfg *c, int64_t step, double lr, float clip)
{
    const double t = (double)step;
    const double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    return (adam_consts){(float)c->beta1, (float)(1.0 - c->beta1), (float)c->beta2,
                         (float)(1.0 - c->beta2), (float)(-(lr / bc1)), (float)sqrt(bc2),
                         (float)c->adam_eps, clip, (float)(1.0 - lr * c->weight_decay)};
}

/* p, m, v, g: (n) */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void adam_span(const adam_consts *k, float *restrict p, float *restrict m,
                      float *restrict v, const float *restrict g, int64_t n)
{
    const adam_consts c = *k;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * c.clip;
        float mi = m[i] * c.b1 + c.one_minus_b1 * gi;
        float vi = v[i] * c.b2 + c.one_minus_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * c.decay + c.neg_step * mi / (sqrtf(vi) / c.bc2_sqrt + c.eps);
    }
}

double sae__grad_project_and_norm(sae_trainer *t)
{
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    double *sq = t->ws.grad_sq;
#pragma omp parallel for schedule(dynamic, 256) num_threads(T) if (T > 1 && F > 64)
    for (int64_t j = 0; j < F; j++) {
        float *gd = t->gp.W_dec + j * d;
        sae__project_row(c->decoder_constraint, t->p.W_dec + j * d, gd, d);
        sq[j] = sae__sumsq(t->gp.W_encT + j * d, d);
        sq[F + j] = sae__sumsq(gd, d);
    }
    double total = sae__sumsq(t->gp.b_enc, F) + sae__sumsq(t->gp.b_dec, d);
    const int64_t extra = t->n_params - (2 * F * d + F + d); /* JumpReLU theta, Gated r_mag b_mag */
    if (extra > 0)
        total += sae__sumsq(t->gp.b_dec + d, extra);
    for (int64_t j = 0; j < 2 * F; j++) /* fixed order: same result for any thread count */
        total += sq[j];
    return sqrt(total);
}

float sae__clip_factor(double total_norm, double max_norm)
{
    if (max_norm <= 0)
        return 1.0f;
    float coef = (float)max_norm / ((float)total_norm + 1e-6f);
    return coef < 1.0f ? coef : 1.0f;
}

void sae__adam_update(sae_trainer *t, double lr, float clip)
{
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    const adam_consts k = consts_for(c, t->step + 1, lr, clip);
    /* Units 0..2F-1: rows of W_encT then W_dec; unit 2F: b_enc, b_dec and the extra blocks. */
#pragma omp parallel for schedule(dynamic, 256) num_threads(c->threads) if (c->threads > 1)
    for (int64_t u = 0; u <= 2 * F; u++) {
        int64_t off = u * d, len = u < 2 * F ? d : t->n_params - 2 * F * d;
        adam_span(&k, t->param + off, t->m + off, t->v + off, t->grad + off, len);
        if (u >= F && u < 2 * F)
            sae__renorm_row(c->decoder_constraint, t->param + off, d);
    }
}

void sae__adam_ref(const sae__train_cfg *c, int64_t step, double lr, float clip, float *p,
                   float *m, float *v, const float *g, int64_t n)
{
    const double bc1 = 1.0 - pow(c->beta1, (double)step);
    const double bc2 = 1.0 - pow(c->beta2, (double)step);
    for (int64_t i = 0; i < n; i++) {
        p[i] *= (float)(1.0 - lr * c->weight_decay);
        float gi = g[i] * clip;
        m[i] = m[i] * (float)c->beta1 + (float)(1.0 - c->beta1) * gi;
        v[i] = v[i] * (float)c->beta2 + (float)(1.0 - c->beta2) * gi * gi;
        float denom = sqrtf(v[i]) / (float)sqrt(bc2) + (float)c->adam_eps;
        p[i] += (float)(-(lr / bc1)) * m[i] / denom;
    }
}
