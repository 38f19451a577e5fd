/* test_llama2.c: the llama2.c host (examples/llama2) and the sae_host interface: greedy text of
 * stories260K, batched forward and prompt prefill against KV-cache steps, hook points through
 * sae_host_forward, the backward pass against finite differences (with stop-gradient, and from a
 * gradient given at a hook point), the logit metrics, tokenizer round trips with byte fallback,
 * the tokenizer's merges against their reference twin (and long texts in linearithmic time),
 * and malformed checkpoints and tokenizers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama2.h"
#include "llama2_internal.h"
#include "test_util.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static llama2_model *load_model(void)
{
    llama2_model *m = NULL;
    sae_status s = llama2_model_load(&m, shared_path("data/stories260K.bin"), test_allocator());
    if (s != SAE_OK)
        fail_msg("llama2_model_load: %s", llama2_last_error());
    return m;
}

static llama2_tokenizer *load_tokenizer(void)
{
    llama2_tokenizer *t = NULL;
    sae_status s = llama2_tokenizer_load(&t, shared_path("data/tok512.bin"), 512, test_allocator());
    if (s != SAE_OK)
        fail_msg("llama2_tokenizer_load: %s", llama2_last_error());
    return t;
}

/* The whole file (test_malloc'd), its size in *size. */
static char *read_file(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = test_malloc((size_t)*size + 1);
    assert_int_equal(fread(buf, 1, (size_t)*size, f), (size_t)*size);
    buf[*size] = '\0';
    fclose(f);
    return buf;
}

static const char *write_file(const char *name, const void *data, long size)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    return path;
}

static int32_t argmax(const float *x, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = (int32_t)i;
    return best;
}

/* decode(tokens[1..n)) as run.c prints it, into text (room for cap bytes). */
static void decode(const llama2_tokenizer *t, const int32_t *tokens, int64_t n, char *text,
                   size_t cap)
{
    text[0] = '\0';
    for (int64_t i = 1; i < n; i++) {
        const char *p = llama2_tokenizer_piece(t, tokens[i - 1], tokens[i]);
        assert_non_null(p);
        assert_true(strlen(text) + strlen(p) < cap);
        strcat(text, p);
    }
}

/* ---- generation ------------------------------------------------------------------------------ */

/* The text that ../shared/data/stories260K.md shows after the command line ending in `cmd`
 * (run.c's output without its final newline), in the test_malloc'd *md. */
static const char *md_text(char **md, const char *cmd)
{
    long md_size;
    *md = read_file(shared_path("data/stories260K.md"), &md_size);
    char *begin = strstr(*md, cmd);
    assert_non_null(begin);
    begin += strlen(cmd);
    char *end = strstr(begin, "\n```");
    assert_non_null(end);
    *end = '\0'; /* drop the newline run.c prints after the last token */
    return begin;
}

/* Greedy decoding from BOS as `run stories260K.bin -z tok512.bin -t 0.0` (256 steps, stop at
 * BOS) reproduces the text of ../shared/data/stories260K.md. */
static void test_greedy_text(void **state)
{
    char *md;
    const char *begin = md_text(&md, "-z stories260K/tok512.bin -t 0.0\n");

    llama2_model *m = load_model();
    llama2_tokenizer *t = load_tokenizer();
    llama2_state *st = NULL;
    assert_int_equal(llama2_state_create(&st, m), SAE_OK);
    float *logits = test_malloc(512 * sizeof(float));
    char *text = test_calloc(1, 8192);
    int32_t token = 1;
    for (int pos = 0; pos < 256; pos++) {
        assert_int_equal(llama2_state_step(st, token, logits, NULL, NULL), SAE_OK);
        int32_t next = argmax(logits, 512);
        if (next == 1)
            break;
        strcat(text, llama2_tokenizer_piece(t, token, next));
        token = next;
    }
    assert_string_equal(text, begin);

    test_free(text);
    test_free(logits);
    test_free(md);
    llama2_state_free(st);
    llama2_tokenizer_free(t);
    llama2_model_free(m);
}

/* llama2_generate reproduces run.c: greedy (-t 0.0) and sampled (-t 1.0 -p 0.9 -s 133742)
 * texts of stories260K.md, 256 steps from BOS; a prompt made of the first greedy tokens, run
 * as one prefill, continues with the same tokens; fewer steps stop early. */
static void test_generate(void **state)
{
    llama2_model *m = load_model();
    llama2_tokenizer *t = load_tokenizer();
    llama2_state *st = NULL;
    assert_int_equal(llama2_state_create(&st, m), SAE_OK);
    int32_t *tokens = test_malloc(257 * sizeof(int32_t));
    int32_t *again = test_malloc(257 * sizeof(int32_t));
    char *text = test_malloc(8192), *md;
    const char *cmds[2] = {"-z stories260K/tok512.bin -t 0.0\n",
                           "-z stories260K/tok512.bin -t 1.0 -p 0.9 -s 133742\n"};
    const llama2_sampling sampling[2] = {{0.0f, 0.9f, 0}, {1.0f, 0.9f, 133742}};
    const int32_t bos = 1;
    int64_t n, n_again;
    for (int i = 0; i < 2; i++) {
        const char *want = md_text(&md, cmds[i]);
        assert_int_equal(llama2_generate(st, &bos, 1, 256, &sampling[i], NULL, NULL, tokens, &n),
                         SAE_OK);
        assert_true(n >= 2 && n <= 257);
        decode(t, tokens, n, text, 8192);
        assert_string_equal(text, want);
        test_free(md);
    }
    /* The greedy run again from a prompt of its first 12 tokens, for 40 positions: the prompt
     * and 40 - 12 + 1 sampled tokens, those of the run from BOS. */
    assert_int_equal(llama2_generate(st, &bos, 1, 40, &sampling[0], NULL, NULL, tokens, &n),
                     SAE_OK);
    assert_int_equal(n, 41);
    assert_int_equal(llama2_generate(st, tokens, 12, 40, &sampling[0], NULL, NULL, again,
                                     &n_again), SAE_OK);
    assert_int_equal(n_again, 41);
    assert_memory_equal(again, tokens, 41 * sizeof(int32_t));
    /* Bad arguments. */
    const llama2_sampling no_seed = {1.0f, 0.9f, 0}, negative = {-1.0f, 0.9f, 1};
    assert_int_equal(llama2_generate(st, tokens, 12, 11, &sampling[0], NULL, NULL, again,
                                     &n_again), SAE_ERANGE);
    assert_int_equal(llama2_generate(st, tokens, 1, 513, &sampling[0], NULL, NULL, again,
                                     &n_again), SAE_ERANGE);
    assert_int_equal(llama2_generate(st, tokens, 1, 8, &no_seed, NULL, NULL, again, &n_again),
                     SAE_EINVAL);
    assert_int_equal(llama2_generate(st, tokens, 1, 8, &negative, NULL, NULL, again, &n_again),
                     SAE_EINVAL);

    test_free(text);
    test_free(tokens);
    test_free(again);
    llama2_state_free(st);
    llama2_tokenizer_free(t);
    llama2_model_free(m);
}

