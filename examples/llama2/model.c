/* model.c: loading and checking a llama2.c checkpoint (FORMATS.md, "llama2.c checkpoint"),
 * errors and memory of the llama2.c host, and the model as a sae_host. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "llama2_internal.h"

static _Thread_local char error_text[512];

const char *llama2_last_error(void) { return error_text; }

sae_status llama2__fail(sae_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, ap);
    va_end(ap);
    return status;
}

void *llama2__alloc(const sae_allocator *a, size_t count, size_t size)
{
    void *p = NULL;
    if (size == 0 || count <= SIZE_MAX / size) {
        size_t bytes = count * size;
        p = a->alloc(bytes > 0 ? bytes : 1, 64, a->user);
    }
    if (!p)
        llama2__fail(SAE_ENOMEM, "out of memory for %zu x %zu bytes", count, size);
    return p;
}

/* total += a * b * c (element counts), false on overflow. */
static int add_product(int64_t *total, int64_t a, int64_t b, int64_t c)
{
    int64_t ab, abc;
    return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, &abc) &&
           !__builtin_add_overflow(*total, abc, total);
}

/* Floats after the header, excluding the classifier; -1 on overflow. freq_cis_real/imag are
 * (seq_len, head_size / 2) each. */
static int64_t body_floats(const llama2_config *c, int64_t kv_dim)
{
    int64_t n = 0, L = c->n_layers, D = c->dim, H = c->hidden_dim;
    int ok = add_product(&n, c->vocab_size, D, 1) && add_product(&n, L, D, 1) &&
             add_product(&n, L, D, D) && add_product(&n, 2 * L, kv_dim, D) &&
             add_product(&n, L, D, D) && add_product(&n, L, D, 1) &&
             add_product(&n, 3 * L, H, D) && add_product(&n, D, 1, 1) &&
             add_product(&n, c->seq_len, D / c->n_heads, 1);
    return ok ? n : -1;
}

static sae_status check_config(const llama2_config *c, const char *path)
{
    if (c->dim < 1 || c->hidden_dim < 1 || c->n_layers < 1 || c->n_heads < 1 ||
        c->n_kv_heads < 1 || c->vocab_size < 1 || c->seq_len < 1 || c->n_layers > 100000 ||
        c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0 ||
        (c->dim / c->n_heads) % 2 != 0)
        return llama2__fail(SAE_EFORMAT,
                            "%s: impossible dimensions dim %d, hidden_dim %d, n_layers %d, "
                            "n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d (need all "
                            "positive, n_heads | dim, n_kv_heads | n_heads, even head size)",
                            path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                            c->vocab_size, c->seq_len);
    return SAE_OK;
}

/* Point the weight arrays into m->data in file order. */
static void map_weights(llama2_model *m, int shared)
{
    const llama2_config *c = &m->c;
    int64_t L = c->n_layers, D = c->dim, H = c->hidden_dim, KV = m->kv_dim;
    const float *p = m->data;
    m->emb = p, p += (int64_t)c->vocab_size * D;
    m->rms_att = p, p += L * D;
    m->wq = p, p += L * D * D;
    m->wk = p, p += L * KV * D;
    m->wv = p, p += L * KV * D;
    m->wo = p, p += L * D * D;
    m->rms_ffn = p, p += L * D;
    m->w1 = p, p += L * H * D;
    m->w2 = p, p += L * D * H;
    m->w3 = p, p += L * H * D;
    m->rms_final = p, p += D;
    p += (int64_t)c->seq_len * m->head_size; /* freq_cis_real, freq_cis_imag: RoPE recomputed */
    m->wcls = shared ? m->emb : p;
}

static sae_status make_hook_names(llama2_model *m)
{
    static const char *const kinds[4] = {"resid_pre", "attn_out", "mlp_out", "resid_post"};
    int64_t n = 4 * (int64_t)m->c.n_layers;
    m->hook_name_text = llama2__alloc(m->allocator, (size_t)n, sizeof *m->hook_name_text);
    m->hook_names = llama2__alloc(m->allocator, (size_t)n, sizeof *m->hook_names);
    if (!m->hook_name_text || !m->hook_names)
        return SAE_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        snprintf(m->hook_name_text[i], sizeof m->hook_name_text[i], "%s.%d", kinds[i % 4],
                 (int)(i / 4));
        m->hook_names[i] = m->hook_name_text[i];
    }
    return SAE_OK;
}

