/* stories_acts.c: activations of a llama2.c model at one hook point on text the model writes
 * itself, for training SAEs (docs/evaluation.md). Samples stories from BOS (temperature 1,
 * seeded, with a KV cache), then runs each story through sae_host_forward with a hook that
 * appends the hook point's rows, and writes them as the tensor "x" of a safetensors file.
 *
 * usage: sae_stories_acts MODEL TOKENIZER HOOK N_STORIES TOKENS_PER_STORY SEED OUT */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sae/sae.h>

#include "llama2.h"

typedef struct capture {
    int32_t hook_id;
    int64_t d;
    float *rows; /* where the next rows go */
} capture;

static sae_status append_rows(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld)
{
    capture *c = user;
    if (hook_id != c->hook_id)
        return SAE_OK;
    for (int64_t r = 0; r < n; r++, c->rows += c->d)
        memcpy(c->rows, x + r * ld, (size_t)c->d * sizeof(float));
    return SAE_OK;
}

/* A token drawn from softmax(logits) (temperature 1). */
static int32_t sample(const float *logits, int64_t vocab, sae_rng *rng)
{
    double max = logits[0], total = 0.0;
    for (int64_t j = 1; j < vocab; j++)
        max = logits[j] > max ? logits[j] : max;
    for (int64_t j = 0; j < vocab; j++)
        total += exp(logits[j] - max);
    double u = sae_rng_uniform(rng) * total;
    for (int64_t j = 0; j < vocab; j++)
        if ((u -= exp(logits[j] - max)) <= 0.0)
            return (int32_t)j;
    return (int32_t)(vocab - 1);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: %s MODEL TOKENIZER HOOK N_STORIES TOKENS_PER_STORY SEED OUT\n",
                argv[0]);
        return 2;
    }
    long n_stories = atol(argv[4]), len = atol(argv[5]);
    uint64_t seed = strtoull(argv[6], NULL, 10);
    llama2_model *m = NULL;
    llama2_state *gen = NULL;
    sae_st_writer *w = NULL;
    float *logits = NULL, *rows = NULL;
    int32_t *tokens = NULL;
    int rc = 1;
    if (llama2_model_load(&m, argv[1], NULL) || llama2_state_create(&gen, m)) {
        fprintf(stderr, "%s: %s\n", argv[1], llama2_last_error());
        goto done;
    }
    const llama2_config *cfg = llama2_model_config(m);
    sae_host host;
    llama2_model_host(m, &host);
    capture cap = {0, cfg->dim, NULL};
    if (n_stories < 1 || len < 2 || len > cfg->seq_len ||
        sae_host_find_hook(&cap.hook_id, &host, argv[3])) {
        fprintf(stderr, "bad arguments: %s\n", sae_last_error());
        goto done;
    }
    logits = malloc(sizeof(float) * (size_t)(cfg->vocab_size * len));
    rows = malloc(sizeof(float) * (size_t)(n_stories * len * cfg->dim));
    tokens = malloc(sizeof(int32_t) * (size_t)len);
    if (!logits || !rows || !tokens)
        goto done;
    cap.rows = rows;
    sae_rng rng;
    sae_rng_init(&rng, seed, 0);
    for (long s = 0; s < n_stories; s++) {
        llama2_state_reset(gen);
        tokens[0] = 1; /* BOS */
        for (long t = 1; t < len; t++) {
            if (llama2_state_step(gen, tokens[t - 1], logits, NULL, NULL))
                goto fail;
            tokens[t] = sample(logits, cfg->vocab_size, &rng);
        }
        if (sae_host_forward(&host, tokens, 1, len, NULL, append_rows, &cap))
            goto fail;
    }
    int64_t shape[2] = {n_stories * len, cfg->dim};
    if (sae_st_writer_create(&w) ||
        sae_st_writer_add(w, "x", SAE_DTYPE_F32, 2, shape, rows) ||
        sae_st_writer_set_metadata(w, "hook", argv[3]) || sae_st_writer_write(w, argv[7]))
        goto fail;
    printf("%lld rows of %d at %s -> %s\n", (long long)shape[0], (int)cfg->dim, argv[3], argv[7]);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "failed: %s%s\n", sae_last_error(), llama2_last_error());
done:
    sae_st_writer_free(w);
    llama2_state_free(gen);
    llama2_model_free(m);
    free(logits);
    free(rows);
    free(tokens);
    return rc;
}
