/* test_synth.c: the synthetic generator (determinism, statistics, the copula's linear algebra
 * against naive twins) and the ground-truth metrics (hand examples with closed forms, MCC
 * against brute force over all matchings). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sae/synth.h"
#include "synth_internal.h"
#include "test_util.h"

static sae_synth *make_synth(int64_t d, int64_t G, double n_active, double decay,
                             uint32_t correlated, int64_t batch_size, uint64_t seed,
                             int32_t threads)
{
    sae_synth_options o = SAE_SYNTH_OPTIONS_INIT;
    o.d = d, o.n_features = G, o.n_active = n_active, o.decay = decay;
    o.correlated = correlated, o.batch_size = batch_size, o.seed = seed, o.n_threads = threads;
    o.allocator = test_allocator();
    sae_synth *s = NULL;
    assert_sae_ok(sae_synth_create(&s, &o));
    assert_non_null(s);
    return s;
}

/* n rows drawn in calls of `chunk` rows: x (n, d) with ldx = d + 3, codes (n, G), ldc = G + 1. */
static void draw(sae_synth *s, int64_t n, int64_t chunk, float *x, float *codes)
{
    int64_t d = sae_synth_d(s), G = sae_synth_n_features(s);
    for (int64_t r = 0; r < n; r += chunk) {
        int64_t m = n - r < chunk ? n - r : chunk;
        assert_sae_ok(sae_synth_sample(s, m, x + r * (d + 3), d + 3, codes + r * (G + 1), G + 1));
    }
}

/* ---- generator ------------------------------------------------------------------------------ */

/* Same seed, same bytes: whatever the split into calls and the thread count. Different seed,
 * different data. Both modes; the correlated one with batches that straddle the calls. */
static void test_determinism(void **state)
{
    (void)state;
    enum { D = 12, G = 40, N = 100 };
    /* (rows per call, threads): the first is the reference */
    const int64_t splits[][2] = {{N, 1}, {25, 1}, {N, 3}, {7, 3}};
    size_t nx = (size_t)N * (D + 3), nc = (size_t)N * (G + 1);
    float *x1 = test_calloc(nx, sizeof(float)), *x2 = test_calloc(nx, sizeof(float));
    float *c1 = test_calloc(nc, sizeof(float)), *c2 = test_calloc(nc, sizeof(float));
    for (uint32_t corr = 0; corr <= 1; corr++) {
        sae_synth *a = make_synth(D, G, 3, 0.95, corr, 30, 7, 1);
        draw(a, N, N, x1, c1);
        for (size_t k = 1; k < sizeof splits / sizeof splits[0]; k++) {
            sae_synth *b = make_synth(D, G, 3, 0.95, corr, 30, 7, (int32_t)splits[k][1]);
            draw(b, N, splits[k][0], x2, c2);
            assert_memory_equal(x1, x2, nx * sizeof(float));
            assert_memory_equal(c1, c2, nc * sizeof(float));
            assert_memory_equal(sae_synth_directions(a), sae_synth_directions(b),
                                (size_t)G * D * sizeof(float));
            assert_memory_equal(sae_synth_probabilities(a), sae_synth_probabilities(b),
                                (size_t)G * sizeof(float));
            sae_synth_free(b);
        }
        sae_synth *c = make_synth(D, G, 3, 0.95, corr, 30, 8, 1);
        draw(c, N, N, x2, c2);
        assert_memory_not_equal(x1, x2, nx * sizeof(float));
        assert_sae_ok(sae_synth_sample(c, 0, NULL, 0, NULL, 0)); /* n = 0 is a no-op */
        sae_synth_free(a);
        sae_synth_free(c);
    }
    test_free(x1), test_free(x2), test_free(c1), test_free(c2);
}

