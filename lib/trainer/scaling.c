/* scaling.c: activation scaling (SAELens normalize_activations = "expected_average_only_in").
 *
 *   s = sqrt(d_in) / mean_b ||x_b||
 * over the rows given to sae_trainer_estimate_scale() (SAELens' ActivationScaler averages the
 * per-batch mean norms of n_batches_for_norm_estimate batches; with equal batch sizes that is
 * the mean over rows), else over the first step's batch. Each step trains on s x.
 *
 * The exported dictionary takes s as input scaling (x s in, x_hat / s out), which is then folded
 * into its weights as SAELens' fold_activation_norm_scaling_factor does (lib/io/export.c):
 *   (s x - b_dec) W_enc + b_enc = (x - b_dec / s) (s W_enc) + b_enc
 *   (f W_dec + b_dec) / s       = f (W_dec / s) + b_dec / s
 * so pre-activations and codes are those of training: b_enc, thresholds and the Gated biases
 * and r_mag stay. Rescaling by decoder norms would see norms n_j / s and give codes f / s, so
 * those norms are folded as well (W_enc n_j, b_enc n_j, W_dec / n_j, the flag dropped). */
#include <math.h>
#include <string.h>

#include "../io/export.h"
#include "trainer_internal.h"

/* sum_b ||x_b|| in double. x: (n, d), ldx. */
static double norm_sum(int64_t n, int64_t d, const float *x, int64_t ldx)
{
    double sum = 0;
    for (int64_t b = 0; b < n; b++)
        sum += sqrt(sae__sumsq(x + b * ldx, d));
    return sum;
}

/* s = sqrt(d) / (sum / rows), rounded to float; ENUMERIC unless finite and positive. */
static sae_status scale_of(double sum, int64_t rows, int64_t d, float *out)
{
    const double mean = sum / (double)rows;
    const float s = (float)(sqrt((double)d) / mean);
    if (!(mean > 0) || !isfinite(s) || !(s > 0))
        return sae__fail(SAE_ENUMERIC, "cannot estimate the activation scale: the mean row norm "
                         "over %lld rows is %g", (long long)rows, mean);
    *out = s;
    return SAE_OK;
}

sae_status sae__scale_batch(sae_trainer *t, int64_t n, const float **x, int64_t *ldx,
                            float *scale)
{
    *scale = 1.0f;
    if (!t->cfg.activation_scaling)
        return SAE_OK;
    const int64_t d = t->cfg.d_in;
    float s = t->ex.act_scale;
    sae_status st;
    if (s == 0.0f && (st = scale_of(norm_sum(n, d, *x, *ldx), n, d, &s)) != SAE_OK)
        return st;
    if (t->ex.xs_rows < n) {
        float *grown = sae__alloc_array(t->allocator, (size_t)(n * d), sizeof(float));
        if (!grown)
            return SAE_ENOMEM;
        sae__free(t->allocator, t->ex.xs);
        t->ex.xs = grown;
        t->ex.xs_rows = n;
    }
    const float *src = *x;
    const int64_t ld = *ldx;
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < d; i++)
            t->ex.xs[b * d + i] = src[b * ld + i] * s;
    *x = t->ex.xs;
    *ldx = d;
    *scale = s;
    return SAE_OK;
}

sae_status sae_trainer_estimate_scale(sae_trainer *t, int64_t n, const float *x, int64_t ldx)
{
    bool nonfinite;
    sae_status s = sae__check_batch(t, n, x, ldx, &nonfinite);
    if (s != SAE_OK)
        return s;
    if (!t->cfg.activation_scaling)
        return sae__fail(SAE_EINVAL, "activation_scaling is off for this trainer");
    if (t->step > 0)
        return sae__fail(SAE_EINVAL, "the activation scale is fixed once training has started "
                         "(%lld steps taken)", (long long)t->step);
    const int64_t d = t->cfg.d_in;
    const double sum = t->ex.scale_norm_sum + norm_sum(n, d, x, ldx);
    const int64_t rows = t->ex.scale_rows + n;
    float scale = 0.0f;
    if ((s = scale_of(sum, rows, d, &scale)) != SAE_OK)
        return s;
    t->ex.scale_norm_sum = sum;
    t->ex.scale_rows = rows;
    t->ex.act_scale = scale;
    return SAE_OK;
}

float sae_trainer_activation_scale(const sae_trainer *t)
{
    return t && t->ex.act_scale > 0.0f ? t->ex.act_scale : 1.0f;
}

void sae__scale_config(const sae_trainer *t, sae_dict_config *dc)
{
    const float s = t->ex.act_scale;
    if (s > 0.0f && s != 1.0f)
        dc->input_norm = SAE_NORM_SCALE, dc->act_scale = s;
}

sae_status sae__scale_fold(sae_dict **d)
{
    sae_dict *in = *d;
    if (in->config.input_norm != SAE_NORM_SCALE)
        return SAE_OK;
    const bool rescale = (in->config.flags & SAE_DICT_RESCALE_BY_DECODER_NORM) != 0;
    sae__export e;
    *d = NULL;
    sae_status s = sae__export_fold(in, true, rescale, &e);
    if (s == SAE_OK) {
        sae_dict_config dc = in->config;
        dc.input_norm = SAE_NORM_NONE;
        dc.act_scale = 0.0f;
        dc.flags &= ~(uint32_t)SAE_DICT_RESCALE_BY_DECODER_NORM;
        s = sae__dict_adopt(d, &dc, &e.w, in->allocator); /* frees e.w on failure */
    }
    sae_dict_free(in);
    return s;
}
