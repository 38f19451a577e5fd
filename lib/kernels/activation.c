/* activation.c: from one row of t = x' W_enc to pre-activations and codes (MATH.md, "Encode").
 *
 *   pre_j = t_j + b_enc_j                         (Gated: pre_j = t_j exp(r_mag_j) + b_mag_j)
 *   v_j   = pre_j * ||d_j||   if rescaling by decoder norms, else pre_j
 *   standard:  f_j = max(v_j, 0)
 *   jumprelu / batchtopk / topk-threshold:  f_j = max(v_j, 0) if v_j > theta_j, else 0
 *   topk:      keep the k largest of v (or of max(v, 0) when ReLU comes first), then max(., 0)
 *   gated:     f_j = max(v_j, 0) if t_j + b_gate_j > 0, else 0
 */
#include <string.h>

#include "kernels.h"

/* NaN passes through every activation (as in torch), so a poisoned input shows in its codes. */
static inline float relu(float x) { return x < 0.0f ? 0.0f : x; }
static inline float jump(float v, float theta) { return v > theta || v != v ? relu(v) : 0.0f; }
static inline float gate(float g, float v) { return g > 0.0f || g != g ? relu(v) : 0.0f; }

/* Fill t with v (pre-activation, rescaled) in place, writing pre if asked. Non-Gated. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void affine_row(const sae__act_params *p, float *t, float *pre)
{
    const int64_t F = p->F;
    if (p->b_enc)
        for (int64_t j = 0; j < F; j++)
            t[j] += p->b_enc[j];
    if (pre)
        memcpy(pre, t, sizeof(float) * (size_t)F);
    if (p->rescale)
        for (int64_t j = 0; j < F; j++)
            t[j] *= p->rescale[j];
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void gated_row(const sae__act_params *p, float *t, float *pre, float *f)
{
    const int64_t F = p->F;
    for (int64_t j = 0; j < F; j++) {
        float g = t[j] + (p->b_gate ? p->b_gate[j] : 0.0f);
        float mag = t[j] * p->exp_r_mag[j] + (p->b_mag ? p->b_mag[j] : 0.0f);
        if (pre)
            pre[j] = mag;
        float v = p->rescale ? mag * p->rescale[j] : mag;
        t[j] = gate(g, v);
    }
    if (f && f != t)
        memcpy(f, t, sizeof(float) * (size_t)F);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void relu_row(int64_t F, float *t, float *f)
{
    for (int64_t j = 0; j < F; j++)
        f[j] = relu(t[j]);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void threshold_row(int64_t F, const float *theta, float *t, float *f)
{
    for (int64_t j = 0; j < F; j++)
        f[j] = jump(t[j], theta[j]);
}

int64_t sae__act_row(const sae__act_params *p, float *t, float *pre, float *f, int32_t *idx,
                     float *val, void *scratch)
{
    if (p->arch == SAE_ARCH_GATED) {
        gated_row(p, t, pre, f);
        return 0;
    }
    affine_row(p, t, pre);
    bool topk = p->arch == SAE_ARCH_TOPK && !p->use_threshold;
    if (!topk) {
        float *out = f ? f : t;
        if (p->arch == SAE_ARCH_STANDARD)
            relu_row(p->F, t, out);
        else
            threshold_row(p->F, p->threshold, t, out);
        return 0;
    }
    if (p->relu_before_topk)
        relu_row(p->F, t, t);
    sae__topk_select(t, p->F, p->k, idx, val, scratch);
    for (int64_t a = 0; a < p->k; a++)
        val[a] = relu(val[a]);
    if (f) {
        memset(f, 0, sizeof(float) * (size_t)p->F);
        for (int64_t a = 0; a < p->k; a++)
            f[idx[a]] = val[a];
    }
    return p->k;
}

void sae__act_row_ref(const sae__act_params *p, const float *t, float *pre, float *f)
{
    const int64_t F = p->F;
    for (int64_t j = 0; j < F; j++) {
        float pj, v;
        if (p->arch == SAE_ARCH_GATED) {
            pj = t[j] * p->exp_r_mag[j] + (p->b_mag ? p->b_mag[j] : 0.0f);
        } else {
            pj = t[j] + (p->b_enc ? p->b_enc[j] : 0.0f);
        }
        v = p->rescale ? pj * p->rescale[j] : pj;
        if (pre)
            pre[j] = pj;
        switch (p->arch) {
        case SAE_ARCH_STANDARD: f[j] = relu(v); break;
        case SAE_ARCH_GATED:
            f[j] = gate(t[j] + (p->b_gate ? p->b_gate[j] : 0.0f), v);
            break;
        case SAE_ARCH_TOPK:
            if (!p->use_threshold) {
                f[j] = p->relu_before_topk ? relu(v) : v; /* selected below */
                break;
            }
            __attribute__((fallthrough)); /* threshold mode */
        default: f[j] = jump(v, p->threshold[j]); break;
        }
    }
    if (p->arch == SAE_ARCH_TOPK && !p->use_threshold) {
        int32_t idx[SAE_REF_MAX_K];
        float val[SAE_REF_MAX_K];
        sae__topk_select_ref(f, F, p->k, idx, val);
        memset(f, 0, sizeof(float) * (size_t)F);
        for (int64_t a = 0; a < p->k; a++)
            f[idx[a]] = relu(val[a]);
    }
}
