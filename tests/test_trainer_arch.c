/* test_trainer_arch.c: sae_trainer for JumpReLU, Gated and BatchTopK SAEs.
 *   - oracle loss terms and gradients of one batch: SAELens JumpReLUTrainingSAE ("step") and
 *     GatedTrainingSAE, dictionary_learning JumpReluTrainer and GatedSAETrainer; the exported
 *     dictionaries encode the cases' codes and reconstructions;
 *   - the fast paths against their double-precision twins on random shapes (every gradient
 *     block, the threshold, r_mag and b_mag included), for every sparsity mode and preset;
 *   - Adam, clipping and the gradient norm over the extra parameter blocks; determinism;
 *   - BatchTopK's threshold rules and its export as a JumpReLU dictionary;
 *   - create_from / export round trips, presets and option validation, a convergence smoke test.
 * Tolerances from ../shared/oracle/README.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle_util.h"
#include "trainer_util.h"
#include "sae/trainer.h"
#include "trainer/trainer_internal.h"

#define GRAD_ATOL 1e-5
#define GRAD_RTOL 1e-4
#define LOSS_RTOL 1e-5
#define ACT_TOL 1e-5

/* ---- helpers -------------------------------------------------------------------------------- */

static sae_trainer_options options_for(int32_t preset)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.preset = preset, o.n_threads = 2, o.allocator = test_allocator();
    return o;
}

/* Native parameter names of a case and the dictionary they make. */
typedef struct case_names {
    const char *W_enc, *b_enc, *W_dec, *b_dec, *threshold, *b_gate, *b_mag, *r_mag;
    bool linear; /* nn.Linear layouts: encoder.weight (F, d), decoder.weight (d, F) */
} case_names;

static sae_dict *dict_from(const char *file, case_names nm, int32_t arch, uint32_t flags)
{
    int64_t n = 0;
    float *We = oracle_load(file, nm.W_enc, nm.linear, &n);
    float *Wd = oracle_load(file, nm.W_dec, nm.linear, NULL);
    float *bd = oracle_load(file, nm.b_dec, false, NULL);
    float *vec[4] = {NULL, NULL, NULL, NULL};
    const char *names[4] = {nm.b_enc, nm.threshold, nm.b_gate, nm.b_mag};
    for (int i = 0; i < 4; i++)
        vec[i] = names[i] ? oracle_load(file, names[i], false, NULL) : NULL;
    float *rm = nm.r_mag ? oracle_load(file, nm.r_mag, false, NULL) : NULL;
    int64_t D = 0, F = 0;
    int64_t shape[SAE_MAX_DIMS];
    int nd = 0;
    test_free(load_tensor_f32(file, nm.W_dec, NULL, shape, &nd));
    F = nm.linear ? shape[1] : shape[0], D = n / F;
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = arch, cfg.d_in = D, cfg.d_sae = F, cfg.flags = flags;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = We, w.W_dec = Wd, w.b_dec = bd, w.b_enc = vec[0], w.threshold = vec[1];
    w.b_gate = vec[2], w.b_mag = vec[3], w.r_mag = rm;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &cfg, &w, test_allocator()));
    test_free(We), test_free(Wd), test_free(bd), test_free(rm);
    for (int i = 0; i < 4; i++)
        test_free(vec[i]);
    return d;
}

/* Gradients of a batch in the canonical layout, every block. */
typedef struct grads {
    sae__grad_out g;
    sae_train_metrics m;
} grads;

static grads grads_of(sae_trainer *t, const float *x, int64_t n)
{
    const int64_t D = t->cfg.d_in, F = t->cfg.F;
    grads r = {{test_malloc(sizeof(float) * (size_t)(D * F)), test_malloc(sizeof(float) * (size_t)F),
                test_malloc(sizeof(float) * (size_t)(D * F)), test_malloc(sizeof(float) * (size_t)D),
                test_malloc(sizeof(float) * (size_t)F), test_malloc(sizeof(float) * (size_t)F),
                test_malloc(sizeof(float) * (size_t)F)},
               SAE_TRAIN_METRICS_INIT};
    assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, D, &r.m, &r.g));
    return r;
}

static void free_grads(grads *r)
{
    float *all[] = {r->g.W_enc, r->g.b_enc, r->g.W_dec, r->g.b_dec, r->g.theta, r->g.r_mag,
                    r->g.b_mag};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        test_free(all[i]);
}

/* The exported dictionary's dense codes and reconstruction of the case's x against its
 * tensors. */
static void check_export(const sae_trainer *t, const char *file, const char *codes,
                         const char *recon)
{
    sae_dict *dict = NULL;
    assert_sae_ok(sae_trainer_export(t, &dict));
    int64_t nx = 0;
    const int64_t D = t->cfg.d_in, F = t->cfg.F;
    float *x = oracle_load(file, "in.x", false, &nx);
    const int64_t n = nx / D;
    float *f = test_malloc(sizeof(float) * (size_t)(n * F));
    float *xh = test_malloc(sizeof(float) * (size_t)(n * D));
    sae_encoder *e = NULL;
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.allocator = test_allocator();
    assert_sae_ok(sae_encoder_create(&e, dict, &eo));
    assert_sae_ok(sae_encoder_encode(e, n, x, D, f, F, NULL, 0));
    assert_sae_ok(sae_encoder_decode(e, n, f, F, xh, D));
    oracle_check_tensor(f, file, codes, false, ACT_TOL, ACT_TOL);
    oracle_check_tensor(xh, file, recon, false, ACT_TOL, ACT_TOL);
    sae_encoder_free(e);
    sae_dict_free(dict);
    test_free(x), test_free(f), test_free(xh);
}

/* ---- oracle cases --------------------------------------------------------------------------- */

static void test_oracle_saelens_jumprelu(void **state)
{
    (void)state;
    const char *file = oracle_case("saelens_jumprelu_step_d32_s128_b16");
    sae_dict *d = dict_from(file,
                            (case_names){.W_enc = "param.W_enc", .b_enc = "param.b_enc",
                                         .W_dec = "param.W_dec", .b_dec = "param.b_dec",
                                         .threshold = "param.threshold"},
                            SAE_ARCH_JUMPRELU, 0);
    sae_trainer_options o = options_for(SAE_PRESET_SAELENS);
    o.l1_coefficient = 0.3; /* l0_coefficient; bandwidth 0.05 and "step" are the defaults */
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    assert_true(t->cfg.log_threshold && t->cfg.bandwidth == 0.05 &&
                t->cfg.jumprelu_sparsity == SAE_JUMPRELU_STEP);
    /* the trained parameter itself (create_from takes log of the threshold: 1 ulp away) */
    float *lt = oracle_load(file, "param.log_threshold", false, NULL);
    memcpy(t->p.theta, lt, sizeof(float) * 128);
    test_free(lt);
    float *x = oracle_load(file, "in.x", false, NULL);
    for (int products = 1; products <= 2; products++) {
        printf("  %s products\n", products == 1 ? "dense" : "sparse");
        t->cfg.jumprelu_products = products;
        grads r = grads_of(t, x, 16);
        oracle_check_tensor(r.g.W_enc, file, "out.grad.W_enc", false, GRAD_ATOL, GRAD_RTOL);
        oracle_check_tensor(r.g.b_enc, file, "out.grad.b_enc", false, GRAD_ATOL, GRAD_RTOL);
        oracle_check_tensor(r.g.W_dec, file, "out.grad.W_dec", false, GRAD_ATOL, GRAD_RTOL);
        oracle_check_tensor(r.g.b_dec, file, "out.grad.b_dec", false, GRAD_ATOL, GRAD_RTOL);
        oracle_check_tensor(r.g.theta, file, "out.grad.log_threshold", false, GRAD_ATOL,
                            GRAD_RTOL);
        oracle_check_scalar(r.m.mse, file, "out.mse_loss", LOSS_RTOL);
        oracle_check_scalar(r.m.l1_coefficient * r.m.l1, file, "out.l0_loss", LOSS_RTOL);
        oracle_check_scalar(r.m.loss, file, "out.loss", LOSS_RTOL);
        free_grads(&r);
    }
    check_export(t, file, "out.feature_acts", "out.sae_out");
    check_export(t, file, "out.inference.feature_acts", "out.inference.sae_out");
    test_free(x);
    sae_trainer_free(t);
    sae_dict_free(d);
}

