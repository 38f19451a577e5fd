/**
 * @file encoder.h
 * @brief `sae_encoder` and `sae_codes`: dense and sparse encode, decode, reconstruct.
 *
 * @defgroup encoder Encoders
 * @brief Run a dictionary on batches of activations.
 *
 * Formulas (MATH.md): x_n = norm_in(x); x' = x_n - b_dec (unless ::SAE_DICT_NO_B_DEC_INPUT);
 * pre = x' W_enc + b_enc; f = act(pre); x_hat = norm_out(f W_dec + b_dec); error = x - x_hat.
 *
 * Thread safety: an encoder holds per-call workspace; use one encoder per thread (many encoders
 * may share one dictionary). An encoder may move between threads. @ref sae_codes likewise.
 * @{
 */
#ifndef SAE_ENCODER_H
#define SAE_ENCODER_H

#include "dict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Workspace bound to one dictionary. Opaque; one thread at a time. */
typedef struct sae_encoder sae_encoder;

/** @brief A batch of sparse codes in CSR form. Opaque; one thread at a time. */
typedef struct sae_codes sae_codes;

/** @brief Bits of @ref sae_encoder_options.flags. */
enum sae_encode_flag {
    /** TopK dictionaries with a threshold: f = ReLU(pre) where ReLU(pre) > threshold_j instead of
     *  top-k (dictionary_learning `encode(use_threshold=True)`). */
    SAE_ENCODE_TOPK_THRESHOLD = 1u << 0
};

