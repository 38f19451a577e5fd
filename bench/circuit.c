/* circuit.c: bench_circuit — time to discover a sparse feature circuit for 100 prompt pairs on
 * stories260K (the llama2.c host), and how it grows with the number of kept nodes (the nodes
 * above the node threshold, each costing one backward pass per batch for its edges). Prints one
 * JSON object.
 *
 * usage: bench_circuit MODEL TOKENIZER [HOOK=SAE_DIR ...]
 * Without SAEs: random TopK dictionaries (d_sae 256, k 16) at resid_pre.0 and resid_post.0..4.
 * Pairs: "… a {size} girl named Lily." → " She" against the boy's version with Tim → " He"
 * (and reversed), over a few templates; 100 pairs, 16 per batch.
 *
 * Runs: node effects alone (ATP, IG with 10 steps), then ATP with edges at node thresholds
 * from 2.0 down to 0.05, and IG with edges at the default threshold 0.1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sae/sae.h>

#include "bench_util.h"
#include "llama2.h"

#define N_PAIRS 100
#define MAX_TOK 64

static int fail(const char *what)
{
    fprintf(stderr, "bench_circuit: %s: %s%s\n", what, sae_last_error(), llama2_last_error());
    return 1;
}

/* A random TopK dictionary (64, 256), k 16. */
static sae_dict *random_dict(int64_t d, uint64_t seed)
{
    const int64_t F = 256;
    float *we = bench_xmalloc((size_t)(d * F) * sizeof(float));
    float *wd = bench_xmalloc((size_t)(F * d) * sizeof(float));
    sae_rng rng;
    sae_rng_init(&rng, seed, 0);
    bench_fill_normal(we, d * F, 0.125f, &rng);
    bench_fill_normal(wd, F * d, 0.125f, &rng);
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = SAE_ARCH_TOPK, c.d_in = d, c.d_sae = F, c.k = 16;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = we, w.W_dec = wd;
    sae_dict *out = NULL;
    sae_dict_create(&out, &c, &w, NULL);
    free(we);
    free(wd);
    return out;
}

/* 100 pairs from the templates; returns the number made (equal-length pairs only). */
static int64_t make_pairs(const llama2_tokenizer *tok, int64_t *off, int32_t *clean,
                          int32_t *patch, int32_t *ca, int32_t *pa)
{
    static const char *const templates[] = {
        "Once upon a time, there was a %s %s named %s.",
        "One day, a %s %s named %s went to the park.",
        "There was a %s %s named %s. Every day, %s played outside.",
    };
    static const char *const sizes[] = {"little", "small", "happy", "kind", "good", "big"};
    int32_t she[8], he[8];
    int64_t n = 0, m = 0;
    llama2_tokenizer_encode(tok, "She", 0, 0, she, 8, &m);
    llama2_tokenizer_encode(tok, "He", 0, 0, he, 8, &m);
    off[0] = 0;
    for (int64_t i = 0; n < N_PAIRS && i < 10 * N_PAIRS; i++) {
        const char *t = templates[i % 3], *s = sizes[(i / 3) % 6];
        const int girl = (i / 18) % 2 == 0;
        char a[256], b[256];
        snprintf(a, sizeof a, t, s, girl ? "girl" : "boy", girl ? "Lily" : "Tim",
                 girl ? "Lily" : "Tim");
        snprintf(b, sizeof b, t, s, girl ? "boy" : "girl", girl ? "Tim" : "Lily",
                 girl ? "Tim" : "Lily");
        int64_t na = 0, nb = 0;
        if (llama2_tokenizer_encode(tok, a, 1, 0, clean + off[n], MAX_TOK, &na) ||
            llama2_tokenizer_encode(tok, b, 1, 0, patch + off[n], MAX_TOK, &nb) || na != nb)
            continue;
        ca[n] = girl ? she[0] : he[0], pa[n] = girl ? he[0] : she[0];
        off[n + 1] = off[n] + na;
        n++;
    }
    return n;
}

typedef struct {
    const sae_host *host;
    const int32_t *hooks;
    const sae_dict *const *dicts;
    int32_t n_hooks;
    const sae_prompt_pairs *pairs;
} job;

