/*
 * test_alloc_failure.c: every allocation of the main operations can fail cleanly.
 *
 * A failing allocator (on top of the CMocka test allocator, so that leaks fail the test)
 * refuses the n-th allocation made after the operation under test starts. Each operation is
 * swept over n = 1, 2, ... until a run makes no failing allocation: every run in which an
 * allocation failed must return SAE_ENOMEM with a message, leave its output NULL, leak
 * nothing, and leave the handles it was given as they were — checked by using them afterwards
 * and comparing with a run that never failed (bit for bit: one thread, fixed seeds).
 *
 * Operations: sae_dict_load (SAELens, sparsify, dictionary_learning, OpenAI), sae_dict_create,
 * sae_encoder_create, the first encode of an encoder that grows its workspace on demand (dense,
 * sparse, reconstruct), sae_trainer_create, the first sae_trainer_step of each architecture,
 * sae_trainer_load (checkpoint), sae_trainer_export and sae_dict_save; for circuits,
 * sae_graph_attribute (AtP with edges, integrated gradients, exact) on the linear test host,
 * sae_graph_evaluate and sae_graph_load_json.
 *
 * Only the handle's allocator is exercised: cJSON, libzip and the safetensors writer allocate
 * with malloc, which a caller cannot replace (sae_trainer_save allocates nothing from it).
 * Run under ASan as well (scripts/test.sh).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_util.h"
#include "linear_host.h"
#include "test_util.h"

/* ---- the failing allocator ------------------------------------------------------------------ */

typedef struct failer {
    bool counting;   /* the operation under test has started */
    int64_t count;   /* allocations since it started */
    int64_t fail_at; /* refuse the allocation with this number (1-based); 0: none */
    bool failed;     /* it was refused */
} failer;

static failer fa;

static void *failing_alloc(size_t size, size_t alignment, void *user)
{
    (void)user;
    if (fa.counting && ++fa.count == fa.fail_at) {
        fa.failed = true;
        return NULL;
    }
    return test_allocator()->alloc(size, alignment, test_allocator()->user);
}

static void failing_free(void *ptr, void *user)
{
    (void)user;
    test_allocator()->free(ptr, test_allocator()->user);
}

static const sae_allocator failing = {failing_alloc, failing_free, NULL};

/* Bracket the call under test: allocations are counted (and one refused) only in between. */
static void start(void)
{
    fa.counting = true;
    fa.count = 0;
    fa.failed = false;
}

static void stop(void) { fa.counting = false; }

/* One run of an operation with allocation `fail_at` refused (none when it makes fewer).
 * It calls start() / stop() around the call under test, checks its own results and returns
 * the call's status. */
typedef sae_status (*op_fn)(void *ctx);

/* Run `op` for fail_at = 1, 2, ... until a run completes without a refused allocation; every
 * refused allocation must give SAE_ENOMEM. Returns the allocations of the clean run. */
static int64_t sweep(const char *what, op_fn op, void *ctx)
{
    for (int64_t n = 1;; n++) {
        fa.fail_at = n;
        sae_clear_error();
        sae_status s = op(ctx);
        stop();
        fa.fail_at = 0;
        if (!fa.failed) {
            if (s != SAE_OK)
                fail_msg("%s: failed without a refused allocation: %s: %s", what,
                         sae_status_str(s), sae_last_error());
            printf("    %s: %lld allocations, each refused in turn\n", what, (long long)fa.count);
            return fa.count;
        }
        if (s != SAE_ENOMEM)
            fail_msg("%s: allocation %lld refused, but the call returned %d (%s): %s", what,
                     (long long)n, s, sae_status_str(s), sae_last_error());
        if (!sae_last_error()[0])
            fail_msg("%s: allocation %lld refused without a message", what, (long long)n);
    }
}

/* ---- shared fixtures ------------------------------------------------------------------------ */

enum { D = 8, F = 16, ROWS = 5 };