/* x = codes * directions exactly (no noise), with noise: x - codes * T has the noise's std. */
static void test_rows_are_codes_times_directions(void **state)
{
    (void)state;
    enum { D = 16, G = 30, N = 400 };
    for (int noisy = 0; noisy <= 1; noisy++) {
        sae_synth_options o = SAE_SYNTH_OPTIONS_INIT;
        o.d = D, o.n_features = G, o.n_active = 4, o.noise_std = noisy ? 0.25 : 0;
        o.allocator = test_allocator();
        sae_synth *s = NULL;
        assert_sae_ok(sae_synth_create(&s, &o));
        float *x = test_malloc(sizeof(float) * N * D), *c = test_malloc(sizeof(float) * N * G);
        assert_sae_ok(sae_synth_sample(s, N, x, D, c, G));
        const float *T = sae_synth_directions(s);
        double sq = 0, worst = 0;
        for (int r = 0; r < N; r++) {
            int active = 0;
            for (int g = 0; g < G; g++)
                active += c[r * G + g] != 0;
            assert_true(active >= 1); /* a row with nothing fired gets one feature */
            for (int i = 0; i < D; i++) {
                double e = x[r * D + i];
                for (int g = 0; g < G; g++)
                    e -= (double)c[r * G + g] * T[g * D + i];
                sq += e * e, worst = fmax(worst, fabs(e));
            }
        }
        if (noisy)
            assert_true(fabs(sqrt(sq / (N * D)) - 0.25) < 0.02);
        else
            assert_true(worst < 1e-5);
        for (int k = 0; k < N * G; k++)
            assert_true(c[k] >= 0 && c[k] < 1);
        test_free(x), test_free(c);
        sae_synth_free(s);
    }
}

/* Default generator: unit directions, probabilities in [0, 1] summing to n_active, decreasing. */
static void test_defaults(void **state)
{
    (void)state;
    sae_synth *s = NULL;
    assert_sae_ok(sae_synth_create(&s, NULL));
    assert_int_equal(sae_synth_d(s), 256);
    assert_int_equal(sae_synth_n_features(s), 512);
    const float *T = sae_synth_directions(s), *p = sae_synth_probabilities(s);
    double sum = 0;
    for (int g = 0; g < 512; g++) {
        double n2 = 0;
        for (int i = 0; i < 256; i++)
            n2 += (double)T[g * 256 + i] * T[g * 256 + i];
        assert_true(fabs(sqrt(n2) - 1) < 1e-6);
        assert_true(p[g] >= 0 && p[g] <= 1);
        if (g > 0)
            assert_true(p[g] <= p[g - 1]);
        sum += p[g];
    }
    assert_true(fabs(sum - 5) < 1e-4);
    /* decay^g proportionality: p_g / p_0 = 0.99^g where nothing is capped */
    assert_true(fabs(p[100] / p[0] - pow(0.99, 100)) < 1e-5);
    sae_synth_free(s);
    /* HoagyC's unrescaled p_g = 0.99^g * 5/512 is n_active = (5/512) sum_g 0.99^g (synth.h). */
    double hoagy = 5.0 / 512 * (1 - pow(0.99, 512)) / (1 - 0.99);
    s = make_synth(4, 512, hoagy, 0.99, 0, 0, 1, 1);
    p = sae_synth_probabilities(s);
    for (int g = 0; g < 512; g += 37)
        assert_true(fabs(p[g] - pow(0.99, g) * 5 / 512) < 1e-6 * p[0]);
    sae_synth_free(s);
    assert_null(sae_synth_directions(NULL));
    assert_null(sae_synth_probabilities(NULL));
    assert_int_equal(sae_synth_d(NULL), 0);
    sae_synth_free(NULL);
}

/* Over 20k rows feature g fires in a fraction p_g + P(empty)/G of rows (the fallback feature of
 * empty rows is uniform), within 5 binomial sigmas; rows have n_active + P(empty) features on
 * average. */
