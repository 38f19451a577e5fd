/* source.c: sae_source — the order layer (stored order, shuffle buffer, looping over epochs)
 * and the API common to every kind of source. The producers of rows live in source_memory.c,
 * source_files.c and source_callback.c (see source_internal.h). */
#include <string.h>

#include "source_internal.h"

/* Default read chunk: 2^18 floats, 1 MiB. */
#define CHUNK_FLOATS (INT64_C(1) << 18)

struct sae_source {
    const sae_allocator *allocator;
    const sae__source_ops *ops;
    void *impl;
    int64_t d;
    int64_t rows;         /* per epoch, -1 if unknown */
    uint64_t seed;
    bool loop;
    uint64_t epoch;
    int64_t epoch_rows;   /* rows delivered in this epoch */
    bool ended;           /* a finite source has delivered everything */
    sae_status failed;    /* the error that broke sae_source_next, until a reset */

    /* Shuffle buffer (shuf_cap, d): rows [0, shuf_len) are the candidates for the next draw.
     * shuf_cap = 0 when rows go straight from the producer to the caller. */
    float *shuf;
    int64_t shuf_cap, shuf_len;
    bool primed;          /* filled at the start of this epoch */
    bool input_done;      /* the producer has ended this epoch */
    sae_rng rng;          /* sae_rng_init(seed, epoch) */
};

/* ---- options and helpers shared by the producers --------------------------------------------- */

sae_status sae__source_read_options(sae_source_options *o, const sae_source_options *given)
{
    *o = (sae_source_options)SAE_SOURCE_OPTIONS_INIT;
    sae_status s = sae__read_options(o, sizeof *o, given, "sae_source_options");
    if (s != SAE_OK)
        return s;
    if (o->loop != 0 && o->loop != 1)
        return sae__fail(SAE_EINVAL, "sae_source_options.loop is %d; use 0 or 1", (int)o->loop);
    if (o->shuffle_buffer_rows < 0 || o->read_chunk_rows < 0 || o->raw_d < 0)
        return sae__fail(SAE_EINVAL, "sae_source_options: shuffle_buffer_rows (%lld), "
                         "read_chunk_rows (%lld) and raw_d (%lld) must not be negative",
                         (long long)o->shuffle_buffer_rows, (long long)o->read_chunk_rows,
                         (long long)o->raw_d);
    return SAE_OK;
}

int64_t sae__source_chunk_rows(const sae_source_options *o, int64_t d)
{
    if (o->read_chunk_rows > 0)
        return o->read_chunk_rows;
    return d < CHUNK_FLOATS ? CHUNK_FLOATS / d : 1;
}

