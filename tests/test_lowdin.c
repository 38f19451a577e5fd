/* test_lowdin.c: symmetric (Loewdin) orthogonalisation and the singular-value spectrum of
 * decoder rows (ortho.h): the LAPACK paths against their Jacobi twins, the closest-orthonormal
 * property, effective ranks in closed form, and bad input leaving everything untouched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ortho/ortho_internal.h"
#include "test_util.h"

/* A subset of n ids out of F, not sorted (adjacent pairs swapped), or NULL for n = 0. */
static int32_t *shuffled_subset(int64_t n, int64_t F, uint64_t seed)
{
    if (!n)
        return NULL;
    int32_t *S = test_malloc((size_t)n * sizeof(int32_t));
    assert_sae_ok(sae_ortho_subset(S, NULL, n, F, seed, 1));
    for (int64_t k = 0; k + 1 < n; k += 2) {
        int32_t t = S[k];
        S[k] = S[k + 1], S[k + 1] = t;
    }
    return S;
}

static double dot_f(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t k = 0; k < d; k++)
        s += (double)a[k] * b[k];
    return s;
}

/* Largest |cos(q_a, q_b)| over a != b and largest | ||q_a|| / want_a - 1 | over the n rows of
 * Q (ld) selected by S (NULL: the first n); want NULL means unit norms. */
static void orthogonality_error(const float *Q, int64_t ld, int64_t d, const int32_t *S,
                                int64_t n, const float *want, double *max_cos, double *max_norm)
{
    *max_cos = 0, *max_norm = 0;
    for (int64_t a = 0; a < n; a++) {
        const float *qa = Q + (S ? S[a] : a) * ld;
        double na = sqrt(dot_f(qa, qa, d)), w = want ? want[a] : 1.0;
        *max_norm = fmax(*max_norm, w > 0 ? fabs(na / w - 1) : na);
        for (int64_t b = 0; b < a; b++) {
            const float *qb = Q + (S ? S[b] : b) * ld;
            double nb = sqrt(dot_f(qb, qb, d));
            if (na > 0 && nb > 0)
                *max_cos = fmax(*max_cos, fabs(dot_f(qa, qb, d)) / (na * nb));
        }
    }
}

/* ||A - B||_F over n rows of length d. */
static double distance(const float *A, int64_t lda, const float *B, int64_t ldb, int64_t n,
                       int64_t d)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < d; k++) {
            double e = (double)A[i * lda + k] - B[i * ldb + k];
            s += e * e;
        }
    return sqrt(s);
}

