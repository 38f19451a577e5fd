/* test_checkpoint.c: sae_trainer_save / sae_trainer_load (lib/trainer/checkpoint.c).
 *   - resume: N steps straight against k steps, save, free, load, N - k steps; the whole state
 *     bit for bit (parameters, Adam moments, counters, threshold, activation scale, resampling
 *     generator, options), for standard SAEs with resampling and scaling, TopK SAEs with a
 *     pending b_dec, an inference threshold and AuxK, and the sae-icm recipe (AdamW, a new
 *     orthogonality subset every step), saved at several steps;
 *   - the file layout;
 *   - damaged checkpoints give clear errors (never a crash or a leak);
 *   - kill test: a child process (this program re-executed with --child) resumes from the
 *     checkpoint, trains and saves after every step while the parent SIGKILLs it, 30 times: at
 *     random moments, and every other time inside a save (the child announces each save on a
 *     pipe; tests/support/kill_harness.h); after every kill the checkpoint loads, and resuming
 *     gives the uninterrupted run bit for bit. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kill_harness.h"
#include "sae/trainer.h"
#include "test_util.h"
#include "trainer/trainer_internal.h"

/* ---- configurations and data ---------------------------------------------------------------- */

typedef struct config {
    const char *name;
    int32_t arch, preset;
    int64_t d, F, n;
} config;

enum {
    STD_RESAMPLE, TOPK_DL, TOPK_SAELENS, BATCHTOPK, JUMPRELU, GATED, TOPK_ICM, KILL_MODEL,
    N_CONFIGS
};

static const config configs[N_CONFIGS] = {
    [STD_RESAMPLE] = {"standard, resampling + scaling", SAE_ARCH_STANDARD,
                      SAE_PRESET_DICTIONARY_LEARNING, 10, 32, 16},
    [TOPK_DL] = {"TopK dictionary_learning", SAE_ARCH_TOPK, SAE_PRESET_DICTIONARY_LEARNING, 10,
                 32, 16},
    [TOPK_SAELENS] = {"TopK SAELens + scaling", SAE_ARCH_TOPK, SAE_PRESET_SAELENS, 10, 32, 16},
    [BATCHTOPK] = {"BatchTopK dictionary_learning", SAE_ARCH_BATCHTOPK,
                   SAE_PRESET_DICTIONARY_LEARNING, 10, 32, 16},
    [JUMPRELU] = {"JumpReLU SAELens + scaling", SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS, 10, 32, 16},
    [GATED] = {"Gated dictionary_learning", SAE_ARCH_GATED, SAE_PRESET_DICTIONARY_LEARNING, 10, 32,
               16},
    [TOPK_ICM] = {"TopK sae-icm, ortho subsets", SAE_ARCH_TOPK, SAE_PRESET_SAE_ICM, 10, 32, 16},
    /* Large enough (3 blocks of 264256 floats: a 3.2 MB file) for kills inside the write. */
    [KILL_MODEL] = {"kill test model", SAE_ARCH_STANDARD, SAE_PRESET_DICTIONARY_LEARNING, 64,
                    2048, 32},
};

static bool selects_k(int32_t arch) { return arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK; }

/* A fresh trainer of configuration c: deterministic, 2 threads (the kill test's 1: on a loaded
 * machine, processes killed and restarted in a loop fare better without a team). The standard
 * ones resample every 3 steps (dead: more than one step without firing), and three features in
 * four start with b_enc = -100 (they never fire): more than a batch has rows, so that several
 * resamplings draw from the generator. */
static sae_trainer *fresh(int c, const sae_allocator *a)
{
    const config *k = &configs[c];
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = k->arch, o.preset = k->preset, o.d_in = k->d, o.d_sae = k->F, o.seed = 17;
    o.n_threads = c == KILL_MODEL ? 1 : 2, o.allocator = a, o.warmup_steps = 2;
    o.total_steps = 1000;
    if (k->arch == SAE_ARCH_STANDARD) {
        o.resample_steps = 3, o.l1_warmup_steps = 3;
        o.activation_scaling = SAE_SWITCH_ON;
    } else {
        if (selects_k(k->arch))
            o.k = 3, o.threshold_start_step = 2;
        o.dead_window = 64;
        o.activation_scaling = k->preset == SAE_PRESET_SAELENS ? SAE_SWITCH_ON : 0;
    }
    if (k->preset == SAE_PRESET_SAE_ICM) /* a new subset of 8 of the 32 rows every step, AdamW */
        o.ortho_lambda = 0.5, o.ortho_subset = 8;
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    for (int64_t j = 0; k->arch == SAE_ARCH_STANDARD && j < k->F; j++)
        if (j % 4 != 3)
            t->p.b_enc[j] = -100.0f;
    return t;
}

