/* test_capture.c: activations from a host (include/sae/capture.h) on the llama2.c host with
 * stories260K: the host source against the rows a recording patch sees (order, skip_bos,
 * shuffle, loop, reset, bounded memory, training from it), capture files against direct forward
 * activations (single and stacked, skip_bos, read back as a file source), atomic writes under a
 * failing host, loss recovered against a naive computation written here (and a dictionary that
 * reconstructs exactly), and bad inputs. */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama2.h"
#include "test_util.h"

enum { NS = 5, TL = 12, DM = 64, NL = 5, VOCAB = 512, F = 128, K = 8 };

#define HOOK(layer, kind) (4 * (layer) + (kind))
#define RESID_POST_2 HOOK(2, LLAMA2_HOOK_RESID_POST)

/* ---- fixtures -------------------------------------------------------------------------------- */

typedef struct fixture {
    llama2_model *model;
    sae_host host;
    int32_t tokens[NS * TL]; /* BOS, then text sampled from the model */
} fixture;

/* Sequences the model finds likely (so that damaging it raises the loss): BOS, then tokens
 * drawn from its next-token distribution at temperature 1. */
static void sample_stories(fixture *fx)
{
    llama2_state *st = NULL;
    if (llama2_state_create(&st, fx->model) != SAE_OK)
        fail_msg("llama2_state_create: %s", llama2_last_error());
    sae_rng rng;
    sae_rng_init(&rng, 42, 0);
    float logits[VOCAB];
    for (int s = 0; s < NS; s++) {
        llama2_state_reset(st);
        int32_t *seq = fx->tokens + s * TL;
        seq[0] = 1;
        for (int t = 1; t < TL; t++) {
            assert_sae_ok(llama2_state_step(st, seq[t - 1], logits, NULL, NULL));
            double max = logits[0], sum = 0, u = sae_rng_uniform(&rng);
            for (int v = 1; v < VOCAB; v++)
                max = logits[v] > max ? logits[v] : max;
            for (int v = 0; v < VOCAB; v++)
                sum += exp(logits[v] - max);
            int v = 0;
            for (double acc = exp(logits[0] - max) / sum; acc < u && v < VOCAB - 1;)
                acc += exp(logits[++v] - max) / sum;
            seq[t] = v;
        }
    }
    llama2_state_free(st);
}

static int setup(void **state)
{
    fixture *fx = test_malloc(sizeof *fx);
    fx->model = NULL;
    /* The default allocator: the model keeps the tape of its last forward pass from one test to
     * the next, which CMocka's per-test leak check would take for a leak. */
    sae_status s = llama2_model_load(&fx->model, shared_path("data/stories260K.bin"), NULL);
    if (s != SAE_OK)
        fail_msg("llama2_model_load: %s", llama2_last_error());
    llama2_model_host(fx->model, &fx->host);
    sample_stories(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    llama2_model_free(fx->model);
    test_free(fx);
    return 0;
}

/* The activations at `hook_id` for every token, (NS TL, DM), through a recording patch
 * installed as the hook of one forward pass over all the sequences. */
typedef struct record_hook {
    int32_t hook_id;
    sae_patch *patch;
} record_hook;

static sae_status record(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld)
{
    record_hook *r = user;
    return hook_id == r->hook_id ? sae_patch_apply(r->patch, x, n, ld) : SAE_OK;
}

/* A dictionary of width DM (random TopK) for patches and loss recovered. */
static sae_dict *random_dict(int64_t d_in, uint64_t seed)
{
    float *W_enc = test_malloc(sizeof(float) * (size_t)(d_in * F));
    float *W_dec = test_malloc(sizeof(float) * (size_t)(F * d_in));
    float b_enc[F], b_dec[DM];
    fill_normal(W_enc, d_in * F, seed, 0.3f);
    fill_normal(W_dec, F * d_in, seed + 1, 0.15f);
    fill_normal(b_enc, F, seed + 2, 0.1f);
    fill_normal(b_dec, d_in, seed + 3, 0.1f);
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = SAE_ARCH_TOPK, cfg.d_in = d_in, cfg.d_sae = F, cfg.k = K;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.b_enc = b_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &cfg, &w, test_allocator()));
    test_free(W_enc), test_free(W_dec);
    return d;
}