static void test_oracle_dl_jumprelu(void **state)
{
    (void)state;
    const char *file = oracle_case("dl_jumprelu_d32_s128_b16");
    sae_dict *d = dict_from(file,
                            (case_names){.W_enc = "param.W_enc", .b_enc = "param.b_enc",
                                         .W_dec = "param.W_dec", .b_dec = "param.b_dec",
                                         .threshold = "param.threshold"},
                            SAE_ARCH_JUMPRELU, SAE_DICT_NO_B_DEC_INPUT);
    for (int input = 0; input < 2; input++) {
        sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
        o.jumprelu_bandwidth = 0.05;         /* the case's (library default 0.001) */
        o.l1_warmup_steps = SAE_TRAIN_OFF;    /* sparsity_warmup_steps = None */
        o.b_dec_input = input ? SAE_SWITCH_ON : SAE_SWITCH_PRESET; /* preset: the dictionary's */
        sae_trainer *t = NULL;
        assert_sae_ok(sae_trainer_create_from(&t, d, &o));
        assert_true(!t->cfg.log_threshold && t->cfg.target_l0 == 20 && t->cfg.beta1 == 0 &&
                    t->cfg.jumprelu_sparsity == SAE_JUMPRELU_TARGET_L0 &&
                    t->cfg.b_dec_input == (input == 1));
        if (input) { /* out.apply_b_dec_to_input.*: the same weights reading x - b_dec */
            printf("  apply_b_dec_to_input\n");
            check_export(t, file, "out.apply_b_dec_to_input.f", "out.apply_b_dec_to_input.x_hat");
            sae_trainer_free(t);
            continue;
        }
        float *x = oracle_load(file, "in.x", false, NULL);
        for (int products = 1; products <= 2; products++) {
            printf("  %s products\n", products == 1 ? "dense" : "sparse");
            t->cfg.jumprelu_products = products;
            grads r = grads_of(t, x, 16);
            oracle_check_tensor(r.g.W_enc, file, "out.grad.W_enc", false, GRAD_ATOL, GRAD_RTOL);
            oracle_check_tensor(r.g.b_enc, file, "out.grad.b_enc", false, GRAD_ATOL, GRAD_RTOL);
            oracle_check_tensor(r.g.W_dec, file, "out.grad.W_dec", false, GRAD_ATOL, GRAD_RTOL);
            oracle_check_tensor(r.g.b_dec, file, "out.grad.b_dec", false, GRAD_ATOL, GRAD_RTOL);
            oracle_check_tensor(r.g.theta, file, "out.grad.threshold", false, GRAD_ATOL,
                                GRAD_RTOL);
            oracle_check_scalar(r.m.mse, file, "out.l2_loss", LOSS_RTOL);
            oracle_check_scalar(r.m.loss, file, "out.loss", LOSS_RTOL);
            assert_true(r.m.l1_coefficient == 1.0);
            free_grads(&r);
        }
        check_export(t, file, "out.f", "out.x_hat");
        test_free(x);
        sae_trainer_free(t);
    }
    sae_dict_free(d);
}

