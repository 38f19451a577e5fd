/* backward.c: the backward pass of the llama2 host — the gradient of a loss given on the logits
 * of the last llama2_model_forward, delivered at the hook points, with stop-gradient.
 *
 * The forward keeps only the residual stream entering each attention and each MLP and the final
 * norm (llama2_model.tape); each layer's internals (q, k, v, attention probabilities, the SwiGLU
 * pre-activations) are recomputed here from them, one layer at a time, by the same functions as
 * the forward. Cost: one more forward; memory: the tape plus one layer's scratch.
 *
 * Per layer l, with hooks identity in the backward (host.h) and g the gradient arriving at the
 * residual stream after resid_post.l:
 *   resid_post.l gets g;          g_mid  = g (0 if resid_post.l is stopped)
 *   mlp_out.l    gets g_mid;      g_mid += MLP'ᵀ g_mid   unless mlp_out.l is stopped
 *   attn_out.l   gets g_mid;      g_pre  = g_mid + Attn'ᵀ g_mid (the second term unless stopped)
 *   resid_pre.l  gets g_pre;      g (for layer l - 1) = g_pre (0 if resid_pre.l is stopped)
 * So a stopped hook receives the gradient arriving at it but passes none to what computed it:
 * gradients upstream of it come only from paths avoiding it. The backward from a hook point
 * (llama2_model_backward_from) is the same loop with g = 0 above the seed, the seed added to g
 * at resid_pre / resid_post and to g_mid's copy entering the branch at attn_out / mlp_out. */
#include <math.h>
#include <string.h>

#include "llama2_internal.h"

/* out (n, i) += g (n, o) · W, W (o, i): the gradient of x in out = x · Wᵀ. */
static void matmul_back(float *out, const float *g, const float *W, int64_t n, int64_t o,
                        int64_t i)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t k = 0; k < o; k++) {
            float gk = g[r * o + k];
            for (int64_t j = 0; j < i; j++)
                out[r * i + j] += gk * W[k * i + j];
        }
}

/* dx (n, d) += the gradient of x in y = rmsnorm(x) ⊙ w given dy (n, d):
 * with s = 1/sqrt(mean(x²) + 1e-5), dx = s (w ⊙ dy) − x s³/d Σ_j w_j dy_j x_j. */
static void rmsnorm_back(float *dx, const float *dy, const float *x, const float *w, int64_t n,
                         int64_t d)
{
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * d, *gr = dy + r * d;
        float ss = 0.0f, dot = 0.0f;
        for (int64_t j = 0; j < d; j++) {
            ss += xr[j] * xr[j];
            dot += w[j] * gr[j] * xr[j];
        }
        float s = 1.0f / sqrtf(ss / (float)d + 1e-5f), c = dot * s * s * s / (float)d;
        for (int64_t j = 0; j < d; j++)
            dx[r * d + j] += s * w[j] * gr[j] - c * xr[j];
    }
}

/* Scratch of the backward over n rows (one layer at a time). */
typedef struct {
    float *g, *gm, *xb, *dxb, *q, *k, *v, *dq, *dk, *dv, *datt, *h1, *h3, *p, *dp;
} scratch;

