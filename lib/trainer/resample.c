/* resample.c: dead-feature resampling (dictionary_learning StandardTrainer.resample_neurons).
 *
 * D: the dead features by the trainer's dead rule on the counters as they stand. Batch x (n rows):
 *   r_b = ||x_b - x_hat_b||                  forward pass with the current weights
 *   m   = min(|D|, #{b : r_b > 0, x_b != 0})  (upstream: min(|D|, n); a zero row would give a
 *                                             0/0 decoder row, a zero weight cannot be drawn)
 *   b_1..b_m drawn without replacement with P proportional to r_b (torch.multinomial(r, m))
 *   a   = mean of ||W_encT[j]|| over j not in D (over every j when all are dead; upstream's
 *         mean over none is NaN)
 *   the i-th of the first m dead features (ascending) j takes row b_i:
 *     W_encT[j] = x_{b_i} a 0.2,  W_dec[j] = x_{b_i} / ||x_{b_i}||,  b_enc[j] = 0,
 *     and the Adam moments of those three are zeroed (b_dec's and the step count are not).
 * The draw is Efraimidis & Spirakis' (2006): key_b = log(u_b) / r_b with u_b ~ U(0, 1] from the
 * trainer's generator, one u per row; the m largest keys, largest first, are distributed as m
 * successive draws without replacement. Ties go to the lower row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer_internal.h"

static sae_status grow_keys(sae_trainer *t, int64_t n)
{
    if (t->ex.key_rows >= n)
        return SAE_OK;
    sae__draw_key *keys = sae__alloc_array(t->allocator, (size_t)n, sizeof *keys);
    int64_t *picked = sae__alloc_array(t->allocator, (size_t)n, sizeof *picked);
    if (!keys || !picked) {
        sae__free(t->allocator, keys);
        sae__free(t->allocator, picked);
        return SAE_ENOMEM;
    }
    sae__free(t->allocator, t->ex.keys);
    sae__free(t->allocator, t->ex.picked);
    t->ex.keys = keys, t->ex.picked = picked;
    t->ex.key_rows = n;
    return SAE_OK;
}

sae_status sae__resample_reserve(sae_trainer *t, int64_t n)
{
    return t->cfg.resample_steps > 0 ? grow_keys(t, n) : SAE_OK;
}

sae_status sae__resample_losses(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                double *loss)
{
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    sae_status s = sae__encode_dense(t, n, x, ldx, NULL, NULL); /* ws.pre = (x - b_dec) W_enc */
    if (s != SAE_OK)
        return s;
    float *f = t->ws.pre, *xh = t->ws.G;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && n > 1)
    for (int64_t b = 0; b < n; b++)
        for (int64_t j = 0; j < F; j++) {
            const float pre = f[b * F + j] + t->p.b_enc[j];
            f[b * F + j] = pre > 0.0f ? pre : 0.0f;
        }
    if ((s = sae__sgemm(false, false, n, d, F, 1.0f, f, F, t->p.W_dec, d, 0.0f, xh, d, T)))
        return s;
    for (int64_t b = 0; b < n; b++) {
        double sq = 0;
        for (int64_t i = 0; i < d; i++) {
            const float r = x[b * ldx + i] - (xh[b * d + i] + t->p.b_dec[i]);
            sq += (double)r * r;
        }
        loss[b] = sqrt(sq);
    }
    return SAE_OK;
}

void sae__resample_apply(sae_trainer *t, const uint8_t *dead, const float *x, int64_t ldx,
                         const int64_t *rows, int64_t m)
{
    const int64_t F = t->cfg.F, d = t->cfg.d_in;
    double sum = 0;
    int64_t alive = 0;
    for (int64_t j = 0; j < F; j++)
        if (!dead[j])
            sum += sae__row_norm(t->p.W_encT + j * d, d), alive++;
    if (alive == 0)
        for (int64_t j = 0; j < F; j++)
            sum += sae__row_norm(t->p.W_encT + j * d, d), alive++;
    const float a = (float)(sum / (double)alive);
    const sae__params *views[] = {&t->mp, &t->vp};
    for (int64_t j = 0, i = 0; j < F && i < m; j++) {
        if (!dead[j])
            continue;
        const float *xb = x + rows[i++] * ldx;
        const float norm = sae__row_norm(xb, d);
        float *enc = t->p.W_encT + j * d, *dec = t->p.W_dec + j * d;
        for (int64_t k = 0; k < d; k++) {
            enc[k] = xb[k] * a * 0.2f; /* upstream: sampled * alive_norm * 0.2, in float */
            dec[k] = xb[k] / norm;
        }
        t->p.b_enc[j] = 0.0f;
        for (int v = 0; v < 2; v++) {
            memset(views[v]->W_encT + j * d, 0, sizeof(float) * (size_t)d);
            memset(views[v]->W_dec + j * d, 0, sizeof(float) * (size_t)d);
            views[v]->b_enc[j] = 0.0f;
        }
    }
}