/* Batch of step s: a function of s only. */
static void data(int c, int64_t s, float *x)
{
    const config *k = &configs[c];
    fill_normal(x, k->n * k->d, 5000 + (uint64_t)s, 2.0f);
    for (int64_t i = 0; i < k->n * k->d; i += 3)
        x[i] += 1.0f;
}

/* STD_RESAMPLE estimates its activation scale from a batch of its own before training; the
 * others estimate it at their first step (or do not scale). */
static void estimate(int c, sae_trainer *t)
{
    if (c != STD_RESAMPLE)
        return;
    float x[16 * 10];
    data(c, -1, x);
    assert_sae_ok(sae_trainer_estimate_scale(t, 16, x, 10));
}

/* Steps until t has taken `target`. */
static void run_to(int c, sae_trainer *t, int64_t target)
{
    const config *k = &configs[c];
    float *x = malloc(sizeof(float) * (size_t)(k->n * k->d));
    assert_non_null(x);
    while (sae_trainer_steps(t) < target) {
        data(c, sae_trainer_steps(t), x);
        assert_sae_ok(sae_trainer_step(t, k->n, x, k->d, NULL));
    }
    free(x);
}

/* The whole persistent state of two trainers is the same, bit for bit. */
static void assert_same_state(const sae_trainer *a, const sae_trainer *b)
{
    assert_int_equal(a->n_params, b->n_params);
    const size_t P = sizeof(float) * (size_t)a->n_params;
    assert_memory_equal(a->param, b->param, P);
    assert_memory_equal(a->m, b->m, P);
    assert_memory_equal(a->v, b->v, P);
    assert_memory_equal(a->since_fired, b->since_fired, sizeof(int64_t) * (size_t)a->cfg.F);
    assert_int_equal(a->step, b->step);
    assert_memory_equal(&a->threshold, &b->threshold, sizeof a->threshold);
    assert_int_equal(a->b_dec_pending, b->b_dec_pending);
    assert_memory_equal(&a->ex.act_scale, &b->ex.act_scale, sizeof(float));
    assert_memory_equal(&a->ex.scale_norm_sum, &b->ex.scale_norm_sum, sizeof(double));
    assert_int_equal(a->ex.scale_rows, b->ex.scale_rows);
    assert_memory_equal(&a->ex.rng, &b->ex.rng, sizeof(sae_rng));
    sae_trainer_options oa = SAE_TRAINER_OPTIONS_INIT, ob = SAE_TRAINER_OPTIONS_INIT;
    assert_sae_ok(sae_trainer_get_options(a, &oa));
    assert_sae_ok(sae_trainer_get_options(b, &ob));
    oa.allocator = ob.allocator = NULL;
    assert_memory_equal(&oa, &ob, sizeof oa);
}

/* ---- resume --------------------------------------------------------------------------------- */

static void test_resume_bit_identical(void **state)
{
    (void)state;
    const char *path = tmp_path("ckpt_resume.safetensors");
    const int64_t N = 9, saves[] = {0, 1, 4};
    for (int c = 0; c < KILL_MODEL; c++) {
        sae_trainer *straight = fresh(c, test_allocator());
        estimate(c, straight);
        /* Saved at 0: TOPK_DL's b_dec and TOPK_SAELENS' scale are still to come. */
        assert_sae_ok(sae_trainer_save(straight, path));
        sae_trainer *at0 = NULL;
        assert_sae_ok(sae_trainer_load(&at0, path, test_allocator()));
        assert_same_state(straight, at0);
        sae_trainer_free(at0);
        run_to(c, straight, N);
        for (size_t i = 0; i < sizeof saves / sizeof saves[0]; i++) {
            sae_trainer *t = fresh(c, test_allocator());
            estimate(c, t);
            run_to(c, t, saves[i]);
            assert_sae_ok(sae_trainer_save(t, path));
            sae_trainer_free(t);
            t = NULL;
            assert_sae_ok(sae_trainer_load(&t, path, test_allocator()));
            assert_int_equal(sae_trainer_steps(t), saves[i]);
            run_to(c, t, N);
            assert_same_state(straight, t);
            sae_trainer_free(t);
        }
        printf("    %-32s resumed at 0, 1, 4 of %lld: identical (threshold %g, s %g, %llu "
               "generator blocks)\n", configs[c].name, (long long)N, (double)straight->threshold,
               (double)sae_trainer_activation_scale(straight),
               (unsigned long long)straight->ex.rng.counter);
        if (configs[c].arch == SAE_ARCH_STANDARD) /* resampled after steps 3 and 6 */
            assert_true(straight->ex.rng.counter == 2 * 16 * 2 / 4);
        else if (selects_k(configs[c].arch))
            assert_true(straight->threshold > 0);
        sae_trainer_free(straight);
    }
}

