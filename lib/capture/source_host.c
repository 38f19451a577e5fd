/* source_host.c: the producer of sae_source_from_host — the activations at one hook point of a
 * host, computed one forward batch of whole sequences at a time and handed out from a chunk
 * that holds one batch's rows (see source_internal.h for the order layer on top). */
#include "../source_internal.h"
#include "capture_internal.h"

typedef struct host_rows {
    sae_host host;          /* the caller's table, checked */
    int32_t hook_id;
    const int32_t *tokens;  /* (n_seq, seq_len), borrowed */
    int64_t n_seq, seq_len, batch;
    bool skip_bos;
    int64_t next_seq;       /* first sequence not yet run in this epoch */
    int64_t cur_seqs;       /* sequences of the pass in progress */
    bool reached;           /* the pass in progress has copied the hook point's rows */
    sae__chunk chunk;       /* (batch (seq_len - skip_bos), d_model) rows of the last pass */
} host_rows;

/* The hook of every pass: copy the rows of our hook point into the chunk. */
static sae_status grab(void *user, int32_t hook_id, float *x, int64_t n_tokens, int64_t ld)
{
    host_rows *r = user;
    if (hook_id != r->hook_id)
        return SAE_OK;
    sae_status s = sae__capture_check_call(&r->host, hook_id, n_tokens, ld, r->cur_seqs,
                                           r->seq_len, &r->reached);
    if (s == SAE_OK)
        sae__capture_copy_rows(r->chunk.rows, r->chunk.d, x, ld, r->cur_seqs, r->seq_len,
                               r->chunk.d, r->skip_bos);
    return s;
}

/* Run the next batch of sequences and make its rows the chunk's. */
static sae_status run_batch(host_rows *r)
{
    r->cur_seqs = r->n_seq - r->next_seq < r->batch ? r->n_seq - r->next_seq : r->batch;
    r->reached = false;
    sae_status s = sae_host_forward(&r->host, r->tokens + r->next_seq * r->seq_len, r->cur_seqs,
                                    r->seq_len, NULL, grab, r);
    if (s != SAE_OK)
        return s;
    if (!r->reached)
        return sae__capture_missed(&r->host, r->hook_id);
    r->next_seq += r->cur_seqs;
    r->chunk.pos = 0;
    r->chunk.len = r->cur_seqs * (r->seq_len - r->skip_bos);
    return SAE_OK;
}

static sae_status host_read(void *impl, int64_t max_rows, float *x, int64_t ldx, int64_t *rows)
{
    host_rows *r = impl;
    if (r->chunk.pos == r->chunk.len && r->next_seq < r->n_seq) {
        sae_status s = run_batch(r);
        if (s != SAE_OK)
            return s;
    }
    *rows = sae__chunk_take(&r->chunk, max_rows, x, ldx);
    return SAE_OK;
}

/* Every epoch runs the sequences from the first (the order layer reshuffles the rows). */
static void host_rewind(void *impl, uint64_t epoch)
{
    host_rows *r = impl;
    r->next_seq = 0;
    r->chunk.pos = r->chunk.len = 0;
}

static void host_free(void *impl, const sae_allocator *a)
{
    host_rows *r = impl;
    sae__chunk_free(&r->chunk, a);
    sae__free(a, r);
}

static const sae__source_ops host_ops = {host_read, host_rewind, host_free, false};

sae_status sae_source_from_host(sae_source **out, const sae_host *host, int32_t hook_id,
                                const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                                int64_t seqs_per_batch, int32_t skip_bos,
                                const sae_source_options *options)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "sae_source_from_host: out is NULL");
    *out = NULL;
    sae_source_options o;
    sae_status s = sae__source_read_options(&o, options);
    if (s != SAE_OK)
        return s;
    host_rows r = {.hook_id = hook_id, .tokens = tokens, .n_seq = n_seq, .seq_len = seq_len,
                   .skip_bos = skip_bos == 1};
    if ((s = sae__capture_check(&r.host, host, tokens, n_seq, seq_len, skip_bos,
                                "sae_source_from_host")) != SAE_OK ||
        (s = sae__capture_check_hook(&r.host, hook_id)) != SAE_OK ||
        (s = sae__capture_batch_seqs(&r.batch, seqs_per_batch, n_seq, seq_len,
                                     SAE_CAPTURE_BATCH_TOKENS)) != SAE_OK)
        return s;
    const sae_allocator *a = sae__allocator(o.allocator);
    host_rows *impl = sae__alloc_array(a, 1, sizeof *impl);
    if (!impl)
        return SAE_ENOMEM;
    *impl = r;
    if (sae__chunk_init(&impl->chunk, a, r.batch * (seq_len - skip_bos), r.host.d_model) !=
        SAE_OK) {
        sae__free(a, impl);
        return SAE_ENOMEM;
    }
    return sae__source_make(out, &o, r.host.d_model, n_seq * (seq_len - skip_bos), &host_ops,
                            impl);
}
