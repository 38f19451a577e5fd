/* test_oracle.c: reproduce the reference outputs that the Python libraries computed
 * (../shared/oracle, README there), within its tolerances (1e-5 + 1e-5 |expected|):
 *   - every native case (oracle/native/<case>/): load the files as that library wrote them with
 *     sae_dict_load, encode input.safetensors, compare with expected.safetensors;
 *   - every forward case (oracle/<case>.safetensors): build the dictionary from its param.*
 *     tensors (native layouts) and compare with its out.* tensors. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"

#define ATOL 1e-5
#define RTOL 1e-5

/* Names of expected tensors (NULL to skip). pre_relu: compare ReLU(pre) (the values top-k is
 * taken over when ReLU comes first). */
typedef struct expected {
    const char *features, *reconstruction, *pre, *pre_relu;
} expected;

static void compare(const char *file, const char *name, const float *got, int64_t count,
                    bool relu, bool support, const char *what)
{
    int64_t ne = 0;
    float *ref = load_tensor_f32(file, name, &ne, NULL, NULL);
    if (ne != count)
        fail_msg("%s: %s has %lld values, expected %lld", what, name, (long long)ne,
                 (long long)count);
    float *g = test_malloc(sizeof(float) * (size_t)ne);
    for (int64_t j = 0; j < ne; j++)
        g[j] = relu && got[j] < 0 ? 0.0f : got[j];
    char label[256];
    snprintf(label, sizeof label, "%s: %s", what, name);
    assert_close_f32(g, ref, ne, ATOL, RTOL, label);
    for (int64_t j = 0; support && j < ne; j++)
        if ((g[j] != 0.0f) != (ref[j] != 0.0f))
            fail_msg("%s: support differs at %lld", label, (long long)j);
    test_free(g);
    test_free(ref);
}

/* Encode x (from x_file) through every path and compare with the tensors of exp_file. */
static void check_forward(const sae_dict *d, uint32_t encoder_flags, const char *x_file,
                          const char *x_name, const char *exp_file, expected want,
                          const char *what)
{
    int64_t nx = 0, F = sae_dict_d_sae(d), D = sae_dict_d_in(d);
    float *x = load_tensor_f32(x_file, x_name, &nx, NULL, NULL);
    int64_t n = nx / D;
    float *f = test_malloc(sizeof(float) * (size_t)(n * F));
    float *pre = test_malloc(sizeof(float) * (size_t)(n * F));
    float *xh = test_malloc(sizeof(float) * (size_t)(n * D));
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.flags = encoder_flags, o.n_threads = 2, o.allocator = test_allocator();
    sae_encoder *e = NULL;
    assert_sae_ok(sae_encoder_create(&e, d, &o));
    assert_sae_ok(sae_encoder_encode(e, n, x, D, f, F, pre, F));
    if (want.features)
        compare(exp_file, want.features, f, n * F, false, true, what);
    if (want.pre)
        compare(exp_file, want.pre, pre, n * F, false, false, what);
    if (want.pre_relu)
        compare(exp_file, want.pre_relu, pre, n * F, true, false, what);
    if (want.reconstruction) {
        /* reconstruct, decode of dense codes, decode of sparse codes: one answer */
        assert_sae_ok(sae_encoder_decode(e, n, f, F, xh, D));
        compare(exp_file, want.reconstruction, xh, n * D, false, false, what);
        assert_sae_ok(sae_encoder_reconstruct(e, n, x, D, xh, D, NULL, 0));
        compare(exp_file, want.reconstruction, xh, n * D, false, false, what);
        sae_codes *codes = NULL;
        assert_sae_ok(sae_codes_create(&codes, test_allocator()));
        assert_sae_ok(sae_encoder_encode_sparse(e, n, x, D, codes));
        assert_sae_ok(sae_encoder_decode_sparse(e, n, sae_codes_offsets(codes),
                                                sae_codes_indices(codes), sae_codes_values(codes),
                                                xh, D));
        compare(exp_file, want.reconstruction, xh, n * D, false, false, what);
        sae_codes_free(codes);
    }
    sae_encoder_free(e);
    test_free(x), test_free(f), test_free(pre), test_free(xh);
}

