/* test_encoder.c: encode / decode / reconstruct of every architecture and convention against a
 * plain double-precision implementation of MATH.md written here, through both product paths
 * (weight streaming for a few rows, BLIS for many), dense and sparse. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum { D = 24, F = 70, K = 5 };

typedef struct fixture {
    float W_enc[D * F], b_enc[F], W_dec[F * D], b_dec[D], thr[F], bg[F], bm[F], rm[F];
} fixture;

static void make_fixture(fixture *fx, uint64_t seed)
{
    fill_normal(fx->W_enc, D * F, seed, 0.3f);
    fill_normal(fx->W_dec, F * D, seed + 1, 0.3f);
    fill_normal(fx->b_enc, F, seed + 2, 0.2f);
    fill_normal(fx->b_dec, D, seed + 3, 0.2f);
    fill_normal(fx->thr, F, seed + 4, 0.3f);
    fill_normal(fx->bg, F, seed + 5, 0.2f);
    fill_normal(fx->bm, F, seed + 6, 0.2f);
    fill_normal(fx->rm, F, seed + 7, 0.2f);
}

static sae_dict *make_dict(const fixture *fx, int arch, uint32_t flags, int norm)
{
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = arch, c.d_in = D, c.d_sae = F, c.flags = flags, c.input_norm = norm;
    c.k = (arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK) ? K : 0;
    c.act_scale = norm == SAE_NORM_SCALE ? 1.7f : 0.0f;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = fx->W_enc, w.W_dec = fx->W_dec, w.b_dec = fx->b_dec;
    if (arch == SAE_ARCH_GATED)
        w.b_gate = fx->bg, w.b_mag = fx->bm, w.r_mag = fx->rm;
    else
        w.b_enc = fx->b_enc;
    if (arch == SAE_ARCH_JUMPRELU || arch == SAE_ARCH_BATCHTOPK)
        w.threshold = fx->thr;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
    return d;
}

/* The reference: MATH.md, "Encode / decode", in double. Writes f (F), pre (F), x_hat (D). */
static void reference(const fixture *fx, int arch, uint32_t flags, int norm, const float *x,
                      double *f, double *pre, double *x_hat)
{
    double xn[D], mu = 0, sd = 0, coeff = 1;
    for (int i = 0; i < D; i++)
        mu += x[i] / (double)D;
    for (int i = 0; i < D; i++)
        sd += (x[i] - mu) * (x[i] - mu), coeff += 0 * i;
    double norm2 = 0;
    for (int i = 0; i < D; i++)
        norm2 += (double)x[i] * x[i];
    sd = sqrt(sd / (D - 1));
    coeff = sqrt((double)D) / sqrt(norm2);
    for (int i = 0; i < D; i++) {
        double v = x[i];
        if (norm == SAE_NORM_SCALE) v *= 1.7f;
        if (norm == SAE_NORM_CONSTANT_RESCALE) v *= coeff;
        if (norm == SAE_NORM_LAYER_NORM) v = (v - mu) / (sd + 1e-5);
        xn[i] = (flags & SAE_DICT_NO_B_DEC_INPUT) ? v : v - fx->b_dec[i];
    }
    double v[F], dn[F];
    for (int j = 0; j < F; j++) {
        double t = 0, s = 0;
        for (int i = 0; i < D; i++)
            t += xn[i] * fx->W_enc[i * F + j], s += (double)fx->W_dec[j * D + i] * fx->W_dec[j * D + i];
        dn[j] = (flags & SAE_DICT_RESCALE_BY_DECODER_NORM) ? sqrt(s) : 1.0;
        double gate = t + fx->bg[j];
        pre[j] = arch == SAE_ARCH_GATED ? t * exp(fx->rm[j]) + fx->bm[j] : t + fx->b_enc[j];
        v[j] = pre[j] * dn[j];
        switch (arch) {
        case SAE_ARCH_STANDARD: f[j] = v[j] > 0 ? v[j] : 0; break;
        case SAE_ARCH_GATED: f[j] = gate > 0 && v[j] > 0 ? v[j] : 0; break;
        case SAE_ARCH_TOPK: f[j] = 0; break;
        default: f[j] = v[j] > fx->thr[j] && v[j] > 0 ? v[j] : 0; break;
        }
    }
    if (arch == SAE_ARCH_TOPK)
        for (int a = 0; a < K; a++) { /* k passes of "largest not yet taken" */
            int best = -1;
            for (int j = 0; j < F; j++)
                if (f[j] == 0 && v[j] != -INFINITY && (best < 0 || v[j] > v[best]))
                    best = j;
            f[best] = v[best] > 0 ? v[best] : 0;
            v[best] = -INFINITY;
        }
    for (int i = 0; i < D; i++) {
        double s = fx->b_dec[i];
        for (int j = 0; j < F; j++)
            s += f[j] / dn[j] * fx->W_dec[j * D + i];
        if (norm == SAE_NORM_SCALE) s /= 1.7f;
        if (norm == SAE_NORM_CONSTANT_RESCALE) s /= coeff;
        if (norm == SAE_NORM_LAYER_NORM) s = s * sd + mu;
        x_hat[i] = s;
    }
}

