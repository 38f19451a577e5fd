/* test_ortho.c: orthogonality penalty, coherence statistics, subsets and the relative-L2 term
 * (ortho.h): the sae-icm oracle, tiled kernels against their naive twins, finite differences,
 * and the closed-form mean |cos| of random unit vectors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ortho/ortho_internal.h"
#include "test_util.h"

#define ORACLE "oracle/icm_orthogonality_full_d32_s128.safetensors"

static float oracle_scalar(const char *name)
{
    int64_t n;
    float *v = load_tensor_f32(shared_path(ORACLE), name, &n, NULL, NULL);
    assert_int_equal(n, 1);
    float x = v[0];
    test_free(v);
    return x;
}

static void assert_rel(double got, double want, double rtol, const char *what)
{
    if (fabs(got - want) > rtol * fabs(want))
        fail_msg("%s: got %.9g, want %.9g (rtol %g)", what, got, want, rtol);
}

/* W_dec.weight [d_model, d_sae] of the oracle, as libsae rows (d_sae, d_model). */
static float *oracle_rows(const char *name, int64_t *F, int64_t *d)
{
    int64_t n, shape[8];
    int nd;
    float *w = load_tensor_f32(shared_path(ORACLE), name, &n, shape, &nd);
    assert_int_equal(nd, 2);
    *d = shape[0], *F = shape[1];
    float *rows = test_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < *F; i++)
        for (int64_t k = 0; k < *d; k++)
            rows[i * *d + k] = w[k * *F + i];
    test_free(w);
    return rows;
}

static void test_oracle(void **state)
{
    int64_t F, d, Fg, dg, n;
    float *W = oracle_rows("param.W_dec.weight", &F, &d);
    float *want_grad = oracle_rows("out.grad.W_dec.weight", &Fg, &dg);
    assert_int_equal(F, 128), assert_int_equal(d, 32), assert_int_equal(Fg, F);
    /* the sampled indices (a permutation of all 128: d_sub_decoder = d_sae) */
    sae_st_reader *rd;
    assert_sae_ok(sae_st_open(&rd, shared_path(ORACLE)));
    const sae_tensor_info *ti = sae_st_find(rd, "in.sampled_indices");
    assert_non_null(ti);
    assert_int_equal(ti->dtype, SAE_DTYPE_I64);
    n = ti->numel;
    int32_t *S = test_malloc((size_t)n * sizeof(int32_t));
    for (int64_t k = 0; k < n; k++) {
        int64_t v;
        memcpy(&v, (const char *)ti->data + 8 * k, 8);
        S[k] = (int32_t)v;
    }
    sae_st_close(rd);

    double want = oracle_scalar("out.orthogonality"), p_sub, p_all;
    float *grad = test_calloc((size_t)(F * d), sizeof(float));
    assert_sae_ok(sae_ortho_penalty(&p_sub, grad, d, 1.0f, W, F, d, d, S, n, 0));
    assert_sae_ok(sae_ortho_penalty(&p_all, NULL, 0, 1.0f, W, F, d, d, NULL, 0, 1));
    assert_rel(p_sub, want, 1e-5, "orthogonality (sampled)");
    assert_rel(p_all, want, 1e-5, "orthogonality (all)");
    assert_close_f32(grad, want_grad, F * d, 1e-3, 1e-4, "grad W_dec");

    sae_coherence c = SAE_COHERENCE_INIT;
    assert_sae_ok(sae_ortho_coherence(&c, NULL, W, F, d, d, S, n, 0));
    assert_int_equal(c.n, 128), assert_int_equal(c.n_bins, SAE_COHERENCE_BINS);
    assert_rel(c.max_cos, oracle_scalar("out.metrics.max_cos"), 1e-5, "max_cos");
    assert_rel(c.sum_cos, oracle_scalar("out.orthogonality_py.sum_cos"), 1e-5, "sum_cos");
    assert_rel(c.mean_cos, oracle_scalar("out.orthogonality_py.mean_cos"), 1e-5, "mean_cos");
    assert_rel(c.sum_cos / (double)(c.n * c.n), oracle_scalar("out.metrics.mean_cos_insert_sae"),
               1e-5, "mean_cos (insert_sae, / n^2)");
    assert_rel(c.welch_sum_norm, oracle_scalar("out.welch.sum_norm"), 1e-5, "welch sum_norm");
    assert_rel(c.welch_mean_norm, oracle_scalar("out.welch.mean_norm"), 1e-5, "welch mean_norm");
    assert_rel(c.welch_sum_raw, oracle_scalar("out.welch.sum_raw"), 1e-5, "welch sum_raw");
    assert_rel(c.welch_normalizing_raw, oracle_scalar("out.welch.normalizing_raw"), 1e-5,
               "welch normalizing_raw");
    assert_rel(c.welch_mean_raw, oracle_scalar("out.welch.mean_raw"), 1e-5, "welch mean_raw");
    assert_rel(c.welch_bound, 1.0 / 32, 1e-12, "welch bound");
    /* the penalty is half the off-diagonal raw sum: sum_raw = 2 P + sum_i ||d_i||^4 */
    double diag4 = 0;
    for (int64_t i = 0; i < F; i++) {
        double sq = 0;
        for (int64_t k = 0; k < d; k++)
            sq += (double)W[i * d + k] * W[i * d + k];
        diag4 += sq * sq;
    }
    assert_rel(c.welch_sum_raw, 2 * p_all + diag4, 1e-5, "sum_raw = 2 P + sum ||d||^4");

    int64_t nx, shape[8];
    int nd;
    float *x = load_tensor_f32(shared_path(ORACLE), "in.recon.x", &nx, shape, &nd);
    float *xh = load_tensor_f32(shared_path(ORACLE), "in.recon.x_hat", &nx, NULL, NULL);
    double loss;
    assert_sae_ok(sae_ortho_relative_l2(&loss, NULL, 0, xh, 32, x, 32, nx / 32, 32));
    assert_rel(loss, oracle_scalar("out.recon.reconstruction_loss"), 1e-6, "recon loss");
    test_free(x), test_free(xh), test_free(S), test_free(grad), test_free(W),
        test_free(want_grad);
}

