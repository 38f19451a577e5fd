/* test_patch.c: every patch kind against a naive computation written here with the dense
 * encoder API (f = encode(x), f' = f edited, x' = x + decode(f') - decode(f)), for one token and
 * for many (in blocks of max_tokens), with ld > d_in, over dictionaries whose output is linear in
 * the codes (direct path) and with per-row normalisation (decoder path); composition order; no
 * allocation in apply; bad inputs; the llama.cpp control-vector file read back by a small GGUF
 * reader of its own. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum { D = 24, F = 70, K = 5, LD = D + 3, N = 37, MAXT = 8 };

typedef struct fixture {
    float W_enc[D * F], b_enc[F], W_dec[F * D], b_dec[D], thr[F], bg[F], bm[F], rm[F];
} fixture;

typedef struct dict_case {
    int arch;
    uint32_t flags;
    int norm;
} dict_case;

/* Direct path (linear output), then the per-row normalisations (decoder path). */
static const dict_case CASES[] = {
    {SAE_ARCH_STANDARD, 0, SAE_NORM_NONE},
    {SAE_ARCH_TOPK, SAE_DICT_RESCALE_BY_DECODER_NORM, SAE_NORM_NONE},
    {SAE_ARCH_JUMPRELU, 0, SAE_NORM_SCALE},
    {SAE_ARCH_TOPK, 0, SAE_NORM_LAYER_NORM},
    {SAE_ARCH_GATED, 0, SAE_NORM_CONSTANT_RESCALE},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

static sae_dict *make_dict(fixture *fx, dict_case c, uint64_t seed)
{
    fill_normal(fx->W_enc, D * F, seed, 0.3f);
    fill_normal(fx->W_dec, F * D, seed + 1, 0.3f);
    fill_normal(fx->b_enc, F, seed + 2, 0.2f);
    fill_normal(fx->b_dec, D, seed + 3, 0.2f);
    fill_normal(fx->thr, F, seed + 4, 0.1f);
    fill_normal(fx->bg, F, seed + 5, 0.2f);
    fill_normal(fx->bm, F, seed + 6, 0.2f);
    fill_normal(fx->rm, F, seed + 7, 0.2f);
    for (int j = 0; j < F; j++)
        fx->thr[j] = fabsf(fx->thr[j]);
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = c.arch, cfg.d_in = D, cfg.d_sae = F, cfg.flags = c.flags, cfg.input_norm = c.norm;
    cfg.k = c.arch == SAE_ARCH_TOPK ? K : 0;
    cfg.act_scale = c.norm == SAE_NORM_SCALE ? 1.7f : 0.0f;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = fx->W_enc, w.W_dec = fx->W_dec, w.b_dec = fx->b_dec;
    if (c.arch == SAE_ARCH_GATED)
        w.b_gate = fx->bg, w.b_mag = fx->bm, w.r_mag = fx->rm;
    else
        w.b_enc = fx->b_enc;
    if (c.arch == SAE_ARCH_JUMPRELU)
        w.threshold = fx->thr;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &cfg, &w, test_allocator()));
    return d;
}

static sae_patch_options opts(int64_t max_tokens)
{
    sae_patch_options o = SAE_PATCH_OPTIONS_INIT;
    o.max_tokens = max_tokens, o.n_threads = 2, o.allocator = test_allocator();
    return o;
}

/* Dense codes (n, F) of x (n, ld) through a fresh encoder. */
static void naive_encode(const sae_dict *d, const float *x, int64_t n, int64_t ld, float *f)
{
    sae_encoder *e = NULL;
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.allocator = test_allocator();
    assert_sae_ok(sae_encoder_create(&e, d, &eo));
    assert_sae_ok(sae_encoder_encode(e, n, x, ld, f, F, NULL, 0));
    sae_encoder_free(e);
}

/* The naive feature edit: x (n, ld) += decode(f') - decode(f), f' = f with f'[r, S[a]] =
 * target[r * nS + a]; dense encode and dense decodes (same encoder: the normalisation
 * statistics of x). */
