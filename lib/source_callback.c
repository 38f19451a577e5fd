/* source_callback.c: the producer of sae_source_from_callback — rows asked of a caller's
 * function one chunk at a time. The chunk size is fixed at creation, so the callback sees the
 * same requests whatever batch sizes the source's own caller uses. */
#include "source_internal.h"

typedef struct callback_rows {
    sae_source_fn fn;
    void *user;
    sae__chunk chunk; /* the rows of the last call not yet handed out */
    bool ended;       /* the callback returned 0 rows: never call it again */
} callback_rows;

/* Ask for the next chunk. A callback's error passes through with its status and with its own
 * message if it set one through libsae (the message is cleared before the call). */
static sae_status call(callback_rows *cb)
{
    int64_t got = -1;
    sae_clear_error();
    sae_status s = cb->fn(cb->user, cb->chunk.cap, cb->chunk.rows, cb->chunk.d, &got);
    if (s > 0)
        return sae__fail(SAE_EINVAL, "the source callback returned %d: statuses are SAE_OK or "
                         "negative", (int)s);
    if (s < 0 && sae_last_error()[0] != '\0')
        return sae__fail_prefix(s, "source callback");
    if (s < 0)
        return sae__fail(s, "the source callback failed: %s", sae_status_str(s));
    if (got < 0 || got > cb->chunk.cap)
        return sae__fail(SAE_EINVAL, "the source callback wrote %lld rows; expected 0..%lld",
                         (long long)got, (long long)cb->chunk.cap);
    cb->chunk.pos = 0;
    cb->chunk.len = got;
    cb->ended = got == 0;
    return SAE_OK;
}

static sae_status callback_read(void *impl, int64_t max_rows, float *x, int64_t ldx,
                                int64_t *rows)
{
    callback_rows *cb = impl;
    if (cb->chunk.pos == cb->chunk.len && !cb->ended) {
        sae_status s = call(cb);
        if (s != SAE_OK)
            return s;
    }
    *rows = sae__chunk_take(&cb->chunk, max_rows, x, ldx);
    return SAE_OK;
}

static void callback_free(void *impl, const sae_allocator *a)
{
    callback_rows *cb = impl;
    sae__chunk_free(&cb->chunk, a);
    sae__free(a, cb);
}

/* No rewind: a callback's stream cannot be replayed. */
static const sae__source_ops callback_ops = {callback_read, NULL, callback_free, false};

sae_status sae_source_from_callback(sae_source **out, int64_t d, sae_source_fn fn, void *user,
                                    const sae_source_options *options)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "sae_source_from_callback: out is NULL");
    *out = NULL;
    sae_source_options o;
    sae_status s = sae__source_read_options(&o, options);
    if (s != SAE_OK)
        return s;
    if (!fn || d < 1)
        return sae__fail(SAE_EINVAL, "sae_source_from_callback: needs a callback and d >= 1 "
                         "(got d = %lld)", (long long)d);
    if (o.loop)
        return sae__fail(SAE_EINVAL, "a callback source cannot loop: its stream ends when the "
                         "callback returns 0 rows");
    const sae_allocator *a = sae__allocator(o.allocator);
    callback_rows *cb = sae__alloc_array(a, 1, sizeof *cb);
    if (!cb)
        return SAE_ENOMEM;
    *cb = (callback_rows){.fn = fn, .user = user};
    if (sae__chunk_init(&cb->chunk, a, sae__source_chunk_rows(&o, d), d) != SAE_OK) {
        sae__free(a, cb);
        return SAE_ENOMEM;
    }
    return sae__source_make(out, &o, d, -1, &callback_ops, cb);
}
