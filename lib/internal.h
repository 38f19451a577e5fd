/*
 * internal.h: what the modules of libsae share and never export.
 *
 * Naming: cross-file internals are sae__name (two underscores), hidden by -fvisibility=hidden
 * and the version script lib/sae.map.
 */
#ifndef SAE_INTERNAL_H
#define SAE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sae/sae.h"

/* ---- errors (lib/core/status.c) -------------------------------------------------------- */

/* Set this thread's last-error message (printf-style) and return `status`, so that a failure
 * reads `return sae__fail(SAE_ESHAPE, "W_dec has shape [%lld], expected ...", ...);`. */
sae_status sae__fail(sae_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current message with "prefix: " (e.g. a file name) and return `status`. */
sae_status sae__fail_prefix(sae_status status, const char *prefix);

/* ---- memory (lib/core/alloc.c) --------------------------------------------------------- */

#define SAE_ALIGN 64

/* The allocator to use: `a`, or the default one when `a` is NULL. */
const sae_allocator *sae__allocator(const sae_allocator *a);

/* count * size bytes, 64-byte aligned; NULL on overflow or failure (message set, ENOMEM). */
void *sae__alloc_array(const sae_allocator *a, size_t count, size_t size);
void sae__free(const sae_allocator *a, void *ptr);
/* Copy of a NUL-terminated string (NULL in, NULL out). */
char *sae__strdup(const sae_allocator *a, const char *s);

/* ---- versioned option structs (lib/core/options.c) ------------------------------------- */

/* Copy a caller's options struct into `dst` (already holding the defaults, dst_size bytes):
 * reads min(src->struct_size, dst_size) bytes; a struct_size below 4, or non-zero bytes past
 * dst_size (fields of a newer header this library does not know), is SAE_EINVAL. `what` names
 * the struct in the message. A NULL `src` keeps the defaults. */
sae_status sae__read_options(void *dst, size_t dst_size, const void *src, const char *what);

/* The reverse: copy `src` (src_size bytes, a struct whose first field is uint32_t struct_size)
 * into a caller's struct `dst`, writing min(dst->struct_size, src_size) bytes and setting
 * dst->struct_size to that. false (nothing written) when dst is NULL or its struct_size is
 * below 4, i.e. not initialised with the _INIT macro. */
bool sae__write_options(void *dst, const void *src, size_t src_size);

/* ---- threads (lib/core/threads.c) ------------------------------------------------------ */

/* Threads for a call: `requested` if > 0, else sae_default_threads(). */
int sae__threads(int32_t requested);
/* Threads worth starting for `work` multiply-adds (or element operations of like cost): one per
 * SAE__WORK_PER_THREAD, at most `threads`, at least 1. A parallel region costs microseconds on
 * an idle machine but up to a scheduler slice (milliseconds) on a busy one, while one of its
 * threads waits for a core: below ~0.2 ms of work per thread it does not pay (a splice of 256
 * rows at d_in 64, d_sae 512 ran 3-8x slower on 2 threads than on 1 at load 10). */
#define SAE__WORK_PER_THREAD (1 << 24)
int sae__threads_for(int threads, double work);

/* ---- BLAS (lib/core/blas.c): the only caller of BLIS ----------------------------------- */

/* C = alpha * op(A) op(B) + beta * C, row-major, op = transpose when trans_* is true.
 * op(A): (m, k), op(B): (k, n), C: (m, n). lda/ldb/ldc are row strides in elements.
 * Runs on `n_threads` threads (per call, never a global setting). */
sae_status sae__sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc, int n_threads);

/* Lower triangle (row-major) of C = alpha * op(A) op(A)^T + beta * C, op(A): (n, k), i.e. A is
 * (n, k) with row stride lda, or (k, n) when trans_a. The strict upper triangle of C (n, n) is
 * not touched. */
sae_status sae__ssyrk(bool trans_a, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                      float beta, float *C, int64_t ldc, int n_threads);

/* ---- LAPACK (lib/core/lapack.c): the only caller of LAPACKE ---------------------------- */

/* Thin SVD A = U diag(s) Vt of A (m, n) row-major, stride lda >= n, r = min(m, n): s (r)
 * descending, U (m, r) row-major with stride r, Vt (r, n) row-major with stride n. A is
 * destroyed. SAE_ENUMERIC when LAPACK does not converge, SAE_EUNSUPPORTED beyond lapack_int. */
sae_status sae__sgesdd(float *s, float *U, float *Vt, float *A, int64_t m, int64_t n,
                       int64_t lda);

/* Eigenvalues w (n), ascending, of the symmetric A (n, n) given by its row-major lower
 * triangle, stride lda >= n. A is destroyed. */
sae_status sae__ssyevd_values(float *w, float *A, int64_t n, int64_t lda);

/* Minimum-norm least squares X = argmin ||A X - B||_F (smallest ||X||_F among the minimisers),
 * by the SVD (dgelsd), in double. A: (m, n), lda >= n; B: (m, k), ldb >= k; X: (n, k),
 * ldx >= k. Inputs are not changed; workspace comes from `allocator`. *out_rank (or NULL)
 * receives the numerical rank of A. */
sae_status sae__lstsq_min_norm(double *X, int64_t ldx, const double *A, int64_t lda,
                               const double *B, int64_t ldb, int64_t m, int64_t n, int64_t k,
                               const sae_allocator *allocator, int64_t *out_rank);

/* ---- checks ---------------------------------------------------------------------------- */

/* Index of the first non-finite value in x[0..n), or -1. */
int64_t sae__first_nonfinite(const float *x, int64_t n);

#endif /* SAE_INTERNAL_H */
