/*
 * test_torch_formats.c: the PyTorch .pt reader (lib/io/torch_pt.c) and the formats built on it:
 * dictionary_learning (ae.pt + config.json), openai/sparse_autoencoder and sae-icm state dicts.
 *
 * Oracle: ../shared/oracle/native/<case>/ holds each SAE as its library saved it, with input.x
 * and the library's own outputs; ../shared/oracle/<case>.safetensors holds the same weights as
 * param.<state-dict name>, which the loaded dictionary must equal exactly (mapped to the
 * canonical layout). Malformed files are made here, in C, by rewriting the oracle archives with
 * libzip.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "test_util.h"

#include "io/io_internal.h"
#include "io/torch_pt.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static char *native_path(const char *name, const char *file)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/oracle/native/%s%s%s", SAE_SHARED_DIR, name, file ? "/" : "",
             file ? file : "");
    return buf;
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = 0;
    *size = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, size, f), size);
    fclose(f);
}

/* A fresh scratch directory tmp/<name> (files in it are removed first). */
static void make_dir(const char *name, char out[1024])
{
    snprintf(out, 1024, "%s", tmp_path(name));
    mkdir(out, 0755);
    const char *files[] = {"ae.pt", "config.json", "x.pt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        unlink(p);
    }
}

static void join(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

/* The entries of a zip archive, in order. */
typedef struct zentry {
    char name[256];
    unsigned char *data;
    size_t size;
} zentry;

typedef struct zarchive {
    zentry e[32];
    int n;
} zarchive;

static void zip_read_all(const char *path, zarchive *z)
{
    int err = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &err);
    if (!za)
        fail_msg("zip_open %s: %d", path, err);
    z->n = (int)zip_get_num_entries(za, 0);
    assert_true(z->n <= 32);
    for (int i = 0; i < z->n; i++) {
        zip_stat_t st;
        assert_int_equal(zip_stat_index(za, (zip_uint64_t)i, 0, &st), 0);
        snprintf(z->e[i].name, sizeof z->e[i].name, "%s", st.name);
        z->e[i].size = (size_t)st.size;
        z->e[i].data = malloc(st.size + 1);
        zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)i, 0);
        assert_non_null(zf);
        assert_int_equal(zip_fread(zf, z->e[i].data, st.size), (zip_int64_t)st.size);
        zip_fclose(zf);
    }
    zip_discard(za);
}

static void zip_free_all(zarchive *z)
{
    for (int i = 0; i < z->n; i++)
        free(z->e[i].data);
    z->n = 0;
}

static zentry *zip_find(zarchive *z, const char *suffix)
{
    size_t ls = strlen(suffix);
    for (int i = 0; i < z->n; i++) {
        size_t ln = strlen(z->e[i].name);
        if (ln >= ls && strcmp(z->e[i].name + ln - ls, suffix) == 0)
            return &z->e[i];
    }
    fail_msg("no entry *%s", suffix);
    return NULL;
}

/* Write the entries (stored, like torch.save) to `path`; entries with data NULL are skipped. */
static void zip_write_all(const char *path, const zarchive *z)
{
    int err = 0;
    unlink(path);
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!za)
        fail_msg("zip_open(create) %s: %d", path, err);
    for (int i = 0; i < z->n; i++) {
        if (!z->e[i].data)
            continue;
        zip_source_t *src = zip_source_buffer(za, z->e[i].data, z->e[i].size, 0);
        assert_non_null(src);
        zip_int64_t idx = zip_file_add(za, z->e[i].name, src, ZIP_FL_ENC_UTF_8);
        assert_true(idx >= 0);
        assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0), 0);
    }
    if (zip_close(za) != 0)
        fail_msg("zip_close %s: %s", path, zip_strerror(za));
}

/* Replace the one occurrence of `pat` in entry `e` by `rep` (lengths may differ). */
static void patch(zentry *e, const void *pat, size_t np, const void *rep, size_t nr)
{
    unsigned char *hit = NULL;
    for (size_t i = 0; i + np <= e->size; i++)
        if (memcmp(e->data + i, pat, np) == 0) {
            if (hit)
                fail_msg("pattern occurs twice in %s", e->name);
            hit = e->data + i;
        }
    if (!hit)
        fail_msg("pattern not found in %s", e->name);
    size_t off = (size_t)(hit - e->data), n = e->size - np + nr;
    unsigned char *d = malloc(n + 1);
    memcpy(d, e->data, off);
    memcpy(d + off, rep, nr);
    memcpy(d + off + nr, e->data + off + np, e->size - off - np);
    free(e->data);
    e->data = d;
    e->size = n;
}

/* A dictionary_learning folder tmp/<name> with ae.pt from `z` (or the oracle's when NULL) and
 * config.json = the oracle's with `from` replaced by `to` (when non-NULL). */
static void make_dl_dir(const char *name, const char *src_case, const zarchive *z,
                        const char *from, const char *to, char dir[1024])
{
    make_dir(name, dir);
    char p[1200];
    join(p, sizeof p, dir, "ae.pt");
    if (z) {
        zip_write_all(p, z);
    } else {
        size_t n;
        unsigned char *b = read_all(native_path(src_case, "ae.pt"), &n);
        write_all(p, b, n);
        free(b);
    }
    size_t n;
    char *cfg = (char *)read_all(native_path(src_case, "config.json"), &n);
    if (from) {
        char *hit = strstr(cfg, from);
        if (!hit)
            fail_msg("config.json of %s has no %s", src_case, from);
        char *out = malloc(n + strlen(to) + 1);
        size_t off = (size_t)(hit - cfg);
        memcpy(out, cfg, off);
        strcpy(out + off, to);
        strcat(out, hit + strlen(from));
        free(cfg);
        cfg = out;
    }
    join(p, sizeof p, dir, "config.json");
    write_all(p, cfg, strlen(cfg));
    free(cfg);
}

#define assert_msg_contains(needle)                                                            \
    do {                                                                                       \
        if (!strstr(sae_last_error(), (needle)))                                               \
            fail_msg("message \"%s\" does not mention \"%s\"", sae_last_error(), (needle));    \
    } while (0)

static sae_load_options test_options(int64_t k)
{
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    o.allocator = test_allocator();
    o.k = k;
    return o;
}

/* ---- the .pt reader -------------------------------------------------------------------------- */

static void test_pt_reader_topk(void **state)
{
    (void)state;
    sae__pt_file *f = NULL;
    assert_sae_ok(sae__pt_open(&f, native_path("dl_topk_k4_d32_s128_b16", "ae.pt"),
                               test_allocator()));
    sae__tensor_set ts = sae__pt_tensors(f);
    assert_int_equal(ts.count, 6);
    const char *order[] = {"b_dec", "k", "threshold", "decoder.weight", "encoder.weight",
                           "encoder.bias"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(ts.items[i].name, order[i]);
    const sae_tensor_info *k = sae__tensors_find(&ts, "k");
    assert_int_equal(k->dtype, SAE_DTYPE_I32);
    assert_int_equal(k->ndim, 0);
    assert_int_equal(k->numel, 1);
    assert_int_equal(*(const int32_t *)k->data, 4);
    const sae_tensor_info *t = sae__tensors_find(&ts, "threshold");
    assert_int_equal(t->dtype, SAE_DTYPE_F32);
    assert_true(*(const float *)t->data == -1.0f);
    /* encoder.weight is saved as a transposed view (stride [1, 128]): read densely. */
    const sae_tensor_info *e = sae__tensors_find(&ts, "encoder.weight");
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], 128);
    assert_int_equal(e->shape[1], 32);
    assert_int_equal(e->nbytes, 128 * 32 * 4);
    int64_t n = 0;
    float *want = load_tensor_f32(shared_path("oracle/dl_topk_k4_d32_s128_b16.safetensors"),
                                  "param.encoder.weight", &n, NULL, NULL);
    assert_int_equal(n, 4096);
    assert_memory_equal(e->data, want, 4096 * sizeof(float));
    test_free(want);
    assert_false(sae__pt_has_key(f, "activation"));
    assert_null(sae__pt_get_string(f, "b_dec", NULL)); /* a tensor, not a string */
    sae__pt_close(f);
    sae__pt_close(NULL);
}