static void naive_edit(const sae_dict *d, float *x, int64_t n, int64_t ld, const int32_t *S,
                       int nS, const float *target)
{
    sae_encoder *e = NULL;
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.allocator = test_allocator();
    assert_sae_ok(sae_encoder_create(&e, d, &eo));
    float *f = test_malloc(sizeof(float) * (size_t)(n * F));
    float *g = test_malloc(sizeof(float) * (size_t)(n * F));
    float *xh = test_malloc(sizeof(float) * (size_t)(n * D));
    float *xg = test_malloc(sizeof(float) * (size_t)(n * D));
    assert_sae_ok(sae_encoder_encode(e, n, x, ld, f, F, NULL, 0));
    memcpy(g, f, sizeof(float) * (size_t)(n * F));
    for (int64_t r = 0; r < n; r++)
        for (int a = 0; a < nS; a++)
            g[r * F + S[a]] = target[r * nS + a];
    assert_sae_ok(sae_encoder_decode(e, n, f, F, xh, D));
    assert_sae_ok(sae_encoder_decode(e, n, g, F, xg, D));
    for (int64_t r = 0; r < n; r++)
        for (int i = 0; i < D; i++)
            x[r * ld + i] += xg[r * D + i] - xh[r * D + i];
    test_free(f), test_free(g), test_free(xh), test_free(xg);
    sae_encoder_free(e);
}

static void assert_rows_close(const float *got, const float *want, int64_t n, int64_t ld,
                              const char *what)
{
    for (int64_t r = 0; r < n; r++)
        assert_close_f32(got + r * ld, want + r * ld, D, 1e-4, 1e-4, what);
}

/* The padding columns beyond d_in are never touched. */
static void assert_padding(const float *x, const float *x0, int64_t n)
{
    for (int64_t r = 0; r < n; r++)
        for (int i = D; i < LD; i++)
            assert_true(x[r * LD + i] == x0[r * LD + i]);
}

/* S: three features active in row 0 and two inactive ones. */
static int pick_features(const sae_dict *d, const float *x, int32_t *S)
{
    float f[F];
    naive_encode(d, x, 1, LD, f);
    int n = 0, off = 0;
    for (int j = 0; j < F && n < 3; j++)
        if (f[j] != 0.0f)
            S[n++] = j;
    for (int j = F - 1; j >= 0 && off < 2; j--)
        if (f[j] == 0.0f)
            S[n++] = j, off++;
    assert_true(n >= 3);
    return n;
}

/* Apply `p` to a copy of x (n rows) and compare with `want` (already computed). */
static void check_apply(sae_patch *p, const float *x0, int64_t n, const float *want,
                        const char *what)
{
    float x[N * LD];
    memcpy(x, x0, sizeof(float) * (size_t)(n * LD));
    assert_sae_ok(sae_patch_apply(p, x, n, LD));
    assert_rows_close(x, want, n, LD, what);
    assert_padding(x, x0, n);
}

/* Every feature edit (zero, mean, resample, clamp, edit) for n = 1 and n = N (blocks of MAXT),
 * each dictionary case. */
static void test_feature_edits(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    for (int c = 0; c < N_CASES; c++) {
        sae_dict *d = make_dict(fx, CASES[c], 40 + (uint64_t)c);
        float x0[N * LD], want[N * LD], codes[N * F], mean[F], pool[5 * (F + 1)];
        float target[N * 8];
        fill_normal(x0, N * LD, 7 + (uint64_t)c, 1.0f);
        int32_t S[5];
        int nS = pick_features(d, x0, S);
        naive_encode(d, x0, N, LD, codes);
        for (int j = 0; j < F; j++) {
            mean[j] = 0;
            for (int r = 0; r < N; r++)
                mean[j] += codes[r * F + j] / N;
        }
        fill_normal(pool, 5 * (F + 1), 3, 1.0f);
        const float *source = codes + 11 * F; /* the codes of another token */
        sae_patch_options o = opts(MAXT);
        for (int64_t n = 1; n <= N; n += N - 1) {
            sae_patch *p = NULL;
            /* zero */
            for (int64_t i = 0; i < n * nS; i++)
                target[i] = 0;
            memcpy(want, x0, sizeof want);
            naive_edit(d, want, n, LD, S, nS, target);
            assert_sae_ok(sae_patch_create_ablate_zero(&p, d, S, nS, &o));
            assert_int_equal(sae_patch_kind(p), SAE_PATCH_ABLATE);
            check_apply(p, x0, n, want, "ablate zero");
            sae_patch_free(p);
            /* mean */
            for (int64_t r = 0; r < n; r++)
                for (int a = 0; a < nS; a++)
                    target[r * nS + a] = mean[S[a]];
            memcpy(want, x0, sizeof want);
            naive_edit(d, want, n, LD, S, nS, target);
            assert_sae_ok(sae_patch_create_ablate_mean(&p, d, S, nS, mean, F, &o));
            check_apply(p, x0, n, want, "ablate mean");
            sae_patch_free(p);
            /* resample: token r takes pool row sae_rng_below(rng(seed 9, stream 0), 5) */
            sae_rng rng;
            sae_rng_init(&rng, 9, 0);
            for (int64_t r = 0; r < n; r++) {
                uint64_t row = sae_rng_below(&rng, 5);
                for (int a = 0; a < nS; a++)
                    target[r * nS + a] = pool[row * (F + 1) + (uint64_t)S[a]];
            }
            memcpy(want, x0, sizeof want);
            naive_edit(d, want, n, LD, S, nS, target);
            assert_sae_ok(sae_patch_create_ablate_resample(&p, d, S, nS, pool, 5, F, F + 1, 9, &o));
            check_apply(p, x0, n, want, "ablate resample");
            sae_patch_free(p);
            /* clamp S[0] to 2.5 */
            for (int64_t r = 0; r < n; r++)
                target[r] = 2.5f;
            memcpy(want, x0, sizeof want);
            naive_edit(d, want, n, LD, S, 1, target);
            assert_sae_ok(sae_patch_create_clamp(&p, d, S[0], 2.5f, &o));
            assert_int_equal(sae_patch_kind(p), SAE_PATCH_CLAMP);
            check_apply(p, x0, n, want, "clamp");
            sae_patch_free(p);
            /* edit: the codes of S from another token's codes */
            for (int64_t r = 0; r < n; r++)
                for (int a = 0; a < nS; a++)
                    target[r * nS + a] = source[S[a]];
            memcpy(want, x0, sizeof want);
            naive_edit(d, want, n, LD, S, nS, target);
            assert_sae_ok(sae_patch_create_edit(&p, d, S, nS, source, F, &o));
            check_apply(p, x0, n, want, "edit");
            sae_patch_free(p);
        }
        sae_dict_free(d);
    }
    test_free(fx);
}