/* x_hat = relu(x) - relu(-x) = x exactly: W_enc = [I, -I], W_dec = [I; -I], no biases. */
static sae_dict *identity_dict(void)
{
    float *W_enc = test_malloc(sizeof(float) * DM * 2 * DM);
    float *W_dec = test_malloc(sizeof(float) * 2 * DM * DM);
    memset(W_enc, 0, sizeof(float) * DM * 2 * DM);
    memset(W_dec, 0, sizeof(float) * 2 * DM * DM);
    for (int i = 0; i < DM; i++) {
        W_enc[i * 2 * DM + i] = 1.0f, W_enc[i * 2 * DM + DM + i] = -1.0f;
        W_dec[i * DM + i] = 1.0f, W_dec[(DM + i) * DM + i] = -1.0f;
    }
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = SAE_ARCH_STANDARD, cfg.d_in = DM, cfg.d_sae = 2 * DM;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &cfg, &w, test_allocator()));
    test_free(W_enc), test_free(W_dec);
    return d;
}

/* (NS TL, DM) activations at hook_id, test_malloc'd. */
static float *direct_activations(fixture *fx, int32_t hook_id)
{
    sae_dict *d = random_dict(DM, 1);
    sae_patch *p = NULL;
    sae_patch_options po = SAE_PATCH_OPTIONS_INIT;
    po.allocator = test_allocator();
    assert_sae_ok(sae_patch_create_record(&p, d, SAE_RECORD_ACTIVATIONS, NS * TL, 0, &po));
    record_hook r = {hook_id, p};
    assert_sae_ok(sae_host_forward(&fx->host, fx->tokens, NS, TL, NULL, record, &r));
    sae_patch_record rec = SAE_PATCH_RECORD_INIT;
    assert_sae_ok(sae_patch_get_record(p, &rec));
    assert_int_equal(rec.n_tokens, NS * TL);
    float *x = test_malloc(sizeof(float) * NS * TL * DM);
    memcpy(x, rec.activations, sizeof(float) * NS * TL * DM);
    sae_patch_free(p);
    sae_dict_free(d);
    return x;
}

/* Read a source to its end in pieces of `piece` rows into x (room for cap rows). */
static int64_t drain(sae_source *src, int64_t piece, float *x, int64_t cap)
{
    int64_t total = 0, got = 0;
    do {
        int64_t want = cap - total < piece ? cap - total : piece;
        assert_sae_ok(sae_source_next(src, want, x + total * DM, DM, &got));
        total += got;
    } while (got > 0 && total < cap);
    return total;
}

static void expect_error(sae_status s, sae_status want, const char *needle)
{
    if (s != want)
        fail_msg("status %d (%s), expected %d: %s", s, sae_status_str(s), want, sae_last_error());
    if (!strstr(sae_last_error(), needle))
        fail_msg("message \"%s\" lacks \"%s\"", sae_last_error(), needle);
}

/* ---- host source ----------------------------------------------------------------------------- */

/* Unshuffled, the source yields the recorded rows in (s, t) order, in any read pieces and
 * forward batches, with and without position 0. */
static void test_source_order(void **state)
{
    fixture *fx = *state;
    float *want = direct_activations(fx, RESID_POST_2);
    float *got = test_malloc(sizeof(float) * NS * TL * DM);
    for (int skip = 0; skip <= 1; skip++)
        for (int64_t batch = 0; batch <= 2; batch++) {
            sae_source *src = NULL;
            assert_sae_ok(sae_source_from_host(&src, &fx->host, RESID_POST_2, fx->tokens, NS, TL,
                                               batch, skip, NULL));
            assert_int_equal(sae_source_d(src), DM);
            assert_int_equal(sae_source_rows(src), NS * (TL - skip));
            assert_int_equal(drain(src, 7, got, NS * TL), NS * (TL - skip));
            for (int s = 0; s < NS; s++)
                assert_memory_equal(got + s * (TL - skip) * DM, want + (s * TL + skip) * DM,
                                    sizeof(float) * (size_t)((TL - skip) * DM));
            int64_t n = -1;
            assert_sae_ok(sae_source_next(src, 4, got, DM, &n));
            assert_int_equal(n, 0);
            /* reset: the same rows again */
            assert_sae_ok(sae_source_reset(src));
            assert_int_equal(drain(src, 100, got, NS * TL), NS * (TL - skip));
            assert_memory_equal(got, want + skip * DM, sizeof(float) * (TL - skip) * DM);
            sae_source_free(src);
        }
    test_free(want), test_free(got);
}

