/* lowdin.c: symmetric (Loewdin) orthogonalisation of a subset of decoder rows (ortho.h).
 *
 * D_S (n, d), n <= d. Thin SVD D_S = U diag(s) V^T by LAPACK (sgesdd; U (n, n), V^T (n, d)),
 * then D_S <- U V^T by one sgemm ((n, n) x (n, d)), row i optionally scaled back to ||d_i||.
 * U V^T = (D_S D_S^T)^(-1/2) D_S is Loewdin's S^(-1/2) form, the polar factor of D_S: the
 * orthonormal rows nearest D_S in the Frobenius norm. Going through the SVD rather than the
 * Gram matrix S keeps the condition number that of D_S, not its square. */
#include <math.h>
#include <string.h>

#include "../dict_internal.h"
#include "ortho_internal.h"

sae_status sae_ortho_lowdin(float *W_dec, float *singular_values, int64_t n_features, int64_t d,
                            int64_t ld, const int32_t *subset, int64_t n_subset, uint32_t flags,
                            int32_t n_threads)
{
    if (flags & ~(uint32_t)SAE_LOWDIN_KEEP_NORMS)
        return sae__fail(SAE_EINVAL, "unknown Loewdin flags 0x%x", (unsigned)flags);
    if (n_threads < 0)
        return sae__fail(SAE_EINVAL, "n_threads is %d, needs >= 0", (int)n_threads);
    sae__ortho_rows r;
    sae_status s = sae__ortho_rows_init(&r, W_dec, n_features, d, ld, subset, n_subset, 1);
    if (s != SAE_OK)
        return s;
    const int64_t n = r.n;
    if (n > d)
        return sae__fail(SAE_EINVAL, "cannot orthogonalise %lld rows of length %lld: at most d "
                         "rows can be orthonormal (choose a subset of <= %lld)", (long long)n,
                         (long long)d, (long long)d);
    /* A (n, d): D_S, then U V^T; Vt (n, d); U (n, n); sigma (n); norms (n) */
    float *A = sae__alloc_array(NULL, (size_t)(2 * n * d + n * n + 2 * n), sizeof(float));
    if (!A)
        return SAE_ENOMEM;
    float *Vt = A + n * d, *U = Vt + n * d, *sigma = U + n * n, *norms = sigma + n;
    for (int64_t k = 0; k < n; k++) {
        const float *row = W_dec + sae__ortho_id(&r, k) * ld;
        memcpy(A + k * d, row, (size_t)d * sizeof(float));
        double sq = 0;
        for (int64_t c = 0; c < d; c++)
            sq += (double)row[c] * row[c];
        norms[k] = (float)sqrt(sq);
    }
    s = sae__sgesdd(sigma, U, Vt, A, n, d, d);
    if (s == SAE_OK)
        s = sae__sgemm(false, false, n, d, n, 1.0f, U, n, Vt, d, 0.0f, A, d,
                       sae__threads(n_threads));
    if (s == SAE_OK) {
        const bool keep = flags & SAE_LOWDIN_KEEP_NORMS;
        for (int64_t k = 0; k < n; k++) {
            float *row = W_dec + sae__ortho_id(&r, k) * ld;
            const float *q = A + k * d, f = keep ? norms[k] : 1.0f;
            for (int64_t c = 0; c < d; c++)
                row[c] = f * q[c];
        }
        if (singular_values)
            memcpy(singular_values, sigma, (size_t)n * sizeof(float));
    }
    sae__free(NULL, A);
    return s;
}

sae_status sae_ortho_dict_lowdin(sae_dict **out, float *singular_values, const sae_dict *dict,
                                 const int32_t *subset, int64_t n_subset, uint32_t flags,
                                 int32_t n_threads)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "out is NULL");
    if (!dict)
        return sae__fail(SAE_EINVAL, "dict is NULL");
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    sae_status s = sae_dict_get_config(dict, &cfg);
    if (s == SAE_OK)
        s = sae_dict_get_weights(dict, &w);
    if (s != SAE_OK)
        return s;
    const int64_t F = cfg.d_sae, d = cfg.d_in;
    /* the new decoder (F, d), then room for the singular values (at most d on success) */
    float *W = sae__alloc_array(NULL, (size_t)(F * d + d), sizeof(float));
    if (!W)
        return SAE_ENOMEM;
    memcpy(W, w.W_dec, (size_t)(F * d) * sizeof(float));
    s = sae_ortho_lowdin(W, W + F * d, F, d, d, subset, n_subset, flags, n_threads);
    sae_dict *made = NULL;
    if (s == SAE_OK) {
        w.W_dec = W;
        s = sae_dict_create(&made, &cfg, &w, dict->allocator);
    }
    if (s == SAE_OK) {
        if (singular_values)
            memcpy(singular_values, W + F * d,
                   (size_t)(subset ? n_subset : F) * sizeof(float));
        *out = made;
    }
    sae__free(NULL, W);
    return s;
}