static void test_oracle_saelens_gated(void **state)
{
    (void)state;
    const char *file = oracle_case("saelens_gated_d32_s128_b16");
    sae_dict *d = dict_from(file,
                            (case_names){.W_enc = "param.W_enc", .W_dec = "param.W_dec",
                                         .b_dec = "param.b_dec", .b_gate = "param.b_gate",
                                         .b_mag = "param.b_mag", .r_mag = "param.r_mag"},
                            SAE_ARCH_GATED, 0);
    sae_trainer_options o = options_for(SAE_PRESET_SAELENS);
    o.l1_coefficient = 0.5;
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    assert_true(t->cfg.gated_aux_attached && t->cfg.l1 == SAE_L1_DECODER_NORM &&
                t->cfg.auxk_coefficient == 1.0);
    float *x = oracle_load(file, "in.x", false, NULL);
    grads r = grads_of(t, x, 16);
    oracle_check_tensor(r.g.W_enc, file, "out.grad.W_enc", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.b_enc, file, "out.grad.b_gate", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.b_mag, file, "out.grad.b_mag", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.r_mag, file, "out.grad.r_mag", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.W_dec, file, "out.grad.W_dec", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.b_dec, file, "out.grad.b_dec", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_scalar(r.m.mse, file, "out.mse_loss", LOSS_RTOL);
    oracle_check_scalar(r.m.l1_coefficient * r.m.l1, file, "out.l1_loss", LOSS_RTOL);
    oracle_check_scalar(r.m.aux, file, "out.aux_loss", LOSS_RTOL);
    oracle_check_scalar(r.m.loss, file, "out.loss", LOSS_RTOL);
    check_export(t, file, "out.feature_acts", "out.sae_out");
    check_export(t, file, "out.inference.feature_acts", "out.inference.sae_out");
    free_grads(&r);
    test_free(x);
    sae_trainer_free(t);
    sae_dict_free(d);
}

static void test_oracle_dl_gated(void **state)
{
    (void)state;
    const char *file = oracle_case("dl_gated_d32_s128_b16");
    sae_dict *d = dict_from(file,
                            (case_names){.W_enc = "param.encoder.weight",
                                         .W_dec = "param.decoder.weight",
                                         .b_dec = "param.decoder_bias", .b_gate = "param.gate_bias",
                                         .b_mag = "param.mag_bias", .r_mag = "param.r_mag",
                                         .linear = true},
                            SAE_ARCH_GATED, 0);
    sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    o.l1_warmup_steps = SAE_TRAIN_OFF; /* sparsity_scale = 1 in the case */
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    assert_true(!t->cfg.gated_aux_attached && t->cfg.l1 == SAE_L1_PLAIN &&
                t->cfg.l1_coefficient == 0.1 && t->cfg.auxk_coefficient == 1.0);
    float *x = oracle_load(file, "in.x", false, NULL);
    grads r = grads_of(t, x, 16);
    /* encoder.weight (F, d) is W_enc^T; decoder.weight (d, F) is W_dec^T */
    float *WeT = oracle_load(file, "out.grad.encoder.weight", true, NULL);
    oracle_check(r.g.W_enc, WeT, 32 * 128, GRAD_ATOL, GRAD_RTOL, "out.grad.encoder.weight");
    test_free(WeT);
    oracle_check_tensor(r.g.W_dec, file, "out.grad.decoder.weight", true, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.b_enc, file, "out.grad.gate_bias", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.b_mag, file, "out.grad.mag_bias", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.r_mag, file, "out.grad.r_mag", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(r.g.b_dec, file, "out.grad.decoder_bias", false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_scalar(r.m.mse, file, "out.mse_loss", LOSS_RTOL);
    oracle_check_scalar(r.m.l1, file, "out.sparsity_loss", LOSS_RTOL);
    oracle_check_scalar(r.m.aux, file, "out.aux_loss", LOSS_RTOL);
    oracle_check_scalar(r.m.loss, file, "out.loss", LOSS_RTOL);
    check_export(t, file, "out.f", "out.x_hat");
    free_grads(&r);
    test_free(x);
    sae_trainer_free(t);
    sae_dict_free(d);
}

/* ---- fast paths against their twins --------------------------------------------------------- */

typedef struct variant {
    const char *name;
    int32_t arch, preset;
    sae_trainer_options extra; /* non-zero fields are copied over the preset options */
} variant;

/* A trainer with random weights for a variant: pre-activations of order 0.5, biases, JumpReLU
 * thresholds around them (with raw thresholds also at and below 0), Gated r_mag and b_mag, and
 * dead counters that mark a third of the features dead under its rule. */
static sae_trainer *random_trainer(const variant *v, int64_t d, int64_t F, int64_t k, int threads,
                                   uint64_t seed)
{
    sae_trainer_options o = v->extra;
    o.struct_size = sizeof o;
    o.arch = v->arch, o.preset = v->preset, o.d_in = d, o.d_sae = F;
    o.k = v->arch == SAE_ARCH_TOPK || v->arch == SAE_ARCH_BATCHTOPK ? k : 0;
    o.seed = seed, o.n_threads = threads, o.allocator = test_allocator();
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    fill_normal(t->p.W_encT, F * d, seed + 3, 0.5f / sqrtf((float)d));
    fill_normal(t->p.b_enc, F, seed + 1, 0.1f);
    fill_normal(t->p.b_dec, d, seed + 2, 0.1f);
    if (t->p.theta) {
        fill_normal(t->p.theta, F, seed + 4, 0.3f);
        for (int64_t j = 0; j < F; j++) {
            float th = 0.05f + fabsf(t->p.theta[j]);
            if (!t->cfg.log_threshold && j % 5 == 0)
                th = j % 10 == 0 ? 0.0f : -th;
            t->p.theta[j] = t->cfg.log_threshold ? logf(th) : th;
        }
    }
    if (t->p.r_mag) {
        fill_normal(t->p.r_mag, F, seed + 5, 0.3f);
        fill_normal(t->p.b_mag, F, seed + 6, 0.1f);
    }
    int64_t *since = test_malloc(sizeof(int64_t) * (size_t)F);
    for (int64_t j = 0; j < F; j++)
        since[j] = j % 3 == 1 ? t->cfg.dead_window + 1 : 0;
    assert_sae_ok(sae_trainer_set_since_fired(t, since));
    test_free(since);
    return t;
}

#define ON SAE_SWITCH_ON
#define OFF SAE_SWITCH_OFF

static const variant variants[] = {
    {"jumprelu saelens step", SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS,
     {.jumprelu_bandwidth = 0.2, .l1_coefficient = 0.3}},
    {"jumprelu saelens tanh", SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS,
     {.jumprelu_sparsity = SAE_JUMPRELU_TANH, .jumprelu_bandwidth = 0.2, .l1_coefficient = 0.5}},
    {"jumprelu dictionary_learning", SAE_ARCH_JUMPRELU, SAE_PRESET_DICTIONARY_LEARNING,
     {.jumprelu_bandwidth = 0.2, .target_l0 = 5, .l1_warmup_steps = SAE_TRAIN_OFF}},
    {"jumprelu dl log, b_dec input, fvu", SAE_ARCH_JUMPRELU, SAE_PRESET_DICTIONARY_LEARNING,
     {.jumprelu_bandwidth = 0.2, .jumprelu_log_threshold = ON, .jumprelu_init_threshold = 0.1,
      .b_dec_input = ON, .mse = SAE_MSE_FVU, .l1_warmup_steps = SAE_TRAIN_OFF}},
    {"jumprelu saelens raw, tanh, normalized", SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS,
     {.jumprelu_sparsity = SAE_JUMPRELU_TANH, .jumprelu_log_threshold = OFF,
      .jumprelu_bandwidth = 0.2, .b_dec_input = OFF, .mse = SAE_MSE_NORMALIZED}},
    {"gated saelens", SAE_ARCH_GATED, SAE_PRESET_SAELENS, {.l1_coefficient = 0.5}},
    {"gated dictionary_learning", SAE_ARCH_GATED, SAE_PRESET_DICTIONARY_LEARNING,
     {.l1_warmup_steps = SAE_TRAIN_OFF}},
    {"gated detached, plain, fvu, aux 0.3", SAE_ARCH_GATED, SAE_PRESET_SAELENS,
     {.gated_aux = SAE_GATED_AUX_DETACHED, .l1 = SAE_L1_PLAIN, .mse = SAE_MSE_FVU,
      .auxk_coefficient = 0.3}},
    {"gated dl attached, norm L1, no b_dec input", SAE_ARCH_GATED,
     SAE_PRESET_DICTIONARY_LEARNING,
     {.gated_aux = SAE_GATED_AUX_ATTACHED, .l1 = SAE_L1_DECODER_NORM, .b_dec_input = OFF,
      .l1_warmup_steps = SAE_TRAIN_OFF}},
    {"batchtopk saelens", SAE_ARCH_BATCHTOPK, SAE_PRESET_SAELENS, {0}},
    {"batchtopk dictionary_learning", SAE_ARCH_BATCHTOPK, SAE_PRESET_DICTIONARY_LEARNING, {0}},
    {"batchtopk relu after, no rescale", SAE_ARCH_BATCHTOPK, SAE_PRESET_SAELENS,
     {.topk_relu = SAE_TOPK_RELU_AFTER, .rescale = OFF, .k_aux = 3}},
    {"batchtopk dl rescale, no b_dec input", SAE_ARCH_BATCHTOPK, SAE_PRESET_DICTIONARY_LEARNING,
     {.rescale = ON, .b_dec_input = OFF, .mse = SAE_MSE_NORMALIZED}},
    {"topk dl no b_dec input", SAE_ARCH_TOPK, SAE_PRESET_DICTIONARY_LEARNING,
     {.b_dec_input = OFF}},
    {"standard no b_dec input", SAE_ARCH_STANDARD, SAE_PRESET_SAELENS, {.b_dec_input = OFF}},
};

static void test_fast_matches_reference(void **state)
{
    (void)state;
    const int64_t shapes[][4] = {{1, 5, 7, 2}, {7, 13, 37, 3}, {33, 24, 100, 8},
                                 {65, 31, 257, 16}, {130, 64, 96, 5}};
    for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++)
        for (size_t run = 0; run < 2 * sizeof shapes / sizeof shapes[0]; run++) {
            /* JumpReLU: each shape with the dense then the sparse products */
            const size_t si = run / 2;
            const int products = variants[vi].arch == SAE_ARCH_JUMPRELU ? 1 + (int)(run % 2) : 0;
            if (run % 2 && !products)
                continue;
            const int64_t n = shapes[si][0], d = shapes[si][1], F = shapes[si][2];
            const int64_t k = shapes[si][3], ldx = d + 3;
            const variant *v = &variants[vi];
            sae_trainer *t = random_trainer(v, d, F, k, 2, 100 + si);
            t->cfg.jumprelu_products = products;
            if (n == 1 && t->cfg.mse == SAE_MSE_FVU) {
                sae_trainer_free(t); /* one row has no variance to normalise by */
                continue;
            }
            float *x = test_malloc(sizeof(float) * (size_t)(n * ldx));
            fill_normal(x, n * ldx, 7 + si, 1.0f);
            char what[200];
            snprintf(what, sizeof what, "%s%s, n %lld d %lld F %lld k %lld", v->name,
                     products == 2 ? " (sparse)" : "", (long long)n, (long long)d, (long long)F,
                     (long long)k);
            const sae_train_metrics m = check_against_reference(t, n, x, ldx, what);
            if (si == 3 && products < 2)
                printf("    %-44s l0 %.2f  sparsity %.4g  aux %.4g  dead %lld\n", v->name, m.l0,
                       m.l1, m.aux, (long long)m.n_dead);
            test_free(x);
            sae_trainer_free(t);
        }
}

/* JumpReLU keeps the codes above theta and in the window only: check that the window really
 * holds codes below theta in the random cases (so the STE path is exercised), and that the
 * workspace grows and shrinks its code lists with the batch. */
static void test_jumprelu_code_lists(void **state)
{
    (void)state;
    const int64_t d = 24, F = 100;
    sae_trainer *t = random_trainer(&variants[2], d, F, 0, 2, 5);
    for (int round = 0; round < 3; round++) {
        t->cfg.jumprelu_products = round == 1 ? 2 : 0; /* sparse, or by density */
        const int64_t n = round == 1 ? 90 : 20;
        float *x = test_malloc(sizeof(float) * (size_t)(n * d));
        fill_normal(x, n * d, 30 + round, 1.0f);
        assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, d, NULL, NULL));
        int64_t below = 0, above = 0;
        for (int64_t b = 0; b < n; b++)
            for (int64_t e = t->ws.row_ptr[b]; e < t->ws.row_ptr[b + 1]; e++) {
                const int32_t j = t->ws.sel_idx[e];
                const float pre = t->ws.pre[b * F + j] + t->p.b_enc[j];
                const float th = sae__theta_of(&t->cfg, t->p.theta[j]);
                if (pre > th)
                    above++, assert_true(t->ws.sel_u[e] == pre);
                else
                    below++, assert_true(t->ws.sel_u[e] == 0.0f && fabsf(pre - th) < 0.11f);
            }
        printf("    n %lld: %lld codes above theta, %lld in the window below\n", (long long)n,
               (long long)above, (long long)below);
        assert_true(above > 0 && below > 0 && t->ws.entries >= above + below);
        test_free(x);
    }
    sae_trainer_free(t);
}

