/* lstsq_ref.c: the naive twin of the LAPACK least squares (lib/core/lapack.c), for the tests.
 * A direct solve by the normal equations with the pseudo-inverse of the Gram matrix:
 *   X = (AᵀA)⁺ AᵀB,   A: (m, n), B: (m, k), X: (n, k),
 * which is the minimum-norm least-squares solution because (AᵀA)⁺Aᵀ = A⁺. (AᵀA)⁺ = V Λ⁺ Vᵀ
 * from the eigen-decomposition G = V Λ Vᵀ by cyclic Jacobi rotations (Golub & Van Loan 8.5). */
#include <math.h>
#include <string.h>

#include "supervised_internal.h"

/* Eigen-decomposition of the symmetric (n, n) matrix G in place: on return the diagonal of G
 * holds the eigenvalues and V (n, n) the eigenvectors as columns. */
static void jacobi_eigen(double *G, double *V, int64_t n)
{
    memset(V, 0, (size_t)(n * n) * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        V[i * n + i] = 1.0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int64_t p = 0; p < n; p++) {
            diag += G[p * n + p] * G[p * n + p];
            for (int64_t q = p + 1; q < n; q++)
                off += G[p * n + q] * G[p * n + q];
        }
        if (off <= 1e-30 * diag || off == 0.0)
            return;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                double gpq = G[p * n + q];
                if (gpq == 0.0)
                    continue;
                /* Rotation (c, s) that zeroes G[p, q]. */
                double theta = (G[q * n + q] - G[p * n + p]) / (2.0 * gpq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int64_t r = 0; r < n; r++) { /* G <- G J (columns p, q) */
                    double gp = G[r * n + p], gq = G[r * n + q];
                    G[r * n + p] = c * gp - s * gq;
                    G[r * n + q] = s * gp + c * gq;
                }
                for (int64_t r = 0; r < n; r++) { /* G <- Jᵀ G (rows p, q) */
                    double gp = G[p * n + r], gq = G[q * n + r];
                    G[p * n + r] = c * gp - s * gq;
                    G[q * n + r] = s * gp + c * gq;
                }
                for (int64_t r = 0; r < n; r++) { /* V <- V J */
                    double vp = V[r * n + p], vq = V[r * n + q];
                    V[r * n + p] = c * vp - s * vq;
                    V[r * n + q] = s * vp + c * vq;
                }
            }
    }
}

sae_status sae__lstsq_min_norm_ref(double *X, int64_t ldx, const double *A, int64_t lda,
                                   const double *B, int64_t ldb, int64_t m, int64_t n, int64_t k,
                                   const sae_allocator *allocator)
{
    double *G = sae__alloc_array(allocator, (size_t)(n * n), sizeof(double));
    double *V = sae__alloc_array(allocator, (size_t)(n * n), sizeof(double));
    double *R = sae__alloc_array(allocator, (size_t)(n * k), sizeof(double));
    sae_status s = G && V && R ? SAE_OK : SAE_ENOMEM;
    if (s == SAE_OK) {
        /* G = AᵀA (n, n), R = AᵀB (n, k). */
        for (int64_t p = 0; p < n; p++) {
            for (int64_t q = 0; q < n; q++) {
                double acc = 0.0;
                for (int64_t i = 0; i < m; i++)
                    acc += A[i * lda + p] * A[i * lda + q];
                G[p * n + q] = acc;
            }
            for (int64_t j = 0; j < k; j++) {
                double acc = 0.0;
                for (int64_t i = 0; i < m; i++)
                    acc += A[i * lda + p] * B[i * ldb + j];
                R[p * k + j] = acc;
            }
        }
        jacobi_eigen(G, V, n);
        double lmax = 0.0;
        for (int64_t p = 0; p < n; p++)
            lmax = fabs(G[p * n + p]) > lmax ? fabs(G[p * n + p]) : lmax;
        /* X = V Λ⁺ Vᵀ R. */
        for (int64_t p = 0; p < n; p++)
            for (int64_t j = 0; j < k; j++)
                X[p * ldx + j] = 0.0;
        for (int64_t e = 0; e < n; e++) {
            double lambda = G[e * n + e];
            if (lambda <= 1e-10 * lmax)
                continue;
            for (int64_t j = 0; j < k; j++) {
                double proj = 0.0; /* (Vᵀ R)[e, j] */
                for (int64_t p = 0; p < n; p++)
                    proj += V[p * n + e] * R[p * k + j];
                for (int64_t p = 0; p < n; p++)
                    X[p * ldx + j] += V[p * n + e] * proj / lambda;
            }
        }
    }
    sae__free(allocator, G);
    sae__free(allocator, V);
    sae__free(allocator, R);
    return s;
}
