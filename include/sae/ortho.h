/**
 * @file ortho.h
 * @brief Orthogonality of decoder directions (sae-icm): the penalty and its gradient, seeded
 *        random subsets, coherence statistics, symmetric (Loewdin) orthogonalisation, the
 *        singular-value spectrum and effective rank, and the relative-L2 reconstruction term.
 *
 * @defgroup ortho Orthogonality
 * @brief The sae-icm orthogonality regulariser (mrtzmllr/sae-icm; MATH.md, "Orthogonality";
 *        REFERENCE.md 2.1) and coherence statistics of a dictionary.
 *
 * A decoder is given as its rows: W_dec (n_features, d) row-major with leading dimension
 * ld >= d, row i being the direction d_i (libsae's canonical layout, i.e. the columns of
 * sae-icm's `W_dec.weight [d_model, d_sae]`). A subset S is a list of distinct feature ids;
 * a NULL subset with n_subset = 0 means all features.
 *
 * The penalty and the coherence statistics never materialise an n x n matrix: Gram blocks of
 * at most 1024 x 1024 are computed by BLAS (sgemm) and consumed tile by tile, so memory is
 * O(tile) plus O(n) per-feature values. The Loewdin projection (n <= d rows) and the spectrum
 * work on the side of size min(n, d), at most d x d. Results depend on the number of threads
 * only through BLIS's summation order: the per-row partial sums are added in a fixed order.
 *
 * Thread safety: the functions keep no state and may run concurrently on shared inputs, except
 * that sae_ortho_lowdin() writes the rows of S of its W_dec.
 * @{
 */
#ifndef SAE_ORTHO_H
#define SAE_ORTHO_H

#include "core.h"
#include "dict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief sae-icm's default subset size (`d_sub_decoder` in its config.yaml). */
#define SAE_ORTHO_SUBSET_DEFAULT 1024

/** @brief Bins of the histogram of per-feature max |cos| in ::sae_coherence. */
#define SAE_COHERENCE_BINS 20

/**
 * @brief Draw a uniformly random subset of feature ids, without replacement, sorted.
 *
 * The draw depends only on (seed, counter, n_subset, n_features): sae-icm redraws S every
 * step, which is counter = step here. Selection sampling (Knuth's algorithm S) on a Philox
 * stream sae_rng_init(seed, counter): O(n_features) time, no allocation.
 * @param[out] subset The ids, ascending: (min(n_subset, n_features)).
 * @param[out] n_drawn min(n_subset, n_features); may be NULL.
 * @param[in] n_subset Ids wanted, >= 1 (e.g. ::SAE_ORTHO_SUBSET_DEFAULT); more than
 *            n_features gives all of them.
 * @param[in] n_features Number of features F, 1 <= F <= INT32_MAX.
 * @param[in] seed Seed of the draw.
 * @param[in] counter Which draw (e.g. the training step).
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_ortho_subset(int32_t *subset, int64_t *n_drawn, int64_t n_subset,
                                    int64_t n_features, uint64_t seed, uint64_t counter);

/**
 * @brief The sae-icm orthogonality penalty P = sum_{i>j in S} (d_i . d_j)^2 on the raw
 *        (un-normalised) rows, and optionally its gradient.
 *
 * dP/dd_i = 2 sum_{j in S, j != i} (d_i . d_j) d_j for i in S, zero elsewhere. With S = all
 * features P = 1/2 ||W W^T - diag(W W^T)||_F^2. No normalisation and no factor 1/2 beyond the
 * strict lower triangle (sae-icm `tril(G, -1).square().sum()`). Cost 4 n^2 d flops with the
 * gradient (2 n^2 d without), in Gram tiles of at most 1024 x 1024.
 * @param[out] penalty P, accumulated in double (the Gram entries are float sgemm products).
 * @param[in,out] grad NULL, or (n_features, d) with leading dimension ldg >= d:
 *                grad[i] += grad_scale * dP/dd_i for i in S; other rows are not touched.
 * @param[in] ldg Leading dimension of grad.
 * @param[in] grad_scale Factor on the gradient (e.g. the weight lambda of the penalty).
 * @param[in] W_dec Decoder rows (n_features, d), leading dimension ld; must be finite on S.
 * @param[in] n_features Number of rows F >= 1.
 * @param[in] d Row length >= 1.
 * @param[in] ld Leading dimension of W_dec, >= d.
 * @param[in] subset Distinct ids in [0, F) (n_subset of them), or NULL for all features.
 * @param[in] n_subset Length of subset, >= 1; 0 when subset is NULL.
 * @param[in] n_threads Threads; 0 = sae_default_threads().
 * @return ::SAE_OK; ::SAE_EINVAL (NULL pointers, sizes, repeated or out-of-range ids),
 *         ::SAE_ESHAPE (ld or ldg < d), ::SAE_ENUMERIC (non-finite row of S) or
 *         ::SAE_ENOMEM. On failure nothing is written.
 */
