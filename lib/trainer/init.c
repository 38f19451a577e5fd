/* init.c: initial weights and b_dec from the first batch (mean, geometric median). */
#include <math.h>
#include <string.h>

#include "trainer_internal.h"

sae__params sae__params_view(float *base, int64_t F, int64_t d_in)
{
    return (sae__params){.W_encT = base, .W_dec = base + F * d_in, .b_enc = base + 2 * F * d_in,
                         .b_dec = base + 2 * F * d_in + F};
}

int64_t sae__extra_blocks(int32_t arch)
{
    return arch == SAE_ARCH_JUMPRELU ? 1 : arch == SAE_ARCH_GATED ? 2 : 0;
}

sae__params sae__params_layout(const sae__train_cfg *c, float *base)
{
    sae__params p = sae__params_view(base, c->F, c->d_in);
    float *extra = p.b_dec + c->d_in;
    if (c->arch == SAE_ARCH_JUMPRELU)
        p.theta = extra;
    if (c->arch == SAE_ARCH_GATED)
        p.r_mag = extra, p.b_mag = extra + c->F;
    return p;
}

/* Decoder row j and encoder column j (= W_encT row j) from one generator, drawn row by row so
 * the weights depend on (seed, F, d_in) only:
 *   UNIFORM_TIED / NORMAL_TIED: row ~ U(-1, 1)^d or N(0, 1)^d, scaled to norm c;
 *                               encoder column = decoder row (W_enc = W_dec^T)
 *   SPARSIFY: encoder column ~ U(-1/sqrt(d), 1/sqrt(d))^d (nn.Linear's default init), decoder
 *             row = that column scaled to norm c (W_dec = encoder.weight normalised)
 *   UNTIED:   encoder column as SPARSIFY, then a decoder row ~ N(0, 1)^d scaled to norm c. */
void sae__init_weights(const sae__train_cfg *c, sae__params *p)
{
    const int64_t F = c->F, d = c->d_in;
    sae_rng rng;
    sae_rng_init(&rng, c->seed, 0);
    const bool linear = c->init == SAE_INIT_SPARSIFY || c->init == SAE_INIT_UNTIED;
    const float bound = linear ? 1.0f / sqrtf((float)d) : 1.0f;
    for (int64_t j = 0; j < F; j++) {
        float *dec = p->W_dec + j * d, *enc = p->W_encT + j * d;
        for (int64_t i = 0; i < d; i++)
            enc[i] = c->init == SAE_INIT_NORMAL_TIED
                         ? sae_rng_normal(&rng)
                         : bound * (2.0f * sae_rng_uniform(&rng) - 1.0f);
        if (c->init == SAE_INIT_UNTIED)
            for (int64_t i = 0; i < d; i++)
                dec[i] = sae_rng_normal(&rng);
        const float *src = c->init == SAE_INIT_UNTIED ? dec : enc;
        float norm = sae__row_norm(src, d);
        float scale = norm > 0 ? (float)c->decoder_init_norm / norm : 0.0f;
        for (int64_t i = 0; i < d; i++)
            dec[i] = src[i] * scale;
        if (!linear)
            memcpy(enc, dec, sizeof(float) * (size_t)d);
    }
    memset(p->b_enc, 0, sizeof(float) * (size_t)F);
    memset(p->b_dec, 0, sizeof(float) * (size_t)d);
    /* SAELens: log_threshold = log(jumprelu_init_threshold); dictionary_learning: threshold. */
    const float tau = (float)(c->log_threshold ? log(c->init_threshold) : c->init_threshold);
    for (int64_t j = 0; p->theta && j < F; j++)
        p->theta[j] = tau;
    if (p->r_mag) { /* r_mag = 0: W_mag = W_enc */
        memset(p->r_mag, 0, sizeof(float) * (size_t)F);
        memset(p->b_mag, 0, sizeof(float) * (size_t)F);
    }
}

void sae__batch_mean(int64_t n, int64_t d, const float *x, int64_t ldx, float *out)
{
    /* Blocks of 64 columns: each row contributes one contiguous run per block. */
    for (int64_t i0 = 0; i0 < d; i0 += 64) {
        int64_t w = d - i0 < 64 ? d - i0 : 64;
        double s[64] = {0};
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < w; i++)
                s[i] += x[b * ldx + i0 + i];
        for (int64_t i = 0; i < w; i++)
            out[i0 + i] = (float)(s[i] / (double)n);
    }
}

/* ||x_b - m|| in double. */
static double distance(const float *xb, const float *m, int64_t d)
{
    double s = 0;
    for (int64_t i = 0; i < d; i++) {
        double t = (double)xb[i] - m[i];
        s += t * t;
    }
    return sqrt(s);
}

void sae__geometric_median(int64_t n, int64_t d, const float *x, int64_t ldx, int max_iter,
                           double tol, double *w, float *out)
{
    double *acc = w + n; /* (d) */
    sae__batch_mean(n, d, x, ldx, out);
    for (int it = 0; it < max_iter; it++) {
        double total = 0;
        for (int64_t b = 0; b < n; b++) {
            double dist = distance(x + b * ldx, out, d);
            if (dist == 0) { /* the estimate is a data point: Weiszfeld's fixed point */
                memcpy(out, x + b * ldx, sizeof(float) * (size_t)d);
                return;
            }
            w[b] = 1.0 / dist;
            total += w[b];
        }
        memset(acc, 0, sizeof(double) * (size_t)d);
        for (int64_t b = 0; b < n; b++) { /* row by row: x is read in its own order */
            const double wb = w[b] / total;
            const float *xb = x + b * ldx;
            for (int64_t i = 0; i < d; i++)
                acc[i] += wb * xb[i];
        }
        double moved = 0;
        for (int64_t i = 0; i < d; i++) {
            float next = (float)acc[i];
            moved += ((double)next - out[i]) * ((double)next - out[i]);
            out[i] = next;
        }
        if (sqrt(moved) < tol)
            return;
    }
}
