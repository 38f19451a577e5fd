/* model.c: the model options (model.h): the llama2.c host, token sequences from a tensor or
 * from text, and hook point names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

void cli_model_init(cli_model *m) { memset(m, 0, sizeof *m); }

bool cli_model_option(cli_model *m, cli_args *a, const char *arg, const char *usage,
                      const char *cmd, int *rc)
{
    const char *bad = NULL; /* what a bad value needed */
    *rc = 0;
    if (cli_opt_is(a, arg, "--model")) {
        if (!(m->model_path = cli_opt_value(a)))
            bad = "--model needs a llama2.c checkpoint";
    } else if (cli_opt_is(a, arg, "--tokenizer")) {
        if (!(m->tokenizer_path = cli_opt_value(a)))
            bad = "--tokenizer needs a file";
    } else if (cli_opt_is(a, arg, "--text")) {
        if (!(m->text_path = cli_opt_value(a)))
            bad = "--text needs a file";
    } else if (cli_opt_is(a, arg, "--tokens")) {
        if (!(m->tokens_path = cli_opt_value(a)))
            bad = "--tokens needs a safetensors file";
    } else if (cli_opt_is(a, arg, "--seq-len")) {
        if (!cli_parse_i64(cli_opt_value(a), 2, INT32_MAX, &m->seq_len))
            bad = "--seq-len needs an integer >= 2";
    } else if (cli_opt_is(a, arg, "--max-seqs")) {
        if (!cli_parse_i64(cli_opt_value(a), 1, INT64_MAX, &m->max_seqs))
            bad = "--max-seqs needs a positive integer";
    } else if (cli_opt_is(a, arg, "--batch-seqs")) {
        if (!cli_parse_i64(cli_opt_value(a), 1, INT32_MAX, &m->batch_seqs))
            bad = "--batch-seqs needs a positive integer";
    } else if (cli_opt_is(a, arg, "--skip-bos")) {
        m->skip_bos = true;
    } else {
        return false;
    }
    if (bad)
        *rc = cli_usage_error(usage, "%s: %s", cmd, bad);
    return true;
}

int cli_model_check(const cli_model *m, const char *usage, const char *cmd, bool required)
{
    const bool any = m->tokenizer_path || m->text_path || m->tokens_path || m->seq_len ||
                     m->max_seqs || m->batch_seqs || m->skip_bos;
    if (!m->model_path && (required || any))
        return cli_usage_error(usage, "%s: missing --model (a llama2.c checkpoint)", cmd);
    if (!m->model_path)
        return 0;
    if (!m->text_path == !m->tokens_path)
        return cli_usage_error(usage, "%s: give the tokens with one of --text FILE or "
                                      "--tokens FILE", cmd);
    if (m->text_path && !m->tokenizer_path)
        return cli_usage_error(usage, "%s: --text needs --tokenizer FILE", cmd);
    if (m->tokens_path && m->seq_len)
        return cli_usage_error(usage, "%s: --seq-len is for --text (--tokens gives its own "
                                      "sequence length)", cmd);
    return 0;
}

/* ---- tokens ------------------------------------------------------------------------------- */

/* The whole file, NUL-terminated (malloc'd), or NULL after printing the error. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_fail(path, "cannot open the file");
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 1 >= cap) {
            char *grown = realloc(buf, cap = cap ? 2 * cap : 1 << 16);
            if (!grown) {
                free(buf);
                fclose(f);
                cli_fail(path, "out of memory");
                return NULL;
            }
            buf = grown;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0)
            break;
    }
    const bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        cli_fail(path, "cannot read the file");
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* A growing array of token ids. */
typedef struct token_stream {
    int32_t *ids;
    int64_t len, cap;
} token_stream;

static bool stream_reserve(token_stream *s, int64_t more)
{
    if (s->len + more <= s->cap)
        return true;
    int64_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + more)
        cap *= 2;
    int32_t *grown = realloc(s->ids, sizeof *grown * (size_t)cap);
    if (grown)
        s->ids = grown, s->cap = cap;
    return grown != NULL;
}

/* The documents (non-empty lines) of the text as one stream: doc, BOS, doc, BOS, ..., doc. */
static int tokenize_text(const llama2_tokenizer *t, char *text, const char *path,
                         token_stream *out)
{
    int64_t docs = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (!n)
            continue;
        int64_t got = 0;
        if (!stream_reserve(out, (int64_t)n + 4))
            return cli_fail(path, "out of memory");
        if (docs++)
            out->ids[out->len++] = 1; /* BOS between documents */
        if (llama2_tokenizer_encode(t, line, 0, 0, out->ids + out->len, out->cap - out->len,
                                    &got) != SAE_OK)
            return cli_fail(path, "cannot tokenize: %s", llama2_last_error());
        out->len += got;
    }
    return 0;
}

/* Sequences of `len` tokens: BOS + the next len - 1 tokens of the stream, skipping a BOS
 * separator at the start of a piece; only whole sequences. */
