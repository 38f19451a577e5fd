/* host.c: the library side of `sae_host` (include/sae/host.h): checking a caller's callback
 * table and the arguments of a pass before the host sees them, and hook-name lookup. The hosts
 * themselves (engines, the llama2.c host in examples/llama2) live outside the library. */
#include <string.h>

#include "internal.h"

/* The caller's table copied into the size this library knows (appended fields stay zero). */
static sae_status read_host(sae_host *h, const sae_host *host)
{
    if (!host)
        return sae__fail(SAE_EINVAL, "host is NULL");
    *h = (sae_host)SAE_HOST_INIT;
    sae_status s = sae__read_options(h, sizeof *h, host, "sae_host");
    if (s != SAE_OK)
        return s;
    if (!h->forward)
        return sae__fail(SAE_EINVAL, "sae_host.forward is NULL");
    if (h->d_model < 1 || h->vocab_size < 1 || h->n_layers < 0 || h->max_seq_len < 1)
        return sae__fail(SAE_EINVAL,
                         "sae_host has impossible dimensions: d_model %lld, vocab_size %lld, "
                         "n_layers %lld, max_seq_len %lld",
                         (long long)h->d_model, (long long)h->vocab_size,
                         (long long)h->n_layers, (long long)h->max_seq_len);
    if (h->n_hooks < 0 || (h->n_hooks > 0 && !h->hook_names))
        return sae__fail(SAE_EINVAL, "sae_host has n_hooks %d and hook_names %s",
                         (int)h->n_hooks, h->hook_names ? "set" : "NULL");
    /* Names must be usable as keys: non-empty and distinct (quadratic: hosts have ~100). */
    for (int32_t i = 0; i < h->n_hooks; i++) {
        const char *a = h->hook_names[i];
        if (!a || !a[0])
            return sae__fail(SAE_EINVAL, "sae_host.hook_names[%d] is %s", (int)i,
                             a ? "empty" : "NULL");
        for (int32_t j = 0; j < i; j++)
            if (strcmp(a, h->hook_names[j]) == 0)
                return sae__fail(SAE_EINVAL, "sae_host.hook_names[%d] and [%d] are both \"%s\"",
                                 (int)j, (int)i, a);
    }
    return SAE_OK;
}

SAE_API sae_status sae_host_check(const sae_host *host)
{
    sae_host h;
    return read_host(&h, host);
}

SAE_API sae_status sae_host_find_hook(int32_t *out_id, const sae_host *host, const char *name)
{
    if (out_id)
        *out_id = -1;
    if (!out_id || !name)
        return sae__fail(SAE_EINVAL, "sae_host_find_hook: out_id or name is NULL");
    sae_host h;
    sae_status s = read_host(&h, host);
    if (s != SAE_OK)
        return s;
    for (int32_t i = 0; i < h.n_hooks; i++)
        if (strcmp(name, h.hook_names[i]) == 0) {
            *out_id = i;
            return SAE_OK;
        }
    if (h.n_hooks == 0)
        return sae__fail(SAE_ENOTFOUND, "hook point \"%s\": the host has no hook points", name);
    return sae__fail(SAE_ENOTFOUND, "no hook point \"%s\" (the host has %d, from \"%s\" to \"%s\")",
                     name, (int)h.n_hooks, h.hook_names[0], h.hook_names[h.n_hooks - 1]);
}

/* The shape of a pass: n_seq >= 1, 1 <= seq_len <= max_seq_len, no overflow of the buffers. */
static sae_status check_batch(const sae_host *h, int64_t n_seq, int64_t seq_len)
{
    if (n_seq < 1 || seq_len < 1 || seq_len > h->max_seq_len)
        return sae__fail(SAE_ESHAPE, "host batch of %lld sequences of %lld tokens: need >= 1 "
                         "sequence of 1 to %lld tokens", (long long)n_seq, (long long)seq_len,
                         (long long)h->max_seq_len);
    int64_t width = h->vocab_size > h->d_model ? h->vocab_size : h->d_model;
    if (n_seq > INT64_MAX / seq_len / width)
        return sae__fail(SAE_ESHAPE, "host batch of %lld x %lld tokens is too large",
                         (long long)n_seq, (long long)seq_len);
    return SAE_OK;
}

/* A callback failed: keep the host's own message if it set one, else say which pass failed. */
static sae_status host_failed(sae_status s, const char *pass)
{
    if (!sae_last_error()[0])
        return sae__fail(s, "the host's %s pass failed: %s", pass, sae_status_str(s));
    return s;
}

SAE_API sae_status sae_host_forward(const sae_host *host, const int32_t *tokens, int64_t n_seq,
                                    int64_t seq_len, float *logits, sae_hook_fn hook,
                                    void *hook_user)
{
    sae_host h;
    sae_status s = read_host(&h, host);
    if (s != SAE_OK)
        return s;
    if (!tokens)
        return sae__fail(SAE_EINVAL, "sae_host_forward: tokens is NULL");
    if ((s = check_batch(&h, n_seq, seq_len)) != SAE_OK)
        return s;
    for (int64_t i = 0; i < n_seq * seq_len; i++)
        if (tokens[i] < 0 || tokens[i] >= h.vocab_size)
            return sae__fail(SAE_ERANGE, "token %lld of sequence %lld is %d, outside [0, %lld)",
                             (long long)(i % seq_len), (long long)(i / seq_len), (int)tokens[i],
                             (long long)h.vocab_size);
    sae_clear_error();
    s = h.forward(h.user, tokens, n_seq, seq_len, logits, hook, hook_user);
    return s == SAE_OK ? SAE_OK : host_failed(s, "forward");
}

SAE_API sae_status sae_host_backward(const sae_host *host, int64_t n_seq, int64_t seq_len,
                                     const float *d_logits, float *const *d_hooks,
                                     const uint8_t *stop_grad)
{
    sae_host h;
    sae_status s = read_host(&h, host);
    if (s != SAE_OK)
        return s;
    if (!h.backward)
        return sae__fail(SAE_EUNSUPPORTED, "this host has no backward pass");
    if (!d_logits || (h.n_hooks > 0 && !d_hooks))
        return sae__fail(SAE_EINVAL, "sae_host_backward: d_logits or d_hooks is NULL");
    if ((s = check_batch(&h, n_seq, seq_len)) != SAE_OK)
        return s;
    sae_clear_error();
    s = h.backward(h.user, n_seq, seq_len, d_logits, d_hooks, stop_grad);
    return s == SAE_OK ? SAE_OK : host_failed(s, "backward");
}
