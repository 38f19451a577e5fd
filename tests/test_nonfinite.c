/*
 * test_nonfinite.c: NaN and infinities at every entry point that takes numbers from a caller or
 * a file, handled as the headers say: an error (SAE_ENUMERIC, or SAE_EINVAL for an option)
 * where a value would poison state, propagation to the rows it touches where it passes through.
 *
 * Here: dictionaries (sae_dict_create and sae_dict_wrap: every array, and act_scale; sae_dict_load: weights files
 * and JSON configs), the encoder (dense, sparse, reconstruct, decode, sparse decode: a bad row
 * leaves the other rows bit-identical and the sparse codes well formed), patches applied to
 * activations, trainer options, sae_logits_ce, and circuits (a host whose activations turn
 * non-finite at a hook point: attribution refuses, evaluation propagates). Where other tests cover an entry point
 * already, they are the ones docs/hardening.md lists (trainer step, fit, resample, activation
 * scale, checkpoints, evaluation, sources, synthetic data, orthogonality, patch parameters).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph_util.h"
#include "linear_host.h"
#include "test_util.h"

enum { D = 6, F = 10, ROWS = 3, K = 3 };

static const float bad_values[] = {NAN, INFINITY, -INFINITY};
#define N_BAD 3

static const int32_t archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK, SAE_ARCH_BATCHTOPK,
                                SAE_ARCH_JUMPRELU, SAE_ARCH_GATED};
#define N_ARCHS 5

/* The arrays of a dictionary of every architecture (unused ones are ignored by it). */
typedef struct arrays {
    float W_enc[D * F], W_dec[F * D], b_enc[F], b_dec[D], th[F], b_gate[F], b_mag[F], r_mag[F];
} arrays;

static void fill_arrays(arrays *a)
{
    fill_normal(a->W_enc, D * F, 31, 0.5f);
    fill_normal(a->W_dec, F * D, 32, 0.5f);
    fill_normal(a->b_enc, F, 33, 0.1f);
    fill_normal(a->b_dec, D, 34, 0.1f);
    fill_normal(a->b_gate, F, 35, 0.1f);
    fill_normal(a->b_mag, F, 36, 0.1f);
    fill_normal(a->r_mag, F, 37, 0.1f);
    for (int j = 0; j < F; j++)
        a->th[j] = 0.05f;
}

static sae_dict_config config(int32_t arch, int32_t norm)
{
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = arch, c.d_in = D, c.d_sae = F, c.input_norm = norm;
    c.k = arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK ? K : 0;
    return c;
}

static sae_dict_weights weights(const arrays *a, int32_t arch)
{
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = a->W_enc, w.W_dec = a->W_dec, w.b_dec = a->b_dec;
    if (arch == SAE_ARCH_GATED)
        w.b_gate = a->b_gate, w.b_mag = a->b_mag, w.r_mag = a->r_mag;
    else
        w.b_enc = a->b_enc;
    if (arch == SAE_ARCH_JUMPRELU || arch == SAE_ARCH_BATCHTOPK || arch == SAE_ARCH_TOPK)
        w.threshold = a->th;
    return w;
}

/* ---- sae_dict_create: every array, every bad value, every position class ------------------ */