/* ---- optimiser over the extra blocks, determinism ------------------------------------------- */

/* A step equals: gradients, global norm over every block, clip, plain Adam over the whole
 * parameter array (decoder constraint off, so nothing else moves). */
static void test_step_updates_every_block(void **state)
{
    (void)state;
    const int64_t n = 40, d = 16, F = 50;
    const variant vs[] = {{"jumprelu", SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS,
                           {.jumprelu_bandwidth = 0.2, .clip_norm = 0.5}},
                          {"gated", SAE_ARCH_GATED, SAE_PRESET_SAELENS, {.clip_norm = 0.5}}};
    for (size_t vi = 0; vi < 2; vi++) {
        sae_trainer *t = random_trainer(&vs[vi], d, F, 0, 2, 9);
        const int64_t N = t->n_params;
        assert_int_equal(N, 2 * F * d + F + d + sae__extra_blocks(vs[vi].arch) * F);
        float *x = test_malloc(sizeof(float) * (size_t)(n * d));
        fill_normal(x, n * d, 10, 1.0f);
        float *p = test_malloc(sizeof(float) * (size_t)N), *m = test_malloc(sizeof(float) * (size_t)N);
        float *v = test_malloc(sizeof(float) * (size_t)N);
        memcpy(p, t->param, sizeof(float) * (size_t)N);
        memset(m, 0, sizeof(float) * (size_t)N), memset(v, 0, sizeof(float) * (size_t)N);
        const int64_t e0 = 2 * F * d + F + d; /* the extra blocks */
        float *extra0 = test_malloc(sizeof(float) * (size_t)(N - e0));
        memcpy(extra0, t->param + e0, sizeof(float) * (size_t)(N - e0));
        assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, d, NULL, NULL));
        double norm = 0;
        for (int64_t i = 0; i < N; i++)
            norm += (double)t->grad[i] * t->grad[i];
        norm = sqrt(norm);
        const float clip = sae__clip_factor(norm, 0.5);
        assert_true(clip < 1.0f);
        sae__adam_ref(&t->cfg, 1, t->cfg.lr, clip, p, m, v, t->grad, N);
        sae_train_metrics mt = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae_trainer_step(t, n, x, d, &mt));
        assert_true(fabs(mt.grad_norm - norm) <= 1e-9 * norm);
        assert_close_f32(t->param, p, N, 1e-7, 1e-6, vs[vi].name);
        assert_close_f32(t->m, m, N, 1e-9, 1e-6, "m");
        int64_t moved = 0, with_grad = 0; /* Adam's first step moves what has a gradient */
        for (int64_t i = e0; i < N; i++) {
            with_grad += t->grad[i] != 0.0f;
            moved += t->grad[i] != 0.0f && t->param[i] != extra0[i - e0];
        }
        printf("    %s: %lld of %lld extra parameters had a gradient and moved\n", vs[vi].name,
               (long long)moved, (long long)(N - e0));
        assert_true(with_grad > 0 && moved == with_grad);
        test_free(x), test_free(p), test_free(m), test_free(v), test_free(extra0);
        sae_trainer_free(t);
    }
}