/* Editing features to the values they already have leaves x bit-identical (the error term is
 * kept exactly); editing every feature to another token's codes moves x by x_hat(b) - x_hat(a)
 * on a linear dictionary. */
static void test_edit_keeps_error_exactly(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    sae_dict *d = make_dict(fx, CASES[0], 40);
    float x[2 * LD], x0[2 * LD], f[2 * F], xh[2 * D];
    fill_normal(x0, 2 * LD, 5, 1.0f);
    naive_encode(d, x0, 2, LD, f);
    int32_t all[F];
    for (int j = 0; j < F; j++)
        all[j] = j;
    sae_patch_options o = opts(4);
    sae_patch *p = NULL;
    assert_sae_ok(sae_patch_create_edit(&p, d, all, F, f, F, &o));
    memcpy(x, x0, sizeof x);
    assert_sae_ok(sae_patch_apply(p, x, 1, LD));
    assert_memory_equal(x, x0, sizeof(float) * LD);
    sae_patch_free(p);
    /* row 0 gets the codes of row 1: x0 + x_hat(1) - x_hat(0) */
    assert_sae_ok(sae_patch_create_edit(&p, d, all, F, f + F, F, &o));
    sae_encoder *e = NULL;
    assert_sae_ok(sae_encoder_create(&e, d, NULL));
    assert_sae_ok(sae_encoder_reconstruct(e, 2, x0, LD, xh, D, NULL, 0));
    float want[LD];
    for (int i = 0; i < D; i++)
        want[i] = x0[i] + xh[D + i] - xh[i];
    memcpy(x, x0, sizeof x);
    assert_sae_ok(sae_patch_apply(p, x, 1, LD));
    assert_close_f32(x, want, D, 1e-4, 1e-4, "full edit");
    sae_encoder_free(e);
    sae_patch_free(p);
    sae_dict_free(d);
    test_free(fx);
}

static void test_splice(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    for (int c = 0; c < N_CASES; c++) {
        sae_dict *d = make_dict(fx, CASES[c], 60 + (uint64_t)c);
        float x0[N * LD], want[N * LD], x[N * LD];
        fill_normal(x0, N * LD, 8, 1.0f);
        memcpy(want, x0, sizeof want);
        sae_encoder *e = NULL;
        assert_sae_ok(sae_encoder_create(&e, d, NULL));
        float f[N * F];
        assert_sae_ok(sae_encoder_encode(e, N, x0, LD, f, F, NULL, 0));
        assert_sae_ok(sae_encoder_decode(e, N, f, F, want, LD));
        sae_encoder_free(e);
        sae_patch_options o = opts(MAXT);
        sae_patch *p = NULL, *q = NULL;
        assert_sae_ok(sae_patch_create_splice(&p, d, 0, &o));
        assert_sae_ok(sae_patch_create_splice(&q, d, 1, &o));
        check_apply(p, x0, 1, want, "splice n=1");
        check_apply(p, x0, N, want, "splice");
        memcpy(x, x0, sizeof x);
        assert_sae_ok(sae_patch_apply(q, x, N, LD));
        assert_memory_equal(x, x0, sizeof x);
        sae_patch_free(p);
        sae_patch_free(q);
        sae_dict_free(d);
    }
    test_free(fx);
}