/* The file: 13 tensors of the documented dtypes and shapes, the format in __metadata__. */
static void test_file_layout(void **state)
{
    (void)state;
    const char *path = tmp_path("ckpt_layout.safetensors");
    sae_trainer *t = fresh(TOPK_DL, test_allocator());
    assert_sae_ok(sae_trainer_save(t, path));
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    assert_int_equal(sae_st_count(r), 13);
    const struct {
        const char *name;
        int32_t dtype, ndim;
        int64_t len;
    } want[] = {{"param", SAE_DTYPE_F32, 1, t->n_params}, {"adam.m", SAE_DTYPE_F32, 1, t->n_params},
                {"adam.v", SAE_DTYPE_F32, 1, t->n_params}, {"since_fired", SAE_DTYPE_I64, 1, 32},
                {"step", SAE_DTYPE_I64, 0, 1}, {"threshold", SAE_DTYPE_F32, 0, 1},
                {"b_dec_pending", SAE_DTYPE_U8, 0, 1}, {"scale", SAE_DTYPE_F32, 0, 1},
                {"scale.norm_sum", SAE_DTYPE_F64, 0, 1}, {"scale.rows", SAE_DTYPE_I64, 0, 1},
                {"rng.counter", SAE_DTYPE_U64, 0, 1}, {"rng.buffer", SAE_DTYPE_U32, 1, 4},
                {"rng.buffered", SAE_DTYPE_U32, 0, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const sae_tensor_info *ti = sae_st_find(r, want[i].name);
        assert_non_null(ti);
        assert_int_equal(ti->dtype, want[i].dtype);
        assert_int_equal(ti->ndim, want[i].ndim);
        assert_int_equal(ti->numel, want[i].len);
    }
    assert_string_equal(sae_st_metadata(r, "format"), "libsae.trainer");
    assert_string_equal(sae_st_metadata(r, "format_version"), "1");
    assert_string_equal(sae_st_metadata(r, "libsae_version"), sae_version_string());
    cJSON *o = cJSON_Parse(sae_st_metadata(r, "options"));
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "threshold_start_step")->valuestring, "2");
    assert_string_equal(cJSON_GetObjectItem(o, "d_sae")->valuestring, "32");
    assert_true(cJSON_GetObjectItem(o, "lr")->valuedouble == t->opts.lr);
    assert_int_equal(cJSON_GetObjectItem(o, "mse")->valueint, SAE_MSE_SUM);
    cJSON_Delete(o);
    assert_true(*(const uint8_t *)sae_st_find(r, "b_dec_pending")->data == 1);
    sae_st_close(r);
    sae_trainer_free(t);
}

/* ---- damaged checkpoints -------------------------------------------------------------------- */

/* One change to a checkpoint: replace (or drop) a tensor, add one, set a metadata value. */
typedef struct edit {
    const char *tensor; /* replaced by (dtype, ndim, len, data), or dropped */
    int32_t dtype, ndim;
    int64_t len;
    const void *data;
    bool drop, add;
    const char *meta_key, *meta_value; /* meta_value NULL: the key is left out */
} edit;

#define REPLACE(name, dt, nd, n, p)                                                            \
    {.tensor = name, .dtype = dt, .ndim = nd, .len = n, .data = p}