SAE_API sae_status sae_ortho_penalty(double *penalty, float *grad, int64_t ldg,
                                     float grad_scale, const float *W_dec, int64_t n_features,
                                     int64_t d, int64_t ld, const int32_t *subset,
                                     int64_t n_subset, int32_t n_threads);

/**
 * @brief sae_ortho_penalty() on the decoder of a dictionary (W_dec (d_sae, d_in)).
 * @param[out] penalty P.
 * @param[in,out] grad NULL, or (d_sae, d_in) with leading dimension ldg: grad[i] +=
 *                grad_scale * dP/dd_i for i in S.
 * @param[in] ldg Leading dimension of grad, >= d_in.
 * @param[in] grad_scale Factor on the gradient.
 * @param[in] dict The dictionary.
 * @param[in] subset Distinct feature ids, or NULL for all.
 * @param[in] n_subset Length of subset; 0 when subset is NULL.
 * @param[in] n_threads Threads; 0 = sae_default_threads().
 * @return As sae_ortho_penalty(); ::SAE_EINVAL for a NULL dict.
 */
SAE_API sae_status sae_ortho_dict_penalty(double *penalty, float *grad, int64_t ldg,
                                          float grad_scale, const sae_dict *dict,
                                          const int32_t *subset, int64_t n_subset,
                                          int32_t n_threads);

/**
 * @brief Coherence statistics of a set of n directions (all features or a subset).
 *
 * cos_ij = d_i . d_j / (||d_i|| ||d_j||) (no epsilon); a zero row has cosine 0 with every row,
 * itself included, and is counted in @c n_zero. Definitions follow sae-icm
 * (src/poet/orthogonality.py, `_orthogonality_metrics` and `_welch` with k = 1), pairs being
 * unordered i > j unless "all (i, j)" is said. Fill with sae_ortho_coherence(); initialise with
 * ::SAE_COHERENCE_INIT.
 */