/* Same seed and threads: identical bytes; 1 thread or 2: identical too. */
static void test_determinism(void **state)
{
    (void)state;
    const size_t picks[] = {0, 2, 6, 9};
    for (size_t pi = 0; pi < sizeof picks / sizeof picks[0]; pi++) {
        const variant *v = &variants[picks[pi]];
        sae_trainer *a = random_trainer(v, 24, 96, 6, 2, 42);
        sae_trainer *b = random_trainer(v, 24, 96, 6, 2, 42);
        sae_trainer *one = random_trainer(v, 24, 96, 6, 1, 42);
        run_steps(a, 3, 50, 24, 8, NULL);
        run_steps(b, 3, 50, 24, 8, NULL);
        run_steps(one, 3, 50, 24, 8, NULL);
        const size_t bytes = sizeof(float) * (size_t)a->n_params;
        for (int pass = 0; pass < 2; pass++) {
            const sae_trainer *o = pass ? one : b;
            if (memcmp(a->param, o->param, bytes) || memcmp(a->m, o->m, bytes) ||
                memcmp(a->v, o->v, bytes) || a->threshold != o->threshold)
                fail_msg("%s: trainers differ after 3 steps (%s)", v->name,
                         pass ? "1 vs 2 threads" : "same seed and threads");
        }
        sae_trainer_free(a), sae_trainer_free(b), sae_trainer_free(one);
    }
}

/* ---- BatchTopK: threshold rules and the JumpReLU export ------------------------------------- */

static void test_batchtopk_threshold_rules(void **state)
{
    (void)state;
    sae__train_cfg c = {.arch = SAE_ARCH_BATCHTOPK, .threshold_beta = 0.99,
                        .batchtopk_threshold = SAE_BATCHTOPK_THRESHOLD_SAELENS,
                        .threshold_start_step = INT64_MAX};
    assert_true(sae__batchtopk_threshold(&c, 0, 0.0f, 2.0) == (float)(0.01 * 2.0));
    assert_true(sae__batchtopk_threshold(&c, 7, 0.5f, -1.0) == 0.5f); /* no positive code */
    c.batchtopk_threshold = SAE_BATCHTOPK_THRESHOLD_DICTIONARY_LEARNING;
    c.threshold_beta = 0.999, c.threshold_start_step = 5;
    assert_true(sae__batchtopk_threshold(&c, 5, -1.0f, 2.0) == -1.0f); /* step > start only */
    assert_true(sae__batchtopk_threshold(&c, 6, -1.0f, 2.0) == 2.0f);  /* first: set */
    assert_true(sae__batchtopk_threshold(&c, 7, 2.0f, -1.0) == (float)(0.999 * 2.0));
    assert_true(sae__batchtopk_threshold(&c, 7, 2.0f, 4.0) == (float)(0.999 * 2 + 0.001 * 4));

    /* In a trainer: the smallest positive kept code of each step's batch. */
    const int64_t n = 30, d = 12, F = 40;
    for (int rule = 0; rule < 2; rule++) {
        variant v = {"threshold", SAE_ARCH_BATCHTOPK,
                     rule ? SAE_PRESET_DICTIONARY_LEARNING : SAE_PRESET_SAELENS,
                     {.threshold_start_step = SAE_TRAIN_OFF, .warmup_steps = SAE_TRAIN_OFF}};
        sae_trainer *t = random_trainer(&v, d, F, 3, 2, 8);
        float expect = rule ? -1.0f : 0.0f;
        assert_true(t->threshold == expect);
        for (int s = 0; s < 3; s++) {
            run_steps(t, 1, n, d, 20 + s, NULL);
            double m = INFINITY;
            for (int64_t e = 0; e < t->ws.row_ptr[n]; e++)
                if (t->ws.sel_f[e] > 0.0f && t->ws.sel_f[e] < m)
                    m = t->ws.sel_f[e];
            expect = sae__batchtopk_threshold(&t->cfg, s, expect, isfinite(m) ? m : -1.0);
            assert_true(t->threshold == expect);
            printf("    %s step %d: smallest kept %.6f, threshold %.6f\n",
                   rule ? "dictionary_learning" : "SAELens", s, m, (double)t->threshold);
        }
        assert_true(rule ? t->threshold > 0.0f : t->threshold > 0.0f && t->threshold < 0.1f);
        sae_trainer_free(t);
    }
}

/* With the threshold between the batch's k n-th and next value, the exported JumpReLU
 * dictionary encodes the batch exactly as the training forward selected it. */
static void test_batchtopk_export(void **state)
{
    (void)state;
    const int64_t n = 40, d = 16, F = 64, k = 3;
    for (size_t vi = 9; vi <= 10; vi++) {
        const variant *v = &variants[vi];
        sae_trainer *t = random_trainer(v, d, F, k, 2, 31);
        float *x = test_malloc(sizeof(float) * (size_t)(n * d));
        fill_normal(x, n * d, 32, 1.0f);
        assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, d, NULL, NULL));
        float *train = test_malloc(sizeof(float) * (size_t)(n * F));
        memset(train, 0, sizeof(float) * (size_t)(n * F));
        float lowest_kept = INFINITY, highest_left = 0.0f;
        for (int64_t b = 0; b < n; b++)
            for (int64_t e = t->ws.row_ptr[b]; e < t->ws.row_ptr[b + 1]; e++)
                train[b * F + t->ws.sel_idx[e]] = t->ws.sel_f[e];
        assert_int_equal(t->ws.row_ptr[n], k * n);
        for (int64_t b = 0; b < n; b++)
            for (int64_t j = 0; j < F; j++) {
                float s = t->cfg.rescale ? t->ws.dec_norm[j] : 1.0f;
                float val = (t->ws.pre[b * F + j] + t->p.b_enc[j]) * s;
                if (train[b * F + j] > 0.0f)
                    lowest_kept = fminf(lowest_kept, train[b * F + j]);
                else
                    highest_left = fmaxf(highest_left, val);
            }
        printf("    %s: smallest kept %.6f, largest left %.6f\n", v->name, lowest_kept,
               highest_left);
        assert_true(lowest_kept > highest_left + 1e-5f); /* far beyond rounding */
        t->threshold = (lowest_kept + highest_left) / 2;
        sae_dict *dict = NULL;
        assert_sae_ok(sae_trainer_export(t, &dict));
        sae_dict_config dc = SAE_DICT_CONFIG_INIT;
        sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
        assert_sae_ok(sae_dict_get_config(dict, &dc));
        assert_sae_ok(sae_dict_get_weights(dict, &w));
        assert_true(dc.arch == SAE_ARCH_JUMPRELU && dc.k == 0 && w.threshold &&
                    !!(dc.flags & SAE_DICT_RESCALE_BY_DECODER_NORM) == t->cfg.rescale);
        for (int64_t j = 0; j < F; j++)
            assert_true(w.threshold[j] == t->threshold);
        float *f = test_malloc(sizeof(float) * (size_t)(n * F));
        sae_encoder *e = NULL;
        sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
        eo.allocator = test_allocator();
        assert_sae_ok(sae_encoder_create(&e, dict, &eo));
        assert_sae_ok(sae_encoder_encode(e, n, x, d, f, F, NULL, 0));
        for (int64_t i = 0; i < n * F; i++)
            assert_true((f[i] > 0.0f) == (train[i] > 0.0f));
        oracle_check(f, train, n * F, 1e-5, 1e-5, v->name);
        sae_encoder_free(e);
        sae_dict_free(dict);
        test_free(x), test_free(train), test_free(f);
        sae_trainer_free(t);
    }
}

/* ---- create_from, export, presets, options -------------------------------------------------- */

static void assert_same(const float *a, const float *b, int64_t n, double rtol, const char *what)
{
    assert_non_null(a), assert_non_null(b);
    assert_close_f32(a, b, n, 0.0, rtol, what);
}

