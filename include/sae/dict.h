/**
 * @file dict.h
 * @brief `sae_dict`: one sparse autoencoder (weights, architecture, conventions, metadata).
 *
 * @defgroup dict Dictionaries
 * @brief Create, wrap, inspect and free SAEs of every common architecture.
 *
 * Canonical layout (SAELens): W_enc (d_in, d_sae) row-major so that pre = x' W_enc + b_enc;
 * W_dec (d_sae, d_in) row-major, row j is the decoder direction d_j; biases are vectors.
 * The loaders in io.h convert every other library's layout into this one.
 *
 * Thread safety: a dictionary is immutable once made and may be shared by any number of
 * threads (each with its own @ref sae_encoder).
 * @{
 */
#ifndef SAE_DICT_H
#define SAE_DICT_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief An SAE. Opaque, immutable, shareable between threads. */
typedef struct sae_dict sae_dict;

/** @brief Architectures (the activation function between encoder and decoder). */
typedef enum sae_arch {
    SAE_ARCH_STANDARD = 0,  /**< f = ReLU(pre). */
    SAE_ARCH_TOPK = 1,      /**< Keep the k largest entries of each row (see ::SAE_DICT_RELU_BEFORE_TOPK). */
    SAE_ARCH_BATCHTOPK = 2, /**< Trained with batch top-k; inference is the JumpReLU rule with its threshold. */
    SAE_ARCH_JUMPRELU = 3,  /**< f = ReLU(pre) where pre > threshold_j (strict), else 0. */
    SAE_ARCH_GATED = 4      /**< f = [x' W_enc + b_gate > 0] * ReLU((x' W_enc) * exp(r_mag) + b_mag). */
} sae_arch;

/** @brief How input activations are normalised before encoding (and restored after decoding). */
typedef enum sae_input_norm {
    SAE_NORM_NONE = 0,          /**< x is used as it is. */
    SAE_NORM_SCALE = 1,         /**< x * act_scale in, x_hat / act_scale out (SAELens expected_average_only_in). */
    SAE_NORM_CONSTANT_RESCALE = 2, /**< Per row x * sqrt(d_in)/||x|| in, divided back out (SAELens constant_norm_rescale). */
    SAE_NORM_LAYER_NORM = 3     /**< Per row (x - mu)/(std + 1e-5), std unbiased; x_hat * std + mu out (SAELens layer_norm, OpenAI TopK). */
} sae_input_norm;

/** @brief Bits of @ref sae_dict_config.flags. Zero gives the SAELens defaults. */
enum sae_dict_flag {
    /** Do not subtract b_dec from the input before encoding (apply_b_dec_to_input = false). */
    SAE_DICT_NO_B_DEC_INPUT = 1u << 0,
    /** TopK: apply ReLU before selecting the top k (dictionary_learning, sparsify, sae-icm);
     *  without it top-k is taken first and ReLU applied to the kept values (SAELens, OpenAI). */
    SAE_DICT_RELU_BEFORE_TOPK = 1u << 1,
    /** Multiply pre-activations by ||d_j|| before the activation and divide codes by it before
     *  decoding (SAELens rescale_acts_by_decoder_norm). */
    SAE_DICT_RESCALE_BY_DECODER_NORM = 1u << 2
};

/**
 * @brief Settings of a dictionary, fixed at creation.
 *
 * Initialise with ::SAE_DICT_CONFIG_INIT; zero fields mean "default".
 */
typedef struct sae_dict_config {
    uint32_t struct_size;  /**< sizeof(sae_dict_config), set by ::SAE_DICT_CONFIG_INIT. */
    int32_t arch;          /**< An ::sae_arch value. */
    int64_t d_in;          /**< Input width (model dimension at the hook point). */
    int64_t d_sae;         /**< Number of features F. */
    int64_t k;             /**< TopK / BatchTopK: features kept per row (0 for others). */
    uint32_t flags;        /**< Bits of ::sae_dict_flag. */
    int32_t input_norm;    /**< An ::sae_input_norm value. */
    float act_scale;       /**< ::SAE_NORM_SCALE factor s (0 means 1). */
    uint32_t reserved;     /**< Zero. */
    const char *model_name; /**< Metadata: model the SAE was trained on, or NULL. Copied. */
    const char *hook_name;  /**< Metadata: hook point, e.g. "blocks.3.hook_resid_post", or NULL. Copied. */
} sae_dict_config;

/** @brief Initialiser for ::sae_dict_config. */
#define SAE_DICT_CONFIG_INIT {sizeof(sae_dict_config), 0, 0, 0, 0, 0u, 0, 0.0f, 0u, NULL, NULL}