/** @brief Settings of an encoder, fixed at creation. Initialise with ::SAE_ENCODER_OPTIONS_INIT. */
typedef struct sae_encoder_options {
    uint32_t struct_size;   /**< sizeof(sae_encoder_options). */
    int32_t n_threads;      /**< Threads per call; 0 = sae_default_threads(). */
    int64_t max_rows;       /**< Rows per call to size the workspace for up front (0: grow on demand).
                                 Calls with at most this many rows allocate nothing. */
    uint32_t flags;         /**< Bits of ::sae_encode_flag. */
    uint32_t reserved;      /**< Zero. */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_encoder_options;

/** @brief Initialiser for ::sae_encoder_options. */
#define SAE_ENCODER_OPTIONS_INIT {sizeof(sae_encoder_options), 0, 0, 0u, 0u, NULL}

/**
 * @brief Make an encoder for a dictionary.
 * @param[out] out The encoder; free with sae_encoder_free().
 * @param[in] dict The dictionary; must outlive the encoder.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_encoder_create(sae_encoder **out, const sae_dict *dict,
                                      const sae_encoder_options *options);

/** @brief Free an encoder. Accepts NULL. @param[in] enc The encoder. */
SAE_API void sae_encoder_free(sae_encoder *enc);

/**
 * @brief Dense encode: f = act(pre).
 *
 * NaN in x propagates to the rows it touches (it is not an error).
 * @param[in,out] enc The encoder.
 * @param[in] n Rows.
 * @param[in] x (n, d_in), ldx >= d_in.
 * @param[in] ldx Leading dimension of x.
 * @param[out] f (n, d_sae), ldf >= d_sae.
 * @param[in] ldf Leading dimension of f.
 * @param[out] pre Optional (n, d_sae), ldpre >= d_sae: the raw pre-activations x' W_enc + b_enc
 *             (Gated: the magnitude pre-activation; SAELens `hook_sae_acts_pre`). NULL to skip.
 * @param[in] ldpre Leading dimension of pre (ignored when pre is NULL).
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_encoder_encode(sae_encoder *enc, int64_t n, const float *x, int64_t ldx,
                                      float *f, int64_t ldf, float *pre, int64_t ldpre);

/**
 * @brief Sparse encode into CSR codes, never building the (n, d_sae) matrix in full.
 *
 * Only non-zero features are stored; ids ascend within a row.
 * @param[in,out] enc The encoder.
 * @param[in] n Rows.
 * @param[in] x (n, d_in), ldx >= d_in.
 * @param[in] ldx Leading dimension of x.
 * @param[out] codes Replaced by the codes of the n rows.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_encoder_encode_sparse(sae_encoder *enc, int64_t n, const float *x,
                                             int64_t ldx, sae_codes *codes);

/**
 * @brief Decode dense codes: x_hat = norm_out(f W_dec + b_dec).
 *
 * For ::SAE_NORM_CONSTANT_RESCALE and ::SAE_NORM_LAYER_NORM dictionaries the per-row statistics
 * come from the last encode on this encoder, which must have had the same n (as SAELens does);
 * otherwise ::SAE_EINVAL. sae_encoder_reconstruct() needs no such pairing.
 * @param[in,out] enc The encoder.
 * @param[in] n Rows.
 * @param[in] f (n, d_sae), ldf >= d_sae.
 * @param[in] ldf Leading dimension of f.
 * @param[out] x_hat (n, d_in), ldx >= d_in.
 * @param[in] ldx Leading dimension of x_hat.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE.
 */
SAE_API sae_status sae_encoder_decode(sae_encoder *enc, int64_t n, const float *f, int64_t ldf,
                                      float *x_hat, int64_t ldx);

/**
 * @brief Decode CSR codes in O(nnz * d_in) without building (n, d_sae).
 *
 * Normalisation statistics as in sae_encoder_decode().
 * @param[in,out] enc The encoder.
 * @param[in] n Rows.
 * @param[in] offsets (n + 1), offsets[0] = 0, non-decreasing.
 * @param[in] indices (offsets[n]) feature ids in [0, d_sae); out-of-range ids are ::SAE_ERANGE.
 * @param[in] values (offsets[n]).
 * @param[out] x_hat (n, d_in), ldx >= d_in.
 * @param[in] ldx Leading dimension of x_hat.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ERANGE.
 */
SAE_API sae_status sae_encoder_decode_sparse(sae_encoder *enc, int64_t n, const int64_t *offsets,
                                             const int32_t *indices, const float *values,
                                             float *x_hat, int64_t ldx);

/**
 * @brief Encode and decode in one call: x_hat and optionally error = x - x_hat.
 *
 * Uses the sparse path internally (no (n, d_sae) buffer beyond a bounded block).
 * @param[in,out] enc The encoder.
 * @param[in] n Rows.
 * @param[in] x (n, d_in), ldx >= d_in.
 * @param[in] ldx Leading dimension of x.
 * @param[out] x_hat (n, d_in), ldxh >= d_in.
 * @param[in] ldxh Leading dimension of x_hat.
 * @param[out] error Optional (n, d_in), lde >= d_in, or NULL.
 * @param[in] lde Leading dimension of error.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_encoder_reconstruct(sae_encoder *enc, int64_t n, const float *x,
                                           int64_t ldx, float *x_hat, int64_t ldxh, float *error,
                                           int64_t lde);

/**
 * @brief Make an empty set of codes.
 * @param[out] out The codes; free with sae_codes_free().
 * @param[in] allocator NULL for the default.
 * @return ::SAE_OK or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_codes_create(sae_codes **out, const sae_allocator *allocator);

/** @brief Free codes. Accepts NULL. @param[in] codes The codes. */
SAE_API void sae_codes_free(sae_codes *codes);

/**
 * @brief Reserve room so that later encodes of up to @p rows rows with up to @p nnz non-zeros
 *        allocate nothing.
 * @param[in,out] codes The codes.
 * @param[in] rows Rows.
 * @param[in] nnz Non-zeros.
 * @return ::SAE_OK, ::SAE_EINVAL or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_codes_reserve(sae_codes *codes, int64_t rows, int64_t nnz);

/** @return Number of rows. @param[in] codes The codes. */
SAE_API int64_t sae_codes_rows(const sae_codes *codes);
/** @return Number of stored non-zeros (offsets[rows]). @param[in] codes The codes. */
SAE_API int64_t sae_codes_nnz(const sae_codes *codes);
/** @return Borrowed (rows + 1) row offsets. @param[in] codes The codes. */
SAE_API const int64_t *sae_codes_offsets(const sae_codes *codes);
/** @return Borrowed (nnz) feature ids, ascending within a row. @param[in] codes The codes. */
SAE_API const int32_t *sae_codes_indices(const sae_codes *codes);
/** @return Borrowed (nnz) values. @param[in] codes The codes. */
SAE_API const float *sae_codes_values(const sae_codes *codes);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_ENCODER_H */