/* Read the whole file after its header into m->data, checking its size against the header. */
static sae_status read_body(llama2_model *m, FILE *f, const char *path, int *shared)
{
    int64_t body = body_floats(&m->c, m->kv_dim), cls = (int64_t)m->c.vocab_size * m->c.dim;
    if (body < 0 || body > (INT64_MAX - 28) / 4 - cls)
        return llama2__fail(SAE_EFORMAT, "%s: dimensions overflow", path);
    if (fseeko(f, 0, SEEK_END) != 0)
        return llama2__fail(SAE_EIO, "%s: cannot seek", path);
    int64_t size = ftello(f), want = 28 + 4 * (body + (*shared ? 0 : cls));
    if (size != want)
        return llama2__fail(SAE_EFORMAT, "%s has %lld bytes; its header (dim %d, %d layers, "
                            "vocab %d, %s classifier) implies %lld", path, (long long)size,
                            m->c.dim, m->c.n_layers, m->c.vocab_size,
                            *shared ? "shared" : "separate", (long long)want);
    int64_t n = (want - 28) / 4;
    if (!(m->data = llama2__alloc(m->allocator, (size_t)n, sizeof(float))))
        return SAE_ENOMEM;
    if (fseeko(f, 28, SEEK_SET) != 0 || fread(m->data, sizeof(float), (size_t)n, f) != (size_t)n)
        return llama2__fail(SAE_EIO, "%s: read failed", path);
    return SAE_OK;
}

sae_status llama2_model_load(llama2_model **out, const char *path, const sae_allocator *allocator)
{
    if (out)
        *out = NULL;
    if (!out || !path)
        return llama2__fail(SAE_EINVAL, "llama2_model_load: out or path is NULL");
    const sae_allocator *a = allocator ? allocator : sae_default_allocator();
    FILE *f = fopen(path, "rb");
    if (!f)
        return llama2__fail(SAE_EIO, "cannot open %s", path);
    int32_t header[7];
    llama2_model *m = NULL;
    sae_status s = SAE_OK;
    if (fread(header, sizeof header, 1, f) != 1) {
        s = llama2__fail(SAE_EFORMAT, "%s: shorter than the 28-byte header", path);
        goto done;
    }
    llama2_config c = {header[0], header[1], header[2], header[3], header[4], header[5],
                       header[6]};
    int shared = c.vocab_size > 0;
    if (c.vocab_size < 0 && c.vocab_size != INT32_MIN)
        c.vocab_size = -c.vocab_size;
    if ((s = check_config(&c, path)) != SAE_OK)
        goto done;
    if (!(m = llama2__alloc(a, 1, sizeof *m))) {
        s = SAE_ENOMEM;
        goto done;
    }
    memset(m, 0, sizeof *m);
    m->c = c;
    m->allocator = a;
    m->head_size = c.dim / c.n_heads;
    m->kv_dim = (int64_t)c.dim * c.n_kv_heads / c.n_heads;
    if ((s = read_body(m, f, path, &shared)) != SAE_OK || (s = make_hook_names(m)) != SAE_OK)
        goto done;
    map_weights(m, shared);
done:
    fclose(f);
    if (s != SAE_OK)
        llama2_model_free(m);
    else
        *out = m;
    return s;
}

void llama2_model_free(llama2_model *m)
{
    if (!m)
        return;
    const sae_allocator *a = m->allocator;
    a->free(m->data, a->user);
    a->free(m->hook_name_text, a->user);
    a->free(m->hook_names, a->user);
    a->free(m->tape, a->user);
    a->free(m, a->user);
}

const llama2_config *llama2_model_config(const llama2_model *m) { return m ? &m->c : NULL; }

static sae_status host_forward(void *user, const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                               float *logits, sae_hook_fn hook, void *hook_user)
{
    return llama2_model_forward(user, tokens, n_seq, seq_len, logits, hook, hook_user);
}

static sae_status host_backward(void *user, int64_t n_seq, int64_t seq_len,
                                const float *d_logits, float *const *d_hooks,
                                const uint8_t *stop_grad)
{
    return llama2_model_backward(user, n_seq, seq_len, d_logits, d_hooks, stop_grad);
}

static sae_status host_backward_from(void *user, int64_t n_seq, int64_t seq_len,
                                     int32_t seed_hook, const float *seed, float *const *d_hooks,
                                     const uint8_t *stop_grad)
{
    return llama2_model_backward_from(user, n_seq, seq_len, seed_hook, seed, d_hooks, stop_grad);
}

void llama2_model_host(llama2_model *m, sae_host *out)
{
    *out = (sae_host)SAE_HOST_INIT;
    out->n_hooks = 4 * m->c.n_layers;
    out->d_model = m->c.dim;
    out->vocab_size = m->c.vocab_size;
    out->n_layers = m->c.n_layers;
    out->max_seq_len = m->c.seq_len;
    out->hook_names = m->hook_names;
    out->forward = host_forward;
    out->backward = host_backward;
    out->backward_from = host_backward_from;
    out->user = m;
}
