/* lapack.c: the one entry point to LAPACKE (ARCHITECTURE.md, "one LAPACK entry point").
 *
 * Minimum-norm least squares by the SVD (dgelsd), in double: the one-hot designs of supervised
 * dictionaries are rank-deficient (each attribute's columns sum to the bias column), which QR
 * (gels) cannot solve, while the minimum-norm solution is unique. Narrowing int64_t sizes to
 * lapack_int happens here, with overflow checks. */
#include <float.h>
#include <limits.h>
#include <string.h>

#include <lapacke.h>

#include "../internal.h"

/* Does v fit a lapack_int? */
static bool fits(int64_t v)
{
    return v >= 0 && v <= (int64_t)INT_MAX;
}

sae_status sae__lstsq_min_norm(double *X, int64_t ldx, const double *A, int64_t lda,
                               const double *B, int64_t ldb, int64_t m, int64_t n, int64_t k,
                               const sae_allocator *allocator, int64_t *out_rank)
{
    /* dgelsd overwrites A (m, n) and takes B as (max(m, n), k): work on copies. */
    const int64_t rows = m > n ? m : n;
    if (!fits(m) || !fits(n) || !fits(k) || !fits(rows) || (rows > 0 && n > INT_MAX / rows) ||
        (k > 0 && rows > INT_MAX / k))
        return sae__fail(SAE_ESHAPE, "least squares of (%lld, %lld) by %lld right-hand sides is "
                         "too large for LAPACK", (long long)m, (long long)n, (long long)k);
    double *a = sae__alloc_array(allocator, (size_t)(m * n > 0 ? m * n : 1), sizeof(double));
    double *b = sae__alloc_array(allocator, (size_t)(rows * k > 0 ? rows * k : 1), sizeof(double));
    double *sv = sae__alloc_array(allocator, (size_t)(m < n ? (m > 0 ? m : 1) : (n > 0 ? n : 1)),
                                  sizeof(double));
    sae_status s = SAE_OK;
    if (!a || !b || !sv) {
        s = SAE_ENOMEM;
        goto done;
    }
    for (int64_t i = 0; i < m; i++)
        memcpy(a + i * n, A + i * lda, (size_t)n * sizeof(double));
    memset(b, 0, (size_t)(rows * k) * sizeof(double));
    for (int64_t i = 0; i < m; i++)
        memcpy(b + i * k, B + i * ldb, (size_t)k * sizeof(double));
    /* rcond: singular values below rcond * s_max count as zero (the rank deficiency of a design
     * is exact, its singular values are round-off). */
    lapack_int rank = 0;
    lapack_int info = LAPACKE_dgelsd(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)n,
                                     (lapack_int)k, a, (lapack_int)(n > 0 ? n : 1), b,
                                     (lapack_int)(k > 0 ? k : 1), sv, 1e3 * DBL_EPSILON * rows,
                                     &rank);
    if (info != 0) {
        s = sae__fail(info > 0 ? SAE_ENUMERIC : SAE_EINVAL,
                      "LAPACKE_dgelsd failed (info %d): %s", (int)info,
                      info > 0 ? "the SVD did not converge" : "an argument was rejected");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        memcpy(X + i * ldx, b + i * k, (size_t)k * sizeof(double));
    if (out_rank)
        *out_rank = rank;
done:
    sae__free(allocator, a);
    sae__free(allocator, b);
    sae__free(allocator, sv);
    return s;
}