/* g_pre (n, D) += Attn'ᵀ ga: the attention of layer l at input x0 (n, D), n_seq sequences of T. */
static void attention_back(const llama2_model *m, scratch *w, float *g_pre, const float *ga,
                           const float *x0, int64_t l, int64_t n_seq, int64_t T)
{
    int64_t D = m->c.dim, KV = m->kv_dim, hs = m->head_size, n = n_seq * T;
    int64_t group = m->c.n_heads / m->c.n_kv_heads;
    const float *wq = m->wq + l * D * D, *wk = m->wk + l * KV * D, *wv = m->wv + l * KV * D;
    float scale = 1.0f / sqrtf((float)hs);
    /* Recompute xb = rmsnorm(x0), q, k (rotated) and v as the forward did. */
    llama2__rmsnorm(w->xb, x0, m->rms_att + l * D, n, D);
    llama2__matmul(w->q, D, w->xb, wq, n, D, D);
    llama2__matmul(w->k, KV, w->xb, wk, n, KV, D);
    llama2__matmul(w->v, KV, w->xb, wv, n, KV, D);
    for (int64_t r = 0; r < n; r++) {
        llama2__rope(w->q + r * D, D, hs, r % T);
        llama2__rope(w->k + r * KV, KV, hs, r % T);
    }
    /* datt = ga · Wo (the gradient at the heads' outputs). */
    memset(w->datt, 0, (size_t)(n * D) * sizeof(float));
    matmul_back(w->datt, ga, m->wo + l * D * D, n, D, D);
    memset(w->dq, 0, (size_t)(n * D) * sizeof(float));
    memset(w->dk, 0, (size_t)(n * KV) * sizeof(float));
    memset(w->dv, 0, (size_t)(n * KV) * sizeof(float));
    /* Per sequence, head and query position t: o = Σ_s p_s v_s with p = softmax(q·k_s/√hs), so
     * dp_s = do·v_s, dv_s += p_s do, dscore_s = p_s (dp_s − Σ p dp), dq += dscore_s k_s/√hs,
     * dk_s += dscore_s q/√hs. */
    for (int64_t sq = 0; sq < n_seq; sq++) {
        const float *k = w->k + sq * T * KV, *v = w->v + sq * T * KV;
        float *dk = w->dk + sq * T * KV, *dv = w->dv + sq * T * KV;
        for (int64_t h = 0; h < m->c.n_heads; h++) {
            int64_t off = (h / group) * hs;
            for (int64_t t = 0; t < T; t++) {
                int64_t r = sq * T + t;
                const float *qh = w->q + r * D + h * hs, *doh = w->datt + r * D + h * hs;
                float *dqh = w->dq + r * D + h * hs, pdp = 0.0f;
                llama2__attn_probs(m, w->p, qh, k, off, t);
                for (int64_t s = 0; s <= t; s++) {
                    float dps = 0.0f;
                    for (int64_t j = 0; j < hs; j++) {
                        dps += doh[j] * v[s * KV + off + j];
                        dv[s * KV + off + j] += w->p[s] * doh[j];
                    }
                    w->dp[s] = dps;
                    pdp += w->p[s] * dps;
                }
                for (int64_t s = 0; s <= t; s++) {
                    float ds = w->p[s] * (w->dp[s] - pdp) * scale;
                    for (int64_t j = 0; j < hs; j++) {
                        dqh[j] += ds * k[s * KV + off + j];
                        dk[s * KV + off + j] += ds * qh[j];
                    }
                }
            }
        }
    }
    /* RoPE is a rotation: its transpose rotates by the opposite angle. */
    for (int64_t r = 0; r < n; r++) {
        llama2__rope(w->dq + r * D, D, hs, -(r % T));
        llama2__rope(w->dk + r * KV, KV, hs, -(r % T));
    }
    memset(w->dxb, 0, (size_t)(n * D) * sizeof(float));
    matmul_back(w->dxb, w->dq, wq, n, D, D);
    matmul_back(w->dxb, w->dk, wk, n, KV, D);
    matmul_back(w->dxb, w->dv, wv, n, KV, D);
    rmsnorm_back(g_pre, w->dxb, x0, m->rms_att + l * D, n, D);
}

