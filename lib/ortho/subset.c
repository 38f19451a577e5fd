/* subset.c: seeded random subsets of feature ids (ortho.h, sae_ortho_subset).
 *
 * sae-icm draws S = randperm(F)[:m] every step. Here: selection sampling (Knuth, TAOCP 3.4.2,
 * algorithm S): id i is taken with probability (still needed) / (ids left), an exact integer
 * draw from sae_rng_below, which gives every m-subset the same probability and emits the ids in
 * ascending order (good locality for the gathers). The stream (seed, counter) makes draw
 * `counter` replayable on its own. */
#include "ortho_internal.h"

sae_status sae_ortho_subset(int32_t *subset, int64_t *n_drawn, int64_t n_subset,
                            int64_t n_features, uint64_t seed, uint64_t counter)
{
    if (!subset)
        return sae__fail(SAE_EINVAL, "subset is NULL");
    if (n_subset < 1 || n_features < 1 || n_features > INT32_MAX)
        return sae__fail(SAE_EINVAL, "subset of %lld out of %lld features: need n_subset >= 1 "
                         "and 1 <= n_features <= 2^31-1", (long long)n_subset,
                         (long long)n_features);
    int64_t need = n_subset < n_features ? n_subset : n_features, m = 0;
    sae_rng rng;
    sae_rng_init(&rng, seed, counter);
    for (int64_t i = 0; i < n_features && m < need; i++)
        if ((int64_t)sae_rng_below(&rng, (uint64_t)(n_features - i)) < need - m)
            subset[m++] = (int32_t)i;
    if (n_drawn)
        *n_drawn = need;
    return SAE_OK;
}