typedef struct sae_coherence {
    uint32_t struct_size;  /**< sizeof(sae_coherence), set by ::SAE_COHERENCE_INIT. */
    uint32_t n_bins;       /**< ::SAE_COHERENCE_BINS. */
    int64_t n;             /**< Number of directions measured (|S|, or F). */
    int64_t d;             /**< Their length. */
    int64_t n_zero;        /**< Rows of norm 0. */
    int64_t max_i;         /**< Feature id i of the pair with the largest |cos| (i > j in the
                                order of S). */
    int64_t max_j;         /**< Feature id j of that pair. */
    double max_cos;        /**< max_{i>j} |cos_ij| (sae-icm `max_cos`). */
    double sum_cos;        /**< sum_{i>j} |cos_ij| (orthogonality.py `sum_cos`). */
    double mean_cos;       /**< sum_cos / C(n, 2) (orthogonality.py `mean_cos`). sae-icm's
                                training callback (insert_sae.py) divides by n^2 instead:
                                that value is sum_cos / n^2. */
    double mean_max_cos;   /**< mean over features of max_{j != i} |cos_ij|. */
    double welch_sum_norm; /**< sum over all (i, j) of cos_ij^2, diagonal included
                                (`_welch` sum_norm; the frame potential of the unit rows). */
    double welch_mean_norm; /**< welch_sum_norm / n^2 (`_welch` mean_norm). */
    double welch_bound;    /**< 1 / C(d + k - 1, k) = 1 / d for k = 1: the Welch lower bound
                                of welch_mean_norm when n >= d (REFERENCE.md 2.1); for n < d
                                the attainable minimum is 1/n. */
    double welch_sum_raw;  /**< sum over all (i, j) of (d_i . d_j)^2 (`_welch` sum_raw). */
    double welch_normalizing_raw; /**< (sum_i ||d_i||^2)^2 (`_welch` normalizing_raw). */
    double welch_mean_raw; /**< welch_sum_raw / welch_normalizing_raw (`_welch` mean_raw). */
    double frame_potential; /**< sum_{i != j} cos_ij^2 = welch_sum_norm - (n - n_zero). */
    double frame_potential_bound; /**< max(0, n^2 / d - n): its lower bound for n unit rows. */
    int64_t max_cos_hist[SAE_COHERENCE_BINS]; /**< Features whose max_{j != i} |cos_ij| lies
                                in [b / 20, (b + 1) / 20) for bin b; the last bin includes 1. */
} sae_coherence;

/** @brief Initialiser for ::sae_coherence. */
#define SAE_COHERENCE_INIT {sizeof(sae_coherence), 0u, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, {0}}

/**
 * @brief Coherence statistics (::sae_coherence) of rows of a decoder, in O(tile) memory.
 *
 * One sgemm pass over the upper triangle of Gram tiles (n^2 d flops) plus O(n^2) elementwise
 * work spread over the threads.
 * @param[out] out The statistics; its struct_size must be set (::SAE_COHERENCE_INIT). On
 *             failure it is not written.
 * @param[out] feature_max_cos NULL, or (n): max_{j != i} |cos_ij| per measured feature, in the
 *             order of S (of the rows when S is all features).
 * @param[in] W_dec Decoder rows (n_features, d), leading dimension ld; must be finite on S.
 * @param[in] n_features Number of rows F >= 1.
 * @param[in] d Row length >= 1.
 * @param[in] ld Leading dimension, >= d.
 * @param[in] subset Distinct ids in [0, F), or NULL for all features.
 * @param[in] n_subset Length of subset; 0 when subset is NULL. At least 2 directions.
 * @param[in] n_threads Threads; 0 = sae_default_threads().
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENUMERIC or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_ortho_coherence(sae_coherence *out, float *feature_max_cos,
                                       const float *W_dec, int64_t n_features, int64_t d,
                                       int64_t ld, const int32_t *subset, int64_t n_subset,
                                       int32_t n_threads);

/**
 * @brief sae_ortho_coherence() on the decoder of a dictionary.
 * @param[out] out The statistics (struct_size set).
 * @param[out] feature_max_cos NULL, or (n) per-feature max |cos|.
 * @param[in] dict The dictionary.
 * @param[in] subset Distinct feature ids, or NULL for all.
 * @param[in] n_subset Length of subset; 0 when subset is NULL.
 * @param[in] n_threads Threads; 0 = sae_default_threads().
 * @return As sae_ortho_coherence(); ::SAE_EINVAL for a NULL dict.
 */
SAE_API sae_status sae_ortho_dict_coherence(sae_coherence *out, float *feature_max_cos,
                                            const sae_dict *dict, const int32_t *subset,
                                            int64_t n_subset, int32_t n_threads);

/** @brief Bits of the @c flags of sae_ortho_lowdin(). */
enum sae_lowdin_flag {
    /** Give each orthogonalised row its input norm ||d_i|| back (the directions are those of
     *  U V^T; a zero row stays zero). Without it the rows are the unit rows of U V^T, which
     *  suits sae-icm's unit-norm decoders. */
    SAE_LOWDIN_KEEP_NORMS = 1u << 0
};