/* One attribution; prints a JSON run object. */
static int run(const job *j, int32_t method, float node_thr, int edges, int first)
{
    sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
    o.method = method, o.node_threshold = node_thr, o.flags = edges ? 0 : SAE_GRAPH_NO_EDGES;
    sae_graph *g = NULL;
    double t0 = bench_now(), cpu0 = bench_cpu_seconds();
    if (sae_graph_attribute(&g, j->host, j->hooks, j->dicts, j->n_hooks, j->pairs, &o))
        return fail("attribute");
    double seconds = bench_now() - t0, cpu = bench_cpu_seconds() - cpu0;
    sae_graph_info info = SAE_GRAPH_INFO_INIT;
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
    sae_graph_get_info(g, &info);
    sae_graph_get_arrays(g, &a);
    int64_t kept = 0;
    for (int64_t i = 0; i < a.n_nodes; i++)
        kept += fabsf(a.node_effects[i]) > node_thr;
    printf("%s\n    {\"method\": \"%s\", \"edges\": %s, \"node_threshold\": %g, \"nodes\": %lld, "
           "\"kept_nodes\": %lld, \"n_edges\": %lld, \"seconds\": %.3f, \"cpu_seconds\": %.3f, "
           "\"peak_rss_mib\": %.1f}", first ? "" : ",", sae_graph_method_name(method),
           edges ? "true" : "false", (double)node_thr, (long long)a.n_nodes, (long long)kept,
           (long long)a.n_edges, seconds, cpu, bench_peak_rss_mib());
    fflush(stdout);
    sae_graph_free(g);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_circuit MODEL TOKENIZER [HOOK=SAE_DIR ...]\n");
        return 2;
    }
    llama2_model *m = NULL;
    llama2_tokenizer *tok = NULL;
    if (llama2_model_load(&m, argv[1], NULL) ||
        llama2_tokenizer_load(&tok, argv[2], llama2_model_config(m)->vocab_size, NULL))
        return fail("load");
    sae_host host;
    llama2_model_host(m, &host);
    static const char *const defaults[] = {"resid_pre.0", "resid_post.0", "resid_post.1",
                                           "resid_post.2", "resid_post.3", "resid_post.4"};
    const int32_t n_hooks = argc > 3 ? argc - 3 : 6;
    int32_t hooks[32];
    sae_dict *dicts[32];
    if (n_hooks > 32) {
        fprintf(stderr, "bench_circuit: at most 32 hook points\n");
        return 2;
    }
    for (int32_t k = 0; k < n_hooks; k++) {
        char name[64];
        const char *spec = argc > 3 ? argv[3 + k] : defaults[k], *eq = strchr(spec, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - spec) : (int)strlen(spec), spec);
        if (sae_host_find_hook(&hooks[k], &host, name))
            return fail(name);
        if (eq) {
            if (sae_dict_load(&dicts[k], eq + 1, NULL))
                return fail(eq + 1);
        } else {
            dicts[k] = random_dict(host.d_model, 10 + (uint64_t)k);
        }
    }
    int64_t off[N_PAIRS + 1];
    static int32_t clean[N_PAIRS * MAX_TOK], patch[N_PAIRS * MAX_TOK], ca[N_PAIRS], pa[N_PAIRS];
    sae_prompt_pairs pairs = SAE_PROMPT_PAIRS_INIT;
    pairs.n_pairs = make_pairs(tok, off, clean, patch, ca, pa);
    pairs.offsets = off, pairs.clean_tokens = clean, pairs.patch_tokens = patch;
    pairs.clean_answers = ca, pairs.patch_answers = pa;
    job j = {&host, hooks, (const sae_dict *const *)dicts, n_hooks, &pairs};
    printf("{\"model\": \"%s\", \"pairs\": %lld, \"hooks\": %d, \"saes\": \"%s\", "
           "\"batch_size\": 16, \"ig_steps\": 10, \"runs\": [", argv[1], (long long)pairs.n_pairs,
           (int)n_hooks, argc > 3 ? "given" : "random topk 256 k16");
    static const float thresholds[] = {2.0f, 1.0f, 0.5f, 0.2f, 0.1f, 0.05f};
    int rc = run(&j, SAE_GRAPH_ATP, 0.1f, 0, 1) || run(&j, SAE_GRAPH_IG, 0.1f, 0, 0);
    for (size_t i = 0; !rc && i < sizeof thresholds / sizeof thresholds[0]; i++)
        rc = run(&j, SAE_GRAPH_ATP, thresholds[i], 1, 0);
    if (!rc)
        rc = run(&j, SAE_GRAPH_IG, 0.1f, 1, 0);
    printf("\n]}\n");
    for (int32_t k = 0; k < n_hooks; k++)
        sae_dict_free(dicts[k]);
    llama2_tokenizer_free(tok);
    llama2_model_free(m);
    return rc;
}