/* create_from then export gives the dictionary back. */
static void test_create_from_export_roundtrip(void **state)
{
    (void)state;
    struct {
        const char *file;
        case_names nm;
        int32_t arch, preset;
        uint32_t flags;
    } cases[] = {
        {"saelens_jumprelu_step_d32_s128_b16",
         {.W_enc = "param.W_enc", .b_enc = "param.b_enc", .W_dec = "param.W_dec",
          .b_dec = "param.b_dec", .threshold = "param.threshold"},
         SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS, 0},
        {"dl_jumprelu_d32_s128_b16",
         {.W_enc = "param.W_enc", .b_enc = "param.b_enc", .W_dec = "param.W_dec",
          .b_dec = "param.b_dec", .threshold = "param.threshold"},
         SAE_ARCH_JUMPRELU, SAE_PRESET_DICTIONARY_LEARNING, SAE_DICT_NO_B_DEC_INPUT},
        {"saelens_gated_d32_s128_b16",
         {.W_enc = "param.W_enc", .W_dec = "param.W_dec", .b_dec = "param.b_dec",
          .b_gate = "param.b_gate", .b_mag = "param.b_mag", .r_mag = "param.r_mag"},
         SAE_ARCH_GATED, SAE_PRESET_SAELENS, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sae_dict *d = dict_from(oracle_case(cases[i].file), cases[i].nm, cases[i].arch,
                                cases[i].flags);
        sae_trainer_options o = options_for(cases[i].preset);
        sae_trainer *t = NULL;
        assert_sae_ok(sae_trainer_create_from(&t, d, &o));
        sae_dict *back = NULL;
        assert_sae_ok(sae_trainer_export(t, &back));
        sae_dict_config c1 = SAE_DICT_CONFIG_INIT, c2 = SAE_DICT_CONFIG_INIT;
        sae_dict_weights w1 = SAE_DICT_WEIGHTS_INIT, w2 = SAE_DICT_WEIGHTS_INIT;
        sae_dict_get_config(d, &c1), sae_dict_get_config(back, &c2);
        sae_dict_get_weights(d, &w1), sae_dict_get_weights(back, &w2);
        assert_true(c1.arch == c2.arch && c1.flags == c2.flags && c1.k == c2.k);
        const int64_t F = c1.d_sae, D = c1.d_in;
        assert_same(w2.W_enc, w1.W_enc, F * D, 0, "W_enc");
        assert_same(w2.W_dec, w1.W_dec, F * D, 0, "W_dec");
        assert_same(w2.b_dec, w1.b_dec, D, 0, "b_dec");
        if (cases[i].arch == SAE_ARCH_GATED) {
            assert_null(w2.b_enc), assert_null(w2.threshold);
            assert_same(w2.b_gate, w1.b_gate, F, 0, "b_gate");
            assert_same(w2.r_mag, w1.r_mag, F, 0, "r_mag");
            assert_same(w2.b_mag, w1.b_mag, F, 0, "b_mag");
        } else { /* exp(log(theta)) is within an ulp of theta */
            assert_same(w2.b_enc, w1.b_enc, F, 0, "b_enc");
            assert_same(w2.threshold, w1.threshold, F, t->cfg.log_threshold ? 2.5e-7 : 0,
                        "threshold");
        }
        sae_dict_free(back);
        sae_trainer_free(t);
        sae_dict_free(d);
    }
}

/* A small dictionary of an architecture, weights from a seed (thresholds 0.1 + |N|/10, the
 * first one `theta0`). */
static sae_dict *small_dict(int32_t arch, uint32_t flags, float theta0)
{
    const int64_t D = 6, F = 10;
    float We[60], Wd[60], v[10], th[10];
    fill_normal(We, 60, 1, 1.0f), fill_normal(Wd, 60, 2, 1.0f), fill_normal(v, 10, 3, 0.1f);
    for (int64_t j = 0; j < F; j++)
        th[j] = j ? 0.1f + fabsf(v[j]) : theta0;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = arch, c.d_in = D, c.d_sae = F, c.flags = flags;
    c.k = arch == SAE_ARCH_BATCHTOPK ? 2 : 0;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = We, w.W_dec = Wd;
    w.b_enc = arch == SAE_ARCH_GATED ? NULL : v;
    w.b_gate = arch == SAE_ARCH_GATED ? v : NULL;
    w.threshold = arch == SAE_ARCH_JUMPRELU || arch == SAE_ARCH_BATCHTOPK ? th : NULL;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
    return d;
}

static void test_create_from_checks(void **state)
{
    (void)state;
    sae_trainer *t = NULL;
    sae_trainer_options o = options_for(SAE_PRESET_SAELENS);
    sae_dict *d = small_dict(SAE_ARCH_BATCHTOPK, 0, 0.3f);
    assert_int_equal(sae_trainer_create_from(&t, d, &o), SAE_EUNSUPPORTED);
    sae_dict_free(d);
    d = small_dict(SAE_ARCH_JUMPRELU, SAE_DICT_RESCALE_BY_DECODER_NORM, 0.3f);
    assert_int_equal(sae_trainer_create_from(&t, d, &o), SAE_EUNSUPPORTED);
    sae_dict_free(d);
    d = small_dict(SAE_ARCH_JUMPRELU, 0, 0.0f); /* a zero threshold has no logarithm */
    assert_int_equal(sae_trainer_create_from(&t, d, &o), SAE_EINVAL);
    assert_non_null(strstr(sae_last_error(), "threshold[0]"));
    assert_null(t);
    o.arch = SAE_ARCH_GATED;
    assert_int_equal(sae_trainer_create_from(&t, d, &o), SAE_ESHAPE);
    o = options_for(SAE_PRESET_DICTIONARY_LEARNING); /* raw thresholds: fine */
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    assert_true(t->p.theta[0] == 0.0f && t->cfg.b_dec_input && t->cfg.b_dec_init == SAE_BDEC_KEEP);
    sae_trainer_free(t);
    sae_dict_free(d);
    d = small_dict(SAE_ARCH_GATED, 0, 0.0f); /* b_dec, b_mag, r_mag absent: zeros */
    o = options_for(SAE_PRESET_SAELENS);
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    for (int64_t j = 0; j < 10; j++)
        assert_true(t->p.r_mag[j] == 0.0f && t->p.b_mag[j] == 0.0f);
    assert_true(t->p.b_dec[0] == 0.0f && t->p.b_enc[1] != 0.0f);
    sae_trainer_free(t);
    sae_dict_free(d);
}

static void test_presets(void **state)
{
    (void)state;
    const int64_t d = 16, F = 64;
    sae_trainer *t = NULL;
    sae_trainer_options r = SAE_TRAINER_OPTIONS_INIT;

    /* dictionary_learning JumpReluTrainer */
    sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    o.arch = SAE_ARCH_JUMPRELU, o.d_in = d, o.d_sae = F;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_sae_ok(sae_trainer_get_options(t, &r));
    assert_true(r.lr == 7e-5 && r.beta1 == SAE_TRAIN_OFF && r.clip_norm == 1.0 &&
                r.warmup_steps == 1000 && r.l1_warmup_steps == 2000 && r.l1_coefficient == 1.0 &&
                r.decoder_constraint == SAE_DECODER_UNIT_EPS && r.b_dec_input == SAE_SWITCH_OFF &&
                r.jumprelu_sparsity == SAE_JUMPRELU_TARGET_L0 &&
                r.jumprelu_log_threshold == SAE_SWITCH_OFF && r.jumprelu_bandwidth == 0.001 &&
                r.jumprelu_init_threshold == SAE_TRAIN_OFF && r.target_l0 == 20 &&
                r.init == SAE_INIT_NORMAL_TIED && r.decoder_init_norm == 1.0);
    for (int64_t j = 0; j < F; j++) {
        assert_true(t->p.theta[j] == 0.0f);
        assert_true(fabsf(sae__row_norm(t->p.W_dec + j * d, d) - 1.0f) < 1e-6f);
    }
    assert_memory_equal(t->p.W_dec, t->p.W_encT, sizeof(float) * (size_t)(F * d));
    sae_trainer *again = NULL; /* the resolved options create the same trainer */
    assert_sae_ok(sae_trainer_create(&again, &r));
    sae_trainer_options r2 = SAE_TRAINER_OPTIONS_INIT;
    assert_sae_ok(sae_trainer_get_options(again, &r2));
    assert_memory_equal(&r2, &r, sizeof r);
    assert_memory_equal(again->param, t->param, sizeof(float) * (size_t)t->n_params);
    sae_trainer_free(again), sae_trainer_free(t);

    /* SAELens JumpReLUTrainingSAE */
    o = options_for(SAE_PRESET_SAELENS);
    o.arch = SAE_ARCH_JUMPRELU, o.d_in = d, o.d_sae = F;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_true(t->cfg.log_threshold && t->cfg.bandwidth == 0.05 && t->cfg.b_dec_input &&
                t->cfg.jumprelu_sparsity == SAE_JUMPRELU_STEP && t->cfg.l1_coefficient == 1.0 &&
                t->cfg.tanh_scale == 4.0 && !t->cfg.rescale && t->cfg.lr == 3e-4);
    for (int64_t j = 0; j < F; j++)
        assert_true(fabsf(sae__theta_of(&t->cfg, t->p.theta[j]) - 0.01f) < 1e-8f);
    sae_trainer_free(t);

    /* dictionary_learning GatedSAETrainer: untied init, detached aux, plain L1, no clipping */
    o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    o.arch = SAE_ARCH_GATED, o.d_in = d, o.d_sae = F;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_true(t->cfg.lr == 5e-5 && t->cfg.beta1 == 0 && t->cfg.clip_norm == 0 &&
                !t->cfg.gated_aux_attached && t->cfg.l1 == SAE_L1_PLAIN &&
                t->cfg.l1_coefficient == 0.1 && t->cfg.auxk_coefficient == 1.0 &&
                t->cfg.decoder_constraint == SAE_DECODER_UNIT_EXACT &&
                t->cfg.init == SAE_INIT_UNTIED);
    for (int64_t j = 0; j < F; j++) {
        assert_true(fabsf(sae__row_norm(t->p.W_dec + j * d, d) - 1.0f) < 1e-6f);
        assert_true(t->p.r_mag[j] == 0.0f && t->p.b_mag[j] == 0.0f && t->p.b_enc[j] == 0.0f);
        for (int64_t i = 0; i < d; i++)
            assert_true(fabsf(t->p.W_encT[j * d + i]) <= 0.25f);
    }
    assert_true(memcmp(t->p.W_dec, t->p.W_encT, sizeof(float) * (size_t)(F * d)) != 0);
    sae_trainer_free(t);

    /* BatchTopK: SAELens (ReLU first, rescale, threshold from 0 with lr 0.01) and
     * dictionary_learning (geometric median, threshold after step 1000) */
    o = options_for(SAE_PRESET_SAELENS);
    o.arch = SAE_ARCH_BATCHTOPK, o.d_in = d, o.d_sae = F, o.k = 4;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_true(t->cfg.relu_first && t->cfg.rescale && t->cfg.threshold_beta == 0.99 &&
                t->cfg.batchtopk_threshold == SAE_BATCHTOPK_THRESHOLD_SAELENS &&
                t->cfg.auxk == SAE_AUXK_SAELENS && t->threshold == 0.0f);
    sae_trainer_free(t);
    o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    o.arch = SAE_ARCH_BATCHTOPK, o.d_in = d, o.d_sae = F, o.k = 4;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_true(t->cfg.relu_first && !t->cfg.rescale && t->cfg.threshold_beta == 0.999 &&
                t->cfg.threshold_start_step == 1000 &&
                t->cfg.b_dec_init == SAE_BDEC_GEOMETRIC_MEDIAN &&
                fabs(t->cfg.lr - 2e-4 / sqrt(64.0 / 16384.0)) < 1e-15 && t->threshold == -1.0f);
    sae_trainer_free(t);
}

static void test_option_validation(void **state)
{
    (void)state;
    const struct {
        const char *what;
        sae_status want;
        sae_trainer_options o;
    } cases[] = {
        {"jumprelu with k", SAE_EINVAL, {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16, .k = 2}},
        {"batchtopk k > F", SAE_EINVAL, {.arch = SAE_ARCH_BATCHTOPK, .d_in = 8, .d_sae = 16, .k = 17}},
        {"rescale jumprelu", SAE_EINVAL,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16, .rescale = SAE_SWITCH_ON}},
        {"bandwidth negative", SAE_EINVAL,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16, .jumprelu_bandwidth = -1}},
        {"bandwidth NaN", SAE_ENUMERIC,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16, .jumprelu_bandwidth = NAN}},
        {"log threshold from 0", SAE_EINVAL,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16,
          .jumprelu_init_threshold = SAE_TRAIN_OFF}},
        {"target_l0 negative", SAE_EINVAL,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16,
          .preset = SAE_PRESET_DICTIONARY_LEARNING, .target_l0 = -3}},
        {"tanh scale negative", SAE_EINVAL,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16,
          .jumprelu_sparsity = SAE_JUMPRELU_TANH, .jumprelu_tanh_scale = -4}},
        {"unknown sparsity", SAE_EINVAL,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16, .jumprelu_sparsity = 4}},
        {"unknown log switch", SAE_EINVAL,
         {.arch = SAE_ARCH_JUMPRELU, .d_in = 8, .d_sae = 16, .jumprelu_log_threshold = 3}},
        {"unknown gated aux", SAE_EINVAL,
         {.arch = SAE_ARCH_GATED, .d_in = 8, .d_sae = 16, .gated_aux = 3}},
        {"unknown batchtopk threshold", SAE_EINVAL,
         {.arch = SAE_ARCH_BATCHTOPK, .d_in = 8, .d_sae = 16, .k = 2, .batchtopk_threshold = 3}},
        {"unknown b_dec_input", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .b_dec_input = 3}},
        {"unknown init", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .init = 5}},
        {"sparsify gated", SAE_EUNSUPPORTED,
         {.arch = SAE_ARCH_GATED, .d_in = 8, .d_sae = 16, .preset = SAE_PRESET_SPARSIFY}},
        {"sparsify batchtopk", SAE_EUNSUPPORTED,
         {.arch = SAE_ARCH_BATCHTOPK, .d_in = 8, .d_sae = 16, .k = 2,
          .preset = SAE_PRESET_SPARSIFY}},
        {"gated normalised L1", SAE_EUNSUPPORTED,
         {.arch = SAE_ARCH_GATED, .d_in = 8, .d_sae = 16, .l1 = SAE_L1_NORMALIZED}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sae_trainer_options o = cases[i].o;
        o.struct_size = sizeof o, o.allocator = test_allocator();
        sae_trainer *t = (sae_trainer *)&o; /* must be reset to NULL */
        sae_status s = sae_trainer_create(&t, &o);
        if (s != cases[i].want)
            fail_msg("%s: status %d, expected %d (%s)", cases[i].what, s, cases[i].want,
                     sae_last_error());
        assert_null(t);
    }
}