/* The batched forward over two whole sequences gives the logits of token-by-token steps. */
static void test_batch_equals_steps(void **state)
{
    llama2_model *m = load_model();
    llama2_tokenizer *t = load_tokenizer();
    enum { T = 24 };
    const char *texts[2] = {"Once upon a time, there was a big dog. He liked to run and jump.",
                            "Tom and Sue went to the park to play with a red ball today."};
    int32_t tokens[2 * T], buf[128];
    for (int s = 0; s < 2; s++) {
        int64_t n;
        assert_int_equal(llama2_tokenizer_encode(t, texts[s], 1, 0, buf, 128, &n), SAE_OK);
        assert_true(n >= T);
        memcpy(tokens + s * T, buf, T * sizeof(int32_t));
    }
    float *batched = test_malloc(2 * T * 512 * sizeof(float));
    float *stepped = test_malloc(2 * T * 512 * sizeof(float));
    assert_int_equal(llama2_model_forward(m, tokens, 2, T, batched, NULL, NULL), SAE_OK);
    llama2_state *st = NULL;
    assert_int_equal(llama2_state_create(&st, m), SAE_OK);
    for (int s = 0; s < 2; s++) {
        llama2_state_reset(st);
        for (int i = 0; i < T; i++)
            assert_int_equal(llama2_state_step(st, tokens[s * T + i], stepped + (s * T + i) * 512,
                                               NULL, NULL), SAE_OK);
    }
    assert_close_f32(batched, stepped, 2 * T * 512, 1e-5, 1e-5, "batched vs KV-cache logits");
    /* The second sequence alone gives the same logits as in the batch. */
    assert_int_equal(llama2_model_forward(m, tokens + T, 1, T, stepped, NULL, NULL), SAE_OK);
    assert_close_f32(batched + T * 512, stepped, T * 512, 1e-6, 1e-6, "batch row independence");

    test_free(batched);
    test_free(stepped);
    llama2_state_free(st);
    llama2_tokenizer_free(t);
    llama2_model_free(m);
}

/* A prefill of a prompt, then steps, gives the logits of steps alone; a prefill past the
 * context length or of a bad token is refused and leaves the state where it was. */
static void test_prefill(void **state)
{
    llama2_model *m = load_model();
    llama2_tokenizer *t = load_tokenizer();
    enum { T = 20, P = 12 };
    int32_t tokens[128];
    int64_t n;
    const char *text = "Lily saw a big red ball in the park, and she ran to it with her dog.";
    assert_int_equal(llama2_tokenizer_encode(t, text, 1, 0, tokens, 128, &n), SAE_OK);
    assert_true(n > T);
    float *stepped = test_malloc((T + 1) * 512 * sizeof(float));
    float *mixed = test_malloc((T + 1) * 512 * sizeof(float));
    llama2_state *st = NULL;
    assert_int_equal(llama2_state_create(&st, m), SAE_OK);
    for (int i = 0; i < T; i++)
        assert_int_equal(llama2_state_step(st, tokens[i], stepped + i * 512, NULL, NULL), SAE_OK);
    llama2_state_reset(st);
    int32_t bad[2] = {tokens[0], 512};
    assert_int_equal(llama2_state_prefill(st, bad, 2, mixed, NULL, NULL), SAE_ERANGE);
    assert_int_equal(llama2_state_prefill(st, tokens, 0, mixed, NULL, NULL), SAE_EINVAL);
    assert_int_equal(llama2_state_prefill(st, tokens, P, mixed, NULL, NULL), SAE_OK);
    for (int i = P; i < T; i++)
        assert_int_equal(llama2_state_step(st, tokens[i], mixed + i * 512, NULL, NULL), SAE_OK);
    assert_close_f32(stepped, mixed, T * 512, 1e-6, 1e-6, "prefill + steps vs steps");
    /* The context holds 512 positions: T are used, 512 - T + 1 more do not fit. */
    int32_t *many = test_calloc(512, sizeof(int32_t));
    assert_int_equal(llama2_state_prefill(st, many, 512 - T + 1, NULL, NULL, NULL), SAE_ERANGE);
    assert_non_null(strstr(llama2_last_error(), "context length 512"));
    /* Still at position T: the next step gives the logits of a fresh run of T + 1 tokens. */
    assert_int_equal(llama2_state_step(st, tokens[T], mixed, NULL, NULL), SAE_OK);
    llama2_state_reset(st);
    assert_int_equal(llama2_state_prefill(st, tokens, T + 1, stepped, NULL, NULL), SAE_OK);
    assert_close_f32(stepped + T * 512, mixed, 512, 1e-6, 1e-6, "after a refused prefill");

    test_free(many);
    test_free(stepped);
    test_free(mixed);
    llama2_state_free(st);
    llama2_tokenizer_free(t);
    llama2_model_free(m);
}

/* ---- the host interface ---------------------------------------------------------------------- */

typedef struct {
    int32_t calls;        /* hook calls so far */
    int64_t n, d;         /* shape seen */
    float *saved;         /* (20, n, d) the activations at every hook */
    int32_t cancel_at;    /* return SAE_ECANCELED at this hook id (-1: never) */
    int32_t add_at;       /* add 1 to every value at this hook id (-1: never) */
} recorder;

