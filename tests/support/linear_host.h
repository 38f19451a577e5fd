/*
 * linear_host.h: a test host (sae_host) in which the logits are a linear function of the
 * activations at every hook point, so that attribution patching is exact and the edges of a
 * circuit can be checked against forward differences.
 *
 * Hook points "layer.0" .. "layer.{H-1}", activations (n_tokens, d) per hook:
 *   x_0[t] = E[token_t]
 *   x_h[t] = x_{h-1}[t] + A_h x_{h-1}[t] + B_h mean_{s<=t} x_{h-1}[s] + S_h x_{h-2}[t]   (h >= 1)
 *   logits[t] = W x_{H-1}[t]
 * with S_1 = 0, random E (vocab, d), A_h, B_h, S_h (d, d) of scale 0.3 / sqrt(d), W (vocab, d).
 * The skip S_h gives x_{h-2} a path to x_h that avoids x_{h-1} (a "direct path" for
 * stop-gradient). The hook at h sees x_h and may change it; later hooks see the change.
 * Backward (from the logits or from a hook point) is exact: the transposes of these maps, with
 * the stop-gradient rules of host.h.
 */
#ifndef SAE_TEST_LINEAR_HOST_H
#define SAE_TEST_LINEAR_HOST_H

#include <stdint.h>

#include "sae/sae.h"

typedef struct linear_host linear_host;

/* A host with n_hooks hook points, width d, vocab tokens, sequences up to max_seq tokens, and
 * weights drawn from `seed`. Allocated with test_malloc: free with linear_host_free. */
linear_host *linear_host_create(int32_t n_hooks, int64_t d, int64_t vocab, int64_t max_seq,
                                uint64_t seed);
void linear_host_free(linear_host *h);

/* Fill *out with the host's table (forward, backward, backward_from); borrowed from h. */
void linear_host_table(linear_host *h, sae_host *out);

#endif /* SAE_TEST_LINEAR_HOST_H */
