/* pairs.c: prompt pairs — checking them against a host, grouping them by length into batches
 * of equal-length sequences, loading a batch's tokens, and the metric of a batch. */
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

void sae__pair_batches_free(sae__pair_batches *b, const sae_allocator *a)
{
    sae__free(a, b->order);
    sae__free(a, b->batches);
    sae__free(a, b->clean);
    sae__free(a, b->patch);
    sae__free(a, b->index);
    memset(b, 0, sizeof *b);
}

static sae_status check_pairs(const sae_prompt_pairs *p, const sae_host *host)
{
    if (p->n_pairs < 1 || !p->offsets || !p->clean_tokens || !p->clean_answers)
        return sae__fail(SAE_EINVAL, "prompt pairs: n_pairs (%lld) must be >= 1 and offsets, "
                         "clean_tokens, clean_answers given", (long long)p->n_pairs);
    if (p->offsets[0] != 0)
        return sae__fail(SAE_EINVAL, "prompt pairs: offsets[0] is %lld, must be 0",
                         (long long)p->offsets[0]);
    for (int64_t i = 0; i < p->n_pairs; i++) {
        int64_t len = p->offsets[i + 1] - p->offsets[i];
        if (len < 1 || len > host->max_seq_len)
            return sae__fail(SAE_ESHAPE, "prompt pair %lld has %lld tokens; the host takes 1 "
                             "to %lld", (long long)i, (long long)len,
                             (long long)host->max_seq_len);
        for (int64_t t = p->offsets[i]; t < p->offsets[i + 1]; t++) {
            int32_t c = p->clean_tokens[t], q = p->patch_tokens ? p->patch_tokens[t] : 0;
            if (c < 0 || c >= host->vocab_size || q < 0 || q >= host->vocab_size)
                return sae__fail(SAE_ERANGE, "prompt pair %lld: token %lld is %d (clean) / %d "
                                 "(patch), outside [0, %lld)", (long long)i,
                                 (long long)(t - p->offsets[i]), (int)c, (int)q,
                                 (long long)host->vocab_size);
        }
        int32_t ca = p->clean_answers[i], pa = p->patch_answers ? p->patch_answers[i] : 0;
        if (ca < 0 || ca >= host->vocab_size || pa < 0 || pa >= host->vocab_size)
            return sae__fail(SAE_ERANGE, "prompt pair %lld: answers %d / %d are outside "
                             "[0, %lld)", (long long)i, (int)ca, (int)pa,
                             (long long)host->vocab_size);
    }
    return SAE_OK;
}

/* Pair lengths for a stable sort by length. */
typedef struct {
    int64_t len, index;
} keyed;

static int cmp_keyed(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

sae_status sae__pair_batches_init(sae__pair_batches *b, const sae_prompt_pairs *pairs,
                                  const sae_host *host, int64_t batch_size, sae_metric_fn metric,
                                  void *metric_user, const sae_allocator *a)
{
    memset(b, 0, sizeof *b);
    if (!pairs)
        return sae__fail(SAE_EINVAL, "prompt pairs are required");
    sae_prompt_pairs p = SAE_PROMPT_PAIRS_INIT;
    sae_status s = sae__read_options(&p, sizeof p, pairs, "sae_prompt_pairs");
    if (s != SAE_OK || (s = check_pairs(&p, host)) != SAE_OK)
        return s;
    if (batch_size < 0)
        return sae__fail(SAE_EINVAL, "batch_size %lld is negative", (long long)batch_size);
    const int64_t n = p.n_pairs, cap = batch_size > 0 ? batch_size : 16;
    b->pairs = p;
    b->metric = metric, b->metric_user = metric_user, b->vocab = host->vocab_size;
    keyed *k = sae__alloc_array(a, (size_t)n, sizeof *k);
    b->order = sae__alloc_array(a, (size_t)n, sizeof(int64_t));
    b->batches = sae__alloc_array(a, (size_t)n, sizeof(sae__batch));
    if (!k || !b->order || !b->batches) {
        sae__free(a, k);
        return SAE_ENOMEM;
    }
    for (int64_t i = 0; i < n; i++)
        k[i] = (keyed){p.offsets[i + 1] - p.offsets[i], i};
    qsort(k, (size_t)n, sizeof *k, cmp_keyed);
    int64_t max_count = 0;
    for (int64_t i = 0; i < n; i++) {
        b->order[i] = k[i].index;
        sae__batch *last = b->n_batches ? &b->batches[b->n_batches - 1] : NULL;
        if (last && last->T == k[i].len && last->count < cap)
            last->count++;
        else
            b->batches[b->n_batches++] = (sae__batch){i, 1, k[i].len};
        last = &b->batches[b->n_batches - 1];
        b->max_rows = last->count * last->T > b->max_rows ? last->count * last->T : b->max_rows;
        b->max_T = last->T > b->max_T ? last->T : b->max_T;
        max_count = last->count > max_count ? last->count : max_count;
    }
    sae__free(a, k);
    b->clean = sae__alloc_array(a, (size_t)b->max_rows, sizeof(int32_t));
    b->patch = sae__alloc_array(a, (size_t)b->max_rows, sizeof(int32_t));
    b->index = sae__alloc_array(a, (size_t)max_count, sizeof(int64_t));
    return b->clean && b->patch && b->index ? SAE_OK : SAE_ENOMEM;
}

void sae__pair_batches_load(sae__pair_batches *b, int64_t i)
{
    const sae__batch *bt = &b->batches[i];
    const sae_prompt_pairs *p = &b->pairs;
    for (int64_t e = 0; e < bt->count; e++) {
        int64_t pair = b->order[bt->first + e], at = p->offsets[pair];
        b->index[e] = pair;
        memcpy(b->clean + e * bt->T, p->clean_tokens + at, (size_t)bt->T * sizeof(int32_t));
        if (p->patch_tokens)
            memcpy(b->patch + e * bt->T, p->patch_tokens + at, (size_t)bt->T * sizeof(int32_t));
    }
}

sae_status sae__pair_metric(const sae__pair_batches *b, const float *logits, int64_t n_seq,
                            int64_t T, float *metric, float *d_logits)
{
    const int64_t V = b->vocab;
    if (b->metric) {
        if (d_logits)
            memset(d_logits, 0, (size_t)(n_seq * T * V) * sizeof(float));
        sae_status s = b->metric(b->metric_user, logits, n_seq, T, V, b->index, metric, d_logits);
        return s == SAE_OK ? SAE_OK : sae__fail_prefix(s, "metric callback");
    }
    const sae_prompt_pairs *p = &b->pairs;
    if (d_logits)
        memset(d_logits, 0, (size_t)(n_seq * T * V) * sizeof(float));
    for (int64_t e = 0; e < n_seq; e++) {
        const int64_t last = (e * T + T - 1) * V, pair = b->index[e];
        const int32_t ca = p->clean_answers[pair];
        metric[e] = logits[last + ca];
        if (d_logits)
            d_logits[last + ca] += 1.0f;
        if (p->patch_answers) {
            const int32_t pa = p->patch_answers[pair];
            metric[e] -= logits[last + pa];
            if (d_logits)
                d_logits[last + pa] -= 1.0f;
        }
    }
    return SAE_OK;
}