static void weights_equal(const sae_dict *a, const sae_dict *b)
{
    sae_dict_weights wa = SAE_DICT_WEIGHTS_INIT, wb = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(a, &wa));
    assert_sae_ok(sae_dict_get_weights(b, &wb));
    int64_t d = sae_dict_d_in(a), f = sae_dict_d_sae(a);
    assert_int_equal(sae_dict_d_in(b), d);
    assert_int_equal(sae_dict_d_sae(b), f);
    const float *const pa[] = {wa.W_enc, wa.b_enc, wa.W_dec, wa.b_dec, wa.threshold,
                               wa.b_gate, wa.b_mag, wa.r_mag};
    const float *const pb[] = {wb.W_enc, wb.b_enc, wb.W_dec, wb.b_dec, wb.threshold,
                               wb.b_gate, wb.b_mag, wb.r_mag};
    const int64_t n[] = {d * f, f, f * d, d, f, f, f, f};
    for (int i = 0; i < 8; i++) {
        assert_true((pa[i] == NULL) == (pb[i] == NULL));
        if (pa[i])
            assert_memory_equal(pa[i], pb[i], (size_t)n[i] * sizeof(float));
    }
}

/* A random dictionary of architecture `arch` (sae_dict_create with allocator `a`). */
static sae_status create_dict(sae_dict **out, int32_t arch, const sae_allocator *a)
{
    float W_enc[D * F], W_dec[F * D], b_enc[F], b_dec[D], th[F];
    fill_normal(W_enc, D * F, 1, 0.5f);
    fill_normal(W_dec, F * D, 2, 0.5f);
    fill_normal(b_enc, F, 3, 0.1f);
    fill_normal(b_dec, D, 4, 0.1f);
    for (int j = 0; j < F; j++)
        th[j] = 0.05f;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = arch, c.d_in = D, c.d_sae = F;
    c.k = arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK ? 3 : 0;
    c.model_name = "m", c.hook_name = "h";
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    if (arch == SAE_ARCH_GATED)
        w.b_gate = b_enc, w.b_mag = th, w.r_mag = th;
    else
        w.b_enc = b_enc;
    if (arch == SAE_ARCH_JUMPRELU || arch == SAE_ARCH_BATCHTOPK)
        w.threshold = th;
    return sae_dict_create(out, &c, &w, a);
}

static sae_dict *make_dict(int32_t arch)
{
    sae_dict *d = NULL;
    assert_sae_ok(create_dict(&d, arch, test_allocator()));
    return d;
}

static void fill_rows(float *x) { fill_normal(x, ROWS * D, 7, 1.0f); }

/* ---- loading -------------------------------------------------------------------------------- */

typedef struct load_ctx {
    const char *path;
    int64_t k;
    sae_dict *reference;
} load_ctx;

static sae_status op_load(void *p)
{
    load_ctx *c = p;
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    o.k = c->k;
    o.allocator = &failing;
    sae_dict *d = (sae_dict *)&fa; /* must be reset to NULL on failure */
    start();
    sae_status s = sae_dict_load(&d, c->path, &o);
    stop();
    if (s != SAE_OK) {
        assert_null(d);
        return s;
    }
    weights_equal(d, c->reference);
    sae_dict_free(d);
    return s;
}

static void sweep_load(const char *rel, int64_t k)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", shared_path(rel));
    load_ctx c = {path, k, NULL};
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    o.k = k;
    assert_sae_ok(sae_dict_load(&c.reference, path, &o));
    int64_t n = sweep(rel, op_load, &c);
    assert_true(n >= 4); /* at least the four weight arrays */
    sae_dict_free(c.reference);
}

static void test_load(void **state)
{
    (void)state;
    sweep_load("oracle/native/saelens_standard_d32_s128_b16", 0);
    sweep_load("oracle/native/saelens_jumprelu_step_d32_s128_b16", 0);
    sweep_load("oracle/native/saelens_gated_d32_s128_b16", 0);
    sweep_load("oracle/native/sparsify_topk_k4_d32_s128_b16", 0);
    sweep_load("oracle/native/dl_topk_k4_d32_s128_b16", 0);
    sweep_load("oracle/native/dl_gated_d32_s128_b16", 0);
    sweep_load("oracle/native/openai_topk_k4_ln_d32_s128_b16/0.pt", 0);
    sweep_load("oracle/native/icm_topk_k8_d32_s128_b2x8/sae_state_23453.pt", 8);
}

/* ---- dictionaries and encoders -------------------------------------------------------------- */

