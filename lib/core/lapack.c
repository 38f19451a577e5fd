/* lapack.c: the one entry point to LAPACKE (internal.h), row-major in, workspace from libsae's
 * allocator (the LAPACKE _work variants), sizes narrowed to lapack_int here and nowhere else.
 *
 * A row-major (m, n) matrix with row stride lda is the column-major (n, m) matrix A^T with the
 * same stride, so the wrappers call LAPACK column-major on the transpose and no copy is made
 * (the high-level row-major LAPACKE entry points would transpose into malloc'd buffers).
 * LAPACK's own BLAS calls go to the system libblas.so.3 with its own threading. */
#include <float.h>
#include <math.h>

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