static int compare_rows(const void *a, const void *b) { return memcmp(a, b, DM * sizeof(float)); }

/* Shuffled: a permutation of the rows, different from stored order, the same for the same
 * seed; a looping source gives a second epoch of the same rows in another order. */
static void test_source_shuffle_loop(void **state)
{
    fixture *fx = *state;
    const int64_t N = NS * TL;
    float *want = direct_activations(fx, RESID_POST_2);
    float *got = test_malloc(sizeof(float) * 2 * N * DM);
    float *again = test_malloc(sizeof(float) * N * DM);
    sae_source_options o = SAE_SOURCE_OPTIONS_INIT;
    o.shuffle_buffer_rows = 16, o.seed = 3, o.loop = 1, o.allocator = test_allocator();
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_host(&src, &fx->host, RESID_POST_2, fx->tokens, NS, TL, 2, 0,
                                       &o));
    assert_int_equal(drain(src, 13, got, 2 * N), 2 * N);
    assert_int_equal(sae_source_epoch(src), 1);
    assert_true(memcmp(got, want, sizeof(float) * N * DM) != 0);
    assert_true(memcmp(got, got + N * DM, sizeof(float) * N * DM) != 0);
    assert_sae_ok(sae_source_reset(src));
    assert_int_equal(drain(src, 50, again, N), N);
    assert_memory_equal(again, got, sizeof(float) * N * DM);
    sae_source_free(src);
    qsort(want, (size_t)N, DM * sizeof(float), compare_rows);
    for (int e = 0; e < 2; e++) {
        qsort(got + e * N * DM, (size_t)N, DM * sizeof(float), compare_rows);
        assert_memory_equal(got + e * N * DM, want, sizeof(float) * N * DM);
    }
    test_free(want), test_free(got), test_free(again);
}

/* Peak bytes the source allocates while streaming n_seq sequences shuffled. */
static size_t source_peak(fixture *fx, const int32_t *tokens, int64_t n_seq)
{
    alloc_counter c = {0, 0, 0};
    sae_allocator counting = counting_allocator(&c);
    sae_source_options o = SAE_SOURCE_OPTIONS_INIT;
    o.shuffle_buffer_rows = 32, o.allocator = &counting;
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_host(&src, &fx->host, RESID_POST_2, tokens, n_seq, TL, 2, 1,
                                       &o));
    float x[10 * DM];
    int64_t total = 0, got = 0;
    do {
        assert_sae_ok(sae_source_next(src, 10, x, DM, &got));
        total += got;
    } while (got > 0);
    assert_int_equal(total, n_seq * (TL - 1));
    sae_source_free(src);
    assert_int_equal(c.live, 0);
    return c.peak;
}

static void test_source_memory_bounded(void **state)
{
    fixture *fx = *state;
    enum { MANY = 12 * NS };
    int32_t *many = test_malloc(sizeof(int32_t) * MANY * TL);
    for (int i = 0; i < MANY; i++)
        memcpy(many + i * TL, fx->tokens + (i % NS) * TL, sizeof(int32_t) * TL);
    size_t small = source_peak(fx, fx->tokens, NS), large = source_peak(fx, many, MANY);
    assert_int_equal(small, large);
    /* shuffle buffer + one batch of 2 sequences + the handle: well under the data (MANY TL DM) */
    assert_true(large < (32 + 2 * TL) * DM * sizeof(float) + 4096);
    test_free(many);
}

/* sae_trainer_fit reads the host source as it reads any other. */
static void test_source_trains(void **state)
{
    fixture *fx = *state;
    sae_source_options so = SAE_SOURCE_OPTIONS_INIT;
    so.loop = 1, so.shuffle_buffer_rows = 64, so.allocator = test_allocator();
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_host(&src, &fx->host, RESID_POST_2, fx->tokens, NS, TL, 0, 1,
                                       &so));
    sae_trainer_options to = SAE_TRAINER_OPTIONS_INIT;
    to.arch = SAE_ARCH_TOPK, to.d_in = DM, to.d_sae = F, to.k = K, to.n_threads = 1;
    to.seed = 5, to.allocator = test_allocator();
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &to));
    sae_fit_options fo = SAE_FIT_OPTIONS_INIT;
    fo.steps = 30, fo.batch_size = 32;
    assert_sae_ok(sae_trainer_fit(t, src, &fo, NULL, NULL, NULL));
    assert_int_equal(sae_trainer_steps(t), 30);
    sae_trainer_free(t);
    sae_source_free(src);
}