/**
 * @brief Symmetric (Loewdin) orthogonalisation of a subset of decoder rows, in place.
 *
 * With D_S (n, d) the rows of S and its thin SVD D_S = U diag(sigma) V^T (U (n, n),
 * V^T (n, d)), the rows of S become those of U V^T = (D_S D_S^T)^(-1/2) D_S: the orthonormal
 * set closest to D_S in the Frobenius norm (the polar factor; no row is privileged, unlike
 * Gram-Schmidt). With ::SAE_LOWDIN_KEEP_NORMS row i is then scaled to ||d_i||. Requires
 * n <= d. When D_S is rank-deficient (a zero row, parallel rows) the closest orthonormal set is
 * not unique: one of them is returned, still orthonormal. The SVD is LAPACK's sgesdd (its
 * BLAS threading is that of the system libblas); U V^T is one sgemm on n_threads.
 * Memory: 2 n d + n^2 floats plus LAPACK's workspace; rows outside S are not read.
 * @param[in,out] W_dec Decoder rows (n_features, d), leading dimension ld; rows of S must be
 *                finite. Only the rows of S change, and only on success.
 * @param[out] singular_values NULL, or (n): sigma of D_S before the projection, descending
 *             (all 1 when the rows were already orthonormal).
 * @param[in] n_features Number of rows F >= 1.
 * @param[in] d Row length >= 1.
 * @param[in] ld Leading dimension, >= d.
 * @param[in] subset Distinct ids in [0, F), or NULL for all features (then F <= d).
 * @param[in] n_subset Length of subset, 1 <= n_subset <= d; 0 when subset is NULL.
 * @param[in] flags Bits of ::sae_lowdin_flag (0: unit rows).
 * @param[in] n_threads Threads; 0 = sae_default_threads().
 * @return ::SAE_OK; ::SAE_EINVAL (NULL W_dec, sizes, repeated or out-of-range ids, more rows
 *         than d, unknown flags), ::SAE_ESHAPE (ld < d), ::SAE_ENUMERIC (non-finite row of S,
 *         or the SVD did not converge) or ::SAE_ENOMEM. On failure nothing is written.
 */
SAE_API sae_status sae_ortho_lowdin(float *W_dec, float *singular_values, int64_t n_features,
                                    int64_t d, int64_t ld, const int32_t *subset,
                                    int64_t n_subset, uint32_t flags, int32_t n_threads);

/**
 * @brief sae_ortho_lowdin() on the decoder of a dictionary, as a new dictionary.
 *
 * Dictionaries are immutable, so the result is a copy of @p dict (same configuration, weights
 * and allocator) whose decoder rows of S are orthogonalised; its decoder norms are recomputed.
 * @param[out] out The new dictionary; free with sae_dict_free(). Not written on failure.
 * @param[out] singular_values NULL, or (n): sigma of the rows of S before the projection.
 * @param[in] dict The dictionary (d_sae features of length d_in).
 * @param[in] subset Distinct feature ids, or NULL for all (then d_sae <= d_in).
 * @param[in] n_subset Length of subset, at most d_in; 0 when subset is NULL.
 * @param[in] flags Bits of ::sae_lowdin_flag.
 * @param[in] n_threads Threads; 0 = sae_default_threads().
 * @return As sae_ortho_lowdin(); ::SAE_EINVAL for a NULL @p out or @p dict.
 */
SAE_API sae_status sae_ortho_dict_lowdin(sae_dict **out, float *singular_values,
                                         const sae_dict *dict, const int32_t *subset,
                                         int64_t n_subset, uint32_t flags, int32_t n_threads);