static void test_dict_create(void **state)
{
    (void)state;
    for (int ai = 0; ai < N_ARCHS; ai++) {
        int32_t arch = archs[ai];
        arrays a;
        fill_arrays(&a);
        sae_dict_config c = config(arch, SAE_NORM_NONE);
        sae_dict_weights w = weights(&a, arch);
        float *const arr[] = {a.W_enc, a.W_dec, a.b_enc, a.b_dec, a.th, a.b_gate, a.b_mag,
                              a.r_mag};
        const float *const used[] = {w.W_enc, w.W_dec, w.b_enc, w.b_dec, w.threshold, w.b_gate,
                                     w.b_mag, w.r_mag};
        const int n[] = {D * F, F * D, F, D, F, F, F, F};
        for (int i = 0; i < 8; i++) {
            if (!used[i])
                continue;
            for (int b = 0; b < N_BAD; b++) {
                int at = (b * 7) % n[i]; /* first, inner and last positions */
                float keep = arr[i][at];
                arr[i][at] = bad_values[b];
                for (int wrap = 0; wrap < 2; wrap++) {
                    sae_dict *d = NULL;
                    sae_status s = wrap ? sae_dict_wrap(&d, &c, &w, test_allocator())
                                        : sae_dict_create(&d, &c, &w, test_allocator());
                    if (s != SAE_ENUMERIC)
                        fail_msg("%s: %s, array %d [%d] = %g: status %d, expected "
                                 "SAE_ENUMERIC", sae_arch_name(arch), wrap ? "wrap" : "create",
                                 i, at, (double)bad_values[b], s);
                    assert_null(d);
                    assert_non_null(strstr(sae_last_error(), "finite"));
                }
                arr[i][at] = keep;
            }
        }
        for (int b = 0; b < N_BAD; b++) {
            sae_dict_config cs = c;
            cs.input_norm = SAE_NORM_SCALE;
            cs.act_scale = bad_values[b];
            sae_dict *d = NULL;
            assert_int_equal(sae_dict_create(&d, &cs, &w, test_allocator()), SAE_ENUMERIC);
            assert_null(d);
        }
        sae_dict *d = NULL;
        assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
        sae_dict_free(d);
    }
}

/* ---- sae_dict_load: weights files and configs ---------------------------------------------- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A SAELens directory tmp/<name>: cfg.json from `cfg`, weights of a standard SAE with `bad`
 * at W_dec[at] (no change when at < 0). */
static const char *saelens_dir(const char *name, const char *cfg, int at, float bad)
{
    static char dir[4096];
    char path[4200];
    snprintf(dir, sizeof dir, "%s", tmp_path(name));
    sae_dict *d = NULL;
    arrays a;
    fill_arrays(&a);
    sae_dict_config c = config(SAE_ARCH_STANDARD, SAE_NORM_NONE);
    sae_dict_weights w = weights(&a, SAE_ARCH_STANDARD);
    assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
    assert_sae_ok(sae_dict_save(d, dir, SAE_FORMAT_SAELENS));
    sae_dict_free(d);
    if (at >= 0) { /* rewrite the weights with one bad value */
        a.W_dec[at] = bad;
        sae_st_writer *wr = NULL;
        const int64_t enc[2] = {D, F}, dec[2] = {F, D}, vf[1] = {F}, vd[1] = {D};
        assert_sae_ok(sae_st_writer_create(&wr));
        assert_sae_ok(sae_st_writer_add(wr, "W_enc", SAE_DTYPE_F32, 2, enc, a.W_enc));
        assert_sae_ok(sae_st_writer_add(wr, "W_dec", SAE_DTYPE_F32, 2, dec, a.W_dec));
        assert_sae_ok(sae_st_writer_add(wr, "b_enc", SAE_DTYPE_F32, 1, vf, a.b_enc));
        assert_sae_ok(sae_st_writer_add(wr, "b_dec", SAE_DTYPE_F32, 1, vd, a.b_dec));
        snprintf(path, sizeof path, "%s/sae_weights.safetensors", dir);
        assert_sae_ok(sae_st_writer_write(wr, path));
        sae_st_writer_free(wr);
    }
    if (cfg) {
        snprintf(path, sizeof path, "%s/cfg.json", dir);
        write_text(path, cfg);
    }
    return dir;
}

static void expect_load(const char *dir, sae_status want, const char *what)
{
    sae_dict *d = NULL;
    sae_status s = sae_dict_load(&d, dir, NULL);
    if (s != want)
        fail_msg("%s: status %d (%s), expected %d: %s", what, s, sae_status_str(s), want,
                 sae_last_error());
    assert_null(d);
}