/* dst (n, d) row stride ldd <- src (n, d) row stride lds. */
static void copy_rows(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t n, int64_t d)
{
    if (ldd == d && lds == d) {
        memcpy(dst, src, (size_t)(n * d) * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        memcpy(dst + i * ldd, src + i * lds, (size_t)d * sizeof(float));
}

sae_status sae__chunk_init(sae__chunk *c, const sae_allocator *a, int64_t cap, int64_t d)
{
    *c = (sae__chunk){.cap = cap, .d = d};
    c->rows = sae__alloc_array(a, (size_t)cap, (size_t)d * sizeof(float));
    return c->rows ? SAE_OK : SAE_ENOMEM;
}

void sae__chunk_free(sae__chunk *c, const sae_allocator *a)
{
    sae__free(a, c->rows);
}

int64_t sae__chunk_take(sae__chunk *c, int64_t max_rows, float *x, int64_t ldx)
{
    int64_t n = c->len - c->pos < max_rows ? c->len - c->pos : max_rows;
    copy_rows(x, ldx, c->rows + c->pos * c->d, c->d, n, c->d);
    c->pos += n;
    return n;
}

/* ---- epochs ---------------------------------------------------------------------------------- */

static void start_epoch(sae_source *src, uint64_t epoch)
{
    src->epoch = epoch;
    src->epoch_rows = 0;
    src->ended = false;
    src->shuf_len = 0;
    src->primed = src->input_done = false;
    sae_rng_init(&src->rng, src->seed, epoch);
    if (src->ops->rewind)
        src->ops->rewind(src->impl, epoch);
}

/* The epoch is over: a looping source that has rows starts the next one, any other ends.
 * (An empty looping source ends too, rather than spin.) */
static void end_epoch(sae_source *src)
{
    if (src->loop && src->epoch_rows > 0)
        start_epoch(src, src->epoch + 1);
    else
        src->ended = true;
}

/* ---- shuffle buffer -------------------------------------------------------------------------- */

/* Fill the buffer with the first shuf_cap rows of the epoch (all of them if there are fewer). */
static sae_status prime(sae_source *src)
{
    sae_status s = SAE_OK;
    while (s == SAE_OK && src->shuf_len < src->shuf_cap && !src->input_done) {
        int64_t got = 0;
        s = src->ops->read(src->impl, src->shuf_cap - src->shuf_len,
                           src->shuf + src->shuf_len * src->d, src->d, &got);
        src->shuf_len += got;
        src->input_done = got == 0;
    }
    src->primed = true;
    return s;
}

/* Each output row is slot j, uniform in [0, shuf_len); the slot is refilled with the next
 * input row. Once the input has ended, the last slot moves into j instead and the buffer
 * drains. Every input row leaves exactly once, and each draw takes one rng value and one
 * input row whatever max_rows is, so the sequence does not depend on the batch sizes. */
static sae_status pull_shuffled(sae_source *src, int64_t max_rows, float *x, int64_t ldx,
                                int64_t *rows)
{
    sae_status s = src->primed ? SAE_OK : prime(src);
    const int64_t d = src->d;
    const size_t row_bytes = (size_t)d * sizeof(float);
    int64_t n = 0;
    for (; s == SAE_OK && n < max_rows && src->shuf_len > 0; n++) {
        float *slot = src->shuf + (int64_t)sae_rng_below(&src->rng, (uint64_t)src->shuf_len) * d;
        memcpy(x + n * ldx, slot, row_bytes);
        int64_t got = 0;
        if (!src->input_done)
            s = src->ops->read(src->impl, 1, slot, d, &got);
        src->input_done = got == 0;
        if (got == 0) {
            float *last = src->shuf + --src->shuf_len * d;
            if (slot != last)
                memcpy(slot, last, row_bytes);
        }
    }
    *rows = n;
    return s;
}

/* Up to max_rows rows of the current epoch; 0 when it is over. */
static sae_status pull(sae_source *src, int64_t max_rows, float *x, int64_t ldx, int64_t *rows)
{
    if (src->shuf_cap > 0)
        return pull_shuffled(src, max_rows, x, ldx, rows);
    return src->ops->read(src->impl, max_rows, x, ldx, rows);
}

/* ---- the handle ------------------------------------------------------------------------------ */

sae_status sae__source_make(sae_source **out, const sae_source_options *o, int64_t d,
                            int64_t rows, const sae__source_ops *ops, void *impl)
{
    const sae_allocator *a = sae__allocator(o->allocator);
    if (d > INT32_MAX) {
        ops->free(impl, a);
        return sae__fail(SAE_EINVAL, "rows of width %lld are too wide", (long long)d);
    }
    sae_source *src = sae__alloc_array(a, 1, sizeof *src);
    if (!src) {
        ops->free(impl, a);
        return SAE_ENOMEM;
    }
    *src = (sae_source){.allocator = a, .ops = ops, .impl = impl, .d = d, .rows = rows,
                        .seed = o->seed, .loop = o->loop != 0};
    src->shuf_cap = ops->self_shuffling ? 0 : o->shuffle_buffer_rows;
    if (src->shuf_cap > 0) {
        src->shuf = sae__alloc_array(a, (size_t)src->shuf_cap, (size_t)d * sizeof(float));
        if (!src->shuf) {
            sae_source_free(src);
            return SAE_ENOMEM;
        }
    }
    start_epoch(src, 0);
    *out = src;
    return SAE_OK;
}

void sae_source_free(sae_source *src)
{
    if (!src)
        return;
    const sae_allocator *a = src->allocator;
    src->ops->free(src->impl, a);
    sae__free(a, src->shuf);
    sae__free(a, src);
}

static sae_status check_next(const sae_source *src, int64_t max_rows, const float *x,
                             int64_t ldx, const int64_t *rows_out)
{
    if (!src || !rows_out)
        return sae__fail(SAE_EINVAL, "sae_source_next: src and rows_out are required");
    if (max_rows < 0)
        return sae__fail(SAE_EINVAL, "sae_source_next: max_rows is %lld", (long long)max_rows);
    if (max_rows > 0 && !x)
        return sae__fail(SAE_EINVAL, "sae_source_next: x is NULL");
    if (max_rows > 0 && ldx < src->d)
        return sae__fail(SAE_ESHAPE, "sae_source_next: leading dimension of x is %lld, needs "
                         ">= d = %lld", (long long)ldx, (long long)src->d);
    if (src->failed != SAE_OK)
        return sae__fail(src->failed, "the source failed earlier (%s): reset or free it",
                         sae_status_str(src->failed));
    return SAE_OK;
}

sae_status sae_source_next(sae_source *src, int64_t max_rows, float *x, int64_t ldx,
                           int64_t *rows_out)
{
    if (rows_out)
        *rows_out = 0;
    sae_status s = check_next(src, max_rows, x, ldx, rows_out);
    if (s != SAE_OK)
        return s;
    int64_t done = 0;
    while (done < max_rows && !src->ended) {
        int64_t got = 0;
        s = pull(src, max_rows - done, x + done * ldx, ldx, &got);
        if (s != SAE_OK) {
            src->failed = s;
            return s;
        }
        done += got;
        src->epoch_rows += got;
        if (got == 0)
            end_epoch(src);
    }
    *rows_out = done;
    return SAE_OK;
}

sae_status sae_source_reset(sae_source *src)
{
    if (!src)
        return sae__fail(SAE_EINVAL, "sae_source_reset: src is NULL");
    if (!src->ops->rewind)
        return sae__fail(SAE_EUNSUPPORTED, "a callback source cannot restart");
    src->failed = SAE_OK;
    start_epoch(src, 0);
    return SAE_OK;
}

int64_t sae_source_d(const sae_source *src) { return src ? src->d : 0; }

int64_t sae_source_rows(const sae_source *src) { return src ? src->rows : -1; }

int64_t sae_source_epoch(const sae_source *src) { return src ? (int64_t)src->epoch : 0; }