static void test_steer(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    sae_dict *d = make_dict(fx, CASES[3], 70);
    float x0[N * LD], want[N * LD], dir[D];
    fill_normal(x0, N * LD, 9, 1.0f);
    sae_patch_options o = opts(MAXT);
    for (int normalize = 0; normalize <= 1; normalize++) {
        double norm = 0;
        for (int i = 0; i < D; i++)
            norm += (double)fx->W_dec[13 * D + i] * fx->W_dec[13 * D + i];
        double scale = normalize ? -3.0 / sqrt(norm) : -3.0;
        memcpy(want, x0, sizeof want);
        for (int r = 0; r < N; r++)
            for (int i = 0; i < D; i++)
                want[r * LD + i] = (float)(x0[r * LD + i] + scale * fx->W_dec[13 * D + i]);
        sae_patch *p = NULL;
        assert_sae_ok(sae_patch_create_steer(&p, d, 13, -3.0f, normalize, &o));
        check_apply(p, x0, 1, want, "steer n=1");
        check_apply(p, x0, N, want, "steer");
        sae_patch_free(p);
        assert_sae_ok(sae_steering_direction(dir, D, d, 13, -3.0f, normalize));
        for (int i = 0; i < D; i++)
            assert_float_equal(dir[i], scale * fx->W_dec[13 * D + i], 1e-5);
    }
    sae_dict_free(d);
    test_free(fx);
}

/* Activations and codes recorded across calls equal the inputs and the sparse encoder's codes;
 * a call that does not fit appends nothing; clear empties. */
static void test_record(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    sae_dict *d = make_dict(fx, CASES[1], 80);
    float x0[N * LD], x[N * LD];
    fill_normal(x0, N * LD, 10, 1.0f);
    memcpy(x, x0, sizeof x);
    sae_patch_options o = opts(MAXT);
    sae_patch *p = NULL;
    assert_sae_ok(sae_patch_create_record(&p, d, SAE_RECORD_ACTIVATIONS | SAE_RECORD_CODES,
                                          N + 3, 0, &o));
    assert_sae_ok(sae_patch_apply(p, x, 1, LD));       /* one decode step */
    assert_sae_ok(sae_patch_apply(p, x + LD, N - 1, LD)); /* then a prompt, in blocks */
    assert_memory_equal(x, x0, sizeof x);
    assert_int_equal(sae_patch_apply(p, x, 4, LD), SAE_ERANGE); /* 37 + 4 > 40 */
    sae_patch_record rec = SAE_PATCH_RECORD_INIT;
    assert_sae_ok(sae_patch_get_record(p, &rec));
    assert_int_equal(rec.n_tokens, N);
    assert_int_equal(rec.d_in, D);
    for (int r = 0; r < N; r++)
        assert_memory_equal(rec.activations + r * D, x0 + r * LD, sizeof(float) * D);
    sae_encoder *e = NULL;
    sae_codes *codes = NULL;
    assert_sae_ok(sae_encoder_create(&e, d, NULL));
    assert_sae_ok(sae_codes_create(&codes, test_allocator()));
    assert_sae_ok(sae_encoder_encode_sparse(e, N, x0, LD, codes));
    assert_int_equal(rec.nnz, sae_codes_nnz(codes));
    assert_memory_equal(rec.offsets, sae_codes_offsets(codes), sizeof(int64_t) * (N + 1));
    assert_memory_equal(rec.indices, sae_codes_indices(codes), sizeof(int32_t) * (size_t)rec.nnz);
    assert_close_f32(rec.values, sae_codes_values(codes), rec.nnz, 1e-5, 1e-5, "recorded codes");
    assert_sae_ok(sae_patch_clear_record(p));
    assert_sae_ok(sae_patch_get_record(p, &rec));
    assert_int_equal(rec.n_tokens, 0);
    assert_int_equal(rec.nnz, 0);
    sae_patch_free(p);
    /* Out of non-zeros in the second block of a call: the whole call is undone. */
    assert_sae_ok(sae_patch_create_record(&p, d, SAE_RECORD_CODES, N, 3 * K, &o));
    assert_sae_ok(sae_patch_apply(p, x, 2, LD));
    assert_int_equal(sae_patch_apply(p, x, MAXT + 1, LD), SAE_ERANGE);
    assert_sae_ok(sae_patch_get_record(p, &rec));
    assert_int_equal(rec.n_tokens, 2);
    assert_int_equal(rec.nnz, 2 * K);
    assert_null(rec.activations);
    sae_patch_free(p);
    sae_codes_free(codes);
    sae_encoder_free(e);
    sae_dict_free(d);
    test_free(fx);
}

