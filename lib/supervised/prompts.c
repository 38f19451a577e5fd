/* prompts.c: the host runs of the evaluation (supervised.h): each prompt runs alone (prompts
 * differ in length), the node is the activation at the hook point's last position, and the
 * metric is the logit difference between two tokens there. The approximation axis (Makelov et
 * al.; MATH.md) is four such runs: clean, mean-ablated, reconstructed, and a − â + E[â]. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "supervised_internal.h"

/* What the hook of one run does at the node. */
typedef struct node_hook {
    int32_t hook_id;
    int64_t d;
    float *record;        /* (d) the node as it arrived, or NULL */
    const float *replace; /* (d) its replacement, or NULL */
} node_hook;

/* With n_seq = 1 the last row of the buffer is the last position. */
static sae_status at_node(void *user, int32_t hook_id, float *x, int64_t n_tokens, int64_t ld)
{
    const node_hook *h = user;
    if (hook_id != h->hook_id || n_tokens < 1)
        return SAE_OK;
    float *row = x + (n_tokens - 1) * ld;
    if (h->record)
        memcpy(h->record, row, (size_t)h->d * sizeof(float));
    if (h->replace)
        memcpy(row, h->replace, (size_t)h->d * sizeof(float));
    return SAE_OK;
}

/* Read and check the prompts against the host; *longest receives the longest prompt. */
static sae_status read_prompts(sae_prompts *p, const sae_prompts *prompts, const sae_host *host,
                               int64_t *longest)
{
    *p = (sae_prompts)SAE_PROMPTS_INIT;
    sae_status s = sae__read_options(p, sizeof *p, prompts, "sae_prompts");
    if (s || (s = sae_host_check(host)))
        return s;
    if (!prompts || p->n_prompts < 1 || !p->tokens || !p->offsets || !p->answer || !p->wrong)
        return sae__fail(SAE_EINVAL, "prompts: need n_prompts >= 1 (%lld) and tokens, offsets, "
                         "answer and wrong", (long long)p->n_prompts);
    if (p->hook_id < 0 || p->hook_id >= host->n_hooks)
        return sae__fail(SAE_ERANGE, "prompts: hook id %d outside [0, %d)", (int)p->hook_id,
                         (int)host->n_hooks);
    *longest = 0;
    for (int64_t i = 0; i < p->n_prompts; i++) {
        int64_t len = p->offsets[i + 1] - p->offsets[i];
        if (p->offsets[i] < 0 || len < 1 || len > host->max_seq_len)
            return sae__fail(SAE_ESHAPE, "prompt %lld has %lld tokens (offsets %lld to %lld); "
                             "need 1 to %lld", (long long)i, (long long)len,
                             (long long)p->offsets[i], (long long)p->offsets[i + 1],
                             (long long)host->max_seq_len);
        if (p->answer[i] < 0 || p->answer[i] >= host->vocab_size || p->wrong[i] < 0 ||
            p->wrong[i] >= host->vocab_size)
            return sae__fail(SAE_ERANGE, "prompt %lld: answer tokens %d and %d must be in "
                             "[0, %lld)", (long long)i, (int)p->answer[i], (int)p->wrong[i],
                             (long long)host->vocab_size);
        *longest = len > *longest ? len : *longest;
    }
    return SAE_OK;
}

sae_status sae_prompts_run(float *diffs, float *acts, int64_t ld_acts, const sae_host *host,
                           const sae_prompts *prompts, const float *replace, int64_t ld_replace)
{
    sae_prompts p;
    int64_t longest;
    sae_status s = read_prompts(&p, prompts, host, &longest);
    if (s)
        return s;
    const int64_t d = host->d_model, V = host->vocab_size;
    if (!diffs)
        return sae__fail(SAE_EINVAL, "prompts run: diffs is NULL");
    if ((acts && ld_acts < d) || (replace && ld_replace < d))
        return sae__fail(SAE_ESHAPE, "prompts run: leading dimensions %lld (acts) and %lld "
                         "(replace) must be >= d_model %lld", (long long)ld_acts,
                         (long long)ld_replace, (long long)d);
    float *logits = sae__alloc_array(NULL, (size_t)(longest * V), sizeof(float));
    if (!logits)
        return SAE_ENOMEM;
    for (int64_t i = 0; i < p.n_prompts && s == SAE_OK; i++) {
        const int64_t len = p.offsets[i + 1] - p.offsets[i];
        node_hook h = {p.hook_id, d, acts ? acts + i * ld_acts : NULL,
                       replace ? replace + i * ld_replace : NULL};
        s = sae_host_forward(host, p.tokens + p.offsets[i], 1, len, logits, at_node, &h);
        if (s == SAE_OK)
            s = sae_logits_diff(&diffs[i], NULL, logits, 1, len, V, p.answer[i], p.wrong[i]);
        if (s != SAE_OK) {
            char prefix[40];
            snprintf(prefix, sizeof prefix, "prompt %lld", (long long)i);
            s = sae__fail_prefix(s, prefix);
        }
    }
    sae__free(NULL, logits);
    return s;
}

