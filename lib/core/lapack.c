/* lapack.c: the one entry point to LAPACKE (internal.h), row-major in, sizes narrowed to
 * lapack_int here and nowhere else: the SVD and symmetric eigenvalues (float, workspace from
 * libsae's allocator through the LAPACKE _work variants) of the orthogonality tools, and the
 * minimum-norm least squares (double) of supervised dictionaries.
 *
 * A row-major (m, n) matrix with row stride lda is the column-major (n, m) matrix A^T with the
 * same stride, so the wrappers call LAPACK column-major on the transpose and no copy is made
 * (the high-level row-major LAPACKE entry points would transpose into malloc'd buffers).
 * LAPACK's own BLAS calls go to the system libblas.so.3 with its own threading. */
#include <float.h>
#include <math.h>
#include <string.h>

#include <lapacke.h>

#include "../internal.h"

/* Whether every value fits lapack_int (32-bit unless LAPACKE was built ILP64). */
static bool fits(const int64_t *v, int count, const char *what)
{
    for (int i = 0; i < count; i++)
        if (v[i] < 0 || v[i] > (int64_t)(sizeof(lapack_int) < 8 ? INT32_MAX : INT64_MAX)) {
            sae__fail(SAE_EUNSUPPORTED, "%s: size %lld exceeds LAPACK's integer", what,
                      (long long)v[i]);
            return false;
        }
    return true;
}

/* A workspace size LAPACK reported as a float, rounded up: the float can be a little below the
 * integer it stands for when that is large. */
static int64_t work_size(float query)
{
    return (int64_t)ceil((double)query * (1.0 + 2 * FLT_EPSILON)) + 1;
}

sae_status sae__sgesdd(float *s, float *U, float *Vt, float *A, int64_t m, int64_t n,
                       int64_t lda)
{
    const int64_t r = m < n ? m : n, sizes[] = {m, n, lda, 8 * r};
    if (!fits(sizes, 4, "sgesdd"))
        return SAE_EUNSUPPORTED;
    if (r == 0)
        return SAE_OK;
    /* A^T (n, m) column-major = U_c S VT_c: U_c (n, r) is V (so Vt row-major, stride n) and
     * VT_c (r, m) is U^T (so U row-major, stride r). */
    const lapack_int ln = (lapack_int)n, lm = (lapack_int)m, lr = (lapack_int)r;
    float query = 0;
    lapack_int info = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'S', ln, lm, A, (lapack_int)lda, s,
                                          Vt, ln, U, lr, &query, -1, NULL);
    if (info != 0)
        return sae__fail(SAE_ENUMERIC, "sgesdd workspace query failed (info %d)", (int)info);
    int64_t lwork = work_size(query), lw[] = {lwork};
    if (!fits(lw, 1, "sgesdd workspace"))
        return SAE_EUNSUPPORTED;
    float *work = sae__alloc_array(NULL, (size_t)lwork, sizeof(float));
    lapack_int *iwork = sae__alloc_array(NULL, (size_t)(8 * r), sizeof(lapack_int));
    sae_status st = SAE_ENOMEM;
    if (work && iwork) {
        info = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'S', ln, lm, A, (lapack_int)lda, s, Vt, ln,
                                   U, lr, work, (lapack_int)lwork, iwork);
        st = info == 0 ? SAE_OK
                       : sae__fail(SAE_ENUMERIC, "the SVD of a (%lld, %lld) matrix did not "
                                   "converge (sgesdd info %d)", (long long)m, (long long)n,
                                   (int)info);
    }
    sae__free(NULL, work);
    sae__free(NULL, iwork);
    return st;
}

sae_status sae__ssyevd_values(float *w, float *A, int64_t n, int64_t lda)
{
    const int64_t sizes[] = {n, lda};
    if (!fits(sizes, 2, "ssyevd"))
        return SAE_EUNSUPPORTED;
    if (n == 0)
        return SAE_OK;
    /* The row-major lower triangle is the column-major upper one. */
    float query = 0;
    lapack_int iquery = 0;
    lapack_int info = LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'N', 'U', (lapack_int)n, A,
                                          (lapack_int)lda, w, &query, -1, &iquery, -1);
    if (info != 0)
        return sae__fail(SAE_ENUMERIC, "ssyevd workspace query failed (info %d)", (int)info);
    int64_t lwork = work_size(query), sz[] = {lwork, (int64_t)iquery};
    if (!fits(sz, 2, "ssyevd workspace"))
        return SAE_EUNSUPPORTED;
    float *work = sae__alloc_array(NULL, (size_t)lwork, sizeof(float));
    lapack_int *iwork = sae__alloc_array(NULL, (size_t)(iquery > 0 ? iquery : 1),
                                         sizeof(lapack_int));
    sae_status st = SAE_ENOMEM;
    if (work && iwork) {
        info = LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'N', 'U', (lapack_int)n, A, (lapack_int)lda,
                                   w, work, (lapack_int)lwork, iwork, iquery > 0 ? iquery : 1);
        st = info == 0 ? SAE_OK
                       : sae__fail(SAE_ENUMERIC, "the eigenvalues of a (%lld, %lld) symmetric "
                                   "matrix did not converge (ssyevd info %d)", (long long)n,
                                   (long long)n, (int)info);
    }
    sae__free(NULL, work);
    sae__free(NULL, iwork);
    return st;
}

/* Minimum-norm least squares by the SVD (dgelsd), in double: the one-hot designs of supervised
 * dictionaries are rank-deficient (each attribute's columns sum to the bias column), which QR
 * (gels) cannot solve, while the minimum-norm solution is unique. */
sae_status sae__lstsq_min_norm(double *X, int64_t ldx, const double *A, int64_t lda,
                               const double *B, int64_t ldb, int64_t m, int64_t n, int64_t k,
                               const sae_allocator *allocator, int64_t *out_rank)
{
    /* dgelsd overwrites A (m, n) and takes B as (max(m, n), k): work on copies. */
    const int64_t rows = m > n ? m : n, sizes[] = {m, n, k, rows * (n > k ? n : k)};
    if (!fits(sizes, 4, "least squares"))
        return SAE_EUNSUPPORTED;
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