static void check_lowdin(int64_t F, int64_t d, int64_t ld, int64_t n_subset, uint32_t flags,
                         uint64_t seed)
{
    float *W = normal_rows(F, d, ld, seed), *W0 = test_malloc((size_t)(F * ld) * sizeof(float));
    memcpy(W0, W, (size_t)(F * ld) * sizeof(float));
    int32_t *S = shuffled_subset(n_subset, F, seed);
    sae__ortho_rows r;
    assert_sae_ok(sae__ortho_rows_init(&r, W0, F, d, ld, S, n_subset, 1));
    const int64_t n = r.n;
    float *want = test_malloc((size_t)(n * d) * sizeof(float)), *got = test_malloc(
                                                                     (size_t)(n * d) * 4);
    float *sv = test_malloc((size_t)n * sizeof(float)), *norms = test_malloc((size_t)n * 4);
    double *sv_ref = test_malloc((size_t)n * sizeof(double));
    assert_sae_ok(sae__ortho_lowdin_ref(&r, flags, want));
    assert_sae_ok(sae__ortho_spectrum_ref(&r, sv_ref));
    assert_sae_ok(sae_ortho_lowdin(W, sv, F, d, ld, S, n_subset, flags, 0));

    bool *in_s = test_calloc((size_t)F, sizeof(bool));
    for (int64_t k = 0; k < n; k++) {
        int64_t id = sae__ortho_id(&r, k);
        in_s[id] = true;
        memcpy(got + k * d, W + id * ld, (size_t)d * sizeof(float));
        norms[k] = flags & SAE_LOWDIN_KEEP_NORMS
                       ? (float)sqrt(dot_f(W0 + id * ld, W0 + id * ld, d))
                       : 1.0f;
    }
    /* rows outside S and every row's padding are untouched (bitwise: the padding is NaN) */
    for (int64_t i = 0; i < F; i++)
        if (in_s[i])
            assert_memory_equal(W + i * ld + d, W0 + i * ld + d,
                                (size_t)(ld - d) * sizeof(float));
        else
            assert_memory_equal(W + i * ld, W0 + i * ld, (size_t)ld * sizeof(float));
    assert_close_f32(got, want, n * d, 2e-5, 1e-4, "Loewdin (SVD) vs S^(-1/2) D");
    double max_cos, max_norm;
    orthogonality_error(W, ld, d, S, n, flags & SAE_LOWDIN_KEEP_NORMS ? norms : NULL, &max_cos,
                        &max_norm);
    if (max_cos > 1e-5 || max_norm > 1e-5)
        fail_msg("F %lld d %lld n %lld flags %u: max |cos| %.3g, norm error %.3g after Loewdin",
                 (long long)F, (long long)d, (long long)n, (unsigned)flags, max_cos, max_norm);
    for (int64_t k = 0; k < n; k++)
        if (fabs(sv[k] - sv_ref[k]) > 1e-5 * sv_ref[0])
            fail_msg("sigma[%lld] %.7g, Jacobi %.7g", (long long)k, (double)sv[k], sv_ref[k]);
    test_free(in_s), test_free(want), test_free(got), test_free(sv), test_free(sv_ref);
    test_free(norms), test_free(W), test_free(W0);
    if (S)
        test_free(S);
}

static void test_lowdin_vs_ref(void **state)
{
    for (uint32_t flags = 0; flags <= SAE_LOWDIN_KEEP_NORMS; flags++) {
        check_lowdin(7, 7, 7, 0, flags, 1);    /* all features, square */
        check_lowdin(20, 9, 12, 9, flags, 2);  /* |S| = d, ld > d */
        check_lowdin(50, 40, 41, 17, flags, 3);
        check_lowdin(5, 64, 64, 0, flags, 4);  /* few long rows */
        check_lowdin(300, 33, 35, 1, flags, 5); /* one row: normalised (or kept) */
    }
}

/* Gram-Schmidt of the n rows of W (ld), in double, into Q (n, d): another orthonormal set. */
static void gram_schmidt(const float *W, int64_t ld, int64_t n, int64_t d, float *Q)
{
    double *q = test_malloc((size_t)(n * d) * sizeof(double));
    for (int64_t a = 0; a < n; a++) {
        for (int64_t k = 0; k < d; k++)
            q[a * d + k] = W[a * ld + k];
        for (int64_t b = 0; b < a; b++) {
            double p = 0;
            for (int64_t k = 0; k < d; k++)
                p += q[a * d + k] * q[b * d + k];
            for (int64_t k = 0; k < d; k++)
                q[a * d + k] -= p * q[b * d + k];
        }
        double nn = 0;
        for (int64_t k = 0; k < d; k++)
            nn += q[a * d + k] * q[a * d + k];
        for (int64_t k = 0; k < d; k++)
            Q[a * d + k] = (float)(q[a * d + k] / sqrt(nn));
    }
    test_free(q);
}

/* U V^T is the orthonormal set nearest W: nearer than the orthonormal set W was perturbed from,
 * than Gram-Schmidt of W and than orthonormal sets around it; W L^T is symmetric (the polar
 * decomposition W = P L with P symmetric positive definite); projecting again changes nothing. */