static const int32_t archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK, SAE_ARCH_BATCHTOPK,
                                SAE_ARCH_JUMPRELU, SAE_ARCH_GATED};
#define N_ARCHS ((int)(sizeof archs / sizeof archs[0]))

typedef struct enc_ctx {
    int32_t arch;
    sae_dict *dict;           /* from the test allocator */
    float x[ROWS * D];
    float f_ref[ROWS * F], xh_ref[ROWS * D], err_ref[ROWS * D];
    sae_codes *codes_ref;
} enc_ctx;

static sae_encoder *make_encoder(const sae_dict *d, const sae_allocator *a)
{
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.n_threads = 1;
    o.allocator = a;
    sae_encoder *e = NULL;
    assert_sae_ok(sae_encoder_create(&e, d, &o));
    return e;
}

/* Dense encode, reconstruct and sparse encode of c->x with `e`, compared with the reference. */
static void check_encoder(enc_ctx *c, sae_encoder *e)
{
    float f[ROWS * F], xh[ROWS * D], err[ROWS * D];
    assert_sae_ok(sae_encoder_encode(e, ROWS, c->x, D, f, F, NULL, 0));
    assert_memory_equal(f, c->f_ref, sizeof f);
    assert_sae_ok(sae_encoder_reconstruct(e, ROWS, c->x, D, xh, D, err, D));
    assert_memory_equal(xh, c->xh_ref, sizeof xh);
    assert_memory_equal(err, c->err_ref, sizeof err);
}

static void check_codes(const enc_ctx *c, const sae_codes *codes)
{
    int64_t nnz = sae_codes_nnz(c->codes_ref);
    assert_int_equal(sae_codes_rows(codes), ROWS);
    assert_int_equal(sae_codes_nnz(codes), nnz);
    assert_memory_equal(sae_codes_offsets(codes), sae_codes_offsets(c->codes_ref),
                        (ROWS + 1) * sizeof(int64_t));
    if (nnz) {
        assert_memory_equal(sae_codes_indices(codes), sae_codes_indices(c->codes_ref),
                            (size_t)nnz * sizeof(int32_t));
        assert_memory_equal(sae_codes_values(codes), sae_codes_values(c->codes_ref),
                            (size_t)nnz * sizeof(float));
    }
}

static sae_status op_dict_create(void *p)
{
    enc_ctx *c = p;
    sae_dict *d = (sae_dict *)&fa;
    start();
    sae_status s = create_dict(&d, c->arch, &failing);
    stop();
    if (s != SAE_OK) {
        assert_null(d);
        return s;
    }
    weights_equal(d, c->dict);
    sae_dict_free(d);
    return s;
}

static sae_status op_encoder_create(void *p)
{
    enc_ctx *c = p;
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.n_threads = 1;
    o.max_rows = ROWS; /* the workspace comes with the encoder */
    o.allocator = &failing;
    sae_encoder *e = (sae_encoder *)&fa;
    start();
    sae_status s = sae_encoder_create(&e, c->dict, &o);
    stop();
    if (s != SAE_OK) {
        assert_null(e);
        return s;
    }
    check_encoder(c, e);
    sae_encoder_free(e);
    return s;
}

/* The first call of an encoder made with max_rows 0 grows its workspace. After a refused
 * allocation the same encoder must give the reference results. */
static sae_status op_encode(void *p)
{
    enc_ctx *c = p;
    sae_encoder *e = make_encoder(c->dict, &failing);
    float f[ROWS * F];
    start();
    sae_status s = sae_encoder_encode(e, ROWS, c->x, D, f, F, NULL, 0);
    stop();
    if (s == SAE_OK)
        assert_memory_equal(f, c->f_ref, sizeof f);
    check_encoder(c, e);
    sae_encoder_free(e);
    return s;
}

static sae_status op_reconstruct(void *p)
{
    enc_ctx *c = p;
    sae_encoder *e = make_encoder(c->dict, &failing);
    float xh[ROWS * D], err[ROWS * D];
    start();
    sae_status s = sae_encoder_reconstruct(e, ROWS, c->x, D, xh, D, err, D);
    stop();
    if (s == SAE_OK)
        assert_memory_equal(xh, c->xh_ref, sizeof xh);
    check_encoder(c, e);
    sae_encoder_free(e);
    return s;
}

