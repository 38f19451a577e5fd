/* trainer_util.c: see trainer_util.h. */
#include "trainer_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "trainer/trainer_internal.h"

void check_scaled(const float *got, const float *want, int64_t n, double tol, const char *what)
{
    double big = 0;
    for (int64_t i = 0; i < n; i++)
        big = fabs(want[i]) > big ? fabs(want[i]) : big;
    assert_close_f32(got, want, n, tol * big + 1e-30, tol, what);
}

sae_train_metrics check_against_reference(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                          const char *what)
{
    const int64_t F = t->cfg.F, d = t->cfg.d_in;
    sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
    assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, ldx, &m, NULL));
    float *ref = test_malloc(sizeof(float) * (size_t)t->n_params);
    sae__params g = sae__params_layout(&t->cfg, ref);
    sae__loss_terms L;
    assert_sae_ok(sae__loss_grad_ref(&t->cfg, &t->p, t->since_fired, m.l1_coefficient, n, x, ldx,
                                     &g, &L));
    const struct {
        const char *name;
        const float *got, *want;
        int64_t count;
    } parts[] = {{"W_encT", t->gp.W_encT, g.W_encT, F * d},
                 {"W_dec", t->gp.W_dec, g.W_dec, F * d},
                 {"b_enc", t->gp.b_enc, g.b_enc, F},
                 {"b_dec", t->gp.b_dec, g.b_dec, d},
                 {"theta", t->gp.theta, g.theta, F},
                 {"r_mag", t->gp.r_mag, g.r_mag, F},
                 {"b_mag", t->gp.b_mag, g.b_mag, F}};
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
        if (!parts[p].got) /* a block the architecture does not have */
            continue;
        char label[300];
        snprintf(label, sizeof label, "%s: %s", what, parts[p].name);
        check_scaled(parts[p].got, parts[p].want, parts[p].count, 2e-5, label);
    }
    const double pairs[][2] = {{m.loss, L.loss}, {m.mse, L.mse}, {m.aux, L.aux},
                               {m.l1, L.l1}, {m.l0, L.l0}};
    for (size_t p = 0; p < 5; p++)
        if (fabs(pairs[p][0] - pairs[p][1]) > 1e-5 * fabs(pairs[p][1]) + 1e-12)
            fail_msg("%s: scalar %zu is %.9g, reference %.9g", what, p, pairs[p][0], pairs[p][1]);
    if (n > 1 && !(fabs(m.fvu - L.fvu) <= 1e-5 * fabs(L.fvu)))
        fail_msg("%s: fvu %.9g, reference %.9g", what, m.fvu, L.fvu);
    assert_int_equal(m.n_dead, L.n_dead);
    test_free(ref);
    return m;
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