/* g_mid (n, D) += MLP'ᵀ gm: the SwiGLU MLP w2 · (silu(w1 · h) ⊙ (w3 · h)), h = rmsnorm(x1). */
static void mlp_back(const llama2_model *m, scratch *w, float *g_mid, const float *gm,
                     const float *x1, int64_t l, int64_t n)
{
    int64_t D = m->c.dim, H = m->c.hidden_dim;
    const float *w1 = m->w1 + l * H * D, *w3 = m->w3 + l * H * D;
    llama2__rmsnorm(w->xb, x1, m->rms_ffn + l * D, n, D);
    llama2__matmul(w->h1, H, w->xb, w1, n, H, D);
    llama2__matmul(w->h3, H, w->xb, w3, n, H, D);
    /* dact = gm · w2 at (r, j); then dh1 = dact h3 silu'(h1) and dh3 = dact silu(h1) overwrite
     * h1 and h3 in place (each entry is read before it is written). */
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < H; j++) {
            float da = 0.0f;
            for (int64_t k = 0; k < D; k++)
                da += gm[r * D + k] * m->w2[l * D * H + k * H + j];
            float a = w->h1[r * H + j], b = w->h3[r * H + j], sg = 1.0f / (1.0f + expf(-a));
            /* silu(a) = a σ(a), silu'(a) = σ(a) (1 + a (1 − σ(a))). */
            w->h1[r * H + j] = da * b * sg * (1.0f + a * (1.0f - sg));
            w->h3[r * H + j] = da * a * sg;
        }
    memset(w->dxb, 0, (size_t)(n * D) * sizeof(float));
    matmul_back(w->dxb, w->h1, w1, n, H, D);
    matmul_back(w->dxb, w->h3, w3, n, H, D);
    rmsnorm_back(g_mid, w->dxb, x1, m->rms_ffn + l * D, n, D);
}

/* Give the gradient g (n, D) to hook `id` if wanted. */
static void deliver(float *const *d_hooks, int64_t id, const float *g, int64_t count)
{
    if (d_hooks[id])
        memcpy(d_hooks[id], g, (size_t)count * sizeof(float));
}

static int stopped(const uint8_t *stop_grad, int64_t id) { return stop_grad && stop_grad[id]; }

/* g (count) += seed. */
static void add_seed(float *g, const float *seed, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        g[i] += seed[i];
}

/* The gradient of ⟨d_logits, logits⟩ (d_logits may be NULL: zero) plus ⟨seed, x_seed_hook⟩
 * (seed_hook -1: none) at the wanted hooks. The seed joins the gradient where its hook sits: on
 * the residual stream for resid_pre / resid_post, on the branch output only for attn_out /
 * mlp_out (it flows into the branch, not into the skip connection). */