static void test_dict_load(void **state)
{
    (void)state;
    for (int b = 0; b < N_BAD; b++)
        expect_load(saelens_dir("nonfinite_weights", NULL, 7, bad_values[b]), SAE_ENUMERIC,
                    "W_dec with a non-finite value");
    /* JSON has no NaN; a number beyond the double range parses as infinity. */
    static const char *const cfgs[] = {
        "{\"architecture\":\"standard\",\"d_in\":6,\"d_sae\":1e999}",
        "{\"architecture\":\"topk\",\"d_in\":6,\"d_sae\":10,\"k\":-1e999}",
    };
    for (int i = 0; i < 2; i++)
        expect_load(saelens_dir("nonfinite_cfg", cfgs[i], -1, 0), SAE_ENUMERIC, cfgs[i]);
    const char *dir = saelens_dir("nonfinite_scaler",
                                  "{\"architecture\":\"standard\",\"d_in\":6,\"d_sae\":10,"
                                  "\"normalize_activations\":\"expected_average_only_in\"}",
                                  -1, 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/activation_scaler.json", dir);
    write_text(path, "{\"scaling_factor\": 1e999}");
    expect_load(dir, SAE_ENUMERIC, "activation_scaler.json with an infinite factor");
    write_text(path, "{\"scaling_factor\": 2.0}");
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_load(&d, dir, NULL)); /* the same directory with a finite factor */
    sae_dict_free(d);
}

/* ---- the encoder: a bad row leaves the others alone ---------------------------------------- */

/* Sparse codes are well formed: offsets non-decreasing, ids ascending in [0, F) per row. */
static void check_codes_form(const sae_codes *codes)
{
    const int64_t *off = sae_codes_offsets(codes);
    const int32_t *idx = sae_codes_indices(codes);
    assert_int_equal(off[0], 0);
    for (int64_t r = 0; r < sae_codes_rows(codes); r++) {
        assert_true(off[r + 1] >= off[r]);
        for (int64_t p = off[r]; p < off[r + 1]; p++) {
            assert_true(idx[p] >= 0 && idx[p] < F);
            assert_true(p == off[r] || idx[p] > idx[p - 1]);
        }
    }
}

typedef struct results {
    float f[ROWS * F], pre[ROWS * F], xh[ROWS * D], err[ROWS * D], dec[ROWS * D], sdec[ROWS * D];
    int64_t off[ROWS + 1];
    int32_t idx[ROWS * F];
    float val[ROWS * F];
} results;

/* Every encoder entry point on x; each call must succeed. */
static void run_all(sae_encoder *e, const float *x, results *r)
{
    memset(r, 0, sizeof *r);
    assert_sae_ok(sae_encoder_encode(e, ROWS, x, D, r->f, F, r->pre, F));
    assert_sae_ok(sae_encoder_decode(e, ROWS, r->f, F, r->dec, D));
    assert_sae_ok(sae_encoder_reconstruct(e, ROWS, x, D, r->xh, D, r->err, D));
    sae_codes *codes = NULL;
    assert_sae_ok(sae_codes_create(&codes, test_allocator()));
    assert_sae_ok(sae_encoder_encode_sparse(e, ROWS, x, D, codes));
    check_codes_form(codes);
    int64_t nnz = sae_codes_nnz(codes);
    memcpy(r->off, sae_codes_offsets(codes), sizeof r->off);
    memcpy(r->idx, sae_codes_indices(codes), sizeof(int32_t) * (size_t)nnz);
    memcpy(r->val, sae_codes_values(codes), sizeof(float) * (size_t)nnz);
    /* Sparse decode pairs with the last encode (same rows) for the per-row norms. */
    assert_sae_ok(sae_encoder_decode_sparse(e, ROWS, sae_codes_offsets(codes),
                                            sae_codes_indices(codes), sae_codes_values(codes),
                                            r->sdec, D));
    sae_codes_free(codes);
}

/* Row `row` of every output of a and b is bit-identical. */
static void same_row(const results *a, const results *b, int row, const char *what)
{
    const struct { const float *x, *y; int w; const char *name; } out[] = {
        {a->f, b->f, F, "f"}, {a->pre, b->pre, F, "pre"}, {a->xh, b->xh, D, "x_hat"},
        {a->err, b->err, D, "error"}, {a->dec, b->dec, D, "decode"},
        {a->sdec, b->sdec, D, "sparse decode"},
    };
    for (int i = 0; i < 6; i++)
        if (memcmp(out[i].x + row * out[i].w, out[i].y + row * out[i].w,
                   sizeof(float) * (size_t)out[i].w))
            fail_msg("%s: row %d of %s changed", what, row, out[i].name);
    int64_t na = a->off[row + 1] - a->off[row], nb = b->off[row + 1] - b->off[row];
    assert_int_equal(na, nb);
    assert_memory_equal(a->idx + a->off[row], b->idx + b->off[row], sizeof(int32_t) * (size_t)na);
    assert_memory_equal(a->val + a->off[row], b->val + b->off[row], sizeof(float) * (size_t)na);
}