/* Sparse encode into fresh codes: both the encoder's workspace and the codes grow. After a
 * refused allocation the codes hold the reference codes on the next call. */
static sae_status op_encode_sparse(void *p)
{
    enc_ctx *c = p;
    sae_encoder *e = make_encoder(c->dict, &failing);
    sae_codes *codes = NULL;
    assert_sae_ok(sae_codes_create(&codes, &failing));
    start();
    sae_status s = sae_encoder_encode_sparse(e, ROWS, c->x, D, codes);
    stop();
    if (s != SAE_OK)
        assert_sae_ok(sae_encoder_encode_sparse(e, ROWS, c->x, D, codes));
    check_codes(c, codes);
    check_encoder(c, e);
    sae_codes_free(codes);
    sae_encoder_free(e);
    return s;
}

static void test_encoder(void **state)
{
    (void)state;
    for (int a = 0; a < N_ARCHS; a++) {
        enc_ctx c;
        memset(&c, 0, sizeof c);
        c.arch = archs[a];
        c.dict = make_dict(c.arch);
        fill_rows(c.x);
        sae_encoder *e = make_encoder(c.dict, test_allocator());
        assert_sae_ok(sae_encoder_encode(e, ROWS, c.x, D, c.f_ref, F, NULL, 0));
        assert_sae_ok(sae_encoder_reconstruct(e, ROWS, c.x, D, c.xh_ref, D, c.err_ref, D));
        assert_sae_ok(sae_codes_create(&c.codes_ref, test_allocator()));
        assert_sae_ok(sae_encoder_encode_sparse(e, ROWS, c.x, D, c.codes_ref));
        sae_encoder_free(e);
        char what[64];
        snprintf(what, sizeof what, "%s dict create", sae_arch_name(c.arch));
        assert_true(sweep(what, op_dict_create, &c) >= 1);
        snprintf(what, sizeof what, "%s encoder create", sae_arch_name(c.arch));
        assert_true(sweep(what, op_encoder_create, &c) >= 1);
        snprintf(what, sizeof what, "%s encode", sae_arch_name(c.arch));
        assert_true(sweep(what, op_encode, &c) >= 1);
        snprintf(what, sizeof what, "%s reconstruct", sae_arch_name(c.arch));
        sweep(what, op_reconstruct, &c);
        snprintf(what, sizeof what, "%s sparse encode", sae_arch_name(c.arch));
        assert_true(sweep(what, op_encode_sparse, &c) >= 1);
        sae_codes_free(c.codes_ref);
        sae_dict_free(c.dict);
    }
}

/* ---- training and checkpoints --------------------------------------------------------------- */

typedef struct train_ctx {
    int32_t arch;
    float x[4 * ROWS * D];    /* the batch */
    sae_dict *after_step;     /* export of a trainer after one step on x, never failing */
    char ckpt[4096];          /* checkpoint of that trainer */
} train_ctx;

static sae_trainer_options train_options(int32_t arch, const sae_allocator *a)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = arch, o.d_in = D, o.d_sae = F, o.n_threads = 1, o.seed = 11, o.allocator = a;
    o.k = arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK ? 3 : 0;
    if (arch == SAE_ARCH_TOPK) /* the orthogonality regularizer's workspace is swept too */
        o.ortho_lambda = 0.01, o.ortho_subset = F / 2;
    return o;
}

static sae_trainer *make_trainer(int32_t arch, const sae_allocator *a)
{
    sae_trainer_options o = train_options(arch, a);
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    return t;
}

static void step(sae_trainer *t, const train_ctx *c)
{
    assert_sae_ok(sae_trainer_step(t, 4 * ROWS, c->x, D, NULL));
}

/* t's weights equal the reference's after one step. */
static void check_after_step(const train_ctx *c, const sae_trainer *t)
{
    assert_int_equal(sae_trainer_steps(t), 1);
    sae_dict *d = NULL;
    assert_sae_ok(sae_trainer_export(t, &d));
    weights_equal(d, c->after_step);
    sae_dict_free(d);
}