static void test_pt_reader_openai_values(void **state)
{
    (void)state;
    sae__pt_file *f = NULL;
    assert_sae_ok(sae__pt_open(&f, native_path("openai_topk_k4_ln_d32_s128_b16", "0.pt"),
                               test_allocator()));
    assert_string_equal(sae__pt_get_string(f, "activation", NULL), "TopK");
    assert_string_equal(sae__pt_get_string(f, "activation_state_dict", "postact_fn"), "ReLU");
    int64_t k = 0;
    assert_sae_ok(sae__pt_get_int(f, "activation_state_dict", "k", &k));
    assert_int_equal(k, 4);
    assert_int_equal(sae__pt_get_int(f, "activation", NULL, &k), SAE_EFORMAT);
    assert_msg_contains("activation");
    assert_int_equal(sae__pt_get_int(f, "nope", NULL, &k), SAE_ENOTFOUND);
    assert_int_equal(sae__pt_get_int(f, "activation_state_dict", "nope", &k), SAE_ENOTFOUND);
    assert_null(sae__pt_get_string(f, "activation", "k")); /* not a dict */
    sae__tensor_set ts = sae__pt_tensors(f);
    assert_int_equal(ts.count, 7);
    const sae_tensor_info *s = sae__tensors_find(&ts, "stats_last_nonzero");
    assert_int_equal(s->dtype, SAE_DTYPE_I64);
    assert_int_equal(s->shape[0], 128);
    assert_string_equal(ts.origin, native_path("openai_topk_k4_ln_d32_s128_b16", "0.pt"));
    sae__pt_close(f);

    assert_sae_ok(sae__pt_open(&f, native_path("openai_relu_d16_s64_b16", "0.pt"),
                               test_allocator()));
    assert_string_equal(sae__pt_get_string(f, "activation", NULL), "ReLU");
    assert_true(sae__pt_has_key(f, "activation_state_dict"));
    assert_int_equal(sae__pt_get_int(f, "activation_state_dict", "k", &k), SAE_ENOTFOUND);
    sae__pt_close(f);
}

/* ---- the oracle cases ------------------------------------------------------------------------ */

enum { DL, OPENAI, ICM };

typedef struct mapped {
    const char *stored; /* state-dict name (param.<name> in the oracle), NULL: absent */
    bool transpose;     /* stored in nn.Linear layout */
} mapped;

typedef struct case_spec {
    const char *name;
    const char *file; /* in the native folder; NULL: load the folder (dictionary_learning) */
    int kind;
    int32_t arch;
    int64_t d_in, d_sae, k;
    uint32_t flags;
    int32_t input_norm;
    int64_t opt_k;
    mapped W_enc, b_enc, W_dec, b_dec, threshold, b_gate, b_mag, r_mag;
    const char *pre_name; /* expected tensor compared with `pre` (NULL: none) */
    bool pre_relu;        /* the expected tensor is ReLU(pre) */
} case_spec;

static const case_spec cases[] = {
    {"dl_autoencoder_d32_s128_b16", NULL, DL, SAE_ARCH_STANDARD, 32, 128, 0, 0, SAE_NORM_NONE, 0,
     {"encoder.weight", true}, {"encoder.bias", false}, {"decoder.weight", true},
     {"bias", false}, {0}, {0}, {0}, {0}, "pre_activation", false},
    {"dl_gated_d32_s128_b16", NULL, DL, SAE_ARCH_GATED, 32, 128, 0, 0, SAE_NORM_NONE, 0,
     {"encoder.weight", true}, {0}, {"decoder.weight", true}, {"decoder_bias", false}, {0},
     {"gate_bias", false}, {"mag_bias", false}, {"r_mag", false}, NULL, false},
    {"dl_jumprelu_d32_s128_b16", NULL, DL, SAE_ARCH_JUMPRELU, 32, 128, 0,
     SAE_DICT_NO_B_DEC_INPUT, SAE_NORM_NONE, 0, {"W_enc", false}, {"b_enc", false},
     {"W_dec", false}, {"b_dec", false}, {"threshold", false}, {0}, {0}, {0}, "pre_activation",
     false},
    {"dl_topk_k4_d32_s128_b16", NULL, DL, SAE_ARCH_TOPK, 32, 128, 4, SAE_DICT_RELU_BEFORE_TOPK,
     SAE_NORM_NONE, 0, {"encoder.weight", true}, {"encoder.bias", false},
     {"decoder.weight", true}, {"b_dec", false}, {0}, {0}, {0}, {0}, "pre_topk_relu", true},
    {"openai_relu_d16_s64_b16", "0.pt", OPENAI, SAE_ARCH_STANDARD, 16, 64, 0, 0, SAE_NORM_NONE,
     0, {"encoder.weight", true}, {"latent_bias", false}, {"decoder.weight", true},
     {"pre_bias", false}, {0}, {0}, {0}, {0}, "pre_activation", false},
    {"openai_topk_k4_ln_d32_s128_b16", "0.pt", OPENAI, SAE_ARCH_TOPK, 32, 128, 4, 0,
     SAE_NORM_LAYER_NORM, 0, {"encoder.weight", true}, {"latent_bias", false},
     {"decoder.weight", true}, {"pre_bias", false}, {0}, {0}, {0}, {0}, "pre_activation", false},
    {"icm_topk_k8_d32_s128_b2x8", "sae_state_23453.pt", ICM, SAE_ARCH_TOPK, 32, 128, 8,
     SAE_DICT_RELU_BEFORE_TOPK, SAE_NORM_NONE, 8, {"W_enc.weight", true}, {"W_enc.bias", false},
     {"W_dec.weight", true}, {"W_dec.bias", false}, {0}, {0}, {0}, {0}, "pre_topk_relu", true},
};

static sae_status load_case(const case_spec *c, sae_dict **d, int64_t k)
{
    sae_load_options o = test_options(k);
    if (c->kind == DL)
        return sae__load_dictionary_learning(d, native_path(c->name, c->file), &o);
    return sae__load_torch_state_dict(d, native_path(c->name, c->file),
                                      c->kind == OPENAI ? SAE_FORMAT_OPENAI : SAE_FORMAT_SAE_ICM,
                                      &o);
}

/* got (canonical) == param.<m.stored> of the oracle, transposed when m.transpose. */
static void check_weight(const case_spec *c, const char *what, const float *got, mapped m,
                         int64_t rows, int64_t cols)
{
    if (!m.stored) {
        if (got)
            fail_msg("%s: %s should be absent", c->name, what);
        return;
    }
    if (!got)
        fail_msg("%s: %s is missing", c->name, what);
    char file[256], name[128];
    snprintf(file, sizeof file, "oracle/%s.safetensors", c->name);
    snprintf(name, sizeof name, "param.%s", m.stored);
    int64_t n = 0;
    float *want = load_tensor_f32(shared_path(file), name, &n, NULL, NULL);
    assert_int_equal(n, rows * cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float w = m.transpose ? want[j * rows + i] : want[i * cols + j];
            if (got[i * cols + j] != w)
                fail_msg("%s: %s[%lld, %lld] = %g, stored %s gives %g", c->name, what,
                         (long long)i, (long long)j, (double)got[i * cols + j], name, (double)w);
        }
    test_free(want);
}

