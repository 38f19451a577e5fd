/* test_fit.c: sae_trainer_fit — bit-for-bit the hand-written loop of sae_trainer_step() calls
 * (standard and TopK, several batch sizes), the progress callback (when it is called, what it
 * sees), cancelling, a source that runs dry, steps from total_steps, and the errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sae/trainer.h"
#include "test_util.h"

#define N_ROWS 200
#define D_IN 12

static float data[N_ROWS * D_IN];

static int setup(void **state)
{
    (void)state;
    fill_normal(data, N_ROWS * D_IN, 21, 1.0f);
    return 0;
}

static sae_trainer *make_trainer(int32_t arch, int64_t total_steps)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = arch, o.d_in = D_IN, o.d_sae = 24, o.k = arch == SAE_ARCH_TOPK ? 4 : 0;
    o.seed = 5, o.n_threads = 2, o.total_steps = total_steps, o.allocator = test_allocator();
    if (arch == SAE_ARCH_TOPK)
        o.preset = SAE_PRESET_DICTIONARY_LEARNING; /* geometric-median b_dec, dead counters */
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    return t;
}

static sae_source *make_source(int64_t n, int32_t loop)
{
    sae_source_options so = SAE_SOURCE_OPTIONS_INIT;
    so.allocator = test_allocator(), so.shuffle_buffer_rows = 0, so.loop = loop, so.seed = 3;
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_memory(&src, n, D_IN, data, D_IN, &so));
    return src;
}

/* What the callback saw. */
#define MAX_CALLS 64
typedef struct seen {
    int calls;
    int stop_at;        /* return 1 when steps_done reaches this (0: never) */
    sae_fit_progress p[MAX_CALLS];
    sae_train_metrics m[MAX_CALLS];
} seen;

static int record(void *user, const sae_fit_progress *p, const sae_train_metrics *m)
{
    seen *s = user;
    assert_true(s->calls < MAX_CALLS);
    s->p[s->calls] = *p;
    s->m[s->calls] = *m;
    s->calls++;
    return s->stop_at && p->steps_done == s->stop_at;
}

/* Fail unless the two trainers hold the same bytes in every parameter. */
static void assert_same_weights(const sae_trainer *a, const sae_trainer *b)
{
    sae_dict *da = NULL, *db = NULL;
    assert_sae_ok(sae_trainer_export(a, &da));
    assert_sae_ok(sae_trainer_export(b, &db));
    sae_dict_weights wa = SAE_DICT_WEIGHTS_INIT, wb = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(da, &wa));
    assert_sae_ok(sae_dict_get_weights(db, &wb));
    const size_t F = (size_t)sae_dict_d_sae(da), d = (size_t)sae_dict_d_in(da);
    assert_memory_equal(wa.W_enc, wb.W_enc, F * d * sizeof(float));
    assert_memory_equal(wa.W_dec, wb.W_dec, F * d * sizeof(float));
    assert_memory_equal(wa.b_enc, wb.b_enc, F * sizeof(float));
    assert_memory_equal(wa.b_dec, wb.b_dec, d * sizeof(float));
    sae_dict_free(da);
    sae_dict_free(db);
}

/* ---- the loop ------------------------------------------------------------------------------- */

static void test_equals_hand_loop(void **state)
{
    (void)state;
    const int32_t archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK};
    const int64_t batches[] = {16, 33};
    for (int ai = 0; ai < 2; ai++)
        for (int bi = 0; bi < 2; bi++) {
            const int64_t B = batches[bi], steps = 9;
            sae_trainer *fit = make_trainer(archs[ai], 0), *hand = make_trainer(archs[ai], 0);
            sae_source *s1 = make_source(N_ROWS, 1), *s2 = make_source(N_ROWS, 1);
            seen got = {0};
            sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
            fo.steps = steps, fo.batch_size = B;
            sae_fit_progress sum = SAE_FIT_PROGRESS_INIT;
            assert_sae_ok(sae_trainer_fit(fit, s1, &fo, &sum, record, &got));
            assert_int_equal(sum.steps_done, steps);
            assert_int_equal(sum.tokens, steps * B);
            assert_int_equal(sum.source_ended, 0);
            assert_int_equal(got.calls, steps);

            float *x = test_malloc(sizeof(float) * (size_t)(B * D_IN));
            for (int64_t s = 0; s < steps; s++) {
                int64_t rows = 0;
                sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
                assert_sae_ok(sae_source_next(s2, B, x, D_IN, &rows));
                assert_int_equal(rows, B);
                assert_sae_ok(sae_trainer_step(hand, B, x, D_IN, &m));
                assert_memory_equal(&m, &got.m[s], sizeof m); /* metrics too, bit for bit */
                assert_int_equal(got.p[s].steps_done, s + 1);
            }
            assert_same_weights(fit, hand);
            assert_int_equal(sae_trainer_steps(fit), steps);
            test_free(x);
            sae_source_free(s1);
            sae_source_free(s2);
            sae_trainer_free(fit);
            sae_trainer_free(hand);
        }
}

