/*
 * capture_internal.h: what the users of a host's activations share (lib/capture: the host
 * source, capture to a file, loss recovered): the checks of their common arguments, the batch
 * size, and the copy of one hook call's rows with or without position 0.
 */
#ifndef SAE_CAPTURE_INTERNAL_H
#define SAE_CAPTURE_INTERNAL_H

#include "../host_internal.h"

/* Tokens per forward batch when the caller leaves it to the library. */
#define SAE_CAPTURE_BATCH_TOKENS 2048

/* The checked copy of the host in `h`, and the arguments every capture takes: tokens as for
 * sae__host_check_tokens, skip_bos 0 or 1 with seq_len >= 2 when set (`what` names the call). */
sae_status sae__capture_check(sae_host *h, const sae_host *host, const int32_t *tokens,
                              int64_t n_seq, int64_t seq_len, int32_t skip_bos,
                              const char *what);

/* hook_id in [0, n_hooks) of a checked host: else SAE_ERANGE. */
sae_status sae__capture_check_hook(const sae_host *h, int32_t hook_id);

/* Sequences per forward pass: `requested` if > 0, else as many as make at most max_tokens
 * tokens; at least 1 and at most n_seq. requested < 0 is SAE_EINVAL. */
sae_status sae__capture_batch_seqs(int64_t *out, int64_t requested, int64_t n_seq,
                                   int64_t seq_len, int64_t max_tokens);

/* A hook call at hook point `hook_id` during a pass over n_seq sequences: its buffer must have
 * n_seq seq_len rows and ld >= d_model, and the hook must not have been reached yet in this
 * pass (*reached is then set). Else SAE_EINVAL naming the hook point. */
sae_status sae__capture_check_call(const sae_host *h, int32_t hook_id, int64_t n_tokens,
                                   int64_t ld, int64_t n_seq, int64_t seq_len, bool *reached);

/* SAE_EINVAL: the host's forward pass returned without calling hook point `hook_id`. */
sae_status sae__capture_missed(const sae_host *h, int32_t hook_id);

/* The activations of one hook call, x: (n_seq seq_len, d) with row stride ld, to dst without
 * the rows of position 0 when skip: row (s, t) goes to dst + (s (seq_len - skip) + t - skip)
 * ldd. */
void sae__capture_copy_rows(float *dst, int64_t ldd, const float *x, int64_t ld, int64_t n_seq,
                            int64_t seq_len, int64_t d, bool skip);

#endif /* SAE_CAPTURE_INTERNAL_H */
