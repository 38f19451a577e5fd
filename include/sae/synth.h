/**
 * @file synth.h
 * @brief Synthetic data with known ground-truth features, and the metrics that score a learned
 *        dictionary against them (MMCS, MCC, shrinkage).
 *
 * @defgroup synth Synthetic ground truth
 * @brief The generator of Sharkey et al. / Cunningham et al. (HoagyC/sparse_coding) and the
 *        ground-truth metrics of Cunningham et al. and SAELens.
 *
 * Generator (MATH.md, "Evaluation"): G unit directions t_g in R^d, t_g = n_g / ||n_g|| with
 * n_g ~ N(0, I_d). Feature g fires in a row with probability p_g; when it fires its coefficient
 * is a_g = c_g * s_g with value c_g ~ U(0,1) and strength s_g ~ U(0,1). A row where nothing
 * fired gets one uniformly chosen feature with c_g = 1 (and s_g ~ U(0,1)). Then
 * x = sum_g a_g t_g + noise_std * N(0, I_d).
 *
 * Firing probabilities: weights w_g = decay^g (independent features) or
 * w_g = Phi(z_g) decay^g with z ~ N(0, Sigma) drawn once per batch of rows (correlated: a
 * Gaussian copula, Sigma = (R + R^T)/2 with R ~ U[0,1]^{GxG}, shifted by -1.001 lambda_min I
 * when lambda_min < 0). p = min(1, c w) with c chosen so that sum_g p_g = n_active, i.e.
 * mean(p) = n_active / G. HoagyC rescales only in the correlated mode; its independent mode,
 * p_g = decay^g * k / G, is the case n_active = (k / G) sum_g decay^g here.
 *
 * Reproducibility: row i (counted over all calls on one handle) draws its randomness from its
 * own Philox stream (seed, i), and the copula of batch b from its own stream (seed, b). So a
 * row's contents depend only on the seed, the options and its index: one call of 100 rows and
 * four calls of 25 give the same bytes, for any number of threads.
 *
 * Thread safety: an @ref sae_synth is used by one thread at a time and may move between
 * threads. The metric functions keep no state and may run concurrently; each runs its matrix
 * products on sae_default_threads() threads.
 * @{
 */
#ifndef SAE_SYNTH_H
#define SAE_SYNTH_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief A synthetic data generator. Opaque; one thread at a time. */
typedef struct sae_synth sae_synth;

/**
 * @brief Settings of a generator, fixed at creation.
 *
 * Initialise with ::SAE_SYNTH_OPTIONS_INIT; zero fields mean "default".
 */