static void check_against_ref(int64_t F, int64_t d, int64_t ld, int64_t n_subset,
                              uint64_t seed)
{
    float *W = normal_rows(F, d, ld, seed);
    int32_t *S = NULL;
    if (n_subset) {
        S = test_malloc((size_t)n_subset * sizeof(int32_t));
        assert_sae_ok(sae_ortho_subset(S, NULL, n_subset, F, seed, 7));
        for (int64_t k = 0; k + 1 < n_subset; k += 2) { /* any order, not only sorted */
            int32_t t = S[k];
            S[k] = S[k + 1], S[k + 1] = t;
        }
    }
    sae__ortho_rows r;
    assert_sae_ok(sae__ortho_rows_init(&r, W, F, d, ld, S, n_subset, 2));
    int64_t ldg = d + 3;
    float *g = test_malloc((size_t)(F * ldg) * sizeof(float));
    float *g_ref = test_malloc((size_t)(F * ldg) * sizeof(float));
    fill_normal(g, F * ldg, seed + 1, 1.0f); /* accumulation: rows outside S stay as they are */
    memcpy(g_ref, g, (size_t)(F * ldg) * sizeof(float));
    double p, p_ref;
    assert_sae_ok(sae_ortho_penalty(&p, g, ldg, 0.5f, W, F, d, ld, S, n_subset, 0));
    assert_sae_ok(sae__ortho_penalty_ref(&r, &p_ref, g_ref, ldg, 0.5f));
    assert_rel(p, p_ref, 1e-5, "penalty vs ref");
    assert_close_f32(g, g_ref, F * ldg, 1e-3, 1e-4, "gradient vs ref");

    int64_t n = r.n;
    float *fm = test_malloc((size_t)n * sizeof(float)), *fm_ref = test_malloc((size_t)n * 4);
    sae_coherence c = SAE_COHERENCE_INIT, c_ref;
    assert_sae_ok(sae_ortho_coherence(&c, fm, W, F, d, ld, S, n_subset, 0));
    sae__ortho_coherence_ref(&r, &c_ref, fm_ref);
    assert_int_equal(c.n, n);
    assert_rel(c.max_cos, c_ref.max_cos, 1e-5, "max_cos vs ref");
    assert_int_equal(c.max_i, c_ref.max_i), assert_int_equal(c.max_j, c_ref.max_j);
    assert_rel(c.sum_cos, c_ref.sum_cos, 1e-5, "sum_cos vs ref");
    assert_rel(c.mean_cos, c_ref.mean_cos, 1e-5, "mean_cos vs ref");
    assert_rel(c.mean_max_cos, c_ref.mean_max_cos, 1e-5, "mean_max_cos vs ref");
    assert_rel(c.welch_sum_norm, c_ref.welch_sum_norm, 1e-5, "sum_norm vs ref");
    assert_rel(c.welch_sum_raw, c_ref.welch_sum_raw, 1e-5, "sum_raw vs ref");
    assert_rel(c.welch_mean_raw, c_ref.welch_mean_raw, 1e-5, "mean_raw vs ref");
    assert_rel(c.frame_potential, c_ref.frame_potential, 1e-5, "frame potential vs ref");
    assert_close_f32(fm, fm_ref, n, 1e-6, 1e-5, "per-feature max |cos| vs ref");
    int64_t total = 0;
    for (int b = 0; b < SAE_COHERENCE_BINS; b++)
        total += c.max_cos_hist[b];
    assert_int_equal(total, n);

    /* one thread: the same up to BLIS's summation order */
    sae_coherence c1 = SAE_COHERENCE_INIT;
    double p1;
    assert_sae_ok(sae_ortho_coherence(&c1, NULL, W, F, d, ld, S, n_subset, 1));
    assert_sae_ok(sae_ortho_penalty(&p1, NULL, 0, 1.0f, W, F, d, ld, S, n_subset, 1));
    assert_rel(c1.sum_cos, c.sum_cos, 1e-6, "sum_cos, 1 thread");
    assert_rel(c1.welch_sum_raw, c.welch_sum_raw, 1e-6, "sum_raw, 1 thread");
    assert_rel(p1, p, 1e-6, "penalty, 1 thread");
    test_free(fm), test_free(fm_ref), test_free(g), test_free(g_ref), test_free(W);
    if (S)
        test_free(S);
}

