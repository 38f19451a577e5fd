/* capture_file.c: sae_host_capture — the activations at several hook points of a host, written
 * to one safetensors file as the forward batches come (a streamed write: the header first,
 * then each batch's slab of every tensor at its offset), atomically.
 *
 * Layout: tensor i is (n_seq, T, n_per, d) floats, n_per = max(n_stack, 1), T = seq_len -
 * skip_bos; the batch of sequences [s0, s0 + n) is the contiguous slab starting at element
 * s0 T n_per d of the tensor, so each batch is one fwrite per tensor. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../io/io_internal.h"
#include "capture_internal.h"

typedef struct capture_job {
    sae_host host;            /* checked */
    const char *path;
    const int32_t *tokens;    /* (n_seq, seq_len) */
    int64_t n_seq, seq_len, T, batch, d;
    bool skip_bos;
    int32_t n_tensors, n_per;
    const int32_t *hook_ids;  /* (n_tensors, n_per) */
    int64_t *file_index;      /* (n_tensors) tensor i's index in the writer */
    float *buf;               /* (n_tensors, batch, T, n_per, d): one batch of every tensor */
    bool *reached;            /* (n_tensors n_per) entries filled in the pass in progress */
    int64_t cur_seqs;         /* sequences of the pass in progress */
} capture_job;

/* Copy the rows of every entry (tensor i, slot j) that reads this hook point. */
static sae_status grab(void *user, int32_t hook_id, float *x, int64_t n_tokens, int64_t ld)
{
    capture_job *c = user;
    const int64_t slab = c->batch * c->T * c->n_per * c->d;
    for (int64_t e = 0; e < (int64_t)c->n_tensors * c->n_per; e++) {
        if (c->hook_ids[e] != hook_id)
            continue;
        sae_status s = sae__capture_check_call(&c->host, hook_id, n_tokens, ld, c->cur_seqs,
                                               c->seq_len, &c->reached[e]);
        if (s != SAE_OK)
            return s;
        float *dst = c->buf + (e / c->n_per) * slab + (e % c->n_per) * c->d;
        sae__capture_copy_rows(dst, c->n_per * c->d, x, ld, c->cur_seqs, c->seq_len, c->d,
                               c->skip_bos);
    }
    return SAE_OK;
}

/* One forward batch of sequences [s0, s0 + cur_seqs), every tensor's slab to the file. */
static sae_status run_batch(capture_job *c, FILE *f, const int64_t *data_start, int64_t s0)
{
    const int64_t n_entries = (int64_t)c->n_tensors * c->n_per;
    memset(c->reached, 0, (size_t)n_entries * sizeof *c->reached);
    sae_status s = sae_host_forward(&c->host, c->tokens + s0 * c->seq_len, c->cur_seqs,
                                    c->seq_len, NULL, grab, c);
    for (int64_t e = 0; s == SAE_OK && e < n_entries; e++)
        if (!c->reached[e])
            s = sae__capture_missed(&c->host, c->hook_ids[e]);
    const int64_t row = c->T * c->n_per * c->d; /* floats per sequence */
    const int64_t slab = c->batch * row;
    for (int32_t i = 0; s == SAE_OK && i < c->n_tensors; i++) {
        const int64_t at = data_start[c->file_index[i]] + s0 * row * (int64_t)sizeof(float);
        const size_t n = (size_t)(c->cur_seqs * row);
        if (fseeko(f, (off_t)at, SEEK_SET) != 0 || fwrite(c->buf + i * slab, sizeof(float), n,
                                                          f) != n)
            s = sae__fail(SAE_EIO, "%s: cannot write: %s", c->path, strerror(errno));
    }
    return s;
}

static sae_status fill(FILE *f, const int64_t *data_start, void *user)
{
    capture_job *c = user;
    sae_status s = SAE_OK;
    for (int64_t s0 = 0; s == SAE_OK && s0 < c->n_seq; s0 += c->batch) {
        c->cur_seqs = c->n_seq - s0 < c->batch ? c->n_seq - s0 : c->batch;
        s = run_batch(c, f, data_start, s0);
    }
    return s;
}

/* "hooks.<name>" = the hook names of tensor i joined by commas. */
static sae_status describe_tensor(sae_st_writer *w, const capture_job *c, const char *name,
                                  int32_t i, const sae_allocator *a)
{
    size_t len = strlen("hooks.") + strlen(name) + 1, at = 0;
    for (int32_t j = 0; j < c->n_per; j++)
        len += strlen(c->host.hook_names[c->hook_ids[i * c->n_per + j]]) + 1;
    char *text = sae__alloc_array(a, len, 1);
    if (!text)
        return SAE_ENOMEM;
    char *value = text + sprintf(text, "hooks.%s", name) + 1;
    for (int32_t j = 0; j < c->n_per; j++)
        at += (size_t)sprintf(value + at, j ? ",%s" : "%s",
                              c->host.hook_names[c->hook_ids[i * c->n_per + j]]);
    sae_status s = sae_st_writer_set_metadata(w, text, value);
    sae__free(a, text);
    return s;
}