static void rewrite(const char *src, const char *dst, const edit *e)
{
    sae_st_reader *r = NULL;
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_open(&r, src));
    assert_sae_ok(sae_st_writer_create(&w));
    for (int64_t i = 0; i < sae_st_count(r); i++) {
        const sae_tensor_info *ti = sae_st_tensor_at(r, i);
        if (e->tensor && strcmp(ti->name, e->tensor) == 0 && !e->add) {
            if (!e->drop)
                assert_sae_ok(sae_st_writer_add(w, ti->name, e->dtype, e->ndim, &e->len,
                                                e->data));
            continue;
        }
        assert_sae_ok(sae_st_writer_add(w, ti->name, ti->dtype, ti->ndim, ti->shape, ti->data));
    }
    if (e->add)
        assert_sae_ok(sae_st_writer_add(w, e->tensor, e->dtype, e->ndim, &e->len, e->data));
    const char *keys[] = {"format", "format_version", "libsae_version", "options"};
    for (size_t i = 0; i < 4; i++) {
        const char *v = sae_st_metadata(r, keys[i]);
        if (e->meta_key && strcmp(keys[i], e->meta_key) == 0)
            v = e->meta_value;
        if (v)
            assert_sae_ok(sae_st_writer_set_metadata(w, keys[i], v));
    }
    assert_sae_ok(sae_st_writer_write(w, dst));
    sae_st_writer_free(w);
    sae_st_close(r);
}

/* The options of `src` with one key replaced by a JSON value (raw text), or removed (NULL). */
static char *options_with(const char *src, const char *key, const char *raw)
{
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, src));
    cJSON *o = cJSON_Parse(sae_st_metadata(r, "options"));
    sae_st_close(r);
    assert_non_null(o);
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    if (raw)
        cJSON_AddItemToObject(o, key, cJSON_CreateRaw(raw));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static void expect_load(const char *path, sae_status want, const char *what)
{
    sae_trainer *t = NULL;
    sae_status s = sae_trainer_load(&t, path, test_allocator());
    printf("    %-34s -> %-28s %s\n", what, sae_status_str(s), sae_last_error());
    if (s != want)
        fail_msg("%s: %d (%s), expected %d (%s)", what, s, sae_status_str(s), want,
                 sae_status_str(want));
    assert_null(t);
}