static void check_forward(const case_spec *c, const sae_dict *d)
{
    char in[4096], ex[4096];
    snprintf(in, sizeof in, "%s", native_path(c->name, "input.safetensors"));
    snprintf(ex, sizeof ex, "%s", native_path(c->name, "expected.safetensors"));
    int64_t nx = 0, shape[SAE_MAX_DIMS];
    float *x = load_tensor_f32(in, "x", &nx, shape, NULL);
    int64_t n = shape[0], D = c->d_in, F = c->d_sae;
    float *f = test_malloc(sizeof(float) * (size_t)(n * F));
    float *pre = test_malloc(sizeof(float) * (size_t)(n * F));
    float *xh = test_malloc(sizeof(float) * (size_t)(n * D));
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.allocator = test_allocator();
    eo.n_threads = 1;
    sae_encoder *enc = NULL;
    assert_sae_ok(sae_encoder_create(&enc, d, &eo));
    assert_sae_ok(sae_encoder_encode(enc, n, x, D, f, F, pre, F));
    assert_sae_ok(sae_encoder_decode(enc, n, f, F, xh, D));
    float *want = load_tensor_f32(ex, "features", NULL, NULL, NULL);
    assert_close_f32(f, want, n * F, 1e-5, 1e-5, "features");
    test_free(want);
    want = load_tensor_f32(ex, "reconstruction", NULL, NULL, NULL);
    assert_close_f32(xh, want, n * D, 1e-5, 1e-5, "reconstruction");
    test_free(want);
    if (c->pre_name) {
        if (c->pre_relu)
            for (int64_t i = 0; i < n * F; i++)
                pre[i] = pre[i] > 0 ? pre[i] : 0;
        want = load_tensor_f32(ex, c->pre_name, NULL, NULL, NULL);
        assert_close_f32(pre, want, n * F, 1e-5, 1e-5, c->pre_name);
        test_free(want);
    }
    /* The same through reconstruct (the sparse path). */
    assert_sae_ok(sae_encoder_reconstruct(enc, n, x, D, xh, D, NULL, 0));
    want = load_tensor_f32(ex, "reconstruction", NULL, NULL, NULL);
    assert_close_f32(xh, want, n * D, 1e-5, 1e-5, "reconstruction (reconstruct)");
    test_free(want);
    sae_encoder_free(enc);
    test_free(x);
    test_free(f);
    test_free(pre);
    test_free(xh);
}

static void test_case(void **state)
{
    const case_spec *c = *state;
    sae_dict *d = NULL;
    assert_sae_ok(load_case(c, &d, c->opt_k));
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    assert_sae_ok(sae_dict_get_config(d, &cfg));
    assert_int_equal(cfg.arch, c->arch);
    assert_int_equal(cfg.d_in, c->d_in);
    assert_int_equal(cfg.d_sae, c->d_sae);
    assert_int_equal(cfg.k, c->k);
    assert_int_equal(cfg.flags, c->flags);
    assert_int_equal(cfg.input_norm, c->input_norm);
    if (c->kind == DL) {
        assert_string_equal(cfg.model_name, "none"); /* trainer.lm_name */
        assert_null(cfg.hook_name);                   /* trainer.submodule_name: null */
    } else {
        assert_null(cfg.model_name);
        assert_null(cfg.hook_name);
    }
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(d, &w));
    int64_t D = c->d_in, F = c->d_sae;
    check_weight(c, "W_enc", w.W_enc, c->W_enc, D, F);
    check_weight(c, "b_enc", w.b_enc, c->b_enc, 1, F);
    check_weight(c, "W_dec", w.W_dec, c->W_dec, F, D);
    check_weight(c, "b_dec", w.b_dec, c->b_dec, 1, D);
    if (c->kind == DL && c->arch == SAE_ARCH_TOPK) {
        /* The scalar threshold (-1: not set by training) becomes a vector for threshold mode. */
        assert_non_null(w.threshold);
        for (int64_t j = 0; j < F; j++)
            assert_true(w.threshold[j] == -1.0f);
    } else {
        check_weight(c, "threshold", w.threshold, c->threshold, 1, F);
    }
    check_weight(c, "b_gate", w.b_gate, c->b_gate, 1, F);
    check_weight(c, "b_mag", w.b_mag, c->b_mag, 1, F);
    check_weight(c, "r_mag", w.r_mag, c->r_mag, 1, F);
    check_forward(c, d);
    sae_dict_free(d);
}

/* dictionary_learning through the ae.pt path (config.json beside it). */
static void test_dl_file_path(void **state)
{
    (void)state;
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    assert_sae_ok(sae__load_dictionary_learning(
        &d, native_path("dl_jumprelu_d32_s128_b16", "ae.pt"), &o));
    assert_int_equal(sae_dict_arch(d), SAE_ARCH_JUMPRELU);
    sae_dict_free(d);
    /* NULL options: defaults. */
    assert_sae_ok(sae__load_dictionary_learning(&d, native_path("dl_gated_d32_s128_b16", NULL),
                                                NULL));
    assert_int_equal(sae_dict_arch(d), SAE_ARCH_GATED);
    sae_dict_free(d);
}

static void test_detect(void **state)
{
    (void)state;
    int32_t fmt = -1;
    assert_sae_ok(sae__detect_torch_format(native_path("openai_relu_d16_s64_b16", "0.pt"), &fmt));
    assert_int_equal(fmt, SAE_FORMAT_OPENAI);
    assert_sae_ok(sae__detect_torch_format(
        native_path("icm_topk_k8_d32_s128_b2x8", "sae_state_23453.pt"), &fmt));
    assert_int_equal(fmt, SAE_FORMAT_SAE_ICM);
    assert_int_equal(sae__detect_torch_format(native_path("dl_topk_k4_d32_s128_b16", "ae.pt"),
                                              &fmt),
                     SAE_EFORMAT);
    assert_msg_contains("config.json");
    /* SAE_FORMAT_AUTO in the loader detects too. */
    sae_load_options o = test_options(8);
    sae_dict *d = NULL;
    assert_sae_ok(sae__load_torch_state_dict(
        &d, native_path("icm_topk_k8_d32_s128_b2x8", "sae_state_23453.pt"), SAE_FORMAT_AUTO, &o));
    assert_int_equal(sae_dict_k(d), 8);
    sae_dict_free(d);
}

static void test_k_override(void **state)
{
    (void)state;
    sae_dict *d = NULL;
    assert_sae_ok(load_case(&cases[5], &d, 2)); /* openai TopK */
    assert_int_equal(sae_dict_k(d), 2);
    sae_dict_free(d);
    assert_sae_ok(load_case(&cases[3], &d, 3)); /* dictionary_learning TopK */
    assert_int_equal(sae_dict_k(d), 3);
    sae_dict_free(d);
    assert_int_equal(load_case(&cases[0], &d, 3), SAE_EINVAL); /* AutoEncoder has no k */
    assert_null(d);
    assert_int_equal(load_case(&cases[4], &d, 3), SAE_EINVAL); /* openai ReLU has no k */
    assert_int_equal(load_case(&cases[6], &d, 129), SAE_EINVAL); /* k > d_sae */
    assert_null(d);
}

/* ---- malformed files ------------------------------------------------------------------------- */

