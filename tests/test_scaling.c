/* test_scaling.c: activation scaling (lib/trainer/scaling.c).
 *   - the estimate s = sqrt(d_in) / mean ||x|| over the rows given, or the first batch;
 *   - training with scaling is training on s x, bit for bit;
 *   - the exported dictionary (s folded into its weights) encodes unscaled x with the codes of
 *     training on s x and reconstructs x_hat / s (standard, SAELens TopK with rescaling,
 *     dictionary_learning TopK with its threshold);
 *   - errors, and nothing changes when the first step fails. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sae/encoder.h"
#include "sae/trainer.h"
#include "test_util.h"
#include "trainer/trainer_internal.h"

enum { D = 12, F = 40, N = 32, K = 4 };

static sae_trainer *make(int32_t arch, int32_t preset, int32_t scaling)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = arch, o.preset = preset, o.d_in = D, o.d_sae = F, o.k = arch == SAE_ARCH_TOPK ? K : 0;
    o.seed = 9, o.n_threads = 2, o.warmup_steps = SAE_TRAIN_OFF, o.lr = 1e-2;
    o.l1_warmup_steps = SAE_TRAIN_OFF, o.threshold_start_step = SAE_TRAIN_OFF;
    o.activation_scaling = scaling, o.allocator = test_allocator();
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    return t;
}

/* Batch s of a run: N(0, 1) * 7 plus an offset, so that s is far from 1. */
static void batch(float *x, int s)
{
    fill_normal(x, N * D, 1000 + (uint64_t)s, 7.0f);
    for (int i = 0; i < N * D; i++)
        x[i] += 3.0f;
}

static double mean_norm(const float *x, int64_t n)
{
    double sum = 0;
    for (int64_t b = 0; b < n; b++) {
        double sq = 0;
        for (int i = 0; i < D; i++)
            sq += (double)x[b * D + i] * x[b * D + i];
        sum += sqrt(sq);
    }
    return sum / (double)n;
}

static void test_estimate(void **state)
{
    (void)state;
    float x0[N * D], x1[N * D];
    batch(x0, 0), batch(x1, 1);
    sae_trainer *t = make(SAE_ARCH_STANDARD, SAE_PRESET_SAELENS, SAE_SWITCH_ON);
    assert_true(sae_trainer_activation_scale(t) == 1.0f); /* not known yet */
    assert_sae_ok(sae_trainer_estimate_scale(t, N, x0, D));
    assert_true(sae_trainer_activation_scale(t) == (float)(sqrt(D) / mean_norm(x0, N)));
    /* Two batches: the mean over all their rows. */
    assert_sae_ok(sae_trainer_estimate_scale(t, N, x1, D));
    const double both = (mean_norm(x0, N) + mean_norm(x1, N)) / 2;
    assert_true(fabsf(sae_trainer_activation_scale(t) - (float)(sqrt(D) / both)) <=
                1e-6f * (float)(sqrt(D) / both));
    const float s = sae_trainer_activation_scale(t);
    assert_sae_ok(sae_trainer_step(t, N, x0, D, NULL));
    assert_true(sae_trainer_activation_scale(t) == s); /* the step keeps it */
    assert_int_equal(sae_trainer_estimate_scale(t, N, x0, D), SAE_EINVAL); /* too late */
    sae_trainer_free(t);

    /* Without an estimate, the first step's batch gives s; a failing first step (all-zero
     * batch: no scale) changes nothing. */
    t = make(SAE_ARCH_STANDARD, SAE_PRESET_SAELENS, SAE_SWITCH_ON);
    float zeros[N * D] = {0};
    assert_int_equal(sae_trainer_step(t, N, zeros, D, NULL), SAE_ENUMERIC);
    assert_int_equal(sae_trainer_estimate_scale(t, N, zeros, D), SAE_ENUMERIC);
    assert_int_equal(sae_trainer_steps(t), 0);
    assert_true(sae_trainer_activation_scale(t) == 1.0f && t->ex.act_scale == 0.0f);
    assert_sae_ok(sae_trainer_step(t, N, x1, D, NULL));
    assert_true(sae_trainer_activation_scale(t) == (float)(sqrt(D) / mean_norm(x1, N)));
    x0[5] = INFINITY;
    assert_int_equal(sae_trainer_estimate_scale(t, N, x0, D), SAE_ENUMERIC);
    assert_int_equal(sae_trainer_estimate_scale(t, N, x1, D - 1), SAE_ESHAPE);
    sae_trainer_free(t);

    /* Scaling off: s is 1 and cannot be estimated. */
    t = make(SAE_ARCH_STANDARD, SAE_PRESET_SAELENS, 0);
    assert_int_equal(sae_trainer_estimate_scale(t, N, x1, D), SAE_EINVAL);
    assert_sae_ok(sae_trainer_step(t, N, x1, D, NULL));
    assert_true(sae_trainer_activation_scale(t) == 1.0f);
    sae_trainer_free(t);
}