/* ---- native files ---------------------------------------------------------------------------- */

typedef struct native_case {
    const char *dir, *file; /* file: what to pass to sae_dict_load inside dir, or NULL (dir) */
    int64_t k;              /* k the caller supplies (sae-icm files lack it) */
    int arch;
} native_case;

static const native_case native_cases[] = {
    {"saelens_standard_d32_s128_b16", NULL, 0, SAE_ARCH_STANDARD},
    {"saelens_topk_k4_d32_s128_b16", NULL, 0, SAE_ARCH_TOPK},
    {"saelens_topk_k4_d32_s128_b16__checkpoint", NULL, 0, SAE_ARCH_TOPK},
    {"saelens_topk_k4_d32_s128_b16__norescale", NULL, 0, SAE_ARCH_TOPK},
    {"saelens_jumprelu_step_d32_s128_b16", "sae_weights.safetensors", 0, SAE_ARCH_JUMPRELU},
    {"saelens_gated_d32_s128_b16", NULL, 0, SAE_ARCH_GATED},
    {"sparsify_topk_k4_d32_s128_b16", NULL, 0, SAE_ARCH_TOPK},
    {"dl_autoencoder_d32_s128_b16", NULL, 0, SAE_ARCH_STANDARD},
    {"dl_topk_k4_d32_s128_b16", "ae.pt", 0, SAE_ARCH_TOPK},
    {"dl_jumprelu_d32_s128_b16", NULL, 0, SAE_ARCH_JUMPRELU},
    {"dl_gated_d32_s128_b16", NULL, 0, SAE_ARCH_GATED},
    {"openai_relu_d16_s64_b16", "0.pt", 0, SAE_ARCH_STANDARD},
    {"openai_topk_k4_ln_d32_s128_b16", NULL, 0, SAE_ARCH_TOPK},
    {"icm_topk_k8_d32_s128_b2x8", "sae_state_23453.pt", 8, SAE_ARCH_TOPK},
};

static void test_native_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof native_cases / sizeof native_cases[0]; i++) {
        const native_case *c = &native_cases[i];
        char base[1024], path[1200], input[1200], exp[1200];
        snprintf(base, sizeof base, "%s/%s", shared_path("oracle/native"), c->dir);
        snprintf(path, sizeof path, "%s%s%s", base, c->file ? "/" : "", c->file ? c->file : "");
        snprintf(input, sizeof input, "%s/input.safetensors", base);
        snprintf(exp, sizeof exp, "%s/expected.safetensors", base);
        sae_load_options o = SAE_LOAD_OPTIONS_INIT;
        o.k = c->k, o.allocator = test_allocator();
        sae_dict *d = NULL;
        assert_sae_ok(sae_dict_load(&d, path, &o));
        assert_int_equal(sae_dict_arch(d), c->arch);
        expected want = {"features", "reconstruction", NULL, NULL};
        if (has_tensor(exp, "pre_activation"))
            want.pre = "pre_activation";
        if (has_tensor(exp, "magnitude_pre_activation"))
            want.pre = "magnitude_pre_activation";
        if (has_tensor(exp, "pre_topk_relu"))
            want.pre_relu = "pre_topk_relu";
        check_forward(d, 0, input, "x", exp, want, c->dir);
        if (has_tensor(exp, "features_threshold_mode"))
            check_forward(d, SAE_ENCODE_TOPK_THRESHOLD, input, "x", exp,
                          (expected){"features_threshold_mode", NULL, NULL, NULL}, c->dir);
        sae_dict_free(d);
    }
}

/* ---- forward cases from param.* ------------------------------------------------------------- */

/* One param tensor and where it goes; transpose for nn.Linear layouts. */
typedef struct param_map {
    const char *name;
    int slot; /* 0 W_enc, 1 b_enc, 2 W_dec, 3 b_dec, 4 threshold, 5 b_gate, 6 b_mag, 7 r_mag */
    bool transpose;
} param_map;