static void test_lowdin_closest(void **state)
{
    const int64_t n = 12, d = 20;
    float *Q = normal_rows(n, d, d, 7), *E = normal_rows(n, d, d, 8);
    assert_sae_ok(sae_ortho_lowdin(Q, NULL, n, d, d, NULL, 0, 0, 1)); /* orthonormal Q */
    float *W = test_malloc((size_t)(n * d) * sizeof(float)), *L = test_malloc((size_t)(n * d) * 4);
    for (int64_t i = 0; i < n * d; i++)
        W[i] = Q[i] + 0.05f * E[i];
    memcpy(L, W, (size_t)(n * d) * sizeof(float));
    assert_sae_ok(sae_ortho_lowdin(L, NULL, n, d, d, NULL, 0, 0, 0));
    double best = distance(L, d, W, d, n, d);
    if (!(best < distance(Q, d, W, d, n, d)))
        fail_msg("||L - W|| %.6g is not below ||Q - W|| %.6g", best, distance(Q, d, W, d, n, d));
    float *C = test_malloc((size_t)(n * d) * sizeof(float));
    gram_schmidt(W, d, n, d, C);
    if (!(best < distance(C, d, W, d, n, d)))
        fail_msg("||L - W|| %.6g is not below Gram-Schmidt's %.6g", best,
                 distance(C, d, W, d, n, d));
    for (uint64_t t = 0; t < 20; t++) { /* orthonormal sets near L */
        float *P = normal_rows(n, d, d, 100 + t);
        for (int64_t i = 0; i < n * d; i++)
            C[i] = L[i] + 0.02f * P[i];
        assert_sae_ok(sae_ortho_lowdin(C, NULL, n, d, d, NULL, 0, 0, 0));
        if (!(best <= distance(C, d, W, d, n, d) + 1e-6))
            fail_msg("an orthonormal set %.7g from W beats Loewdin's %.7g",
                     distance(C, d, W, d, n, d), best);
        test_free(P);
    }
    for (int64_t a = 0; a < n; a++) /* W L^T symmetric */
        for (int64_t b = 0; b < a; b++) {
            double ab = dot_f(W + a * d, L + b * d, d), ba = dot_f(W + b * d, L + a * d, d);
            if (fabs(ab - ba) > 1e-5)
                fail_msg("(W L^T)[%lld, %lld] = %.7g but [%lld, %lld] = %.7g", (long long)a,
                         (long long)b, ab, (long long)b, (long long)a, ba);
        }
    float sv[12];
    memcpy(C, L, (size_t)(n * d) * sizeof(float));
    assert_sae_ok(sae_ortho_lowdin(C, sv, n, d, d, NULL, 0, 0, 0)); /* a projection */
    for (int k = 0; k < n; k++)
        assert_true(fabsf(sv[k] - 1.0f) < 1e-5f);
    assert_close_f32(C, L, n * d, 1e-5, 0, "Loewdin of an orthonormal set");
    test_free(Q), test_free(E), test_free(W), test_free(L), test_free(C);
}