static void test_truncated(void **state)
{
    (void)state;
    size_t n;
    unsigned char *b = read_all(native_path("dl_autoencoder_d32_s128_b16", "ae.pt"), &n);
    char dir[1024], p[1200];
    make_dl_dir("pt_truncated", "dl_autoencoder_d32_s128_b16", NULL, NULL, NULL, dir);
    join(p, sizeof p, dir, "ae.pt");
    const size_t cuts[] = {0, 10, 100, 20000, n - 10};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_all(p, b, cuts[i]);
        sae_load_options o = test_options(0);
        sae_dict *d = NULL;
        assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EFORMAT);
        assert_null(d);
        assert_msg_contains("ae.pt");
    }
    free(b);
}

static void test_no_pickle(void **state)
{
    (void)state;
    zarchive z;
    zip_read_all(native_path("dl_autoencoder_d32_s128_b16", "ae.pt"), &z);
    zentry *pkl = zip_find(&z, "/data.pkl");
    free(pkl->data);
    pkl->data = NULL; /* skipped by zip_write_all */
    char dir[1024];
    make_dl_dir("pt_no_pickle", "dl_autoencoder_d32_s128_b16", &z, NULL, NULL, dir);
    zip_free_all(&z);
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EFORMAT);
    assert_msg_contains("data.pkl");
}

static sae_status load_patched_dl(const char *tag, const char *src_case, const void *pat,
                                  size_t np, const void *rep, size_t nr)
{
    zarchive z;
    zip_read_all(native_path(src_case, "ae.pt"), &z);
    patch(zip_find(&z, "/data.pkl"), pat, np, rep, nr);
    char dir[1024];
    make_dl_dir(tag, src_case, &z, NULL, NULL, dir);
    zip_free_all(&z);
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    sae_status s = sae__load_dictionary_learning(&d, dir, &o);
    sae_dict_free(d);
    return s;
}

static void test_unsupported_global(void **state)
{
    (void)state;
    static const char pat[] = "ccollections\nOrderedDict\n", rep[] = "cos\nsystem\n";
    assert_int_equal(load_patched_dl("pt_global", "dl_autoencoder_d32_s128_b16", pat,
                                     sizeof pat - 1, rep, sizeof rep - 1),
                     SAE_EUNSUPPORTED);
    assert_msg_contains("os.system");
    assert_msg_contains("ae/data.pkl");
}

static void test_unsupported_opcode(void **state)
{
    (void)state;
    /* BINUNICODE 'bias' -> BINSTRING 'bias' (same argument layout, a protocol-0/1 opcode). */
    static const unsigned char pat[] = {'X', 4, 0, 0, 0, 'b', 'i', 'a', 's'};
    static const unsigned char rep[] = {'T', 4, 0, 0, 0, 'b', 'i', 'a', 's'};
    assert_int_equal(load_patched_dl("pt_opcode", "dl_autoencoder_d32_s128_b16", pat, sizeof pat,
                                     rep, sizeof rep),
                     SAE_EUNSUPPORTED);
    assert_msg_contains("BINSTRING");
    /* An undefined opcode byte. */
    static const unsigned char rep2[] = {0xff, 4, 0, 0, 0, 'b', 'i', 'a', 's'};
    assert_int_equal(load_patched_dl("pt_opcode", "dl_autoencoder_d32_s128_b16", pat, sizeof pat,
                                     rep2, sizeof rep2),
                     SAE_EFORMAT);
    assert_msg_contains("0xff");
}

static void test_stride_out_of_storage(void **state)
{
    (void)state;
    /* encoder.weight [128, 32] stride (1, 128) -> (1, 200): reaches past its storage. */
    static const unsigned char pat[] = {'K', 1, 'K', 128, 0x86};
    static const unsigned char rep[] = {'K', 1, 'K', 200, 0x86};
    assert_int_equal(load_patched_dl("pt_stride", "dl_autoencoder_d32_s128_b16", pat, sizeof pat,
                                     rep, sizeof rep),
                     SAE_EFORMAT);
    assert_msg_contains("encoder.weight");
}

static void test_short_storage(void **state)
{
    (void)state;
    zarchive z;
    zip_read_all(native_path("dl_autoencoder_d32_s128_b16", "ae.pt"), &z);
    zip_find(&z, "/data/1")->size = 100; /* encoder.weight's storage: 16384 bytes */
    char dir[1024];
    make_dl_dir("pt_short", "dl_autoencoder_d32_s128_b16", &z, NULL, NULL, dir);
    zip_free_all(&z);
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EFORMAT);
    assert_msg_contains("data/1");
}

static void test_corrupt_crc(void **state)
{
    (void)state;
    size_t n;
    unsigned char *b = read_all(native_path("dl_autoencoder_d32_s128_b16", "ae.pt"), &n);
    b[1000] ^= 0x55; /* inside ae/data/1 (stored at 656..17040) */
    char dir[1024], p[1200];
    make_dl_dir("pt_crc", "dl_autoencoder_d32_s128_b16", NULL, NULL, NULL, dir);
    join(p, sizeof p, dir, "ae.pt");
    write_all(p, b, n);
    free(b);
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EFORMAT);
    assert_msg_contains("data/1");
}

static void test_shape_vs_config(void **state)
{
    (void)state;
    char dir[1024];
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    make_dl_dir("pt_shape", "dl_topk_k4_d32_s128_b16", NULL, "\"dict_size\": 128",
                "\"dict_size\": 64", dir);
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_ESHAPE);
    assert_msg_contains("encoder.weight");
    assert_msg_contains("[64, 32]");
    make_dl_dir("pt_shape", "dl_jumprelu_d32_s128_b16", NULL, "\"activation_dim\": 32",
                "\"activation_dim\": 128", dir);
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_ESHAPE);
    assert_msg_contains("W_enc");
    /* The wrong class for the tensors. */
    make_dl_dir("pt_shape", "dl_topk_k4_d32_s128_b16", NULL, "\"AutoEncoderTopK\"",
                "\"AutoEncoder\"", dir);
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EFORMAT);
    assert_msg_contains("dict_class");
    /* An unknown class. */
    make_dl_dir("pt_shape", "dl_topk_k4_d32_s128_b16", NULL, "\"AutoEncoderTopK\"",
                "\"CrossCoder\"", dir);
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EUNSUPPORTED);
    assert_msg_contains("CrossCoder");
    /* config.json's k must agree with the k stored in ae.pt. */
    make_dl_dir("pt_shape", "dl_topk_k4_d32_s128_b16", NULL, "\"k\": 4", "\"k\": 5", dir);
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EFORMAT);
    assert_msg_contains("k = 5");
    /* BatchTopKSAE: same tensors, inference by the threshold (-1 here: ReLU). */
    make_dl_dir("pt_shape", "dl_topk_k4_d32_s128_b16", NULL, "\"AutoEncoderTopK\"",
                "\"BatchTopKSAE\"", dir);
    assert_sae_ok(sae__load_dictionary_learning(&d, dir, &o));
    assert_int_equal(sae_dict_arch(d), SAE_ARCH_BATCHTOPK);
    assert_int_equal(sae_dict_k(d), 4);
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(d, &w));
    assert_non_null(w.threshold);
    assert_true(w.threshold[0] == -1.0f && w.threshold[127] == -1.0f);
    sae_dict_free(d);
}

