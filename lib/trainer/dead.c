/* dead.c: dead-feature counters and the dead mask of a step.
 *
 * A counter per feature: steps (SAE_DEAD_STEPS, SAE_DEAD_STEPS_AFTER) or tokens since it last
 * fired. After a batch of n rows: next_j = 0 if j fired, else since_j + (1 or n). "Fired" is
 * decided by the loss: a positive code (standard, SAELens TopK) or being among the kept top-k
 * (dictionary_learning, sparsify count a kept zero too). The mask:
 *   STEPS, TOKENS_BEFORE:  since_j > window   (counters before this batch: SAELens, sparsify)
 *   TOKENS_AFTER:          next_j >= window   (after it: dictionary_learning TopK)
 *   STEPS_AFTER:           next_j > window    (after it: dictionary_learning resampling) */
#include "trainer_internal.h"

static bool counts_after(const sae__train_cfg *c)
{
    return c->dead_rule == SAE_DEAD_TOKENS_AFTER || c->dead_rule == SAE_DEAD_STEPS_AFTER;
}

bool sae__is_dead(const sae__train_cfg *c, int64_t count)
{
    return c->dead_rule == SAE_DEAD_TOKENS_AFTER ? count >= c->dead_window
                                                 : count > c->dead_window;
}

int64_t sae__dead_update(const sae__train_cfg *c, const int64_t *since, const uint8_t *fired,
                         int64_t n, int64_t *next, uint8_t *dead, int32_t *dead_list)
{
    const bool steps = c->dead_rule == SAE_DEAD_STEPS || c->dead_rule == SAE_DEAD_STEPS_AFTER;
    const int64_t add = steps ? 1 : n;
    const bool after = counts_after(c);
    int64_t count = 0;
    for (int64_t j = 0; j < c->F; j++) {
        next[j] = fired[j] ? 0 : (since[j] > INT64_MAX - add ? INT64_MAX : since[j] + add);
        bool d = sae__is_dead(c, after ? next[j] : since[j]);
        dead[j] = d;
        if (d)
            dead_list[count++] = (int32_t)j;
    }
    return count;
}