typedef struct forward_case {
    const char *file;
    int arch;
    int64_t k;
    uint32_t flags;
    int norm;
    param_map params[6];
    const char *x;
    expected want;
} forward_case;

#define NO_BDEC SAE_DICT_NO_B_DEC_INPUT
#define RELU1ST SAE_DICT_RELU_BEFORE_TOPK
#define RESCALE SAE_DICT_RESCALE_BY_DECODER_NORM


static const forward_case forward_cases[] = {
    {"saelens_standard_d32_s128_b16", SAE_ARCH_STANDARD, 0, 0, 0,
     {{"param.W_enc", 0, false}, {"param.b_enc", 1, false}, {"param.W_dec", 2, false},
      {"param.b_dec", 3, false}},
     "in.x", {"out.inference.feature_acts", "out.inference.sae_out", "out.hidden_pre", NULL}},
    {"saelens_topk_k4_d32_s128_b16", SAE_ARCH_TOPK, 4, RESCALE, 0,
     {{"param.W_enc", 0, false}, {"param.b_enc", 1, false}, {"param.W_dec", 2, false},
      {"param.b_dec", 3, false}},
     "in.x", {"out.rescale.feature_acts", "out.rescale.sae_out", NULL, NULL}},
    {"saelens_topk_k4_d32_s128_b16", SAE_ARCH_TOPK, 4, 0, 0,
     {{"param.W_enc", 0, false}, {"param.b_enc", 1, false}, {"param.W_dec", 2, false},
      {"param.b_dec", 3, false}},
     "in.x", {"out.norescale.feature_acts", "out.norescale.sae_out", "out.norescale.hidden_pre",
              NULL}},
    {"saelens_jumprelu_step_d32_s128_b16", SAE_ARCH_JUMPRELU, 0, 0, 0,
     {{"param.W_enc", 0, false}, {"param.b_enc", 1, false}, {"param.W_dec", 2, false},
      {"param.b_dec", 3, false}, {"param.threshold", 4, false}},
     "in.x", {"out.inference.feature_acts", "out.inference.sae_out", "out.hidden_pre", NULL}},
    {"saelens_gated_d32_s128_b16", SAE_ARCH_GATED, 0, 0, 0,
     {{"param.W_enc", 0, false}, {"param.W_dec", 2, false}, {"param.b_dec", 3, false},
      {"param.b_gate", 5, false}, {"param.b_mag", 6, false}, {"param.r_mag", 7, false}},
     "in.x", {"out.inference.feature_acts", "out.inference.sae_out",
              "out.magnitude_pre_activation", NULL}},
    {"sparsify_topk_k4_d32_s128_b16", SAE_ARCH_TOPK, 4, RELU1ST, 0,
     {{"param.encoder.weight", 0, true}, {"param.encoder.bias", 1, false},
      {"param.W_dec", 2, false}, {"param.b_dec", 3, false}},
     "in.x", {"out.encode.dense_latents", "out.decode", NULL, "out.encode.pre_acts_relu"}},
    {"dl_autoencoder_d32_s128_b16", SAE_ARCH_STANDARD, 0, 0, 0,
     {{"param.encoder.weight", 0, true}, {"param.encoder.bias", 1, false},
      {"param.decoder.weight", 2, true}, {"param.bias", 3, false}},
     "in.x", {"out.f", "out.x_hat", "out.f_pre", NULL}},
    {"dl_topk_k4_d32_s128_b16", SAE_ARCH_TOPK, 4, RELU1ST, 0,
     {{"param.encoder.weight", 0, true}, {"param.encoder.bias", 1, false},
      {"param.decoder.weight", 2, true}, {"param.b_dec", 3, false}},
     "in.x", {"out.f", "out.x_hat", NULL, "out.post_relu_acts"}},
    {"dl_jumprelu_d32_s128_b16", SAE_ARCH_JUMPRELU, 0, NO_BDEC, 0,
     {{"param.W_enc", 0, false}, {"param.b_enc", 1, false}, {"param.W_dec", 2, false},
      {"param.b_dec", 3, false}, {"param.threshold", 4, false}},
     "in.x", {"out.f", "out.x_hat", "out.pre_jump", NULL}},
    {"dl_jumprelu_d32_s128_b16", SAE_ARCH_JUMPRELU, 0, 0, 0,
     {{"param.W_enc", 0, false}, {"param.b_enc", 1, false}, {"param.W_dec", 2, false},
      {"param.b_dec", 3, false}, {"param.threshold", 4, false}},
     "in.x", {"out.apply_b_dec_to_input.f", "out.apply_b_dec_to_input.x_hat", NULL, NULL}},
    {"dl_gated_d32_s128_b16", SAE_ARCH_GATED, 0, 0, 0,
     {{"param.encoder.weight", 0, true}, {"param.decoder.weight", 2, true},
      {"param.decoder_bias", 3, false}, {"param.gate_bias", 5, false},
      {"param.mag_bias", 6, false}, {"param.r_mag", 7, false}},
     "in.x", {"out.f", "out.x_hat", NULL, NULL}},
    {"openai_relu_d16_s64_b16", SAE_ARCH_STANDARD, 0, 0, 0,
     {{"param.encoder.weight", 0, true}, {"param.latent_bias", 1, false},
      {"param.decoder.weight", 2, true}, {"param.pre_bias", 3, false}},
     "in.x", {"out.latents", "out.recons", "out.latents_pre_act", NULL}},
    {"openai_topk_k4_ln_d32_s128_b16", SAE_ARCH_TOPK, 4, 0, SAE_NORM_LAYER_NORM,
     {{"param.encoder.weight", 0, true}, {"param.latent_bias", 1, false},
      {"param.decoder.weight", 2, true}, {"param.pre_bias", 3, false}},
     "in.x", {"out.latents", "out.recons", "out.latents_pre_act", NULL}},
    {"icm_topk_k8_d32_s128_b2x8", SAE_ARCH_TOPK, 8, RELU1ST, 0,
     {{"param.W_enc.weight", 0, true}, {"param.W_enc.bias", 1, false},
      {"param.W_dec.weight", 2, true}, {"param.W_dec.bias", 3, false}},
     "in.x", {"out.z", "out.x_hat", NULL, "out.pre_relu"}},
};

