/* test_io.c: sae_dict_load / sae_dict_save — round trips through SAELens and sparsify layouts,
 * format detection, and one test per class of defect in a directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

enum { D = 12, F = 40 };

static sae_dict *random_dict(int arch, uint32_t flags, int norm)
{
    static float W_enc[D * F], W_dec[F * D], b_enc[F], b_dec[D], thr[F], bg[F], bm[F], rm[F];
    fill_normal(W_enc, D * F, 1, 0.3f);
    fill_normal(W_dec, F * D, 2, 0.3f);
    fill_normal(b_enc, F, 3, 0.1f);
    fill_normal(b_dec, D, 4, 0.1f);
    fill_normal(thr, F, 5, 0.1f);
    fill_normal(bg, F, 6, 0.1f);
    fill_normal(bm, F, 7, 0.1f);
    fill_normal(rm, F, 8, 0.1f);
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = arch, c.d_in = D, c.d_sae = F, c.flags = flags, c.input_norm = norm;
    c.k = arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK ? 6 : 0;
    c.act_scale = norm == SAE_NORM_SCALE ? 2.5f : 0.0f;
    c.model_name = "stories260K", c.hook_name = "blocks.2.hook_resid_post";
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    if (arch == SAE_ARCH_GATED)
        w.b_gate = bg, w.b_mag = bm, w.r_mag = rm;
    else
        w.b_enc = b_enc;
    if (arch == SAE_ARCH_JUMPRELU || arch == SAE_ARCH_BATCHTOPK)
        w.threshold = thr;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
    return d;
}

/* Reconstructions of a fixed batch: two dictionaries are the same map when these agree. */
static void reconstruct(const sae_dict *d, float *xh, float *f)
{
    float x[8 * D];
    fill_normal(x, 8 * D, 42, 1.0f);
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.allocator = test_allocator();
    sae_encoder *e = NULL;
    assert_sae_ok(sae_encoder_create(&e, d, &o));
    assert_sae_ok(sae_encoder_reconstruct(e, 8, x, D, xh, D, NULL, 0));
    assert_sae_ok(sae_encoder_encode(e, 8, x, D, f, F, NULL, 0));
    sae_encoder_free(e);
}

static void round_trip(int arch, uint32_t flags, int norm, int format, const char *name)
{
    sae_dict *d = random_dict(arch, flags, norm);
    const char *dir = tmp_path(name);
    assert_sae_ok(sae_dict_save(d, dir, format));
    int32_t detected = -1;
    assert_sae_ok(sae_detect_format(dir, &detected));
    assert_int_equal(detected, format);
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    o.allocator = test_allocator();
    sae_dict *back = NULL;
    assert_sae_ok(sae_dict_load(&back, dir, &o));
    assert_int_equal(sae_dict_d_in(back), D);
    assert_int_equal(sae_dict_d_sae(back), F);
    if (arch == SAE_ARCH_BATCHTOPK && format == SAE_FORMAT_SAELENS) /* saved as JumpReLU */
        assert_int_equal(sae_dict_arch(back), SAE_ARCH_JUMPRELU);
    else
        assert_int_equal(sae_dict_k(back), sae_dict_k(d));
    float xh1[8 * D], xh2[8 * D], f1[8 * F], f2[8 * F];
    reconstruct(d, xh1, f1);
    reconstruct(back, xh2, f2);
    assert_close_f32(xh2, xh1, 8 * D, 1e-5, 1e-5, name);
    if (format == SAE_FORMAT_SAELENS) {
        sae_dict_config c = SAE_DICT_CONFIG_INIT;
        assert_sae_ok(sae_dict_get_config(back, &c));
        assert_string_equal(c.hook_name, "blocks.2.hook_resid_post");
        assert_string_equal(c.model_name, "stories260K");
        if (norm != SAE_NORM_SCALE && !(flags & SAE_DICT_RESCALE_BY_DECODER_NORM))
            assert_close_f32(f2, f1, 8 * F, 1e-6, 1e-6, "features");
    }
    sae_dict_free(back);
    sae_dict_free(d);
}

