/* use.c: what a supervised dictionary does with labels: reconstruct, edit one attribute, weigh
 * its codes, and become a decoder-only sae_dict (supervised.h). */
#include <string.h>

#include "supervised_internal.h"

/* A (rows, d) output with leading dimension ld: EINVAL/ESHAPE. */
static sae_status check_rows(const sae_supervised *sup, const void *buf, int64_t ld, int64_t n,
                             int64_t width, const char *what)
{
    if (!sup || !buf || n < 0)
        return sae__fail(SAE_EINVAL, "%s: the dictionary and buffers are required, n >= 0 "
                         "(%lld)", what, (long long)n);
    if (ld < width)
        return sae__fail(SAE_ESHAPE, "%s: leading dimension %lld < %lld", what, (long long)ld,
                         (long long)width);
    return SAE_OK;
}

sae_status sae_supervised_reconstruct(const sae_supervised *sup, float *out, int64_t ldo,
                                      const int32_t *labels, int64_t ldl, int64_t n)
{
    sae_status s = check_rows(sup, out, ldo, n, sup ? sup->d : 0, "supervised reconstruct");
    if (s || (s = sae__check_labels(labels, ldl, n, sup->n_attrs, sup->n_values,
                                    "supervised reconstruct")))
        return s;
    const int64_t d = sup->d;
    for (int64_t i = 0; i < n; i++) {
        float *o = out + i * ldo;
        memcpy(o, sup->bias, (size_t)d * sizeof(float));
        for (int32_t a = 0; a < sup->n_attrs; a++) {
            const float *u = sup->codes + (sup->first[a] + labels[i * ldl + a]) * d;
            for (int64_t j = 0; j < d; j++)
                o[j] += u[j];
        }
    }
    return SAE_OK;
}

sae_status sae_supervised_edit(const sae_supervised *sup, float *x, int64_t ldx, int64_t n,
                               int32_t attr, const int32_t *from, const int32_t *to)
{
    sae_status s = check_rows(sup, x, ldx, n, sup ? sup->d : 0, "supervised edit");
    if (s)
        return s;
    if (!from || !to)
        return sae__fail(SAE_EINVAL, "supervised edit: from and to are required");
    if (attr < 0 || attr >= sup->n_attrs)
        return sae__fail(SAE_ERANGE, "supervised edit: attribute %d outside [0, %d)", (int)attr,
                         (int)sup->n_attrs);
    const int32_t nv = sup->n_values[attr];
    for (int64_t i = 0; i < n; i++)
        if (from[i] < 0 || from[i] >= nv || to[i] < 0 || to[i] >= nv)
            return sae__fail(SAE_ERANGE, "supervised edit: row %lld edits value %d to %d, "
                             "attribute %d has %d values", (long long)i, (int)from[i],
                             (int)to[i], (int)attr, (int)nv);
    const int64_t d = sup->d;
    for (int64_t i = 0; i < n; i++) {
        const float *u_from = sup->codes + (sup->first[attr] + from[i]) * d;
        const float *u_to = sup->codes + (sup->first[attr] + to[i]) * d;
        float *xi = x + i * ldx;
        for (int64_t j = 0; j < d; j++)
            xi[j] += u_to[j] - u_from[j];
    }
    return SAE_OK;
}

sae_status sae_supervised_weights(const sae_supervised *sup, float *out, int64_t ldo,
                                  const int32_t *labels, int64_t ldl, int64_t n)
{
    sae_status s = check_rows(sup, out, ldo, n, sup ? sup->n_attrs : 0, "supervised weights");
    if (s || (s = sae__check_labels(labels, ldl, n, sup->n_attrs, sup->n_values,
                                    "supervised weights")))
        return s;
    const int64_t d = sup->d;
    double *r = sae__alloc_array(sup->allocator, (size_t)d, sizeof(double));
    if (!r)
        return SAE_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        /* r = â − u_bias = Σ_A u_{A,v}; w_A = ⟨u_{A,v}, r⟩ / ||r||². */
        memset(r, 0, (size_t)d * sizeof(double));
        for (int32_t a = 0; a < sup->n_attrs; a++) {
            const float *u = sup->codes + (sup->first[a] + labels[i * ldl + a]) * d;
            for (int64_t j = 0; j < d; j++)
                r[j] += u[j];
        }
        double rr = 0.0;
        for (int64_t j = 0; j < d; j++)
            rr += r[j] * r[j];
        for (int32_t a = 0; a < sup->n_attrs; a++) {
            const float *u = sup->codes + (sup->first[a] + labels[i * ldl + a]) * d;
            double ur = 0.0;
            for (int64_t j = 0; j < d; j++)
                ur += u[j] * r[j];
            out[i * ldo + a] = rr > 0.0 ? (float)(ur / rr) : 0.0f;
        }
    }
    sae__free(sup->allocator, r);
    return SAE_OK;
}

sae_status sae_supervised_to_dict(const sae_supervised *sup, sae_dict **out,
                                  const sae_allocator *allocator)
{
    if (!sup || !out)
        return sae__fail(SAE_EINVAL, "supervised to dict: sup and out are required");
    *out = NULL;
    const int64_t d = sup->d, F = sup->n_codes;
    float *W_enc = sae__alloc_array(sup->allocator, (size_t)(d * F), sizeof(float));
    if (!W_enc)
        return SAE_ENOMEM;
    memset(W_enc, 0, (size_t)(d * F) * sizeof(float));
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = SAE_ARCH_STANDARD;
    c.d_in = d;
    c.d_sae = F;
    c.flags = SAE_DICT_NO_B_DEC_INPUT;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc;
    w.W_dec = sup->codes;
    w.b_dec = sup->bias;
    sae_status s = sae_dict_create(out, &c, &w, allocator);
    sae__free(sup->allocator, W_enc);
    return s;
}
