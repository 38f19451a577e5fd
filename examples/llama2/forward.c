/* forward.c: the llama2 transformer forward pass (FORMATS.md, "llama2.c checkpoint"), batched
 * over whole sequences and token by token with a KV cache. Plain loops in the order of
 * llama2.c's run.c (float accumulation), since the model is tiny (stories260K: dim 64). */
#include <math.h>
#include <string.h>

#include "llama2_internal.h"

void llama2__rmsnorm(float *out, const float *x, const float *w, int64_t n, int64_t d)
{
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * d;
        float ss = 0.0f;
        for (int64_t j = 0; j < d; j++)
            ss += xr[j] * xr[j];
        ss = 1.0f / sqrtf(ss / (float)d + 1e-5f);
        for (int64_t j = 0; j < d; j++)
            out[r * d + j] = w[j] * (ss * xr[j]);
    }
}

void llama2__matmul(float *out, int64_t ldo, const float *x, const float *W, int64_t n, int64_t o,
                    int64_t i)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t k = 0; k < o; k++) {
            float v = 0.0f;
            for (int64_t j = 0; j < i; j++)
                v += W[k * i + j] * x[r * i + j];
            out[r * ldo + k] = v;
        }
}

void llama2__rope(float *v, int64_t d, int64_t hs, int64_t pos)
{
    for (int64_t j = 0; j < d; j += 2) {
        float freq = 1.0f / powf(10000.0f, (float)(j % hs) / (float)hs);
        float angle = (float)pos * freq, c = cosf(angle), s = sinf(angle);
        float a = v[j], b = v[j + 1];
        v[j] = a * c - b * s;
        v[j + 1] = a * s + b * c;
    }
}

void llama2__attn_probs(const llama2_model *m, float *p, const float *qh, const float *k,
                        int64_t off, int64_t pos)
{
    int64_t hs = m->head_size, kv_dim = m->kv_dim;
    float max = -INFINITY, sum = 0.0f;
    for (int64_t t = 0; t <= pos; t++) {
        float s = 0.0f;
        for (int64_t j = 0; j < hs; j++)
            s += qh[j] * k[t * kv_dim + off + j];
        p[t] = s / sqrtf((float)hs);
        max = p[t] > max ? p[t] : max;
    }
    for (int64_t t = 0; t <= pos; t++)
        sum += (p[t] = expf(p[t] - max));
    for (int64_t t = 0; t <= pos; t++)
        p[t] /= sum;
}

/* out (dim) = causal grouped-query attention of query q (dim) at position pos over the cached
 * keys and values k, v (pos + 1, kv_dim); scores: (pos + 1) scratch. */
static void attend(const llama2_model *m, float *out, const float *q, const float *k,
                   const float *v, int64_t pos, float *scores)
{
    int64_t hs = m->head_size, kv_dim = m->kv_dim, group = m->c.n_heads / m->c.n_kv_heads;
    for (int64_t h = 0; h < m->c.n_heads; h++) {
        int64_t off = (h / group) * hs;
        llama2__attn_probs(m, scores, q + h * hs, k, off, pos);
        float *oh = out + h * hs;
        memset(oh, 0, (size_t)hs * sizeof(float));
        for (int64_t t = 0; t <= pos; t++)
            for (int64_t j = 0; j < hs; j++)
                oh[j] += scores[t] * v[t * kv_dim + off + j];
    }
}

static sae_status call_hook(sae_hook_fn hook, void *user, int64_t layer, int kind, float *x,
                            int64_t n, int64_t d)
{
    return hook ? hook(user, (int32_t)(4 * layer + kind), x, n, d) : SAE_OK;
}

/* Scratch of one pass over n rows. */
typedef struct {
    float *x, *xb, *q, *att, *hb, *hb2, *scores;
} scratch;

