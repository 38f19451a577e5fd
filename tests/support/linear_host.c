/* linear_host.c: the linear test host (linear_host.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "linear_host.h"
#include "test_util.h"

struct linear_host {
    int32_t H;
    int64_t d, vocab, max_seq;
    float *E, *A, *B, *S, *W; /* (vocab, d), (H, d, d) x 3, (vocab, d) */
    char (*name_text)[16];
    const char **names;
    int64_t last_seq, last_len; /* shape of the last forward (0: none) */
};

linear_host *linear_host_create(int32_t n_hooks, int64_t d, int64_t vocab, int64_t max_seq,
                                uint64_t seed)
{
    linear_host *h = test_calloc(1, sizeof *h);
    *h = (linear_host){n_hooks, d, vocab, max_seq, NULL, NULL, NULL, NULL, NULL,
                       NULL, NULL, 0, 0};
    h->E = test_malloc((size_t)(vocab * d) * sizeof(float));
    h->W = test_malloc((size_t)(vocab * d) * sizeof(float));
    h->A = test_malloc((size_t)(n_hooks * d * d) * sizeof(float));
    h->B = test_malloc((size_t)(n_hooks * d * d) * sizeof(float));
    h->S = test_malloc((size_t)(n_hooks * d * d) * sizeof(float));
    float scale = 0.3f / sqrtf((float)d);
    fill_normal(h->E, vocab * d, seed, 1.0f);
    fill_normal(h->W, vocab * d, seed + 1, 1.0f / sqrtf((float)d));
    fill_normal(h->A, n_hooks * d * d, seed + 2, scale);
    fill_normal(h->B, n_hooks * d * d, seed + 3, scale);
    fill_normal(h->S, n_hooks * d * d, seed + 4, scale);
    memset(h->S + d * d, 0, (size_t)(d * d) * sizeof(float)); /* S_1 = 0: no x_{-1} */
    h->name_text = test_malloc((size_t)n_hooks * sizeof *h->name_text);
    h->names = test_malloc((size_t)n_hooks * sizeof *h->names);
    for (int32_t i = 0; i < n_hooks; i++) {
        snprintf(h->name_text[i], sizeof h->name_text[i], "layer.%d", (int)i);
        h->names[i] = h->name_text[i];
    }
    return h;
}

void linear_host_free(linear_host *h)
{
    if (!h)
        return;
    float *bufs[] = {h->E, h->A, h->B, h->S, h->W};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        test_free(bufs[i]);
    test_free(h->name_text);
    test_free(h->names);
    test_free(h);
}

/* y (n, d) += x (n, d) · Mᵀ (M (d, d), y_i = Σ_j M_ij x_j), or x · M when `transpose`. */
static void matmul_add(float *y, const float *x, const float *M, int64_t n, int64_t d,
                       int transpose)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < d; i++) {
            double v = 0.0;
            for (int64_t j = 0; j < d; j++)
                v += (double)(transpose ? M[j * d + i] : M[i * d + j]) * x[r * d + j];
            y[r * d + i] += (float)v;
        }
}

/* The causal mean over positions of each sequence (T tokens, n_seq sequences), or its
 * transpose: mean: y[t] = Σ_{s<=t} x[s] / (t + 1); transpose: y[s] = Σ_{t>=s} x[t] / (t + 1). */
static void causal_mean(float *y, const float *x, int64_t n_seq, int64_t T, int64_t d,
                        int transpose)
{
    for (int64_t q = 0; q < n_seq; q++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < d; i++) {
                double v = 0.0;
                if (!transpose)
                    for (int64_t s = 0; s <= t; s++)
                        v += x[(q * T + s) * d + i] / (double)(t + 1);
                else
                    for (int64_t s = t; s < T; s++)
                        v += x[(q * T + s) * d + i] / (double)(s + 1);
                y[(q * T + t) * d + i] = (float)v;
            }
}