static int cut_sequences(cli_model *m, const token_stream *s, int64_t len)
{
    int64_t n = 0, at = 0;
    m->tokens = cli_alloc_array(s->len / (len > 1 ? len - 1 : 1) + 1, sizeof(int32_t) * len);
    if (!m->tokens)
        return cli_fail(m->text_path, "out of memory");
    while (!m->max_seqs || n < m->max_seqs) {
        if (at < s->len && s->ids[at] == 1)
            at++;
        if (s->len - at < len - 1)
            break;
        m->tokens[n * len] = 1;
        memcpy(m->tokens + n * len + 1, s->ids + at, sizeof(int32_t) * (size_t)(len - 1));
        at += len - 1, n++;
    }
    if (n == 0)
        return cli_fail(m->text_path, "%lld tokens make no sequence of %lld (BOS + %lld "
                        "tokens)", (long long)s->len, (long long)len, (long long)(len - 1));
    m->n_seq = n;
    m->len = len;
    return 0;
}

static int tokens_from_text(cli_model *m)
{
    llama2_tokenizer *t = NULL;
    if (llama2_tokenizer_load(&t, m->tokenizer_path, llama2_model_config(m->model)->vocab_size,
                              NULL) != SAE_OK)
        return cli_fail(m->tokenizer_path, "%s", llama2_last_error());
    char *text = read_text(m->text_path);
    token_stream s = {0};
    int rc = text ? tokenize_text(t, text, m->text_path, &s) : CLI_EXIT_FAILURE;
    if (!rc)
        rc = cut_sequences(m, &s, m->seq_len ? m->seq_len : CLI_DEFAULT_SEQ_LEN);
    free(s.ids);
    free(text);
    llama2_tokenizer_free(t);
    return rc;
}

/* The tensor 'tokens' (or the only one), I32 or I64 [n_seq, seq_len], as int32. */
static int tokens_from_file(cli_model *m)
{
    const char *path = m->tokens_path;
    sae_st_reader *r = NULL;
    sae_status s = sae_st_open(&r, path);
    if (s != SAE_OK)
        return cli_fail_status(path, s);
    const sae_tensor_info *t = sae_st_find(r, "tokens");
    if (!t && sae_st_count(r) == 1)
        t = sae_st_tensor_at(r, 0);
    int rc = 0;
    if (!t)
        rc = cli_fail(path, "no tensor named 'tokens' (and more than one tensor)");
    else if ((t->dtype != SAE_DTYPE_I32 && t->dtype != SAE_DTYPE_I64) || t->ndim != 2 ||
             t->numel == 0)
        rc = cli_fail(path, "tensor %s is %s with %d dimensions; expected I32 or I64 [n_seq, "
                      "seq_len]", t->name, sae_dtype_name(t->dtype), (int)t->ndim);
    if (!rc) {
        const int64_t rows = m->max_seqs && m->max_seqs < t->shape[0] ? m->max_seqs : t->shape[0];
        m->n_seq = rows, m->len = t->shape[1];
        if (!(m->tokens = cli_alloc_array(rows * m->len, sizeof(int32_t))))
            rc = cli_fail(path, "out of memory");
        for (int64_t i = 0; !rc && i < rows * m->len; i++) {
            int64_t v;
            if (t->dtype == SAE_DTYPE_I32) {
                int32_t w;
                memcpy(&w, (const char *)t->data + 4 * i, 4);
                v = w;
            } else {
                memcpy(&v, (const char *)t->data + 8 * i, 8);
            }
            if (v < INT32_MIN || v > INT32_MAX)
                rc = cli_fail(path, "token %lld of sequence %lld is %lld", (long long)(i % m->len),
                              (long long)(i / m->len), (long long)v);
            else
                m->tokens[i] = (int32_t)v;
        }
    }
    sae_st_close(r);
    return rc;
}

int cli_model_open(cli_model *m)
{
    if (llama2_model_load(&m->model, m->model_path, NULL) != SAE_OK)
        return cli_fail(m->model_path, "%s", llama2_last_error());
    llama2_model_host(m->model, &m->host);
    return m->text_path ? tokens_from_text(m) : tokens_from_file(m);
}

void cli_model_describe(const cli_model *m, char *buf, size_t size)
{
    snprintf(buf, size, "%lld sequences of %lld tokens (%s)", (long long)m->n_seq,
             (long long)m->len, m->text_path ? m->text_path : m->tokens_path);
}

void cli_model_free(cli_model *m)
{
    llama2_model_free(m->model);
    free(m->tokens);
    cli_model_init(m);
}

/* ---- hook points -------------------------------------------------------------------------- */

int32_t cli_model_find_hook(const cli_model *m, const char *name)
{
    int32_t id = -1;
    if (sae_host_find_hook(&id, &m->host, name) == SAE_OK)
        return id;
    /* SAELens / TransformerLens: blocks.L.hook_KIND is KIND.L */
    int layer = -1, end = 0;
    char own[256];
    if (sscanf(name, "blocks.%d.hook_%n", &layer, &end) == 1 && end > 0 && layer >= 0 &&
        snprintf(own, sizeof own, "%s.%d", name + end, layer) < (int)sizeof own &&
        sae_host_find_hook(&id, &m->host, own) == SAE_OK)
        return id;
    return -1;
}

void cli_model_hook_names(const cli_model *m, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < m->host.n_hooks && used < size; i++) {
        const char *name = m->host.hook_names[i];
        const size_t n = strlen(name);
        if (n > 2 && !strcmp(name + n - 2, ".0"))
            used += (size_t)snprintf(buf + used, size - used, "%s%.*s.L", used ? ", " : "",
                                     (int)(n - 2), name);
    }
    if (used < size)
        snprintf(buf + used, size - used, " (L < %lld)", (long long)m->host.n_layers);
}
