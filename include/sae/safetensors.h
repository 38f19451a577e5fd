/**
 * @file safetensors.h
 * @brief Read and write safetensors files (FORMATS.md), strictly validated.
 *
 * @defgroup safetensors safetensors
 * @brief The container every SAE library uses for weights and libsae uses for activations.
 *
 * A reader memory-maps the file and checks the whole header before any tensor is touched:
 * header length within the file and at most 100 MB, valid JSON, no duplicate names, known
 * dtypes, shapes whose products do not overflow, offsets that tile the data buffer exactly
 * (no overlap, no gap), and end - begin == numel * sizeof(dtype).
 *
 * Thread safety: a reader may be read from several threads at once (it is immutable after
 * open). A writer is used by one thread at a time.
 * @{
 */
#ifndef SAE_SAFETENSORS_H
#define SAE_SAFETENSORS_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief safetensors element types. Values are part of the ABI. */
typedef enum sae_dtype {
    SAE_DTYPE_BOOL = 0, SAE_DTYPE_U8 = 1, SAE_DTYPE_I8 = 2, SAE_DTYPE_I16 = 3,
    SAE_DTYPE_U16 = 4, SAE_DTYPE_I32 = 5, SAE_DTYPE_U32 = 6, SAE_DTYPE_I64 = 7,
    SAE_DTYPE_U64 = 8, SAE_DTYPE_F16 = 9, SAE_DTYPE_BF16 = 10, SAE_DTYPE_F32 = 11,
    SAE_DTYPE_F64 = 12, SAE_DTYPE_F8_E4M3 = 13, SAE_DTYPE_F8_E5M2 = 14
} sae_dtype;

/** @brief Most dimensions a tensor may have. */
#define SAE_MAX_DIMS 8

/** @brief Description of one tensor in a file. Pointers are borrowed from the reader. */
typedef struct sae_tensor_info {
    const char *name;            /**< Tensor name (NUL-terminated). */
    int32_t dtype;               /**< An ::sae_dtype value. */
    int32_t ndim;                /**< 0 (scalar) .. ::SAE_MAX_DIMS. */
    int64_t shape[SAE_MAX_DIMS]; /**< Dimensions; entries past ndim are 0. */
    int64_t numel;               /**< Product of the dimensions (1 for a scalar). */
    const void *data;            /**< Raw little-endian bytes inside the mapping. */
    uint64_t nbytes;             /**< numel * sizeof(dtype). */
} sae_tensor_info;

/** @brief An open safetensors file. Opaque. */
typedef struct sae_st_reader sae_st_reader;

/**
 * @brief Open and validate a file.
 * @param[out] out The reader; free with sae_st_close().
 * @param[in] path File path.
 * @return ::SAE_OK, ::SAE_EIO (cannot open/map), ::SAE_EFORMAT (malformed; the message says
 *         which rule failed and where), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_st_open(sae_st_reader **out, const char *path);

/**
 * @brief Validate a file already in memory (borrowed; must outlive the reader).
 * @param[out] out The reader.
 * @param[in] data The bytes of the file.
 * @param[in] size Their number.
 * @return As sae_st_open().
 */
SAE_API sae_status sae_st_open_memory(sae_st_reader **out, const void *data, size_t size);

/** @brief Close a reader. Accepts NULL. @param[in] reader The reader. */
SAE_API void sae_st_close(sae_st_reader *reader);

/** @return Number of tensors. @param[in] reader The reader. */
SAE_API int64_t sae_st_count(const sae_st_reader *reader);

/**
 * @brief Tensor by position (sorted by name).
 * @param[in] reader The reader.
 * @param[in] index 0 .. count - 1.
 * @return Borrowed description, or NULL when out of range.
 */
SAE_API const sae_tensor_info *sae_st_tensor_at(const sae_st_reader *reader, int64_t index);

/**
 * @brief Tensor by name.
 * @param[in] reader The reader.
 * @param[in] name Tensor name.
 * @return Borrowed description, or NULL when absent.
 */
SAE_API const sae_tensor_info *sae_st_find(const sae_st_reader *reader, const char *name);

/**
 * @brief Value of a `__metadata__` key.
 * @param[in] reader The reader.
 * @param[in] key Key.
 * @return Borrowed string, or NULL when absent.
 */
SAE_API const char *sae_st_metadata(const sae_st_reader *reader, const char *key);

/**
 * @brief Convert a floating tensor (F32, F16, BF16, F64) to float32.
 * @param[in] tensor A tensor of the reader.
 * @param[out] out (tensor->numel) floats.
 * @param[in] capacity Room in @p out, in floats; less than numel is ::SAE_ESHAPE.
 * @return ::SAE_OK, ::SAE_EFORMAT (not a float dtype), ::SAE_ESHAPE.
 */
SAE_API sae_status sae_st_to_f32(const sae_tensor_info *tensor, float *out, int64_t capacity);

/**
 * @brief Size in bytes of one element of a dtype.
 * @param[in] dtype An ::sae_dtype value.
 * @return 1, 2, 4 or 8; 0 for unknown values.
 */
SAE_API int32_t sae_dtype_size(int32_t dtype);

/**
 * @brief Name of a dtype as written in files ("F32", "BF16", ...).
 * @param[in] dtype An ::sae_dtype value.
 * @return Static text, or NULL for unknown values.
 */
SAE_API const char *sae_dtype_name(int32_t dtype);

/** @brief Collects tensors and writes one safetensors file. Opaque. */
typedef struct sae_st_writer sae_st_writer;

/**
 * @brief Make an empty writer.
 * @param[out] out The writer; free with sae_st_writer_free().
 * @return ::SAE_OK or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_st_writer_create(sae_st_writer **out);

/** @brief Free a writer. Accepts NULL. @param[in] writer The writer. */
SAE_API void sae_st_writer_free(sae_st_writer *writer);

/**
 * @brief Add a tensor. The bytes are borrowed until sae_st_writer_write() returns.
 * @param[in,out] writer The writer.
 * @param[in] name Unique name (copied).
 * @param[in] dtype An ::sae_dtype value.
 * @param[in] ndim 0 .. ::SAE_MAX_DIMS.
 * @param[in] shape (ndim) non-negative dimensions.
 * @param[in] data numel * sae_dtype_size(dtype) bytes, little-endian, row-major.
 * @return ::SAE_OK, ::SAE_EINVAL (duplicate name, bad dtype or shape), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_st_writer_add(sae_st_writer *writer, const char *name, int32_t dtype,
                                     int32_t ndim, const int64_t *shape, const void *data);

/**
 * @brief Add a `__metadata__` entry (both strings copied).
 * @param[in,out] writer The writer.
 * @param[in] key Key.
 * @param[in] value Value.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_st_writer_set_metadata(sae_st_writer *writer, const char *key,
                                              const char *value);

/**
 * @brief Write the file crash-safely: to a temporary name beside @p path, fsync, rename.
 *
 * An existing file at @p path is replaced only when the new one is complete.
 * @param[in] writer The writer.
 * @param[in] path Destination.
 * @return ::SAE_OK, ::SAE_EIO, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_st_writer_write(const sae_st_writer *writer, const char *path);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_SAFETENSORS_H */