static void check_frequencies(sae_synth *s, int64_t rows, double n_active)
{
    int64_t G = sae_synth_n_features(s), d = sae_synth_d(s), chunk = 1000;
    float *x = test_malloc(sizeof(float) * (size_t)(chunk * d));
    float *c = test_malloc(sizeof(float) * (size_t)(chunk * G));
    double *fired = test_calloc((size_t)G, sizeof(double));
    double total = 0;
    for (int64_t r = 0; r < rows; r += chunk) {
        assert_sae_ok(sae_synth_sample(s, chunk, x, d, c, G));
        for (int64_t k = 0; k < chunk * G; k++)
            fired[k % G] += c[k] > 0, total += c[k] > 0;
    }
    const float *p = sae_synth_probabilities(s);
    double empty = 1;
    for (int64_t g = 0; g < G; g++)
        empty *= 1 - p[g];
    for (int64_t g = 0; g < G; g++) {
        double q = p[g] + empty / (double)G, f = fired[g] / (double)rows;
        if (fabs(f - q) > 5 * sqrt(q * (1 - q) / (double)rows) + 1e-4)
            fail_msg("feature %lld fired in %.5f of rows, expected p + P(empty)/G = %.5f",
                     (long long)g, f, q);
    }
    double mean = total / (double)rows;
    if (fabs(mean - (n_active + empty)) > 0.05)
        fail_msg("mean active count %.4f, expected %.4f", mean, n_active + empty);
    test_free(x), test_free(c), test_free(fired);
}

static void test_firing_frequencies(void **state)
{
    (void)state;
    sae_synth *s = make_synth(8, 64, 5, 0.97, 0, 0, 3, 0);
    check_frequencies(s, 20000, 5);
    sae_synth_free(s);
    /* Strong decay caps the first features at p = 1 and still sums to n_active. */
    s = make_synth(8, 16, 4, 0.5, 0, 0, 4, 0);
    const float *p = sae_synth_probabilities(s);
    assert_true(p[0] == 1.0f && p[1] == 1.0f && p[15] < p[14]);
    check_frequencies(s, 20000, 4);
    sae_synth_free(s);
}

/* Correlated: every batch's probabilities sum to n_active, batches differ, and the rows follow
 * them (batch_size 20000 so one batch covers the frequency check). */
static void test_correlated(void **state)
{
    (void)state;
    enum { G = 48, D = 8 };
    sae_synth *s = make_synth(D, G, 3, 0.98, 1, 1, 11, 0);
    float x[3 * D], p0[G];
    memcpy(p0, sae_synth_probabilities(s), sizeof p0);
    assert_sae_ok(sae_synth_sample(s, 3, x, D, NULL, 0));
    const float *p = sae_synth_probabilities(s); /* batch 2 */
    double sum = 0;
    bool differs = false;
    for (int g = 0; g < G; g++)
        sum += p[g], differs |= p[g] != p0[g], assert_true(p[g] >= 0 && p[g] <= 1);
    assert_true(differs);
    assert_true(fabs(sum - 3) < 1e-4);
    sae_synth_free(s);

    s = make_synth(D, G, 3, 0.98, 1, 20000, 12, 0);
    check_frequencies(s, 20000, 3);
    sae_synth_free(s);
}

/* ---- linear algebra of the copula, against naive twins -------------------------------------- */

/* Naive twin: cyclic Jacobi rotations until the off-diagonal part vanishes. A: (n, n), destroyed. */
static double jacobi_min_eigenvalue(double *A, int n)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int p = 0; p < n; p++)
            for (int q = 0; q < n; q++)
                *(p == q ? &diag : &off) += A[p * n + q] * A[p * n + q];
        if (off <= 1e-30 * diag)
            break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (A[p * n + q] == 0)
                    continue;
                double th = (A[q * n + q] - A[p * n + p]) / (2 * A[p * n + q]);
                double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double kp = A[k * n + p], kq = A[k * n + q];
                    A[k * n + p] = c * kp - s * kq, A[k * n + q] = s * kp + c * kq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double pk = A[p * n + k], qk = A[q * n + k];
                    A[p * n + k] = c * pk - s * qk, A[q * n + k] = s * pk + c * qk;
                }
            }
    }
    double m = A[0];
    for (int i = 1; i < n; i++)
        m = fmin(m, A[i * n + i]);
    return m;
}