static void test_saelens_round_trips(void **state)
{
    (void)state;
    round_trip(SAE_ARCH_STANDARD, 0, SAE_NORM_NONE, SAE_FORMAT_SAELENS, "rt_standard");
    round_trip(SAE_ARCH_TOPK, SAE_DICT_RESCALE_BY_DECODER_NORM, SAE_NORM_NONE,
               SAE_FORMAT_SAELENS, "rt_topk");
    round_trip(SAE_ARCH_JUMPRELU, SAE_DICT_NO_B_DEC_INPUT, SAE_NORM_NONE, SAE_FORMAT_SAELENS,
               "rt_jumprelu");
    round_trip(SAE_ARCH_BATCHTOPK, 0, SAE_NORM_NONE, SAE_FORMAT_SAELENS, "rt_batchtopk");
    round_trip(SAE_ARCH_GATED, 0, SAE_NORM_NONE, SAE_FORMAT_SAELENS, "rt_gated");
    round_trip(SAE_ARCH_STANDARD, 0, SAE_NORM_SCALE, SAE_FORMAT_SAELENS, "rt_scaled");
    round_trip(SAE_ARCH_TOPK, 0, SAE_NORM_LAYER_NORM, SAE_FORMAT_SAELENS, "rt_layernorm");
    round_trip(SAE_ARCH_STANDARD, 0, SAE_NORM_CONSTANT_RESCALE, SAE_FORMAT_SAELENS, "rt_const");
}

static void test_sparsify_round_trips(void **state)
{
    (void)state;
    round_trip(SAE_ARCH_TOPK, SAE_DICT_RELU_BEFORE_TOPK, SAE_NORM_NONE, SAE_FORMAT_SPARSIFY,
               "rt_sparsify");
    round_trip(SAE_ARCH_TOPK, SAE_DICT_RESCALE_BY_DECODER_NORM, SAE_NORM_SCALE,
               SAE_FORMAT_SPARSIFY, "rt_sparsify_folded");
    sae_dict *d = random_dict(SAE_ARCH_STANDARD, 0, SAE_NORM_NONE);
    assert_int_equal(sae_dict_save(d, tmp_path("rt_sparsify_bad"), SAE_FORMAT_SPARSIFY),
                     SAE_EUNSUPPORTED);
    assert_non_null(strstr(sae_last_error(), "TopK"));
    sae_dict_free(d);
}

/* ---- defects ---------------------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to, long truncate_at)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[4096];
    size_t n;
    long total = 0;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) {
        if (truncate_at >= 0 && total + (long)n > truncate_at)
            n = (size_t)(truncate_at - total);
        fwrite(buf, 1, n, b);
        total += (long)n;
        if (truncate_at >= 0 && total >= truncate_at)
            break;
    }
    fclose(a);
    fclose(b);
}

/* A copy of the SAELens standard oracle directory whose cfg.json is `cfg` (NULL: the original)
 * and whose weights are truncated at `truncate_at` bytes (-1: whole). */
static const char *saelens_copy(const char *name, const char *cfg, long truncate_at)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", tmp_path(name));
    mkdir(dir, 0777);
    char src[4096], dst[4200];
    snprintf(src, sizeof src, "%s", shared_path("oracle/native/saelens_standard_d32_s128_b16"));
    snprintf(dst, sizeof dst, "%s/sae_weights.safetensors", dir);
    char from[4200];
    snprintf(from, sizeof from, "%s/sae_weights.safetensors", src);
    copy_file(from, dst, truncate_at);
    snprintf(dst, sizeof dst, "%s/cfg.json", dir);
    if (cfg) {
        write_file(dst, cfg);
    } else {
        snprintf(from, sizeof from, "%s/cfg.json", src);
        copy_file(from, dst, -1);
    }
    return dir;
}

static void expect_load_error(const char *path, sae_status want, const char *needle)
{
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    o.allocator = test_allocator();
    sae_dict *d = NULL;
    sae_status s = sae_dict_load(&d, path, &o);
    if (s != want)
        fail_msg("%s: status %d (%s), expected %d; message: %s", path, s, sae_status_str(s), want,
                 sae_last_error());
    assert_null(d);
    if (!strstr(sae_last_error(), needle))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", path, sae_last_error(), needle);
}

#define GOOD_CFG_HEAD "{\"architecture\": \"standard\", \"apply_b_dec_to_input\": true, "