static void test_encoder_rows(void **state)
{
    (void)state;
    static const int32_t norms[] = {SAE_NORM_NONE, SAE_NORM_LAYER_NORM,
                                    SAE_NORM_CONSTANT_RESCALE};
    results *clean = test_malloc(sizeof *clean), *got = test_malloc(sizeof *got);
    for (int ai = 0; ai < N_ARCHS; ai++)
        for (int ni = 0; ni < 3; ni++) {
            arrays a;
            fill_arrays(&a);
            sae_dict_config c = config(archs[ai], norms[ni]);
            sae_dict_weights w = weights(&a, archs[ai]);
            sae_dict *d = NULL;
            assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
            sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
            o.n_threads = 1;
            o.allocator = test_allocator();
            sae_encoder *e = NULL;
            assert_sae_ok(sae_encoder_create(&e, d, &o));
            float x[ROWS * D];
            fill_normal(x, ROWS * D, 38, 1.0f);
            run_all(e, x, clean);
            for (int b = 0; b < N_BAD; b++)
                for (int where = 0; where < 2; where++) { /* one entry, or the whole row */
                    float xb[ROWS * D];
                    memcpy(xb, x, sizeof xb);
                    for (int i = 0; i < D; i++)
                        if (where || i == 2)
                            xb[D + i] = bad_values[b];
                    run_all(e, xb, got);
                    char what[96];
                    snprintf(what, sizeof what, "%s, norm %d, x[1] %s %g", sae_arch_name(archs[ai]),
                             norms[ni], where ? "all" : "one", (double)bad_values[b]);
                    same_row(got, clean, 0, what);
                    same_row(got, clean, 2, what);
                }
            sae_encoder_free(e);
            sae_dict_free(d);
        }
    test_free(clean);
    test_free(got);
}

/* ---- patches: activations pass through --------------------------------------------------- */

static void test_patch_rows(void **state)
{
    (void)state;
    arrays a;
    fill_arrays(&a);
    sae_dict_config c = config(SAE_ARCH_TOPK, SAE_NORM_NONE);
    sae_dict_weights w = weights(&a, SAE_ARCH_TOPK);
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
    sae_patch_options o = SAE_PATCH_OPTIONS_INIT;
    o.allocator = test_allocator();
    o.max_tokens = ROWS;
    sae_patch *splice = NULL, *clamp = NULL;
    assert_sae_ok(sae_patch_create_splice(&splice, d, 0, &o));
    assert_sae_ok(sae_patch_create_clamp(&clamp, d, 4, 2.0f, &o));
    sae_patch *const patches[] = {splice, clamp};
    for (int p = 0; p < 2; p++)
        for (int b = 0; b < N_BAD; b++) {
            float x[ROWS * D], xb[ROWS * D];
            fill_normal(x, ROWS * D, 39, 1.0f);
            memcpy(xb, x, sizeof x);
            xb[D + 3] = bad_values[b];
            assert_sae_ok(sae_patch_apply(patches[p], x, ROWS, D));
            assert_sae_ok(sae_patch_apply(patches[p], xb, ROWS, D));
            assert_memory_equal(xb, x, sizeof(float) * D);
            assert_memory_equal(xb + 2 * D, x + 2 * D, sizeof(float) * D);
        }
    sae_patch_free(splice);
    sae_patch_free(clamp);
    sae_dict_free(d);
}

/* ---- trainer options ------------------------------------------------------------------------ */