static sae_status record(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld)
{
    recorder *r = user;
    assert_int_equal(hook_id, r->calls); /* hook points come in the order they run */
    assert_int_equal(n, r->n);
    assert_int_equal(ld, r->d);
    r->calls++;
    if (hook_id == r->cancel_at)
        return SAE_ECANCELED;
    if (hook_id == r->add_at)
        for (int64_t i = 0; i < n * ld; i++)
            x[i] += 1.0f;
    memcpy(r->saved + hook_id * n * r->d, x, (size_t)(n * r->d) * sizeof(float));
    return SAE_OK;
}

static void test_host_hooks(void **state)
{
    llama2_model *m = load_model();
    sae_host host;
    llama2_model_host(m, &host);
    assert_sae_ok(sae_host_check(&host));
    assert_int_equal(host.n_hooks, 20);
    assert_int_equal(host.d_model, 64);
    int32_t id = -5;
    assert_sae_ok(sae_host_find_hook(&id, &host, "resid_post.4"));
    assert_int_equal(id, 19);
    assert_sae_ok(sae_host_find_hook(&id, &host, "attn_out.2"));
    assert_int_equal(id, 9);
    assert_int_equal(sae_host_find_hook(&id, &host, "mlp_out.5"), SAE_ENOTFOUND);
    assert_int_equal(id, -1);
    assert_non_null(strstr(sae_last_error(), "resid_pre.0"));

    enum { S = 2, T = 7, V = 512, D = 64 };
    int32_t tokens[S * T] = {1, 403, 261, 378, 300, 271, 407, 1, 5, 259, 100, 511, 0, 2};
    recorder r = {0, S * T, D, test_malloc(20 * S * T * D * sizeof(float)), -1, -1};
    float *clean = test_malloc(S * T * V * sizeof(float));
    float *patched = test_malloc(S * T * V * sizeof(float));
    assert_sae_ok(sae_host_forward(&host, tokens, S, T, clean, record, &r));
    assert_int_equal(r.calls, 20);
    /* resid_post.L = resid_pre.L + attn_out.L + mlp_out.L, and resid_pre.L+1 = resid_post.L. */
    float *sum = test_malloc(S * T * D * sizeof(float));
    for (int l = 0; l < 5; l++) {
        const float *pre = r.saved + (4 * l) * S * T * D, *att = pre + S * T * D;
        const float *mlp = att + S * T * D, *post = mlp + S * T * D;
        for (int i = 0; i < S * T * D; i++)
            sum[i] = pre[i] + att[i] + mlp[i];
        assert_close_f32(post, sum, S * T * D, 1e-6, 1e-6, "resid_post = pre + attn + mlp");
        if (l < 4)
            assert_memory_equal(post, post + S * T * D, S * T * D * sizeof(float));
    }
    /* A patch at mlp_out.2 changes the logits; without hooks the logits are the clean ones. */
    r.calls = 0;
    r.add_at = 10;
    assert_sae_ok(sae_host_forward(&host, tokens, S, T, patched, record, &r));
    double diff = 0;
    for (int i = 0; i < S * T * V; i++)
        diff += (patched[i] - clean[i]) * (patched[i] - clean[i]);
    assert_true(diff > 1e-3);
    assert_sae_ok(sae_host_forward(&host, tokens, S, T, patched, NULL, NULL));
    assert_memory_equal(patched, clean, S * T * V * sizeof(float));
    /* A hook's error stops the pass and comes back unchanged. */
    r.calls = 0;
    r.cancel_at = 6;
    assert_int_equal(sae_host_forward(&host, tokens, S, T, patched, record, &r), SAE_ECANCELED);
    assert_int_equal(r.calls, 7);

    /* Arguments are checked before the host runs. */
    tokens[3] = 512;
    assert_int_equal(sae_host_forward(&host, tokens, S, T, clean, NULL, NULL), SAE_ERANGE);
    tokens[3] = 378;
    assert_int_equal(sae_host_forward(&host, tokens, 1, 513, clean, NULL, NULL), SAE_ESHAPE);
    assert_int_equal(sae_host_forward(&host, tokens, 0, T, clean, NULL, NULL), SAE_ESHAPE);
    sae_host no_backward = host;
    no_backward.backward = NULL;
    assert_int_equal(sae_host_backward(&no_backward, S, T, clean, NULL, NULL), SAE_EUNSUPPORTED);

    /* Bad tables. */
    sae_host bad = host;
    bad.forward = NULL;
    assert_int_equal(sae_host_check(&bad), SAE_EINVAL);
    bad = host;
    bad.struct_size = 0;
    assert_int_equal(sae_host_check(&bad), SAE_EINVAL);
    bad = host;
    bad.d_model = 0;
    assert_int_equal(sae_host_check(&bad), SAE_EINVAL);
    const char *dup[3] = {"resid_pre.0", "attn_out.0", "resid_pre.0"};
    bad = host;
    bad.n_hooks = 3;
    bad.hook_names = dup;
    assert_int_equal(sae_host_check(&bad), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "resid_pre.0"));
    assert_int_equal(sae_host_check(NULL), SAE_EINVAL);

    test_free(sum);
    test_free(r.saved);
    test_free(clean);
    test_free(patched);
    llama2_model_free(m);
}

/* ---- backward -------------------------------------------------------------------------------- */

enum { BS = 2, BT = 6, BV = 512, BD = 64, BHOOKS = 20, BN = BS * BT };
static const int32_t btokens[BN] = {1, 403, 261, 378, 300, 271, 1, 5, 259, 100, 511, 42};

/* A forward that adds delta at index idx of hook `at`, after resetting every hook with
 * freeze[h] to its clean activations (clean: (BHOOKS, BN, BD)) — the forward in which the frozen
 * hooks are constants, whose derivative is what stop-gradient promises. Records into save. */