static sae_status op_trainer_create(void *p)
{
    train_ctx *c = p;
    sae_trainer_options o = train_options(c->arch, &failing);
    sae_trainer *t = (sae_trainer *)&fa;
    start();
    sae_status s = sae_trainer_create(&t, &o);
    stop();
    if (s != SAE_OK) {
        assert_null(t);
        return s;
    }
    step(t, c);
    check_after_step(c, t);
    sae_trainer_free(t);
    return s;
}

/* The first step grows the workspace. A refused allocation must leave the trainer as it was:
 * the next step gives the reference weights. */
static sae_status op_trainer_step(void *p)
{
    train_ctx *c = p;
    sae_trainer *t = make_trainer(c->arch, &failing);
    start();
    sae_status s = sae_trainer_step(t, 4 * ROWS, c->x, D, NULL);
    stop();
    if (s != SAE_OK) {
        assert_int_equal(sae_trainer_steps(t), 0);
        step(t, c);
    }
    check_after_step(c, t);
    sae_trainer_free(t);
    return s;
}

static sae_status op_trainer_export(void *p)
{
    train_ctx *c = p;
    sae_trainer *t = make_trainer(c->arch, &failing);
    step(t, c);
    sae_dict *d = (sae_dict *)&fa;
    start();
    sae_status s = sae_trainer_export(t, &d);
    stop();
    if (s == SAE_OK) {
        weights_equal(d, c->after_step);
        sae_dict_free(d);
    } else {
        assert_null(d);
    }
    check_after_step(c, t);
    sae_trainer_free(t);
    return s;
}

static sae_status op_checkpoint_load(void *p)
{
    train_ctx *c = p;
    sae_trainer *t = (sae_trainer *)&fa;
    start();
    sae_status s = sae_trainer_load(&t, c->ckpt, &failing);
    stop();
    if (s != SAE_OK) {
        assert_null(t);
        return s;
    }
    check_after_step(c, t);
    sae_trainer_free(t);
    return s;
}

/* A copy of `src` whose arrays come from allocator `a`. */
static sae_dict *copy_dict(const sae_dict *src, const sae_allocator *a)
{
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_config(src, &cfg));
    assert_sae_ok(sae_dict_get_weights(src, &w));
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &cfg, &w, a));
    return d;
}

static sae_dict *load_dir(const char *dir)
{
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_load(&d, dir, NULL));
    return d;
}

typedef struct save_ctx {
    const char *dir;
    sae_dict *old, *dict;       /* dict: from the failing allocator (the save allocates from it) */
    sae_dict *old_back, *back;  /* what loading old's and dict's saves gives */
} save_ctx;

/* sae_dict_save over an existing save: after a refused allocation the old files are intact. */
static sae_status op_dict_save(void *p)
{
    save_ctx *c = p;
    assert_sae_ok(sae_dict_save(c->old, c->dir, SAE_FORMAT_SAELENS));
    start();
    sae_status s = sae_dict_save(c->dict, c->dir, SAE_FORMAT_SAELENS);
    stop();
    sae_dict *back = load_dir(c->dir);
    weights_equal(back, s == SAE_OK ? c->back : c->old_back);
    sae_dict_free(back);
    return s;
}

static void test_training(void **state)
{
    (void)state;
    for (int a = 0; a < N_ARCHS; a++) {
        train_ctx c;
        memset(&c, 0, sizeof c);
        c.arch = archs[a];
        fill_normal(c.x, 4 * ROWS * D, 5, 1.0f);
        sae_trainer *t = make_trainer(c.arch, test_allocator());
        sae_dict *untrained = NULL;
        assert_sae_ok(sae_trainer_export(t, &untrained));
        step(t, &c);
        assert_sae_ok(sae_trainer_export(t, &c.after_step));
        snprintf(c.ckpt, sizeof c.ckpt, "%s", tmp_path("alloc_failure.ckpt"));
        assert_sae_ok(sae_trainer_save(t, c.ckpt));
        sae_trainer_free(t);
        char what[64];
        snprintf(what, sizeof what, "%s trainer create", sae_arch_name(c.arch));
        assert_true(sweep(what, op_trainer_create, &c) >= 1);
        snprintf(what, sizeof what, "%s trainer step", sae_arch_name(c.arch));
        assert_true(sweep(what, op_trainer_step, &c) >= 1);
        snprintf(what, sizeof what, "%s trainer export", sae_arch_name(c.arch));
        assert_true(sweep(what, op_trainer_export, &c) >= 1);
        snprintf(what, sizeof what, "%s checkpoint load", sae_arch_name(c.arch));
        assert_true(sweep(what, op_checkpoint_load, &c) >= 1);

        save_ctx sc = {tmp_path("alloc_failure_save"), untrained, NULL, NULL, NULL};
        sc.dict = copy_dict(c.after_step, &failing);
        assert_sae_ok(sae_dict_save(sc.old, sc.dir, SAE_FORMAT_SAELENS));
        sc.old_back = load_dir(sc.dir);
        assert_sae_ok(sae_dict_save(sc.dict, sc.dir, SAE_FORMAT_SAELENS));
        sc.back = load_dir(sc.dir);
        snprintf(what, sizeof what, "%s dict save", sae_arch_name(c.arch));
        sweep(what, op_dict_save, &sc);
        sae_dict_free(sc.old_back);
        sae_dict_free(sc.back);
        sae_dict_free(sc.dict);
        sae_dict_free(untrained);
        sae_dict_free(c.after_step);
    }
}

