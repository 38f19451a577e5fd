/* dead.c: dead-feature counters and the dead mask of a step.
 *
 * A counter per feature: steps (SAE_DEAD_STEPS) or tokens since it last fired. After a batch of
 * n rows: next_j = 0 if j fired, else since_j + (1 or n). "Fired" is decided by the loss: a
 * positive code (standard, SAELens TopK) or being among the kept top-k (dictionary_learning,
 * sparsify count a kept zero too). The mask:
 *   STEPS, TOKENS_BEFORE:  since_j > window   (counters before this batch: SAELens, sparsify)
 *   TOKENS_AFTER:          next_j >= window   (after it: dictionary_learning) */
#include "trainer_internal.h"

int64_t sae__dead_update(const sae__train_cfg *c, const int64_t *since, const uint8_t *fired,
                         int64_t n, int64_t *next, uint8_t *dead, int32_t *dead_list)
{
    const int64_t add = c->dead_rule == SAE_DEAD_STEPS ? 1 : n;
    int64_t count = 0;
    for (int64_t j = 0; j < c->F; j++) {
        next[j] = fired[j] ? 0 : (since[j] > INT64_MAX - add ? INT64_MAX : since[j] + add);
        bool d = c->dead_rule == SAE_DEAD_TOKENS_AFTER ? next[j] >= c->dead_window
                                                       : since[j] > c->dead_window;
        dead[j] = d;
        if (d)
            dead_list[count++] = (int32_t)j;
    }
    return count;
}
