/**
 * @file io.h
 * @brief Load and save dictionaries in the files people have (SAELens, sparsify,
 *        dictionary_learning, OpenAI, sae-icm).
 *
 * @defgroup io Dictionary files
 * @brief Every layout is converted to the canonical one of dict.h; shapes are checked against
 *        the configuration before any number is used.
 *
 * Thread safety: loading and saving touch no shared state; distinct calls may run at once.
 * @{
 */
#ifndef SAE_IO_H
#define SAE_IO_H

#include "dict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief File formats. */
typedef enum sae_format {
    SAE_FORMAT_AUTO = 0,               /**< Detect from the path (load only). */
    SAE_FORMAT_SAELENS = 1,            /**< Directory: cfg.json + sae_weights.safetensors. */
    SAE_FORMAT_SPARSIFY = 2,           /**< Directory: cfg.json + sae.safetensors (TopK). */
    SAE_FORMAT_DICTIONARY_LEARNING = 3,/**< Directory: ae.pt + config.json (or the ae.pt file). */
    SAE_FORMAT_OPENAI = 4,             /**< openai/sparse_autoencoder state dict (.pt). */
    SAE_FORMAT_SAE_ICM = 5             /**< sae-icm `sae_state_<step>.pt` (k from the caller). */
} sae_format;

/** @brief Settings of sae_dict_load(). Initialise with ::SAE_LOAD_OPTIONS_INIT. */
typedef struct sae_load_options {
    uint32_t struct_size;  /**< sizeof(sae_load_options). */
    int32_t format;        /**< An ::sae_format value; ::SAE_FORMAT_AUTO detects. */
    int64_t k;             /**< k for files that lack it (sae-icm), or to override it; 0 = from the file. */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_load_options;

/** @brief Initialiser for ::sae_load_options. */
#define SAE_LOAD_OPTIONS_INIT {sizeof(sae_load_options), 0, 0, NULL}

/**
 * @brief Load a dictionary from a directory or file.
 *
 * Detection (::SAE_FORMAT_AUTO): a directory with sae_weights.safetensors is SAELens, with
 * sae.safetensors sparsify, with ae.pt dictionary_learning; a .safetensors file is read with the
 * cfg.json beside it; a .pt file is dictionary_learning when config.json is beside it, else
 * OpenAI or sae-icm by its tensor names.
 * @param[out] out The dictionary.
 * @param[in] path Directory or file.
 * @param[in] options Settings, or NULL.
 * @return ::SAE_OK, ::SAE_ENOTFOUND, ::SAE_EIO, ::SAE_EFORMAT, ::SAE_ESHAPE, ::SAE_ENUMERIC,
 *         ::SAE_EUNSUPPORTED, ::SAE_ENOMEM; the message names the file and the problem.
 */
SAE_API sae_status sae_dict_load(sae_dict **out, const char *path, const sae_load_options *options);

/**
 * @brief The format sae_dict_load() would use for a path.
 * @param[in] path Directory or file.
 * @param[out] format An ::sae_format value.
 * @return ::SAE_OK, ::SAE_ENOTFOUND, ::SAE_EFORMAT.
 */
SAE_API sae_status sae_detect_format(const char *path, int32_t *format);

/**
 * @brief Save a dictionary into directory @p dir (created if missing), crash-safely.
 *
 * ::SAE_FORMAT_SAELENS writes cfg.json (v6) + sae_weights.safetensors for every architecture
 * (BatchTopK as JumpReLU, as SAELens does); ::SAE_FORMAT_SPARSIFY writes TopK dictionaries with
 * ReLU before top-k and no input normalisation. Each file goes to a temporary name first.
 * @param[in] dict The dictionary.
 * @param[in] dir Directory.
 * @param[in] format ::SAE_FORMAT_SAELENS or ::SAE_FORMAT_SPARSIFY.
 * @return ::SAE_OK, ::SAE_EIO, ::SAE_EUNSUPPORTED (the format cannot express the dictionary),
 *         ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_dict_save(const sae_dict *dict, const char *dir, int32_t format);

/**
 * @brief Name of a format ("saelens", "sparsify", "dictionary_learning", "openai", "sae_icm").
 * @param[in] format An ::sae_format value.
 * @return Static text, or "unknown".
 */
SAE_API const char *sae_format_name(int32_t format);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_IO_H */