typedef struct {
    int32_t at;
    int64_t idx;
    float delta;
    const uint8_t *freeze;
    const float *clean;
    float *save;
    int32_t seed_hook;  /* >= 0: the metric is ⟨seed, x at seed_hook⟩ instead of the logits' */
    const float *seed;
    double dot;
} perturb;

static sae_status perturb_hook(void *user, int32_t id, float *x, int64_t n, int64_t ld)
{
    perturb *p = user;
    assert_int_equal(n * ld, BN * BD);
    if (p->freeze && p->freeze[id])
        memcpy(x, p->clean + (int64_t)id * BN * BD, BN * BD * sizeof(float));
    if (id == p->at)
        x[p->idx] += p->delta;
    if (p->save)
        memcpy(p->save + (int64_t)id * BN * BD, x, BN * BD * sizeof(float));
    if (id == p->seed_hook)
        for (int i = 0; i < BN * BD; i++)
            p->dot += (double)p->seed[i] * x[i];
    return SAE_OK;
}

/* f = Σ logits ⊙ wts (double), or ⟨seed, x_seed_hook⟩ when p has a seed, after a forward with
 * the perturbation p. */
static double metric(const sae_host *host, perturb *p, const float *wts, float *logits)
{
    p->dot = 0.0;
    assert_sae_ok(sae_host_forward(host, btokens, BS, BT, logits, perturb_hook, p));
    if (p->seed_hook >= 0)
        return p->dot;
    double f = 0.0;
    for (int i = 0; i < BN * BV; i++)
        f += (double)logits[i] * wts[i];
    return f;
}

static sae_status cancel_hook(void *user, int32_t id, float *x, int64_t n, int64_t ld)
{
    (void)user, (void)x, (void)n, (void)ld;
    return id == 7 ? SAE_ECANCELED : SAE_OK;
}

static uint32_t lcg(uint32_t *state) { return (*state = *state * 1664525u + 1013904223u) >> 8; }

/* Central difference of f at step eps: (f(+eps) − f(−eps)) / 2 eps = f' + eps² f⁽³⁾/6 + .... */
static double central(const sae_host *host, perturb *p, float eps, const float *wts,
                      float *logits)
{
    p->delta = eps;
    double fp = metric(host, p, wts, logits);
    p->delta = -eps;
    return (fp - metric(host, p, wts, logits)) / (2.0 * (double)eps);
}

/* Richardson extrapolation (4 D(eps) − D(2 eps)) / 3 = f' + O(eps⁴): the eps² term cancels, so
 * eps can be large enough that float32 rounding in the forward does not matter. */
static double richardson(const sae_host *host, perturb *p, float eps, const float *wts,
                         float *logits)
{
    return (4.0 * central(host, p, eps, wts, logits) - central(host, p, 2 * eps, wts, logits)) /
           3.0;
}

/* Gradients of f at all 20 hooks (into grads) against finite differences at 6 coordinates of
 * each hook, with the hooks in `stop` stopped (and frozen in the finite differences); f is
 * Σ logits ⊙ wts, or ⟨wts, x at seed_hook⟩ through sae_host_backward_from when seed_hook >= 0
 * (then only the hooks up to it are differenced). Returns
 * the largest relative error. The float32 forward rounds f by ~1e-3 (12 · 512 logits), which
 * with a plain central difference at eps = 1e-2 of the activations' rms costs errors of ~5%;
 * Richardson extrapolation allows eps = 0.2 rms (the truncation error is O(eps⁴)), where the
 * measured worst error is 5e-3 (2e-3 with stops) against 1e-2 allowed. Errors are relative to
 * max(|gradient component|, 0.05 · rms of that hook's gradient), so that components that are
 * tiny by accident are judged on the scale of their hook. */
static double check_gradients_from(const sae_host *host, const uint8_t *stop, int32_t seed_hook,
                                   const float *wts, float **grads)
{
    float *clean = test_malloc(BHOOKS * BN * BD * sizeof(float));
    float *logits = test_malloc(BN * BV * sizeof(float));
    perturb p = {-1, 0, 0.0f, NULL, NULL, clean, seed_hook, wts, 0.0};
    metric(host, &p, wts, logits); /* records the clean activations; the backward's forward */
    if (seed_hook >= 0)
        assert_sae_ok(sae_host_backward_from(host, BS, BT, seed_hook, wts, grads, stop));
    else
        assert_sae_ok(sae_host_backward(host, BS, BT, wts, grads, stop));
    uint32_t rng = 7;
    double worst = 0.0;
    /* ⟨seed, x⟩ at an inner hook bends more than the logits do: a smaller step (errors up to
     * 1.6e-2 at 0.2 rms, 3e-3 at 0.1 rms). */
    const double eps_rms = seed_hook >= 0 ? 0.1 : 0.2;
    p.save = NULL;
    p.freeze = stop;
    p.clean = clean;
    /* Hooks after a seed get exact zeros (checked by the caller): no differences needed. */
    const int32_t last = seed_hook >= 0 ? seed_hook : BHOOKS - 1;
    for (int32_t h = 0; h <= last; h++) {
        const float *x = clean + (int64_t)h * BN * BD;
        double ss = 0.0, gs = 0.0;
        for (int i = 0; i < BN * BD; i++) {
            ss += (double)x[i] * x[i];
            gs += (double)grads[h][i] * grads[h][i];
        }
        float eps = (float)(eps_rms * sqrt(ss / (BN * BD)));
        double gscale = 0.05 * sqrt(gs / (BN * BD));
        for (int c = 0; c < 6; c++) {
            p.at = h;
            p.idx = lcg(&rng) % (BN * BD);
            double fd = richardson(host, &p, eps, wts, logits), an = grads[h][p.idx];
            if (gscale == 0.0) { /* no gradient at this hook: none in the differences either */
                assert_true(fabs(fd) < 1e-9);
                continue;
            }
            double err = fabs(fd - an) / (fabs(an) > gscale ? fabs(an) : gscale);
            if (err > 1e-2)
                print_message("hook %d index %lld: backward %.6g, finite difference %.6g\n",
                              (int)h, (long long)p.idx, an, fd);
            worst = err > worst ? err : worst;
        }
    }
    test_free(clean);
    test_free(logits);
    return worst;
}

