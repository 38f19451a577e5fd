/**
 * @file source.h
 * @brief `sae_source`: a stream of activation batches (n_rows, d) float32 for training and
 *        evaluation, from memory, from files on disk or from a callback.
 *
 * @defgroup source Activation sources
 * @brief Read activations in batches, in order or shuffled, with bounded memory.
 *
 * A source delivers the rows of a dataset of width d one batch at a time through
 * sae_source_next(). One pass over the data is an *epoch*. A finite source ends after its first
 * epoch (sae_source_next() then returns 0 rows); a looping source restarts and never ends.
 *
 * Order. Without shuffling rows come in stored order (files in the order given, rows in file
 * order). With @ref sae_source_options.shuffle_buffer_rows = S > 0:
 * - a memory source draws a uniformly random permutation of all its rows per epoch;
 * - a file or callback source keeps a buffer of S rows: it fills the buffer, then each output
 *   row is drawn uniformly from the buffer and its slot refilled with the next incoming row;
 *   at the end of the input the buffer drains in random order. Every row is delivered exactly
 *   once per epoch, and memory stays at S rows plus one read chunk whatever the dataset size.
 *
 * The randomness of epoch e comes from sae_rng_init(seed, e): the same data, seed and options
 * give the same sequence of rows whatever the batch sizes passed to sae_source_next() (and, for
 * memory and file sources, whatever read_chunk_rows is), and a looping source reshuffles
 * differently each epoch.
 *
 * Values are passed through unchanged: NaN and infinities in the data reach the caller, who
 * decides what to do with them (the trainer rejects them).
 *
 * Thread safety: a source is used by one thread at a time; it may move between threads.
 * Different sources may be used concurrently (memory sources may share the same borrowed data).
 * @{
 */
#ifndef SAE_SOURCE_H
#define SAE_SOURCE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief A stream of activation batches. Opaque; one thread at a time. */
typedef struct sae_source sae_source;

/**
 * @brief Settings of a source, fixed at creation. Initialise with ::SAE_SOURCE_OPTIONS_INIT;
 *        zero fields mean "default".
 */