static void check_rows(const float *got, int64_t ld, const double *want, int64_t n, int64_t w,
                       const char *what)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < w; j++) {
            double g = got[r * ld + j], e = want[r * w + j];
            if (fabs(g - e) > 2e-4 + 2e-4 * fabs(e))
                fail_msg("%s row %lld col %lld: %.7g, expected %.7g", what, (long long)r,
                         (long long)j, g, e);
        }
}

/* All paths of one dictionary on n rows, with padded leading dimensions. */
static void run_case(int arch, uint32_t flags, int norm, int64_t n)
{
    fixture *fx = test_malloc(sizeof *fx);
    make_fixture(fx, 10 + (uint64_t)arch);
    sae_dict *d = make_dict(fx, arch, flags, norm);
    const int64_t ldx = D + 3, ldf = F + 2;
    float *x = test_malloc(sizeof(float) * (size_t)(n * ldx));
    float *f = test_calloc((size_t)(n * ldf), sizeof(float));
    float *pre = test_calloc((size_t)(n * ldf), sizeof(float));
    float *xh = test_calloc((size_t)(n * ldx), sizeof(float));
    float *err = test_calloc((size_t)(n * ldx), sizeof(float));
    double *rf = test_malloc(sizeof(double) * (size_t)(n * F));
    double *rp = test_malloc(sizeof(double) * (size_t)(n * F));
    double *rx = test_malloc(sizeof(double) * (size_t)(n * D));
    fill_normal(x, n * ldx, 99, 1.0f);
    for (int64_t r = 0; r < n; r++)
        reference(fx, arch, flags, norm, x + r * ldx, rf + r * F, rp + r * F, rx + r * D);

    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.n_threads = 2, o.allocator = test_allocator();
    sae_encoder *e = NULL;
    assert_sae_ok(sae_encoder_create(&e, d, &o));
    assert_sae_ok(sae_encoder_encode(e, n, x, ldx, f, ldf, pre, ldf));
    check_rows(f, ldf, rf, n, F, "features");
    check_rows(pre, ldf, rp, n, F, "pre");
    assert_sae_ok(sae_encoder_decode(e, n, f, ldf, xh, ldx));
    check_rows(xh, ldx, rx, n, D, "decode");

    sae_codes *codes = NULL;
    assert_sae_ok(sae_codes_create(&codes, test_allocator()));
    assert_sae_ok(sae_encoder_encode_sparse(e, n, x, ldx, codes));
    assert_int_equal(sae_codes_rows(codes), n);
    const int64_t *off = sae_codes_offsets(codes);
    const int32_t *idx = sae_codes_indices(codes);
    const float *val = sae_codes_values(codes);
    for (int64_t r = 0; r < n; r++) { /* sparse codes = the non-zeros of the dense codes */
        int64_t a = off[r];
        for (int64_t j = 0; j < F; j++)
            if (f[r * ldf + j] != 0.0f) {
                assert_true(a < off[r + 1]);
                assert_int_equal(idx[a], j);
                assert_float_equal(val[a], f[r * ldf + j], 1e-6);
                a++;
            }
        assert_int_equal(a, off[r + 1]);
    }
    memset(xh, 0, sizeof(float) * (size_t)(n * ldx));
    assert_sae_ok(sae_encoder_decode_sparse(e, n, off, idx, val, xh, ldx));
    check_rows(xh, ldx, rx, n, D, "decode_sparse");
    memset(xh, 0, sizeof(float) * (size_t)(n * ldx));
    assert_sae_ok(sae_encoder_reconstruct(e, n, x, ldx, xh, ldx, err, ldx));
    check_rows(xh, ldx, rx, n, D, "reconstruct");
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < D; i++)
            assert_float_equal(err[r * ldx + i], x[r * ldx + i] - xh[r * ldx + i], 1e-6);

    sae_codes_free(codes);
    sae_encoder_free(e);
    sae_dict_free(d);
    test_free(x), test_free(f), test_free(pre), test_free(xh), test_free(err);
    test_free(rf), test_free(rp), test_free(rx), test_free(fx);
}