static void check_min_eigenvalue(const double *S, int n, int lds, double want, double tol)
{
    sae_rng rng;
    sae_rng_init(&rng, 99, 0);
    double got;
    assert_sae_ok(sae__sym_min_eigenvalue(S, n, lds, &rng, test_allocator(), &got));
    if (fabs(got - want) > tol)
        fail_msg("n = %d: lambda_min %.12g, expected %.12g", n, got, want);
}

static void test_min_eigenvalue(void **state)
{
    (void)state;
    /* Tridiagonal Toeplitz (2, -1): lambda_k = 2 - 2 cos(k pi / (n + 1)). */
    enum { T = 30 };
    double alpha[T], beta[T - 1];
    for (int i = 0; i < T; i++)
        alpha[i] = 2;
    for (int i = 0; i < T - 1; i++)
        beta[i] = -1;
    double want = 2 - 2 * cos(M_PI / (T + 1));
    assert_true(fabs(sae__tridiag_min_eigenvalue(alpha, beta, T) - want) < 1e-13);
    assert_true(sae__tridiag_min_eigenvalue(alpha, beta, 1) == 2);

    /* HoagyC's matrices (R + R^T)/2 and a clustered spectrum, padded rows (lds = n + 2). */
    int sizes[] = {1, 2, 7, 40, 120};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int n = sizes[t], lds = n + 2;
        double *S = test_malloc(sizeof(double) * (size_t)(n * lds));
        double *A = test_malloc(sizeof(double) * (size_t)(n * n));
        sae_rng rng;
        sae_rng_init(&rng, (uint64_t)n, 1);
        for (int clustered = 0; clustered <= 1; clustered++) {
            for (int i = 0; i < n; i++)
                for (int j = 0; j <= i; j++) {
                    double v = clustered ? (i == j) * (1 + 1e-3 * (i % 3)) + 1e-4 * sae_rng_normal(&rng)
                                         : sae_rng_uniform(&rng);
                    S[i * lds + j] = S[j * lds + i] = A[i * n + j] = A[j * n + i] = v;
                }
            double want_t = jacobi_min_eigenvalue(A, n);
            check_min_eigenvalue(S, n, lds, want_t, 1e-9 * (1 + fabs(want_t)) * n);
        }
        test_free(S), test_free(A);
    }
}

static void test_cholesky(void **state)
{
    (void)state;
    enum { N = 70, LD = 73 }; /* more than two blocks of rows */
    double *B = test_malloc(sizeof(double) * N * N), *S = test_malloc(sizeof(double) * N * LD);
    double *L = test_malloc(sizeof(double) * N * LD);
    sae_rng rng;
    sae_rng_init(&rng, 5, 0);
    for (int i = 0; i < N * N; i++)
        B[i] = sae_rng_normal(&rng);
    for (int i = 0; i < N; i++) /* S = B B^T + I, padding poisoned */
        for (int j = 0; j < LD; j++) {
            double v = j < N ? (i == j) : NAN;
            for (int k = 0; k < N && j < N; k++)
                v += B[i * N + k] * B[j * N + k];
            S[i * LD + j] = L[i * LD + j] = v;
        }
    assert_true(sae__cholesky_lower(L, N, LD));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            if (j > i) { /* strict upper triangle untouched */
                assert_true(L[i * LD + j] == S[i * LD + j]);
                continue;
            }
            double v = 0;
            for (int k = 0; k <= j; k++)
                v += L[i * LD + k] * L[j * LD + k];
            assert_true(fabs(v - S[i * LD + j]) < 1e-10 * (1 + fabs(S[i * LD + j])));
        }
    double indefinite[4] = {1, 2, 2, 1}; /* eigenvalues 3 and -1 */
    assert_false(sae__cholesky_lower(indefinite, 2, 2));
    test_free(B), test_free(S), test_free(L);
}

/* Water filling against its definition: sum = m, caps at 1 for the largest weights, the rest
 * proportional to w. */