/**
 * @brief Singular values and effective rank of a set of decoder rows, in O(d^2 + tile) memory.
 *
 * D_S (n, d): the rows of S, r = min(n, d). The singular values are the square roots of the
 * eigenvalues of the smaller Gram matrix, D_S^T D_S (d, d) when n >= d (accumulated by BLAS
 * syrk over blocks of rows, so F = 65536 rows of d = 2304 need no F x F or F x d copy) or
 * D_S D_S^T (n, n), computed by LAPACK's ssyevd. Through the Gram matrix, singular values below
 * about 1e-3 sigma_max carry an absolute error of order 1e-7 sigma_max^2 / sigma.
 * Two effective ranks, both r for an orthonormal set and 1 for rank one:
 * - entropy effective rank exp(-sum_i p_i ln p_i), p_i = sigma_i / sum_j sigma_j (Roy and
 *   Vetterli 2007);
 * - participation ratio (sum_i sigma_i^2)^2 / sum_i sigma_i^4.
 * Both are 0 when every row is zero.
 * @param[out] singular_values NULL, or (min(n, d)): sigma, descending.
 * @param[out] effective_rank NULL, or the entropy effective rank.
 * @param[out] participation_ratio NULL, or the participation ratio.
 * @param[in] W_dec Decoder rows (n_features, d), leading dimension ld; must be finite on S.
 * @param[in] n_features Number of rows F >= 1.
 * @param[in] d Row length >= 1.
 * @param[in] ld Leading dimension, >= d.
 * @param[in] subset Distinct ids in [0, F), or NULL for all features.
 * @param[in] n_subset Length of subset, >= 1; 0 when subset is NULL.
 * @param[in] n_threads Threads of the syrk; 0 = sae_default_threads().
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENUMERIC or ::SAE_ENOMEM. On failure
 *         nothing is written.
 */
SAE_API sae_status sae_ortho_spectrum(float *singular_values, double *effective_rank,
                                      double *participation_ratio, const float *W_dec,
                                      int64_t n_features, int64_t d, int64_t ld,
                                      const int32_t *subset, int64_t n_subset,
                                      int32_t n_threads);

/**
 * @brief sae_ortho_spectrum() of the decoder of a dictionary.
 * @param[out] singular_values NULL, or (min(n, d_in)), descending.
 * @param[out] effective_rank NULL, or the entropy effective rank.
 * @param[out] participation_ratio NULL, or the participation ratio.
 * @param[in] dict The dictionary.
 * @param[in] subset Distinct feature ids, or NULL for all.
 * @param[in] n_subset Length of subset; 0 when subset is NULL.
 * @param[in] n_threads Threads; 0 = sae_default_threads().
 * @return As sae_ortho_spectrum(); ::SAE_EINVAL for a NULL dict.
 */
SAE_API sae_status sae_ortho_dict_spectrum(float *singular_values, double *effective_rank,
                                           double *participation_ratio, const sae_dict *dict,
                                           const int32_t *subset, int64_t n_subset,
                                           int32_t n_threads);

/**
 * @brief sae-icm's reconstruction term: L = mean_t ||x_hat_t - x_t|| / (||x_t|| + 1e-8)
 *        (a relative L2 norm, not squared), and optionally dL/dx_hat.
 *
 * dL/dx_hat_t = (x_hat_t - x_t) / (n ||x_hat_t - x_t|| (||x_t|| + 1e-8)), taken as 0 where
 * x_hat_t = x_t. Sums in double.
 * @param[out] loss L.
 * @param[out] grad NULL, or (n, d) with leading dimension ldg: overwritten with dL/dx_hat.
 * @param[in] ldg Leading dimension of grad, >= d.
 * @param[in] x_hat Reconstructions (n, d), leading dimension ldxh >= d.
 * @param[in] ldxh Leading dimension of x_hat.
 * @param[in] x Inputs (n, d), leading dimension ldx >= d.
 * @param[in] ldx Leading dimension of x.
 * @param[in] n Rows (tokens), >= 1.
 * @param[in] d Row length, >= 1.
 * @return ::SAE_OK, ::SAE_EINVAL or ::SAE_ESHAPE.
 */
SAE_API sae_status sae_ortho_relative_l2(double *loss, float *grad, int64_t ldg,
                                         const float *x_hat, int64_t ldxh, const float *x,
                                         int64_t ldx, int64_t n, int64_t d);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_ORTHO_H */