/* Patches apply in list order: steer-then-clamp differs from clamp-then-steer and each equals
 * the sequential applies; a record first sees the clean rows, last the patched ones. */
static void test_composition(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    sae_dict *d = make_dict(fx, CASES[0], 90);
    float x0[N * LD], a[N * LD], b[N * LD], seq[N * LD];
    fill_normal(x0, N * LD, 11, 1.0f);
    sae_patch_options o = opts(MAXT);
    sae_patch *steer = NULL, *clamp = NULL, *first = NULL, *last = NULL;
    assert_sae_ok(sae_patch_create_steer(&steer, d, 5, 4.0f, 0, &o));
    assert_sae_ok(sae_patch_create_clamp(&clamp, d, 5, 0.0f, &o));
    assert_sae_ok(sae_patch_create_record(&first, d, SAE_RECORD_ACTIVATIONS, N, 0, &o));
    assert_sae_ok(sae_patch_create_record(&last, d, SAE_RECORD_ACTIVATIONS, N, 0, &o));
    sae_patch *order1[] = {first, steer, clamp, last}, *order2[] = {clamp, steer};
    memcpy(a, x0, sizeof a);
    assert_sae_ok(sae_patch_apply_list(order1, 4, a, N, LD));
    memcpy(b, x0, sizeof b);
    assert_sae_ok(sae_patch_apply_list(order2, 2, b, N, LD));
    memcpy(seq, x0, sizeof seq);
    assert_sae_ok(sae_patch_apply(steer, seq, N, LD));
    assert_sae_ok(sae_patch_apply(clamp, seq, N, LD));
    assert_memory_equal(a, seq, sizeof a);
    memcpy(seq, x0, sizeof seq);
    assert_sae_ok(sae_patch_apply(clamp, seq, N, LD));
    assert_sae_ok(sae_patch_apply(steer, seq, N, LD));
    assert_memory_equal(b, seq, sizeof b);
    double diff = 0;
    for (int i = 0; i < N * LD; i++)
        diff += fabs((double)a[i] - b[i]);
    assert_true(diff > 1.0);
    sae_patch_record r1 = SAE_PATCH_RECORD_INIT, r2 = SAE_PATCH_RECORD_INIT;
    assert_sae_ok(sae_patch_get_record(first, &r1));
    assert_sae_ok(sae_patch_get_record(last, &r2));
    for (int r = 0; r < N; r++) {
        assert_memory_equal(r1.activations + r * D, x0 + r * LD, sizeof(float) * D);
        assert_memory_equal(r2.activations + r * D, a + r * LD, sizeof(float) * D);
    }
    sae_patch_free(steer), sae_patch_free(clamp), sae_patch_free(first), sae_patch_free(last);
    sae_dict_free(d);
    test_free(fx);
}

/* Resampling draws one pool row per token in order, whatever the block size. */
static void test_resample_independent_of_blocks(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    sae_dict *d = make_dict(fx, CASES[3], 95);
    float x0[N * LD], a[N * LD], b[N * LD], pool[7 * F];
    fill_normal(x0, N * LD, 12, 1.0f);
    fill_normal(pool, 7 * F, 13, 1.0f);
    int32_t S[] = {1, 2, 3, 40, 69};
    sae_patch_options o1 = opts(3), o2 = opts(64);
    sae_patch *p = NULL, *q = NULL;
    assert_sae_ok(sae_patch_create_ablate_resample(&p, d, S, 5, pool, 7, F, F, 77, &o1));
    assert_sae_ok(sae_patch_create_ablate_resample(&q, d, S, 5, pool, 7, F, F, 77, &o2));
    memcpy(a, x0, sizeof a);
    memcpy(b, x0, sizeof b);
    assert_sae_ok(sae_patch_apply(p, a, 5, LD));
    assert_sae_ok(sae_patch_apply(p, a + 5 * LD, N - 5, LD));
    assert_sae_ok(sae_patch_apply(q, b, N, LD));
    assert_rows_close(a, b, N, LD, "resample blocks");
    sae_patch_free(p), sae_patch_free(q);
    sae_dict_free(d);
    test_free(fx);
}

/* An allocator that counts allocations: applies of sized patches allocate nothing. */
static int alloc_count;
static void *counting_alloc(size_t size, size_t align, void *user)
{
    alloc_count++;
    return test_allocator()->alloc(size, align, user);
}
static void counting_free(void *p, void *user) { test_allocator()->free(p, user); }

