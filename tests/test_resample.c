/* test_resample.c: dead-feature resampling (lib/trainer/resample.c).
 *   - oracle: dictionary_learning StandardTrainer.resample_neurons given its multinomial draw
 *     (the loss weights, the first min(n_dead, batch) dead features, the Adam reset);
 *   - the weighted draw without replacement: frequencies of single and ordered pairs;
 *   - resampling inside training (resample_steps, the dead rule and warm-up restart of the
 *     dictionary_learning preset), the explicit call, option checks.
 * Tolerances from ../shared/oracle/README.md. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sae/trainer.h"
#include "test_util.h"
#include "trainer/trainer_internal.h"

static const char *oracle_file(void)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/dl_resample_d16_s64_b16.safetensors", shared_path("oracle"));
    return buf;
}

static int64_t *load_i64(const char *file, const char *name, int64_t *n)
{
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, file));
    const sae_tensor_info *t = sae_st_find(r, name);
    if (!t || t->dtype != SAE_DTYPE_I64)
        fail_msg("%s has no I64 tensor %s", file, name);
    int64_t *out = test_malloc(sizeof(int64_t) * (size_t)t->numel);
    memcpy(out, t->data, sizeof(int64_t) * (size_t)t->numel);
    *n = t->numel;
    sae_st_close(r);
    return out;
}

/* Tensor `name` of the oracle file into dst; nn.Linear decoders (d, F) are transposed into
 * libsae's W_dec rows. */
static void load_into(float *dst, const char *name, bool transpose)
{
    int64_t shape[SAE_MAX_DIMS], n = 0;
    int nd = 0;
    float *a = load_tensor_f32(oracle_file(), name, &n, shape, &nd);
    if (transpose) {
        for (int64_t i = 0; i < shape[0]; i++)
            for (int64_t j = 0; j < shape[1]; j++)
                dst[j * shape[0] + i] = a[i * shape[1] + j];
    } else {
        memcpy(dst, a, sizeof(float) * (size_t)n);
    }
    test_free(a);
}

static void check_against(const float *got, const char *name, bool transpose, double atol,
                          double rtol)
{
    int64_t shape[SAE_MAX_DIMS], n = 0;
    int nd = 0;
    float *want = load_tensor_f32(oracle_file(), name, &n, shape, &nd);
    float *w = want;
    if (transpose) {
        w = test_malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < shape[0]; i++)
            for (int64_t j = 0; j < shape[1]; j++)
                w[j * shape[0] + i] = want[i * shape[1] + j];
    }
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - w[i]));
    printf("    %-52s max |a-b| %.2e\n", name, worst);
    assert_close_f32(got, w, n, atol, rtol, name);
    if (w != want)
        test_free(w);
    test_free(want);
}

/* The four parameters (and their Adam state) in dictionary_learning's names. */
#define N_PARTS 4
static const char *const part_names[N_PARTS] = {"encoder.weight", "encoder.bias",
                                                 "decoder.weight", "bias"};
static const bool part_transposed[N_PARTS] = {false, false, true, false};

static float *part(const sae__params *p, int i)
{
    float *const parts[N_PARTS] = {p->W_encT, p->b_enc, p->W_dec, p->b_dec};
    return parts[i];
}

static void test_oracle_resample(void **state)
{
    (void)state;
    const int64_t d = 16, F = 64, n = 16;
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = SAE_ARCH_STANDARD, o.d_in = d, o.d_sae = F, o.n_threads = 1;
    o.preset = SAE_PRESET_DICTIONARY_LEARNING, o.allocator = test_allocator();
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    char name[128];
    for (int i = 0; i < N_PARTS; i++) {
        snprintf(name, sizeof name, "param.before.%s", part_names[i]);
        load_into(part(&t->p, i), name, part_transposed[i]);
        snprintf(name, sizeof name, "state.adam.before.%s.exp_avg", part_names[i]);
        load_into(part(&t->mp, i), name, part_transposed[i]);
        snprintf(name, sizeof name, "state.adam.before.%s.exp_avg_sq", part_names[i]);
        load_into(part(&t->vp, i), name, part_transposed[i]);
    }
    int64_t count = 0;
    float *x = load_tensor_f32(oracle_file(), "in.activations", &count, NULL, NULL);
    assert_int_equal(count, n * d);

    /* The multinomial weights: ||x - ae(x)|| per row. */
    assert_sae_ok(sae__trainer_reserve(t, n));
    double loss[16];
    assert_sae_ok(sae__resample_losses(t, n, x, d, loss));
    float lossf[16];
    for (int b = 0; b < n; b++)
        lossf[b] = (float)loss[b];
    check_against(lossf, "out.multinomial_weights", false, 1e-5, 1e-5);

    /* 20 dead features, 16 draws: the first 16 dead ones are resampled. */
    int64_t *deads = load_i64(oracle_file(), "in.deads", &count);
    assert_int_equal(count, F);
    uint8_t dead[64];
    int64_t n_dead = 0;
    for (int64_t j = 0; j < F; j++)
        n_dead += dead[j] = deads[j] != 0;
    assert_int_equal(n_dead, 20);
    int64_t *rows = load_i64(oracle_file(), "in.sampled_indices", &count);
    assert_int_equal(count, n);
    sae__resample_apply(t, dead, x, d, rows, count);
    for (int i = 0; i < N_PARTS; i++) {
        snprintf(name, sizeof name, "out.param.after.%s", part_names[i]);
        check_against(part(&t->p, i), name, part_transposed[i], 1e-5, 1e-5);
        snprintf(name, sizeof name, "out.adam.after.%s.exp_avg", part_names[i]);
        check_against(part(&t->mp, i), name, part_transposed[i], 1e-5, 1e-4);
        snprintf(name, sizeof name, "out.adam.after.%s.exp_avg_sq", part_names[i]);
        check_against(part(&t->vp, i), name, part_transposed[i], 1e-10, 1e-4);
    }
    test_free(rows), test_free(deads), test_free(x);
    sae_trainer_free(t);
}