static void test_tiled_vs_ref(void **state)
{
    check_against_ref(37, 13, 13, 0, 1);      /* one tile, all features */
    check_against_ref(53, 9, 11, 29, 2);      /* subset, ld > d */
    check_against_ref(1101, 7, 10, 0, 3);     /* two tiles (1024 + 77) */
    check_against_ref(1500, 5, 5, 1031, 4);   /* two tiles of a gathered subset */
    check_against_ref(40, 1001, 1003, 37, 5); /* long rows */
}

/* Gradient of the fast kernel against central differences of the double-precision penalty. */
static void test_finite_differences(void **state)
{
    const int64_t F = 13, d = 5, ld = 6;
    float *W = normal_rows(F, d, ld, 11);
    int32_t S[9];
    assert_sae_ok(sae_ortho_subset(S, NULL, 9, F, 3, 0));
    float g[13 * 5] = {0};
    double p;
    assert_sae_ok(sae_ortho_penalty(&p, g, d, 1.0f, W, F, d, ld, S, 9, 0));
    sae__ortho_rows r;
    assert_sae_ok(sae__ortho_rows_init(&r, W, F, d, ld, S, 9, 1));
    for (int64_t i = 0; i < F; i++)
        for (int64_t k = 0; k < d; k++) {
            float w0 = W[i * ld + k], h = 1.0f / 512; /* exact in float */
            double hi, lo;
            float up = w0 + h, down = w0 - h; /* the step actually taken in float */
            W[i * ld + k] = up;
            assert_sae_ok(sae__ortho_penalty_ref(&r, &hi, NULL, 0, 1.0f));
            W[i * ld + k] = down;
            assert_sae_ok(sae__ortho_penalty_ref(&r, &lo, NULL, 0, 1.0f));
            W[i * ld + k] = w0;
            double fd = (hi - lo) / ((double)up - down);
            /* P is quartic: the central difference errs by h^2/6 P''' = O(1e-5) here */
            if (fabs(fd - g[i * d + k]) > 1e-3 * (1 + fabs(fd)))
                fail_msg("dP/dW[%lld,%lld]: grad %g, finite difference %g", (long long)i,
                         (long long)k, (double)g[i * d + k], fd);
        }
    /* relative L2: gradient against central differences too */
    const int64_t n = 4, m = 6;
    float x[24], xh[24], gr[24];
    fill_normal(x, 24, 21, 1.0f), fill_normal(xh, 24, 22, 1.0f);
    double L;
    assert_sae_ok(sae_ortho_relative_l2(&L, gr, m, xh, m, x, m, n, m));
    for (int k = 0; k < 24; k++) {
        float v = xh[k], up = v + 1.0f / 1024, down = v - 1.0f / 1024;
        double hi, lo;
        xh[k] = up;
        assert_sae_ok(sae_ortho_relative_l2(&hi, NULL, 0, xh, m, x, m, n, m));
        xh[k] = down;
        assert_sae_ok(sae_ortho_relative_l2(&lo, NULL, 0, xh, m, x, m, n, m));
        xh[k] = v;
        double fd = (hi - lo) / ((double)up - down);
        if (fabs(fd - gr[k]) > 1e-4)
            fail_msg("dL/dx_hat[%d]: grad %g, finite difference %g", k, (double)gr[k], fd);
    }
    test_free(W);
}