static void test_missing_files(void **state)
{
    (void)state;
    char dir[1024], p[1200];
    make_dir("pt_no_config", dir);
    size_t n;
    unsigned char *b = read_all(native_path("dl_gated_d32_s128_b16", "ae.pt"), &n);
    join(p, sizeof p, dir, "ae.pt");
    write_all(p, b, n);
    free(b);
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_ENOTFOUND);
    assert_msg_contains("config.json");
    assert_int_equal(sae__load_dictionary_learning(&d, p, &o), SAE_ENOTFOUND);
    assert_msg_contains("config.json");
    make_dir("pt_empty", dir);
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_ENOTFOUND);
    assert_msg_contains("ae.pt");
    join(p, sizeof p, dir, "x.pt");
    assert_int_equal(sae__load_torch_state_dict(&d, p, SAE_FORMAT_OPENAI, &o), SAE_ENOTFOUND);
    /* Not a zip at all; a legacy (bare pickle) torch file. */
    write_all(p, "{\"trainer\": {}}", 15);
    assert_int_equal(sae__load_torch_state_dict(&d, p, SAE_FORMAT_OPENAI, &o), SAE_EFORMAT);
    write_all(p, "\x80\x02\x8a\x0a", 4);
    assert_int_equal(sae__load_torch_state_dict(&d, p, SAE_FORMAT_OPENAI, &o), SAE_EUNSUPPORTED);
    assert_msg_contains("legacy");
    assert_null(d);
}

static void test_icm_without_k(void **state)
{
    (void)state;
    sae_dict *d = NULL;
    assert_int_equal(load_case(&cases[6], &d, 0), SAE_EINVAL);
    assert_null(d);
    assert_msg_contains("sae_load_options.k");
}

/* openai with the wrong tensor shapes: d and n come from pre_bias / latent_bias. */
static void test_openai_shape(void **state)
{
    (void)state;
    zarchive z;
    zip_read_all(native_path("openai_relu_d16_s64_b16", "0.pt"), &z);
    /* Swap the names of encoder.weight [64, 16] and decoder.weight [16, 64]. */
    zentry *pkl = zip_find(&z, "/data.pkl");
    patch(pkl, "encoder.weight", 14, "encoder.WEIGHT", 14);
    patch(pkl, "decoder.weight", 14, "encoder.weight", 14);
    patch(pkl, "encoder.WEIGHT", 14, "decoder.weight", 14);
    char dir[1024], p[1200];
    make_dir("pt_openai", dir);
    join(p, sizeof p, dir, "x.pt");
    zip_write_all(p, &z);
    zip_free_all(&z);
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    assert_int_equal(sae__load_torch_state_dict(&d, p, SAE_FORMAT_OPENAI, &o), SAE_ESHAPE);
    assert_msg_contains("weight");
    assert_null(d);
}

/* ---- handcrafted pickles --------------------------------------------------------------------- */

typedef struct pkb {
    unsigned char b[8192];
    size_t n;
} pkb;

static void pk_raw(pkb *p, const void *d, size_t n)
{
    assert_true(p->n + n <= sizeof p->b);
    memcpy(p->b + p->n, d, n);
    p->n += n;
}

static void pk_op(pkb *p, unsigned op)
{
    unsigned char c = (unsigned char)op;
    pk_raw(p, &c, 1);
}

static void pk_str(pkb *p, const char *s) /* BINUNICODE */
{
    uint32_t n = (uint32_t)strlen(s);
    unsigned char len[4] = {n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >> 24};
    pk_op(p, 'X');
    pk_raw(p, len, 4);
    pk_raw(p, s, n);
}

static void pk_int(pkb *p, int v) /* BININT1 */
{
    assert_true(v >= 0 && v < 256);
    pk_op(p, 'K');
    pk_op(p, (unsigned)v);
}

static void pk_global(pkb *p, const char *module, const char *name)
{
    pk_op(p, 'c');
    pk_raw(p, module, strlen(module));
    pk_op(p, '\n');
    pk_raw(p, name, strlen(name));
    pk_op(p, '\n');
}

/* _rebuild_tensor_v2(torch.<type> storage `key` of `numel` elements, offset, size (ndim),
 * stride (nstride), False, {}). */
static void pk_tensor_typed(pkb *p, const char *type, const char *key, int numel, int offset,
                            int ndim, const int *size, int nstride, const int *stride)
{
    pk_global(p, "torch._utils", "_rebuild_tensor_v2");
    pk_op(p, '(');
    pk_op(p, '(');
    pk_str(p, "storage");
    pk_global(p, "torch", type);
    pk_str(p, key);
    pk_str(p, "cpu");
    pk_int(p, numel);
    pk_op(p, 't');
    pk_op(p, 'Q');
    pk_int(p, offset);
    pk_op(p, '(');
    for (int i = 0; i < ndim; i++)
        pk_int(p, size[i]);
    pk_op(p, 't');
    pk_op(p, '(');
    for (int i = 0; i < nstride; i++)
        pk_int(p, stride[i]);
    pk_op(p, 't');
    pk_op(p, 0x89);
    pk_op(p, '}');
    pk_op(p, 't');
    pk_op(p, 'R');
}

static void pk_tensor_ex(pkb *p, const char *key, int numel, int offset, int ndim,
                         const int *size, int nstride, const int *stride)
{
    pk_tensor_typed(p, "FloatStorage", key, numel, offset, ndim, size, nstride, stride);
}

static void pk_tensor(pkb *p, const char *key, int numel, int offset, int ndim, const int *size,
                      const int *stride)
{
    pk_tensor_ex(p, key, numel, offset, ndim, size, ndim, stride);
}

static const float storage0[4] = {1.5f, -2.0f, 3.25f, 4.0f};

static const int32_t storage1[1] = {2};
static const int64_t storage2[2] = {1, 1};

/* An archive at `path`: x/data.pkl = the pickle; storages x/data/0 = storage0 (4 floats),
 * x/data/1 = storage1 (1 int32), x/data/2 = storage2 (2 int64); x/byteorder if given. */
static void write_handmade(const pkb *p, const char *byteorder, const char *path)
{
    zarchive z;
    memset(&z, 0, sizeof z);
    struct { const char *name; const void *data; size_t size; } e[] = {
        {"x/data.pkl", p->b, p->n},
        {"x/data/0", storage0, sizeof storage0},
        {"x/data/1", storage1, sizeof storage1},
        {"x/data/2", storage2, sizeof storage2},
        {"x/byteorder", byteorder, byteorder ? strlen(byteorder) : 0},
    };
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        if (!e[i].data)
            continue;
        snprintf(z.e[z.n].name, sizeof z.e[z.n].name, "%s", e[i].name);
        z.e[z.n].size = e[i].size;
        z.e[z.n].data = malloc(e[i].size + 1);
        memcpy(z.e[z.n].data, e[i].data, e[i].size);
        z.n++;
    }
    zip_write_all(path, &z);
    zip_free_all(&z);
}

static sae_status open_handmade(const pkb *p, const char *byteorder, sae__pt_file **f)
{
    char dir[1024], path[1200];
    make_dir("pt_hand", dir);
    join(path, sizeof path, dir, "x.pt");
    write_handmade(p, byteorder, path);
    *f = NULL;
    return sae__pt_open(f, path, test_allocator());
}

static void expect_pickle_error(const pkb *p, sae_status want, const char *needle)
{
    sae__pt_file *f = NULL;
    sae_status s = open_handmade(p, NULL, &f);
    if (s != want)
        fail_msg("status %d (%s), expected %d", s, sae_last_error(), want);
    assert_null(f);
    assert_msg_contains(needle);
}