/* ---- capture files --------------------------------------------------------------------------- */

/* Tensor `name` of a capture file equals the direct activations of `hooks` (n_stack of them
 * stacked, or one when n_stack = 0), without position 0 when skip. */
static void check_tensor(fixture *fx, const char *path, const char *name, const int32_t *hooks,
                         int n_stack, int skip)
{
    const int n_per = n_stack ? n_stack : 1, T = TL - skip;
    int64_t numel = 0, shape[SAE_MAX_DIMS];
    int ndim = 0;
    float *got = load_tensor_f32(path, name, &numel, shape, &ndim);
    assert_int_equal(ndim, n_stack ? 4 : 3);
    assert_int_equal(shape[0], NS);
    assert_int_equal(shape[1], T);
    assert_int_equal(shape[ndim - 1], DM);
    if (n_stack)
        assert_int_equal(shape[2], n_stack);
    for (int j = 0; j < n_per; j++) {
        float *want = direct_activations(fx, hooks[j]);
        for (int s = 0; s < NS; s++)
            for (int t = 0; t < T; t++)
                assert_memory_equal(got + ((s * T + t) * n_per + j) * DM,
                                    want + (s * TL + t + skip) * DM, sizeof(float) * DM);
        test_free(want);
    }
    test_free(got);
}

static void test_capture_file(void **state)
{
    fixture *fx = *state;
    const char *path = tmp_path("capture.safetensors");
    /* Two single hook points, batches of 2 sequences (the last one short). */
    const char *names[] = {"resid_post", "attn_out"};
    const int32_t single[] = {RESID_POST_2, HOOK(0, LLAMA2_HOOK_ATTN_OUT)};
    sae_capture_options o = SAE_CAPTURE_OPTIONS_INIT;
    o.seqs_per_batch = 2, o.allocator = test_allocator();
    assert_sae_ok(sae_host_capture(path, &fx->host, fx->tokens, NS, TL, 2, names, 0, single, &o));
    check_tensor(fx, path, "resid_post", single, 0, 0);
    check_tensor(fx, path, "attn_out", single + 1, 0, 0);
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    assert_int_equal(sae_st_count(r), 2);
    assert_string_equal(sae_st_metadata(r, "hooks.resid_post"), "resid_post.2");
    assert_string_equal(sae_st_metadata(r, "skip_bos"), "0");
    sae_st_close(r);

    /* Every kind of every layer, stacked, without position 0, in batches of 3. */
    const char *kinds[] = {"resid_pre", "attn_out", "mlp_out", "resid_post"};
    int32_t stacked[4 * NL];
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < NL; l++)
            stacked[k * NL + l] = HOOK(l, k);
    o.skip_bos = 1, o.seqs_per_batch = 3;
    assert_sae_ok(sae_host_capture(path, &fx->host, fx->tokens, NS, TL, 4, kinds, NL, stacked,
                                   &o));
    for (int k = 0; k < 4; k++)
        check_tensor(fx, path, kinds[k], stacked + k * NL, NL, 1);
    assert_sae_ok(sae_st_open(&r, path));
    assert_string_equal(sae_st_metadata(r, "hooks.mlp_out"),
                        "mlp_out.0,mlp_out.1,mlp_out.2,mlp_out.3,mlp_out.4");
    assert_string_equal(sae_st_metadata(r, "skip_bos"), "1");
    sae_st_close(r);

    /* A single-hook file is a training shard: the file source gives the host source's rows. */
    o.skip_bos = 1, o.seqs_per_batch = 0;
    assert_sae_ok(sae_host_capture(path, &fx->host, fx->tokens, NS, TL, 1, names, 0, single, &o));
    float *a = test_malloc(sizeof(float) * NS * TL * DM);
    float *b = test_malloc(sizeof(float) * NS * TL * DM);
    sae_source *files = NULL, *host = NULL;
    assert_sae_ok(sae_source_from_files(&files, &path, 1, NULL));
    assert_sae_ok(sae_source_from_host(&host, &fx->host, RESID_POST_2, fx->tokens, NS, TL, 0, 1,
                                       NULL));
    assert_int_equal(drain(files, 9, a, NS * TL), NS * (TL - 1));
    assert_int_equal(drain(host, 9, b, NS * TL), NS * (TL - 1));
    assert_memory_equal(a, b, sizeof(float) * NS * (TL - 1) * DM);
    sae_source_free(files), sae_source_free(host);
    test_free(a), test_free(b);
}