static void test_apply_allocates_nothing(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    sae_allocator counting = {counting_alloc, counting_free, NULL};
    for (int c = 0; c < N_CASES; c++) {
        sae_dict *d = make_dict(fx, CASES[c], 100 + (uint64_t)c);
        sae_patch_options o = opts(MAXT);
        o.allocator = &counting;
        float x[N * LD], mean[F] = {0}, pool[3 * F];
        fill_normal(x, N * LD, 14, 1.0f);
        fill_normal(pool, 3 * F, 15, 1.0f);
        int32_t S[] = {0, 7, 33};
        sae_patch *p[9] = {NULL};
        assert_sae_ok(sae_patch_create_record(&p[0], d, SAE_RECORD_ACTIVATIONS | SAE_RECORD_CODES,
                                              4 * N * MAXT, 0, &o));
        assert_sae_ok(sae_patch_create_splice(&p[1], d, 0, &o));
        assert_sae_ok(sae_patch_create_splice(&p[2], d, 1, &o));
        assert_sae_ok(sae_patch_create_ablate_zero(&p[3], d, S, 3, &o));
        assert_sae_ok(sae_patch_create_ablate_mean(&p[4], d, S, 3, mean, F, &o));
        assert_sae_ok(sae_patch_create_ablate_resample(&p[5], d, S, 3, pool, 3, F, F, 1, &o));
        assert_sae_ok(sae_patch_create_clamp(&p[6], d, 7, 1.0f, &o));
        assert_sae_ok(sae_patch_create_steer(&p[7], d, 7, 1.0f, 1, &o));
        assert_sae_ok(sae_patch_create_edit(&p[8], d, S, 3, pool, F, &o));
        int before = alloc_count;
        for (int64_t n = 1; n <= N; n += n < MAXT ? 1 : N - MAXT)
            assert_sae_ok(sae_patch_apply_list(p, 9, x, n, LD));
        assert_int_equal(alloc_count, before);
        for (int i = 0; i < 9; i++)
            sae_patch_free(p[i]);
        sae_dict_free(d);
    }
    test_free(fx);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    fixture *fx = test_malloc(sizeof *fx);
    sae_dict *d = make_dict(fx, CASES[0], 110);
    sae_dict *d2 = make_dict(fx, CASES[0], 111); /* same d_in */
    sae_patch_options o = opts(MAXT);
    sae_patch *p = NULL;
    float x[2 * LD], x0[2 * LD], row[F + 1] = {0};
    fill_normal(x0, 2 * LD, 16, 1.0f);
    int32_t S[] = {3, 4}, dup[] = {3, 3}, out_of_range[] = {3, F};
    assert_int_equal(sae_patch_create_steer(&p, d, 1, NAN, 0, &o), SAE_ENUMERIC);
    assert_null(p);
    assert_int_equal(sae_patch_create_steer(&p, d, 1, INFINITY, 0, &o), SAE_ENUMERIC);
    assert_int_equal(sae_patch_create_steer(&p, d, F, 1.0f, 0, &o), SAE_ERANGE);
    assert_int_equal(sae_patch_create_steer(&p, d, -1, 1.0f, 0, &o), SAE_ERANGE);
    assert_int_equal(sae_patch_create_clamp(&p, d, F, 1.0f, &o), SAE_ERANGE);
    assert_int_equal(sae_patch_create_clamp(&p, d, 2, NAN, &o), SAE_ENUMERIC);
    assert_int_equal(sae_patch_create_ablate_zero(&p, d, out_of_range, 2, &o), SAE_ERANGE);
    assert_int_equal(sae_patch_create_ablate_zero(&p, d, dup, 2, &o), SAE_EINVAL);
    assert_int_equal(sae_patch_create_ablate_zero(&p, d, S, 0, &o), SAE_EINVAL);
    assert_int_equal(sae_patch_create_ablate_zero(&p, d, NULL, 2, &o), SAE_EINVAL);
    assert_int_equal(sae_patch_create_ablate_mean(&p, d, S, 2, row, F + 1, &o), SAE_ESHAPE);
    assert_int_equal(sae_patch_create_edit(&p, d, S, 2, row, F - 1, &o), SAE_ESHAPE);
    assert_int_equal(sae_patch_create_ablate_resample(&p, d, S, 2, row, 1, F + 1, F + 1, 0, &o),
                     SAE_ESHAPE);
    assert_int_equal(sae_patch_create_ablate_resample(&p, d, S, 2, row, 0, F, F, 0, &o),
                     SAE_EINVAL);
    row[4] = NAN;
    assert_int_equal(sae_patch_create_edit(&p, d, S, 2, row, F, &o), SAE_ENUMERIC);
    row[4] = 0;
    assert_int_equal(sae_patch_create_record(&p, d, 0, 4, 0, &o), SAE_EINVAL);
    assert_int_equal(sae_patch_create_record(&p, d, 8, 4, 0, &o), SAE_EINVAL);
    assert_int_equal(sae_patch_create_record(&p, d, SAE_RECORD_CODES, 0, 0, &o), SAE_EINVAL);
    assert_int_equal(sae_patch_create_splice(&p, NULL, 0, &o), SAE_EINVAL);
    assert_int_equal(sae_patch_create_record(&p, d, SAE_RECORD_ACTIVATIONS, INT64_MAX / 2, 0, &o),
                     SAE_EINVAL);
    sae_patch_options bad = opts(-1), huge = opts(INT64_MAX / 2);
    assert_int_equal(sae_patch_create_splice(&p, d, 0, &bad), SAE_EINVAL);
    assert_int_equal(sae_patch_create_splice(&p, d, 0, &huge), SAE_EINVAL);
    assert_null(p);

    /* Apply: wrong leading dimension (x of another width), NULL, negative n; x untouched. */
    sae_patch *q = NULL, *r = NULL;
    assert_sae_ok(sae_patch_create_ablate_zero(&p, d, S, 2, &o));
    assert_sae_ok(sae_patch_create_steer(&q, d2, 1, 1.0f, 0, &o));
    memcpy(x, x0, sizeof x);
    assert_int_equal(sae_patch_apply(p, x, 2, D - 1), SAE_ESHAPE);
    assert_int_equal(sae_patch_apply(p, NULL, 2, LD), SAE_EINVAL);
    assert_int_equal(sae_patch_apply(p, x, -1, LD), SAE_EINVAL);
    assert_int_equal(sae_patch_apply(NULL, x, 1, LD), SAE_EINVAL);
    assert_sae_ok(sae_patch_apply(p, x, 0, LD));
    assert_memory_equal(x, x0, sizeof x);
    assert_int_equal(sae_patch_get_record(p, &(sae_patch_record)SAE_PATCH_RECORD_INIT),
                     SAE_EINVAL);
    assert_int_equal(sae_patch_clear_record(p), SAE_EINVAL);
    assert_int_equal(sae_patch_kind(NULL), -1);
    /* A list with patches of different widths is refused before any is applied. */
    fixture *fx3 = test_malloc(sizeof *fx3);
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = SAE_ARCH_STANDARD, cfg.d_in = D - 1, cfg.d_sae = F;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    fill_normal(fx3->W_enc, (D - 1) * F, 1, 0.3f);
    fill_normal(fx3->W_dec, F * (D - 1), 2, 0.3f);
    w.W_enc = fx3->W_enc, w.W_dec = fx3->W_dec;
    sae_dict *narrow = NULL;
    assert_sae_ok(sae_dict_create(&narrow, &cfg, &w, test_allocator()));
    assert_sae_ok(sae_patch_create_steer(&r, narrow, 0, 1.0f, 0, &o));
    sae_patch *list[] = {q, r}, *with_null[] = {q, NULL};
    assert_int_equal(sae_patch_apply_list(list, 2, x, 2, LD), SAE_ESHAPE);
    assert_int_equal(sae_patch_apply_list(with_null, 2, x, 2, LD), SAE_EINVAL);
    assert_memory_equal(x, x0, sizeof x);
    float dir[D];
    assert_int_equal(sae_steering_direction(dir, D + 1, d, 0, 1.0f, 0), SAE_ESHAPE);
    sae_patch_free(p), sae_patch_free(q), sae_patch_free(r);
    sae_dict_free(narrow);
    test_free(fx3);
    sae_dict_free(d2);
    sae_dict_free(d);
    test_free(fx);
}