static void test_fill_probabilities(void **state)
{
    (void)state;
    double w[6] = {0.5, 8, 0, 4, 1, 2}, scratch[12];
    float p[6];
    assert_sae_ok(sae__fill_probabilities(w, 6, 3.5, scratch, p));
    /* 8 and 4 capped: c = 1.5 / (2 + 1 + 0.5) */
    double c = 1.5 / 3.5;
    float want[6] = {(float)(0.5 * c), 1, 0, 1, (float)c, (float)(2 * c)};
    assert_close_f32(p, want, 6, 1e-7, 0, "p");
    assert_sae_ok(sae__fill_probabilities(w, 6, 5, scratch, p)); /* every positive weight at 1 */
    float all[6] = {1, 1, 0, 1, 1, 1};
    assert_close_f32(p, all, 6, 0, 0, "p (m = positives)");
    assert_int_equal(sae__fill_probabilities(w, 6, 5.5, scratch, p), SAE_ENUMERIC);
    assert_sae_ok(sae__fill_probabilities(w, 6, 0.5, scratch, p)); /* nothing capped */
    assert_close_f32(p, (float[6]){0.5f / 31, 8.0f / 31, 0, 4.0f / 31, 1.0f / 31, 2.0f / 31}, 6,
                     1e-7, 0, "p (uncapped)");
}

/* ---- metrics -------------------------------------------------------------------------------- */

/* Two-dimensional hand examples: MMCS uses signed cosines, and zero rows give 0. */
static void test_mmcs_hand(void **state)
{
    (void)state;
    const double th = 0.5235987755982988; /* 30 degrees */
    float A[3 * 2] = {1, 0, 0, 1, 0, 0}, B[1 * 2] = {(float)cos(th), (float)sin(th)};
    double ab, ba;
    assert_sae_ok(sae_mmcs(A, 2, 2, B, 1, 2, 2, &ab, &ba));
    assert_true(fabs(ab - (cos(th) + sin(th)) / 2) < 1e-6);
    assert_true(fabs(ba - cos(th)) < 1e-6);
    assert_sae_ok(sae_mmcs(A, 3, 2, B, 1, 2, 2, &ab, NULL)); /* zero row: cos 0 */
    assert_true(fabs(ab - (cos(th) + sin(th)) / 3) < 1e-6);
    float minus_e1[2] = {-3, 0};
    assert_sae_ok(sae_mmcs(A, 2, 2, minus_e1, 1, 2, 2, &ab, &ba));
    assert_true(fabs(ab - (-1.0 + 0.0) / 2) < 1e-6);
    assert_true(fabs(ba - 0.0) < 1e-6);
}

/* Apply a random orthogonal Q (a product of Householder reflections) to rows: x <- x Q. */
static void rotate_rows(float *X, int n, int ld, int d, uint64_t seed)
{
    sae_rng rng;
    sae_rng_init(&rng, seed, 0);
    for (int h = 0; h < d; h++) {
        double v[64], n2 = 0;
        for (int i = 0; i < d; i++)
            v[i] = sae_rng_normal(&rng), n2 += v[i] * v[i];
        for (int r = 0; r < n; r++) {
            double t = 0;
            for (int i = 0; i < d; i++)
                t += X[r * ld + i] * v[i];
            for (int i = 0; i < d; i++)
                X[r * ld + i] -= (float)(2 * t / n2 * v[i]);
        }
    }
}

/* A = e_1..e_k; B_g = cos(phi) e_g + sin(phi) e_{k+g}, so cos(a_i, b_j) = cos(phi) delta_ij:
 * MMCS both ways and MCC are cos(phi), before and after a common random rotation. A set with
 * itself scores 1. */