/* A host around the llama2 host that fails its forward pass number `fail_at` (1-based), or
 * gives a NaN logit in pass number `nan_at`, or never calls the hooks. */
typedef struct faulty {
    sae_host inner;
    int calls, fail_at, nan_at;
    bool no_hooks;
} faulty;

static sae_status faulty_forward(void *user, const int32_t *tokens, int64_t n_seq,
                                 int64_t seq_len, float *logits, sae_hook_fn hook,
                                 void *hook_user)
{
    faulty *f = user;
    if (++f->calls == f->fail_at)
        return SAE_EIO;
    sae_status s = f->inner.forward(f->inner.user, tokens, n_seq, seq_len, logits,
                                    f->no_hooks ? NULL : hook, hook_user);
    if (s == SAE_OK && logits && f->calls == f->nan_at)
        logits[(n_seq * seq_len / 2) * VOCAB + 7] = NAN;
    return s;
}

static sae_host faulty_host(faulty *f, const sae_host *inner, int fail_at, bool no_hooks)
{
    *f = (faulty){*inner, 0, fail_at, 0, no_hooks};
    sae_host h = *inner;
    h.forward = faulty_forward;
    h.backward = NULL;
    h.user = f;
    return h;
}

/* Files in the scratch directory whose name starts with `prefix`. */
static int count_files(const char *prefix)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tmp_path(""));
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* Remove the temporary files `prefix`.tmp.* that a crashed earlier run may have left. */
static void remove_stale_temps(const char *prefix)
{
    char dir[2048], tmp[4096];
    snprintf(dir, sizeof dir, "%s", tmp_path(""));
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp.")) {
            snprintf(tmp, sizeof tmp, "%s/%s", dir, e->d_name);
            remove(tmp);
        }
    closedir(d);
}

/* A host failing mid-capture (after the header and a first batch were written) leaves the old
 * file and no temporary one. */
static void test_capture_atomic(void **state)
{
    fixture *fx = *state;
    remove_stale_temps("atomic.safetensors");
    const char *path = tmp_path("atomic.safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("old contents", f);
    fclose(f);
    const char *names[] = {"x"};
    const int32_t hooks[] = {RESID_POST_2};
    sae_capture_options o = SAE_CAPTURE_OPTIONS_INIT;
    o.seqs_per_batch = 1, o.allocator = test_allocator();
    faulty fh;
    sae_host h = faulty_host(&fh, &fx->host, 3, false);
    expect_error(sae_host_capture(path, &h, fx->tokens, NS, TL, 1, names, 0, hooks, &o), SAE_EIO,
                 "forward");
    assert_int_equal(fh.calls, 3);
    h = faulty_host(&fh, &fx->host, 0, true);
    expect_error(sae_host_capture(path, &h, fx->tokens, NS, TL, 1, names, 0, hooks, &o),
                 SAE_EINVAL, "did not reach hook point resid_post.2");
    char buf[32] = {0};
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof buf - 1, f), strlen("old contents"));
    fclose(f);
    assert_string_equal(buf, "old contents");
    assert_int_equal(count_files("atomic.safetensors"), 1);
}

/* ---- loss recovered -------------------------------------------------------------------------- */

/* The naive computation: forward passes with hooks written here, CE from sae_logits_ce, KL in
 * double from the two logit arrays. */
typedef struct naive_hook {
    int mode; /* 0 clean, 1 splice, 2 zero, 3 mean */
    int skip;
    sae_patch *splice;
    const float *mu;
} naive_hook;

