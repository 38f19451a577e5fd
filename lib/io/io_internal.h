/*
 * io_internal.h: what the file readers and writers of lib/io share.
 *
 * Every reader turns its file into a sae__tensor_set (named, typed, shaped byte views) and every
 * format layer takes its tensors out of such a set with sae__tensors_take_f32, which checks the
 * shape against the configuration before a number is used.
 */
#ifndef SAE_IO_INTERNAL_H
#define SAE_IO_INTERNAL_H

#include <stdio.h>

#include "../internal.h"

/* A named set of tensor views; `origin` names the file in error messages. Borrowed views:
 * the reader that made the set owns the bytes. */
typedef struct sae__tensor_set {
    const sae_tensor_info *items;
    int64_t count;
    const char *origin;
} sae__tensor_set;

const sae_tensor_info *sae__tensors_find(const sae__tensor_set *set, const char *name);

/* Take tensor `name` as a fresh float32 array from allocator `a`.
 * shape: the expected STORED shape (ndim entries; ndim 0 is a scalar). A different shape is
 * SAE_ESHAPE: "<origin>: W_dec has shape [64, 32], expected [128, 32]".
 * transpose (ndim 2 only): return the (shape[1], shape[0]) transpose, row-major.
 * A missing tensor is SAE_EFORMAT naming it. Non-float dtypes are SAE_EFORMAT. */
sae_status sae__tensors_take_f32(const sae__tensor_set *set, const char *name, int ndim,
                                 const int64_t *shape, bool transpose, const sae_allocator *a,
                                 float **out);

/* "[d0, d1, ...]" into buf (truncated to size), for error messages. */
void sae__format_shape(char *buf, size_t size, int ndim, const int64_t *shape);

/* Free every array of `w` (allocated from `a`); NULL entries are skipped. (lib/dict.c) */
void sae__dict_weights_free(const sae_allocator *a, const sae_dict_weights *w);

/* The tensor set of an open safetensors reader (lib/io/safetensors.c). */
sae__tensor_set sae__st_tensor_set(const sae_st_reader *reader, const char *origin);

/* Write a file crash-safely: `write` fills a temporary file beside `path`
 * ("path.tmp.<pid>.<tid>"), which is flushed, fsynced and renamed over `path`, then the
 * directory is fsynced. On any failure the temporary file is removed and `path` is untouched.
 * (lib/io/atomic_file.c) */
sae_status sae__write_file_atomic(const char *path, sae_status (*write)(FILE *f, void *user),
                                  void *user);

/* Streamed safetensors writing (lib/io/safetensors.c), for data too large to hold in memory:
 * the shapes are known up front, so the header is written first and the bytes after it.
 * A streamed tensor is added without data; sae__st_writer_write_streamed writes the file
 * atomically (as sae_st_writer_write): the header and the ordinary tensors, then `fill`, which
 * must write every byte of every streamed tensor i at file offsets [data_start[i],
 * data_start[i] + nbytes), in any order (fseeko + fwrite). i is the tensor's index,
 * sae__st_writer_index(writer, name) (tensors are kept sorted by name). A file that does not end
 * where the last tensor ends is SAE_EIO. sae_st_writer_write refuses streamed tensors. */
typedef sae_status (*sae__st_fill_fn)(FILE *f, const int64_t *data_start, void *user);
sae_status sae__st_writer_add_streamed(sae_st_writer *writer, const char *name, int32_t dtype,
                                       int32_t ndim, const int64_t *shape);
int64_t sae__st_writer_index(const sae_st_writer *writer, const char *name); /* -1: absent */
sae_status sae__st_writer_write_streamed(const sae_st_writer *writer, const char *path,
                                         sae__st_fill_fn fill, void *user);

/* Read a whole small file (configs) into a NUL-terminated buffer from malloc (free()).
 * A missing file is SAE_ENOTFOUND, an unreadable one SAE_EIO, one over max_bytes SAE_EFORMAT. */
sae_status sae__read_text_file(const char *path, size_t max_bytes, char **out);

/* Join a directory and a file name into buf (snprintf rules); false if it does not fit. */
bool sae__path_join(char *buf, size_t size, const char *dir, const char *name);

/* Make a dictionary that takes ownership of the arrays in `w` (allocated from `a`); on failure
 * they are freed too, so the caller never frees them. Same checks as sae_dict_create.
 * (lib/dict.c) */
sae_status sae__dict_adopt(sae_dict **out, const sae_dict_config *config, sae_dict_weights *w,
                           const sae_allocator *a);

/* ---- format layers ---------------------------------------------------------------------- */
sae_status sae__load_saelens(sae_dict **out, const char *dir, const sae_load_options *opt);
sae_status sae__load_sparsify(sae_dict **out, const char *dir, const sae_load_options *opt);
sae_status sae__save_saelens(const sae_dict *dict, const char *dir);
sae_status sae__save_sparsify(const sae_dict *dict, const char *dir);
/* dictionary_learning: `path` is the directory holding ae.pt + config.json, or the ae.pt file. */
sae_status sae__load_dictionary_learning(sae_dict **out, const char *path,
                                         const sae_load_options *opt);
/* A torch state dict .pt of openai/sparse_autoencoder or sae-icm. */
sae_status sae__load_torch_state_dict(sae_dict **out, const char *file, int32_t format,
                                      const sae_load_options *opt);
/* Which state-dict format a .pt file holds (SAE_FORMAT_OPENAI or SAE_FORMAT_SAE_ICM), by its
 * tensor names; SAE_EFORMAT when neither. */
sae_status sae__detect_torch_format(const char *file, int32_t *format);

#endif /* SAE_IO_INTERNAL_H */
