/* test_eval.c: sae_dict_evaluate against a naive computation (every row at once, dense encode
 * and decode, two-pass variance, histogram bins found by comparing with 10^edge), for
 * standard, TopK and layer-norm dictionaries, odd block sizes, max_rows, a callback source;
 * then the edge cases (no variance) and one test per class of error. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sae/eval.h"
#include "test_util.h"

/* A random dictionary whose encoder biases spread the features from dead (b_enc very low)
 * through rare to dense (b_enc high). */
static sae_dict *make_dict(int32_t arch, int64_t d, int64_t F, int64_t k, int32_t input_norm)
{
    float *W_enc = test_malloc(sizeof(float) * (size_t)(d * F));
    float *W_dec = test_malloc(sizeof(float) * (size_t)(d * F));
    float *b_enc = test_malloc(sizeof(float) * (size_t)F);
    float *b_dec = test_malloc(sizeof(float) * (size_t)d);
    fill_normal(W_enc, d * F, 11, 0.5f);
    fill_normal(W_dec, d * F, 12, 0.3f);
    fill_normal(b_dec, d, 13, 0.2f);
    for (int64_t j = 0; j < F; j++)
        b_enc[j] = j % 7 == 0 ? -100.0f : (float)(j % 5) * 1.5f - 4.0f;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = arch, c.d_in = d, c.d_sae = F, c.k = k, c.input_norm = input_norm;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec, w.b_enc = b_enc, w.b_dec = b_dec;
    sae_dict *dict = NULL;
    assert_sae_ok(sae_dict_create(&dict, &c, &w, test_allocator()));
    test_free(W_enc);
    test_free(W_dec);
    test_free(b_enc);
    test_free(b_dec);
    return dict;
}

/* Rows with a large common offset, so that the centred variance matters. */
static float *make_rows(int64_t n, int64_t d, uint64_t seed)
{
    float *x = test_malloc(sizeof(float) * (size_t)(n * d));
    fill_normal(x, n * d, seed, 1.0f);
    for (int64_t i = 0; i < n * d; i++)
        x[i] += 3.0f + (float)(i % d);
    return x;
}

/* The metrics of the first n rows of x, computed the plain way. */
static void naive_eval(const sae_dict *dict, int64_t n, const float *x, double dense_threshold,
                       sae_eval_result *r, int64_t *counts)
{
    const int64_t d = sae_dict_d_in(dict), F = sae_dict_d_sae(dict);
    float *f = test_malloc(sizeof(float) * (size_t)(n * F));
    float *xh = test_malloc(sizeof(float) * (size_t)(n * d));
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.allocator = test_allocator(), eo.n_threads = 1;
    sae_encoder *enc = NULL;
    assert_sae_ok(sae_encoder_create(&enc, dict, &eo));
    assert_sae_ok(sae_encoder_encode(enc, n, x, d, f, F, NULL, 0));
    assert_sae_ok(sae_encoder_decode(enc, n, f, F, xh, d));
    sae_encoder_free(enc);

    double err = 0, h2 = 0, xdot = 0, ratio = 0, tv = 0;
    int64_t nnz = 0, ratio_rows = 0;
    for (int64_t b = 0; b < n; b++) {
        double e = 0, hh = 0, xx = 0;
        for (int64_t i = 0; i < d; i++) {
            double xv = x[b * d + i], hv = xh[b * d + i];
            e += (xv - hv) * (xv - hv), hh += hv * hv, xx += xv * xv, xdot += xv * hv;
        }
        err += e, h2 += hh;
        if (xx > 0)
            ratio += sqrt(hh) / sqrt(xx), ratio_rows++;
    }
    for (int64_t i = 0; i < d; i++) {
        double mean = 0;
        for (int64_t b = 0; b < n; b++)
            mean += x[b * d + i];
        mean /= (double)n;
        for (int64_t b = 0; b < n; b++)
            tv += (x[b * d + i] - mean) * (x[b * d + i] - mean);
    }
    memset(counts, 0, sizeof(int64_t) * (size_t)F);
    for (int64_t b = 0; b < n; b++)
        for (int64_t j = 0; j < F; j++)
            if (f[b * F + j] != 0)
                counts[j]++, nnz++;
    sae_eval_result z = SAE_EVAL_RESULT_INIT;
    *r = z;
    r->rows = n, r->d_sae = F, r->mse = err / (double)n, r->fvu = err / tv;
    r->explained_variance = 1 - err / tv, r->l0 = (double)nnz / (double)n;
    r->relative_reconstruction_bias = h2 / xdot, r->shrinkage = ratio / (double)ratio_rows;
    r->dense_threshold = dense_threshold;
    for (int64_t j = 0; j < F; j++) {
        if (!counts[j]) {
            r->n_dead++;
            continue;
        }
        double p = (double)counts[j] / (double)n;
        r->n_dense += p > dense_threshold;
        int bin = 0; /* the last bin whose lower edge 10^(-10 + 0.5 i) is <= p */
        for (int i = 0; i < SAE_EVAL_DENSITY_BINS; i++)
            if (p >= pow(10.0, SAE_EVAL_DENSITY_LOG10_MIN + SAE_EVAL_DENSITY_BIN_WIDTH * i))
                bin = i;
        r->density_histogram[bin]++;
    }
    test_free(f);
    test_free(xh);
}