static void test_progress_reports(void **state)
{
    (void)state;
    sae_trainer *t = make_trainer(SAE_ARCH_STANDARD, 0);
    sae_source *src = make_source(N_ROWS, 1);
    seen got = {0};
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.steps = 7, fo.batch_size = 10, fo.report_every = 3;
    assert_sae_ok(sae_trainer_fit(t, src, &fo, NULL, record, &got));
    /* After steps 3 and 6, and after the last one. */
    assert_int_equal(got.calls, 3);
    const int64_t want[] = {3, 6, 7};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(got.p[i].steps_done, want[i]);
        assert_int_equal(got.p[i].steps_total, 7);
        assert_int_equal(got.p[i].tokens, want[i] * 10);
        assert_int_equal(got.m[i].step, want[i] - 1);
        assert_true(got.p[i].elapsed_seconds >= (i ? got.p[i - 1].elapsed_seconds : 0));
        assert_true(got.p[i].tokens_per_second >= 0 && isfinite(got.p[i].tokens_per_second));
    }
    /* A second fit continues the same trainer and source; NULL callback is fine. */
    assert_sae_ok(sae_trainer_fit(t, src, &fo, NULL, NULL, NULL));
    assert_int_equal(sae_trainer_steps(t), 14);
    sae_source_free(src);
    sae_trainer_free(t);
}

static void test_cancel(void **state)
{
    (void)state;
    sae_trainer *t = make_trainer(SAE_ARCH_TOPK, 0);
    sae_source *src = make_source(N_ROWS, 1);
    seen got = {0};
    got.stop_at = 4;
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.steps = 20, fo.batch_size = 8, fo.report_every = 2;
    sae_fit_progress sum = SAE_FIT_PROGRESS_INIT;
    assert_int_equal(sae_trainer_fit(t, src, &fo, &sum, record, &got), SAE_ECANCELED);
    assert_non_null(strstr(sae_last_error(), "after 4 steps"));
    assert_int_equal(got.calls, 2); /* after steps 2 and 4, none after the cancel */
    assert_int_equal(sum.steps_done, 4);
    assert_int_equal(sae_trainer_steps(t), 4);
    sae_source_free(src);
    sae_trainer_free(t);
}

static void test_source_runs_dry(void **state)
{
    (void)state;
    sae_trainer *t = make_trainer(SAE_ARCH_STANDARD, 0);
    sae_source *src = make_source(50, 0);
    seen got = {0};
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.steps = 10, fo.batch_size = 16, fo.report_every = 2;
    sae_fit_progress sum = SAE_FIT_PROGRESS_INIT;
    assert_sae_ok(sae_trainer_fit(t, src, &fo, &sum, record, &got));
    /* 50 rows: three full batches; the last 2 rows are left out. */
    assert_int_equal(sum.steps_done, 3);
    assert_int_equal(sum.tokens, 48);
    assert_int_equal(sum.source_ended, 1);
    assert_int_equal(sae_trainer_steps(t), 3);
    assert_int_equal(got.calls, 2); /* after step 2, and the last step (3) */
    assert_int_equal(got.p[1].steps_done, 3);
    assert_int_equal(got.p[1].source_ended, 1);
    assert_int_equal(got.m[1].step, 2);
    sae_source_free(src);
    sae_trainer_free(t);
}