static sae_status backward(llama2_model *m, int64_t n_seq, int64_t seq_len, const float *d_logits,
                           int64_t seed_hook, const float *seed, float *const *d_hooks,
                           const uint8_t *stop_grad)
{
    if (m->tape_n_seq == 0)
        return llama2__fail(SAE_EINVAL, "llama2 backward: no forward pass to differentiate "
                            "(none yet, or the last one failed)");
    if (n_seq != m->tape_n_seq || seq_len != m->tape_seq_len)
        return llama2__fail(SAE_ESHAPE, "llama2 backward of %lld x %lld tokens, but the "
                            "last forward had %lld x %lld", (long long)n_seq,
                            (long long)seq_len, (long long)m->tape_n_seq,
                            (long long)m->tape_seq_len);
    const llama2_config *c = &m->c;
    int64_t D = c->dim, H = c->hidden_dim, KV = m->kv_dim, L = c->n_layers, n = n_seq * seq_len;
    /* Nothing below the lowest wanted hook is needed. */
    int64_t lowest = 4 * L;
    for (int64_t id = 4 * L - 1; id >= 0; id--)
        if (d_hooks[id])
            lowest = id;
    if (lowest == 4 * L)
        return SAE_OK;

    const sae_allocator *a = m->allocator;
    scratch w;
    float **bufs[] = {&w.g, &w.gm, &w.xb, &w.dxb, &w.q, &w.k, &w.v, &w.dq,
                      &w.dk, &w.dv, &w.datt, &w.h1, &w.h3, &w.p, &w.dp};
    int64_t sizes[] = {n * D, n * D, n * D, n * D, n * D, n * KV, n * KV, n * D,
                       n * KV, n * KV, n * D, n * H, n * H, seq_len, seq_len};
    enum { NBUF = sizeof sizes / sizeof sizes[0] };
    sae_status s = SAE_OK;
    memset(&w, 0, sizeof w);
    for (int i = 0; i < NBUF; i++)
        if (!(*bufs[i] = llama2__alloc(a, (size_t)sizes[i], sizeof(float))))
            s = SAE_ENOMEM;
    if (s == SAE_OK) {
        const float *tape = m->tape;
        const size_t bytes = (size_t)(n * D) * sizeof(float);
        memset(w.g, 0, bytes);
        int live = d_logits != NULL; /* g may be non-zero */
        if (d_logits) {
            /* Final norm and classifier: logits = rmsnorm(x) · Wclsᵀ. */
            memset(w.dxb, 0, bytes);
            matmul_back(w.dxb, d_logits, m->wcls, n, c->vocab_size, D);
            rmsnorm_back(w.g, w.dxb, tape + 2 * L * n * D, m->rms_final, n, D);
        }
        for (int64_t l = L - 1; l >= 0 && 4 * l + 3 >= lowest; l--) {
            const float *x0 = tape + 2 * l * n * D, *x1 = tape + (2 * l + 1) * n * D;
            int64_t pre = 4 * l + LLAMA2_HOOK_RESID_PRE, att = 4 * l + LLAMA2_HOOK_ATTN_OUT;
            int64_t mlp = 4 * l + LLAMA2_HOOK_MLP_OUT, post = 4 * l + LLAMA2_HOOK_RESID_POST;
            if (post == seed_hook)
                add_seed(w.g, seed, n * D), live = 1;
            deliver(d_hooks, post, w.g, n * D);
            if (stopped(stop_grad, post))
                live = 0, memset(w.g, 0, bytes);
            /* gm: the gradient at the branch output (the stream's, plus a seed there). */
            memcpy(w.gm, w.g, bytes);
            if (mlp == seed_hook)
                add_seed(w.gm, seed, n * D);
            deliver(d_hooks, mlp, w.gm, n * D);
            if ((live || mlp == seed_hook) && !stopped(stop_grad, mlp) && mlp > lowest)
                mlp_back(m, &w, w.g, w.gm, x1, l, n), live = 1;
            memcpy(w.gm, w.g, bytes);
            if (att == seed_hook)
                add_seed(w.gm, seed, n * D);
            deliver(d_hooks, att, w.gm, n * D);
            if ((live || att == seed_hook) && !stopped(stop_grad, att) && att > lowest)
                attention_back(m, &w, w.g, w.gm, x0, l, n_seq, seq_len), live = 1;
            if (pre == seed_hook)
                add_seed(w.g, seed, n * D), live = 1;
            deliver(d_hooks, pre, w.g, n * D);
            if (stopped(stop_grad, pre))
                live = 0, memset(w.g, 0, bytes);
        }
    }
    for (int i = 0; i < NBUF; i++)
        a->free(*bufs[i], a->user);
    return s;
}

sae_status llama2_model_backward(llama2_model *m, int64_t n_seq, int64_t seq_len,
                                 const float *d_logits, float *const *d_hooks,
                                 const uint8_t *stop_grad)
{
    if (!m || !d_logits || !d_hooks)
        return llama2__fail(SAE_EINVAL, "llama2_model_backward: model, d_logits or d_hooks is "
                            "NULL");
    return backward(m, n_seq, seq_len, d_logits, -1, NULL, d_hooks, stop_grad);
}

sae_status llama2_model_backward_from(llama2_model *m, int64_t n_seq, int64_t seq_len,
                                      int32_t seed_hook, const float *seed,
                                      float *const *d_hooks, const uint8_t *stop_grad)
{
    if (!m || !seed || !d_hooks)
        return llama2__fail(SAE_EINVAL, "llama2_model_backward_from: model, seed or d_hooks is "
                            "NULL");
    if (seed_hook < 0 || seed_hook >= 4 * m->c.n_layers)
        return llama2__fail(SAE_ERANGE, "llama2_model_backward_from: seed hook %d is outside "
                            "[0, %d)", (int)seed_hook, 4 * m->c.n_layers);
    return backward(m, n_seq, seq_len, NULL, seed_hook, seed, d_hooks, stop_grad);
}
