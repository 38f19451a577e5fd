/* spectrum.c: singular values and effective ranks of decoder rows (ortho.h), through the
 * smaller Gram matrix so that memory stays O(d^2 + tile) for F = 65536 rows.
 *
 * D_S (n, d), r = min(n, d). n >= d: G = D_S^T D_S (d, d) = sum over blocks B (T, d) of rows of
 * B^T B, one syrk per block (one syrk over all rows when S is every feature: BLIS blocks the
 * k = F dimension itself). n < d: G = D_S D_S^T (n, n), one syrk. The eigenvalues lambda of G
 * (LAPACK ssyevd, values only) are sigma^2. Rounding of G is of order eps sigma_max^2, hence
 * the absolute error eps sigma_max^2 / sigma on small singular values stated in ortho.h. */
#include <math.h>
#include <string.h>

#include "ortho_internal.h"

void sae__spectrum_ranks(const float *sigma, int64_t r, double *effective_rank,
                         double *participation_ratio)
{
    double s1 = 0, s2 = 0, s4 = 0;
    for (int64_t i = 0; i < r; i++) {
        double s = sigma[i];
        s1 += s, s2 += s * s, s4 += s * s * s * s;
    }
    double h = 0;
    for (int64_t i = 0; i < r && s1 > 0; i++) {
        double p = sigma[i] / s1;
        if (p > 0)
            h -= p * log(p);
    }
    *effective_rank = s1 > 0 ? exp(h) : 0.0;
    *participation_ratio = s4 > 0 ? s2 * s2 / s4 : 0.0;
}

sae_status sae_ortho_spectrum(float *singular_values, double *effective_rank,
                              double *participation_ratio, const float *W_dec,
                              int64_t n_features, int64_t d, int64_t ld, const int32_t *subset,
                              int64_t n_subset, int32_t n_threads)
{
    if (n_threads < 0)
        return sae__fail(SAE_EINVAL, "n_threads is %d, needs >= 0", (int)n_threads);
    sae__ortho_rows r;
    sae_status s = sae__ortho_rows_init(&r, W_dec, n_features, d, ld, subset, n_subset, 1);
    if (s != SAE_OK)
        return s;
    const int64_t n = r.n, m = n < d ? n : d, threads = sae__threads(n_threads);
    const int64_t T = sae__ortho_tile_rows(d, n);
    /* rows gathered when S is a subset: blocks of T (n >= d) or all n (n < d, so n d < d^2) */
    const int64_t gathered = !subset ? 0 : n >= d ? T * d : n * d;
    /* G (m, m), then lambda (m), sigma (m), the gathered rows */
    float *G = sae__alloc_array(NULL, (size_t)(m * m + 2 * m + gathered), sizeof(float));
    if (!G)
        return SAE_ENOMEM;
    float *lambda = G + m * m, *sigma = lambda + m, *buf = sigma + m;
    int64_t ldb;
    if (n >= d && !subset) {
        s = sae__ssyrk(true, d, n, 1.0f, W_dec, ld, 0.0f, G, d, (int)threads);
    } else if (n >= d) {
        for (int64_t k0 = 0; k0 < n && s == SAE_OK; k0 += T) {
            int64_t mk = n - k0 < T ? n - k0 : T;
            const float *B = sae__ortho_block(&r, k0, mk, buf, &ldb);
            s = sae__ssyrk(true, d, mk, 1.0f, B, ldb, k0 ? 1.0f : 0.0f, G, d, (int)threads);
        }
    } else {
        const float *B = sae__ortho_block(&r, 0, n, buf, &ldb);
        s = sae__ssyrk(false, n, d, 1.0f, B, ldb, 0.0f, G, n, (int)threads);
    }
    if (s == SAE_OK)
        s = sae__ssyevd_values(lambda, G, m, m);
    if (s == SAE_OK) {
        for (int64_t i = 0; i < m; i++) /* ascending lambda, clamped: rounding can go below 0 */
            sigma[i] = sqrtf(fmaxf(lambda[m - 1 - i], 0.0f));
        double er, pr;
        sae__spectrum_ranks(sigma, m, &er, &pr);
        if (singular_values)
            memcpy(singular_values, sigma, (size_t)m * sizeof(float));
        if (effective_rank)
            *effective_rank = er;
        if (participation_ratio)
            *participation_ratio = pr;
    }
    sae__free(NULL, G);
    return s;
}

sae_status sae_ortho_dict_spectrum(float *singular_values, double *effective_rank,
                                   double *participation_ratio, const sae_dict *dict,
                                   const int32_t *subset, int64_t n_subset, int32_t n_threads)
{
    const float *W;
    int64_t F, d;
    sae_status s = sae__ortho_dict_decoder(dict, &W, &F, &d);
    if (s != SAE_OK)
        return s;
    return sae_ortho_spectrum(singular_values, effective_rank, participation_ratio, W, F, d, d,
                              subset, n_subset, n_threads);
}
