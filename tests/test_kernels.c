/* test_kernels.c: every fast kernel against its naive twin on random shapes (odd sizes,
 * leading dimensions larger than the row). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test_util.h"

static void test_topk_matches_reference(void **state)
{
    (void)state;
    sae_rng rng;
    sae_rng_init(&rng, 7, 0);
    const int64_t sizes[] = {1, 2, 15, 16, 17, 33, 100, 257, 1000, 4099};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        float *v = test_malloc(sizeof(float) * (size_t)n);
        for (int trial = 0; trial < 6; trial++) {
            for (int64_t j = 0; j < n; j++) /* trial 0..2: many ties; 3..5: distinct values */
                v[j] = trial < 3 ? (float)(sae_rng_u32(&rng) % 7) : sae_rng_normal(&rng);
            int64_t ks[] = {1, 2, 5, 32, 40, n <= 257 ? n : 200};
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                int64_t k = ks[ki];
                if (k > n)
                    continue;
                int32_t *i1 = test_malloc(sizeof(int32_t) * (size_t)k);
                int32_t *i2 = test_malloc(sizeof(int32_t) * (size_t)k);
                float *v1 = test_malloc(sizeof(float) * (size_t)k);
                float *v2 = test_malloc(sizeof(float) * (size_t)k);
                void *scratch = test_malloc(SAE_TOPK_SCRATCH_BYTES(k));
                sae__topk_select(v, n, k, i1, v1, scratch);
                sae__topk_select_ref(v, n, k, i2, v2);
                for (int64_t a = 0; a < k; a++) {
                    if (i1[a] != i2[a] || v1[a] != v2[a])
                        fail_msg("n=%lld k=%lld trial %d: entry %lld is (%d, %g), reference "
                                 "(%d, %g)", (long long)n, (long long)k, trial, (long long)a,
                                 i1[a], v1[a], i2[a], v2[a]);
                    if (a > 0)
                        assert_true(i1[a] > i1[a - 1]);
                }
                test_free(i1), test_free(i2), test_free(v1), test_free(v2), test_free(scratch);
            }
        }
        test_free(v);
    }
}

static void test_stream_gemm_matches_reference(void **state)
{
    (void)state;
    const int64_t ms[] = {1, 2, 3, 16}, ns[] = {1, 7, 255, 256, 257, 1000}, ks[] = {1, 5, 64, 77};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t c = 0; c < 4; c++) {
                int64_t m = ms[a], n = ns[b], k = ks[c];
                int64_t lda = k + 3, ldb = n + 5, ldc = n + 2;
                float *A = test_malloc(sizeof(float) * (size_t)(m * lda));
                float *B = test_malloc(sizeof(float) * (size_t)(k * ldb));
                float *C1 = test_malloc(sizeof(float) * (size_t)(m * ldc));
                float *C2 = test_malloc(sizeof(float) * (size_t)(m * ldc));
                fill_normal(A, m * lda, 1 + a, 1.0f);
                fill_normal(B, k * ldb, 2 + b, 1.0f);
                for (int64_t i = 0; i < m * lda; i += 3) /* zeros exercise the row skipping */
                    A[i] = 0.0f;
                sae__sgemm_stream(m, n, k, A, lda, B, ldb, C1, ldc, 2);
                sae__sgemm_ref(m, n, k, A, lda, B, ldb, C2, ldc);
                for (int64_t r = 0; r < m; r++)
                    assert_close_f32(C1 + r * ldc, C2 + r * ldc, n, 1e-4, 1e-4, "stream gemm");
                test_free(A), test_free(B), test_free(C1), test_free(C2);
            }
}

static void test_blas_wrapper_matches_reference(void **state)
{
    (void)state;
    int64_t m = 37, n = 53, k = 29, lda = 31, ldb = 60, ldc = 55;
    float *A = test_malloc(sizeof(float) * (size_t)(m * lda));
    float *B = test_malloc(sizeof(float) * (size_t)(k * ldb));
    float *C1 = test_malloc(sizeof(float) * (size_t)(m * ldc));
    float *C2 = test_malloc(sizeof(float) * (size_t)(m * ldc));
    fill_normal(A, m * lda, 3, 1.0f);
    fill_normal(B, k * ldb, 4, 1.0f);
    assert_sae_ok(sae__sgemm(false, false, m, n, k, 1.0f, A, lda, B, ldb, 0.0f, C1, ldc, 2));
    sae__sgemm_ref(m, n, k, A, lda, B, ldb, C2, ldc);
    for (int64_t r = 0; r < m; r++)
        assert_close_f32(C1 + r * ldc, C2 + r * ldc, n, 1e-4, 1e-4, "sgemm");
    assert_non_null(sae_blas_kernels());
    test_free(A), test_free(B), test_free(C1), test_free(C2);
}

/* What the tiled product's epilogue saw: each element's visits, and its value at the visit. */
typedef struct tile_log {
    const float *C;
    int64_t ldc;
    int *visits;   /* (m, n) */
    float *seen;   /* (m, n) */
    int64_t n;
} tile_log;

static void log_tile(void *user, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    tile_log *l = user;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) { /* tiles are disjoint: no two threads meet here */
            l->visits[r * l->n + c]++;
            l->seen[r * l->n + c] = l->C[r * l->ldc + c];
        }
}

/* C = alpha op(A) op(B) + beta C in tiles against the naive product of explicit transposes;
 * every element reaches the epilogue once, with its final value. */