static void assert_rel(double got, double want, double rtol, const char *what)
{
    if (!(fabs(got - want) <= rtol * fabs(want) + 1e-12))
        fail_msg("%s: %.12g, expected %.12g", what, got, want);
}

static void assert_same_result(const sae_eval_result *got, const sae_eval_result *want)
{
    printf("    rows %lld mse %.6g fvu %.6g l0 %.3f rrb %.6g shrink %.6g dead %lld dense %lld\n",
           (long long)got->rows, got->mse, got->fvu, got->l0, got->relative_reconstruction_bias,
           got->shrinkage, (long long)got->n_dead, (long long)got->n_dense);
    assert_int_equal(got->rows, want->rows);
    assert_int_equal(got->d_sae, want->d_sae);
    /* Float reconstructions from the sparse and the dense paths agree to rounding. */
    assert_rel(got->mse, want->mse, 1e-5, "mse");
    assert_rel(got->fvu, want->fvu, 1e-5, "fvu");
    assert_rel(got->explained_variance, want->explained_variance, 1e-5, "explained_variance");
    assert_rel(got->l0, want->l0, 0, "l0");
    assert_rel(got->relative_reconstruction_bias, want->relative_reconstruction_bias, 1e-5,
               "relative_reconstruction_bias");
    assert_rel(got->shrinkage, want->shrinkage, 1e-5, "shrinkage");
    assert_rel(got->dense_threshold, want->dense_threshold, 0, "dense_threshold");
    assert_int_equal(got->n_dead, want->n_dead);
    assert_int_equal(got->n_dense, want->n_dense);
    for (int i = 0; i < SAE_EVAL_DENSITY_BINS; i++)
        if (got->density_histogram[i] != want->density_histogram[i])
            fail_msg("density bin %d: %lld, expected %lld", i,
                     (long long)got->density_histogram[i],
                     (long long)want->density_histogram[i]);
}

/* Evaluate `dict` on a memory source over x (n rows) and compare with the naive metrics of
 * the rows it should read. */
static void check_against_naive(const sae_dict *dict, int64_t n, const float *x,
                                const sae_eval_options *o, int64_t expect_rows)
{
    const int64_t d = sae_dict_d_in(dict), F = sae_dict_d_sae(dict);
    sae_source_options so = SAE_SOURCE_OPTIONS_INIT;
    so.allocator = test_allocator();
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_memory(&src, n, d, x, d, &so));
    sae_eval_result got = SAE_EVAL_RESULT_INIT, want;
    int64_t *counts = test_malloc(sizeof(int64_t) * (size_t)F);
    int64_t *want_counts = test_malloc(sizeof(int64_t) * (size_t)F);
    assert_sae_ok(sae_dict_evaluate(&got, counts, dict, src, o));
    naive_eval(dict, expect_rows, x, o && o->dense_threshold > 0 ? o->dense_threshold : 0.1,
               &want, want_counts);
    assert_same_result(&got, &want);
    assert_memory_equal(counts, want_counts, sizeof(int64_t) * (size_t)F);
    /* The histogram covers exactly the features that fired. */
    int64_t fired = 0;
    for (int i = 0; i < SAE_EVAL_DENSITY_BINS; i++)
        fired += got.density_histogram[i];
    assert_int_equal(fired, F - got.n_dead);
    sae_source_free(src);
    test_free(counts);
    test_free(want_counts);
}