static double check_gradients(const sae_host *host, const uint8_t *stop, const float *wts,
                              float **grads)
{
    return check_gradients_from(host, stop, -1, wts, grads);
}

static float *random_weights(void)
{
    float *wts = test_malloc(BN * BV * sizeof(float));
    uint32_t rng = 3;
    for (int i = 0; i < BN * BV; i++)
        wts[i] = (float)(lcg(&rng) % 2001) / 1000.0f - 1.0f;
    return wts;
}

static float **alloc_grads(void)
{
    float **g = test_malloc(BHOOKS * sizeof(float *));
    for (int h = 0; h < BHOOKS; h++)
        g[h] = test_malloc(BN * BD * sizeof(float));
    return g;
}

static void free_grads(float **g)
{
    for (int h = 0; h < BHOOKS; h++)
        test_free(g[h]);
    test_free(g);
}

/* The backward pass at every hook point agrees with finite differences of the forward. */
static void test_backward_finite_differences(void **state)
{
    llama2_model *m = load_model();
    sae_host host;
    llama2_model_host(m, &host);
    float *wts = random_weights();
    float **grads = alloc_grads();
    double worst = check_gradients(&host, NULL, wts, grads);
    print_message("backward vs finite differences: worst relative error %.3g\n", worst);
    assert_true(worst < 1e-2);
    free_grads(grads);
    test_free(wts);
    llama2_model_free(m);
}

/* Stop-gradient: the gradient of the forward in which the stopped hooks are constants. */
static void test_backward_stop_grad(void **state)
{
    llama2_model *m = load_model();
    sae_host host;
    llama2_model_host(m, &host);
    float *wts = random_weights();
    float **grads = alloc_grads(), **full = alloc_grads();
    /* attn_out.1 (id 5), resid_pre.2 (8), resid_post.2 (11), mlp_out.3 (14) stopped. */
    uint8_t stop[BHOOKS] = {0};
    stop[5] = stop[8] = stop[11] = stop[14] = 1;
    double worst = check_gradients(&host, stop, wts, grads);
    print_message("stop-gradient vs finite differences: worst relative error %.3g\n", worst);
    assert_true(worst < 1e-2);
    /* resid_post.2 stopped: nothing reaches the hooks before it, though it gets its own. */
    for (int h = 0; h < 11; h++)
        for (int i = 0; i < BN * BD; i++)
            assert_true(grads[h][i] == 0.0f);
    assert_true(fabsf(grads[11][0]) + fabsf(grads[11][1]) > 0.0f);

    /* Direct path: attn_out and mlp_out of layers 3 and 4 and mlp_out.2 stopped. attn_out.2
     * then gets only the final norm and classifier — exactly the gradient at resid_post.4 —
     * while without stops it differs. */
    float *logits = test_malloc(BN * BV * sizeof(float));
    perturb p = {-1, 0, 0.0f, NULL, NULL, NULL, -1, NULL, 0.0};
    metric(&host, &p, wts, logits);
    memset(stop, 0, sizeof stop);
    stop[10] = stop[13] = stop[14] = stop[17] = stop[18] = 1;
    assert_sae_ok(sae_host_backward(&host, BS, BT, wts, grads, stop));
    assert_memory_equal(grads[9], grads[19], BN * BD * sizeof(float));
    assert_memory_equal(grads[11], grads[19], BN * BD * sizeof(float));
    assert_sae_ok(sae_host_backward(&host, BS, BT, wts, full, NULL));
    assert_memory_equal(full[19], grads[19], BN * BD * sizeof(float));
    double diff = 0.0;
    for (int i = 0; i < BN * BD; i++)
        diff += fabs(full[9][i] - grads[9][i]);
    assert_true(diff > 1e-3);
    /* Only one hook wanted: the same numbers as when all are. */
    float *only[BHOOKS] = {NULL};
    only[6] = grads[0];
    assert_sae_ok(sae_host_backward(&host, BS, BT, wts, only, NULL));
    assert_memory_equal(grads[0], full[6], BN * BD * sizeof(float));

    /* Errors: another shape than the last forward; no forward yet; a failed forward. */
    assert_int_equal(sae_host_backward(&host, 1, BT, wts, grads, NULL), SAE_ESHAPE);
    assert_non_null(strstr(llama2_last_error(), "last forward"));
    llama2_model *fresh = load_model();
    assert_int_equal(llama2_model_backward(fresh, BS, BT, wts, grads, NULL), SAE_EINVAL);
    p.freeze = NULL;
    assert_int_equal(llama2_model_forward(m, btokens, BS, BT + 1000, logits, NULL, NULL),
                     SAE_ESHAPE);
    assert_sae_ok(llama2_model_backward(m, BS, BT, wts, grads, NULL)); /* checked first */
    assert_int_equal(llama2_model_forward(m, btokens, BS, BT, logits, cancel_hook, NULL),
                     SAE_ECANCELED);
    assert_int_equal(llama2_model_backward(m, BS, BT, wts, grads, NULL), SAE_EINVAL);
    llama2_model_free(fresh);

    test_free(logits);
    free_grads(grads);
    free_grads(full);
    test_free(wts);
    llama2_model_free(m);
}

/* The backward from a hook point (seeded at a residual hook and at a branch output, with and
 * without stops) against finite differences of ⟨seed, x_seed⟩; hooks after the seed get zeros. */