/* ---- a GGUF reader of its own, for the control-vector file ---------------------------------- */

typedef struct reader {
    const unsigned char *p;
    size_t n, at;
} reader;

static uint64_t rd(reader *r, int bytes)
{
    assert_true(r->at + (size_t)bytes <= r->n);
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[r->at + (size_t)i] << (8 * i);
    r->at += (size_t)bytes;
    return v;
}

/* A GGUF string into buf (NUL-terminated). */
static void rd_str(reader *r, char *buf, size_t size)
{
    uint64_t len = rd(r, 8);
    assert_true(len < size && r->at + len <= r->n);
    memcpy(buf, r->p + r->at, (size_t)len);
    buf[len] = '\0';
    r->at += (size_t)len;
}

static unsigned char *read_file_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = test_malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static void test_control_vector_gguf(void **state)
{
    (void)state;
    enum { DD = 13, NL = 3, LDD = 16 }; /* 52 bytes per direction: padding to 64 */
    float dirs[NL * LDD];
    fill_normal(dirs, NL * LDD, 17, 1.0f);
    int32_t layers[NL] = {4, 1, 7};
    const char *path = tmp_path("steer.gguf");
    remove(path);
    assert_sae_ok(sae_steering_export_gguf(path, "llama", DD, NL, layers, dirs, LDD));
    size_t n = 0;
    unsigned char *buf = read_file_bytes(path, &n);
    reader r = {buf, n, 0};
    assert_memory_equal(buf, "GGUF", 4);
    r.at = 4;
    assert_int_equal(rd(&r, 4), 3);
    uint64_t n_tensors = rd(&r, 8), n_kv = rd(&r, 8);
    assert_int_equal(n_tensors, NL);
    char key[64], sval[64];
    int seen = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        rd_str(&r, key, sizeof key);
        uint32_t type = (uint32_t)rd(&r, 4);
        if (type == 8) {
            rd_str(&r, sval, sizeof sval);
            if (!strcmp(key, "general.architecture"))
                assert_string_equal(sval, "controlvector"), seen |= 1;
            if (!strcmp(key, "controlvector.model_hint"))
                assert_string_equal(sval, "llama"), seen |= 2;
        } else {
            assert_int_equal(type, 5); /* INT32 */
            assert_string_equal(key, "controlvector.layer_count");
            assert_int_equal((int32_t)rd(&r, 4), NL);
            seen |= 4;
        }
    }
    assert_int_equal(seen, 7);
    char names[NL][32];
    uint64_t offsets[NL];
    for (int t = 0; t < NL; t++) {
        rd_str(&r, names[t], sizeof names[t]);
        assert_int_equal(rd(&r, 4), 1);      /* n_dims */
        assert_int_equal(rd(&r, 8), DD);     /* ne[0] */
        assert_int_equal(rd(&r, 4), 0);      /* GGML_TYPE_F32 */
        offsets[t] = rd(&r, 8);
        assert_int_equal(offsets[t] % 32, 0);
    }
    size_t data = (r.at + 31) / 32 * 32;
    for (int t = 0; t < NL; t++) {
        char want[32];
        snprintf(want, sizeof want, "direction.%d", layers[t]);
        assert_string_equal(names[t], want);
        assert_true(data + offsets[t] + DD * 4 <= n);
        for (int i = 0; i < DD; i++) {
            reader v = {buf, n, data + (size_t)offsets[t] + 4 * (size_t)i};
            uint32_t bits = (uint32_t)rd(&v, 4);
            float got;
            memcpy(&got, &bits, 4);
            assert_true(got == dirs[t * LDD + i]);
        }
    }
    test_free(buf);

    /* Refused: layer 0 (llama.cpp cannot steer it), NaN, duplicates, short ld; the existing file
     * stays as it was. */
    int32_t zero[NL] = {0, 1, 2}, twice[NL] = {1, 2, 1};
    assert_int_equal(sae_steering_export_gguf(path, "llama", DD, NL, zero, dirs, LDD), SAE_ERANGE);
    assert_int_equal(sae_steering_export_gguf(path, "llama", DD, NL, twice, dirs, LDD), SAE_EINVAL);
    assert_int_equal(sae_steering_export_gguf(path, "llama", DD, NL, layers, dirs, DD - 1),
                     SAE_ESHAPE);
    assert_int_equal(sae_steering_export_gguf(path, "", DD, NL, layers, dirs, LDD), SAE_EINVAL);
    dirs[LDD + 2] = NAN;
    assert_int_equal(sae_steering_export_gguf(path, "llama", DD, NL, layers, dirs, LDD),
                     SAE_ENUMERIC);
    size_t n2 = 0;
    buf = read_file_bytes(path, &n2);
    assert_int_equal(n2, n);
    test_free(buf);
    assert_int_equal(sae_steering_export_gguf("/nonexistent-dir/x.gguf", "llama", DD, 1, layers,
                                              dirs, LDD),
                     SAE_EIO);
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature_edits),
        cmocka_unit_test(test_edit_keeps_error_exactly),
        cmocka_unit_test(test_splice),
        cmocka_unit_test(test_steer),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_composition),
        cmocka_unit_test(test_resample_independent_of_blocks),
        cmocka_unit_test(test_apply_allocates_nothing),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_control_vector_gguf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