static sae_status naive_intervene(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld)
{
    naive_hook *h = user;
    if (hook_id != RESID_POST_2 || h->mode == 0)
        return SAE_OK;
    for (int64_t r = 0; r < n; r++) {
        if (h->skip && r % TL == 0)
            continue;
        if (h->mode == 1)
            assert_sae_ok(sae_patch_apply(h->splice, x + r * ld, 1, ld));
        for (int i = 0; i < DM; i++)
            if (h->mode >= 2)
                x[r * ld + i] = h->mode == 2 ? 0.0f : h->mu[i];
    }
    return SAE_OK;
}

static double naive_kl(const float *p_logits, const float *q_logits)
{
    double total = 0;
    for (int r = 0; r < NS * TL; r++) {
        if (r % TL == TL - 1)
            continue;
        const float *z = p_logits + r * VOCAB, *q = q_logits + r * VOCAB;
        double sz = 0, sq = 0;
        for (int v = 0; v < VOCAB; v++)
            sz += exp((double)z[v]), sq += exp((double)q[v]);
        for (int v = 0; v < VOCAB; v++) {
            double lp = z[v] - log(sz), lq = q[v] - log(sq);
            total += exp(lp) * (lp - lq);
        }
    }
    return total / (NS * (TL - 1));
}

static void naive_loss(fixture *fx, const sae_dict *dict, int skip, double ce[4], double kl[4])
{
    float *acts = direct_activations(fx, RESID_POST_2);
    float mu[DM];
    for (int i = 0; i < DM; i++) {
        double sum = 0;
        for (int r = 0; r < NS * TL; r++)
            sum += skip && r % TL == 0 ? 0.0 : acts[r * DM + i];
        mu[i] = (float)(sum / (NS * (TL - skip)));
    }
    test_free(acts);
    sae_patch *splice = NULL;
    sae_patch_options po = SAE_PATCH_OPTIONS_INIT;
    po.allocator = test_allocator();
    assert_sae_ok(sae_patch_create_splice(&splice, dict, 0, &po));
    int32_t targets[NS * TL];
    for (int r = 0; r < NS * TL; r++)
        targets[r] = r % TL == TL - 1 ? -1 : fx->tokens[r + 1];
    float *clean = test_malloc(sizeof(float) * NS * TL * VOCAB);
    float *logits = test_malloc(sizeof(float) * NS * TL * VOCAB);
    for (int mode = 0; mode < 4; mode++) {
        naive_hook h = {mode, skip, splice, mu};
        assert_sae_ok(sae_host_forward(&fx->host, fx->tokens, NS, TL, mode ? logits : clean,
                                       naive_intervene, &h));
        float c = 0;
        assert_sae_ok(sae_logits_ce(&c, NULL, mode ? logits : clean, targets, NS * TL, VOCAB));
        ce[mode] = c;
        kl[mode] = mode ? naive_kl(clean, logits) : 0.0;
    }
    sae_patch_free(splice);
    test_free(clean), test_free(logits);
}

static void assert_near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol * (1 + fabs(want))))
        fail_msg("%s: got %.9g, want %.9g", what, got, want);
}

static void test_loss_recovered_naive(void **state)
{
    fixture *fx = *state;
    sae_dict *dict = random_dict(DM, 11);
    for (int skip = 0; skip <= 1; skip++) {
        double ce[4], kl[4];
        naive_loss(fx, dict, skip, ce, kl);
        sae_loss_recovered_options o = SAE_LOSS_RECOVERED_OPTIONS_INIT;
        o.n_threads = 1, o.seqs_per_batch = 2, o.skip_bos = skip, o.allocator = test_allocator();
        sae_loss_recovered r = SAE_LOSS_RECOVERED_INIT;
        assert_sae_ok(sae_dict_loss_recovered(&r, &fx->host, RESID_POST_2, dict, fx->tokens, NS,
                                              TL, &o));
        assert_int_equal(r.n_tokens, NS * (TL - 1));
        assert_near(r.ce_clean, ce[0], 1e-6, "ce_clean");
        assert_near(r.ce_spliced, ce[1], 1e-6, "ce_spliced");
        assert_near(r.ce_zero, ce[2], 1e-6, "ce_zero");
        assert_near(r.ce_mean, ce[3], 1e-6, "ce_mean");
        assert_near(r.kl_spliced, kl[1], 1e-6, "kl_spliced");
        assert_near(r.kl_zero, kl[2], 1e-6, "kl_zero");
        assert_near(r.kl_mean, kl[3], 1e-6, "kl_mean");
        assert_near(r.score_zero, (ce[2] - ce[1]) / (ce[2] - ce[0]), 1e-5, "score_zero");
        assert_near(r.score_mean, (ce[3] - ce[1]) / (ce[3] - ce[0]), 1e-5, "score_mean");
        assert_near(r.kl_score_zero, (kl[2] - kl[1]) / kl[2], 1e-5, "kl_score_zero");
        assert_near(r.kl_score_mean, (kl[3] - kl[1]) / kl[3], 1e-5, "kl_score_mean");
        /* a random dictionary hurts: something between the clean model and the ablation */
        assert_true(r.ce_spliced > r.ce_clean && r.kl_spliced > 0);
    }
    sae_dict_free(dict);
}