/* Efraimidis-Spirakis keys give the law of successive draws without replacement. */
static void test_draw_distribution(void **state)
{
    (void)state;
    const double w[5] = {1, 0, 3, 2, 0};
    sae__draw_key keys[5];
    int64_t rows[5];
    sae_rng rng;
    sae_rng_init(&rng, 42, 7);
    const int trials = 60000;
    int first[5] = {0}, pair_0_then_2 = 0;
    for (int i = 0; i < trials; i++) {
        assert_int_equal(sae__draw_rows(&rng, w, 5, 2, keys, rows), 2);
        assert_true(rows[0] != rows[1] && w[rows[0]] > 0 && w[rows[1]] > 0);
        first[rows[0]]++;
        pair_0_then_2 += rows[0] == 0 && rows[1] == 2;
    }
    /* P(first = b) = w_b / 6; P(0 then 2) = 1/6 * 3/5 = 0.1. */
    const double want[5] = {1.0 / 6, 0, 0.5, 1.0 / 3, 0};
    for (int b = 0; b < 5; b++) {
        printf("    first draw %d: %.4f (want %.4f)\n", b, (double)first[b] / trials, want[b]);
        assert_true(fabs((double)first[b] / trials - want[b]) < 0.01);
    }
    printf("    0 then 2: %.4f (want 0.1)\n", (double)pair_0_then_2 / trials);
    assert_true(fabs((double)pair_0_then_2 / trials - 0.1) < 0.01);
    /* Asking for more rows than have weight gives only those; the generator advances by one
     * uniform per row whatever the weights. */
    sae_rng before = rng;
    assert_int_equal(sae__draw_rows(&rng, w, 5, 5, keys, rows), 3);
    sae_rng other = before;
    const double ones[5] = {1, 1, 1, 1, 1};
    assert_int_equal(sae__draw_rows(&other, ones, 5, 1, keys, rows), 1);
    assert_memory_equal(&rng, &other, sizeof rng);
}

/* A dictionary whose first n_dead features never fire (b_enc = -100). */
static sae_dict *dict_with_dead(int64_t d, int64_t F, int64_t n_dead)
{
    float *W_enc = test_malloc(sizeof(float) * (size_t)(d * F));
    float *W_dec = test_malloc(sizeof(float) * (size_t)(d * F));
    float *b_enc = test_calloc((size_t)F, sizeof(float));
    fill_normal(W_dec, d * F, 11, 0.3f);
    for (int64_t j = 0; j < F; j++)
        for (int64_t i = 0; i < d; i++)
            W_enc[i * F + j] = W_dec[j * d + i];
    for (int64_t j = 0; j < n_dead; j++)
        b_enc[j] = -100.0f;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = SAE_ARCH_STANDARD, c.d_in = d, c.d_sae = F;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec, w.b_enc = b_enc;
    sae_dict *dict = NULL;
    assert_sae_ok(sae_dict_create(&dict, &c, &w, test_allocator()));
    test_free(W_enc), test_free(W_dec), test_free(b_enc);
    return dict;
}

static sae_trainer *dl_trainer(const sae_dict *init, int64_t resample_steps)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.preset = SAE_PRESET_DICTIONARY_LEARNING, o.n_threads = 2, o.seed = 5;
    o.resample_steps = resample_steps, o.warmup_steps = 2, o.l1_warmup_steps = SAE_TRAIN_OFF;
    o.total_steps = 100, o.allocator = test_allocator();
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, init, &o));
    return t;
}

