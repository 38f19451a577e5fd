/* generate.c: text generation as llama2.c's run.c does it — the prompt, then one sampled token
 * per position until `steps` positions have run or BOS comes — with run.c's sampler (greedy
 * argmax at temperature 0; otherwise softmax(logits / T) and a multinomial or top-p draw from
 * run.c's xorshift generator), so that a seed gives run.c's text. The prompt runs in one
 * prefill pass; hooks see (n_prompt, dim) and then (1, dim) buffers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llama2_internal.h"

/* run.c's random_u32 / random_f32: xorshift64* and a float in [0, 1) from its top 24 bits. */
static uint32_t random_u32(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(uint64_t *state) { return (float)(random_u32(state) >> 8) / 16777216.0f; }

static int32_t argmax(const float *p, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (p[i] > p[best])
            best = (int32_t)i;
    return best;
}

/* x (n) <- softmax(x), in float as run.c. */
static void softmax(float *x, int64_t n)
{
    float max = x[0], sum = 0.0f;
    for (int64_t i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (int64_t i = 0; i < n; i++)
        sum += (x[i] = expf(x[i] - max));
    for (int64_t i = 0; i < n; i++)
        x[i] /= sum;
}

typedef struct {
    float prob;
    int32_t index;
} prob_index;

/* Descending probability; ties by ascending id, the order of a stable sort of run.c's array
 * (which is built in id order), so that the result does not depend on the C library's qsort. */
static int compare_desc(const void *a, const void *b)
{
    const prob_index *x = a, *y = b;
    if (x->prob != y->prob)
        return x->prob > y->prob ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* run.c's sample_topp: the smallest set of most probable tokens whose mass exceeds top_p (only
 * tokens with p >= (1 - top_p) / (n - 1) can be in it), then a draw from it with coin in [0, 1).
 * work: (n) scratch. */
static int32_t sample_topp(const float *p, int64_t n, float top_p, prob_index *work, float coin)
{
    const float cutoff = (1.0f - top_p) / (float)(n - 1);
    int64_t n0 = 0;
    for (int64_t i = 0; i < n; i++)
        if (p[i] >= cutoff)
            work[n0++] = (prob_index){p[i], (int32_t)i};
    qsort(work, (size_t)n0, sizeof *work, compare_desc);
    float cumulative = 0.0f;
    int64_t last = n0 - 1;
    for (int64_t i = 0; i < n0; i++) {
        cumulative += work[i].prob;
        if (cumulative > top_p) {
            last = i;
            break;
        }
    }
    float r = coin * cumulative, cdf = 0.0f;
    for (int64_t i = 0; i <= last; i++) {
        cdf += work[i].prob;
        if (r < cdf)
            return work[i].index;
    }
    return work[last].index;
}

/* run.c's sample(): logits (n) are overwritten by the probabilities when sampling. */
static int32_t sample(const llama2_sampling *o, float *logits, int64_t n, uint64_t *rng,
                      prob_index *work)
{
    if (o->temperature == 0.0f)
        return argmax(logits, n);
    for (int64_t i = 0; i < n; i++)
        logits[i] /= o->temperature;
    softmax(logits, n);
    float coin = random_f32(rng);
    if (o->top_p <= 0.0f || o->top_p >= 1.0f) {
        float cdf = 0.0f;
        for (int64_t i = 0; i < n; i++)
            if (coin < (cdf += logits[i]))
                return (int32_t)i;
        return (int32_t)(n - 1);
    }
    return sample_topp(logits, n, o->top_p, work, coin);
}

sae_status llama2_generate(llama2_state *s, const int32_t *prompt, int64_t n_prompt,
                           int64_t steps, const llama2_sampling *sampling, sae_hook_fn hook,
                           void *hook_user, int32_t *tokens, int64_t *n_tokens)
{
    if (n_tokens)
        *n_tokens = 0;
    if (!s || !prompt || !sampling || !tokens || !n_tokens)
        return llama2__fail(SAE_EINVAL, "llama2_generate: NULL argument");
    const llama2_model *m = s->m;
    const int64_t V = m->c.vocab_size;
    if (n_prompt < 1 || steps < n_prompt || steps > m->c.seq_len)
        return llama2__fail(SAE_ERANGE, "llama2_generate: %lld steps for a prompt of %lld tokens "
                            "(need 1 <= prompt tokens <= steps <= context length %d)",
                            (long long)steps, (long long)n_prompt, m->c.seq_len);
    if (!(sampling->temperature >= 0.0f) || !isfinite(sampling->temperature) ||
        !isfinite(sampling->top_p) || (sampling->temperature > 0.0f && sampling->seed == 0))
        return llama2__fail(SAE_EINVAL, "llama2_generate: temperature %g (need finite, >= 0), "
                            "top_p %g (need finite), seed %llu (need >= 1 when sampling)",
                            (double)sampling->temperature, (double)sampling->top_p,
                            (unsigned long long)sampling->seed);
    const sae_allocator *a = m->allocator;
    float *logits = llama2__alloc(a, (size_t)(n_prompt * V), sizeof(float));
    prob_index *work = llama2__alloc(a, (size_t)V, sizeof(prob_index));
    sae_status st = logits && work ? SAE_OK : SAE_ENOMEM;
    uint64_t rng = sampling->seed;
    int64_t n = n_prompt;
    memcpy(tokens, prompt, (size_t)n_prompt * sizeof *tokens);
    llama2_state_reset(s);
    if (st == SAE_OK)
        st = llama2_state_prefill(s, prompt, n_prompt, logits, hook, hook_user);
    /* Each pass gives the logits of the next position: positions 0 .. n - 1 have run. */
    float *last = logits + (n_prompt - 1) * V;
    while (st == SAE_OK) {
        int32_t next = sample(sampling, last, V, &rng, work);
        if (next == 1) /* BOS: run.c stops */
            break;
        tokens[n++] = next;
        if (n > steps)
            break;
        st = llama2_state_step(s, next, logits, hook, hook_user);
        last = logits;
    }
    a->free(logits, a->user);
    a->free(work, a->user);
    if (st == SAE_OK)
        *n_tokens = n;
    return st;
}
