/**
 * @file eval.h
 * @brief Evaluate a dictionary on activations: reconstruction (MSE, FVU, explained variance,
 *        relative reconstruction bias, shrinkage), sparsity (L0) and feature density (dead and
 *        dense features, the log10 density histogram).
 *
 * @defgroup eval Evaluation
 * @brief Metrics of a dictionary over the rows of a source, in one streaming pass with bounded
 *        memory (MATH.md, "Evaluation"; REFERENCE.md, SAELens `evals.py`).
 *
 * Over N rows x_b with reconstructions x_hat_b and codes f_b (the encoder's, sparse):
 * - mse = (1/N) sum_b ||x_b - x_hat_b||^2;
 * - fvu = sum_b ||x_b - x_hat_b||^2 / sum_b ||x_b - mean x||^2 and explained_variance =
 *   1 - fvu (centred: SAELens v6.45's fixed formula);
 * - l0 = (1/N) sum_b #{j : f_bj != 0};
 * - relative_reconstruction_bias = sum_b ||x_hat_b||^2 / sum_b <x_b, x_hat_b> (Gated SAE paper,
 *   eq. 10): 1 for an unbiased reconstruction, below 1 when the SAE shrinks;
 * - shrinkage = mean over rows with ||x_b|| > 0 of ||x_hat_b|| / ||x_b|| (SAELens `l2_ratio`;
 *   the same quantity as sae_shrinkage());
 * - the density of feature j is p_j = #{b : f_bj != 0} / N. Dead: p_j = 0 (never fired over
 *   the rows). Dense: p_j > dense_threshold. The histogram counts the features that fired by
 *   log10 p_j in ::SAE_EVAL_DENSITY_BINS bins of width ::SAE_EVAL_DENSITY_BIN_WIDTH from
 *   ::SAE_EVAL_DENSITY_LOG10_MIN: bin i holds log10 p in [-10 + 0.5 i, -9.5 + 0.5 i), the last
 *   bin also p = 1, the first also anything lower (SAELens logs log10(p + 1e-10), so that its
 *   never-fired features sit at -10; here they are n_dead, outside the bins).
 *
 * Sums are in double precision; the centred variance is merged block by block (Chan et al.),
 * so it stays accurate when the mean is large against the spread.
 *
 * Thread safety: the call uses the dictionary read-only (a dictionary may be evaluated by
 * several threads at once, each with its own source). The source is used by this call only.
 * @{
 */
#ifndef SAE_EVAL_H
#define SAE_EVAL_H

#include "dict.h"
#include "source.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Number of bins of @ref sae_eval_result.density_histogram. */
#define SAE_EVAL_DENSITY_BINS 20
/** @brief log10 of the firing frequency at the lower edge of the first density bin. */
#define SAE_EVAL_DENSITY_LOG10_MIN (-10.0)
/** @brief Width of a density bin, in decades of firing frequency. */
#define SAE_EVAL_DENSITY_BIN_WIDTH 0.5

/** @brief Settings of sae_dict_evaluate(). Initialise with ::SAE_EVAL_OPTIONS_INIT. */
typedef struct sae_eval_options {
    uint32_t struct_size;   /**< sizeof(sae_eval_options), set by ::SAE_EVAL_OPTIONS_INIT. */
    int32_t n_threads;      /**< Threads of the encoder; 0 = sae_default_threads(). */
    /** Rows to evaluate; 0: one epoch, i.e. sae_source_rows() rows when the source knows its
     *  size (also when it loops), else until it ends. Fewer when the source ends first. */
    int64_t max_rows;
    int64_t block_rows;     /**< Rows encoded at a time (bounds the memory); 0 = 4096. */
    /** A feature firing on more than this fraction of the rows is dense; in (0, 1], 0 = 0.1
     *  (one token in ten, the usual cutoff for "dense latents"). */
    double dense_threshold;
    uint32_t encode_flags;  /**< Bits of ::sae_encode_flag for the encoder. */
    uint32_t reserved;      /**< Zero. */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_eval_options;

/** @brief Initialiser for ::sae_eval_options. */
#define SAE_EVAL_OPTIONS_INIT {sizeof(sae_eval_options), 0, 0, 0, 0.0, 0u, 0u, NULL}

/** @brief What sae_dict_evaluate() measured (formulas in @ref eval). Initialise with
 *         ::SAE_EVAL_RESULT_INIT. */
typedef struct sae_eval_result {
    uint32_t struct_size;   /**< sizeof(sae_eval_result). */
    uint32_t reserved;      /**< Zero. */
    int64_t rows;           /**< Rows evaluated, N. */
    int64_t d_sae;          /**< Features of the dictionary. */
    double mse;             /**< mean_b ||x - x_hat||^2 (summed over d_in). */
    double fvu;             /**< Fraction of variance unexplained; NaN when the rows have no
                                 variance (a single row, or identical rows). */
    double explained_variance; /**< 1 - fvu. */
    double l0;              /**< Mean number of non-zero codes per row. */
    double relative_reconstruction_bias; /**< sum ||x_hat||^2 / sum <x, x_hat>; NaN when the
                                              denominator is 0. */
    double shrinkage;       /**< Mean ||x_hat|| / ||x|| over rows with ||x|| > 0; NaN if none. */
    double dense_threshold; /**< The density above which a feature counted as dense. */
    int64_t n_dead;         /**< Features that never fired. */
    int64_t n_dense;        /**< Features with density > dense_threshold. */
    /** Features that fired, by log10 density (bins in @ref eval); sums to d_sae - n_dead. */
    int64_t density_histogram[SAE_EVAL_DENSITY_BINS];
} sae_eval_result;

/** @brief Initialiser for ::sae_eval_result. */
#define SAE_EVAL_RESULT_INIT                                                                     \
    {sizeof(sae_eval_result), 0u, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, {0}}

/**
 * @brief Evaluate a dictionary over rows of a source (formulas in @ref eval).
 *
 * Reads the source from where it stands, block_rows rows at a time, and encodes each block
 * sparsely and decodes it: memory is about block_rows * (2 d_in + nnz per block) floats plus
 * d_sae counters and 2 d_in doubles, whatever the number of rows.
 * @param[out] out The metrics, filled (up to min(out->struct_size, sizeof)) on success only.
 *             Set out->struct_size first (::SAE_EVAL_RESULT_INIT does).
 * @param[out] fire_counts Optional (d_sae): for each feature, the rows on which it fired. NULL
 *             to skip. Written on success only.
 * @param[in] dict The dictionary.
 * @param[in,out] source Rows of width d_in.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK; ::SAE_EINVAL (NULL arguments, bad options, no rows to evaluate);
 *         ::SAE_ESHAPE (the source's width is not d_in); ::SAE_ENUMERIC (a NaN or infinity
 *         in the rows, named by its position); ::SAE_ENOMEM; or the error of the source.
 */
SAE_API sae_status sae_dict_evaluate(sae_eval_result *out, int64_t *fire_counts,
                                     const sae_dict *dict, sae_source *source,
                                     const sae_eval_options *options);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_EVAL_H */