/* Views sharing one storage: offsets, a transposed 2-D view, a 3-D strided view, a Parameter. */
static void test_pickle_views(void **state)
{
    (void)state;
    pkb p = {.n = 0};
    pk_op(&p, 0x80);
    pk_op(&p, 2);
    pk_op(&p, '}');
    pk_op(&p, '(');
    const int s2[] = {2}, st1[] = {1};
    pk_str(&p, "a");
    pk_tensor(&p, "0", 4, 0, 1, s2, st1);
    pk_str(&p, "b");
    pk_tensor(&p, "0", 4, 2, 1, s2, st1);
    const int s22[] = {2, 2}, st12[] = {1, 2};
    pk_str(&p, "t");
    pk_tensor(&p, "0", 4, 0, 2, s22, st12);
    const int s212[] = {2, 1, 2}, st172[] = {1, 7, 2};
    pk_str(&p, "u");
    pk_tensor(&p, "0", 4, 0, 3, s212, st172);
    pk_str(&p, "p"); /* nn.Parameter: _rebuild_parameter(tensor, True, OrderedDict()) */
    pk_global(&p, "torch._utils", "_rebuild_parameter");
    pk_op(&p, '(');
    pk_tensor(&p, "0", 4, 3, 0, NULL, NULL);
    pk_op(&p, 0x88);
    pk_global(&p, "collections", "OrderedDict");
    pk_op(&p, ')');
    pk_op(&p, 'R');
    pk_op(&p, 't');
    pk_op(&p, 'R');
    pk_op(&p, 'u');
    pk_op(&p, '.');
    sae__pt_file *f = NULL;
    assert_sae_ok(open_handmade(&p, "little", &f));
    sae__tensor_set ts = sae__pt_tensors(f);
    assert_int_equal(ts.count, 5);
    const float *a = sae__tensors_find(&ts, "a")->data, *b = sae__tensors_find(&ts, "b")->data;
    assert_true(a[0] == 1.5f && a[1] == -2.0f && b[0] == 3.25f && b[1] == 4.0f);
    const float *t = sae__tensors_find(&ts, "t")->data; /* [[s0, s2], [s1, s3]] */
    assert_true(t[0] == 1.5f && t[1] == 3.25f && t[2] == -2.0f && t[3] == 4.0f);
    const sae_tensor_info *u = sae__tensors_find(&ts, "u");
    assert_int_equal(u->ndim, 3);
    const float *ud = u->data;
    assert_true(ud[0] == 1.5f && ud[1] == 3.25f && ud[2] == -2.0f && ud[3] == 4.0f);
    const sae_tensor_info *pp = sae__tensors_find(&ts, "p");
    assert_int_equal(pp->ndim, 0);
    assert_true(*(const float *)pp->data == 4.0f);
    sae__pt_close(f);

    /* The same storage described with another numel; big-endian data. */
    assert_int_equal(open_handmade(&p, "big", &f), SAE_EUNSUPPORTED);
    assert_msg_contains("big-endian");
    pkb q = {.n = 0};
    pk_op(&q, 0x80);
    pk_op(&q, 2);
    pk_op(&q, '}');
    pk_op(&q, '(');
    pk_str(&q, "a");
    pk_tensor(&q, "0", 4, 0, 1, s2, st1);
    pk_str(&q, "b");
    pk_tensor(&q, "0", 3, 0, 1, s2, st1);
    pk_op(&q, 'u');
    pk_op(&q, '.');
    expect_pickle_error(&q, SAE_EFORMAT, "described twice");
}

/* Protocol-4 opcodes and plain values. */
static void test_pickle_values(void **state)
{
    (void)state;
    pkb p = {.n = 0};
    pk_op(&p, 0x80);
    pk_op(&p, 4);
    pk_op(&p, 0x95); /* FRAME: length of the rest */
    size_t frame_at = p.n;
    pk_raw(&p, "\0\0\0\0\0\0\0\0", 8);
    pk_op(&p, 0x8c); /* SHORT_BINUNICODE "collections" */
    pk_op(&p, 11);
    pk_raw(&p, "collections", 11);
    pk_op(&p, 0x94); /* MEMOIZE -> 0 */
    pk_op(&p, 0x8c);
    pk_op(&p, 11);
    pk_raw(&p, "OrderedDict", 11);
    pk_op(&p, 0x94);
    pk_op(&p, 0x93); /* STACK_GLOBAL */
    pk_op(&p, ')');
    pk_op(&p, 'R');  /* OrderedDict() */
    pk_op(&p, 0x94); /* memo 2 */
    pk_op(&p, '(');
    pk_str(&p, "neg");
    pk_op(&p, 0x8a); /* LONG1 -5 */
    pk_op(&p, 1);
    pk_op(&p, 0xfb);
    pk_str(&p, "big");
    pk_op(&p, 'J'); /* BININT 100000 */
    pk_raw(&p, "\xa0\x86\x01\x00", 4);
    pk_str(&p, "s");
    pk_str(&p, "hi");
    pk_str(&p, "x");
    pk_op(&p, 'G'); /* BINFLOAT 1.0 */
    pk_raw(&p, "\x3f\xf0\0\0\0\0\0\0", 8);
    pk_str(&p, "flag");
    pk_op(&p, 0x88);
    pk_str(&p, "none");
    pk_op(&p, 'N');
    pk_str(&p, "list");
    pk_op(&p, ']');
    pk_op(&p, '(');
    pk_int(&p, 1);
    pk_int(&p, 2);
    pk_op(&p, 'e'); /* APPENDS */
    pk_int(&p, 3);
    pk_op(&p, 'a'); /* APPEND */
    pk_str(&p, "tup");
    pk_int(&p, 1);
    pk_int(&p, 2);
    pk_int(&p, 3);
    pk_op(&p, 0x87); /* TUPLE3 */
    pk_str(&p, "nested");
    pk_op(&p, '}');
    pk_str(&p, "k");
    pk_op(&p, 'M'); /* BININT2 300 */
    pk_raw(&p, "\x2c\x01", 2);
    pk_op(&p, 's');
    pk_str(&p, "self"); /* the top dict itself, through the memo: a cycle */
    pk_op(&p, 'h');
    pk_op(&p, 2);
    pk_op(&p, 'u');
    pk_op(&p, '}'); /* BUILD state of the OrderedDict: ignored */
    pk_op(&p, 'b');
    pk_op(&p, '.');
    uint64_t rest = p.n - frame_at - 8;
    for (int i = 0; i < 8; i++)
        p.b[frame_at + (size_t)i] = (unsigned char)(rest >> (8 * i));
    sae__pt_file *f = NULL;
    assert_sae_ok(open_handmade(&p, NULL, &f));
    int64_t v = 0;
    assert_sae_ok(sae__pt_get_int(f, "neg", NULL, &v));
    assert_int_equal(v, -5);
    assert_sae_ok(sae__pt_get_int(f, "big", NULL, &v));
    assert_int_equal(v, 100000);
    assert_sae_ok(sae__pt_get_int(f, "nested", "k", &v));
    assert_int_equal(v, 300);
    assert_string_equal(sae__pt_get_string(f, "s", NULL), "hi");
    assert_int_equal(sae__pt_get_int(f, "x", NULL, &v), SAE_EFORMAT);
    assert_int_equal(sae__pt_get_int(f, "flag", NULL, &v), SAE_EFORMAT); /* bool is not int */
    assert_int_equal(sae__pt_get_int(f, "self", "self", &v), SAE_EFORMAT); /* a dict */
    assert_true(sae__pt_has_key(f, "none") && sae__pt_has_key(f, "list"));
    assert_int_equal(sae__pt_tensors(f).count, 0);
    sae__pt_close(f);
}