sae_status llama2__run(const llama2_model *m, const int32_t *tokens, int64_t n_seq, int64_t n_new,
                       int64_t pos0, float *kc, float *vc, int64_t cap, float *logits,
                       sae_hook_fn hook, void *hook_user, float *tape)
{
    const llama2_config *c = &m->c;
    int64_t D = c->dim, H = c->hidden_dim, KV = m->kv_dim, L = c->n_layers, n = n_seq * n_new;
    const sae_allocator *a = m->allocator;
    scratch w;
    float **bufs[] = {&w.x, &w.xb, &w.q, &w.att, &w.hb, &w.hb2, &w.scores};
    int64_t sizes[] = {n * D, n * D, n * D, n * D, n * H, n * H, cap};
    sae_status s = SAE_OK;
    memset(&w, 0, sizeof w);
    for (int i = 0; i < 7; i++)
        if (!(*bufs[i] = llama2__alloc(a, (size_t)sizes[i], sizeof(float))))
            s = SAE_ENOMEM;
    if (s != SAE_OK)
        goto done;

    for (int64_t r = 0; r < n; r++)
        memcpy(w.x + r * D, m->emb + (int64_t)tokens[r] * D, (size_t)D * sizeof(float));
    for (int64_t l = 0; l < L; l++) {
        if ((s = call_hook(hook, hook_user, l, LLAMA2_HOOK_RESID_PRE, w.x, n, D)) != SAE_OK)
            goto done;
        if (tape)
            memcpy(tape + 2 * l * n * D, w.x, (size_t)(n * D) * sizeof(float));
        /* Attention: q, k, v of every row; k, v go to the cache of its sequence and position. */
        llama2__rmsnorm(w.xb, w.x, m->rms_att + l * D, n, D);
        llama2__matmul(w.q, D, w.xb, m->wq + l * D * D, n, D, D);
        for (int64_t sq = 0; sq < n_seq; sq++) {
            float *kl = kc + (sq * L + l) * cap * KV, *vl = vc + (sq * L + l) * cap * KV;
            const float *xs = w.xb + sq * n_new * D;
            llama2__matmul(kl + pos0 * KV, KV, xs, m->wk + l * KV * D, n_new, KV, D);
            llama2__matmul(vl + pos0 * KV, KV, xs, m->wv + l * KV * D, n_new, KV, D);
            for (int64_t t = 0; t < n_new; t++) {
                float *q = w.q + (sq * n_new + t) * D;
                llama2__rope(q, D, m->head_size, pos0 + t);
                llama2__rope(kl + (pos0 + t) * KV, KV, m->head_size, pos0 + t);
            }
            for (int64_t t = 0; t < n_new; t++) {
                int64_t r = sq * n_new + t;
                attend(m, w.att + r * D, w.q + r * D, kl, vl, pos0 + t, w.scores);
            }
        }
        llama2__matmul(w.xb, D, w.att, m->wo + l * D * D, n, D, D);
        if ((s = call_hook(hook, hook_user, l, LLAMA2_HOOK_ATTN_OUT, w.xb, n, D)) != SAE_OK)
            goto done;
        for (int64_t i = 0; i < n * D; i++)
            w.x[i] += w.xb[i];
        if (tape)
            memcpy(tape + (2 * l + 1) * n * D, w.x, (size_t)(n * D) * sizeof(float));
        /* SwiGLU MLP: w2 · (silu(w1 · h) ⊙ (w3 · h)). */
        llama2__rmsnorm(w.xb, w.x, m->rms_ffn + l * D, n, D);
        llama2__matmul(w.hb, H, w.xb, m->w1 + l * H * D, n, H, D);
        llama2__matmul(w.hb2, H, w.xb, m->w3 + l * H * D, n, H, D);
        for (int64_t i = 0; i < n * H; i++)
            w.hb[i] = w.hb[i] * (1.0f / (1.0f + expf(-w.hb[i]))) * w.hb2[i];
        llama2__matmul(w.xb, D, w.hb, m->w2 + l * D * H, n, D, H);
        if ((s = call_hook(hook, hook_user, l, LLAMA2_HOOK_MLP_OUT, w.xb, n, D)) != SAE_OK)
            goto done;
        for (int64_t i = 0; i < n * D; i++)
            w.x[i] += w.xb[i];
        if ((s = call_hook(hook, hook_user, l, LLAMA2_HOOK_RESID_POST, w.x, n, D)) != SAE_OK)
            goto done;
    }
    if (tape)
        memcpy(tape + 2 * L * n * D, w.x, (size_t)(n * D) * sizeof(float));
    if (logits) {
        llama2__rmsnorm(w.xb, w.x, m->rms_final, n, D);
        llama2__matmul(logits, c->vocab_size, w.xb, m->wcls, n, c->vocab_size, D);
    }
done:
    for (int i = 0; i < 7; i++)
        a->free(*bufs[i], a->user);
    return s;
}