static void test_trainer_options(void **state)
{
    (void)state;
    /* Every floating-point option: NaN is never a setting. */
    static const struct { const char *name; size_t offset; int32_t arch; } fields[] = {
#define FIELD(f, arch) {#f, offsetof(sae_trainer_options, f), arch}
        FIELD(decoder_init_norm, SAE_ARCH_STANDARD), FIELD(lr, SAE_ARCH_STANDARD),
        FIELD(beta1, SAE_ARCH_STANDARD),             FIELD(beta2, SAE_ARCH_STANDARD),
        FIELD(adam_eps, SAE_ARCH_STANDARD),          FIELD(clip_norm, SAE_ARCH_STANDARD),
        FIELD(lr_end, SAE_ARCH_STANDARD),            FIELD(l1_coefficient, SAE_ARCH_STANDARD),
        FIELD(auxk_coefficient, SAE_ARCH_TOPK),      FIELD(threshold_beta, SAE_ARCH_TOPK),
        FIELD(jumprelu_bandwidth, SAE_ARCH_JUMPRELU),
        FIELD(jumprelu_init_threshold, SAE_ARCH_JUMPRELU),
        FIELD(jumprelu_tanh_scale, SAE_ARCH_JUMPRELU), FIELD(target_l0, SAE_ARCH_JUMPRELU),
#undef FIELD
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
        o.arch = fields[i].arch, o.d_in = D, o.d_sae = F, o.n_threads = 1;
        o.k = o.arch == SAE_ARCH_TOPK ? K : 0;
        o.allocator = test_allocator();
        double nan = NAN;
        memcpy((char *)&o + fields[i].offset, &nan, sizeof nan);
        sae_trainer *t = NULL;
        sae_status s = sae_trainer_create(&t, &o);
        if (s != SAE_EINVAL && s != SAE_ENUMERIC)
            fail_msg("trainer option %s = NaN: status %d (%s), expected an error",
                     fields[i].name, s, sae_status_str(s));
        assert_null(t);
    }
}

/* ---- logits ---------------------------------------------------------------------------------- */

static void test_logits(void **state)
{
    (void)state;
    float logits[2 * 4] = {0.1f, 0.2f, 0.3f, 0.4f, 1, 2, 3, 4}, d[2 * 4], ce;
    const int32_t targets[2] = {1, 2};
    /* NaN or +Inf anywhere in a counted row, and -Inf at a target, make the loss non-finite. */
    const struct { int at; float v; } bad[] = {{5, NAN}, {5, INFINITY}, {6, -INFINITY},
                                               {6, NAN}};
    for (int b = 0; b < 4; b++) {
        float keep = logits[bad[b].at];
        logits[bad[b].at] = bad[b].v;
        assert_int_equal(sae_logits_ce(&ce, d, logits, targets, 2, 4), SAE_ENUMERIC);
        logits[bad[b].at] = keep;
    }
    /* -Inf elsewhere masks a token: the loss is that of the other tokens, its gradient 0. */
    const float masked[4] = {1, -INFINITY, 3, 4}, rest[3] = {1, 3, 4};
    const int32_t t_masked = 2, t_rest = 1;
    float ce_rest;
    assert_sae_ok(sae_logits_ce(&ce, d, masked, &t_masked, 1, 4));
    assert_sae_ok(sae_logits_ce(&ce_rest, NULL, rest, &t_rest, 1, 3));
    assert_float_equal(ce, ce_rest, 1e-6);
    assert_true(d[1] == 0.0f);
}

/* ---- circuits -------------------------------------------------------------------------------- */

/* The linear test host with one activation of hook 1 set to `bad` on every forward. */
typedef struct poisoned {
    sae_host inner;
    float bad;
} poisoned;

typedef struct poison_hook {
    sae_hook_fn hook;
    void *user;
    float bad;
} poison_hook;

static sae_status poison(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld)
{
    poison_hook *p = user;
    if (hook_id == 1)
        x[(n - 1) * ld] = p->bad; /* the last token of the batch */
    return p->hook ? p->hook(p->user, hook_id, x, n, ld) : SAE_OK;
}

static sae_status poisoned_forward(void *user, const int32_t *tokens, int64_t n_seq,
                                   int64_t seq_len, float *logits, sae_hook_fn hook,
                                   void *hook_user)
{
    poisoned *h = user;
    poison_hook p = {hook, hook_user, h->bad};
    return h->inner.forward(h->inner.user, tokens, n_seq, seq_len, logits, poison, &p);
}

