/* stories_acts.c: `sae_stories_acts`, activations of a llama2.c model on text it writes itself,
 * for training SAEs (the circuit demo, docs/circuits.md, and the supervised evaluation,
 * docs/evaluation.md): sample stories and save the activations of chosen hook points as raw
 * float32 files, for `sae train --raw-d D` to train one SAE per hook point on.
 *
 * Each sequence starts at BOS and is sampled token by token at temperature 1 (KV-cache steps of
 * llama2_state_step, seeded); then all sequences run through sae_host_forward in batches with a
 * hook that appends the rows of the chosen hooks to their files (one file per hook,
 * OUT/<hook>.f32, n_sequences · length rows of d_model floats). The tokens go to
 * OUT/tokens.i32 (int32, one per row), for labelling features by the tokens they fire on.
 *
 * usage: sae_stories_acts MODEL TOKENIZER OUT_DIR SEQUENCES LENGTH SEED HOOK...
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sae/sae.h>

#include "llama2.h"

typedef struct {
    const int32_t *ids; /* (n_hooks) host hook ids */
    FILE **files;       /* (n_hooks) */
    int n_hooks;
    int64_t d;
} recorder;

/* Append x's rows to the file of its hook. */
static sae_status record(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld)
{
    recorder *r = user;
    for (int k = 0; k < r->n_hooks; k++)
        if (r->ids[k] == hook_id)
            for (int64_t i = 0; i < n; i++)
                if (fwrite(x + i * ld, sizeof(float), (size_t)r->d, r->files[k]) != (size_t)r->d)
                    return SAE_EIO;
    return SAE_OK;
}

/* A token drawn from softmax(logits) with a uniform u in [0, 1). */
static int32_t sample(const float *logits, int64_t vocab, float u)
{
    float max = logits[0];
    for (int64_t i = 1; i < vocab; i++)
        max = logits[i] > max ? logits[i] : max;
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - max);
    double acc = 0.0, target = u * sum;
    for (int64_t i = 0; i < vocab; i++) {
        acc += exp((double)logits[i] - max);
        if (acc > target)
            return (int32_t)i;
    }
    return (int32_t)(vocab - 1);
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: sae_stories_acts MODEL TOKENIZER OUT_DIR SEQUENCES LENGTH SEED "
                        "HOOK...\n");
        return 2;
    }
    const int64_t n_seq = atoll(argv[4]), len = atoll(argv[5]);
    const uint64_t seed = strtoull(argv[6], NULL, 10);
    const int n_hooks = argc - 7;
    llama2_model *m = NULL;
    if (llama2_model_load(&m, argv[1], NULL) != SAE_OK) {
        fprintf(stderr, "sae_stories_acts: %s\n", llama2_last_error());
        return 1;
    }
    const llama2_config *c = llama2_model_config(m);
    if (n_seq < 1 || len < 2 || len > c->seq_len) {
        fprintf(stderr, "sae_stories_acts: need SEQUENCES >= 1 and 2 <= LENGTH <= %d\n", c->seq_len);
        return 2;
    }
    sae_host host;
    llama2_model_host(m, &host);
    int32_t *ids = calloc((size_t)n_hooks, sizeof *ids);
    FILE **files = calloc((size_t)n_hooks, sizeof *files);
    int32_t *tokens = malloc((size_t)(n_seq * len) * sizeof *tokens);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    llama2_state *st = NULL;
    int rc = !ids || !files || !tokens || !logits || llama2_state_create(&st, m) != SAE_OK;
    if (!rc && mkdir(argv[3], 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "sae_stories_acts: cannot create %s\n", argv[3]);
        rc = 1;
    }
    for (int k = 0; k < n_hooks && !rc; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.f32", argv[3], argv[7 + k]);
        if (sae_host_find_hook(&ids[k], &host, argv[7 + k]) != SAE_OK ||
            !(files[k] = fopen(path, "wb"))) {
            fprintf(stderr, "sae_stories_acts: %s: %s\n", argv[7 + k], sae_last_error());
            rc = 1;
        }
    }
    /* Sample the sequences. */
    sae_rng rng;
    sae_rng_init(&rng, seed, 0);
    for (int64_t s = 0; s < n_seq && !rc; s++) {
        llama2_state_reset(st);
        int32_t *t = tokens + s * len;
        t[0] = 1; /* BOS */
        for (int64_t i = 1; i < len && !rc; i++) {
            rc = llama2_state_step(st, t[i - 1], logits, NULL, NULL) != SAE_OK;
            t[i] = sample(logits, c->vocab_size, sae_rng_uniform(&rng));
        }
    }
    /* Record the hooks, 16 sequences per forward. */
    recorder r = {ids, files, n_hooks, c->dim};
    for (int64_t s = 0; s < n_seq && !rc; s += 16) {
        const int64_t b = n_seq - s < 16 ? n_seq - s : 16;
        if (sae_host_forward(&host, tokens + s * len, b, len, NULL, record, &r) != SAE_OK) {
            fprintf(stderr, "sae_stories_acts: %s\n", sae_last_error());
            rc = 1;
        }
    }
    for (int k = 0; k < n_hooks; k++)
        if (files[k] && fclose(files[k]) != 0)
            rc = 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokens.i32", argv[3]);
    FILE *tf = rc ? NULL : fopen(path, "wb");
    if (!rc && (!tf || fwrite(tokens, sizeof *tokens, (size_t)(n_seq * len), tf) !=
                           (size_t)(n_seq * len)))
        rc = 1;
    if (tf && fclose(tf) != 0)
        rc = 1;
    if (!rc)
        printf("captured %lld tokens at %d hook points into %s\n", (long long)(n_seq * len),
               n_hooks, argv[3]);
    llama2_state_free(st);
    llama2_model_free(m);
    free(ids);
    free(files);
    free(tokens);
    free(logits);
    return rc;
}