sae_status llama2_model_forward(llama2_model *m, const int32_t *tokens, int64_t n_seq,
                                int64_t seq_len, float *logits, sae_hook_fn hook,
                                void *hook_user)
{
    if (!m || !tokens)
        return llama2__fail(SAE_EINVAL, "llama2_model_forward: model or tokens is NULL");
    if (n_seq < 1 || seq_len < 1 || seq_len > m->c.seq_len || n_seq > INT32_MAX)
        return llama2__fail(SAE_ESHAPE, "llama2 forward of %lld sequences of %lld tokens: "
                            "need >= 1 sequence of 1 to %d tokens", (long long)n_seq,
                            (long long)seq_len, m->c.seq_len);
    for (int64_t i = 0; i < n_seq * seq_len; i++)
        if (tokens[i] < 0 || tokens[i] >= m->c.vocab_size)
            return llama2__fail(SAE_ERANGE, "token %d at index %lld is outside [0, %d)",
                                (int)tokens[i], (long long)i, m->c.vocab_size);
    /* The tape of the previous forward is reused when it is large enough. */
    int64_t cache = n_seq * m->c.n_layers * seq_len * m->kv_dim;
    int64_t tape = (2 * m->c.n_layers + 1) * n_seq * seq_len * m->c.dim;
    const sae_allocator *a = m->allocator;
    m->tape_n_seq = m->tape_seq_len = 0;
    if (m->tape_cap < tape) {
        a->free(m->tape, a->user);
        m->tape = llama2__alloc(a, (size_t)tape, sizeof(float));
        m->tape_cap = m->tape ? tape : 0;
    }
    float *kc = llama2__alloc(a, (size_t)cache, sizeof(float));
    float *vc = llama2__alloc(a, (size_t)cache, sizeof(float));
    sae_status s = kc && vc && m->tape ? llama2__run(m, tokens, n_seq, seq_len, 0, kc, vc, seq_len,
                                                     logits, hook, hook_user, m->tape)
                                       : SAE_ENOMEM;
    a->free(kc, a->user);
    a->free(vc, a->user);
    if (s == SAE_OK)
        m->tape_n_seq = n_seq, m->tape_seq_len = seq_len;
    return s;
}

sae_status llama2_state_create(llama2_state **out, const llama2_model *m)
{
    if (!out || !m)
        return llama2__fail(SAE_EINVAL, "llama2_state_create: out or model is NULL");
    *out = NULL;
    const sae_allocator *a = m->allocator;
    int64_t cache = (int64_t)m->c.n_layers * m->c.seq_len * m->kv_dim;
    llama2_state *st = llama2__alloc(a, 1, sizeof *st);
    if (!st)
        return SAE_ENOMEM;
    *st = (llama2_state){m, 0, llama2__alloc(a, (size_t)cache, sizeof(float)),
                         llama2__alloc(a, (size_t)cache, sizeof(float))};
    if (!st->kc || !st->vc) {
        llama2_state_free(st);
        return SAE_ENOMEM;
    }
    *out = st;
    return SAE_OK;
}

void llama2_state_free(llama2_state *s)
{
    if (!s)
        return;
    const sae_allocator *a = s->m->allocator;
    a->free(s->kc, a->user);
    a->free(s->vc, a->user);
    a->free(s, a->user);
}

void llama2_state_reset(llama2_state *s) { s->pos = 0; }

sae_status llama2_state_prefill(llama2_state *s, const int32_t *tokens, int64_t n,
                                float *logits, sae_hook_fn hook, void *hook_user)
{
    if (!s || !tokens || n < 1)
        return llama2__fail(SAE_EINVAL, "llama2_state_prefill: state or tokens is NULL, or "
                            "n (%lld) < 1", (long long)n);
    const llama2_model *m = s->m;
    if (n > m->c.seq_len - s->pos)
        return llama2__fail(SAE_ERANGE, "llama2 generation at position %lld: %lld more tokens "
                            "do not fit in its context length %d", (long long)s->pos,
                            (long long)n, m->c.seq_len);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->c.vocab_size)
            return llama2__fail(SAE_ERANGE, "token %d at index %lld is outside [0, %d)",
                                (int)tokens[i], (long long)i, m->c.vocab_size);
    sae_status st = llama2__run(m, tokens, 1, n, s->pos, s->kc, s->vc, m->c.seq_len, logits,
                                hook, hook_user, NULL);
    if (st == SAE_OK)
        s->pos += n;
    return st;
}

sae_status llama2_state_step(llama2_state *s, int32_t token, float *logits, sae_hook_fn hook,
                             void *hook_user)
{
    return llama2_state_prefill(s, &token, 1, logits, hook, hook_user);
}