/* dictionary_learning's schedule with resample_steps = 4, warmup 2: the dead rule is "more than
 * 2 steps without firing, after the batch", resampling after steps 0, 4, 8 (step 4 first finds
 * the 5 dead features), and the warm-up restarts at every multiple of 4. */
static void test_resampling_in_training(void **state)
{
    (void)state;
    const int64_t d = 8, F = 24, n = 16, n_dead = 5;
    sae_dict *init = dict_with_dead(d, F, n_dead);
    sae_trainer *t = dl_trainer(init, 4), *twin = dl_trainer(init, 4);
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    assert_sae_ok(sae_trainer_get_options(t, &o));
    assert_int_equal(o.dead_rule, SAE_DEAD_STEPS_AFTER);
    assert_int_equal(o.dead_window, 2);
    float x[16 * 8];
    const double lr = o.lr, lr_want[6] = {0, lr / 2, lr, lr, 0, lr / 2};
    for (int s = 0; s < 6; s++) {
        fill_normal(x, n * d, 100 + (uint64_t)s, 1.0f);
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae_trainer_step(t, n, x, d, &m));
        assert_sae_ok(sae_trainer_step(twin, n, x, d, NULL));
        assert_true(fabs(m.lr - lr_want[s]) <= 1e-15);
        if (s < 4) {
            assert_int_equal(m.n_dead, s >= 2 ? n_dead : 0);
            for (int64_t j = 0; j < n_dead; j++)
                assert_true(t->p.b_enc[j] == -100.0f);
        }
        if (s == 4) {
            assert_int_equal(m.n_dead, n_dead);
            /* Each resampled decoder row is a unit-norm row of this batch, its encoder column
             * that row times 0.2 a, b_enc 0, and its Adam moments zero. */
            for (int64_t j = 0; j < n_dead; j++) {
                const float *dec = t->p.W_dec + j * d, *enc = t->p.W_encT + j * d;
                assert_true(fabsf(sae__row_norm(dec, d) - 1.0f) < 1e-6f);
                int match = -1;
                for (int64_t b = 0; b < n && match < 0; b++) {
                    const float norm = sae__row_norm(x + b * d, d);
                    bool same = true;
                    for (int64_t i = 0; i < d; i++)
                        same &= fabsf(dec[i] - x[b * d + i] / norm) < 1e-6f;
                    match = same ? (int)b : -1;
                }
                assert_true(match >= 0);
                const float ratio = enc[0] / x[match * d];
                for (int64_t i = 0; i < d; i++)
                    assert_true(fabsf(enc[i] - ratio * x[match * d + i]) < 1e-5f);
                assert_true(t->p.b_enc[j] == 0.0f);
                for (int64_t i = 0; i < d; i++)
                    assert_true(t->mp.W_encT[j * d + i] == 0 && t->vp.W_dec[j * d + i] == 0);
                assert_true(t->mp.b_enc[j] == 0 && t->vp.b_enc[j] == 0);
                assert_true(t->since_fired[j] == 5); /* not reset, as upstream */
            }
        }
    }
    /* The draws come from the seeded generator: a second run is identical. */
    assert_memory_equal(t->param, twin->param, sizeof(float) * (size_t)t->n_params);
    assert_memory_equal(t->v, twin->v, sizeof(float) * (size_t)t->n_params);
    sae_trainer_free(t), sae_trainer_free(twin);
    sae_dict_free(init);
}

