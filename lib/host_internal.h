/*
 * host_internal.h: the checks of lib/host.c that the modules running a host share
 * (lib/capture: the host source, capture to a file, loss recovered), and its log-sum-exp.
 */
#ifndef SAE_HOST_INTERNAL_H
#define SAE_HOST_INTERNAL_H

#include "internal.h"

/* The caller's table copied into `h` (fields appended after the caller's struct_size stay zero)
 * and checked as by sae_host_check. */
sae_status sae__host_read(sae_host *h, const sae_host *host);

/* The arguments of a forward pass over tokens (n_seq, seq_len) of a checked host: tokens not
 * NULL, n_seq >= 1, 1 <= seq_len <= max_seq_len, no overflow of the logits, every id in
 * [0, vocab_size) (SAE_ERANGE naming the sequence and position). */
sae_status sae__host_check_tokens(const sae_host *h, const int32_t *tokens, int64_t n_seq,
                                  int64_t seq_len);

/* log Σ_j exp(z_j) of one row of v >= 1 logits, in double (shifted by the row's max). */
double sae__row_logsumexp(const float *z, int64_t v);

#endif /* SAE_HOST_INTERNAL_H */