static void test_every_architecture_and_convention(void **state)
{
    (void)state;
    const int64_t rows[] = {1, 3, 16, 17, 200}; /* streaming kernel and BLIS */
    for (int arch = SAE_ARCH_STANDARD; arch <= SAE_ARCH_GATED; arch++)
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            run_case(arch, 0, SAE_NORM_NONE, rows[ri]);
            run_case(arch, SAE_DICT_NO_B_DEC_INPUT, SAE_NORM_NONE, rows[ri]);
        }
    for (int norm = SAE_NORM_SCALE; norm <= SAE_NORM_LAYER_NORM; norm++) {
        run_case(SAE_ARCH_TOPK, 0, norm, 1);
        run_case(SAE_ARCH_STANDARD, 0, norm, 40);
    }
    run_case(SAE_ARCH_TOPK, SAE_DICT_RESCALE_BY_DECODER_NORM, SAE_NORM_NONE, 1);
    run_case(SAE_ARCH_TOPK, SAE_DICT_RESCALE_BY_DECODER_NORM | SAE_DICT_RELU_BEFORE_TOPK,
             SAE_NORM_NONE, 33);
    run_case(SAE_ARCH_STANDARD, SAE_DICT_RESCALE_BY_DECODER_NORM, SAE_NORM_NONE, 33);
}

/* An allocator that counts allocations, to show that sized encoders allocate nothing. */
static int alloc_count;
static void *counting_alloc(size_t size, size_t align, void *user)
{
    alloc_count++;
    return test_allocator()->alloc(size, align, user);
}
static void counting_free(void *p, void *user) { test_allocator()->free(p, user); }

