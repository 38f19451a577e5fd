/**
 * @file patch.h
 * @brief `sae_patch`: interventions at one hook point (record, splice, ablate, clamp, steer,
 *        edit), applied in place to a (n_tokens, d_in) activation buffer; llama.cpp
 *        control-vector export of steering directions.
 *
 * @defgroup patch Patches
 * @brief What an inference engine calls at a hook point (ARCHITECTURE.md, "Embed in an engine").
 *
 * A patch belongs to one dictionary (shared, immutable, must outlive the patch) and one hook
 * point. sae_patch_apply() changes the rows of `x` (n_tokens, d_in), ld >= d_in, in place.
 * Everything it needs is allocated at creation: with the workspace sized for
 * sae_patch_options.max_tokens rows, **an apply allocates nothing**, for any n_tokens (1 for a
 * decode step, or a whole prompt; more than max_tokens rows are processed in blocks of
 * max_tokens).
 *
 * Notation (MATH.md): f = encode(x) the codes of a row, x_hat = decode(f), error e = x - x_hat.
 * The feature edits (ablate, clamp, edit) keep the error term: the patched row is
 * x' = decode(f') + e = x + decode(f') - decode(f), with f' equal to f except on the edited
 * feature set S. It is computed without a full reconstruction as
 *   x' = x + sum_{j in S} (f'_j - f_j) d~_j,
 * where d~_j is the model-space direction of feature j: W_dec[j] / ||d_j|| when the dictionary
 * has ::SAE_DICT_RESCALE_BY_DECODER_NORM, and divided by act_scale for ::SAE_NORM_SCALE. Rows
 * whose edited codes do not change (f'_S = f_S) are left bit-identical. For the per-row input
 * normalisations (::SAE_NORM_LAYER_NORM, ::SAE_NORM_CONSTANT_RESCALE) the output
 * normalisation depends on the row's statistics, so the change is computed by the encoder's
 * sparse decoder with those statistics, as decode(Delta) - decode(0) for the sparse
 * Delta = f' - f (two sparse decodes per block instead of the direct sum); it is still
 * O(n_tokens (|S| + 2) d_in) after the encode.
 *
 * Cost of an apply: one dense encode of the block (the (max_tokens, d_sae) product) for record
 * (codes), splice and the feature edits; O(n_tokens d_in) for steer and record (activations).
 *
 * Composition: several patches at one hook point are applied in order by
 * sae_patch_apply_list(); each one sees the buffer as the previous ones left it (a clamp after a
 * steer encodes the steered activations). Record first to observe the clean activations, last to
 * observe the patched ones.
 *
 * NaN or Inf in x pass through to the rows they touch (not an error); the constructors reject
 * non-finite parameters (::SAE_ENUMERIC).
 *
 * Thread safety: a patch holds workspace (and the resample generator and the record buffer):
 * one thread at a time; it may move between threads. Many patches may share one dictionary.
 * @{
 */
#ifndef SAE_PATCH_H
#define SAE_PATCH_H

#include "dict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief An intervention at one hook point. Opaque; one thread at a time. */
typedef struct sae_patch sae_patch;

/** @brief What a patch does (sae_patch_kind()). */
typedef enum sae_patch_kind_id {
    SAE_PATCH_RECORD = 0, /**< Append activations and/or sparse codes to a bounded buffer. */
    SAE_PATCH_SPLICE = 1, /**< Replace x by its reconstruction (optionally plus the error). */
    SAE_PATCH_ABLATE = 2, /**< Zero, mean or resample ablation of a feature set, error kept. */
    SAE_PATCH_CLAMP = 3,  /**< Set one feature's code to a value, error kept. */
    SAE_PATCH_STEER = 4,  /**< Add alpha * d_j. */
    SAE_PATCH_EDIT = 5    /**< Set a feature set's codes to those of a source row, error kept. */
} sae_patch_kind_id;

/** @brief Bits of the `what` argument of sae_patch_create_record(). */
enum sae_record_flag {
    SAE_RECORD_ACTIVATIONS = 1u << 0, /**< Copy the rows of x. */
    SAE_RECORD_CODES = 1u << 1        /**< Store the sparse codes of the rows (CSR). */
};

/** @brief Settings shared by every patch, fixed at creation. Initialise with
 *         ::SAE_PATCH_OPTIONS_INIT. */
