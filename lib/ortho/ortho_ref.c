/* ortho_ref.c: naive reference twins of the fast kernels (ortho_internal.h), for the tests:
 * every pair (i, j) of S in double, straight from the definitions in ortho.h; the spectrum and
 * Loewdin's formula by Jacobi rotations in double rather than LAPACK. */
#include <math.h>

#include "ortho_internal.h"

static double dot(const sae__ortho_rows *r, int64_t a, int64_t b)
{
    const float *x = r->W + sae__ortho_id(r, a) * r->ld, *y = r->W + sae__ortho_id(r, b) * r->ld;
    double s = 0;
    for (int64_t k = 0; k < r->d; k++)
        s += (double)x[k] * y[k];
    return s;
}

sae_status sae__ortho_penalty_ref(const sae__ortho_rows *r, double *penalty, float *grad,
                                  int64_t ldg, float grad_scale)
{
    double *g = sae__alloc_array(NULL, (size_t)r->d, sizeof(double)); /* dP/dd_i in double */
    if (!g)
        return SAE_ENOMEM;
    double p = 0;
    for (int64_t a = 0; a < r->n; a++) {
        for (int64_t k = 0; k < r->d; k++)
            g[k] = 0;
        for (int64_t b = 0; b < r->n; b++) {
            if (b == a)
                continue;
            double gab = dot(r, a, b);
            if (b < a) /* P = sum_{i>j} (d_i . d_j)^2 */
                p += gab * gab;
            const float *db = r->W + sae__ortho_id(r, b) * r->ld;
            for (int64_t k = 0; k < r->d; k++) /* dP/dd_i = 2 sum_{j != i} (d_i . d_j) d_j */
                g[k] += 2 * gab * db[k];
        }
        if (grad)
            for (int64_t k = 0; k < r->d; k++)
                grad[sae__ortho_id(r, a) * ldg + k] += (float)(grad_scale * g[k]);
    }
    sae__free(NULL, g);
    *penalty = p;
    return SAE_OK;
}

void sae__ortho_coherence_ref(const sae__ortho_rows *r, sae_coherence *c, float *fmax)
{
    sae__coherence_sums s = {.n = r->n, .d = r->d, .max_cos = -1.0, .max_i = -1, .max_j = -1};
    for (int64_t a = 0; a < r->n; a++) {
        double sq = dot(r, a, a);
        s.n_zero += sq == 0;
        s.sum_sq += sq;
        s.sum_diag2 += sq * sq;
        fmax[a] = 0.0f;
    }
    for (int64_t a = 0; a < r->n; a++)
        for (int64_t b = 0; b < r->n; b++) {
            if (b == a)
                continue;
            double g = dot(r, a, b), na = sqrt(dot(r, a, a)), nb = sqrt(dot(r, b, b));
            double cs = na > 0 && nb > 0 ? fmin(fabs(g) / (na * nb), 1.0) : 0.0;
            fmax[a] = fmaxf(fmax[a], (float)cs);
            if (b > a)
                continue; /* pairs i > j once */
            s.sum_cos += cs, s.sum_cos2 += cs * cs, s.sum_raw2 += g * g;
            if (cs > s.max_cos)
                s.max_cos = cs, s.max_i = sae__ortho_id(r, a), s.max_j = sae__ortho_id(r, b);
        }
    sae__coherence_finish(c, &s, fmax);
}

/* Eigen-decomposition of the symmetric A (n, n), row-major, by cyclic Jacobi rotations
 * (Numerical Recipes' jacobi): on return the diagonal of A holds the eigenvalues and, when V is
 * not NULL, the columns of V (n, n) the eigenvectors, A_in = V diag(A_out) V^T. */
static void jacobi_eigen(double *A, int64_t n, double *V)
{
    for (int64_t i = 0; V && i < n * n; i++)
        V[i] = i % (n + 1) == 0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, all = 0;
        for (int64_t i = 0; i < n * n; i++)
            all += A[i] * A[i];
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++)
                off += 2 * A[p * n + q] * A[p * n + q];
        if (off <= 1e-30 * all)
            return;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                double apq = A[p * n + q];
                if (apq == 0)
                    continue;
                /* the rotation J (c at pp, qq; s at pq; -s at qp) that zeroes A'_pq of J^T A J */
                double theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int64_t k = 0; k < n; k++) { /* columns p, q: A J */
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - s * akq, A[k * n + q] = s * akp + c * akq;
                }
                for (int64_t k = 0; k < n; k++) { /* rows p, q: J^T (A J) */
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - s * aqk, A[q * n + k] = s * apk + c * aqk;
                }
                for (int64_t k = 0; V && k < n; k++) {
                    double vkp = V[k * n + p], vkq = V[k * n + q];
                    V[k * n + p] = c * vkp - s * vkq, V[k * n + q] = s * vkp + c * vkq;
                }
            }
    }
}

sae_status sae__ortho_spectrum_ref(const sae__ortho_rows *r, double *sigma)
{
    const int64_t n = r->n, d = r->d, m = n < d ? n : d;
    double *G = sae__alloc_array(NULL, (size_t)(m * m), sizeof(double));
    if (!G)
        return SAE_ENOMEM;
    for (int64_t a = 0; a < m; a++) /* D_S D_S^T (n < d) or D_S^T D_S */
        for (int64_t b = 0; b < m; b++) {
            double g = 0;
            if (n < d) {
                g = dot(r, a, b);
            } else {
                for (int64_t k = 0; k < n; k++) {
                    const float *x = r->W + sae__ortho_id(r, k) * r->ld;
                    g += (double)x[a] * x[b];
                }
            }
            G[a * m + b] = g;
        }
    jacobi_eigen(G, m, NULL);
    for (int64_t i = 0; i < m; i++) { /* insertion sort, descending */
        double v = sqrt(fmax(G[i * (m + 1)], 0.0));
        int64_t j = i;
        for (; j > 0 && sigma[j - 1] < v; j--)
            sigma[j] = sigma[j - 1];
        sigma[j] = v;
    }
    sae__free(NULL, G);
    return SAE_OK;
}

sae_status sae__ortho_lowdin_ref(const sae__ortho_rows *r, uint32_t flags, float *out)
{
    const int64_t n = r->n, d = r->d;
    double *S = sae__alloc_array(NULL, (size_t)(3 * n * n), sizeof(double));
    if (!S)
        return SAE_ENOMEM;
    double *V = S + n * n, *M = V + n * n;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++)
            S[a * n + b] = dot(r, a, b);
    jacobi_eigen(S, n, V);
    for (int64_t a = 0; a < n; a++) /* M = V diag(lambda^(-1/2)) V^T = S^(-1/2) */
        for (int64_t b = 0; b < n; b++) {
            double m = 0;
            for (int64_t k = 0; k < n; k++)
                m += V[a * n + k] * V[b * n + k] / sqrt(S[k * (n + 1)]);
            M[a * n + b] = m;
        }
    for (int64_t a = 0; a < n; a++) {
        double f = flags & SAE_LOWDIN_KEEP_NORMS ? sqrt(dot(r, a, a)) : 1.0;
        for (int64_t c = 0; c < d; c++) {
            double v = 0;
            for (int64_t b = 0; b < n; b++)
                v += M[a * n + b] * r->W[sae__ortho_id(r, b) * r->ld + c];
            out[a * d + c] = (float)(f * v);
        }
    }
    sae__free(NULL, S);
    return SAE_OK;
}
