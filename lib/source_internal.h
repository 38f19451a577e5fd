/*
 * source_internal.h: what the kinds of sae_source share (lib/source*.c).
 *
 * A source is two layers:
 *   - a producer (memory, files, callback) that yields rows in its own order through
 *     `read`, possibly fewer than asked, 0 only at the end of the epoch;
 *   - the order layer in source.c that hands rows to the caller straight from the producer or
 *     through the shuffle buffer, and restarts looping sources.
 * The memory producer shuffles itself (a permutation per epoch), so the order layer never puts
 * a shuffle buffer over it.
 */
#ifndef SAE_SOURCE_INTERNAL_H
#define SAE_SOURCE_INTERNAL_H

#include "internal.h"
#include "sae/source.h"

typedef struct sae__source_ops {
    /* Up to max_rows (>= 1) next rows into x: (max_rows, d), row stride ldx; *rows = 0 only at
     * the end of the epoch, and again on every later call. */
    sae_status (*read)(void *impl, int64_t max_rows, float *x, int64_t ldx, int64_t *rows);
    /* Go back to the first row of epoch `epoch`; NULL when the producer cannot restart. */
    void (*rewind)(void *impl, uint64_t epoch);
    void (*free)(void *impl, const sae_allocator *a);
    bool self_shuffling; /* orders its rows itself: no shuffle buffer on top */
} sae__source_ops;

/* The caller's options (NULL: defaults) copied into `o` and checked. */
sae_status sae__source_read_options(sae_source_options *o, const sae_source_options *given);

/* Rows per read chunk: o->read_chunk_rows, or about 1 MiB of (rows, d) floats. */
int64_t sae__source_chunk_rows(const sae_source_options *o, int64_t d);

/* Wrap a producer into a source. Takes `impl` in every case: on failure it is freed with
 * ops->free. rows: rows per epoch, -1 if unknown. */
sae_status sae__source_make(sae_source **out, const sae_source_options *o, int64_t d,
                            int64_t rows, const sae__source_ops *ops, void *impl);

/* A contiguous (cap, d) staging buffer that producers read whole chunks into and hand out in
 * pieces: rows [pos, len) are still to be delivered. */
typedef struct sae__chunk {
    float *rows;
    int64_t cap, pos, len, d;
} sae__chunk;

sae_status sae__chunk_init(sae__chunk *c, const sae_allocator *a, int64_t cap, int64_t d);
void sae__chunk_free(sae__chunk *c, const sae_allocator *a);
/* Copy up to max_rows pending rows into x (row stride ldx); returns how many. */
int64_t sae__chunk_take(sae__chunk *c, int64_t max_rows, float *x, int64_t ldx);

#endif /* SAE_SOURCE_INTERNAL_H */