static void test_steps_from_total(void **state)
{
    (void)state;
    sae_trainer *t = make_trainer(SAE_ARCH_STANDARD, 5);
    sae_source *src = make_source(N_ROWS, 1);
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.batch_size = 8, fo.steps = 2;
    assert_sae_ok(sae_trainer_fit(t, src, &fo, NULL, NULL, NULL));
    fo.steps = 0; /* the rest of the run: 3 steps */
    sae_fit_progress sum = SAE_FIT_PROGRESS_INIT;
    assert_sae_ok(sae_trainer_fit(t, src, &fo, &sum, NULL, NULL));
    assert_int_equal(sum.steps_total, 3);
    assert_int_equal(sae_trainer_steps(t), 5);
    assert_sae_ok(sae_trainer_fit(t, src, &fo, &sum, NULL, NULL)); /* nothing left */
    assert_int_equal(sum.steps_done, 0);
    assert_int_equal(sae_trainer_steps(t), 5);
    sae_trainer_free(t);

    t = make_trainer(SAE_ARCH_STANDARD, 0); /* no total_steps: steps is required */
    assert_int_equal(sae_trainer_fit(t, src, NULL, NULL, NULL, NULL), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "total_steps"));
    sae_source_free(src);
    sae_trainer_free(t);
}

/* A callback source that fails on its second read. */
static sae_status failing_rows(void *user, int64_t max_rows, float *x, int64_t ldx,
                               int64_t *rows)
{
    int *calls = user;
    if (++*calls > 1)
        return SAE_EIO;
    for (int64_t b = 0; b < max_rows; b++)
        memcpy(x + b * ldx, data + (b % N_ROWS) * D_IN, sizeof(float) * D_IN);
    *rows = max_rows;
    return SAE_OK;
}

static void test_errors(void **state)
{
    (void)state;
    sae_trainer *t = make_trainer(SAE_ARCH_STANDARD, 0);
    sae_source *src = make_source(N_ROWS, 1);
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.steps = 3, fo.batch_size = 8;
    assert_int_equal(sae_trainer_fit(NULL, src, &fo, NULL, NULL, NULL), SAE_EINVAL);
    assert_int_equal(sae_trainer_fit(t, NULL, &fo, NULL, NULL, NULL), SAE_EINVAL);
    fo.batch_size = -1;
    assert_int_equal(sae_trainer_fit(t, src, &fo, NULL, NULL, NULL), SAE_EINVAL);
    fo.batch_size = 8, fo.reserved = 1;
    assert_int_equal(sae_trainer_fit(t, src, &fo, NULL, NULL, NULL), SAE_EINVAL);
    fo.reserved = 0;

    /* Rows of the wrong width. */
    sae_source_options so = SAE_SOURCE_OPTIONS_INIT;
    so.allocator = test_allocator();
    sae_source *narrow = NULL;
    assert_sae_ok(sae_source_from_memory(&narrow, 10, D_IN - 1, data, D_IN - 1, &so));
    assert_int_equal(sae_trainer_fit(t, narrow, &fo, NULL, NULL, NULL), SAE_ESHAPE);
    assert_non_null(strstr(sae_last_error(), "d_in = 12"));
    sae_source_free(narrow);
    assert_int_equal(sae_trainer_steps(t), 0);

    /* A non-finite row in the third batch: two steps taken, then the trainer's error. */
    const float saved = data[20 * D_IN + 3];
    data[20 * D_IN + 3] = INFINITY;
    sae_fit_progress sum = SAE_FIT_PROGRESS_INIT;
    seen got = {0};
    assert_int_equal(sae_trainer_fit(t, src, &fo, &sum, record, &got), SAE_ENUMERIC);
    data[20 * D_IN + 3] = saved;
    assert_int_equal(sum.steps_done, 2);
    assert_int_equal(got.calls, 2);
    assert_int_equal(sae_trainer_steps(t), 2);
    sae_source_free(src);

    /* The source's own error comes back unchanged. */
    int calls = 0;
    so.read_chunk_rows = 8;
    assert_sae_ok(sae_source_from_callback(&src, D_IN, failing_rows, &calls, &so));
    assert_int_equal(sae_trainer_fit(t, src, &fo, &sum, NULL, NULL), SAE_EIO);
    assert_int_equal(sum.steps_done, 1);
    sae_source_free(src);
    sae_trainer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_hand_loop),
        cmocka_unit_test(test_progress_reports),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_source_runs_dry),
        cmocka_unit_test(test_steps_from_total),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
