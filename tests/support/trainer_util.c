/* trainer_util.c: see trainer_util.h. */
#include "trainer_util.h"

#include <math.h>
#include <string.h>

void check_scaled(const float *got, const float *want, int64_t n, double tol, const char *what)
{
    double big = 0;
    for (int64_t i = 0; i < n; i++)
        big = fabs(want[i]) > big ? fabs(want[i]) : big;
    assert_close_f32(got, want, n, tol * big + 1e-30, tol, what);
}

/* x (n, d) = rows of 3 random directions of dirs (G, d) with coefficients in [0.5, 1.5). */
static void synthetic_batch(float *x, int64_t n, int64_t d, const float *dirs, int64_t G,
                            sae_rng *rng)
{
    memset(x, 0, sizeof(float) * (size_t)(n * d));
    for (int64_t b = 0; b < n; b++)
        for (int a = 0; a < 3; a++) {
            const int64_t g = (int64_t)sae_rng_below(rng, (uint64_t)G);
            const float c = 0.5f + sae_rng_uniform(rng);
            for (int64_t i = 0; i < d; i++)
                x[b * d + i] += c * dirs[g * d + i];
        }
}

void run_steps(sae_trainer *t, int steps, int64_t n, int64_t d, uint64_t seed, double *losses)
{
    const int64_t G = 24;
    float *dirs = test_malloc(sizeof(float) * (size_t)(G * d));
    float *x = test_malloc(sizeof(float) * (size_t)(n * d));
    fill_normal(dirs, G * d, 99, 1.0f);
    for (int64_t g = 0; g < G; g++) {
        double s = 0;
        for (int64_t i = 0; i < d; i++)
            s += dirs[g * d + i] * dirs[g * d + i];
        for (int64_t i = 0; i < d; i++)
            dirs[g * d + i] /= (float)sqrt(s);
    }
    sae_rng rng;
    sae_rng_init(&rng, seed, 1);
    for (int s = 0; s < steps; s++) {
        synthetic_batch(x, n, d, dirs, G, &rng);
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae_trainer_step(t, n, x, d, &m));
        if (losses)
            losses[s] = m.mse;
    }
    test_free(dirs), test_free(x);
}