/* The file's header: every tensor streamed, its shape and what it holds. */
static sae_status plan_file(sae_st_writer *w, capture_job *c, const char *const *names,
                            int32_t n_stack, const sae_allocator *a)
{
    sae_status s = sae_st_writer_set_metadata(w, "skip_bos", c->skip_bos ? "1" : "0");
    for (int32_t i = 0; s == SAE_OK && i < c->n_tensors; i++) {
        if (!names[i])
            return sae__fail(SAE_EINVAL, "sae_host_capture: names[%d] is NULL", (int)i);
        const int64_t shape3[3] = {c->n_seq, c->T, c->d};
        const int64_t shape4[4] = {c->n_seq, c->T, n_stack, c->d};
        s = n_stack > 0 ? sae__st_writer_add_streamed(w, names[i], SAE_DTYPE_F32, 4, shape4)
                        : sae__st_writer_add_streamed(w, names[i], SAE_DTYPE_F32, 3, shape3);
        if (s == SAE_OK)
            s = describe_tensor(w, c, names[i], i, a);
    }
    for (int32_t i = 0; s == SAE_OK && i < c->n_tensors; i++)
        c->file_index[i] = sae__st_writer_index(w, names[i]);
    return s;
}

static sae_status check_args(capture_job *c, const sae_host *host, int32_t n_tensors,
                             const char *const *names, int32_t n_stack, const int32_t *hook_ids,
                             const sae_capture_options *o)
{
    sae_status s = sae__capture_check(&c->host, host, c->tokens, c->n_seq, c->seq_len,
                                      o->skip_bos, "sae_host_capture");
    if (s != SAE_OK)
        return s;
    if (n_tensors < 1 || n_stack < 0 || !names || !hook_ids)
        return sae__fail(SAE_EINVAL, "sae_host_capture: needs n_tensors >= 1 (got %d), "
                         "n_stack >= 0 (got %d), names and hook_ids", (int)n_tensors,
                         (int)n_stack);
    c->n_per = n_stack > 0 ? n_stack : 1;
    for (int64_t e = 0; e < (int64_t)n_tensors * c->n_per; e++)
        if ((s = sae__capture_check_hook(&c->host, hook_ids[e])) != SAE_OK)
            return sae__fail_prefix(s, "sae_host_capture");
    if ((s = sae__capture_batch_seqs(&c->batch, o->seqs_per_batch, c->n_seq, c->seq_len,
                                     SAE_CAPTURE_BATCH_TOKENS)) != SAE_OK)
        return s;
    c->T = c->seq_len - o->skip_bos;
    c->d = c->host.d_model;
    c->skip_bos = o->skip_bos == 1;
    c->n_tensors = n_tensors;
    c->hook_ids = hook_ids;
    /* The batch buffer: n_tensors batch T n_per d floats must be countable. */
    int64_t count = n_tensors;
    const int64_t factors[4] = {c->batch, c->T, c->n_per, c->d};
    for (int i = 0; i < 4; i++)
        if (__builtin_mul_overflow(count, factors[i], &count))
            return sae__fail(SAE_EINVAL, "sae_host_capture: a batch of %lld sequences is too "
                             "large", (long long)c->batch);
    return SAE_OK;
}

sae_status sae_host_capture(const char *path, const sae_host *host, const int32_t *tokens,
                            int64_t n_seq, int64_t seq_len, int32_t n_tensors,
                            const char *const *names, int32_t n_stack, const int32_t *hook_ids,
                            const sae_capture_options *options)
{
    sae_capture_options o = SAE_CAPTURE_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, options, "sae_capture_options");
    if (s != SAE_OK)
        return s;
    if (!path)
        return sae__fail(SAE_EINVAL, "sae_host_capture: path is NULL");
    capture_job c = {.path = path, .tokens = tokens, .n_seq = n_seq, .seq_len = seq_len};
    if ((s = check_args(&c, host, n_tensors, names, n_stack, hook_ids, &o)) != SAE_OK)
        return s;
    const sae_allocator *a = sae__allocator(o.allocator);
    const int64_t n_entries = (int64_t)n_tensors * c.n_per;
    sae_st_writer *w = NULL;
    c.file_index = sae__alloc_array(a, (size_t)n_tensors, sizeof *c.file_index);
    c.reached = sae__alloc_array(a, (size_t)n_entries, sizeof *c.reached);
    c.buf = sae__alloc_array(a, (size_t)(n_entries * c.batch * c.T), (size_t)c.d * sizeof(float));
    s = c.file_index && c.reached && c.buf ? sae_st_writer_create(&w) : SAE_ENOMEM;
    if (s == SAE_OK)
        s = plan_file(w, &c, names, n_stack, a);
    if (s == SAE_OK)
        s = sae__st_writer_write_streamed(w, path, fill, &c);
    sae_st_writer_free(w);
    sae__free(a, c.buf);
    sae__free(a, c.reached);
    sae__free(a, c.file_index);
    return s;
}