static sae_status forward(void *user, const int32_t *tokens, int64_t n_seq, int64_t T,
                          float *logits, sae_hook_fn hook, void *hook_user)
{
    linear_host *h = user;
    const int64_t d = h->d, n = n_seq * T;
    float *x = test_calloc((size_t)(h->H * n * d), sizeof(float));
    float *mix = test_malloc((size_t)(n * d) * sizeof(float));
    sae_status s = SAE_OK;
    h->last_seq = h->last_len = 0;
    for (int32_t l = 0; l < h->H && s == SAE_OK; l++) {
        float *xl = x + l * n * d;
        if (l == 0) {
            for (int64_t r = 0; r < n; r++)
                memcpy(xl + r * d, h->E + tokens[r] * d, (size_t)d * sizeof(float));
        } else {
            const float *prev = xl - n * d;
            memcpy(xl, prev, (size_t)(n * d) * sizeof(float));
            matmul_add(xl, prev, h->A + l * d * d, n, d, 0);
            causal_mean(mix, prev, n_seq, T, d, 0);
            matmul_add(xl, mix, h->B + l * d * d, n, d, 0);
            if (l >= 2)
                matmul_add(xl, prev - n * d, h->S + l * d * d, n, d, 0);
        }
        if (hook)
            s = hook(hook_user, l, xl, n, d);
    }
    if (s == SAE_OK && logits) {
        const float *last = x + (h->H - 1) * n * d;
        for (int64_t r = 0; r < n; r++)
            for (int64_t v = 0; v < h->vocab; v++) {
                double z = 0.0;
                for (int64_t i = 0; i < d; i++)
                    z += (double)h->W[v * d + i] * last[r * d + i];
                logits[r * h->vocab + v] = (float)z;
            }
    }
    if (s == SAE_OK)
        h->last_seq = n_seq, h->last_len = T;
    test_free(x);
    test_free(mix);
    return s;
}

/* Gradients G (H, n, d) of the loss at each hook, from the top down; G[H-1] holds the gradient
 * from the logits on entry. A seed is added at its hook; a stopped hook passes nothing on. */
static sae_status backward_common(linear_host *h, int64_t n_seq, int64_t T, float *G,
                                  int32_t seed_hook, const float *seed, float *const *d_hooks,
                                  const uint8_t *stop_grad)
{
    if (n_seq != h->last_seq || T != h->last_len)
        return SAE_ESHAPE;
    const int64_t d = h->d, n = n_seq * T;
    float *mix = test_malloc((size_t)(n * d) * sizeof(float));
    float *t = test_malloc((size_t)(n * d) * sizeof(float));
    for (int32_t l = h->H - 1; l >= 0; l--) {
        float *g = G + l * n * d;
        if (l == seed_hook)
            for (int64_t i = 0; i < n * d; i++)
                g[i] += seed[i];
        if (d_hooks[l])
            memcpy(d_hooks[l], g, (size_t)(n * d) * sizeof(float));
        if (l == 0 || (stop_grad && stop_grad[l]))
            continue;
        float *gp = g - n * d;
        for (int64_t i = 0; i < n * d; i++)
            gp[i] += g[i];
        matmul_add(gp, g, h->A + l * d * d, n, d, 1);
        memset(t, 0, (size_t)(n * d) * sizeof(float));
        matmul_add(t, g, h->B + l * d * d, n, d, 1);
        causal_mean(mix, t, n_seq, T, d, 1);
        for (int64_t i = 0; i < n * d; i++)
            gp[i] += mix[i];
        if (l >= 2)
            matmul_add(gp - n * d, g, h->S + l * d * d, n, d, 1);
    }
    test_free(mix);
    test_free(t);
    return SAE_OK;
}

static sae_status backward(void *user, int64_t n_seq, int64_t T, const float *d_logits,
                           float *const *d_hooks, const uint8_t *stop_grad)
{
    linear_host *h = user;
    const int64_t d = h->d, n = n_seq * T;
    float *G = test_calloc((size_t)(h->H * n * d), sizeof(float));
    float *top = G + (h->H - 1) * n * d;
    for (int64_t r = 0; r < n; r++)
        for (int64_t v = 0; v < h->vocab; v++)
            for (int64_t i = 0; i < d; i++)
                top[r * d + i] += d_logits[r * h->vocab + v] * h->W[v * d + i];
    sae_status s = backward_common(h, n_seq, T, G, -1, NULL, d_hooks, stop_grad);
    test_free(G);
    return s;
}

static sae_status backward_from(void *user, int64_t n_seq, int64_t T, int32_t seed_hook,
                                const float *seed, float *const *d_hooks,
                                const uint8_t *stop_grad)
{
    linear_host *h = user;
    float *G = test_calloc((size_t)(h->H * n_seq * T * h->d), sizeof(float));
    sae_status s = backward_common(h, n_seq, T, G, seed_hook, seed, d_hooks, stop_grad);
    test_free(G);
    return s;
}

void linear_host_table(linear_host *h, sae_host *out)
{
    *out = (sae_host)SAE_HOST_INIT;
    out->n_hooks = h->H;
    out->d_model = h->d;
    out->vocab_size = h->vocab;
    out->n_layers = h->H;
    out->max_seq_len = h->max_seq;
    out->hook_names = h->names;
    out->forward = forward;
    out->backward = backward;
    out->backward_from = backward_from;
    out->user = h;
}