static void test_mmcs_and_mcc_closed_form(void **state)
{
    (void)state;
    enum { K = 7, DIM = 20, LD = 23 };
    const double phi = 0.6;
    float A[K * LD], B[K * LD];
    for (int r = 0; r < K * LD; r++)
        A[r] = B[r] = 0;
    for (int g = 0; g < K; g++) {
        A[g * LD + g] = 1;
        B[g * LD + g] = (float)(2 * cos(phi)), B[g * LD + K + g] = (float)(2 * sin(phi));
    }
    for (int rotated = 0; rotated <= 1; rotated++) {
        if (rotated)
            rotate_rows(A, K, LD, DIM, 1), rotate_rows(B, K, LD, DIM, 1);
        double ab, ba, mcc;
        int32_t match[K];
        assert_sae_ok(sae_mmcs(A, K, LD, B, K, LD, DIM, &ab, &ba));
        assert_true(fabs(ab - cos(phi)) < 1e-6 && fabs(ba - cos(phi)) < 1e-6);
        assert_sae_ok(sae_mcc(A, K, LD, B, K, LD, DIM, &mcc, match));
        assert_true(fabs(mcc - cos(phi)) < 1e-6);
        for (int g = 0; g < K; g++)
            assert_int_equal(match[g], g);
        assert_sae_ok(sae_mmcs(B, K, LD, B, K, LD, DIM, &ab, &ba));
        assert_true(fabs(ab - 1) < 1e-6 && fabs(ba - 1) < 1e-6);
    }
}

/* Largest sum_i M[i][c(i)] over injective c: rows (n) -> columns (m), n <= m, by recursion. */
static double brute_best(const double *M, int n, int m, int i, unsigned used)
{
    if (i == n)
        return 0;
    double best = -1;
    for (int j = 0; j < m; j++)
        if (!(used >> j & 1))
            best = fmax(best, M[i * m + j] + brute_best(M, n, m, i + 1, used | 1u << j));
    return best;
}

/* |cos| of rows a, b (d) in double. */
static double abs_cos(const float *a, const float *b, int d)
{
    double ab = 0, aa = 0, bb = 0;
    for (int k = 0; k < d; k++)
        ab += (double)a[k] * b[k], aa += (double)a[k] * a[k], bb += (double)b[k] * b[k];
    return fabs(ab) / sqrt(aa * bb);
}

/* MCC and the assignment kernel equal brute force over every matching, all shapes up to 6 x 6. */
static void test_mcc_brute_force(void **state)
{
    (void)state;
    enum { DIM = 5, LD = 7 };
    uint64_t seed = 100;
    for (int na = 1; na <= 6; na++)
        for (int nb = 1; nb <= 6; nb++) {
            float A[6 * LD], B[6 * LD];
            fill_normal(A, 6 * LD, seed++, 1.0f);
            fill_normal(B, 6 * LD, seed++, 1.0f);
            int n = na < nb ? na : nb, m = na < nb ? nb : na;
            double M[36];
            float Mf[36];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < m; j++) {
                    const float *r = na <= nb ? A + i * LD : B + i * LD;
                    const float *c = na <= nb ? B + j * LD : A + j * LD;
                    M[i * m + j] = abs_cos(r, c, DIM);
                    Mf[i * m + j] = (float)M[i * m + j];
                }
            double best = brute_best(M, n, m, 0, 0) / n, mcc;
            int32_t match[6], cols[6];
            assert_sae_ok(sae_mcc(A, na, LD, B, nb, LD, DIM, &mcc, match));
            if (fabs(mcc - best) > 1e-6)
                fail_msg("%d x %d: MCC %.9f, brute force %.9f", na, nb, mcc, best);
            /* The reported matching achieves it and is one-to-one. */
            double sum = 0;
            unsigned seen = 0;
            int matched = 0;
            for (int i = 0; i < na; i++) {
                if (match[i] < 0)
                    continue;
                assert_true(match[i] < nb && !(seen >> match[i] & 1));
                seen |= 1u << match[i], matched++;
                sum += abs_cos(A + i * LD, B + match[i] * LD, DIM);
            }
            assert_int_equal(matched, n);
            assert_true(fabs(sum / n - best) < 1e-6);
            /* The kernel alone on the float matrix. */
            assert_sae_ok(sae__assign_max(Mf, n, m, m, cols, test_allocator()));
            double ksum = 0;
            for (int i = 0; i < n; i++)
                ksum += Mf[i * m + cols[i]];
            assert_true(fabs(ksum / n - best) < 1e-6);
        }
}