/* A dictionary that reconstructs exactly: the spliced run is the clean run, scores are 1. */
static void test_loss_recovered_identity(void **state)
{
    fixture *fx = *state;
    sae_dict *dict = identity_dict();
    sae_loss_recovered_options o = SAE_LOSS_RECOVERED_OPTIONS_INIT;
    o.allocator = test_allocator();
    sae_loss_recovered r = SAE_LOSS_RECOVERED_INIT;
    assert_sae_ok(sae_dict_loss_recovered(&r, &fx->host, RESID_POST_2, dict, fx->tokens, NS, TL,
                                          &o));
    assert_true(r.ce_spliced == r.ce_clean);
    assert_true(r.kl_spliced == 0.0);
    assert_true(r.score_zero == 1.0 && r.score_mean == 1.0);
    assert_true(r.kl_score_zero == 1.0 && r.kl_score_mean == 1.0);
    assert_true(r.ce_zero > r.ce_clean && r.ce_mean > r.ce_clean);
    /* An older caller's shorter result struct gets its fields and no more. */
    struct {
        uint32_t struct_size, reserved;
        int64_t n_tokens;
        double ce_clean;
        double sentinel;
    } old = {offsetof(sae_loss_recovered, ce_spliced), 0, 0, 0, 42.0};
    assert_sae_ok(sae_dict_loss_recovered((sae_loss_recovered *)&old, &fx->host, RESID_POST_2,
                                          dict, fx->tokens, NS, TL, &o));
    assert_true(old.ce_clean == r.ce_clean && old.sentinel == 42.0);
    sae_dict_free(dict);
}

/* ---- bad inputs ------------------------------------------------------------------------------ */