/* Row-major transpose of (rows, cols). */
static float *transposed(const float *a, int64_t rows, int64_t cols)
{
    float *t = test_malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            t[j * rows + i] = a[i * cols + j];
    return t;
}

static void test_forward_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof forward_cases / sizeof forward_cases[0]; i++) {
        const forward_case *c = &forward_cases[i];
        char file[1200];
        snprintf(file, sizeof file, "%s/%s.safetensors", shared_path("oracle"), c->file);
        float *slots[8] = {NULL};
        int64_t D = 0, F = 0;
        for (int p = 0; p < 6 && c->params[p].name; p++) {
            int64_t shape[SAE_MAX_DIMS], n = 0;
            int nd = 0;
            float *t = load_tensor_f32(file, c->params[p].name, &n, shape, &nd);
            if (c->params[p].slot == 0) /* W_enc: (d_in, F) after the transpose */
                D = c->params[p].transpose ? shape[1] : shape[0],
                F = c->params[p].transpose ? shape[0] : shape[1];
            if (c->params[p].transpose) {
                float *tt = transposed(t, shape[0], shape[1]);
                test_free(t);
                t = tt;
            }
            slots[c->params[p].slot] = t;
        }
        sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
        cfg.arch = c->arch, cfg.d_in = D, cfg.d_sae = F, cfg.k = c->k, cfg.flags = c->flags;
        cfg.input_norm = c->norm;
        sae_dict_weights w = {sizeof w, 0u,       slots[0], slots[1], slots[2],
                              slots[3], slots[4], slots[5], slots[6], slots[7]};
        sae_dict *d = NULL;
        assert_sae_ok(sae_dict_create(&d, &cfg, &w, test_allocator()));
        check_forward(d, 0, file, c->x, file, c->want, c->file);
        sae_dict_free(d);
        for (int s = 0; s < 8; s++)
            if (slots[s])
                test_free(slots[s]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_cases),
        cmocka_unit_test(test_native_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