/* B is A with its rows permuted, rescaled and some negated, plus extra rows: MCC = 1 with the
 * right matching, both ways round (extra rows of the larger set stay unmatched). */
static void test_mcc_permuted_copy(void **state)
{
    (void)state;
    enum { NA = 40, EXTRA = 9, DIM = 64 };
    float *A = test_malloc(sizeof(float) * NA * DIM);
    float *B = test_malloc(sizeof(float) * (NA + EXTRA) * DIM);
    fill_normal(A, NA * DIM, 1, 1.0f);
    fill_normal(B, (NA + EXTRA) * DIM, 2, 1.0f); /* rows >= NA stay random */
    int perm[NA];
    for (int i = 0; i < NA; i++)
        perm[i] = i;
    sae_rng rng;
    sae_rng_init(&rng, 3, 0);
    for (int i = NA - 1; i > 0; i--) {
        int j = (int)sae_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int j = 0; j < NA; j++) /* B_j = +-(1 + j) A_perm[j] */
        for (int k = 0; k < DIM; k++)
            B[j * DIM + k] = (j % 3 ? 1.0f : -1.0f) * (float)(1 + j) * A[perm[j] * DIM + k];
    double mcc;
    int32_t match_a[NA], match_b[NA + EXTRA];
    assert_sae_ok(sae_mcc(A, NA, DIM, B, NA + EXTRA, DIM, DIM, &mcc, match_a));
    assert_true(fabs(mcc - 1) < 1e-6);
    for (int j = 0; j < NA; j++)
        assert_int_equal(match_a[perm[j]], j);
    assert_sae_ok(sae_mcc(B, NA + EXTRA, DIM, A, NA, DIM, DIM, &mcc, match_b));
    assert_true(fabs(mcc - 1) < 1e-6);
    for (int j = 0; j < NA + EXTRA; j++)
        assert_int_equal(match_b[j], j < NA ? perm[j] : -1);
    test_free(A), test_free(B);
}

/* Rows (3,4) -> (0,2.5): 0.5; (1,0) -> (2,0): 2; a zero row of x is skipped. Mean 1.25. */
static void test_shrinkage_hand(void **state)
{
    (void)state;
    float x[3 * 3] = {3, 4, NAN, 1, 0, NAN, 0, 0, NAN};
    float xh[3 * 4] = {0, 2.5f, NAN, NAN, 2, 0, NAN, NAN, 7, 7, NAN, NAN};
    double s;
    assert_sae_ok(sae_shrinkage(x, 3, xh, 4, 3, 2, &s));
    assert_true(fabs(s - 1.25) < 1e-12);
    float zero[2] = {0, 0};
    assert_int_equal(sae_shrinkage(zero, 2, xh, 4, 1, 2, &s), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "zero"));
}

/* ---- errors --------------------------------------------------------------------------------- */

static sae_status create_with(sae_synth_options o)
{
    o.allocator = test_allocator();
    sae_synth *s = (sae_synth *)&o; /* must be reset to NULL on failure */
    sae_status st = sae_synth_create(&s, &o);
    if (st == SAE_OK)
        sae_synth_free(s);
    else
        assert_null(s);
    return st;
}