static void check_spectrum(int64_t F, int64_t d, int64_t ld, int64_t n_subset, uint64_t seed)
{
    float *W = normal_rows(F, d, ld, seed);
    for (int64_t i = 0; i < F; i++) /* unequal column scales: a spread-out spectrum */
        for (int64_t k = 0; k < d; k++)
            W[i * ld + k] *= 1.0f + (float)k / (float)d;
    int32_t *S = shuffled_subset(n_subset, F, seed);
    sae__ortho_rows r;
    assert_sae_ok(sae__ortho_rows_init(&r, W, F, d, ld, S, n_subset, 1));
    const int64_t m = r.n < d ? r.n : d;
    float *sv = test_malloc((size_t)m * sizeof(float)), *sv1 = test_malloc((size_t)m * 4);
    float *ref_f = test_malloc((size_t)m * sizeof(float));
    double *ref = test_malloc((size_t)m * sizeof(double)), er, pr, er1, pr1, er_ref, pr_ref;
    assert_sae_ok(sae_ortho_spectrum(sv, &er, &pr, W, F, d, ld, S, n_subset, 0));
    assert_sae_ok(sae_ortho_spectrum(sv1, &er1, &pr1, W, F, d, ld, S, n_subset, 1));
    assert_sae_ok(sae__ortho_spectrum_ref(&r, ref));
    for (int64_t k = 0; k < m; k++) {
        ref_f[k] = (float)ref[k];
        /* the Gram route: absolute error ~ eps sigma_max^2 / sigma, here below 1e-5 sigma_max */
        if (fabs(sv[k] - ref[k]) > 1e-5 * ref[0] || fabs(sv1[k] - ref[k]) > 1e-5 * ref[0])
            fail_msg("F %lld d %lld n %lld: sigma[%lld] %.7g (1 thread %.7g), Jacobi %.7g",
                     (long long)F, (long long)d, (long long)r.n, (long long)k, (double)sv[k],
                     (double)sv1[k], ref[k]);
    }
    sae__spectrum_ranks(ref_f, m, &er_ref, &pr_ref);
    if (fabs(er - er_ref) > 1e-5 * er_ref || fabs(pr - pr_ref) > 1e-5 * pr_ref)
        fail_msg("effective rank %.7g / participation ratio %.7g, reference %.7g / %.7g", er,
                 pr, er_ref, pr_ref);
    assert_true(er <= (double)m * (1 + 1e-9) && pr <= (double)m * (1 + 1e-9));
    test_free(sv), test_free(sv1), test_free(ref), test_free(ref_f), test_free(W);
    if (S)
        test_free(S);
}

static void test_spectrum_vs_ref(void **state)
{
    check_spectrum(30, 7, 9, 0, 1);       /* n > d: D^T D, one syrk over all rows */
    check_spectrum(2000, 5, 5, 1500, 2);  /* n > d, gathered in two blocks (1024 + 476) */
    check_spectrum(1101, 7, 8, 0, 3);
    check_spectrum(12, 40, 43, 0, 4);     /* n < d: D D^T */
    check_spectrum(100, 50, 50, 20, 5);   /* n < d, gathered */
    check_spectrum(64, 64, 64, 0, 6);     /* square */
    check_spectrum(9, 3, 3, 1, 7);        /* one row */
}

static void expect_ranks(const float *W, int64_t F, int64_t d, double er_want, double pr_want,
                         double tol)
{
    double er, pr;
    assert_sae_ok(sae_ortho_spectrum(NULL, &er, &pr, W, F, d, d, NULL, 0, 0));
    if (fabs(er - er_want) > tol * fmax(er_want, 1) ||
        fabs(pr - pr_want) > tol * fmax(pr_want, 1))
        fail_msg("(%lld, %lld): effective rank %.9g, participation ratio %.9g; want %.9g, %.9g",
                 (long long)F, (long long)d, er, pr, er_want, pr_want);
}

/* Hand cases with an exact float Gram matrix, and the participation ratio of a Gaussian matrix:
 * for D (n, d) with N(0, 1) entries E tr(D^T D) = n d and E ||D^T D||_F^2 = n d (n + d + 1). */