typedef struct sae_source_options {
    uint32_t struct_size;        /**< sizeof(sae_source_options). */
    int32_t loop;                /**< 1: restart at the end of each epoch (reshuffled with the
                                      next epoch's randomness), so the source never ends;
                                      0: end after one epoch. Not for callback sources. */
    uint64_t seed;               /**< Seed of the shuffle. */
    int64_t shuffle_buffer_rows; /**< 0: stored order. > 0: shuffle (see @ref source); for file
                                      and callback sources the number of rows buffered. */
    int64_t read_chunk_rows;     /**< Rows read (converted, or asked of the callback) at a time;
                                      0: about 1 MiB worth, at least 1 row. */
    int64_t raw_d;               /**< Row width of raw `.f32` / `.bin` files (required for them). */
    const char *tensor_name;     /**< Tensor to read in safetensors files; NULL: the only
                                      tensor of each file, else the one named "x". Copied. */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_source_options;

/** @brief Initialiser for ::sae_source_options. */
#define SAE_SOURCE_OPTIONS_INIT {sizeof(sae_source_options), 0, 0u, 0, 0, 0, NULL, NULL}

/**
 * @brief A producer of rows for sae_source_from_callback().
 *
 * Writes up to @p max_rows rows of width d to @p x and their number to @p rows_out; fewer rows
 * are fine, 0 rows means the stream has ended (the callback is not called again until the
 * source is freed). The source always asks for @ref sae_source_options.read_chunk_rows rows,
 * whatever the batch sizes its own caller uses.
 * @param[in] user The pointer given to sae_source_from_callback().
 * @param[in] max_rows Room in @p x, in rows (>= 1).
 * @param[out] x (max_rows, d) floats, row stride @p ldx.
 * @param[in] ldx Leading dimension of @p x (>= d).
 * @param[out] rows_out Rows written, 0 .. max_rows.
 * @return ::SAE_OK, or an error code (negative) that sae_source_next() returns unchanged.
 */
typedef sae_status (*sae_source_fn)(void *user, int64_t max_rows, float *x, int64_t ldx,
                                    int64_t *rows_out);

/**
 * @brief A source over rows already in memory (borrowed, not copied).
 *
 * With shuffling, each epoch is a uniformly random permutation of the n rows (this keeps an
 * index of n int64 values).
 * @param[out] out The source; free with sae_source_free().
 * @param[in] n Rows (>= 0).
 * @param[in] d Row width (>= 1).
 * @param[in] x (n, d), ldx >= d; must outlive the source and stay unchanged while it is read.
 * @param[in] ldx Leading dimension of @p x.
 * @param[in] options Settings (tensor_name and raw_d are ignored), or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE (ldx < d), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_source_from_memory(sae_source **out, int64_t n, int64_t d, const float *x,
                                          int64_t ldx, const sae_source_options *options);

/**
 * @brief A source over shards on disk, streamed in the order given with bounded memory.
 *
 * A path ending in `.f32` or `.bin` is a raw file of little-endian float32 rows of width
 * @ref sae_source_options.raw_d (its size must be a multiple of 4 raw_d bytes). Any other path
 * is a safetensors file holding one floating tensor (F32, F16, BF16 or F64) of shape
 * [..., d]: its leading dimensions are flattened into rows. Which tensor: @ref
 * sae_source_options.tensor_name if set, else the file's only tensor, else the one named "x".
 *
 * Every file is opened and checked here, so that a bad shard fails now rather than mid-run;
 * all must have the same d. While streaming, one file is open at a time and it is read (raw)
 * or converted (safetensors, memory-mapped) one chunk at a time: memory is S + read_chunk_rows
 * rows of d floats whatever the size of the files.
 * @param[out] out The source; free with sae_source_free().
 * @param[in] paths (n_paths) file paths (copied).
 * @param[in] n_paths Number of files (>= 1).
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK; ::SAE_ENOTFOUND (a missing file or tensor), ::SAE_EIO, ::SAE_EFORMAT
 *         (malformed file, a raw size that is not a multiple of 4 raw_d, a non-float tensor),
 *         ::SAE_ESHAPE (shards of different widths), ::SAE_EINVAL (bad options, several
 *         tensors and none chosen), ::SAE_ENOMEM. The message names the file.
 */
SAE_API sae_status sae_source_from_files(sae_source **out, const char *const *paths,
                                         int64_t n_paths, const sae_source_options *options);

/**
 * @brief A source whose rows come from a callback (a synthetic generator, a model host).
 *
 * The stream ends when @p fn returns 0 rows. Such a source cannot restart: ::sae_source_options
 * loop must be 0 and sae_source_reset() is ::SAE_EUNSUPPORTED.
 * @param[out] out The source; free with sae_source_free().
 * @param[in] d Row width (>= 1).
 * @param[in] fn The producer, called from sae_source_next() only.
 * @param[in] user Passed to @p fn unchanged.
 * @param[in] options Settings (tensor_name and raw_d are ignored), or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_source_from_callback(sae_source **out, int64_t d, sae_source_fn fn,
                                            void *user, const sae_source_options *options);

/** @brief Free a source (closing its files). Accepts NULL. @param[in] src The source. */
SAE_API void sae_source_free(sae_source *src);

/**
 * @brief Next batch of rows.
 *
 * Fills @p max_rows rows, except at the end of a finite source, where it fills the rows that
 * remain and then 0. A looping source continues into the next epoch within the same call.
 * After an error the source can only be reset or freed.
 * @param[in,out] src The source.
 * @param[in] max_rows Rows wanted (>= 0).
 * @param[out] x (max_rows, d), ldx >= d.
 * @param[in] ldx Leading dimension of @p x.
 * @param[out] rows_out Rows written (0 on error).
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE (ldx < d), ::SAE_EIO and ::SAE_EFORMAT (a file
 *         that changed or failed while streaming), or the error of a callback.
 */
SAE_API sae_status sae_source_next(sae_source *src, int64_t max_rows, float *x, int64_t ldx,
                                   int64_t *rows_out);

/**
 * @brief Restart from the first row of epoch 0, with the same shuffle sequence as at creation.
 * @param[in,out] src The source.
 * @return ::SAE_OK, ::SAE_EINVAL (NULL), ::SAE_EUNSUPPORTED (callback sources).
 */
SAE_API sae_status sae_source_reset(sae_source *src);

/** @return Row width d (0 for NULL). @param[in] src The source. */
SAE_API int64_t sae_source_d(const sae_source *src);

/**
 * @brief Rows in one epoch.
 *
 * A looping source delivers this many rows per epoch, forever.
 * @param[in] src The source.
 * @return The number of rows, or -1 when unknown (callback sources, NULL).
 */
SAE_API int64_t sae_source_rows(const sae_source *src);

/**
 * @brief The epoch being read: 0 during the first pass, +1 at each restart of a looping source.
 * @param[in] src The source.
 * @return The epoch index (0 for NULL).
 */
SAE_API int64_t sae_source_epoch(const sae_source *src);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_SOURCE_H */