static void test_damaged_checkpoints(void **state)
{
    (void)state;
    char good[1024], bad[1024];
    snprintf(good, sizeof good, "%s", tmp_path("ckpt_good.safetensors"));
    snprintf(bad, sizeof bad, "%s", tmp_path("ckpt_bad.safetensors"));
    sae_trainer *t = fresh(STD_RESAMPLE, test_allocator());
    run_to(STD_RESAMPLE, t, 2);
    assert_sae_ok(sae_trainer_save(t, good));
    const int64_t P = t->n_params, F = t->cfg.F;
    sae_trainer_free(t);

    expect_load(tmp_path("ckpt_missing.safetensors"), SAE_ENOTFOUND, "missing file");
    FILE *f = fopen(bad, "wb");
    fputs("not a safetensors file at all", f);
    fclose(f);
    expect_load(bad, SAE_EFORMAT, "garbage");
    { /* the first half of a good file */
        FILE *in = fopen(good, "rb");
        fseek(in, 0, SEEK_END);
        long size = ftell(in);
        fseek(in, 0, SEEK_SET);
        char *buf = test_malloc((size_t)size);
        assert_int_equal(fread(buf, 1, (size_t)size, in), (size_t)size);
        fclose(in);
        FILE *out = fopen(bad, "wb");
        fwrite(buf, 1, (size_t)size / 2, out);
        fclose(out);
        test_free(buf);
        expect_load(bad, SAE_EFORMAT, "truncated");
    }

    float *block = test_malloc(sizeof(float) * (size_t)P);
    memset(block, 0, sizeof(float) * (size_t)P);
    int64_t *counts = test_calloc((size_t)F, sizeof(int64_t));
    const int64_t minus_one = -1;
    const uint8_t two = 2;
    const uint32_t five = 5;
    const float neg_scale = -2.0f;
    double wide[4] = {0};
    char *opt_missing = options_with(good, "lr", NULL);
    char *opt_enum = options_with(good, "mse", "9");
    char *opt_unknown = options_with(good, "future_option", "1");
    char *opt_int_number = options_with(good, "seed", "17");
    char *opt_bad_int = options_with(good, "d_sae", "\"32x\"");
    char *opt_bad_double = options_with(good, "lr", "\"0.001\"");
    char *opt_shape = options_with(good, "d_sae", "\"33\"");
    char *opt_range = options_with(good, "arch", "4294967296");
    const struct {
        const char *what;
        edit e;
        sae_status want;
    } cases[] = {
        {"not a checkpoint", {.meta_key = "format", .meta_value = "something.else"}, SAE_EFORMAT},
        {"no format", {.meta_key = "format"}, SAE_EFORMAT},
        {"newer version", {.meta_key = "format_version", .meta_value = "2"}, SAE_EUNSUPPORTED},
        {"bad version", {.meta_key = "format_version", .meta_value = "one"}, SAE_EFORMAT},
        {"no options", {.meta_key = "options"}, SAE_EFORMAT},
        {"options not JSON", {.meta_key = "options", .meta_value = "{\"lr\": "}, SAE_EFORMAT},
        {"option missing", {.meta_key = "options", .meta_value = opt_missing}, SAE_EFORMAT},
        {"unknown enum value", {.meta_key = "options", .meta_value = opt_enum}, SAE_EINVAL},
        {"unknown option", {.meta_key = "options", .meta_value = opt_unknown}, SAE_EUNSUPPORTED},
        {"64-bit option as number", {.meta_key = "options", .meta_value = opt_int_number},
         SAE_EFORMAT},
        {"bad integer string", {.meta_key = "options", .meta_value = opt_bad_int}, SAE_EFORMAT},
        {"double as string", {.meta_key = "options", .meta_value = opt_bad_double}, SAE_EFORMAT},
        {"int32 out of range", {.meta_key = "options", .meta_value = opt_range}, SAE_ENUMERIC},
        {"d_sae disagrees", {.meta_key = "options", .meta_value = opt_shape}, SAE_ESHAPE},
        {"param missing", {.tensor = "param", .drop = true}, SAE_EFORMAT},
        {"param as F64", REPLACE("param", SAE_DTYPE_F64, 1, 4, wide), SAE_EFORMAT},
        {"param too short", REPLACE("param", SAE_DTYPE_F32, 1, P - 1, block), SAE_ESHAPE},
        {"scalar as vector", REPLACE("step", SAE_DTYPE_I64, 1, 1, &minus_one), SAE_ESHAPE},
        {"extra tensor",
         {.tensor = "extra", .dtype = SAE_DTYPE_F32, .ndim = 1, .len = 4, .data = block,
          .add = true},
         SAE_EFORMAT},
        {"negative step", REPLACE("step", SAE_DTYPE_I64, 0, 1, &minus_one), SAE_ENUMERIC},
        {"b_dec_pending = 2", REPLACE("b_dec_pending", SAE_DTYPE_U8, 0, 1, &two), SAE_ENUMERIC},
        {"rng.buffered = 5", REPLACE("rng.buffered", SAE_DTYPE_U32, 0, 1, &five), SAE_ENUMERIC},
        {"negative scale", REPLACE("scale", SAE_DTYPE_F32, 0, 1, &neg_scale), SAE_ENUMERIC},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite(good, bad, &cases[i].e);
        expect_load(bad, cases[i].want, cases[i].what);
    }
    /* Values: NaN parameters, negative second moments or counters. */
    block[7] = NAN;
    rewrite(good, bad, &(edit)REPLACE("adam.m", SAE_DTYPE_F32, 1, P, block));
    expect_load(bad, SAE_ENUMERIC, "NaN in adam.m");
    block[7] = 0, block[P - 1] = -1e-3f;
    rewrite(good, bad, &(edit)REPLACE("adam.v", SAE_DTYPE_F32, 1, P, block));
    expect_load(bad, SAE_ENUMERIC, "negative adam.v");
    counts[3] = -4;
    rewrite(good, bad, &(edit)REPLACE("since_fired", SAE_DTYPE_I64, 1, F, counts));
    expect_load(bad, SAE_ENUMERIC, "negative counter");
    /* And the good one still loads. */
    rewrite(good, bad, &(edit){0});
    assert_sae_ok(sae_trainer_load(&t, bad, test_allocator()));
    sae_trainer_free(t);

    char *opts[] = {opt_missing, opt_enum, opt_unknown, opt_int_number, opt_bad_int,
                    opt_bad_double, opt_shape, opt_range};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cJSON_free(opts[i]);
    test_free(block), test_free(counts);
    assert_int_equal(sae_trainer_save(NULL, good), SAE_EINVAL);
    assert_int_equal(sae_trainer_load(NULL, good, NULL), SAE_EINVAL);
    sae_trainer *dummy = fresh(TOPK_DL, test_allocator());
    assert_int_equal(sae_trainer_save(dummy, tmp_path("no_such_dir/ckpt.safetensors")), SAE_EIO);
    sae_trainer_free(dummy);
}

/* ---- kill test ------------------------------------------------------------------------------ */

#define KILL_ROUNDS 30
#define KILL_CHILD_TARGET 100000 /* never reached: every child is killed */

/* The child: resume from `path` (or start), train towards `target` saving after every step;
 * it announces each save on `signal_fd` so that the parent can aim. */