static void test_tiled_gemm_matches_reference(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 5}, {50, 17, 64}, {97, 130, 9}};
    const int64_t tiles[][2] = {{0, 0}, {1, 1}, {16, 0}, {0, 32}, {13, 7}, {1000, 1000}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int trans = 0; trans < 4; trans++)
            for (size_t ti = 0; ti < sizeof tiles / sizeof tiles[0]; ti++) {
                const int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                const bool ta = trans & 1, tb = trans & 2;
                /* stored A: (m, k) or (k, m) with 3 spare columns; B likewise */
                const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                float *A = test_malloc(sizeof(float) * (size_t)((ta ? k : m) * lda));
                float *B = test_malloc(sizeof(float) * (size_t)((tb ? n : k) * ldb));
                float *C = test_malloc(sizeof(float) * (size_t)(m * ldc));
                float *Ap = test_malloc(sizeof(float) * (size_t)(m * k));
                float *Bp = test_malloc(sizeof(float) * (size_t)(k * n));
                float *want = test_malloc(sizeof(float) * (size_t)(m * n));
                fill_normal(A, (ta ? k : m) * lda, 1 + si, 1.0f);
                fill_normal(B, (tb ? n : k) * ldb, 2 + si, 1.0f);
                fill_normal(C, m * ldc, 3 + si, 1.0f);
                for (int64_t r = 0; r < m; r++)
                    for (int64_t i = 0; i < k; i++)
                        Ap[r * k + i] = ta ? A[i * lda + r] : A[r * lda + i];
                for (int64_t i = 0; i < k; i++)
                    for (int64_t c = 0; c < n; c++)
                        Bp[i * n + c] = tb ? B[c * ldb + i] : B[i * ldb + c];
                sae__sgemm_ref(m, n, k, Ap, k, Bp, n, want, n);
                for (int64_t r = 0; r < m; r++) /* alpha 0.5, beta -2 */
                    for (int64_t c = 0; c < n; c++)
                        want[r * n + c] = 0.5f * want[r * n + c] - 2.0f * C[r * ldc + c];
                tile_log log = {C, ldc, test_calloc((size_t)(m * n), sizeof(int)),
                                test_malloc(sizeof(float) * (size_t)(m * n)), n};
                assert_sae_ok(sae__sgemm_tiles(ta, tb, m, n, k, 0.5f, A, lda, B, ldb, -2.0f, C,
                                               ldc, tiles[ti][0], tiles[ti][1], 2, log_tile,
                                               &log));
                for (int64_t r = 0; r < m; r++) {
                    assert_close_f32(C + r * ldc, want + r * n, n, 1e-4, 1e-4, "tiled gemm");
                    assert_memory_equal(C + r * ldc, log.seen + r * n, sizeof(float) * (size_t)n);
                    for (int64_t c = 0; c < n; c++)
                        assert_int_equal(log.visits[r * n + c], 1);
                }
                test_free(A), test_free(B), test_free(C), test_free(Ap), test_free(Bp);
                test_free(want), test_free(log.visits), test_free(log.seen);
            }
}

/* One random parameter set per architecture and convention; the fast epilogue must equal the
 * plain formulas. */
static void test_activation_matches_reference(void **state)
{
    (void)state;
    const int64_t F = 301, k = 9;
    float *t = test_malloc(sizeof(float) * F), *t2 = test_malloc(sizeof(float) * F);
    float *vecs = test_malloc(sizeof(float) * F * 6);
    fill_normal(vecs, F * 6, 11, 0.5f);
    float *b_enc = vecs, *thr = vecs + F, *resc = vecs + 2 * F, *bg = vecs + 3 * F,
          *bm = vecs + 4 * F, *er = vecs + 5 * F;
    for (int64_t j = 0; j < F; j++)
        resc[j] = fabsf(resc[j]) + 0.5f, er[j] = expf(er[j]);
    float pre1[301], pre2[301], f1[301], f2[301];
    int32_t idx[9];
    float val[9];
    char scratch[SAE_TOPK_SCRATCH_BYTES(9)];
    for (int arch = SAE_ARCH_STANDARD; arch <= SAE_ARCH_GATED; arch++)
        for (int variant = 0; variant < 4; variant++) {
            sae__act_params p = {.arch = arch, .F = F, .k = k};
            p.relu_before_topk = variant & 1;
            p.rescale = (variant & 2) ? resc : NULL;
            p.b_enc = arch == SAE_ARCH_GATED ? NULL : b_enc;
            p.threshold = arch == SAE_ARCH_JUMPRELU || arch == SAE_ARCH_BATCHTOPK ? thr : NULL;
            if (arch == SAE_ARCH_GATED)
                p.b_gate = bg, p.b_mag = bm, p.exp_r_mag = er;
            fill_normal(t, F, 100 + (uint64_t)(arch * 4 + variant), 1.0f);
            memcpy(t2, t, sizeof(float) * F);
            sae__act_row_ref(&p, t2, pre2, f2);
            sae__act_row(&p, t, pre1, f1, idx, val, scratch);
            assert_close_f32(pre1, pre2, F, 1e-6, 1e-6, "pre");
            assert_close_f32(f1, f2, F, 1e-6, 1e-6, "codes");
        }
    test_free(t), test_free(t2), test_free(vecs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_matches_reference),
        cmocka_unit_test(test_stream_gemm_matches_reference),
        cmocka_unit_test(test_blas_wrapper_matches_reference),
        cmocka_unit_test(test_tiled_gemm_matches_reference),
        cmocka_unit_test(test_activation_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