/* ---- against the naive computation ---------------------------------------------------------- */

static void test_standard_blocks(void **state)
{
    (void)state;
    /* 103 rows (prime: no density is an exact power of 10^0.5 below 1). */
    const int64_t n = 103, d = 10, F = 40;
    sae_dict *dict = make_dict(SAE_ARCH_STANDARD, d, F, 0, SAE_NORM_NONE);
    float *x = make_rows(n, d, 5);
    const int64_t blocks[] = {0, 1, 7, 103, 500};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        sae_eval_options o = SAE_EVAL_OPTIONS_INIT;
        o.block_rows = blocks[i], o.allocator = test_allocator(), o.n_threads = 2;
        check_against_naive(dict, n, x, &o, n);
    }
    /* The metrics do exercise every kind of feature. */
    sae_eval_result r;
    int64_t *counts = test_malloc(sizeof(int64_t) * (size_t)F);
    naive_eval(dict, n, x, 0.1, &r, counts);
    assert_true(r.n_dead > 0 && r.n_dense > 0 && r.n_dead + r.n_dense < F);
    test_free(counts);
    test_free(x);
    sae_dict_free(dict);
}

static void test_max_rows_and_threshold(void **state)
{
    (void)state;
    const int64_t n = 103, d = 6, F = 30;
    sae_dict *dict = make_dict(SAE_ARCH_STANDARD, d, F, 0, SAE_NORM_NONE);
    float *x = make_rows(n, d, 6);
    sae_eval_options o = SAE_EVAL_OPTIONS_INIT;
    o.max_rows = 41, o.block_rows = 9, o.dense_threshold = 0.5, o.allocator = test_allocator();
    check_against_naive(dict, n, x, &o, 41);
    o.max_rows = 1000; /* more than the source holds: stops at its end */
    check_against_naive(dict, n, x, &o, n);
    check_against_naive(dict, n, x, NULL, n);
    test_free(x);
    sae_dict_free(dict);
}

static void test_topk_and_layer_norm(void **state)
{
    (void)state;
    const int64_t n = 61, d = 12, F = 48;
    float *x = make_rows(n, d, 7);
    sae_dict *topk = make_dict(SAE_ARCH_TOPK, d, F, 5, SAE_NORM_NONE);
    sae_dict *ln = make_dict(SAE_ARCH_STANDARD, d, F, 0, SAE_NORM_LAYER_NORM);
    sae_eval_options o = SAE_EVAL_OPTIONS_INIT;
    o.block_rows = 8, o.allocator = test_allocator();
    check_against_naive(topk, n, x, &o, n);
    check_against_naive(ln, n, x, &o, n);
    sae_dict_free(topk);
    sae_dict_free(ln);
    test_free(x);
}

/* A callback source (size unknown): max_rows 0 reads until it ends. */
typedef struct rows_cb {
    const float *x;
    int64_t n, d, pos;
} rows_cb;

static sae_status give_rows(void *user, int64_t max_rows, float *x, int64_t ldx, int64_t *rows)
{
    rows_cb *c = user;
    int64_t m = c->n - c->pos < max_rows ? c->n - c->pos : max_rows;
    for (int64_t b = 0; b < m; b++)
        memcpy(x + b * ldx, c->x + (c->pos + b) * c->d, sizeof(float) * (size_t)c->d);
    c->pos += m;
    *rows = m;
    return SAE_OK;
}

static void test_callback_source(void **state)
{
    (void)state;
    const int64_t n = 53, d = 8, F = 24;
    sae_dict *dict = make_dict(SAE_ARCH_STANDARD, d, F, 0, SAE_NORM_NONE);
    float *x = make_rows(n, d, 8);
    rows_cb cb = {x, n, d, 0};
    sae_source_options so = SAE_SOURCE_OPTIONS_INIT;
    so.allocator = test_allocator(), so.read_chunk_rows = 5;
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_callback(&src, d, give_rows, &cb, &so));
    sae_eval_options o = SAE_EVAL_OPTIONS_INIT;
    o.block_rows = 16, o.allocator = test_allocator();
    sae_eval_result got = SAE_EVAL_RESULT_INIT, want;
    int64_t *counts = test_malloc(sizeof(int64_t) * (size_t)F);
    assert_sae_ok(sae_dict_evaluate(&got, NULL, dict, src, &o));
    naive_eval(dict, n, x, 0.1, &want, counts);
    assert_same_result(&got, &want);
    sae_source_free(src);
    test_free(counts);
    test_free(x);
    sae_dict_free(dict);
}

