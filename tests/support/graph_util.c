/* graph_util.c: see graph_util.h. */
#include <math.h>
#include <string.h>

#include "graph_util.h"
#include "test_util.h"

sae_dict *random_dict(int32_t arch, int64_t d_in, int64_t d_sae, uint32_t flags,
                      int32_t input_norm, float scale, float bias, uint64_t seed)
{
    const int64_t nw = d_in * d_sae;
    float *W_enc = test_malloc((size_t)nw * sizeof(float));
    float *W_dec = test_malloc((size_t)nw * sizeof(float));
    float *b_enc = test_malloc((size_t)d_sae * sizeof(float));
    float *b_dec = test_malloc((size_t)d_in * sizeof(float));
    float *thr = test_malloc((size_t)d_sae * sizeof(float));
    float *rm = test_malloc((size_t)d_sae * sizeof(float));
    fill_normal(W_enc, nw, seed, scale / sqrtf((float)d_in));
    fill_normal(W_dec, nw, seed + 1, 1.0f / sqrtf((float)d_in));
    fill_normal(b_dec, d_in, seed + 2, 0.05f);
    fill_normal(rm, d_sae, seed + 3, 0.2f);
    for (int64_t j = 0; j < d_sae; j++)
        b_enc[j] = -bias, thr[j] = 0.5f * bias;
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = arch, cfg.d_in = d_in, cfg.d_sae = d_sae, cfg.flags = flags;
    cfg.input_norm = input_norm;
    cfg.k = arch == SAE_ARCH_TOPK ? (d_sae / 4 > 0 ? d_sae / 4 : 1) : 0;
    cfg.act_scale = input_norm == SAE_NORM_SCALE ? 1.5f : 0.0f;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    if (arch == SAE_ARCH_GATED)
        w.b_gate = b_enc, w.b_mag = b_enc, w.r_mag = rm;
    else
        w.b_enc = b_enc;
    if (arch == SAE_ARCH_JUMPRELU)
        w.threshold = thr;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &cfg, &w, NULL));
    float *bufs[] = {W_enc, W_dec, b_enc, b_dec, thr, rm};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        test_free(bufs[i]);
    return d;
}

void pair_metrics(const sae_host *host, const sae_prompt_pairs *p, sae_hook_fn hook, void *user,
                  double *out)
{
    for (int64_t i = 0; i < p->n_pairs; i++) {
        const int64_t T = p->offsets[i + 1] - p->offsets[i], V = host->vocab_size;
        float *logits = test_malloc((size_t)(T * V) * sizeof(float));
        assert_sae_ok(sae_host_forward(host, p->clean_tokens + p->offsets[i], 1, T, logits,
                                       hook, user));
        const float *z = logits + (T - 1) * V;
        out[i] = (double)z[p->clean_answers[i]] -
                 (p->patch_answers ? (double)z[p->patch_answers[i]] : 0.0);
        test_free(logits);
    }
}

typedef struct {
    int32_t hook;
    float *out;
    int64_t D;
} grab;

static sae_status grab_hook(void *user, int32_t id, float *x, int64_t n, int64_t ld)
{
    grab *g = user;
    if (id == g->hook)
        for (int64_t r = 0; r < n; r++)
            memcpy(g->out + r * g->D, x + r * ld, (size_t)g->D * sizeof(float));
    return SAE_OK;
}

float *pair_activations(const sae_host *host, const sae_prompt_pairs *p, int64_t i, int patch,
                        int32_t hook)
{
    const int64_t T = p->offsets[i + 1] - p->offsets[i];
    grab g = {hook, test_malloc((size_t)(T * host->d_model) * sizeof(float)), host->d_model};
    const int32_t *tok = (patch ? p->patch_tokens : p->clean_tokens) + p->offsets[i];
    assert_sae_ok(sae_host_forward(host, tok, 1, T, NULL, grab_hook, &g));
    return g.out;
}