/* Uniform unit vectors in R^d: E|cos| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)), E cos^2 = 1/d.
 * cos(u, v) and cos(u, w) are independent for isotropic u, v, w, so the pair mean has variance
 * Var|cos| / C(n, 2) exactly. */
static void test_random_unit_vectors(void **state)
{
    const int64_t n = 3000, d = 48;
    float *W = normal_rows(n, d, d, 99); /* Gaussian rows: their directions are uniform */
    sae_coherence c = SAE_COHERENCE_INIT;
    assert_sae_ok(sae_ortho_coherence(&c, NULL, W, n, d, d, NULL, 0, 0));
    double e_abs = exp(lgamma(d / 2.0) - lgamma((d + 1) / 2.0)) / sqrt(M_PI);
    double pairs = n * (n - 1) / 2.0, se = sqrt((1.0 / d - e_abs * e_abs) / pairs);
    if (fabs(c.mean_cos - e_abs) > 5 * se)
        fail_msg("mean |cos| %.6f, closed form %.6f, 5 SE = %.2g", c.mean_cos, e_abs, 5 * se);
    /* frame potential: E = n (n - 1) / d; cos^2 has variance 2(d-1)/(d^2(d+2)) */
    double fp_want = 2 * pairs / d, fp_se = 2 * sqrt(pairs * 2.0 * (d - 1) / (d * d * (d + 2.0)));
    if (fabs(c.frame_potential - fp_want) > 5 * fp_se)
        fail_msg("frame potential %.2f, expected %.2f +- %.2f", c.frame_potential, fp_want,
                 5 * fp_se);
    assert_true(c.frame_potential >= c.frame_potential_bound);
    assert_true(c.welch_mean_norm >= c.welch_bound);
    assert_true(c.max_cos > 0.5 && c.max_cos <= 1.0);
    assert_int_equal(c.n_zero, 0);
    test_free(W);
}

/* Orthonormal rows reach the bounds; a repeated direction gives max |cos| = 1 and a zero row
 * counts in n_zero. */