/* Encode x with dict `a` and y with dict `b`: codes equal, reconstructions a = b / s. */
static void check_dicts(const sae_dict *a, const float *x, const sae_dict *b, const float *y,
                        float s, const char *what)
{
    sae_encoder *ea = NULL, *eb = NULL;
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.allocator = test_allocator();
    assert_sae_ok(sae_encoder_create(&ea, a, &eo));
    assert_sae_ok(sae_encoder_create(&eb, b, &eo));
    float fa[N * F], fb[N * F], ra[N * D], rb[N * D];
    assert_sae_ok(sae_encoder_encode(ea, N, x, D, fa, F, NULL, 0));
    assert_sae_ok(sae_encoder_encode(eb, N, y, D, fb, F, NULL, 0));
    assert_sae_ok(sae_encoder_reconstruct(ea, N, x, D, ra, D, NULL, 0));
    assert_sae_ok(sae_encoder_reconstruct(eb, N, y, D, rb, D, NULL, 0));
    for (int i = 0; i < N * D; i++)
        rb[i] /= s;
    double worst_f = 0, worst_r = 0;
    for (int i = 0; i < N * F; i++)
        worst_f = fmax(worst_f, fabs((double)fa[i] - fb[i]));
    for (int i = 0; i < N * D; i++)
        worst_r = fmax(worst_r, fabs((double)ra[i] - rb[i]));
    printf("    %-28s codes max |a-b| %.2e, reconstructions %.2e\n", what, worst_f, worst_r);
    assert_close_f32(fa, fb, N * F, 1e-4, 1e-4, "codes");
    assert_close_f32(ra, rb, N * D, 1e-4, 1e-4, "reconstructions");
    sae_encoder_free(ea), sae_encoder_free(eb);
}

/* A trainer with scaling on and one with it off fed s x train identically; their exports agree
 * on x and s x. */
static void test_scaled_training_and_export(void **state)
{
    (void)state;
    const struct {
        const char *name;
        int32_t arch, preset;
    } cases[] = {{"standard (SAELens)", SAE_ARCH_STANDARD, SAE_PRESET_SAELENS},
                 {"standard (dict. learning)", SAE_ARCH_STANDARD, SAE_PRESET_DICTIONARY_LEARNING},
                 {"TopK rescaled (SAELens)", SAE_ARCH_TOPK, SAE_PRESET_SAELENS},
                 {"TopK (dict. learning)", SAE_ARCH_TOPK, SAE_PRESET_DICTIONARY_LEARNING}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sae_trainer *a = make(cases[c].arch, cases[c].preset, SAE_SWITCH_ON);
        sae_trainer *b = make(cases[c].arch, cases[c].preset, SAE_SWITCH_OFF);
        float x[N * D], xs[N * D];
        batch(x, 0);
        assert_sae_ok(sae_trainer_estimate_scale(a, N, x, D));
        const float s = sae_trainer_activation_scale(a);
        assert_true(s < 0.2f); /* rows of norm ~ 26 for sqrt(12) */
        for (int step = 0; step < 8; step++) {
            batch(x, step);
            for (int i = 0; i < N * D; i++)
                xs[i] = x[i] * s;
            sae_train_metrics ma = SAE_TRAIN_METRICS_INIT, mb = SAE_TRAIN_METRICS_INIT;
            assert_sae_ok(sae_trainer_step(a, N, x, D, &ma));
            assert_sae_ok(sae_trainer_step(b, N, xs, D, &mb));
            assert_true(ma.loss == mb.loss);
        }
        assert_memory_equal(a->param, b->param, sizeof(float) * (size_t)a->n_params);
        assert_memory_equal(a->v, b->v, sizeof(float) * (size_t)a->n_params);
        assert_true(a->threshold == b->threshold);
        if (cases[c].preset == SAE_PRESET_DICTIONARY_LEARNING && cases[c].arch == SAE_ARCH_TOPK)
            assert_true(a->threshold > 0);

        sae_dict *da = NULL, *db = NULL;
        assert_sae_ok(sae_trainer_export(a, &da));
        assert_sae_ok(sae_trainer_export(b, &db));
        sae_dict_config ca = SAE_DICT_CONFIG_INIT, cb = SAE_DICT_CONFIG_INIT;
        sae_dict_get_config(da, &ca), sae_dict_get_config(db, &cb);
        assert_int_equal(ca.input_norm, SAE_NORM_NONE);
        assert_true(ca.act_scale == 1.0f);
        assert_int_equal(ca.flags, cb.flags & ~(uint32_t)SAE_DICT_RESCALE_BY_DECODER_NORM);
        sae_dict_weights wa = SAE_DICT_WEIGHTS_INIT, wb = SAE_DICT_WEIGHTS_INIT;
        sae_dict_get_weights(da, &wa), sae_dict_get_weights(db, &wb);
        if (!(cb.flags & SAE_DICT_RESCALE_BY_DECODER_NORM)) /* b_enc is not scaled by s */
            assert_memory_equal(wa.b_enc, wb.b_enc, sizeof(float) * F);
        if (wb.threshold)
            assert_memory_equal(wa.threshold, wb.threshold, sizeof(float) * F);
        batch(x, 99);
        for (int i = 0; i < N * D; i++)
            xs[i] = x[i] * s;
        check_dicts(da, x, db, xs, s, cases[c].name);
        sae_dict_free(da), sae_dict_free(db);
        sae_trainer_free(a), sae_trainer_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_scaled_training_and_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