static void test_option_errors(void **state)
{
    (void)state;
    sae_synth_options o = SAE_SYNTH_OPTIONS_INIT, b;
    assert_int_equal(sae_synth_create(NULL, &o), SAE_EINVAL);
    b = o, b.d = -1;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.n_features = -3;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.n_active = -1;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.n_features = 4, b.n_active = 4.5;
    assert_int_equal(create_with(b), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "n_active"));
    b = o, b.decay = 1.5;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.decay = -0.5;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.decay = NAN;
    assert_int_equal(create_with(b), SAE_ENUMERIC);
    b = o, b.noise_std = INFINITY;
    assert_int_equal(create_with(b), SAE_ENUMERIC);
    b = o, b.noise_std = -1;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.batch_size = -1;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.correlated = 2;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.reserved = 1;
    assert_int_equal(create_with(b), SAE_EINVAL);
    b = o, b.struct_size = 0;
    assert_int_equal(create_with(b), SAE_EINVAL);
    /* decay^g underflows to 0 from g = 2: only 2 positive weights for n_active = 5 */
    b = o, b.n_features = 8, b.decay = 1e-200;
    assert_int_equal(create_with(b), SAE_ENUMERIC);
    assert_non_null(strstr(sae_last_error(), "decay"));
    b.correlated = 1;
    assert_int_equal(create_with(b), SAE_ENUMERIC);
    b = o, b.n_features = 6, b.n_active = 6, b.decay = 1; /* n_active = G is allowed */
    assert_int_equal(create_with(b), SAE_OK);
}

static void test_call_errors(void **state)
{
    (void)state;
    sae_synth *s = make_synth(4, 6, 2, 0.9, 0, 0, 1, 1);
    float x[8], c[12];
    assert_int_equal(sae_synth_sample(NULL, 1, x, 4, NULL, 0), SAE_EINVAL);
    assert_int_equal(sae_synth_sample(s, -1, x, 4, NULL, 0), SAE_EINVAL);
    assert_int_equal(sae_synth_sample(s, 1, NULL, 4, NULL, 0), SAE_EINVAL);
    assert_int_equal(sae_synth_sample(s, 2, x, 3, NULL, 0), SAE_ESHAPE);
    assert_non_null(strstr(sae_last_error(), "leading dimension of x"));
    assert_int_equal(sae_synth_sample(s, 2, x, 4, c, 5), SAE_ESHAPE);
    sae_synth_free(s);

    float A[4] = {1, 0, 0, 1}, bad[4] = {1, NAN, 0, 1};
    double v;
    int32_t m[2];
    assert_int_equal(sae_mmcs(NULL, 2, 2, A, 2, 2, 2, &v, &v), SAE_EINVAL);
    assert_int_equal(sae_mmcs(A, 0, 2, A, 2, 2, 2, &v, &v), SAE_EINVAL);
    assert_int_equal(sae_mmcs(A, 2, 1, A, 2, 2, 2, &v, &v), SAE_ESHAPE);
    assert_int_equal(sae_mmcs(A, 2, 2, bad, 2, 2, 2, &v, &v), SAE_ENUMERIC);
    assert_non_null(strstr(sae_last_error(), "B[0, 1]"));
    assert_int_equal(sae_mcc(A, 2, 2, A, 2, 2, 0, &v, m), SAE_EINVAL);
    assert_int_equal(sae_mcc(A, 2, 2, A, 2, 2, 2, NULL, m), SAE_EINVAL);
    assert_int_equal(sae_mcc(bad, 2, 2, A, 2, 2, 2, &v, m), SAE_ENUMERIC);
    assert_int_equal(sae_shrinkage(A, 2, bad, 2, 2, 2, &v), SAE_ENUMERIC);
    assert_int_equal(sae_shrinkage(A, 2, A, 1, 2, 2, &v), SAE_ESHAPE);
    assert_int_equal(sae_shrinkage(A, 2, A, 2, 2, 2, NULL), SAE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_rows_are_codes_times_directions),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_firing_frequencies),
        cmocka_unit_test(test_correlated),
        cmocka_unit_test(test_min_eigenvalue),
        cmocka_unit_test(test_cholesky),
        cmocka_unit_test(test_fill_probabilities),
        cmocka_unit_test(test_mmcs_hand),
        cmocka_unit_test(test_mmcs_and_mcc_closed_form),
        cmocka_unit_test(test_mcc_brute_force),
        cmocka_unit_test(test_mcc_permuted_copy),
        cmocka_unit_test(test_shrinkage_hand),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_call_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
