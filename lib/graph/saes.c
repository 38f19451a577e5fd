/* saes.c: the SAEs of a circuit in model space (graph_internal.h): per hook point the decoder
 * directions d~_j, the gradients e~_j of active codes and the bias b~ (dict_internal.h), an
 * encoder, and the state (codes, error) of activations. */
#include <string.h>

#include "../dict_internal.h"
#include "graph_internal.h"

void sae__circuit_saes_free(sae__circuit_sae *s, int32_t n_hooks, const sae_allocator *a)
{
    for (int32_t k = 0; s && k < n_hooks; k++) {
        sae__free(a, s[k].dec);
        sae__free(a, s[k].enc);
        sae__free(a, s[k].bias);
        sae_encoder_free(s[k].encoder);
        memset(&s[k], 0, sizeof s[k]);
    }
}

sae_status sae__circuit_saes_init(sae__circuit_sae *out, const sae_host *host,
                                  const int32_t *hooks, const sae_dict *const *dicts,
                                  int32_t n_hooks, int64_t max_rows, int n_threads,
                                  const sae_allocator *a)
{
    if (!hooks || !dicts || n_hooks < 1)
        return sae__fail(SAE_EINVAL, "circuit: hooks and dicts are required and n_hooks (%d) "
                                     "must be >= 1", (int)n_hooks);
    for (int32_t k = 0; k < n_hooks; k++) {
        const sae_dict *d = dicts[k];
        if (!d)
            return sae__fail(SAE_EINVAL, "circuit: dictionary %d is NULL", (int)k);
        if (hooks[k] < 0 || hooks[k] >= host->n_hooks)
            return sae__fail(SAE_ERANGE, "circuit: hook id %d (entry %d) is outside [0, %d)",
                             (int)hooks[k], (int)k, (int)host->n_hooks);
        for (int32_t j = 0; j < k; j++)
            if (hooks[j] == hooks[k])
                return sae__fail(SAE_EINVAL, "circuit: hook \"%s\" is listed twice",
                                 host->hook_names[hooks[k]]);
        if (d->config.d_in != host->d_model)
            return sae__fail(SAE_ESHAPE, "circuit: the dictionary at \"%s\" has d_in %lld, the "
                             "host's d_model is %lld", host->hook_names[hooks[k]],
                             (long long)d->config.d_in, (long long)host->d_model);
        if (!sae__dict_is_affine(d))
            return sae__fail(SAE_EUNSUPPORTED, "circuit: the dictionary at \"%s\" normalises "
                             "each row (input_norm %d); circuits need none or a constant scale",
                             host->hook_names[hooks[k]], (int)d->config.input_norm);
        if (d->config.d_sae > INT32_MAX)
            return sae__fail(SAE_EUNSUPPORTED, "circuit: d_sae %lld does not fit node ids",
                             (long long)d->config.d_sae);
    }
    for (int32_t k = 0; k < n_hooks; k++) {
        sae__circuit_sae *s = &out[k];
        const sae_dict *d = dicts[k];
        const int64_t F = d->config.d_sae, D = d->config.d_in;
        *s = (sae__circuit_sae){hooks[k], d, F, D, NULL, NULL, NULL, NULL};
        s->dec = sae__alloc_array(a, (size_t)(F * D), sizeof(float));
        s->enc = sae__alloc_array(a, (size_t)(F * D), sizeof(float));
        s->bias = sae__alloc_array(a, (size_t)D, sizeof(float));
        if (!s->dec || !s->enc || !s->bias)
            return SAE_ENOMEM;
        for (int64_t j = 0; j < F; j++) {
            sae__dict_decoder_direction(d, j, s->dec + j * D);
            sae__dict_encoder_direction(d, j, s->enc + j * D);
        }
        sae__dict_model_bias(d, s->bias);
        sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
        eo.n_threads = n_threads, eo.max_rows = max_rows, eo.allocator = a;
        sae_status st = sae_encoder_create(&s->encoder, d, &eo);
        if (st != SAE_OK)
            return st;
    }
    return SAE_OK;
}

sae_status sae__circuit_state(const sae__circuit_sae *s, const float *x, int64_t n, float *f,
                              float *err, int n_threads)
{
    const int64_t F = s->F, D = s->D;
    if (!x) {
        memset(f, 0, (size_t)(n * F) * sizeof(float));
        memset(err, 0, (size_t)(n * D) * sizeof(float));
        return SAE_OK;
    }
    sae_status st = sae_encoder_encode(s->encoder, n, x, D, f, F, NULL, 0);
    if (st != SAE_OK)
        return st;
    /* err = x − (f D~ + b~): start from x − b~, subtract f D~. */
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++)
            err[r * D + i] = x[r * D + i] - s->bias[i];
    return sae__sgemm(false, false, n, D, F, -1.0f, f, F, s->dec, D, 1.0f, err, D, n_threads);
}

sae_status sae__circuit_compose(const sae__circuit_sae *s, const float *f, const float *err,
                                int64_t n, float *x, int n_threads)
{
    const int64_t D = s->D;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++)
            x[r * D + i] = s->bias[i] + err[r * D + i];
    return sae__sgemm(false, false, n, D, s->F, 1.0f, f, s->F, s->dec, D, 1.0f, x, D,
                      n_threads);
}