static void test_hand_cases(void **state)
{
    float E[4 * 4] = {1, 0, 0, 0, 0, 2, 0, 0, 0, 0, -3, 0, 0, 0, 0, 1};
    sae_coherence c = SAE_COHERENCE_INIT;
    double p;
    assert_sae_ok(sae_ortho_coherence(&c, NULL, E, 4, 4, 4, NULL, 0, 0));
    assert_sae_ok(sae_ortho_penalty(&p, NULL, 0, 1.0f, E, 4, 4, 4, NULL, 0, 0));
    assert_true(p == 0 && c.max_cos == 0 && c.mean_cos == 0 && c.frame_potential == 0);
    assert_rel(c.welch_mean_norm, c.welch_bound, 1e-12, "orthonormal basis reaches the bound");
    assert_int_equal(c.max_cos_hist[0], 4);
    float R[3 * 2] = {1, 1, -2, -2, 0, 0}; /* rows 0 and 1 are parallel, row 2 is zero */
    assert_sae_ok(sae_ortho_coherence(&c, NULL, R, 3, 2, 2, NULL, 0, 0));
    assert_rel(c.max_cos, 1.0, 1e-7, "parallel rows");
    assert_int_equal(c.max_i, 1), assert_int_equal(c.max_j, 0), assert_int_equal(c.n_zero, 1);
    assert_int_equal(c.max_cos_hist[SAE_COHERENCE_BINS - 1], 2);
    assert_int_equal(c.max_cos_hist[0], 1);
    assert_sae_ok(sae_ortho_penalty(&p, NULL, 0, 1.0f, R, 3, 2, 2, NULL, 0, 0));
    assert_rel(p, 16.0, 1e-12, "(d_0 . d_1)^2 = (-4)^2");
    /* an old caller's shorter struct gets only its prefix */
    sae_coherence small;
    memset(&small, 0x5a, sizeof small);
    small.struct_size = offsetof(sae_coherence, mean_cos);
    assert_sae_ok(sae_ortho_coherence(&small, NULL, R, 3, 2, 2, NULL, 0, 0));
    assert_int_equal(small.struct_size, offsetof(sae_coherence, mean_cos));
    assert_rel(small.sum_cos, c.sum_cos, 0, "prefix");
    assert_int_equal(((unsigned char *)&small)[offsetof(sae_coherence, mean_cos)], 0x5a);
}