typedef struct sae_synth_options {
    uint32_t struct_size; /**< sizeof(sae_synth_options), set by ::SAE_SYNTH_OPTIONS_INIT. */
    uint32_t correlated;  /**< 1: correlated firing through a Gaussian copula; 0: independent. */
    int64_t d;            /**< Dimension of x; 0 = 256. */
    int64_t n_features;   /**< Number G of ground-truth features; 0 = 512. */
    double n_active;      /**< Expected number of firing features per row, in (0, G]; 0 = 5. */
    double decay;         /**< Ratio of successive feature weights, in (0, 1]; 0 = 0.99. */
    double noise_std;     /**< Standard deviation of i.i.d. Gaussian noise on x; 0 = none. */
    int64_t batch_size;   /**< Correlated: rows that share one copula draw z; 0 = 4096
                               (HoagyC's batch). Rows [b*batch_size, (b+1)*batch_size) form
                               batch b, however the calls split them. */
    uint64_t seed;        /**< Seed of every random draw. */
    int32_t n_threads;    /**< Threads per sample call; 0 = sae_default_threads(). */
    uint32_t reserved;    /**< Zero. */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_synth_options;

/** @brief Initialiser for ::sae_synth_options. */
#define SAE_SYNTH_OPTIONS_INIT {sizeof(sae_synth_options), 0u, 0, 0, 0.0, 0.0, 0.0, 0, 0u, 0, 0u, NULL}

/**
 * @brief Make a generator: draws the directions and, when correlated, Sigma and its Cholesky
 *        factor.
 *
 * Costs O(G d) for the directions; correlated generators add O(G^3) (lambda_min by Lanczos and a
 * Cholesky factor, in plain C: about 0.5 s at G = 2048 and 5 s at G = 4096 on one core) and
 * G^2 doubles of memory; meant for G <= 4096.
 * @param[out] out The generator; free with sae_synth_free(). NULL on failure.
 * @param[in] options Settings, or NULL for the defaults.
 * @return ::SAE_OK; ::SAE_EINVAL for d < 1, G < 1, n_active <= 0 or > G, decay outside (0, 1],
 *         negative noise_std, batch_size or n_threads, correlated not 0 or 1;
 *         ::SAE_ENUMERIC for a non-finite option, or a decay so small that fewer than n_active
 *         weights decay^g are non-zero in double precision; ::SAE_ENOMEM.
 */
SAE_API sae_status sae_synth_create(sae_synth **out, const sae_synth_options *options);

/** @brief Free a generator. Accepts NULL. @param[in] synth The generator. */
SAE_API void sae_synth_free(sae_synth *synth);

/**
 * @brief Draw the next @p n rows and advance the row counter by @p n.
 *
 * Row i of this call is row (rows drawn before) + i of the generator; see the file
 * description for why the result does not depend on how rows are split across calls.
 * @param[in,out] synth The generator.
 * @param[in] n Rows to draw, >= 0.
 * @param[out] x (n, d), ldx >= d: the data rows.
 * @param[in] ldx Leading dimension of x.
 * @param[out] codes Optional (n, G), ldc >= G: the coefficients a_g = c_g s_g, so that
 *             x = codes * directions + noise. NULL to skip.
 * @param[in] ldc Leading dimension of codes (ignored when codes is NULL).
 * @return ::SAE_OK, ::SAE_EINVAL (NULL handle or x, negative n), ::SAE_ESHAPE (leading
 *         dimension too small), ::SAE_ENUMERIC (a correlated batch whose weights underflow).
 *         After an error the row counter has not moved; x and codes may be partly written.
 */
SAE_API sae_status sae_synth_sample(sae_synth *synth, int64_t n, float *x, int64_t ldx,
                                    float *codes, int64_t ldc);

/**
 * @brief The ground-truth directions.
 * @param[in] synth The generator.
 * @return (G, d) row-major, unit rows; borrowed, valid until sae_synth_free(). NULL for NULL.
 */
SAE_API const float *sae_synth_directions(const sae_synth *synth);

/**
 * @brief The firing probabilities p (G) in use.
 *
 * Independent features: fixed. Correlated: those of the batch holding the last row drawn
 * (batch 0 before the first draw); the contents change with sae_synth_sample().
 * @param[in] synth The generator.
 * @return (G) values in [0, 1] summing to n_active; borrowed, valid until sae_synth_free().
 *         NULL for NULL.
 */
SAE_API const float *sae_synth_probabilities(const sae_synth *synth);

/** @return The dimension d of the rows (0 for NULL). @param[in] synth The generator. */
SAE_API int64_t sae_synth_d(const sae_synth *synth);

/** @return The number G of ground-truth features (0 for NULL). @param[in] synth The generator. */
SAE_API int64_t sae_synth_n_features(const sae_synth *synth);

/**
 * @brief Mean max cosine similarity between two sets of directions, both ways.
 *
 * Rows are normalised internally (a zero row has cosine 0 with everything).
 * a_to_b = mean_i max_j cos(a_i, b_j); b_to_a = mean_j max_i cos(a_i, b_j) (signed cosines).
 * With A the learned decoder rows and B the ground truth, a_to_b is Cunningham et al.'s MMCS
 * (`mcs_to_fixed`) and b_to_a their "representedness" (`mean_max_cosine_similarity` of
 * replicate_toy_models.py). Computed tile by tile: O(na + nb) memory besides a fixed tile.
 * @param[in] A (na, d), lda >= d.
 * @param[in] na Rows of A, >= 1.
 * @param[in] lda Leading dimension of A.
 * @param[in] B (nb, d), ldb >= d.
 * @param[in] nb Rows of B, >= 1.
 * @param[in] ldb Leading dimension of B.
 * @param[in] d Columns of A and B, >= 1.
 * @param[out] mmcs_a_to_b Mean over rows of A; may be NULL.
 * @param[out] mmcs_b_to_a Mean over rows of B; may be NULL.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENUMERIC (a non-finite entry),
 *         ::SAE_ENOMEM.
 */
SAE_API sae_status sae_mmcs(const float *A, int64_t na, int64_t lda, const float *B, int64_t nb,
                            int64_t ldb, int64_t d, double *mmcs_a_to_b, double *mmcs_b_to_a);

/**
 * @brief Mean correlation coefficient: mean |cos| over the one-to-one matching of rows of A to
 *        rows of B that maximises the total |cos| (SAELens `synthetic/evals.py`, scipy
 *        `linear_sum_assignment`).
 *
 * min(na, nb) pairs are matched (Hungarian algorithm, O(min^2 max) time and na * nb floats of
 * memory for the |cos| matrix). Rows are normalised internally; a zero row has cosine 0.
 * @param[in] A (na, d), lda >= d.
 * @param[in] na Rows of A, 1 <= na <= INT32_MAX.
 * @param[in] lda Leading dimension of A.
 * @param[in] B (nb, d), ldb >= d.
 * @param[in] nb Rows of B, 1 <= nb <= INT32_MAX.
 * @param[in] ldb Leading dimension of B.
 * @param[in] d Columns of A and B, >= 1.
 * @param[out] mcc Sum of the matched |cos| divided by min(na, nb).
 * @param[out] match Optional (na): the row of B matched to each row of A, -1 for rows of A left
 *             unmatched (na > nb). NULL to skip.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENUMERIC (a non-finite entry),
 *         ::SAE_ENOMEM.
 */
SAE_API sae_status sae_mcc(const float *A, int64_t na, int64_t lda, const float *B, int64_t nb,
                           int64_t ldb, int64_t d, double *mcc, int32_t *match);

/**
 * @brief Shrinkage: mean over rows with ||x|| > 0 of ||x_hat|| / ||x|| (SAELens
 *        `synthetic/evals.py`); below 1 when an SAE shrinks its reconstructions (L1).
 * @param[in] x (n, d), ldx >= d: inputs.
 * @param[in] ldx Leading dimension of x.
 * @param[in] x_hat (n, d), ldx_hat >= d: reconstructions.
 * @param[in] ldx_hat Leading dimension of x_hat.
 * @param[in] n Rows, >= 1.
 * @param[in] d Columns, >= 1.
 * @param[out] shrinkage The mean ratio.
 * @return ::SAE_OK, ::SAE_EINVAL (also when every row of x is zero), ::SAE_ESHAPE,
 *         ::SAE_ENUMERIC (a non-finite entry).
 */
SAE_API sae_status sae_shrinkage(const float *x, int64_t ldx, const float *x_hat,
                                 int64_t ldx_hat, int64_t n, int64_t d, double *shrinkage);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_SYNTH_H */
