/* host.c: the library side of `sae_host` (include/sae/host.h): checking a caller's callback
 * table and the arguments of a pass before the host sees them, and hook-name lookup. The hosts
 * themselves (engines, the llama2.c host in examples/llama2) live outside the library. Also the
 * scalar metrics on logits (cross-entropy, logit difference) whose gradient seeds a backward. */
#include <math.h>
#include <string.h>

#include "host_internal.h"

sae_status sae__host_read(sae_host *h, const sae_host *host)
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
    return sae__host_read(&h, host);
}

SAE_API sae_status sae_host_find_hook(int32_t *out_id, const sae_host *host, const char *name)
{
    if (out_id)
        *out_id = -1;
    if (!out_id || !name)
        return sae__fail(SAE_EINVAL, "sae_host_find_hook: out_id or name is NULL");
    sae_host h;
    sae_status s = sae__host_read(&h, host);
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

sae_status sae__host_check_tokens(const sae_host *h, const int32_t *tokens, int64_t n_seq,
                                  int64_t seq_len)
{
    if (!tokens)
        return sae__fail(SAE_EINVAL, "the tokens are NULL");
    sae_status s = check_batch(h, n_seq, seq_len);
    if (s != SAE_OK)
        return s;
    for (int64_t i = 0; i < n_seq * seq_len; i++)
        if (tokens[i] < 0 || tokens[i] >= h->vocab_size)
            return sae__fail(SAE_ERANGE, "token %lld of sequence %lld is %d, outside [0, %lld)",
                             (long long)(i % seq_len), (long long)(i / seq_len), (int)tokens[i],
                             (long long)h->vocab_size);
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
    sae_status s = sae__host_read(&h, host);
    if (s != SAE_OK)
        return s;
    if ((s = sae__host_check_tokens(&h, tokens, n_seq, seq_len)) != SAE_OK)
        return s;
    sae_clear_error();
    s = h.forward(h.user, tokens, n_seq, seq_len, logits, hook, hook_user);
    return s == SAE_OK ? SAE_OK : host_failed(s, "forward");
}

SAE_API sae_status sae_host_backward(const sae_host *host, int64_t n_seq, int64_t seq_len,
                                     const float *d_logits, float *const *d_hooks,
                                     const uint8_t *stop_grad)
{
    sae_host h;
    sae_status s = sae__host_read(&h, host);
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

SAE_API sae_status sae_host_backward_from(const sae_host *host, int64_t n_seq, int64_t seq_len,
                                          int32_t seed_hook, const float *seed,
                                          float *const *d_hooks, const uint8_t *stop_grad)
{
    sae_host h;
    sae_status s = sae__host_read(&h, host);
    if (s != SAE_OK)
        return s;
    if (!h.backward_from)
        return sae__fail(SAE_EUNSUPPORTED, "this host has no backward pass from a hook point");
    if (!seed || !d_hooks)
        return sae__fail(SAE_EINVAL, "sae_host_backward_from: seed or d_hooks is NULL");
    if (seed_hook < 0 || seed_hook >= h.n_hooks)
        return sae__fail(SAE_ERANGE, "sae_host_backward_from: seed hook %d is outside [0, %d)",
                         (int)seed_hook, (int)h.n_hooks);
    if ((s = check_batch(&h, n_seq, seq_len)) != SAE_OK)
        return s;
    sae_clear_error();
    s = h.backward_from(h.user, n_seq, seq_len, seed_hook, seed, d_hooks, stop_grad);
    return s == SAE_OK ? SAE_OK : host_failed(s, "backward-from-hook");
}

/* (n, v) elements without overflow of the buffer size. */
static sae_status check_logits_shape(int64_t n, int64_t v, const char *what)
{
    if (n < 1 || v < 1 || n > INT64_MAX / (int64_t)sizeof(float) / v)
        return sae__fail(SAE_ESHAPE, "%s of %lld rows of %lld logits: need >= 1 of each",
                         what, (long long)n, (long long)v);
    return SAE_OK;
}

double sae__row_logsumexp(const float *z, int64_t v)
{
    double max = z[0], sum = 0.0;
    for (int64_t j = 1; j < v; j++)
        max = z[j] > max ? z[j] : max;
    for (int64_t j = 0; j < v; j++)
        sum += exp(z[j] - max);
    return max + log(sum);
}

SAE_API sae_status sae_logits_ce(float *out_ce, float *d_logits, const float *logits,
                                 const int32_t *targets, int64_t n_tokens, int64_t vocab_size)
{
    if (!out_ce || !logits || !targets)
        return sae__fail(SAE_EINVAL, "sae_logits_ce: out_ce, logits or targets is NULL");
    sae_status s = check_logits_shape(n_tokens, vocab_size, "sae_logits_ce");
    if (s != SAE_OK)
        return s;
    int64_t count = 0;
    for (int64_t i = 0; i < n_tokens; i++) {
        if (targets[i] >= vocab_size)
            return sae__fail(SAE_ERANGE, "sae_logits_ce: target %d of row %lld is outside "
                             "[0, %lld)", (int)targets[i], (long long)i, (long long)vocab_size);
        count += targets[i] >= 0;
    }
    if (count == 0)
        return sae__fail(SAE_EINVAL, "sae_logits_ce: no row has a target (all negative)");
    /* First the loss (nothing written on failure), then the gradient. */
    double total = 0.0;
    for (int64_t i = 0; i < n_tokens; i++) {
        if (targets[i] < 0)
            continue;
        const float *z = logits + i * vocab_size;
        total += sae__row_logsumexp(z, vocab_size) - z[targets[i]];
    }
    if (!isfinite(total))
        return sae__fail(SAE_ENUMERIC, "sae_logits_ce: the logits are not finite");
    *out_ce = (float)(total / (double)count);
    if (!d_logits)
        return SAE_OK;
    for (int64_t i = 0; i < n_tokens; i++) {
        const float *z = logits + i * vocab_size;
        float *d = d_logits + i * vocab_size;
        if (targets[i] < 0) {
            memset(d, 0, (size_t)vocab_size * sizeof(float));
            continue;
        }
        double lse = sae__row_logsumexp(z, vocab_size);
        for (int64_t j = 0; j < vocab_size; j++)
            d[j] = (float)((exp(z[j] - lse) - (j == targets[i])) / (double)count);
    }
    return SAE_OK;
}

SAE_API sae_status sae_logits_diff(float *out_diff, float *d_logits, const float *logits,
                                   int64_t n_seq, int64_t seq_len, int64_t vocab_size,
                                   int32_t token_a, int32_t token_b)
{
    if (!out_diff || !logits)
        return sae__fail(SAE_EINVAL, "sae_logits_diff: out_diff or logits is NULL");
    sae_status s = check_logits_shape(n_seq, seq_len, "sae_logits_diff");
    if (s != SAE_OK || (s = check_logits_shape(n_seq * seq_len, vocab_size,
                                               "sae_logits_diff")) != SAE_OK)
        return s;
    if (token_a < 0 || token_a >= vocab_size || token_b < 0 || token_b >= vocab_size)
        return sae__fail(SAE_ERANGE, "sae_logits_diff: tokens %d and %d must be in [0, %lld)",
                         (int)token_a, (int)token_b, (long long)vocab_size);
    double total = 0.0;
    for (int64_t sq = 0; sq < n_seq; sq++) {
        const float *z = logits + (sq * seq_len + seq_len - 1) * vocab_size;
        total += (double)z[token_a] - (double)z[token_b];
    }
    *out_diff = (float)(total / (double)n_seq);
    if (d_logits) {
        memset(d_logits, 0, (size_t)(n_seq * seq_len * vocab_size) * sizeof(float));
        for (int64_t sq = 0; sq < n_seq; sq++) {
            float *d = d_logits + (sq * seq_len + seq_len - 1) * vocab_size;
            d[token_a] += 1.0f / (float)n_seq;
            d[token_b] -= 1.0f / (float)n_seq;
        }
    }
    return SAE_OK;
}