/* ---- circuits ------------------------------------------------------------------------------- */

enum { GH = 2, GD = 6, GF = 10, GV = 11, GLEN = 4, GPAIRS = 3 };

typedef struct graph_ctx {
    sae_host host;
    int32_t hooks[GH];
    const sae_dict *dicts[GH];
    int64_t offsets[GPAIRS + 1];
    int32_t clean[GPAIRS * GLEN], patch[GPAIRS * GLEN], ca[GPAIRS], pa[GPAIRS];
    sae_prompt_pairs pairs;
    int32_t method;
    sae_graph *reference; /* the run without a refused allocation */
    sae_graph_eval eval;  /* its evaluation */
    char json[4096];      /* and its file */
} graph_ctx;

static sae_status attribute_with(graph_ctx *c, sae_graph **g, const sae_allocator *a)
{
    sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
    o.method = c->method, o.ig_steps = 3, o.node_threshold = 0.0f, o.edge_threshold = 0.0f;
    o.batch_size = 2, o.n_threads = 1, o.allocator = a;
    if (c->method == SAE_GRAPH_EXACT)
        o.flags = SAE_GRAPH_NO_EDGES;
    return sae_graph_attribute(g, &c->host, c->hooks, c->dicts, GH, &c->pairs, &o);
}

/* a and b have the same nodes and edges, bit for bit. */
static void graphs_equal(const sae_graph *a, const sae_graph *b)
{
    sae_graph_arrays x = SAE_GRAPH_ARRAYS_INIT, y = SAE_GRAPH_ARRAYS_INIT;
    assert_sae_ok(sae_graph_get_arrays(a, &x));
    assert_sae_ok(sae_graph_get_arrays(b, &y));
    assert_int_equal(x.n_nodes, y.n_nodes);
    assert_int_equal(x.n_edges, y.n_edges);
    assert_memory_equal(x.node_hooks, y.node_hooks, (size_t)x.n_nodes * sizeof *x.node_hooks);
    assert_memory_equal(x.node_features, y.node_features,
                        (size_t)x.n_nodes * sizeof *x.node_features);
    assert_memory_equal(x.node_effects, y.node_effects, (size_t)x.n_nodes * sizeof(float));
    if (x.n_edges > 0) {
        assert_memory_equal(x.edge_sources, y.edge_sources, (size_t)x.n_edges * sizeof(int64_t));
        assert_memory_equal(x.edge_targets, y.edge_targets, (size_t)x.n_edges * sizeof(int64_t));
        assert_memory_equal(x.edge_weights, y.edge_weights, (size_t)x.n_edges * sizeof(float));
    }
}

/* After a call that made graph g with status s: NULL on failure, else the reference graph. */
static sae_status graph_result(sae_status s, sae_graph *g, const graph_ctx *c)
{
    if (s != SAE_OK) {
        assert_null(g);
        return s;
    }
    graphs_equal(g, c->reference);
    sae_graph_free(g);
    return s;
}

static sae_status op_attribute(void *p)
{
    graph_ctx *c = p;
    sae_graph *g = (sae_graph *)&fa; /* must be reset to NULL on failure */
    start();
    sae_status s = attribute_with(c, &g, &failing);
    stop();
    return graph_result(s, g, c);
}