static void test_effective_rank(void **state)
{
    float orth[3 * 5] = {0, 2, 0, 0, 0, 0, 0, 0, -2, 0, 2, 0, 0, 0, 0}; /* sigma = (2, 2, 2) */
    expect_ranks(orth, 3, 5, 3, 3, 1e-6);
    float one[3 * 3] = {1, 0, 0, 2, 0, 0, -3, 0, 0}; /* rank one */
    expect_ranks(one, 3, 3, 1, 1, 1e-6);
    float two[2 * 2] = {3, 0, 0, 1}; /* sigma = (3, 1): p = (3/4, 1/4) */
    expect_ranks(two, 2, 2, exp(-(0.75 * log(0.75) + 0.25 * log(0.25))), 100.0 / 82, 1e-6);
    float zero[4 * 2] = {0};
    float sv[2] = {-1, -1};
    double er = -1, pr = -1;
    assert_sae_ok(sae_ortho_spectrum(sv, &er, &pr, zero, 4, 2, 2, NULL, 0, 0));
    assert_true(sv[0] == 0 && sv[1] == 0 && er == 0 && pr == 0);

    const int64_t n = 4000, d = 40;
    float *W = normal_rows(n, d, d, 11);
    /* entropy rank: sigma / sqrt(n) has variance ~ d / (4 n) around 1 (Marchenko-Pastur), so
     * exp(H) ~ d (1 - d / (8 n)) */
    assert_sae_ok(sae_ortho_spectrum(NULL, &er, &pr, W, n, d, d, NULL, 0, 0));
    double pr_want = (double)n * d / (n + d + 1);
    if (fabs(pr - pr_want) > 0.01 * pr_want || er > d || er < d * (1 - 0.005))
        fail_msg("Gaussian (4000, 40): participation ratio %.4f (closed form %.4f), entropy "
                 "rank %.4f (about %.4f)", pr, pr_want, er, d * (1 - d / (8.0 * n)));
    test_free(W);
}

static void test_errors(void **state)
{
    const int64_t F = 6, d = 4;
    float W[6 * 4], W0[6 * 4], sv[6];
    fill_normal(W, F * d, 1, 1.0f);
    memcpy(W0, W, sizeof W);
    for (int k = 0; k < 6; k++)
        sv[k] = -7;
    int32_t rep[3] = {1, 4, 1}, out_of_range[2] = {0, 6}, five[5] = {0, 1, 2, 3, 4}, ok[2] = {0, 5};
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, rep, 3, 0, 0), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "repeated"));
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, out_of_range, 2, 0, 0), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "outside"));
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, five, 5, 0, 0), SAE_EINVAL); /* |S| > d */
    assert_non_null(strstr(sae_last_error(), "at most d rows"));
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, NULL, 0, 0, 0), SAE_EINVAL); /* F > d */
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, ok, 2, 4u, 0), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "flags"));
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, 3, ok, 2, 0, 0), SAE_ESHAPE);
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, ok, 2, 0, -1), SAE_EINVAL);
    assert_int_equal(sae_ortho_lowdin(NULL, sv, F, d, d, ok, 2, 0, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, ok, 0, 0, 0), SAE_EINVAL); /* empty */
    W[5 * d + 2] = W0[5 * d + 2] = NAN;
    assert_int_equal(sae_ortho_lowdin(W, sv, F, d, d, ok, 2, 0, 0), SAE_ENUMERIC);
    assert_non_null(strstr(sae_last_error(), "W_dec[5, 2]"));
    double er = -7, pr = -7;
    assert_int_equal(sae_ortho_spectrum(sv, &er, &pr, W, F, d, d, ok, 2, 0), SAE_ENUMERIC);
    assert_int_equal(sae_ortho_spectrum(sv, &er, &pr, W, F, d, d, rep, 3, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_spectrum(sv, &er, &pr, W, F, d, 2, NULL, 0, 0), SAE_ESHAPE);
    assert_int_equal(sae_ortho_spectrum(sv, &er, &pr, W, F, d, d, NULL, 0, -2), SAE_EINVAL);
    /* nothing written on failure (the NaN is the same bits in both) */
    assert_memory_equal(W, W0, sizeof W);
    for (int k = 0; k < 6; k++)
        assert_true(sv[k] == -7);
    assert_true(er == -7 && pr == -7);
    /* the NaN row outside S is fine */
    int32_t fine[2] = {0, 3};
    assert_sae_ok(sae_ortho_lowdin(W, sv, F, d, d, fine, 2, 0, 0));
    assert_true(isnan(W[5 * d + 2]));
}