/* ---- edge cases and errors ------------------------------------------------------------------ */

static sae_source *memory_source(int64_t n, int64_t d, const float *x)
{
    sae_source_options so = SAE_SOURCE_OPTIONS_INIT;
    so.allocator = test_allocator();
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_memory(&src, n, d, x, d, &so));
    return src;
}

static void test_no_variance(void **state)
{
    (void)state;
    const int64_t n = 4, d = 3, F = 9;
    sae_dict *dict = make_dict(SAE_ARCH_STANDARD, d, F, 0, SAE_NORM_NONE);
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = (float)(i % 3); /* four identical rows */
    sae_source *src = memory_source(n, d, x);
    sae_eval_result r = SAE_EVAL_RESULT_INIT;
    assert_sae_ok(sae_dict_evaluate(&r, NULL, dict, src, NULL));
    assert_int_equal(r.rows, 4);
    assert_true(isnan(r.fvu) && isnan(r.explained_variance));
    assert_true(isfinite(r.mse) && isfinite(r.l0));
    sae_source_free(src);
    sae_dict_free(dict);
}

static void test_errors(void **state)
{
    (void)state;
    const int64_t n = 10, d = 4, F = 8;
    sae_dict *dict = make_dict(SAE_ARCH_STANDARD, d, F, 0, SAE_NORM_NONE);
    float *x = make_rows(n, d, 9);
    sae_eval_result r = SAE_EVAL_RESULT_INIT, untouched = SAE_EVAL_RESULT_INIT;
    untouched.rows = r.rows = -7;
    sae_source *src = memory_source(n, d, x);
    assert_int_equal(sae_dict_evaluate(NULL, NULL, dict, src, NULL), SAE_EINVAL);
    assert_int_equal(sae_dict_evaluate(&r, NULL, NULL, src, NULL), SAE_EINVAL);
    assert_int_equal(sae_dict_evaluate(&r, NULL, dict, NULL, NULL), SAE_EINVAL);
    sae_eval_options o = SAE_EVAL_OPTIONS_INIT;
    o.dense_threshold = 1.5;
    assert_int_equal(sae_dict_evaluate(&r, NULL, dict, src, &o), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "dense_threshold"));
    o.dense_threshold = NAN;
    assert_int_equal(sae_dict_evaluate(&r, NULL, dict, src, &o), SAE_EINVAL);
    o = (sae_eval_options)SAE_EVAL_OPTIONS_INIT;
    o.block_rows = -1;
    assert_int_equal(sae_dict_evaluate(&r, NULL, dict, src, &o), SAE_EINVAL);
    sae_source_free(src);

    /* Rows of the wrong width. */
    src = memory_source(n * d / 2, 2, x);
    assert_int_equal(sae_dict_evaluate(&r, NULL, dict, src, NULL), SAE_ESHAPE);
    assert_non_null(strstr(sae_last_error(), "d_in = 4"));
    sae_source_free(src);

    /* A NaN is named by its row and column; nothing is written. */
    x[6 * d + 1] = NAN;
    src = memory_source(n, d, x);
    o = (sae_eval_options)SAE_EVAL_OPTIONS_INIT;
    o.block_rows = 4, o.allocator = test_allocator();
    assert_int_equal(sae_dict_evaluate(&r, NULL, dict, src, &o), SAE_ENUMERIC);
    assert_non_null(strstr(sae_last_error(), "row 6, column 1"));
    assert_memory_equal(&r, &untouched, sizeof r);
    sae_source_free(src);

    /* No rows. */
    src = memory_source(0, d, x);
    assert_int_equal(sae_dict_evaluate(&r, NULL, dict, src, NULL), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "no rows"));
    sae_source_free(src);
    test_free(x);
    sae_dict_free(dict);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_blocks),
        cmocka_unit_test(test_max_rows_and_threshold),
        cmocka_unit_test(test_topk_and_layer_norm),
        cmocka_unit_test(test_callback_source),
        cmocka_unit_test(test_no_variance),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