static void test_subset(void **state)
{
    int32_t a[64], b[64];
    int64_t n;
    assert_sae_ok(sae_ortho_subset(a, &n, 50, 1000, 42, 3));
    assert_int_equal(n, 50);
    for (int k = 1; k < 50; k++)
        assert_true(a[k] > a[k - 1]);
    assert_true(a[0] >= 0 && a[49] < 1000);
    assert_sae_ok(sae_ortho_subset(b, NULL, 50, 1000, 42, 3));
    assert_memory_equal(a, b, 50 * sizeof(int32_t)); /* replayable */
    assert_sae_ok(sae_ortho_subset(b, NULL, 50, 1000, 42, 4));
    assert_true(memcmp(a, b, 50 * sizeof(int32_t)) != 0); /* redrawn per counter */
    assert_sae_ok(sae_ortho_subset(a, &n, 64, 20, 1, 0)); /* more than F: all of them */
    assert_int_equal(n, 20);
    for (int k = 0; k < 20; k++)
        assert_int_equal(a[k], k);
    /* uniform: each of 20 ids is drawn in 5/20 of 4000 draws of 5 (binomial, 5 sigma) */
    int count[20] = {0};
    for (uint64_t t = 0; t < 4000; t++) {
        assert_sae_ok(sae_ortho_subset(a, NULL, 5, 20, 7, t));
        for (int k = 0; k < 5; k++)
            count[a[k]]++;
    }
    for (int i = 0; i < 20; i++)
        if (fabs(count[i] - 1000.0) > 5 * sqrt(4000 * 0.25 * 0.75))
            fail_msg("id %d drawn %d times in 4000, expected 1000", i, count[i]);
    assert_int_equal(sae_ortho_subset(a, NULL, 0, 20, 1, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_subset(NULL, NULL, 5, 20, 1, 0), SAE_EINVAL);
}

static void test_dict(void **state)
{
    const int64_t F = 40, d = 12;
    float *Wenc = normal_rows(d, F, F, 5), *Wdec = normal_rows(F, d, d, 6);
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = SAE_ARCH_STANDARD, cfg.d_in = d, cfg.d_sae = F;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = Wenc, w.W_dec = Wdec;
    sae_dict *dict;
    assert_sae_ok(sae_dict_create(&dict, &cfg, &w, test_allocator()));
    int32_t S[16];
    assert_sae_ok(sae_ortho_subset(S, NULL, 16, F, 1, 2));
    double p1, p2;
    float g1[40 * 12] = {0}, g2[40 * 12] = {0};
    assert_sae_ok(sae_ortho_dict_penalty(&p1, g1, d, 2.0f, dict, S, 16, 1));
    assert_sae_ok(sae_ortho_penalty(&p2, g2, d, 2.0f, Wdec, F, d, d, S, 16, 1));
    assert_true(p1 == p2);
    assert_memory_equal(g1, g2, sizeof g1);
    sae_coherence c1 = SAE_COHERENCE_INIT, c2 = SAE_COHERENCE_INIT;
    assert_sae_ok(sae_ortho_dict_coherence(&c1, NULL, dict, NULL, 0, 1));
    assert_sae_ok(sae_ortho_coherence(&c2, NULL, Wdec, F, d, d, NULL, 0, 1));
    assert_memory_equal(&c1, &c2, sizeof c1);
    assert_int_equal(sae_ortho_dict_coherence(&c1, NULL, NULL, NULL, 0, 0), SAE_EINVAL);
    sae_dict_free(dict);
    test_free(Wenc), test_free(Wdec);
}

static void test_errors(void **state)
{
    float W[6 * 4];
    fill_normal(W, 24, 1, 1.0f);
    float g[24] = {0};
    double p;
    sae_coherence c = SAE_COHERENCE_INIT;
    int32_t rep[3] = {1, 4, 1}, out_of_range[2] = {0, 6};
    assert_int_equal(sae_ortho_penalty(&p, g, 4, 1.0f, W, 6, 4, 4, rep, 3, 0), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "repeated"));
    assert_int_equal(sae_ortho_penalty(&p, g, 4, 1.0f, W, 6, 4, 4, out_of_range, 2, 0),
                     SAE_EINVAL);
    assert_int_equal(sae_ortho_penalty(&p, g, 4, 1.0f, W, 6, 4, 3, NULL, 0, 0), SAE_ESHAPE);
    assert_int_equal(sae_ortho_penalty(&p, g, 3, 1.0f, W, 6, 4, 4, NULL, 0, 0), SAE_ESHAPE);
    assert_int_equal(sae_ortho_penalty(&p, g, 4, 1.0f, W, 6, 4, 4, NULL, 3, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_penalty(&p, g, 4, 1.0f, NULL, 6, 4, 4, NULL, 0, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_penalty(&p, g, 4, 1.0f, W, 6, 4, 4, NULL, 0, -1), SAE_EINVAL);
    W[9] = NAN;
    assert_int_equal(sae_ortho_penalty(&p, g, 4, 1.0f, W, 6, 4, 4, NULL, 0, 0), SAE_ENUMERIC);
    assert_non_null(strstr(sae_last_error(), "W_dec[2, 1]"));
    assert_int_equal(sae_ortho_coherence(&c, NULL, W, 6, 4, 4, NULL, 0, 0), SAE_ENUMERIC);
    int32_t ok[2] = {0, 5}; /* the NaN row is not in S: fine */
    assert_sae_ok(sae_ortho_penalty(&p, NULL, 0, 1.0f, W, 6, 4, 4, ok, 2, 0));
    p = -7;
    assert_int_equal(sae_ortho_coherence(&c, NULL, W, 6, 4, 4, ok, 1, 0), SAE_EINVAL); /* n < 2 */
    c.struct_size = 0;
    assert_int_equal(sae_ortho_coherence(&c, NULL, W, 6, 4, 4, ok, 2, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_relative_l2(&p, NULL, 0, W, 3, W, 4, 2, 4), SAE_ESHAPE);
    /* nothing written on failure */
    assert_true(p == -7);
    for (int k = 0; k < 24; k++)
        assert_true(g[k] == 0.0f);
    assert_int_equal(c.struct_size, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle),          cmocka_unit_test(test_tiled_vs_ref),
        cmocka_unit_test(test_finite_differences), cmocka_unit_test(test_random_unit_vectors),
        cmocka_unit_test(test_hand_cases),      cmocka_unit_test(test_subset),
        cmocka_unit_test(test_dict),            cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
