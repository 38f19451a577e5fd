/*
 * ortho_internal.h: what the files of lib/ortho share (ortho.h): the checked view of a set of
 * decoder rows, its tiling, and the naive reference twins the tests check the tiled kernels
 * against (tests/test_ortho.c).
 */
#ifndef SAE_ORTHO_INTERNAL_H
#define SAE_ORTHO_INTERNAL_H

#include "../internal.h"
#include "sae/ortho.h"

/* The rows measured: S = subset (n ids) of W (F, d; ld), or all F rows when subset is NULL
 * (then n = F). Row k of S is W + id(k) * ld. */
typedef struct sae__ortho_rows {
    const float *W;
    int64_t F, d, ld;
    const int32_t *subset;
    int64_t n;
} sae__ortho_rows;

/* Check the arguments of a public call and fill `r`: W not NULL, F, d >= 1, ld >= d, subset
 * NULL with n_subset 0 or n_subset distinct ids in [0, F), at least min_n rows, rows of S
 * finite. The message names the problem (SAE_EINVAL, SAE_ESHAPE, SAE_ENUMERIC). */
sae_status sae__ortho_rows_init(sae__ortho_rows *r, const float *W, int64_t F, int64_t d,
                                int64_t ld, const int32_t *subset, int64_t n_subset,
                                int64_t min_n);

/* Feature id of row k of S. */
static inline int64_t sae__ortho_id(const sae__ortho_rows *r, int64_t k)
{
    return r->subset ? (int64_t)r->subset[k] : k;
}

/* Rows k0..k0+m of S as a matrix (m, d): W itself (with *ld_out = ld) when S is all rows,
 * else gathered into buf (m, d; *ld_out = d). */
const float *sae__ortho_block(const sae__ortho_rows *r, int64_t k0, int64_t m, float *buf,
                              int64_t *ld_out);

/* Rows per Gram tile for rows of length d: min(n, clamp(2^22 / d, 16, 1024)), so a tile
 * (T, T) and a gathered block (T, d) stay small. */
int64_t sae__ortho_tile_rows(int64_t d, int64_t n);

/* The decoder rows of a dictionary, for the sae_ortho_dict_* wrappers: *W_dec (F, d), leading
 * dimension d. SAE_EINVAL for a NULL dict. */
sae_status sae__ortho_dict_decoder(const sae_dict *dict, const float **W_dec, int64_t *F,
                                   int64_t *d);

/* sae_ortho_penalty() with its workspace (one Gram tile and up to three row blocks) from
 * `allocator` (NULL: the default): the trainer's regularizer passes the trainer's. */
sae_status sae__ortho_penalty(double *penalty, float *grad, int64_t ldg, float grad_scale,
                              const float *W_dec, int64_t n_features, int64_t d, int64_t ld,
                              const int32_t *subset, int64_t n_subset, int32_t n_threads,
                              const sae_allocator *allocator);

/* The raw sums a coherence pass produces (over pairs i > j of S unless said otherwise);
 * sae__coherence_finish turns them into the public statistics. */
typedef struct sae__coherence_sums {
    int64_t n, d, n_zero;
    double sum_cos;   /* sum |cos_ij| */
    double sum_cos2;  /* sum cos_ij^2 */
    double sum_raw2;  /* sum (d_i . d_j)^2 */
    double sum_diag2; /* sum_i ||d_i||^4 */
    double sum_sq;    /* sum_i ||d_i||^2 */
    double max_cos;
    int64_t max_i, max_j; /* feature ids */
} sae__coherence_sums;

/* Fill *c (the library's full-size struct) from the sums and the per-feature max |cos|
 * fmax (n): means, Welch quantities, frame potential and the histogram. */
void sae__coherence_finish(sae_coherence *c, const sae__coherence_sums *s, const float *fmax);

/* Entropy effective rank exp(-sum p ln p), p = sigma / sum sigma, and participation ratio
 * (sum sigma^2)^2 / sum sigma^4 of sigma (r); both 0 when sigma is all zero (ortho.h). */
void sae__spectrum_ranks(const float *sigma, int64_t r, double *effective_rank,
                         double *participation_ratio);

/* ---- naive reference twins (ortho_ref.c): double loops over all pairs, no tiling ----------- */

/* Same contract as sae_ortho_penalty() on checked rows (SAE_ENOMEM for its (d) scratch). */
sae_status sae__ortho_penalty_ref(const sae__ortho_rows *r, double *penalty, float *grad,
                                  int64_t ldg, float grad_scale);

/* Same contract as sae_ortho_coherence() on checked rows; fmax (n) is required. */
void sae__ortho_coherence_ref(const sae__ortho_rows *r, sae_coherence *c, float *fmax);

/* Singular values sigma (min(n, d)), descending, of the checked rows: eigenvalues of the
 * smaller Gram matrix formed in double, by cyclic Jacobi rotations (no LAPACK). ENOMEM only. */
sae_status sae__ortho_spectrum_ref(const sae__ortho_rows *r, double *sigma);

/* Loewdin's own formula out = (D_S D_S^T)^(-1/2) D_S (n <= d rows, full rank), with the inverse
 * square root from a Jacobi eigendecomposition in double; out (n, d) is written, W is not.
 * flags as sae_ortho_lowdin(). ENOMEM only. */
sae_status sae__ortho_lowdin_ref(const sae__ortho_rows *r, uint32_t flags, float *out);

#endif /* SAE_ORTHO_INTERNAL_H */