/**
 * @brief Pointers to the weights of a dictionary, in the canonical layout.
 *
 * Arrays an architecture does not use must be NULL. Optional arrays may be NULL (zeros).
 */
typedef struct sae_dict_weights {
    uint32_t struct_size;    /**< sizeof(sae_dict_weights), set by ::SAE_DICT_WEIGHTS_INIT. */
    uint32_t reserved;       /**< Zero. */
    const float *W_enc;      /**< (d_in, d_sae), required. */
    const float *b_enc;      /**< (d_sae), optional; not used by Gated. */
    const float *W_dec;      /**< (d_sae, d_in), required. */
    const float *b_dec;      /**< (d_in), optional. */
    const float *threshold;  /**< (d_sae): required for JumpReLU and BatchTopK; optional for TopK
                                  (used by ::SAE_ENCODE_TOPK_THRESHOLD). */
    const float *b_gate;     /**< Gated: (d_sae), optional. */
    const float *b_mag;      /**< Gated: (d_sae), optional. */
    const float *r_mag;      /**< Gated: (d_sae), optional (zeros: W_mag = W_enc). */
} sae_dict_weights;

/** @brief Initialiser for ::sae_dict_weights. */
#define SAE_DICT_WEIGHTS_INIT {sizeof(sae_dict_weights), 0u, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL}

/**
 * @brief Make a dictionary from arrays, copying them.
 *
 * Checks the configuration (sizes, k in 1..d_sae for TopK, finite act_scale) and that every
 * weight is finite; a NaN or Inf is ::SAE_ENUMERIC naming the tensor and the index.
 * @param[out] out The new dictionary; free with sae_dict_free().
 * @param[in] config Architecture, sizes and conventions.
 * @param[in] weights The arrays (canonical layout); copied.
 * @param[in] allocator Allocator for everything the dictionary owns, or NULL for the default.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENUMERIC or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_dict_create(sae_dict **out, const sae_dict_config *config,
                                   const sae_dict_weights *weights, const sae_allocator *allocator);

/**
 * @brief Make a dictionary that borrows the caller's arrays (no copy).
 *
 * Same checks as sae_dict_create(). The arrays must stay valid and unchanged until
 * sae_dict_free(); the dictionary still owns small derived vectors (decoder norms).
 * @param[out] out The new dictionary.
 * @param[in] config Architecture, sizes and conventions.
 * @param[in] weights The arrays (canonical layout); borrowed.
 * @param[in] allocator Allocator for the derived vectors, or NULL for the default.
 * @return As sae_dict_create().
 */
SAE_API sae_status sae_dict_wrap(sae_dict **out, const sae_dict_config *config,
                                 const sae_dict_weights *weights, const sae_allocator *allocator);

/** @brief Free a dictionary. Accepts NULL. @param[in] dict The dictionary. */
SAE_API void sae_dict_free(sae_dict *dict);

/**
 * @brief The dictionary's settings.
 *
 * The string pointers in @p out are borrowed from the dictionary.
 * @param[in] dict The dictionary.
 * @param[out] out Filled up to min(out->struct_size, sizeof(sae_dict_config)); set
 *             out->struct_size first (::SAE_DICT_CONFIG_INIT does).
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_dict_get_config(const sae_dict *dict, sae_dict_config *out);

/**
 * @brief Borrowed pointers to the dictionary's weights (canonical layout).
 * @param[in] dict The dictionary.
 * @param[out] out Filled up to min(out->struct_size, sizeof(sae_dict_weights)); unused arrays NULL.
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_dict_get_weights(const sae_dict *dict, sae_dict_weights *out);

/** @return Architecture (::sae_arch). @param[in] dict The dictionary. */
SAE_API int32_t sae_dict_arch(const sae_dict *dict);
/** @return Input width. @param[in] dict The dictionary. */
SAE_API int64_t sae_dict_d_in(const sae_dict *dict);
/** @return Number of features. @param[in] dict The dictionary. */
SAE_API int64_t sae_dict_d_sae(const sae_dict *dict);
/** @return k for TopK / BatchTopK, else 0. @param[in] dict The dictionary. */
SAE_API int64_t sae_dict_k(const sae_dict *dict);

/**
 * @brief Borrowed vector of decoder row norms ||d_j||, (d_sae).
 * @param[in] dict The dictionary.
 * @return Valid until sae_dict_free().
 */
SAE_API const float *sae_dict_decoder_norms(const sae_dict *dict);

/**
 * @brief Name of an architecture ("standard", "topk", "batchtopk", "jumprelu", "gated").
 * @param[in] arch An ::sae_arch value.
 * @return Static text, or "unknown".
 */
SAE_API const char *sae_arch_name(int32_t arch);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_DICT_H */