/* Mean of n floats. */
static double mean_of(const float *v, int64_t n)
{
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++)
        acc += v[i];
    return acc / (double)n;
}

sae_status sae_prompts_approximation(sae_approximation *out, const sae_host *host,
                                     const sae_prompts *prompts, const float *acts,
                                     int64_t ld_acts, const float *recon, int64_t ld_recon,
                                     const sae_allocator *allocator)
{
    sae_prompts p;
    int64_t longest;
    sae_status s = read_prompts(&p, prompts, host, &longest);
    if (s)
        return s;
    if (!out || !acts || !recon)
        return sae__fail(SAE_EINVAL, "approximation: out, acts and recon are required");
    const int64_t n = p.n_prompts, d = host->d_model;
    if (ld_acts < d || ld_recon < d)
        return sae__fail(SAE_ESHAPE, "approximation: leading dimensions %lld (acts) and %lld "
                         "(recon) must be >= d_model %lld", (long long)ld_acts,
                         (long long)ld_recon, (long long)d);
    /* rows: (n, d) replacements; mean_a, mean_r: (d) means over the prompts. */
    float *rows = sae__alloc_array(allocator, (size_t)(n * d), sizeof(float));
    float *diffs = sae__alloc_array(allocator, (size_t)n, sizeof(float));
    double *mean_a = sae__alloc_array(allocator, (size_t)(2 * d), sizeof(double));
    if (!rows || !diffs || !mean_a) {
        s = SAE_ENOMEM;
        goto done;
    }
    double *mean_r = mean_a + d;
    memset(mean_a, 0, (size_t)(2 * d) * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            mean_a[j] += acts[i * ld_acts + j] / (double)n;
            mean_r[j] += recon[i * ld_recon + j] / (double)n;
        }
    sae_approximation r = SAE_APPROXIMATION_INIT;
    if ((s = sae_prompts_run(diffs, NULL, 0, host, &p, NULL, 0)))
        goto done;
    r.clean = mean_of(diffs, n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            rows[i * d + j] = (float)mean_a[j];
    if ((s = sae_prompts_run(diffs, NULL, 0, host, &p, rows, d)))
        goto done;
    r.ablated = mean_of(diffs, n);
    if ((s = sae_prompts_run(diffs, NULL, 0, host, &p, recon, ld_recon)))
        goto done;
    r.sufficient = mean_of(diffs, n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            rows[i * d + j] = (float)((double)acts[i * ld_acts + j] - recon[i * ld_recon + j] +
                                      mean_r[j]);
    if ((s = sae_prompts_run(diffs, NULL, 0, host, &p, rows, d)))
        goto done;
    r.necessary = mean_of(diffs, n);
    double range = fabs(r.clean - r.ablated);
    if (!(range > 0.0)) {
        s = sae__fail(SAE_ENUMERIC, "approximation: mean ablation does not change the metric "
                      "(%g both), no score", r.clean);
        goto done;
    }
    r.sufficiency = fabs(r.sufficient - r.ablated) / range;
    r.necessity = fabs(r.necessary - r.ablated) / range;
    if (!sae__write_options(out, &r, sizeof r))
        s = sae__fail(SAE_EINVAL, "approximation: out must be initialised with "
                      "SAE_APPROXIMATION_INIT");
done:
    sae__free(allocator, rows);
    sae__free(allocator, diffs);
    sae__free(allocator, mean_a);
    return s;
}