static void test_backward_from_hook(void **state)
{
    llama2_model *m = load_model();
    sae_host host;
    llama2_model_host(m, &host);
    float *seed = random_weights();
    float **grads = alloc_grads();
    uint8_t stop[BHOOKS] = {0};
    stop[5] = stop[7] = 1; /* attn_out.1, resid_post.1 */
    const struct { int32_t hook; const uint8_t *stop; } cases[] = {
        {11, NULL}, {14, NULL}, {9, stop}, {13, stop}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double worst = check_gradients_from(&host, cases[c].stop, cases[c].hook, seed, grads);
        print_message("backward from hook %d%s vs finite differences: worst relative error "
                      "%.3g\n", (int)cases[c].hook, cases[c].stop ? " (stops)" : "", worst);
        assert_true(worst < 1e-2);
        assert_memory_equal(grads[cases[c].hook], seed, BN * BD * sizeof(float));
        for (int h = cases[c].hook + 1; h < BHOOKS; h++)
            for (int i = 0; i < BN * BD; i++)
                assert_true(grads[h][i] == 0.0f);
    }
    /* With resid_post.1 stopped nothing reaches layer 1 and below. */
    for (int h = 0; h < 7; h++)
        for (int i = 0; i < BN * BD; i++)
            assert_true(grads[h][i] == 0.0f);
    assert_int_equal(sae_host_backward_from(&host, BS, BT, BHOOKS, seed, grads, NULL),
                     SAE_ERANGE);
    assert_int_equal(sae_host_backward_from(&host, BS + 1, BT, 3, seed, grads, NULL),
                     SAE_ESHAPE);
    sae_host none = host;
    none.backward_from = NULL;
    assert_int_equal(sae_host_backward_from(&none, BS, BT, 3, seed, grads, NULL),
                     SAE_EUNSUPPORTED);
    free_grads(grads);
    test_free(seed);
    llama2_model_free(m);
}

/* sae_logits_ce and sae_logits_diff against direct formulas and finite differences, and the
 * gradient of next-token CE at resid_pre.0 through the host against finite differences. */
static void test_logit_metrics(void **state)
{
    enum { N = 3, V = 5 };
    const float z[N * V] = {0.1f, 2.0f, -1.0f, 0.5f, 0.0f, 3.0f, 1.0f, 1.0f, -2.0f, 0.3f,
                            -0.5f, 0.0f, 0.7f, 0.2f, 1.5f};
    const int32_t targets[N] = {1, -1, 4};
    float ce = 0.0f, d[N * V], diff = 0.0f;
    assert_sae_ok(sae_logits_ce(&ce, d, z, targets, N, V));
    double want = 0.0;
    for (int i = 0; i < N; i += 2) {
        double sum = 0.0;
        for (int j = 0; j < V; j++)
            sum += exp(z[i * V + j]);
        want += (log(sum) - z[i * V + targets[i]]) / 2.0;
    }
    assert_true(fabs(ce - want) < 1e-6);
    float zp[N * V];
    for (int k = 0; k < N * V; k++) {
        float hi, lo;
        memcpy(zp, z, sizeof zp);
        zp[k] += 1e-2f;
        assert_sae_ok(sae_logits_ce(&hi, NULL, zp, targets, N, V));
        zp[k] -= 2e-2f;
        assert_sae_ok(sae_logits_ce(&lo, NULL, zp, targets, N, V));
        assert_true(fabs((hi - lo) / 2e-2 - d[k]) < 1e-3);
    }
    for (int j = 0; j < V; j++)
        assert_true(d[V + j] == 0.0f);
    assert_sae_ok(sae_logits_diff(&diff, d, z, 1, N, V, 4, 2));
    assert_true(diff == z[2 * V + 4] - z[2 * V + 2]);
    for (int k = 0; k < N * V; k++)
        assert_true(d[k] == (k == 2 * V + 4 ? 1.0f : k == 2 * V + 2 ? -1.0f : 0.0f));
    const int32_t none[N] = {-1, -1, -1}, big[N] = {0, 5, 0};
    assert_int_equal(sae_logits_ce(&ce, d, z, none, N, V), SAE_EINVAL);
    assert_int_equal(sae_logits_ce(&ce, d, z, big, N, V), SAE_ERANGE);
    assert_int_equal(sae_logits_ce(&ce, d, z, targets, 0, V), SAE_ESHAPE);
    assert_int_equal(sae_logits_diff(&diff, d, z, 1, N, V, 5, 0), SAE_ERANGE);
    assert_int_equal(sae_logits_diff(NULL, d, z, 1, N, V, 1, 0), SAE_EINVAL);

    /* Next-token CE of the batch, backpropagated to resid_pre.0 (the embeddings). */
    llama2_model *m = load_model();
    sae_host host;
    llama2_model_host(m, &host);
    float *logits = test_malloc(BN * BV * sizeof(float));
    float *dl = test_malloc(BN * BV * sizeof(float)), *g = test_malloc(BN * BD * sizeof(float));
    int32_t next[BN];
    for (int i = 0; i < BN; i++)
        next[i] = i % BT == BT - 1 ? -1 : btokens[i + 1];
    assert_sae_ok(sae_host_forward(&host, btokens, BS, BT, logits, NULL, NULL));
    assert_sae_ok(sae_logits_ce(&ce, dl, logits, next, BN, BV));
    float *d_hooks[BHOOKS] = {g};
    assert_sae_ok(sae_host_backward(&host, BS, BT, dl, d_hooks, NULL));
    perturb p = {0, 0, 0.0f, NULL, NULL, NULL, -1, NULL, 0.0};
    uint32_t rng = 11;
    for (int c = 0; c < 4; c++) {
        float hi, lo;
        p.idx = lcg(&rng) % (BN * BD);
        p.delta = 1e-2f;
        assert_sae_ok(sae_host_forward(&host, btokens, BS, BT, logits, perturb_hook, &p));
        assert_sae_ok(sae_logits_ce(&hi, NULL, logits, next, BN, BV));
        p.delta = -1e-2f;
        assert_sae_ok(sae_host_forward(&host, btokens, BS, BT, logits, perturb_hook, &p));
        assert_sae_ok(sae_logits_ce(&lo, NULL, logits, next, BN, BV));
        double fd = (hi - lo) / 2e-2;
        print_message("CE at resid_pre.0[%lld]: backward %.6g, finite difference %.6g\n",
                      (long long)p.idx, g[p.idx], fd);
        assert_true(fabs(fd - g[p.idx]) < 2e-2 * fabs(g[p.idx]) + 2e-3);
    }
    test_free(logits);
    test_free(dl);
    test_free(g);
    llama2_model_free(m);
}

/* ---- tokenizer ------------------------------------------------------------------------------- */