static void test_bad_inputs(void **state)
{
    fixture *fx = *state;
    sae_source *src = NULL;
    sae_dict *dict = random_dict(DM, 3), *narrow = random_dict(32, 4);
    int32_t bad[NS * TL];
    memcpy(bad, fx->tokens, sizeof bad);
    bad[2 * TL + 5] = VOCAB;
    const char *names[] = {"a", "a"};
    const int32_t hooks[] = {RESID_POST_2, 0};
    const char *path = tmp_path("bad.safetensors");
    sae_loss_recovered r = SAE_LOSS_RECOVERED_INIT;

    expect_error(sae_source_from_host(&src, &fx->host, 4 * NL, fx->tokens, NS, TL, 0, 0, NULL),
                 SAE_ERANGE, "hook id 20 is outside [0, 20)");
    expect_error(sae_source_from_host(&src, &fx->host, -1, fx->tokens, NS, TL, 0, 0, NULL),
                 SAE_ERANGE, "hook id -1");
    assert_null(src);
    expect_error(sae_source_from_host(&src, &fx->host, 0, bad, NS, TL, 0, 0, NULL), SAE_ERANGE,
                 "token 5 of sequence 2 is 512, outside [0, 512)");
    expect_error(sae_source_from_host(&src, &fx->host, 0, NULL, NS, TL, 0, 0, NULL), SAE_EINVAL,
                 "tokens");
    expect_error(sae_source_from_host(&src, &fx->host, 0, fx->tokens, NS, 1, 0, 1, NULL),
                 SAE_ESHAPE, "position 0");
    expect_error(sae_source_from_host(&src, &fx->host, 0, fx->tokens, NS, 600, 0, 0, NULL),
                 SAE_ESHAPE, "1 to 512 tokens");
    expect_error(sae_source_from_host(&src, &fx->host, 0, fx->tokens, NS, TL, -1, 0, NULL),
                 SAE_EINVAL, "seqs_per_batch");
    expect_error(sae_source_from_host(&src, &fx->host, 0, fx->tokens, NS, TL, 0, 2, NULL),
                 SAE_EINVAL, "skip_bos is 2");

    /* A host whose pass skips the hooks: the error comes from the first read. */
    faulty fh;
    sae_host h = faulty_host(&fh, &fx->host, 0, true);
    assert_sae_ok(sae_source_from_host(&src, &h, RESID_POST_2, fx->tokens, NS, TL, 0, 0, NULL));
    float x[DM];
    int64_t n = 0;
    expect_error(sae_source_next(src, 1, x, DM, &n), SAE_EINVAL, "did not reach hook point");
    sae_source_free(src);

    expect_error(sae_host_capture(path, &fx->host, fx->tokens, NS, TL, 2, names, 0, hooks, NULL),
                 SAE_EINVAL, "already taken");
    expect_error(sae_host_capture(path, &fx->host, fx->tokens, NS, TL, 1, names, 0,
                                  (int32_t[]){99}, NULL), SAE_ERANGE, "hook id 99");
    expect_error(sae_host_capture(path, &fx->host, bad, NS, TL, 1, names, 0, hooks, NULL),
                 SAE_ERANGE, "token 5 of sequence 2");
    expect_error(sae_host_capture(path, &fx->host, fx->tokens, NS, TL, 0, names, 0, hooks, NULL),
                 SAE_EINVAL, "n_tensors");
    assert_int_equal(count_files("bad.safetensors"), 0);

    expect_error(sae_dict_loss_recovered(&r, &fx->host, RESID_POST_2, narrow, fx->tokens, NS, TL,
                                         NULL), SAE_ESHAPE, "d_in is 32");
    expect_error(sae_dict_loss_recovered(&r, &fx->host, 4 * NL, dict, fx->tokens, NS, TL, NULL),
                 SAE_ERANGE, "hook id 20");
    expect_error(sae_dict_loss_recovered(&r, &fx->host, RESID_POST_2, dict, bad, NS, TL, NULL),
                 SAE_ERANGE, "token 5 of sequence 2 is 512");
    expect_error(sae_dict_loss_recovered(&r, &fx->host, RESID_POST_2, dict, fx->tokens, NS, 1,
                                         NULL), SAE_ESHAPE, "next token");
    expect_error(sae_dict_loss_recovered(&r, &fx->host, RESID_POST_2, NULL, fx->tokens, NS, TL,
                                         NULL), SAE_EINVAL, "dict");
    h = faulty_host(&fh, &fx->host, 0, true);
    expect_error(sae_dict_loss_recovered(&r, &h, RESID_POST_2, dict, fx->tokens, NS, TL, NULL),
                 SAE_EINVAL, "did not reach");
    /* Passes: the mean, then clean, spliced, zero, mean (one batch each). */
    h = faulty_host(&fh, &fx->host, 0, false);
    fh.nan_at = 3;
    expect_error(sae_dict_loss_recovered(&r, &h, RESID_POST_2, dict, fx->tokens, NS, TL, NULL),
                 SAE_ENUMERIC, "logits of the spliced run are not finite (sequence 2");
    sae_loss_recovered unset = {0};
    expect_error(sae_dict_loss_recovered(&unset, &fx->host, RESID_POST_2, dict, fx->tokens, NS,
                                         TL, NULL), SAE_EINVAL, "struct_size");
    assert_int_equal(r.n_tokens, 0); /* nothing written on failure */
    sae_dict_free(dict), sae_dict_free(narrow);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_order),
        cmocka_unit_test(test_source_shuffle_loop),
        cmocka_unit_test(test_source_memory_bounded),
        cmocka_unit_test(test_source_trains),
        cmocka_unit_test(test_capture_file),
        cmocka_unit_test(test_capture_atomic),
        cmocka_unit_test(test_loss_recovered_naive),
        cmocka_unit_test(test_loss_recovered_identity),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
