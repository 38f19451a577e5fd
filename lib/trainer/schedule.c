/* schedule.c: learning-rate and L1-coefficient schedules (closed forms).
 *
 * Step s = 0, 1, ... (the scheduler's own counter: the first step is s = 0). With W warm-up
 * steps, D decay steps and T total steps:
 *   s < W            FROM_ZERO: s / W                     (dictionary_learning, sparsify)
 *                    SAELENS:   1/W + (1 - 1/W) s/(W - 1)  (torch LinearLR(1/W, 1, W - 1))
 *   s >= T - D       end * (T - s) / D, end = lr_end/lr for cosine, 1 for constant
 *                    (SAELens' final LinearLR(end, 0, D); dictionary_learning's decay_start =
 *                    T - D; sparsify's get_linear_schedule_with_warmup with D = T - W)
 *   otherwise        constant: 1; cosine: (lr_end + (lr - lr_end)(1 + cos(pi t/M))/2) / lr,
 *                    t = s - W, M = T - W - D (torch CosineAnnealingLR's closed form)
 * With resampling every R steps the warm-up restarts after each resampling: the warm-up rule
 * applies to s mod R (dictionary_learning: min((s % R) / W, 1)).
 * L1 warm-up: min(s / W1, 1) (SAELens CoefficientScheduler, dictionary_learning sparsity
 * warm-up). */
#include <math.h>

#include "trainer_internal.h"

static double warmup_factor(const sae__train_cfg *c, int64_t s)
{
    double W = (double)c->warmup_steps;
    if (c->lr_warmup == SAE_WARMUP_FROM_ZERO)
        return (double)s / W;
    if (c->warmup_steps == 1) /* LinearLR(1, 1, 0): nothing to warm up */
        return 1.0;
    return 1.0 / W + (1.0 - 1.0 / W) * (double)s / (W - 1.0);
}

double sae__lr_at(const sae__train_cfg *c, int64_t s)
{
    const int64_t sw = c->resample_steps > 0 ? s % c->resample_steps : s;
    if (sw < c->warmup_steps)
        return c->lr * warmup_factor(c, sw);
    bool cosine = c->lr_schedule == SAE_LR_COSINE;
    if (c->decay_steps > 0 && s >= c->total_steps - c->decay_steps) {
        double end = cosine ? c->lr_end / c->lr : 1.0;
        double left = (double)(c->total_steps - s);
        return c->lr * end * (left > 0 ? left : 0.0) / (double)c->decay_steps;
    }
    if (!cosine)
        return c->lr;
    double t = (double)(s - c->warmup_steps);
    double M = (double)(c->total_steps - c->warmup_steps - c->decay_steps);
    if (t > M)
        t = M;
    return c->lr_end + (c->lr - c->lr_end) * (1.0 + cos(M_PI * t / M)) / 2.0;
}

double sae__l1_scale_at(const sae__train_cfg *c, int64_t s)
{
    if (c->l1_warmup_steps <= 0 || s >= c->l1_warmup_steps)
        return 1.0;
    return (double)s / (double)c->l1_warmup_steps;
}