/* Loss falls on a small sparse problem, and the exported dictionary encodes a batch as the
 * training forward does: JumpReLU the same codes (ReLU'd: below 0 where a raw threshold went
 * negative, the dictionary gives 0 as dictionary_learning's own encode does), Gated the same
 * reconstruction error and L0 (BatchTopK: test_batchtopk_export). */
static void test_convergence_and_export(void **state)
{
    (void)state;
    const int64_t n = 64, d = 16, F = 48;
    const variant vs[] = {
        {"jumprelu saelens", SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS,
         {.l1_coefficient = 1e-3, .jumprelu_bandwidth = 0.05}},
        {"jumprelu saelens tanh", SAE_ARCH_JUMPRELU, SAE_PRESET_SAELENS,
         {.l1_coefficient = 1e-3, .jumprelu_sparsity = SAE_JUMPRELU_TANH}},
        {"jumprelu dictionary_learning", SAE_ARCH_JUMPRELU, SAE_PRESET_DICTIONARY_LEARNING,
         {.l1_coefficient = 1e-3, .jumprelu_bandwidth = 0.05, .jumprelu_init_threshold = 0.05}},
        {"gated saelens", SAE_ARCH_GATED, SAE_PRESET_SAELENS, {.l1_coefficient = 1e-3}},
        {"gated dictionary_learning", SAE_ARCH_GATED, SAE_PRESET_DICTIONARY_LEARNING,
         {.l1_coefficient = 1e-3}},
        {"batchtopk saelens", SAE_ARCH_BATCHTOPK, SAE_PRESET_SAELENS, {0}},
        {"batchtopk dictionary_learning", SAE_ARCH_BATCHTOPK, SAE_PRESET_DICTIONARY_LEARNING,
         {0}},
    };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        const variant *v = &vs[i];
        sae_trainer_options o = v->extra;
        o.struct_size = sizeof o, o.arch = v->arch, o.preset = v->preset, o.d_in = d;
        o.d_sae = F, o.k = v->arch == SAE_ARCH_BATCHTOPK ? 4 : 0, o.seed = 1;
        o.lr = 1e-2, o.warmup_steps = SAE_TRAIN_OFF, o.l1_warmup_steps = SAE_TRAIN_OFF;
        o.threshold_start_step = SAE_TRAIN_OFF, o.n_threads = 2, o.allocator = test_allocator();
        sae_trainer *t = NULL;
        assert_sae_ok(sae_trainer_create(&t, &o));
        double losses[50];
        run_steps(t, 50, n, d, 3, losses);
        const double first = (losses[0] + losses[1] + losses[2]) / 3;
        const double last = (losses[47] + losses[48] + losses[49]) / 3;
        printf("    %-32s mse %.4f -> %.4f", v->name, first, last);
        if (t->p.theta) {
            float lo = INFINITY;
            for (int64_t j = 0; j < F; j++)
                lo = fminf(lo, sae__theta_of(&t->cfg, t->p.theta[j]));
            printf("  smallest threshold %.4f", lo);
        }
        printf(v->arch == SAE_ARCH_BATCHTOPK ? "  threshold %.4f\n" : "\n", (double)t->threshold);
        if (!(last < 0.5 * first))
            fail_msg("%s: mse %.4g -> %.4g over 50 steps", v->name, first, last);
        sae_dict *dict = NULL;
        assert_sae_ok(sae_trainer_export(t, &dict));
        if (v->arch == SAE_ARCH_BATCHTOPK) {
            assert_int_equal(sae_dict_arch(dict), SAE_ARCH_JUMPRELU);
            sae_dict_free(dict);
            sae_trainer_free(t);
            continue;
        }
        float *x = test_malloc(sizeof(float) * (size_t)(n * d));
        float *xh = test_malloc(sizeof(float) * (size_t)(n * d));
        float *f = test_malloc(sizeof(float) * (size_t)(n * F));
        float *train = test_malloc(sizeof(float) * (size_t)(n * F));
        fill_normal(x, n * d, 4, 0.3f);
        sae_encoder *e = NULL;
        sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
        eo.allocator = test_allocator();
        assert_sae_ok(sae_encoder_create(&e, dict, &eo));
        assert_sae_ok(sae_encoder_encode(e, n, x, d, f, F, NULL, 0));
        assert_sae_ok(sae_encoder_decode(e, n, f, F, xh, d));
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, d, &m, NULL));
        if (v->arch == SAE_ARCH_JUMPRELU) {
            memset(train, 0, sizeof(float) * (size_t)(n * F));
            for (int64_t b = 0; b < n; b++)
                for (int64_t k = t->ws.row_ptr[b]; k < t->ws.row_ptr[b + 1]; k++)
                    train[b * F + t->ws.sel_idx[k]] = fmaxf(t->ws.sel_u[k], 0.0f);
            oracle_check(f, train, n * F, 1e-5, 1e-5, v->name);
        } else {
            double sq = 0, l0 = 0;
            for (int64_t j = 0; j < n * d; j++)
                sq += ((double)xh[j] - x[j]) * ((double)xh[j] - x[j]);
            for (int64_t j = 0; j < n * F; j++)
                l0 += f[j] > 0.0f;
            const double trainer_sq = m.fvu * sae__total_variance(n, d, x, d);
            if (fabs(sq - trainer_sq) > 1e-4 * trainer_sq || fabs(l0 / (double)n - m.l0) > 1e-12)
                fail_msg("%s: exported dictionary's squared error %.9g and L0 %.4f, trainer's "
                         "%.9g and %.4f", v->name, sq, l0 / (double)n, trainer_sq, m.l0);
        }
        sae_encoder_free(e);
        test_free(x), test_free(xh), test_free(f), test_free(train);
        sae_dict_free(dict);
        sae_trainer_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_saelens_jumprelu),
        cmocka_unit_test(test_oracle_dl_jumprelu),
        cmocka_unit_test(test_oracle_saelens_gated),
        cmocka_unit_test(test_oracle_dl_gated),
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_jumprelu_code_lists),
        cmocka_unit_test(test_step_updates_every_block),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_batchtopk_threshold_rules),
        cmocka_unit_test(test_batchtopk_export),
        cmocka_unit_test(test_create_from_export_roundtrip),
        cmocka_unit_test(test_create_from_checks),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_option_validation),
        cmocka_unit_test(test_convergence_and_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