static sae_status op_evaluate(void *p)
{
    graph_ctx *c = p;
    sae_graph_eval_options o = SAE_GRAPH_EVAL_OPTIONS_INIT;
    o.batch_size = 2, o.n_threads = 1, o.allocator = &failing;
    sae_graph_eval ev = SAE_GRAPH_EVAL_INIT;
    start();
    sae_status s = sae_graph_evaluate(&ev, c->reference, NULL, &c->host, c->dicts, &c->pairs, &o);
    stop();
    if (s == SAE_OK)
        assert_memory_equal(&ev, &c->eval, sizeof ev);
    return s;
}

static sae_status op_load_json(void *p)
{
    graph_ctx *c = p;
    sae_graph *g = (sae_graph *)&fa;
    start();
    sae_status s = sae_graph_load_json(&g, c->json, &failing);
    stop();
    return graph_result(s, g, c);
}

static void test_circuits(void **state)
{
    (void)state;
    graph_ctx c;
    memset(&c, 0, sizeof c);
    linear_host *lh = linear_host_create(GH, GD, GV, GLEN, 5);
    linear_host_table(lh, &c.host);
    sae_dict *dicts[GH];
    for (int k = 0; k < GH; k++) {
        dicts[k] = random_dict(SAE_ARCH_STANDARD, GD, GF, 0, SAE_NORM_NONE, 1.0f, 0.1f, 100 + k);
        c.dicts[k] = dicts[k], c.hooks[k] = k;
    }
    for (int i = 0; i < GPAIRS; i++) {
        c.offsets[i] = i * GLEN;
        for (int t = 0; t < GLEN; t++)
            c.clean[i * GLEN + t] = c.patch[i * GLEN + t] = (3 * i + 5 * t + 1) % GV;
        c.patch[i * GLEN + 1] = (c.clean[i * GLEN + 1] + 3) % GV;
        c.ca[i] = i % GV, c.pa[i] = (i + 4) % GV;
    }
    c.offsets[GPAIRS] = GPAIRS * GLEN;
    c.pairs = (sae_prompt_pairs)SAE_PROMPT_PAIRS_INIT;
    c.pairs.n_pairs = GPAIRS, c.pairs.offsets = c.offsets, c.pairs.clean_tokens = c.clean;
    c.pairs.patch_tokens = c.patch, c.pairs.clean_answers = c.ca, c.pairs.patch_answers = c.pa;

    const int32_t methods[] = {SAE_GRAPH_ATP, SAE_GRAPH_IG, SAE_GRAPH_EXACT};
    for (int m = 0; m < 3; m++) {
        c.method = methods[m];
        assert_sae_ok(attribute_with(&c, &c.reference, test_allocator()));
        char what[64];
        snprintf(what, sizeof what, "graph attribute (%s)", sae_graph_method_name(c.method));
        assert_true(sweep(what, op_attribute, &c) >= 1);
        if (c.method == SAE_GRAPH_ATP) {
            sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
            assert_sae_ok(sae_graph_get_arrays(c.reference, &a));
            assert_true(a.n_edges > 0); /* the edge pass was part of the sweep */
            sae_graph_eval_options o = SAE_GRAPH_EVAL_OPTIONS_INIT;
            o.batch_size = 2, o.n_threads = 1, o.allocator = test_allocator();
            c.eval = (sae_graph_eval)SAE_GRAPH_EVAL_INIT;
            assert_sae_ok(sae_graph_evaluate(&c.eval, c.reference, NULL, &c.host, c.dicts,
                                             &c.pairs, &o));
            assert_true(sweep("graph evaluate", op_evaluate, &c) >= 1);
            snprintf(c.json, sizeof c.json, "%s", tmp_path("alloc_failure_graph.json"));
            assert_sae_ok(sae_graph_save_json(c.reference, c.json));
            assert_true(sweep("graph load json", op_load_json, &c) >= 1);
        }
        sae_graph_free(c.reference);
    }
    for (int k = 0; k < GH; k++)
        sae_dict_free(dicts[k]);
    linear_host_free(lh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_encoder),
        cmocka_unit_test(test_training),
        cmocka_unit_test(test_circuits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