static void test_resample_explicit(void **state)
{
    (void)state;
    const int64_t d = 8, F = 24, n = 6;
    sae_dict *init = dict_with_dead(d, F, 0);
    sae_trainer *t = dl_trainer(init, SAE_TRAIN_OFF);
    float x[6 * 8];
    fill_normal(x, n * d, 3, 1.0f);
    int64_t m = -1;

    /* Nothing dead: nothing changes, not even the generator. */
    float *before = test_malloc(sizeof(float) * (size_t)t->n_params);
    memcpy(before, t->param, sizeof(float) * (size_t)t->n_params);
    const sae_rng rng = t->ex.rng;
    assert_sae_ok(sae_trainer_resample(t, n, x, d, &m));
    assert_int_equal(m, 0);
    assert_memory_equal(before, t->param, sizeof(float) * (size_t)t->n_params);
    assert_memory_equal(&rng, &t->ex.rng, sizeof rng);

    /* 10 dead (every odd feature up to 19), 6 rows of which 2 are zero: 4 resampled, the first
     * 4 dead features; the others keep their weights. */
    int64_t counts[24] = {0};
    for (int64_t j = 1; j < 20; j += 2)
        counts[j] = 10000000; /* TOKENS_AFTER: dead when >= dead_window = 10^7 */
    assert_sae_ok(sae_trainer_set_since_fired(t, counts));
    memset(x + 1 * d, 0, sizeof(float) * (size_t)d);
    memset(x + 4 * d, 0, sizeof(float) * (size_t)d);
    assert_sae_ok(sae_trainer_resample(t, n, x, d, &m));
    assert_int_equal(m, 4);
    for (int64_t j = 0; j < F; j++) {
        const bool changed = memcmp(t->p.W_dec + j * d, before + F * d + j * d,
                                    sizeof(float) * (size_t)d) != 0;
        assert_int_equal(changed, j % 2 == 1 && j < 9);
    }
    sae_trainer_free(t);

    /* Errors: not a standard SAE (options), scale unknown, bad batches. */
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = SAE_ARCH_TOPK, o.d_in = d, o.d_sae = F, o.k = 2, o.allocator = test_allocator();
    o.resample_steps = 10;
    assert_int_equal(sae_trainer_create(&t, &o), SAE_EUNSUPPORTED);
    o.resample_steps = 0, o.dead_rule = SAE_DEAD_STEPS_AFTER;
    assert_int_equal(sae_trainer_create(&t, &o), SAE_EUNSUPPORTED);
    o.dead_rule = 0;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_int_equal(sae_trainer_resample(t, n, x, d, &m), SAE_EUNSUPPORTED);
    sae_trainer_free(t);
    o.arch = SAE_ARCH_STANDARD, o.k = 0, o.activation_scaling = SAE_SWITCH_ON;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_int_equal(sae_trainer_resample(t, n, x, d, &m), SAE_EINVAL);
    assert_int_equal(sae_trainer_resample(t, n, x, d - 1, &m), SAE_ESHAPE);
    x[3] = NAN;
    assert_int_equal(sae_trainer_resample(t, n, x, d, &m), SAE_ENUMERIC);
    sae_trainer_free(t);
    test_free(before);
    sae_dict_free(init);
}

/* Presets: resampling is off everywhere; asking for it with the dictionary_learning preset
 * brings its dead rule (window resample_steps / 2, an explicit zero for 1), with SAELens' the
 * dead rule stays. */
static void test_resample_options(void **state)
{
    (void)state;
    const struct {
        int32_t preset;
        int64_t resample, want_steps, want_window;
        int32_t want_rule;
    } cases[] = {
        {SAE_PRESET_DICTIONARY_LEARNING, 0, SAE_TRAIN_OFF, 10000000, SAE_DEAD_TOKENS_AFTER},
        {SAE_PRESET_SAELENS, 0, SAE_TRAIN_OFF, 1000, SAE_DEAD_STEPS},
        {SAE_PRESET_DICTIONARY_LEARNING, 25000, 25000, 12500, SAE_DEAD_STEPS_AFTER},
        {SAE_PRESET_DICTIONARY_LEARNING, 7, 7, 3, SAE_DEAD_STEPS_AFTER},
        {SAE_PRESET_DICTIONARY_LEARNING, 1, 1, SAE_TRAIN_OFF, SAE_DEAD_STEPS_AFTER},
        {SAE_PRESET_SAELENS, 10, 10, 1000, SAE_DEAD_STEPS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT, r = SAE_TRAINER_OPTIONS_INIT;
        o.arch = SAE_ARCH_STANDARD, o.d_in = 4, o.d_sae = 8, o.preset = cases[i].preset;
        o.resample_steps = cases[i].resample, o.allocator = test_allocator();
        sae_trainer *t = NULL;
        assert_sae_ok(sae_trainer_create(&t, &o));
        assert_sae_ok(sae_trainer_get_options(t, &r));
        assert_int_equal(r.resample_steps, cases[i].want_steps);
        assert_int_equal(r.dead_window, cases[i].want_window);
        assert_int_equal(r.dead_rule, cases[i].want_rule);
        assert_int_equal(r.activation_scaling, SAE_SWITCH_OFF);
        sae_trainer_free(t);
    }
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = SAE_ARCH_STANDARD, o.d_in = 4, o.d_sae = 8, o.allocator = test_allocator();
    sae_trainer *t = NULL;
    o.dead_rule = 5;
    assert_int_equal(sae_trainer_create(&t, &o), SAE_EINVAL);
    o.dead_rule = 0, o.activation_scaling = 3;
    assert_int_equal(sae_trainer_create(&t, &o), SAE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_resample),
        cmocka_unit_test(test_draw_distribution),
        cmocka_unit_test(test_resampling_in_training),
        cmocka_unit_test(test_resample_explicit),
        cmocka_unit_test(test_resample_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