static void test_tokenizer_round_trip(void **state)
{
    llama2_tokenizer *t = load_tokenizer();
    const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "She said, \"I want to play!\"\nThe end.",
        "caf\xc3\xa9 \xe2\x98\x83 na\xc3\xafve \x01\x7f zebra-quux 12345",
        "  leading and trailing spaces  ",
    };
    int32_t tokens[256];
    char text[1024];
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        int64_t n = 0;
        assert_int_equal(llama2_tokenizer_encode(t, texts[k], 1, 0, tokens, 256, &n), SAE_OK);
        assert_true(n > 1 && tokens[0] == 1);
        for (int64_t i = 0; i < n; i++)
            assert_true(tokens[i] >= 0 && tokens[i] < 512);
        decode(t, tokens, n, text, sizeof text);
        assert_string_equal(text, texts[k]);
    }
    /* The snowman has no token: its three bytes are the byte-fallback tokens <0xE2><0x98><0x83>. */
    int64_t n = 0;
    assert_int_equal(llama2_tokenizer_encode(t, "\xe2\x98\x83", 0, 1, tokens, 256, &n), SAE_OK);
    assert_int_equal(n, 5);
    assert_int_equal(tokens[1], 0xE2 + 3);
    assert_int_equal(tokens[2], 0x98 + 3);
    assert_int_equal(tokens[3], 0x83 + 3);
    assert_int_equal(tokens[4], 2);
    assert_string_equal(llama2_tokenizer_piece(t, 5, 0xE2 + 3), "\xe2");
    /* Merges: common words are single tokens, far fewer than bytes. */
    assert_int_equal(llama2_tokenizer_encode(t, texts[0], 1, 0, tokens, 256, &n), SAE_OK);
    assert_true(n < (int64_t)strlen(texts[0]) / 2);
    /* Empty text with BOS is just BOS; a short array is an error, not an overflow. */
    assert_int_equal(llama2_tokenizer_encode(t, "", 1, 0, tokens, 256, &n), SAE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(llama2_tokenizer_encode(t, texts[2], 1, 0, tokens, 4, &n), SAE_ERANGE);
    assert_int_equal(n, 0);
    assert_null(llama2_tokenizer_piece(t, 1, 512));
    assert_null(llama2_tokenizer_piece(t, 1, -1));
    llama2_tokenizer_free(t);
}

/* Encode text with the fast merges and with run.c's loop (the reference twin); the tokens must
 * be the same. cap: room for the tokens. */
static void assert_same_merges(const llama2_tokenizer *t, const char *text, int64_t cap)
{
    int32_t *fast = test_malloc((size_t)cap * sizeof(int32_t));
    int32_t *ref = test_malloc((size_t)cap * sizeof(int32_t));
    int64_t n_fast = 0, n_ref = 0;
    assert_int_equal(llama2_tokenizer_encode(t, text, 1, 1, fast, cap, &n_fast), SAE_OK);
    assert_int_equal(llama2__tokenizer_encode_reference(t, text, 1, 1, ref, cap, &n_ref), SAE_OK);
    if (n_fast != n_ref || memcmp(fast, ref, (size_t)n_fast * sizeof(int32_t)))
        fail_msg("the merges differ from run.c's on \"%.60s...\" (%lld and %lld tokens)", text,
                 (long long)n_fast, (long long)n_ref);
    test_free(fast);
    test_free(ref);
}

/* A tokenizer of the 259 special and byte tokens and `extra` pieces with their scores. */
static llama2_tokenizer *small_tokenizer(const char *const *extra, const float *scores, int n)
{
    char *file = test_malloc(64 * 1024), *at = file + 4;
    int32_t longest = 8;
    memcpy(file, &longest, 4);
    for (int i = 0; i < 259 + n; i++) {
        char piece[16];
        if (i < 3)
            snprintf(piece, sizeof piece, "%s", (const char *[]){"<unk>", "<s>", "</s>"}[i]);
        else if (i < 259)
            snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else
            snprintf(piece, sizeof piece, "%s", extra[i - 259]);
        const float score = i < 259 ? 0.0f : scores[i - 259];
        const int32_t len = (int32_t)strlen(piece);
        memcpy(at, &score, 4);
        memcpy(at + 4, &len, 4);
        memcpy(at + 8, piece, (size_t)len);
        at += 8 + len;
    }
    llama2_tokenizer *t = NULL;
    assert_int_equal(llama2_tokenizer_load(&t, write_file("l2_tok_small.bin", file, at - file),
                                           259 + n, test_allocator()), SAE_OK);
    test_free(file);
    return t;
}

/* The heap-based merges give run.c's tokens: on slices of the stories text and random text of
 * letters that merge (tok512), on a tokenizer with equal scores, NaN and scores run.c never
 * picks (-1e11), on long runs of one merge and on a repeated piece; a text of 200,000 merging
 * characters takes well under a second (run.c's loop: hours, which ctest's TIMEOUT turns into a
 * failure). */