static int child_main(const char *path, int64_t target, int signal_fd)
{
    sae_trainer *t = NULL;
    sae_status s = sae_trainer_load(&t, path, NULL);
    if (s == SAE_ENOTFOUND) {
        t = fresh(KILL_MODEL, NULL);
        s = SAE_OK;
    } else if (s != SAE_OK) {
        fprintf(stderr, "child: %s\n", sae_last_error());
        return 3;
    }
    const config *k = &configs[KILL_MODEL];
    float *x = malloc(sizeof(float) * (size_t)(k->n * k->d));
    while (s == SAE_OK && sae_trainer_steps(t) < target) {
        data(KILL_MODEL, sae_trainer_steps(t), x);
        s = sae_trainer_step(t, k->n, x, k->d, NULL);
        if (s == SAE_OK && !kill_announce(signal_fd))
            s = SAE_EIO;
        if (s == SAE_OK)
            s = sae_trainer_save(t, path);
    }
    if (s != SAE_OK)
        fprintf(stderr, "child: step %lld: %d %s\n", (long long)sae_trainer_steps(t), s,
                sae_last_error());
    free(x);
    sae_trainer_free(t);
    return s == SAE_OK ? 0 : 4;
}

/* Run the child on `path` towards `target` steps to its end; its wall time. */
static double run_child(const char *path, int64_t target)
{
    char arg[32];
    snprintf(arg, sizeof arg, "%lld", (long long)target);
    return kill_run_child((const char *[]){path, arg, NULL});
}

static void test_kill_during_save(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s", tmp_path("ckpt_kill.safetensors"));
    unlink(path);
    kill_remove_temporaries(path);
    const double start = kill_now();
    /* Calibration on this machine and build (Release or sanitizers): a child's start-up (exec
     * and load), one step + save, one save. The checkpoint then holds step 4. */
    run_child(path, 2);
    const double startup = run_child(path, 2);
    const double cycle = fmax((run_child(path, 4) - startup) / 2, 1e-3);
    sae_trainer *probe = NULL;
    assert_sae_ok(sae_trainer_load(&probe, path, test_allocator()));
    const double t0 = kill_now();
    assert_sae_ok(sae_trainer_save(probe, tmp_path("ckpt_probe.safetensors")));
    const kill_timing timing = {startup, cycle, kill_now() - t0};
    sae_trainer_free(probe);
    unlink(tmp_path("ckpt_probe.safetensors"));

    sae_rng rng;
    sae_rng_init(&rng, 2024, 0);
    int64_t last_step = 4;
    char target_arg[32];
    snprintf(target_arg, sizeof target_arg, "%d", KILL_CHILD_TARGET);
    for (int round = 0; round < KILL_ROUNDS; round++) {
        kill_round((const char *[]){path, target_arg, NULL}, round, &timing, &rng);
        sae_trainer *t = NULL;
        if (sae_trainer_load(&t, path, test_allocator()) != SAE_OK)
            fail_msg("round %d: the checkpoint does not load: %s", round, sae_last_error());
        assert_true(sae_trainer_steps(t) >= last_step);
        last_step = sae_trainer_steps(t);
        sae_trainer_free(t);
    }
    const int in_write = kill_remove_temporaries(path);
    /* Resume a few steps further here, and compare with the uninterrupted run. */
    const int64_t target = last_step + 3;
    sae_trainer *resumed = NULL;
    assert_sae_ok(sae_trainer_load(&resumed, path, test_allocator()));
    run_to(KILL_MODEL, resumed, target);
    sae_trainer *straight = fresh(KILL_MODEL, test_allocator());
    run_to(KILL_MODEL, straight, target);
    assert_same_state(straight, resumed);
    printf("    start-up %.0f ms, step + save %.0f ms, save %.0f ms: %d kills (%d inside a "
           "write); the children reached step %lld; %.1f s\n", 1e3 * startup, 1e3 * cycle,
           1e3 * timing.write, KILL_ROUNDS, in_write, (long long)last_step, kill_now() - start);
    assert_true(in_write >= 1); /* typically a third to two thirds of the kills */
    sae_trainer_free(straight), sae_trainer_free(resumed);
    unlink(path);
}

int main(int argc, char **argv)
{
    int fd = -1;
    if (kill_is_child(argc, argv, 2, &fd))
        return child_main(argv[2], strtoll(argv[3], NULL, 10), fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_file_layout),
        cmocka_unit_test(test_damaged_checkpoints),
        cmocka_unit_test(test_kill_during_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