/* Larger key first; ties to the lower row. */
static int compare_keys(const void *pa, const void *pb)
{
    const sae__draw_key *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key > b->key ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

/* U(0, 1] with 53 random bits. */
static double uniform_open0(sae_rng *rng)
{
    const uint64_t hi = sae_rng_u32(rng), lo = sae_rng_u32(rng);
    return (double)(((hi << 32 | lo) >> 11) + 1) * 0x1.0p-53;
}

int64_t sae__draw_rows(sae_rng *rng, const double *weight, int64_t n, int64_t m,
                       sae__draw_key *keys, int64_t *rows)
{
    int64_t candidates = 0;
    for (int64_t b = 0; b < n; b++) {
        const double u = uniform_open0(rng); /* one draw per row, drawn or not */
        if (weight[b] > 0)
            keys[candidates++] = (sae__draw_key){log(u) / weight[b], b};
    }
    qsort(keys, (size_t)candidates, sizeof *keys, compare_keys);
    const int64_t drawn = m < candidates ? m : candidates;
    for (int64_t i = 0; i < drawn; i++)
        rows[i] = keys[i].row;
    return drawn;
}

/* Resample the features dead by the counters as they stand, from batch x (n rows). The
 * workspace holds n rows and the draw buffers n keys. */
static sae_status resample(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                           int64_t *n_resampled)
{
    const int64_t F = t->cfg.F, d = t->cfg.d_in;
    uint8_t *dead = t->ws.dead;
    int64_t n_dead = 0;
    for (int64_t j = 0; j < F; j++) {
        dead[j] = sae__is_dead(&t->cfg, t->since_fired[j]);
        n_dead += dead[j];
    }
    *n_resampled = 0;
    if (n_dead == 0) /* upstream returns before drawing */
        return SAE_OK;
    double *weight = t->ws.row_sums; /* (4 n) doubles of step scratch */
    sae_status s = sae__resample_losses(t, n, x, ldx, weight);
    if (s != SAE_OK)
        return s;
    for (int64_t b = 0; b < n; b++)
        if (sae__sumsq(x + b * ldx, d) == 0)
            weight[b] = 0;
    const int64_t m = sae__draw_rows(&t->ex.rng, weight, n, n_dead, t->ex.keys, t->ex.picked);
    sae__resample_apply(t, dead, x, ldx, t->ex.picked, m);
    *n_resampled = m;
    return SAE_OK;
}

sae_status sae__resample_after_step(sae_trainer *t, int64_t s, int64_t n, const float *x,
                                    int64_t ldx, int64_t *n_resampled)
{
    *n_resampled = 0;
    const int64_t R = t->cfg.resample_steps;
    if (R <= 0 || s % R != 0)
        return SAE_OK;
    return resample(t, n, x, ldx, n_resampled);
}

sae_status sae_trainer_resample(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                int64_t *n_resampled)
{
    if (n_resampled)
        *n_resampled = 0;
    bool nonfinite;
    sae_status s = sae__check_batch(t, n, x, ldx, &nonfinite);
    if (s != SAE_OK)
        return s;
    if (t->cfg.arch != SAE_ARCH_STANDARD)
        return sae__fail(SAE_EUNSUPPORTED, "resampling is for standard SAEs (TopK SAEs revive "
                                           "dead features with AuxK)");
    if (t->cfg.activation_scaling && t->ex.act_scale == 0.0f)
        return sae__fail(SAE_EINVAL, "the activation scale is not known yet: estimate it "
                                     "(sae_trainer_estimate_scale) or take a step first");
    float scale;
    int64_t m;
    if ((s = sae__trainer_reserve(t, n)) != SAE_OK || (s = grow_keys(t, n)) != SAE_OK ||
        (s = sae__scale_batch(t, n, &x, &ldx, &scale)) != SAE_OK ||
        (s = resample(t, n, x, ldx, &m)) != SAE_OK)
        return s;
    if (n_resampled)
        *n_resampled = m;
    return SAE_OK;
}