static void test_pickle_limits(void **state)
{
    (void)state;
    pkb p = {.n = 0};
    pk_raw(&p, "\x80\x02", 2);
    for (int i = 0; i < 1100; i++)
        pk_op(&p, '(');
    pk_op(&p, '.');
    expect_pickle_error(&p, SAE_EFORMAT, "nested MARKs");

    p.n = 0; /* memo key far beyond any real pickle */
    pk_raw(&p, "\x80\x02}r\x00\x00\x40\x00.", 9);
    expect_pickle_error(&p, SAE_EFORMAT, "memo key");
    p.n = 0;
    pk_raw(&p, "\x80\x02h\x05.", 5);
    expect_pickle_error(&p, SAE_EFORMAT, "not defined");
    p.n = 0; /* a 2 GB string */
    pk_raw(&p, "\x80\x02X\xff\xff\xff\x7f", 7);
    expect_pickle_error(&p, SAE_EFORMAT, "string");
    p.n = 0; /* a string running past the end */
    pk_raw(&p, "\x80\x02X\x10\x00\x00\x00" "abc", 10);
    expect_pickle_error(&p, SAE_EFORMAT, "truncated");
    p.n = 0;
    pk_raw(&p, "\x80\x02X\x02\x00\x00\x00" "a\0.", 10);
    expect_pickle_error(&p, SAE_EFORMAT, "NUL");
    p.n = 0; /* 9-byte integer */
    pk_raw(&p, "\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.", 14);
    expect_pickle_error(&p, SAE_EUNSUPPORTED, "9 bytes");
    p.n = 0;
    pk_raw(&p, "\x80\x02].", 4);
    expect_pickle_error(&p, SAE_EFORMAT, "not a dict");
    p.n = 0;
    pk_raw(&p, "\x80\x06}.", 4);
    expect_pickle_error(&p, SAE_EUNSUPPORTED, "protocol 6");
    p.n = 0;
    pk_raw(&p, "\x80\x02}", 3);
    expect_pickle_error(&p, SAE_EFORMAT, "without STOP");
    p.n = 0;
    pk_raw(&p, "\x80\x02s.", 4);
    expect_pickle_error(&p, SAE_EFORMAT, "underflow");
    p.n = 0;
    pk_raw(&p, "\x80\x02}(K\x01u.", 8);
    expect_pickle_error(&p, SAE_EFORMAT, "odd");
    p.n = 0; /* SETITEMS with nothing below the MARK */
    pk_raw(&p, "\x80\x02(u.", 5);
    expect_pickle_error(&p, SAE_EFORMAT, "underflow");
    p.n = 0;
    pk_raw(&p, "\x80\x02]}b.", 5);
    expect_pickle_error(&p, SAE_EUNSUPPORTED, "BUILD of a list");
    p.n = 0; /* duplicate top-level key */
    pk_raw(&p, "\x80\x02}(", 4);
    pk_str(&p, "a");
    pk_int(&p, 1);
    pk_str(&p, "a");
    pk_int(&p, 2);
    pk_raw(&p, "u.", 2);
    expect_pickle_error(&p, SAE_EFORMAT, "twice");
    p.n = 0; /* a storage type called */
    pk_raw(&p, "\x80\x02", 2);
    pk_global(&p, "torch", "FloatStorage");
    pk_raw(&p, ")R.", 3);
    expect_pickle_error(&p, SAE_EUNSUPPORTED, "FloatStorage");
    p.n = 0;
    pk_raw(&p, "\x80\x02", 2);
    pk_global(&p, "torch", "ComplexFloatStorage");
    expect_pickle_error(&p, SAE_EUNSUPPORTED, "torch.ComplexFloatStorage");
    p.n = 0; /* a persistent id that is not a storage */
    pk_raw(&p, "\x80\x02", 2);
    pk_str(&p, "module");
    pk_raw(&p, "\x85Q.", 3);
    expect_pickle_error(&p, SAE_EUNSUPPORTED, "persistent id");
    p.n = 0; /* a storage with no archive entry */
    pk_raw(&p, "\x80\x02}(", 4);
    const int s1[] = {1}, st1[] = {1};
    pk_str(&p, "a");
    pk_tensor(&p, "9", 1, 0, 1, s1, st1);
    pk_raw(&p, "u.", 2);
    expect_pickle_error(&p, SAE_EFORMAT, "x/data/9");
    p.n = 0; /* storage 0 holds 4 floats, not 5 */
    pk_raw(&p, "\x80\x02}(", 4);
    pk_str(&p, "a");
    pk_tensor(&p, "0", 5, 0, 1, s1, st1);
    pk_raw(&p, "u.", 2);
    expect_pickle_error(&p, SAE_EFORMAT, "16 bytes");
    p.n = 0; /* offset past the storage */
    pk_raw(&p, "\x80\x02}(", 4);
    pk_str(&p, "a");
    pk_tensor(&p, "0", 4, 4, 1, s1, st1);
    pk_raw(&p, "u.", 2);
    expect_pickle_error(&p, SAE_EFORMAT, "reaches past");
    p.n = 0; /* more sizes than strides */
    pk_raw(&p, "\x80\x02}(", 4);
    const int s11[] = {1, 1};
    pk_str(&p, "a");
    pk_tensor_ex(&p, "0", 4, 0, 2, s11, 1, st1);
    pk_raw(&p, "u.", 2);
    expect_pickle_error(&p, SAE_EFORMAT, "2 sizes but 1 strides");
    p.n = 0; /* 9 dimensions */
    pk_raw(&p, "\x80\x02}(", 4);
    const int s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    pk_str(&p, "a");
    pk_tensor(&p, "0", 4, 0, 9, s9, s9);
    pk_raw(&p, "u.", 2);
    expect_pickle_error(&p, SAE_EUNSUPPORTED, "9 dimensions");
}

/* The dictionary_learning classes without an oracle case, on tiny handmade files (d = F = 2;
 * storage0 = [1.5, -2, 3.25, 4]). */