static sae_status poisoned_backward(void *user, int64_t n_seq, int64_t seq_len,
                                    const float *d_logits, float *const *d_hooks,
                                    const uint8_t *stop_grad)
{
    poisoned *h = user;
    return h->inner.backward(h->inner.user, n_seq, seq_len, d_logits, d_hooks, stop_grad);
}

static sae_status poisoned_backward_from(void *user, int64_t n_seq, int64_t seq_len,
                                         int32_t seed_hook, const float *seed,
                                         float *const *d_hooks, const uint8_t *stop_grad)
{
    poisoned *h = user;
    return h->inner.backward_from(h->inner.user, n_seq, seq_len, seed_hook, seed, d_hooks,
                                  stop_grad);
}

static void test_circuits(void **state)
{
    (void)state;
    enum { H = 2, GD = 6, GF = 10, V = 11, LEN = 4 };
    linear_host *lh = linear_host_create(H, GD, V, LEN, 5);
    poisoned ph;
    linear_host_table(lh, &ph.inner);
    sae_host host = ph.inner;
    host.forward = poisoned_forward, host.backward = poisoned_backward;
    host.backward_from = poisoned_backward_from, host.user = &ph;
    const sae_dict *dicts[H];
    sae_dict *owned[H];
    const int32_t hooks[H] = {0, 1};
    for (int k = 0; k < H; k++)
        dicts[k] = owned[k] = random_dict(SAE_ARCH_STANDARD, GD, GF, 0, SAE_NORM_NONE, 1.0f, 0.1f,
                                          100 + k);
    int64_t offsets[2] = {0, LEN};
    int32_t clean[LEN] = {1, 4, 7, 2}, patch[LEN] = {1, 5, 7, 3}, ca = 3, pa = 6;
    sae_prompt_pairs pairs = SAE_PROMPT_PAIRS_INIT;
    pairs.n_pairs = 1, pairs.offsets = offsets, pairs.clean_tokens = clean;
    pairs.patch_tokens = patch, pairs.clean_answers = &ca, pairs.patch_answers = &pa;
    sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
    o.n_threads = 1, o.allocator = test_allocator();
    const int32_t methods[] = {SAE_GRAPH_ATP, SAE_GRAPH_IG, SAE_GRAPH_EXACT};
    sae_graph *good = NULL;
    ph.bad = 1.0f; /* finite: a valid circuit, evaluated below with the host poisoned */
    o.method = SAE_GRAPH_ATP;
    assert_sae_ok(sae_graph_attribute(&good, &host, hooks, dicts, H, &pairs, &o));
    for (int b = 0; b < N_BAD; b++) {
        ph.bad = bad_values[b];
        for (int m = 0; m < 3; m++) {
            o.method = methods[m];
            sae_graph *g = (sae_graph *)&o;
            sae_status s = sae_graph_attribute(&g, &host, hooks, dicts, H, &pairs, &o);
            assert_int_equal(s, SAE_ENUMERIC);
            assert_null(g);
            assert_non_null(strstr(sae_last_error(), "not finite"));
        }
        sae_graph_eval_options eo = SAE_GRAPH_EVAL_OPTIONS_INIT;
        eo.n_threads = 1, eo.allocator = test_allocator();
        sae_graph_eval ev = SAE_GRAPH_EVAL_INIT;
        assert_sae_ok(sae_graph_evaluate(&ev, good, NULL, &host, dicts, &pairs, &eo));
        assert_false(isfinite(ev.metric_full) && isfinite(ev.faithfulness));
    }
    sae_graph_free(good);
    for (int k = 0; k < H; k++)
        sae_dict_free(owned[k]);
    linear_host_free(lh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dict_create),  cmocka_unit_test(test_dict_load),
        cmocka_unit_test(test_encoder_rows), cmocka_unit_test(test_patch_rows),
        cmocka_unit_test(test_trainer_options), cmocka_unit_test(test_logits),
        cmocka_unit_test(test_circuits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