static void test_dict(void **state)
{
    const int64_t F = 40, d = 12;
    float *Wenc = normal_rows(d, F, F, 5), *Wdec = normal_rows(F, d, d, 6);
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = SAE_ARCH_TOPK, cfg.d_in = d, cfg.d_sae = F, cfg.k = 3;
    cfg.model_name = "m", cfg.hook_name = "h";
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = Wenc, w.W_dec = Wdec;
    sae_dict *dict, *orth = NULL;
    assert_sae_ok(sae_dict_create(&dict, &cfg, &w, test_allocator()));
    int32_t S[10];
    assert_sae_ok(sae_ortho_subset(S, NULL, 10, F, 3, 0));
    float sv[10], sv2[10];
    assert_sae_ok(sae_ortho_dict_lowdin(&orth, sv, dict, S, 10, SAE_LOWDIN_KEEP_NORMS, 0));
    float *expect = test_malloc((size_t)(F * d) * sizeof(float));
    memcpy(expect, Wdec, (size_t)(F * d) * sizeof(float));
    assert_sae_ok(sae_ortho_lowdin(expect, sv2, F, d, d, S, 10, SAE_LOWDIN_KEEP_NORMS, 0));
    assert_memory_equal(sv, sv2, sizeof sv);
    sae_dict_weights wo = SAE_DICT_WEIGHTS_INIT, wd = SAE_DICT_WEIGHTS_INIT;
    sae_dict_config co = SAE_DICT_CONFIG_INIT;
    assert_sae_ok(sae_dict_get_weights(orth, &wo));
    assert_sae_ok(sae_dict_get_weights(dict, &wd));
    assert_sae_ok(sae_dict_get_config(orth, &co));
    assert_memory_equal(wo.W_dec, expect, (size_t)(F * d) * sizeof(float));
    assert_memory_equal(wo.W_enc, wd.W_enc, (size_t)(F * d) * sizeof(float));
    assert_memory_equal(wd.W_dec, Wdec, (size_t)(F * d) * sizeof(float)); /* source unchanged */
    assert_int_equal(co.arch, SAE_ARCH_TOPK), assert_int_equal(co.k, 3);
    assert_string_equal(co.hook_name, "h");
    const float *norms = sae_dict_decoder_norms(orth), *norms0 = sae_dict_decoder_norms(dict);
    assert_close_f32(norms, norms0, F, 1e-5, 1e-5, "norms kept");

    float sp[12], sp2[12];
    double er, pr, er2, pr2;
    assert_sae_ok(sae_ortho_dict_spectrum(sp, &er, &pr, orth, NULL, 0, 1));
    assert_sae_ok(sae_ortho_spectrum(sp2, &er2, &pr2, expect, F, d, d, NULL, 0, 1));
    assert_memory_equal(sp, sp2, sizeof sp);
    assert_true(er == er2 && pr == pr2);

    sae_dict *untouched = (sae_dict *)&cfg; /* a sentinel: must not be overwritten */
    assert_int_equal(sae_ortho_dict_lowdin(&untouched, NULL, dict, NULL, 0, 0, 0), SAE_EINVAL);
    assert_true(untouched == (sae_dict *)&cfg);
    assert_int_equal(sae_ortho_dict_lowdin(NULL, NULL, dict, S, 10, 0, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_dict_lowdin(&untouched, NULL, NULL, S, 10, 0, 0), SAE_EINVAL);
    assert_int_equal(sae_ortho_dict_spectrum(sp, &er, &pr, NULL, NULL, 0, 0), SAE_EINVAL);
    sae_dict_free(orth);
    sae_dict_free(dict);
    test_free(Wenc), test_free(Wdec), test_free(expect);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowdin_vs_ref),   cmocka_unit_test(test_lowdin_closest),
        cmocka_unit_test(test_spectrum_vs_ref), cmocka_unit_test(test_effective_rank),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_dict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