static void test_tokenizer_merges_match_reference(void **state)
{
    llama2_tokenizer *t = load_tokenizer();
    long md_size;
    char *md = read_file(shared_path("data/stories260K.md"), &md_size);
    char *text = test_malloc(2048);
    sae_rng rng;
    sae_rng_init(&rng, 77, 0);
    for (int k = 0; k < 100; k++) {
        const long len = 1 + (long)sae_rng_below(&rng, 400);
        const long from = (long)sae_rng_below(&rng, (uint64_t)(md_size - len));
        memcpy(text, md + from, (size_t)len);
        text[len] = '\0';
        assert_same_merges(t, text, len + 3);
        for (long i = 0; i < len; i++)
            text[i] = " aehinst\n"[sae_rng_below(&rng, 9)];
        assert_same_merges(t, text, len + 3);
    }
    llama2_tokenizer_free(t);

    static const char *const pieces[] = {" ", "a", "b", " a", "ab", "ba", "aa", "bb", "aba",
                                         "abab", " ab"};
    static const float scores[] = {0, 0, 0, 1, 1, 1, NAN, -1e11f, 2, 1, 1};
    t = small_tokenizer(pieces, scores, (int)(sizeof pieces / sizeof *pieces));
    for (int k = 0; k < 300; k++) {
        const long len = 1 + (long)sae_rng_below(&rng, 300);
        for (long i = 0; i < len; i++)
            text[i] = " ab"[sae_rng_below(&rng, 3)];
        text[len] = '\0';
        assert_same_merges(t, text, len + 3);
    }
    for (long i = 0; i < 1500; i++)
        text[i] = i % 2 ? 'a' : 'b';
    text[1500] = '\0';
    assert_same_merges(t, text, 1503);

    enum { LONG = 200000 };
    char *big = test_malloc(LONG + 1);
    for (long i = 0; i < LONG; i++)
        big[i] = i % 2 ? 'b' : 'a';
    big[LONG] = '\0';
    int32_t *tokens = test_malloc((LONG + 3) * sizeof(int32_t));
    int64_t n = 0;
    const clock_t t0 = clock();
    assert_int_equal(llama2_tokenizer_encode(t, big, 0, 0, tokens, LONG + 3, &n), SAE_OK);
    const double seconds = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("    %d characters that merge: %lld tokens in %.3f s\n", LONG, (long long)n, seconds);
    assert_true(n < LONG / 2);
    test_free(tokens);
    test_free(big);
    llama2_tokenizer_free(t);

    /* A piece that occurs twice is found under its first id, by both merge loops. */
    static const char *const twice[] = {"a", "b", "ab", "ab"};
    t = small_tokenizer(twice, (const float[]){0, 0, 1, 2}, 4);
    int32_t ids[4];
    int64_t n_ids = 0;
    assert_int_equal(llama2_tokenizer_encode(t, "ab", 0, 0, ids, 4, &n_ids), SAE_OK);
    assert_int_equal(n_ids, 2); /* the dummy prefix (byte token of ' ') and "ab" */
    assert_int_equal(ids[1], 261);
    assert_same_merges(t, "abab", 7);
    llama2_tokenizer_free(t);
    test_free(text);
    test_free(md);
}

/* ---- malformed files ------------------------------------------------------------------------- */

static sae_status try_model(const char *name, const void *data, long size)
{
    llama2_model *m = (llama2_model *)&m;
    sae_status s = llama2_model_load(&m, write_file(name, data, size), test_allocator());
    assert_null(m);
    assert_true(llama2_last_error()[0] != '\0');
    return s;
}

static void test_bad_checkpoint(void **state)
{
    long size;
    char *good = read_file(shared_path("data/stories260K.bin"), &size);
    char *bad = test_malloc((size_t)size + 64);
    assert_int_equal(try_model("l2_short.bin", good, 20), SAE_EFORMAT);
    assert_int_equal(try_model("l2_trunc.bin", good, size - 4), SAE_EFORMAT);
    memcpy(bad, good, (size_t)size);
    memset(bad + size, 0, 64);
    assert_int_equal(try_model("l2_long.bin", bad, size + 4), SAE_EFORMAT);
    /* A negative vocab size announces a classifier that is not there. */
    int32_t *h = (int32_t *)bad;
    h[5] = -512;
    assert_int_equal(try_model("l2_cls.bin", bad, size), SAE_EFORMAT);
    /* Impossible dimensions: heads not dividing dim, kv heads not dividing heads, zero, huge. */
    const int32_t cases[][2] = {{3, 7}, {4, 3}, {0, 0}, {2, -1}, {1, 0x7fffffff}, {2, 0x7fffffff}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        memcpy(bad, good, (size_t)size);
        h[cases[k][0]] = cases[k][1];
        assert_int_equal(try_model("l2_dims.bin", bad, size), SAE_EFORMAT);
    }
    llama2_model *m = NULL;
    assert_int_equal(llama2_model_load(&m, tmp_path("l2_missing.bin"), test_allocator()),
                     SAE_EIO);
    test_free(bad);
    test_free(good);
}

static sae_status try_tokenizer(const char *name, const void *data, long size, int32_t vocab)
{
    llama2_tokenizer *t = (llama2_tokenizer *)&t;
    sae_status s = llama2_tokenizer_load(&t, write_file(name, data, size), vocab,
                                         test_allocator());
    assert_null(t);
    return s;
}

static void test_bad_tokenizer(void **state)
{
    long size;
    char *good = read_file(shared_path("data/tok512.bin"), &size);
    assert_int_equal(try_tokenizer("l2_tok_short.bin", good, 2, 512), SAE_EFORMAT);
    assert_int_equal(try_tokenizer("l2_tok_trunc.bin", good, size - 1, 512), SAE_EFORMAT);
    assert_int_equal(try_tokenizer("l2_tok_vocab.bin", good, size, 511), SAE_EFORMAT);
    assert_int_equal(try_tokenizer("l2_tok_vocab.bin", good, size, 513), SAE_EFORMAT);
    assert_int_equal(try_tokenizer("l2_tok_vocab.bin", good, size, 100), SAE_EINVAL);
    /* The length of token 0 (after max_token_length and its score) made negative, then huge. */
    char *bad = test_malloc((size_t)size);
    memcpy(bad, good, (size_t)size);
    int32_t len = -1;
    memcpy(bad + 8, &len, 4);
    assert_int_equal(try_tokenizer("l2_tok_len.bin", bad, size, 512), SAE_EFORMAT);
    len = 1 << 30;
    memcpy(bad + 8, &len, 4);
    assert_int_equal(try_tokenizer("l2_tok_len.bin", bad, size, 512), SAE_EFORMAT);
    test_free(bad);
    test_free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_text),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_batch_equals_steps),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_host_hooks),
        cmocka_unit_test(test_backward_finite_differences),
        cmocka_unit_test(test_backward_stop_grad),
        cmocka_unit_test(test_backward_from_hook),
        cmocka_unit_test(test_logit_metrics),
        cmocka_unit_test(test_tokenizer_round_trip),
        cmocka_unit_test(test_tokenizer_merges_match_reference),
        cmocka_unit_test(test_bad_checkpoint),
        cmocka_unit_test(test_bad_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