static void test_sized_encoder_allocates_nothing(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    make_fixture(fx, 5);
    sae_dict *d = make_dict(fx, SAE_ARCH_TOPK, 0, SAE_NORM_LAYER_NORM);
    sae_allocator counting = {counting_alloc, counting_free, NULL};
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.max_rows = 8, o.allocator = &counting, o.n_threads = 2;
    sae_encoder *e = NULL;
    assert_sae_ok(sae_encoder_create(&e, d, &o));
    sae_codes *codes = NULL;
    assert_sae_ok(sae_codes_create(&codes, &counting));
    assert_sae_ok(sae_codes_reserve(codes, 8, 8 * K));
    float x[8 * D], f[8 * F], xh[8 * D];
    fill_normal(x, 8 * D, 3, 1.0f);
    int before = alloc_count;
    for (int64_t n = 1; n <= 8; n++) {
        assert_sae_ok(sae_encoder_encode(e, n, x, D, f, F, NULL, 0));
        assert_sae_ok(sae_encoder_encode_sparse(e, n, x, D, codes));
        assert_sae_ok(sae_encoder_reconstruct(e, n, x, D, xh, D, NULL, 0));
        assert_sae_ok(sae_encoder_decode(e, n, f, F, xh, D));
    }
    assert_int_equal(alloc_count, before);
    sae_codes_free(codes);
    sae_encoder_free(e);
    sae_dict_free(d);
    test_free(fx);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    make_fixture(fx, 8);
    sae_dict *d = make_dict(fx, SAE_ARCH_STANDARD, 0, SAE_NORM_LAYER_NORM);
    sae_encoder *e = NULL;
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.allocator = test_allocator();
    assert_sae_ok(sae_encoder_create(&e, d, &o));
    float x[2 * D], f[2 * F], xh[2 * D];
    fill_normal(x, 2 * D, 1, 1.0f);
    assert_int_equal(sae_encoder_encode(e, 2, x, D - 1, f, F, NULL, 0), SAE_ESHAPE);
    assert_non_null(strstr(sae_last_error(), "leading dimension of x"));
    assert_int_equal(sae_encoder_encode(e, 2, NULL, D, f, F, NULL, 0), SAE_EINVAL);
    assert_int_equal(sae_encoder_encode(e, -1, x, D, f, F, NULL, 0), SAE_EINVAL);
    assert_int_equal(sae_encoder_encode(NULL, 1, x, D, f, F, NULL, 0), SAE_EINVAL);
    /* Layer-norm decode needs the statistics of an encode of the same rows. */
    assert_int_equal(sae_encoder_decode(e, 2, f, F, xh, D), SAE_EINVAL);
    assert_sae_ok(sae_encoder_encode(e, 2, x, D, f, F, NULL, 0));
    assert_sae_ok(sae_encoder_decode(e, 2, f, F, xh, D));
    assert_int_equal(sae_encoder_decode(e, 1, f, F, xh, D), SAE_EINVAL);
    int64_t off[2] = {0, 1};
    int32_t bad_id[1] = {F};
    float one[1] = {1.0f};
    assert_sae_ok(sae_encoder_encode(e, 1, x, D, f, F, NULL, 0));
    assert_int_equal(sae_encoder_decode_sparse(e, 1, off, bad_id, one, xh, D), SAE_ERANGE);
    assert_non_null(strstr(sae_last_error(), "outside"));
    int64_t bad_off[2] = {0, -1};
    assert_int_equal(sae_encoder_decode_sparse(e, 1, bad_off, bad_id, one, xh, D), SAE_EINVAL);
    sae_encoder_options bad = SAE_ENCODER_OPTIONS_INIT;
    bad.flags = SAE_ENCODE_TOPK_THRESHOLD; /* standard dictionary: no top-k threshold mode */
    sae_encoder *e2 = NULL;
    assert_int_equal(sae_encoder_create(&e2, d, &bad), SAE_EINVAL);
    assert_null(e2);
    sae_encoder_free(e);
    sae_dict_free(d);
    test_free(fx);
}

/* NaN in the input propagates to the rows it touches and nowhere else (documented). */
static void test_nan_input_propagates_per_row(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    make_fixture(fx, 9);
    sae_dict *d = make_dict(fx, SAE_ARCH_STANDARD, 0, SAE_NORM_NONE);
    sae_encoder *e = NULL;
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.allocator = test_allocator();
    assert_sae_ok(sae_encoder_create(&e, d, &o));
    float x[2 * D], xh[2 * D];
    fill_normal(x, 2 * D, 1, 1.0f);
    x[3] = NAN;
    assert_sae_ok(sae_encoder_reconstruct(e, 2, x, D, xh, D, NULL, 0));
    bool any_nan = false;
    for (int i = 0; i < D; i++)
        any_nan |= isnan(xh[i]), assert_false(isnan(xh[D + i]));
    assert_true(any_nan);
    sae_encoder_free(e);
    sae_dict_free(d);
    test_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_architecture_and_convention),
        cmocka_unit_test(test_sized_encoder_allocates_nothing),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_nan_input_propagates_per_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
