/*
 * synth_internal.h: the numeric kernels behind synth.h, shared by lib/synth.c,
 * lib/synth_metrics.c and the tests (tests/test_synth.c checks each against a naive twin).
 */
#ifndef SAE_SYNTH_INTERNAL_H
#define SAE_SYNTH_INTERNAL_H

#include "internal.h"
#include "sae/synth.h"

/* ---- symmetric positive definite matrices (synth.c) ------------------------------------------
 * Smallest eigenvalue of a symmetric S: (n, n) row-major, lds >= n, by Lanczos with full
 * reorthogonalisation from a start vector drawn from `rng`, stopped when the smallest Ritz
 * value of the tridiagonal T_k (found by Sturm bisection) settles, or after
 * min(n, SAE_LANCZOS_MAX_STEPS) steps. A Ritz value is never below the true minimum, so the
 * result is an upper bound that is tight once converged. O(k n^2) time, O(k n) memory. */
#define SAE_LANCZOS_MAX_STEPS 300
sae_status sae__sym_min_eigenvalue(const double *S, int64_t n, int64_t lds, sae_rng *rng,
                                   const sae_allocator *a, double *lambda_min);

/* Smallest eigenvalue of the symmetric tridiagonal matrix with diagonal alpha (k) and
 * off-diagonal beta (k - 1), by bisection on the Sturm count (Gershgorin bracket). */
double sae__tridiag_min_eigenvalue(const double *alpha, const double *beta, int64_t k);

/* In-place Cholesky S = L L^T of the lower triangle of A: (n, n), lda >= n (Cholesky-
 * Banachiewicz, row by row). Reads and writes only the lower triangle including the diagonal;
 * the strict upper triangle is untouched. false when a pivot is not positive (S not positive
 * definite in floating point); the lower triangle is then partly overwritten. */
bool sae__cholesky_lower(double *A, int64_t n, int64_t lda);

/* ---- firing probabilities (synth.c) ----------------------------------------------------------
 * p_g = min(1, c w_g) with c > 0 such that sum_g p_g = m (water filling: the largest weights
 * are capped at 1 and the rest rescaled). w: (G) weights >= 0, 0 < m <= G, scratch: (G)
 * doubles. SAE_ENUMERIC when fewer than m weights are positive (no such c exists). */
sae_status sae__fill_probabilities(const double *w, int64_t G, double m, double *scratch,
                                   float *p);

/* ---- assignment (synth_metrics.c) ------------------------------------------------------------
 * Maximum-weight matching of every row to a distinct column: C: (n, m) row-major, ldc >= m,
 * n <= m. Writes col_of_row (n). Hungarian algorithm with potentials (Kuhn-Munkres in the
 * shortest-augmenting-path form), O(n^2 m) time, O(m) doubles of workspace. */
sae_status sae__assign_max(const float *C, int64_t n, int64_t m, int64_t ldc,
                           int32_t *col_of_row, const sae_allocator *a);

#endif /* SAE_SYNTH_INTERNAL_H */