static void test_dl_handmade(void **state)
{
    (void)state;
    const int s2[] = {2}, st1[] = {1}, s22[] = {2, 2}, row[] = {2, 1}, col[] = {1, 2};
    char dir[1024], path[1200];
    make_dir("pt_dl_hand", dir);
    sae_load_options o = test_options(0);
    sae_dict *d = NULL;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;

    /* MatryoshkaBatchTopKSAE: W_enc [d, F], W_dec [F, d] (a transposed view), k, threshold. */
    pkb p = {.n = 0};
    pk_raw(&p, "\x80\x02}(", 4);
    pk_str(&p, "W_enc");
    pk_tensor_ex(&p, "0", 4, 0, 2, s22, 2, row);
    pk_str(&p, "b_enc");
    pk_tensor_ex(&p, "0", 4, 2, 1, s2, 1, st1);
    pk_str(&p, "W_dec");
    pk_tensor_ex(&p, "0", 4, 0, 2, s22, 2, col);
    pk_str(&p, "b_dec");
    pk_tensor_ex(&p, "0", 4, 1, 1, s2, 1, st1);
    pk_str(&p, "k");
    pk_tensor_typed(&p, "IntStorage", "1", 1, 0, 0, NULL, 0, NULL);
    pk_str(&p, "threshold");
    pk_tensor_ex(&p, "0", 4, 3, 0, NULL, 0, NULL);
    pk_str(&p, "group_sizes");
    pk_tensor_typed(&p, "LongStorage", "2", 2, 0, 1, s2, 1, st1);
    pk_raw(&p, "u.", 2);
    join(path, sizeof path, dir, "ae.pt");
    write_handmade(&p, NULL, path);
    static const char cfg_m[] =
        "{\"trainer\": {\"dict_class\": \"MatryoshkaBatchTopKSAE\", \"activation_dim\": 2, "
        "\"dict_size\": 2, \"k\": 2, \"norm_factor\": 3.5, \"lm_name\": \"m\", "
        "\"submodule_name\": \"resid_post_layer_3\"}}";
    join(path, sizeof path, dir, "config.json");
    write_all(path, cfg_m, sizeof cfg_m - 1);
    assert_sae_ok(sae__load_dictionary_learning(&d, dir, &o));
    assert_sae_ok(sae_dict_get_config(d, &c));
    assert_int_equal(c.arch, SAE_ARCH_BATCHTOPK);
    assert_int_equal(c.k, 2);
    assert_int_equal(c.flags, SAE_DICT_RELU_BEFORE_TOPK);
    assert_string_equal(c.model_name, "m");
    assert_string_equal(c.hook_name, "resid_post_layer_3");
    assert_sae_ok(sae_dict_get_weights(d, &w));
    const float W_enc[] = {1.5f, -2.0f, 3.25f, 4.0f}, W_dec[] = {1.5f, 3.25f, -2.0f, 4.0f};
    assert_memory_equal(w.W_enc, W_enc, sizeof W_enc);
    assert_memory_equal(w.W_dec, W_dec, sizeof W_dec);
    assert_true(w.b_enc[0] == 3.25f && w.b_enc[1] == 4.0f);
    assert_true(w.b_dec[0] == -2.0f && w.b_dec[1] == 3.25f);
    assert_true(w.threshold[0] == 4.0f && w.threshold[1] == 4.0f); /* as stored: norm_factor
                                                                        is already folded */
    sae_dict_free(d);
    /* k = 1 in the config disagrees with the stored k = 2. */
    static const char cfg_k[] =
        "{\"trainer\": {\"dict_class\": \"MatryoshkaBatchTopKSAE\", \"activation_dim\": 2, "
        "\"dict_size\": 2, \"k\": 1}}";
    write_all(path, cfg_k, sizeof cfg_k - 1);
    assert_int_equal(sae__load_dictionary_learning(&d, dir, &o), SAE_EFORMAT);
    assert_msg_contains("k = 1");

    /* AutoEncoderNew: nn.Linear layout with decoder.bias = b_dec, not subtracted from x. */
    p.n = 0;
    pk_raw(&p, "\x80\x02}(", 4);
    pk_str(&p, "encoder.weight");
    pk_tensor_ex(&p, "0", 4, 0, 2, s22, 2, row);
    pk_str(&p, "encoder.bias");
    pk_tensor_ex(&p, "0", 4, 2, 1, s2, 1, st1);
    pk_str(&p, "decoder.weight");
    pk_tensor_ex(&p, "0", 4, 0, 2, s22, 2, row);
    pk_str(&p, "decoder.bias");
    pk_tensor_ex(&p, "0", 4, 0, 1, s2, 1, st1);
    pk_raw(&p, "u.", 2);
    join(path, sizeof path, dir, "ae.pt");
    write_handmade(&p, NULL, path);
    static const char cfg_n[] = "{\"trainer\": {\"dict_class\": \"AutoEncoderNew\", "
                                "\"activation_dim\": 2, \"dict_size\": 2}}";
    join(path, sizeof path, dir, "config.json");
    write_all(path, cfg_n, sizeof cfg_n - 1);
    join(path, sizeof path, dir, "ae.pt");
    assert_sae_ok(sae__load_dictionary_learning(&d, path, &o)); /* the file path */
    assert_sae_ok(sae_dict_get_config(d, &c));
    assert_int_equal(c.arch, SAE_ARCH_STANDARD);
    assert_int_equal(c.flags, SAE_DICT_NO_B_DEC_INPUT);
    assert_null(c.model_name);
    assert_sae_ok(sae_dict_get_weights(d, &w));
    assert_memory_equal(w.W_enc, W_dec, sizeof W_dec); /* the transpose of [[1.5, -2], ...] */
    assert_memory_equal(w.W_dec, W_dec, sizeof W_dec);
    assert_true(w.b_dec[0] == 1.5f && w.b_dec[1] == -2.0f);
    sae_dict_free(d);
}

static void fuzz_file(const char *src)
{
    zarchive z;
    zip_read_all(src, &z);
    zentry *pkl = zip_find(&z, "/data.pkl");
    unsigned char *orig = malloc(pkl->size);
    size_t n = pkl->size;
    memcpy(orig, pkl->data, n);
    char dir[1024], p[1200];
    make_dir("pt_fuzz", dir);
    join(p, sizeof p, dir, "x.pt");
    int opened = 0, failed = 0;
    for (size_t round = 0; round < 3; round++) {
        for (size_t i = 0; i < n; i++) {
            memcpy(pkl->data, orig, n);
            pkl->size = n;
            if (round == 0)
                pkl->size = i; /* truncated */
            else if (round == 1)
                pkl->data[i] ^= 0xff;
            else
                pkl->data[i] = (unsigned char)(pkl->data[i] + 1);
            zip_write_all(p, &z);
            sae__pt_file *f = NULL;
            sae_status s = sae__pt_open(&f, p, test_allocator());
            if (s == SAE_OK) {
                sae__tensor_set ts = sae__pt_tensors(f);
                unsigned sum = 0;
                for (int64_t t = 0; t < ts.count; t++) /* every byte must be readable */
                    for (uint64_t b = 0; b < ts.items[t].nbytes; b++)
                        sum += ((const unsigned char *)ts.items[t].data)[b];
                (void)sum;
                opened++;
            } else {
                if (s != SAE_EFORMAT && s != SAE_EUNSUPPORTED)
                    fail_msg("round %zu, byte %zu: status %d: %s", round, i, s, sae_last_error());
                assert_true(strlen(sae_last_error()) > 0);
                if (round == 0)
                    assert_msg_contains("data.pkl");
                failed++;
            }
            if (round == 0 && s == SAE_OK)
                fail_msg("a pickle truncated to %zu bytes was accepted", i);
            sae__pt_close(f);
        }
    }
    memcpy(pkl->data, orig, n);
    pkl->size = n;
    free(orig);
    zip_free_all(&z);
    assert_true(failed >= (int)n);
    assert_true(opened > 0);
}

/* Every truncation of a pickle, and single-byte changes at every offset: an error or a valid
 * result, never a crash or a leak (valgrind and the test allocator watch). */
static void test_pickle_fuzz(void **state)
{
    (void)state;
    fuzz_file(native_path("openai_relu_d16_s64_b16", "0.pt"));
    fuzz_file(native_path("dl_topk_k4_d32_s128_b16", "ae.pt"));
}

int main(void)
{
    struct CMUnitTest tests[sizeof cases / sizeof cases[0] + 32];
    size_t nt = 0;
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_pt_reader_topk);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_pt_reader_openai_values);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(test_case, (void *)&cases[i]);
        t.name = cases[i].name;
        tests[nt++] = t;
    }
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_dl_file_path);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_detect);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_k_override);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_truncated);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_no_pickle);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_unsupported_global);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_unsupported_opcode);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_stride_out_of_storage);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_short_storage);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_corrupt_crc);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_shape_vs_config);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_missing_files);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_icm_without_k);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_openai_shape);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_pickle_views);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_pickle_values);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_pickle_limits);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_dl_handmade);
    tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_pickle_fuzz);
    if (nt > sizeof tests / sizeof tests[0]) /* grew past the array: enlarge it */
        return 1;
    return _cmocka_run_group_tests("torch_formats", tests, nt, NULL, NULL);
}
