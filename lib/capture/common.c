/* common.c: the argument checks, batch size and row copy shared by the host source, capture
 * to a file and loss recovered (capture_internal.h). */
#include <string.h>

#include "capture_internal.h"

sae_status sae__capture_check(sae_host *h, const sae_host *host, const int32_t *tokens,
                              int64_t n_seq, int64_t seq_len, int32_t skip_bos,
                              const char *what)
{
    sae_status s = sae__host_read(h, host);
    if (s != SAE_OK)
        return s;
    if (skip_bos != 0 && skip_bos != 1)
        return sae__fail(SAE_EINVAL, "%s: skip_bos is %d; use 0 or 1", what, (int)skip_bos);
    if (skip_bos && seq_len == 1)
        return sae__fail(SAE_ESHAPE, "%s: sequences of 1 token have no rows left once position "
                         "0 is skipped", what);
    if ((s = sae__host_check_tokens(h, tokens, n_seq, seq_len)) != SAE_OK)
        return sae__fail_prefix(s, what);
    return SAE_OK;
}

sae_status sae__capture_check_hook(const sae_host *h, int32_t hook_id)
{
    if (hook_id < 0 || hook_id >= h->n_hooks)
        return sae__fail(SAE_ERANGE, "hook id %d is outside [0, %d): the host has %d hook points",
                         (int)hook_id, (int)h->n_hooks, (int)h->n_hooks);
    return SAE_OK;
}

sae_status sae__capture_batch_seqs(int64_t *out, int64_t requested, int64_t n_seq,
                                   int64_t seq_len, int64_t max_tokens)
{
    if (requested < 0)
        return sae__fail(SAE_EINVAL, "seqs_per_batch is %lld; use 0 (default) or more",
                         (long long)requested);
    int64_t b = requested > 0 ? requested : max_tokens / seq_len;
    b = b < 1 ? 1 : b;
    *out = b < n_seq ? b : n_seq;
    return SAE_OK;
}

sae_status sae__capture_check_call(const sae_host *h, int32_t hook_id, int64_t n_tokens,
                                   int64_t ld, int64_t n_seq, int64_t seq_len, bool *reached)
{
    if (*reached)
        return sae__fail(SAE_EINVAL, "the host called hook point %s twice in one forward pass",
                         h->hook_names[hook_id]);
    if (n_tokens != n_seq * seq_len || ld < h->d_model)
        return sae__fail(SAE_EINVAL, "the host called hook point %s with %lld rows of stride "
                         "%lld; expected %lld rows (%lld sequences of %lld) of stride >= %lld",
                         h->hook_names[hook_id], (long long)n_tokens, (long long)ld,
                         (long long)(n_seq * seq_len), (long long)n_seq, (long long)seq_len,
                         (long long)h->d_model);
    *reached = true;
    return SAE_OK;
}

sae_status sae__capture_missed(const sae_host *h, int32_t hook_id)
{
    return sae__fail(SAE_EINVAL, "the host's forward pass did not reach hook point %s",
                     h->hook_names[hook_id]);
}

void sae__capture_copy_rows(float *dst, int64_t ldd, const float *x, int64_t ld, int64_t n_seq,
                            int64_t seq_len, int64_t d, bool skip)
{
    const int64_t t0 = skip ? 1 : 0;
    for (int64_t s = 0; s < n_seq; s++)
        for (int64_t t = t0; t < seq_len; t++)
            memcpy(dst + (s * (seq_len - t0) + t - t0) * ldd, x + (s * seq_len + t) * ld,
                   (size_t)d * sizeof(float));
}