typedef struct sae_patch_options {
    uint32_t struct_size;  /**< sizeof(sae_patch_options). */
    int32_t n_threads;     /**< Threads of the encoder per call; 0 = sae_default_threads(). */
    int64_t max_tokens;    /**< Rows the workspace is sized for; 0: between 256 and 1024,
                                enough for a workspace about the size of the two weight
                                matrices and for two threads' work. Larger calls run in blocks of
                                this many rows, still allocating nothing. The feature edits and
                                record (codes) hold max_tokens * d_sae floats. */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_patch_options;

/** @brief Initialiser for ::sae_patch_options. */
#define SAE_PATCH_OPTIONS_INIT {sizeof(sae_patch_options), 0, 0, NULL}

/**
 * @brief A recording patch: appends what passes by to a buffer of bounded capacity; x is not
 *        changed.
 *
 * The buffer is read with sae_patch_get_record() and emptied with sae_patch_clear_record().
 * An apply that would overflow it (tokens or non-zeros) appends nothing and returns
 * ::SAE_ERANGE ("record buffer full").
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary (encodes the codes; gives d_in).
 * @param[in] what Non-zero combination of ::sae_record_flag bits.
 * @param[in] capacity_tokens Rows the buffer holds, >= 1.
 * @param[in] capacity_nnz With ::SAE_RECORD_CODES: non-zero codes the buffer holds; 0 means
 *            capacity_tokens * k for TopK, capacity_tokens * d_sae otherwise. Ignored without.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_record(sae_patch **out, const sae_dict *dict, uint32_t what,
                                           int64_t capacity_tokens, int64_t capacity_nnz,
                                           const sae_patch_options *options);

/**
 * @brief A splice: x <- x_hat = decode(encode(x)) (SAELens `run_with_saes`).
 *
 * With @p keep_error the patched row is x_hat + (x - x_hat) = x: the forward values are x,
 * left bit-identical (nothing is computed). It is the base on which the feature edits are
 * built and lets a host treat "SAE with error term" as a node.
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary.
 * @param[in] keep_error Non-zero: add the error term back.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_splice(sae_patch **out, const sae_dict *dict,
                                           int32_t keep_error, const sae_patch_options *options);

/**
 * @brief Zero ablation of a feature set S, error kept: f'_S = 0 (SHIFT; feature-circuits
 *        `ablation.py` "zero").
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary.
 * @param[in] features (n_features) distinct ids in [0, d_sae); copied.
 * @param[in] n_features |S| >= 1.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL (NULL, duplicates), ::SAE_ERANGE (id), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_ablate_zero(sae_patch **out, const sae_dict *dict,
                                                const int32_t *features, int64_t n_features,
                                                const sae_patch_options *options);

/**
 * @brief Mean ablation of a feature set S, error kept: f'_j = mean[j] for j in S
 *        (feature-circuits' default ablation; mean = the codes averaged over a batch).
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary.
 * @param[in] features (n_features) distinct ids in [0, d_sae); copied.
 * @param[in] n_features |S| >= 1.
 * @param[in] mean (n_mean) mean code vector, finite; the entries of S are copied.
 * @param[in] n_mean Length of mean; must be d_sae (else ::SAE_ESHAPE).
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE, ::SAE_ENUMERIC, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_ablate_mean(sae_patch **out, const sae_dict *dict,
                                                const int32_t *features, int64_t n_features,
                                                const float *mean, int64_t n_mean,
                                                const sae_patch_options *options);

/**
 * @brief Resample ablation of a feature set S, error kept: for each token a row p of the pool
 *        is drawn uniformly (with replacement) and f'_j = pool[p, j] for j in S.
 *
 * The draws come from an ::sae_rng seeded with @p seed, one draw per token in order, continuing
 * from one apply to the next: the same seed and the same sequence of n_tokens give the same
 * draws, whatever max_tokens is.
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary.
 * @param[in] features (n_features) distinct ids in [0, d_sae); copied.
 * @param[in] n_features |S| >= 1.
 * @param[in] pool (pool_rows, pool_cols), ld_pool >= pool_cols: code rows (e.g. the codes of a
 *            patch batch), finite; the columns of S are copied.
 * @param[in] pool_rows Rows of the pool, >= 1.
 * @param[in] pool_cols Columns; must be d_sae (else ::SAE_ESHAPE).
 * @param[in] ld_pool Leading dimension of pool.
 * @param[in] seed Seed of the draws.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE, ::SAE_ENUMERIC, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_ablate_resample(sae_patch **out, const sae_dict *dict,
                                                    const int32_t *features, int64_t n_features,
                                                    const float *pool, int64_t pool_rows,
                                                    int64_t pool_cols, int64_t ld_pool,
                                                    uint64_t seed,
                                                    const sae_patch_options *options);

/**
 * @brief Clamp feature j to a value, error kept: f'_j = value.
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary.
 * @param[in] feature j in [0, d_sae).
 * @param[in] value The code value, finite.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ERANGE, ::SAE_ENUMERIC, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_clamp(sae_patch **out, const sae_dict *dict, int32_t feature,
                                          float value, const sae_patch_options *options);

/**
 * @brief Feature edit (Makelov et al., SAE edits by exchanging features): set the codes of S to
 *        their values in a source code row, error kept: f'_j = source[j] for j in S.
 *
 * With source = the codes of the counterfactual activation a', the features of S active in a are
 * removed and those active in a' inserted: x' = x - sum_{j in S} f_j(a) d~_j +
 * sum_{j in S} f_j(a') d~_j (MATH.md, "Control").
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary.
 * @param[in] features (n_features) distinct ids in [0, d_sae); copied.
 * @param[in] n_features |S| >= 1.
 * @param[in] source (n_source) a code row, finite; the entries of S are copied.
 * @param[in] n_source Length of source; must be d_sae (else ::SAE_ESHAPE).
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE, ::SAE_ENUMERIC, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_edit(sae_patch **out, const sae_dict *dict,
                                         const int32_t *features, int64_t n_features,
                                         const float *source, int64_t n_source,
                                         const sae_patch_options *options);

/**
 * @brief Steering: x <- x + alpha * d_j for every row (SAELens steering tutorial), d_j the raw
 *        decoder row W_dec[j] or d_j / ||d_j|| with @p normalize.
 *
 * The direction is taken as stored, in model units: neither ::SAE_DICT_RESCALE_BY_DECODER_NORM
 * nor the input normalisation changes it (see sae_steering_direction()).
 * @param[out] out The patch; free with sae_patch_free().
 * @param[in] dict The dictionary.
 * @param[in] feature j in [0, d_sae).
 * @param[in] alpha Strength, finite.
 * @param[in] normalize Non-zero: use the unit direction.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ERANGE, ::SAE_ENUMERIC (alpha, or a zero row with
 *         normalize), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_patch_create_steer(sae_patch **out, const sae_dict *dict, int32_t feature,
                                          float alpha, int32_t normalize,
                                          const sae_patch_options *options);

/** @brief Free a patch. Accepts NULL. @param[in] patch The patch. */
SAE_API void sae_patch_free(sae_patch *patch);

/** @return The ::sae_patch_kind_id of a patch, or -1 for NULL. @param[in] patch The patch. */
SAE_API int32_t sae_patch_kind(const sae_patch *patch);

/**
 * @brief Apply a patch in place. Allocates nothing.
 *
 * The signature matches a host's hook callback, so a host can call it with the patch as its
 * user pointer.
 * @param[in,out] patch The patch.
 * @param[in,out] x (n_tokens, d_in), ld >= d_in: the activations at the hook point.
 * @param[in] n_tokens Rows, >= 0 (any number: larger than max_tokens runs in blocks).
 * @param[in] ld Leading dimension of x.
 * @return ::SAE_OK, ::SAE_EINVAL (NULL, negative n_tokens), ::SAE_ESHAPE (ld < d_in),
 *         ::SAE_ERANGE (record buffer full: nothing appended, x unchanged).
 */
SAE_API sae_status sae_patch_apply(sae_patch *patch, float *x, int64_t n_tokens, int64_t ld);

/**
 * @brief Apply several patches of one hook point in order: patches[0] first, each on the
 *        buffer the previous one left.
 *
 * Every patch must have the same d_in (checked before any is applied, else ::SAE_ESHAPE). On an
 * error from patch i, patches 0..i-1 have been applied; the message names i.
 * @param[in] patches (n_patches) the patches; the same patch may appear more than once.
 * @param[in] n_patches Count, >= 0.
 * @param[in,out] x (n_tokens, d_in), ld >= d_in.
 * @param[in] n_tokens Rows, >= 0.
 * @param[in] ld Leading dimension of x.
 * @return As sae_patch_apply().
 */
SAE_API sae_status sae_patch_apply_list(sae_patch *const *patches, int32_t n_patches, float *x,
                                        int64_t n_tokens, int64_t ld);

/** @brief A view of a recording patch's buffer (sae_patch_get_record()). Borrowed pointers,
 *         valid until the next apply, clear or free of the patch. */
typedef struct sae_patch_record {
    uint32_t struct_size;      /**< sizeof(sae_patch_record). */
    uint32_t what;             /**< The ::sae_record_flag bits the patch records. */
    int64_t n_tokens;          /**< Rows recorded so far. */
    int64_t nnz;               /**< Non-zero codes recorded (0 without ::SAE_RECORD_CODES). */
    int64_t d_in;              /**< Width of an activation row. */
    const float *activations;  /**< (n_tokens, d_in) rows, or NULL. */
    const int64_t *offsets;    /**< (n_tokens + 1) CSR row offsets, or NULL. */
    const int32_t *indices;    /**< (nnz) feature ids, ascending within a row, or NULL. */
    const float *values;       /**< (nnz) code values, or NULL. */
} sae_patch_record;

/** @brief Initialiser for ::sae_patch_record. */
#define SAE_PATCH_RECORD_INIT {sizeof(sae_patch_record), 0u, 0, 0, 0, NULL, NULL, NULL, NULL}

/**
 * @brief Read what a recording patch holds.
 * @param[in] patch A ::SAE_PATCH_RECORD patch.
 * @param[out] out Filled; set out->struct_size first (::SAE_PATCH_RECORD_INIT does).
 * @return ::SAE_OK or ::SAE_EINVAL (NULL, not a recording patch).
 */
SAE_API sae_status sae_patch_get_record(const sae_patch *patch, sae_patch_record *out);

/**
 * @brief Empty a recording patch's buffer (the capacity stays allocated).
 * @param[in,out] patch A ::SAE_PATCH_RECORD patch.
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_patch_clear_record(sae_patch *patch);

/**
 * @brief The steering direction alpha * d_j (d_j / ||d_j|| with @p normalize), the vector the
 *        steer patch adds and sae_steering_export_gguf() writes.
 * @param[out] out (n_out) the direction.
 * @param[in] n_out Length of out; must be d_in (else ::SAE_ESHAPE).
 * @param[in] dict The dictionary.
 * @param[in] feature j in [0, d_sae).
 * @param[in] alpha Strength, finite.
 * @param[in] normalize Non-zero: unit direction.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE, ::SAE_ENUMERIC.
 */
SAE_API sae_status sae_steering_direction(float *out, int64_t n_out, const sae_dict *dict,
                                          int32_t feature, float alpha, int32_t normalize);

/**
 * @brief Write steering directions as a llama.cpp control vector (GGUF v3), atomically.
 *
 * The file holds the keys general.architecture = "controlvector", controlvector.model_hint
 * (string) and controlvector.layer_count (INT32, = n_layers), and one F32 tensor
 * `direction.<layers[i]>` of shape [d] per direction, data aligned to 32 bytes. llama.cpp
 * (`--control-vector FILE`) adds direction.L to the output of its block L (0-based, i.e. our
 * hook `resid_post.L`); it cannot steer block 0, so layers must be >= 1.
 * @param[in] path Output file (replaced atomically).
 * @param[in] model_hint The model's general.architecture in llama.cpp (e.g. "llama"); non-empty.
 * @param[in] d Width of a direction (n_embd), >= 1.
 * @param[in] n_layers Number of directions, >= 1.
 * @param[in] layers (n_layers) distinct llama.cpp layer indices, >= 1.
 * @param[in] directions (n_layers, d), ld >= d: finite.
 * @param[in] ld Leading dimension of directions.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (layer), ::SAE_ENUMERIC, ::SAE_EIO.
 */
SAE_API sae_status sae_steering_export_gguf(const char *path, const char *model_hint, int64_t d,
                                            int32_t n_layers, const int32_t *layers,
                                            const float *directions, int64_t ld);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_PATCH_H */