static void test_directory_defects(void **state)
{
    (void)state;
    expect_load_error(tmp_path("does_not_exist"), SAE_ENOTFOUND, "does_not_exist");
    const char *empty = tmp_path("empty_dir");
    mkdir(empty, 0777);
    expect_load_error(empty, SAE_EFORMAT, "no SAE weights");
    /* truncated weights */
    expect_load_error(saelens_copy("trunc", NULL, 1000), SAE_EFORMAT, "sae_weights.safetensors");
    expect_load_error(saelens_copy("trunc_header", NULL, 5), SAE_EFORMAT, "sae_weights");
    /* shape mismatch: the config says d_sae 64 but W_enc is [32, 128] */
    expect_load_error(saelens_copy("shape", GOOD_CFG_HEAD "\"d_in\": 32, \"d_sae\": 64}", -1),
                      SAE_ESHAPE, "W_enc has shape [32, 128], expected [32, 64]");
    /* non-finite and impossible config values */
    expect_load_error(saelens_copy("nonfinite", GOOD_CFG_HEAD "\"d_in\": 1e999, \"d_sae\": 128}", -1),
                      SAE_ENUMERIC, "d_in");
    expect_load_error(saelens_copy("fraction", GOOD_CFG_HEAD "\"d_in\": 32.5, \"d_sae\": 128}", -1),
                      SAE_ENUMERIC, "d_in");
    expect_load_error(saelens_copy("negative", GOOD_CFG_HEAD "\"d_in\": -32, \"d_sae\": 128}", -1),
                      SAE_ENUMERIC, "d_in");
    expect_load_error(saelens_copy("missing", "{\"architecture\": \"standard\", \"d_in\": 32}", -1),
                      SAE_EFORMAT, "d_sae is missing");
    expect_load_error(saelens_copy("badjson", "{\"d_in\": 32,", -1), SAE_EFORMAT, "JSON");
    expect_load_error(saelens_copy("arch", "{\"architecture\": \"crosscoder\", \"d_in\": 32, "
                                           "\"d_sae\": 128}", -1),
                      SAE_EUNSUPPORTED, "crosscoder");
    expect_load_error(saelens_copy("topk_nok", "{\"architecture\": \"topk\", \"d_in\": 32, "
                                               "\"d_sae\": 128}", -1),
                      SAE_EFORMAT, "needs k");
    /* a directory with a config and no weights */
    const char *noweights = tmp_path("cfg_only");
    mkdir(noweights, 0777);
    char p[4200];
    snprintf(p, sizeof p, "%s/cfg.json", noweights);
    write_file(p, "{\"d_in\": 4, \"d_sae\": 8}");
    expect_load_error(noweights, SAE_EFORMAT, "no SAE weights");
    /* NaN weights are refused at load */
    sae_clear_error();
}

static void test_dict_validation(void **state)
{
    (void)state;
    float W[4 * 6] = {0}, V[6 * 4] = {0}, thr[6] = {0};
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = SAE_ARCH_TOPK, c.d_in = 4, c.d_sae = 6, c.k = 7;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W, w.W_dec = V;
    sae_dict *d = NULL;
    assert_int_equal(sae_dict_create(&d, &c, &w, test_allocator()), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "k = 7"));
    c.k = 2;
    W[5] = 0.0f / 0.0f;
    assert_int_equal(sae_dict_create(&d, &c, &w, test_allocator()), SAE_ENUMERIC);
    assert_non_null(strstr(sae_last_error(), "W_enc[5]"));
    W[5] = 0;
    c.arch = SAE_ARCH_JUMPRELU, c.k = 0;
    assert_int_equal(sae_dict_create(&d, &c, &w, test_allocator()), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "threshold"));
    w.threshold = thr;
    c.flags = 1u << 20;
    assert_int_equal(sae_dict_create(&d, &c, &w, test_allocator()), SAE_EINVAL);
    c.flags = 0;
    c.struct_size = 0;
    assert_int_equal(sae_dict_create(&d, &c, &w, test_allocator()), SAE_EINVAL);
    c.struct_size = sizeof c;
    /* wrap borrows: the pointers are the caller's */
    assert_sae_ok(sae_dict_wrap(&d, &c, &w, test_allocator()));
    sae_dict_weights got = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(d, &got));
    assert_ptr_equal(got.W_enc, W);
    assert_ptr_equal(got.threshold, thr);
    assert_int_equal(sae_dict_arch(d), SAE_ARCH_JUMPRELU);
    assert_string_equal(sae_arch_name(sae_dict_arch(d)), "jumprelu");
    sae_dict_free(d);
    sae_dict_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_saelens_round_trips),
        cmocka_unit_test(test_sparsify_round_trips),
        cmocka_unit_test(test_directory_defects),
        cmocka_unit_test(test_dict_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
