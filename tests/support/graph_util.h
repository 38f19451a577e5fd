/*
 * graph_util.h: what the circuit tests share — random dictionaries whose codes are sparse on
 * activations of a given scale, prompt pairs from flat arrays, and brute-force node effects and
 * edges computed by forward runs alone (independent of the backward passes the library uses).
 */
#ifndef SAE_TEST_GRAPH_UTIL_H
#define SAE_TEST_GRAPH_UTIL_H

#include <stdint.h>

#include "sae/sae.h"

/* A dictionary (d_in, d_sae) of architecture arch (TopK: k = d_sae / 4), weights N(0, 1) scaled
 * by `scale` / sqrt(d_in) (encoder) and 1 / sqrt(d_in) (decoder), b_enc = -bias, b_dec small;
 * flags and input_norm as given (act_scale 1.5 for SAE_NORM_SCALE). Free with sae_dict_free. */
sae_dict *random_dict(int32_t arch, int64_t d_in, int64_t d_sae, uint32_t flags,
                      int32_t input_norm, float scale, float bias, uint64_t seed);

/* The metric of the library's default (logit[clean answer] − logit[patch answer] at the last
 * position) for each pair, after a forward of its clean prompt with `hook` installed. out:
 * (n_pairs). */
void pair_metrics(const sae_host *host, const sae_prompt_pairs *p, sae_hook_fn hook, void *user,
                  double *out);

/* The activations at hook id `hook` of the clean (or patch) prompt of pair i:
 * (len, d_model) into out (test_malloc'd; free with test_free). */
float *pair_activations(const sae_host *host, const sae_prompt_pairs *p, int64_t i, int patch,
                        int32_t hook);

#endif /* SAE_TEST_GRAPH_UTIL_H */
