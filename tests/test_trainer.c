/* test_trainer.c: sae_trainer.
 *   - oracle training runs (dictionary_learning StandardTrainer and TopKTrainer, 3 steps):
 *     loss per step, parameters after every step, final Adam moments;
 *   - oracle loss and gradients of one batch (SAELens standard and TopK, sparsify, dictionary_
 *     learning AutoEncoder / April update / TopK, OpenAI), the decoder constraint and the
 *     geometric median;
 *   - fast kernels against their naive twins on random shapes (sparse vs dense backward, the
 *     sparse accumulation, Adam);
 *   - determinism, non-finite batches, option validation, a convergence smoke test.
 * Tolerances from ../shared/oracle/README.md. Each oracle check prints its largest error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sae/trainer.h"
#include "oracle_util.h"
#include "test_util.h"
#include "trainer_util.h"
#include "kernels/kernels.h"
#include "trainer/trainer_internal.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static int64_t *load_i64(const char *file, const char *name, int64_t *n)
{
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, file));
    const sae_tensor_info *t = sae_st_find(r, name);
    if (!t || t->dtype != SAE_DTYPE_I64)
        fail_msg("%s has no I64 tensor %s", file, name);
    int64_t *out = test_malloc(sizeof(int64_t) * (size_t)t->numel);
    memcpy(out, t->data, sizeof(int64_t) * (size_t)t->numel);
    if (n)
        *n = t->numel;
    sae_st_close(r);
    return out;
}

/* Native dictionary_learning / sparsify / SAELens parameters as a dictionary. */
typedef struct native_names {
    const char *W_enc, *b_enc, *W_dec, *b_dec;
    bool enc_linear, dec_linear; /* nn.Linear layouts: encoder (F, d), decoder (d, F) */
} native_names;

static sae_dict *dict_from(const char *file, native_names nm, int32_t arch, int64_t k,
                           uint32_t flags)
{
    int64_t n = 0;
    float *We = oracle_load(file, nm.W_enc, nm.enc_linear, &n);
    float *Wd = oracle_load(file, nm.W_dec, nm.dec_linear, NULL);
    int64_t F = 0;
    float *be = oracle_load(file, nm.b_enc, false, &F);
    float *bd = oracle_load(file, nm.b_dec, false, NULL);
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = arch, cfg.d_in = n / F, cfg.d_sae = F, cfg.k = k, cfg.flags = flags;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = We, w.b_enc = be, w.W_dec = Wd, w.b_dec = bd;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &cfg, &w, test_allocator()));
    test_free(We), test_free(Wd), test_free(be), test_free(bd);
    return d;
}

static sae_trainer_options options_for(int32_t preset)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.preset = preset, o.n_threads = 2, o.allocator = test_allocator();
    return o;
}

#define PARAM_ATOL 1e-5
#define PARAM_RTOL 1e-4

/* ---- oracle: training runs ------------------------------------------------------------------ */

/* dictionary_learning names of one step's tensors. */
static void check_dl_params(const sae_trainer *t, const char *file, const char *prefix,
                            const char *b_dec_name)
{
    char name[256];
    snprintf(name, sizeof name, "%s.encoder.weight", prefix); /* (F, d): libsae's W_encT */
    oracle_check_tensor(t->p.W_encT, file, name, false, PARAM_ATOL, PARAM_RTOL);
    snprintf(name, sizeof name, "%s.encoder.bias", prefix);
    oracle_check_tensor(t->p.b_enc, file, name, false, PARAM_ATOL, PARAM_RTOL);
    snprintf(name, sizeof name, "%s.decoder.weight", prefix); /* (d, F): columns are rows */
    oracle_check_tensor(t->p.W_dec, file, name, true, PARAM_ATOL, PARAM_RTOL);
    snprintf(name, sizeof name, "%s.%s", prefix, b_dec_name);
    oracle_check_tensor(t->p.b_dec, file, name, false, PARAM_ATOL, PARAM_RTOL);
}

static void check_dl_adam(const sae_trainer *t, const char *file, const char *b_dec_name)
{
    const struct {
        const char *param;
        const float *m, *v;
        bool transpose;
    } parts[] = {{"encoder.weight", t->mp.W_encT, t->vp.W_encT, false},
                 {"encoder.bias", t->mp.b_enc, t->vp.b_enc, false},
                 {"decoder.weight", t->mp.W_dec, t->vp.W_dec, true},
                 {b_dec_name, t->mp.b_dec, t->vp.b_dec, false}};
    for (size_t i = 0; i < 4; i++) {
        char name[256];
        snprintf(name, sizeof name, "state.adam.final.%s.exp_avg", parts[i].param);
        oracle_check_tensor(parts[i].m, file, name, parts[i].transpose, PARAM_ATOL, PARAM_RTOL);
        snprintf(name, sizeof name, "state.adam.final.%s.exp_avg_sq", parts[i].param);
        oracle_check_tensor(parts[i].v, file, name, parts[i].transpose, 1e-10, 1e-4);
    }
}

static void test_oracle_dl_standard_training(void **state)
{
    (void)state;
    const char *file = oracle_case("dl_train_standard_defaults_d16_s64_b16_3steps");
    sae_dict *init = dict_from(file,
                               (native_names){"param.init.encoder.weight",
                                              "param.init.encoder.bias",
                                              "param.init.decoder.weight", "param.init.bias",
                                              true, true},
                               SAE_ARCH_STANDARD, 0, 0);
    sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    o.total_steps = 10000;
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, init, &o));
    const double lr_used[3] = {0.0, 1e-6, 2e-6};
    for (int s = 0; s < 3; s++) {
        char name[128], prefix[64];
        snprintf(name, sizeof name, "in.x.step%d", s);
        int64_t n = 0;
        float *x = oracle_load(file, name, false, &n);
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae_trainer_step(t, n / 16, x, 16, &m));
        assert_int_equal(m.step, s);
        assert_true(fabs(m.lr - lr_used[s]) <= 1e-15);
        snprintf(name, sizeof name, "out.loss.step%d", s);
        oracle_check_scalar(m.loss, file, name, 1e-5);
        snprintf(prefix, sizeof prefix, "out.param.after_step%d", s);
        check_dl_params(t, file, prefix, "bias");
        test_free(x);
    }
    check_dl_adam(t, file, "bias");
    sae_trainer_free(t);
    sae_dict_free(init);
}

static void test_oracle_dl_topk_training(void **state)
{
    (void)state;
    const char *file = oracle_case("dl_train_topk_k4_defaults_d16_s64_b16_3steps");
    sae_dict *init = dict_from(file,
                               (native_names){"param.init.encoder.weight",
                                              "param.init.encoder.bias",
                                              "param.init.decoder.weight", "param.init.b_dec",
                                              true, true},
                               SAE_ARCH_TOPK, 4, SAE_DICT_RELU_BEFORE_TOPK);
    sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    o.b_dec_init = SAE_BDEC_GEOMETRIC_MEDIAN; /* create_from keeps b_dec unless asked */
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, init, &o));
    int64_t *since = load_i64(file, "state.num_tokens_since_fired.init", NULL);
    assert_sae_ok(sae_trainer_set_since_fired(t, since));
    test_free(since);
    const double lr_used[3] = {0.0, 3.2000000000000003e-06, 6.4000000000000006e-06};
    for (int s = 0; s < 3; s++) {
        char name[128], prefix[64];
        snprintf(name, sizeof name, "in.x.step%d", s);
        int64_t n = 0;
        float *x = oracle_load(file, name, false, &n);
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae_trainer_step(t, n / 16, x, 16, &m));
        assert_true(fabs(m.lr - lr_used[s]) <= 1e-15);
        snprintf(name, sizeof name, "out.loss.step%d", s);
        oracle_check_scalar(m.loss, file, name, 1e-5);
        snprintf(prefix, sizeof prefix, "out.param.after_step%d", s);
        check_dl_params(t, file, prefix, "b_dec");
        snprintf(name, sizeof name, "out.num_tokens_since_fired.after_step%d", s);
        int64_t nf = 0, *want = load_i64(file, name, &nf);
        for (int64_t j = 0; j < nf; j++)
            assert_int_equal(sae_trainer_since_fired(t)[j], want[j]);
        test_free(want);
        snprintf(name, sizeof name, "out.threshold.after_step%d", s);
        float *threshold = oracle_load(file, name, false, NULL);
        assert_true(t->threshold == threshold[0]);
        test_free(threshold);
        test_free(x);
    }
    check_dl_adam(t, file, "b_dec");
    sae_trainer_free(t);
    sae_dict_free(init);
}

/* ---- oracle: loss and gradients of one batch ------------------------------------------------ */

#define GRAD_ATOL 1e-5
#define GRAD_RTOL 1e-4
#define LOSS_RTOL 1e-5

/* Gradients of the batch `x_name` through sae__trainer_loss_and_grad, compared with the file's
 * gradient tensors (NULL names are skipped). */
static sae_train_metrics check_grads(sae_trainer *t, const char *file, const char *x_name,
                                     native_names g)
{
    const int64_t D = t->cfg.d_in, F = t->cfg.F;
    int64_t nx = 0;
    float *x = oracle_load(file, x_name, false, &nx);
    sae__grad_out out = {.W_enc = test_malloc(sizeof(float) * (size_t)(D * F)),
                         .b_enc = test_malloc(sizeof(float) * (size_t)F),
                         .W_dec = test_malloc(sizeof(float) * (size_t)(D * F)),
                         .b_dec = test_malloc(sizeof(float) * (size_t)D)};
    sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
    assert_sae_ok(sae__trainer_loss_and_grad(t, nx / D, x, D, &m, &out));
    oracle_check_tensor(out.W_enc, file, g.W_enc, g.enc_linear, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(out.b_enc, file, g.b_enc, false, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(out.W_dec, file, g.W_dec, g.dec_linear, GRAD_ATOL, GRAD_RTOL);
    oracle_check_tensor(out.b_dec, file, g.b_dec, false, GRAD_ATOL, GRAD_RTOL);
    test_free(out.W_enc), test_free(out.b_enc), test_free(out.W_dec), test_free(out.b_dec);
    test_free(x);
    return m;
}

/* Counters that make exactly the features of a 0/1 mask dead under the trainer's rule. */
static void set_dead_mask(sae_trainer *t, const char *file, const char *name)
{
    int64_t n = 0, *mask = load_i64(file, name, &n);
    for (int64_t j = 0; j < n; j++)
        mask[j] = mask[j] ? t->cfg.dead_window + 1 : 0;
    assert_sae_ok(sae_trainer_set_since_fired(t, mask));
    test_free(mask);
}

static const native_names saelens_params = {"param.W_enc", "param.b_enc", "param.W_dec",
                                            "param.b_dec", false, false};

static void test_oracle_saelens_standard(void **state)
{
    (void)state;
    const char *file = oracle_case("saelens_standard_d32_s128_b16");
    sae_dict *d = dict_from(file, saelens_params, SAE_ARCH_STANDARD, 0, 0);
    sae_trainer_options o = options_for(SAE_PRESET_SAELENS);
    o.l1_coefficient = 0.5;
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    sae_train_metrics m = check_grads(t, file, "in.x",
                                      (native_names){"out.grad.W_enc", "out.grad.b_enc",
                                                     "out.grad.W_dec", "out.grad.b_dec", false,
                                                     false});
    oracle_check_scalar(m.mse, file, "out.mse_loss", LOSS_RTOL);
    oracle_check_scalar(m.l1_coefficient * m.l1, file, "out.l1_loss", LOSS_RTOL);
    oracle_check_scalar(m.loss, file, "out.loss", LOSS_RTOL);
    sae_trainer_free(t);
    sae_dict_free(d);
}

static void test_oracle_saelens_topk(void **state)
{
    (void)state;
    const char *file = oracle_case("saelens_topk_k4_d32_s128_b16");
    sae_dict *d = dict_from(file, saelens_params, SAE_ARCH_TOPK, 4, 0);
    for (int rescale = 1; rescale >= 0; rescale--) {
        const char *v = rescale ? "rescale" : "norescale";
        printf("  %s\n", v);
        sae_trainer_options o = options_for(SAE_PRESET_SAELENS);
        o.rescale = rescale ? SAE_SWITCH_ON : SAE_SWITCH_OFF;
        sae_trainer *t = NULL;
        assert_sae_ok(sae_trainer_create_from(&t, d, &o));
        set_dead_mask(t, file, "in.dead_neuron_mask");
        char n[4][64];
        const char *parts[4] = {"W_enc", "b_enc", "W_dec", "b_dec"};
        for (int i = 0; i < 4; i++)
            snprintf(n[i], sizeof n[i], "out.%s.grad.%s", v, parts[i]);
        sae_train_metrics m = check_grads(t, file, "in.x",
                                          (native_names){n[0], n[1], n[2], n[3], false, false});
        assert_int_equal(m.n_dead, 40);
        char name[64];
        snprintf(name, sizeof name, "out.%s.mse_loss", v);
        oracle_check_scalar(m.mse, file, name, LOSS_RTOL);
        snprintf(name, sizeof name, "out.%s.aux_loss", v);
        oracle_check_scalar(m.aux, file, name, LOSS_RTOL);
        snprintf(name, sizeof name, "out.%s.loss", v);
        oracle_check_scalar(m.loss, file, name, LOSS_RTOL);
        sae_trainer_free(t);
    }
    sae_dict_free(d);
}

static void test_oracle_sparsify_topk(void **state)
{
    (void)state;
    const char *file = oracle_case("sparsify_topk_k4_d32_s128_b16");
    sae_dict *d = dict_from(file,
                            (native_names){"param.encoder.weight", "param.encoder.bias",
                                           "param.W_dec", "param.b_dec", true, false},
                            SAE_ARCH_TOPK, 4, SAE_DICT_RELU_BEFORE_TOPK);
    sae_trainer_options o = options_for(SAE_PRESET_SPARSIFY);
    o.auxk_coefficient = 1.0 / 32; /* sparsify's default is 0; the case exercises AuxK */
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    set_dead_mask(t, file, "in.dead_mask");
    sae_train_metrics m = check_grads(t, file, "in.x",
                                      (native_names){"out.grad.encoder.weight",
                                                     "out.grad.encoder.bias", "out.grad.W_dec",
                                                     "out.grad.b_dec", true, false});
    oracle_check_scalar(m.mse, file, "out.fvu", LOSS_RTOL);
    oracle_check_scalar(m.aux, file, "out.auxk_loss", LOSS_RTOL);
    oracle_check_scalar(m.loss, file, "out.trainer_loss", LOSS_RTOL);

    /* The decoder constraint of sparsify, on its own gradient and weights. */
    int64_t n = 0;
    float *W = oracle_load(file, "param.W_dec", false, &n);
    float *G = oracle_load(file, "out.grad.W_dec", false, NULL);
    for (int64_t j = 0; j < 128; j++)
        sae__project_row(SAE_DECODER_UNIT_RAW, W + j * 32, G + j * 32, 32);
    oracle_check_tensor(G, file, "out.grad.W_dec_after_remove_parallel", false, GRAD_ATOL,
                        GRAD_RTOL);
    for (int64_t j = 0; j < 128; j++)
        sae__renorm_row(SAE_DECODER_UNIT_RAW, W + j * 32, 32);
    oracle_check_tensor(W, file, "out.W_dec_after_set_unit_norm", false, 1e-6, 1e-5);
    test_free(W), test_free(G);
    sae_trainer_free(t);
    sae_dict_free(d);
}

static void test_oracle_dl_autoencoder(void **state)
{
    (void)state;
    const char *file = oracle_case("dl_autoencoder_d32_s128_b16");
    sae_dict *d = dict_from(file,
                            (native_names){"param.encoder.weight", "param.encoder.bias",
                                           "param.decoder.weight", "param.bias", true, true},
                            SAE_ARCH_STANDARD, 0, 0);
    for (int april = 0; april < 2; april++) {
        printf("  %s\n", april ? "StandardTrainerAprilUpdate" : "StandardTrainer");
        sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
        o.l1 = april ? SAE_L1_DECODER_NORM : SAE_L1_PLAIN;
        sae_trainer *t = NULL;
        assert_sae_ok(sae_trainer_create_from(&t, d, &o));
        t->step = 500; /* sparsity warm-up: scale min(500 / 2000, 1) = 0.25 */
        const char *p = april ? "out.april.grad." : "out.grad.";
        char n[4][64];
        const char *parts[4] = {"encoder.weight", "encoder.bias", "decoder.weight", "bias"};
        for (int i = 0; i < 4; i++)
            snprintf(n[i], sizeof n[i], "%s%s", p, parts[i]);
        sae_train_metrics m =
            check_grads(t, file, "in.x", (native_names){n[0], n[1], n[2], n[3], true, true});
        assert_true(fabs(m.l1_coefficient - 0.025) < 1e-12);
        oracle_check_scalar(m.loss, file, april ? "out.april.loss" : "out.loss", LOSS_RTOL);
        /* The sidecar's logged values (scalar_losses_from_logging). */
        const double mse = 299.60455322265625, l1 = april ? 106.62761688232422 : 75.70342254638672;
        printf("    mse %.9g vs %.9g, l1 %.9g vs %.9g\n", m.mse, mse, m.l1, l1);
        assert_true(fabs(m.mse - mse) <= LOSS_RTOL * mse && fabs(m.l1 - l1) <= LOSS_RTOL * l1);
        sae_trainer_free(t);
    }
    sae_dict_free(d);
}

static void test_oracle_dl_topk(void **state)
{
    (void)state;
    const char *file = oracle_case("dl_topk_k4_d32_s128_b16");
    sae_dict *d = dict_from(file,
                            (native_names){"param.encoder.weight", "param.encoder.bias",
                                           "param.decoder.weight", "param.b_dec", true, true},
                            SAE_ARCH_TOPK, 4, SAE_DICT_RELU_BEFORE_TOPK);
    sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    int64_t *before = load_i64(file, "state.num_tokens_since_fired_before", NULL);
    assert_sae_ok(sae_trainer_set_since_fired(t, before));
    test_free(before);
    sae_train_metrics m = check_grads(t, file, "in.x",
                                      (native_names){"out.grad.encoder.weight",
                                                     "out.grad.encoder.bias",
                                                     "out.grad.decoder.weight", "out.grad.b_dec",
                                                     true, true});
    assert_int_equal(m.n_dead, 19);
    oracle_check_scalar(m.mse, file, "out.l2_loss", LOSS_RTOL);
    oracle_check_scalar(m.aux, file, "out.auxk_loss_normalized", LOSS_RTOL);
    oracle_check_scalar(m.loss, file, "out.loss", LOSS_RTOL);
    /* A step on the same batch commits the counters after this batch. */
    int64_t nx = 0;
    float *x = oracle_load(file, "in.x", false, &nx);
    assert_sae_ok(sae_trainer_step(t, nx / 32, x, 32, NULL));
    int64_t nf = 0, *after = load_i64(file, "state.num_tokens_since_fired_after", &nf);
    for (int64_t j = 0; j < nf; j++)
        assert_int_equal(sae_trainer_since_fired(t)[j], after[j]);
    test_free(after), test_free(x);
    sae_trainer_free(t);
    sae_dict_free(d);
}

static void test_oracle_openai_relu(void **state)
{
    (void)state;
    const char *file = oracle_case("openai_relu_d16_s64_b16");
    sae_dict *d = dict_from(file,
                            (native_names){"param.encoder.weight", "param.latent_bias",
                                           "param.decoder.weight", "param.pre_bias", true, true},
                            SAE_ARCH_STANDARD, 0, 0);
    sae_trainer_options o = options_for(SAE_PRESET_SAELENS);
    o.mse = SAE_MSE_NORMALIZED, o.l1 = SAE_L1_NORMALIZED, o.l1_coefficient = 0.01;
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create_from(&t, d, &o));
    sae_train_metrics m = check_grads(t, file, "in.x",
                                      (native_names){"out.grad.encoder.weight",
                                                     "out.grad.latent_bias",
                                                     "out.grad.decoder.weight",
                                                     "out.grad.pre_bias", true, true});
    oracle_check_scalar(m.mse, file, "out.normalized_mse", LOSS_RTOL);
    oracle_check_scalar(m.l1, file, "out.normalized_L1", LOSS_RTOL);
    oracle_check_scalar(m.loss, file, "out.autoencoder_loss", LOSS_RTOL);
    sae_trainer_free(t);
    sae_dict_free(d);
}

static void test_oracle_geometric_median(void **state)
{
    (void)state;
    const char *file = oracle_case("dl_geometric_median_n64_d32");
    int64_t n = 0;
    float *x = oracle_load(file, "in.points", false, &n);
    const int64_t d = 32, rows = n / d;
    float out[32];
    double *w = test_malloc(sizeof(double) * (size_t)(rows + d));
    sae__batch_mean(rows, d, x, d, out);
    oracle_check_tensor(out, file, "out.mean_for_reference", false, 1e-6, 1e-6);
    sae__geometric_median(rows, d, x, d, 100, 1e-5, w, out);
    oracle_check_tensor(out, file, "out.median", false, 1e-4, 0);
    sae__geometric_median(rows, d, x, d, 3, 1e-5, w, out);
    oracle_check_tensor(out, file, "out.median_max_iter3", false, 1e-5, 0);
    test_free(w), test_free(x);
}

/* ---- fast kernels against their naive twins ------------------------------------------------- */

typedef struct variant {
    const char *name;
    int32_t arch, preset;
    sae_trainer_options extra; /* non-zero fields are copied over the preset options */
} variant;

/* A trainer with random weights and biases for a variant, and dead counters that mark about a
 * third of the features dead under its rule. */
static sae_trainer *random_trainer(const variant *v, int64_t d, int64_t F, int64_t k,
                                   int threads, uint64_t seed)
{
    sae_trainer_options o = v->extra;
    o.struct_size = sizeof o;
    o.arch = v->arch, o.preset = v->preset, o.d_in = d, o.d_sae = F;
    o.k = v->arch == SAE_ARCH_TOPK ? k : 0;
    o.seed = seed, o.n_threads = threads, o.allocator = test_allocator();
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    fill_normal(t->p.b_enc, F, seed + 1, 0.1f);
    fill_normal(t->p.b_dec, d, seed + 2, 0.1f);
    int64_t *since = test_malloc(sizeof(int64_t) * (size_t)F);
    for (int64_t j = 0; j < F; j++)
        since[j] = j % 3 == 1 ? t->cfg.dead_window + 1 : 0;
    assert_sae_ok(sae_trainer_set_since_fired(t, since));
    test_free(since);
    return t;
}

static const variant variants[] = {
    {"standard saelens", SAE_ARCH_STANDARD, SAE_PRESET_SAELENS, {0}},
    {"standard dictionary_learning", SAE_ARCH_STANDARD, SAE_PRESET_DICTIONARY_LEARNING, {0}},
    {"standard openai / fvu", SAE_ARCH_STANDARD, SAE_PRESET_SAELENS,
     {.mse = SAE_MSE_FVU, .l1 = SAE_L1_NORMALIZED}},
    {"standard normalised mse", SAE_ARCH_STANDARD, SAE_PRESET_SAELENS,
     {.mse = SAE_MSE_NORMALIZED, .l1 = SAE_L1_PLAIN}},
    {"topk saelens rescale", SAE_ARCH_TOPK, SAE_PRESET_SAELENS, {0}},
    {"topk saelens norescale", SAE_ARCH_TOPK, SAE_PRESET_SAELENS, {.rescale = SAE_SWITCH_OFF}},
    {"topk dictionary_learning", SAE_ARCH_TOPK, SAE_PRESET_DICTIONARY_LEARNING, {0}},
    {"topk sparsify auxk", SAE_ARCH_TOPK, SAE_PRESET_SPARSIFY, {.auxk_coefficient = 0.5}},
    {"topk dl aux + rescale + relu after", SAE_ARCH_TOPK, SAE_PRESET_DICTIONARY_LEARNING,
     {.rescale = SAE_SWITCH_ON, .topk_relu = SAE_TOPK_RELU_AFTER, .mse = SAE_MSE_NORMALIZED}},
    {"topk saelens small k_aux", SAE_ARCH_TOPK, SAE_PRESET_SAELENS, {.k_aux = 3}},
    {"standard dl resampling's dead rule", SAE_ARCH_STANDARD, SAE_PRESET_DICTIONARY_LEARNING,
     {.resample_steps = 6}},
};

/* Standard SAEs: codes of density about 1/48, below SAE__RELU_SPARSE_WIDTH, by a b_enc that
 * keeps all features but every 24th from firing. */
static void make_codes_sparse(sae_trainer *t)
{
    for (int64_t j = 0; j < t->cfg.F; j++)
        if (j % 24 != 0)
            t->p.b_enc[j] = -1e3f;
}

static void test_fast_backward_matches_reference(void **state)
{
    (void)state;
    const int64_t shapes[][4] = {{1, 5, 7, 2}, {7, 13, 37, 3}, {33, 24, 100, 8},
                                 {65, 31, 257, 16}, {130, 64, 96, 5}};
    for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t n = shapes[si][0], d = shapes[si][1], F = shapes[si][2];
            const int64_t k = shapes[si][3], ldx = d + 3;
            const variant *v = &variants[vi];
            sae_trainer *t = random_trainer(v, d, F, k, 2, 100 + si);
            if (n == 1 && (t->cfg.mse == SAE_MSE_FVU || t->cfg.auxk == SAE_AUXK_SPARSIFY)) {
                sae_trainer_free(t); /* one row has no variance to normalise by */
                continue;
            }
            float *x = test_malloc(sizeof(float) * (size_t)(n * ldx));
            fill_normal(x, n * ldx, 7 + si, 1.0f);
            char what[200];
            snprintf(what, sizeof what, "%s, n %lld d %lld F %lld k %lld", v->name,
                     (long long)n, (long long)d, (long long)F, (long long)k);
            const double l0 = check_against_reference(t, n, x, ldx, what).l0;
            if (v->arch == SAE_ARCH_STANDARD) {
                /* dense codes take the dense path; sparse codes the sparse one, and the dense
                 * one when forced: both against the reference */
                assert_int_equal(t->ws.relu_taken, l0 <= SAE__RELU_SPARSE_WIDTH(F) ? 2 : 1);
                make_codes_sparse(t);
                char label[240];
                snprintf(label, sizeof label, "%s, sparse codes", what);
                check_against_reference(t, n, x, ldx, label);
                assert_int_equal(t->ws.relu_taken, 2);
                t->ws.relu_force = 1;
                snprintf(label, sizeof label, "%s, sparse codes, dense path", what);
                check_against_reference(t, n, x, ldx, label);
                assert_int_equal(t->ws.relu_taken, 1);
            }
            test_free(x);
            sae_trainer_free(t);
        }
}

/* Shapes past the tile and block sizes of the fast paths (encoder tiles of SAE__ENCODE_TILE
 * features, decode tiles of 512 rows, backward tiles of 512 features, accumulation blocks of
 * 1024 rows), so that every boundary between tiles is crossed. */
static void test_large_shapes_match_reference(void **state)
{
    (void)state;
    const int64_t n = 1100, d = 24, F = SAE__ENCODE_TILE + 77, k = 8;
    float *x = test_malloc(sizeof(float) * (size_t)(n * d));
    fill_normal(x, n * d, 17, 1.0f);
    const variant *vs[] = {&variants[0], &variants[6]}; /* standard saelens, topk dl (AuxK) */
    for (size_t vi = 0; vi < 2; vi++) {
        sae_trainer *t = random_trainer(vs[vi], d, F, k, 2, 23);
        check_against_reference(t, n, x, d, vs[vi]->name);
        if (vs[vi]->arch == SAE_ARCH_STANDARD) {
            assert_int_equal(t->ws.relu_taken, 1);
            make_codes_sparse(t);
            check_against_reference(t, n, x, d, "large standard, sparse codes");
            assert_int_equal(t->ws.relu_taken, 2);
        } else {
            assert_true(t->cfg.auxk_coefficient > 0);
        }
        sae_trainer_free(t);
    }
    test_free(x);
}

/* The per-feature accumulation (CSC) against scattering every kept code: TopK rows of k codes
 * with AuxK entries, and the variable rows (CSR) of a standard SAE's sparse path. */
static void test_sparse_accumulation_matches_reference(void **state)
{
    (void)state;
    const int64_t n = 57, d = 40, F = 301, k = 7, ldx = d;
    float *x = test_malloc(sizeof(float) * (size_t)(n * ldx));
    fill_normal(x, n * ldx, 5, 1.0f);
    for (int standard = 0; standard < 2; standard++) {
        const variant *v = &variants[standard ? 0 : 6]; /* TopK with AuxK entries */
        sae_trainer *t = random_trainer(v, d, F, k, 2, 3);
        if (standard)
            make_codes_sparse(t);
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, ldx, &m, NULL));
        const sae__workspace *w = &t->ws;
        int64_t kx = 0;
        if (standard) {
            assert_int_equal(w->relu_taken, 2);
            assert_true(w->row_ptr[n] > n); /* several codes per row */
        } else {
            assert_true(m.n_dead > 0);
            kx = t->cfg.k_aux < m.n_dead ? t->cfg.k_aux : m.n_dead;
        }
        float *ref = test_malloc(sizeof(float) * (size_t)t->n_params);
        sae__params g = sae__params_view(ref, F, d);
        sae__sparse_accumulate_ref(F, d, n, standard ? 0 : k, standard ? w->row_ptr : NULL,
                                   w->sel_idx, w->sel_u, w->sel_g, kx, w->aux_idx, w->aux_c,
                                   w->aux_g, w->G, w->xp, &g);
        if (standard) /* the decoder-norm L1's share, added after the accumulation */
            for (int64_t j = 0; j < F; j++)
                if (w->dec_norm[j] > 0)
                    for (int64_t i = 0; i < d; i++)
                        g.W_dec[j * d + i] += (float)(m.l1_coefficient * w->col_tmp[j] /
                                                      w->dec_norm[j]) * t->p.W_dec[j * d + i];
        assert_close_f32(t->gp.W_dec, g.W_dec, F * d, 1e-6, 1e-5, "dW_dec");
        assert_close_f32(t->gp.W_encT, g.W_encT, F * d, 1e-6, 1e-5, "dW_encT");
        assert_close_f32(t->gp.b_enc, g.b_enc, F, 1e-6, 1e-5, "db_enc");
        test_free(ref);
        sae_trainer_free(t);
    }
    test_free(x);
}

/* The fused Adam pass (with clipping and decoder renormalisation) against the plain formula. */
static void test_adam_matches_reference(void **state)
{
    (void)state;
    const int64_t d = 19, F = 45;
    for (int constraint = 0; constraint < 2; constraint++) {
        variant v = {"adam", SAE_ARCH_STANDARD, SAE_PRESET_DICTIONARY_LEARNING, {0}};
        v.extra.decoder_constraint = constraint ? SAE_DECODER_UNIT_EPS : SAE_DECODER_FREE;
        sae_trainer *t = random_trainer(&v, d, F, 0, 2, 11);
        const int64_t N = t->n_params;
        fill_normal(t->m, N, 12, 0.01f);
        fill_normal(t->v, N, 13, 0.01f);
        for (int64_t i = 0; i < N; i++)
            t->v[i] *= t->v[i];
        fill_normal(t->grad, N, 14, 1.0f);
        t->step = 6;
        float *p = test_malloc(sizeof(float) * (size_t)N), *m = test_malloc(sizeof(float) * (size_t)N);
        float *vv = test_malloc(sizeof(float) * (size_t)N);
        memcpy(p, t->param, sizeof(float) * (size_t)N);
        memcpy(m, t->m, sizeof(float) * (size_t)N);
        memcpy(vv, t->v, sizeof(float) * (size_t)N);
        sae__adam_update(t, 1e-3, 0.37f);
        sae__adam_ref(&t->cfg, 7, 1e-3, 0.37f, p, m, vv, t->grad, N);
        sae__params pv = sae__params_view(p, F, d);
        if (constraint)
            for (int64_t j = 0; j < F; j++)
                sae__renorm_row(SAE_DECODER_UNIT_EPS, pv.W_dec + j * d, d);
        assert_close_f32(t->param, p, N, 1e-7, 1e-6, "adam params");
        assert_close_f32(t->m, m, N, 1e-9, 1e-6, "adam m");
        assert_close_f32(t->v, vv, N, 1e-12, 1e-6, "adam v");
        test_free(p), test_free(m), test_free(vv);
        sae_trainer_free(t);
    }
    /* clip_grad_norm_'s factor */
    assert_true(sae__clip_factor(0.5, 1.0) == 1.0f);
    assert_true(fabsf(sae__clip_factor(4.0, 1.0) - 1.0f / (4.0f + 1e-6f)) == 0.0f);
    assert_true(sae__clip_factor(1e9, 0) == 1.0f);
}

/* The radix select of AuxK against the reference top-k; the row primitives against loops. */
static void test_select_and_row_kernels(void **state)
{
    (void)state;
    sae_rng rng;
    sae_rng_init(&rng, 21, 0);
    const int64_t sizes[] = {1, 2, 17, 100, 1000, 4099};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t n = sizes[si];
        float *v = test_malloc(sizeof(float) * (size_t)n);
        uint32_t *keys = test_malloc(sizeof(uint32_t) * (size_t)n);
        for (int trial = 0; trial < 5; trial++) {
            for (int64_t j = 0; j < n; j++) /* ties, zeros of both signs, negatives, spread */
                v[j] = trial == 0   ? (float)(sae_rng_u32(&rng) % 5) - 2.0f
                       : trial == 1 ? (sae_rng_u32(&rng) % 2 ? 0.0f : -0.0f)
                       : trial == 2 ? -fabsf(sae_rng_normal(&rng))
                                    : sae_rng_normal(&rng) * (trial == 3 ? 1e-3f : 1e3f);
            /* the reference is O(n k^2): large k only on short rows */
            const int64_t ks[] = {1, 3, n / 2 > 0 && n <= 257 ? n / 2 : 150, n <= 257 ? n : 384};
            for (size_t ki = 0; ki < 4; ki++) {
                const int64_t k = ks[ki];
                if (k > n)
                    continue;
                int32_t *i1 = test_malloc(sizeof(int32_t) * (size_t)k);
                int32_t *i2 = test_malloc(sizeof(int32_t) * (size_t)k);
                float *v1 = test_malloc(sizeof(float) * (size_t)k);
                float *v2 = test_malloc(sizeof(float) * (size_t)k);
                sae__select_large(v, n, k, keys, i1, v1);
                sae__topk_select_ref(v, n, k, i2, v2);
                for (int64_t a = 0; a < k; a++)
                    if (i1[a] != i2[a] || v1[a] != v2[a])
                        fail_msg("n %lld k %lld trial %d: entry %lld is (%d, %g), reference "
                                 "(%d, %g)", (long long)n, (long long)k, trial, (long long)a,
                                 i1[a], v1[a], i2[a], v2[a]);
                test_free(i1), test_free(i2), test_free(v1), test_free(v2);
            }
        }
        test_free(v), test_free(keys);
    }

    /* gathered axpy / dots on a (rows, ld) matrix, columns [3, 3 + w) */
    const int64_t rows = 40, ld = 101, w = 77, m = 9;
    float *W = test_malloc(sizeof(float) * (size_t)(rows * ld));
    float y[101], y_ref[101], c[9], q[9], q_ref[9];
    int32_t idx[9];
    fill_normal(W, rows * ld, 1, 1.0f);
    fill_normal(y, w, 2, 1.0f);
    fill_normal(c, m, 3, 1.0f);
    c[4] = 0.0f; /* skipped */
    for (int64_t a = 0; a < m; a++)
        idx[a] = (int32_t)((a * 7 + 3) % rows), q[a] = q_ref[a] = 0.5f;
    memcpy(y_ref, y, sizeof y);
    sae__gather_axpy(m, idx, c, W + 3, ld, y, w);
    sae__gather_dots(m, idx, c, W + 3, ld, y, w, q);
    for (int64_t a = 0; a < m; a++)
        for (int64_t i = 0; i < w; i++)
            y_ref[i] += c[a] * W[idx[a] * ld + 3 + i];
    for (int64_t a = 0; a < m; a++) {
        double s = 0;
        for (int64_t i = 0; i < w; i++)
            s += (double)y_ref[i] * W[idx[a] * ld + 3 + i];
        q_ref[a] += c[a] != 0.0f ? (float)s : 0.0f;
    }
    assert_close_f32(y, y_ref, w, 1e-5, 1e-5, "gather_axpy");
    assert_close_f32(q, q_ref, m, 1e-4, 1e-5, "gather_dots");
    double s = 0, sum = 0;
    for (int64_t i = 0; i < w; i++)
        s += (double)y[i] * W[i], sum += W[i];
    assert_true(fabs(sae__dot_dbl(y, W, w) - s) <= 1e-12 * fabs(s) + 1e-12);
    assert_true(fabs(sae__sum_dbl(W, w) - sum) <= 1e-12 * fabs(sum) + 1e-12);

    /* decode and dots in column chunks: m = 9 fits one chunk of the 101 columns; m = 700
     * (ids repeat) takes two, of 80 and 21 columns */
    for (int big = 0; big < 2; big++) {
        const int64_t mm = big ? 700 : 9;
        int32_t *ids = test_malloc(sizeof(int32_t) * (size_t)mm);
        float *cc = test_malloc(sizeof(float) * (size_t)mm);
        float *mask = test_malloc(sizeof(float) * (size_t)mm);
        float *qq = test_malloc(sizeof(float) * (size_t)mm);
        float *qq_ref = test_malloc(sizeof(float) * (size_t)mm);
        float yy[101], yy_ref[101], add[101], sub[101];
        fill_normal(cc, mm, 4, 1.0f);
        fill_normal(yy, ld, 5, 1.0f);
        fill_normal(add, ld, 6, 1.0f);
        fill_normal(sub, ld, 7, 1.0f);
        for (int64_t a = 0; a < mm; a++) {
            ids[a] = (int32_t)((a * 13 + 1) % rows);
            mask[a] = a % 4 == 2 ? 0.0f : 1.0f;
            cc[a] = a % 5 == 3 ? 0.0f : cc[a];
            qq[a] = qq_ref[a] = 0.25f;
        }
        memcpy(yy_ref, yy, sizeof yy);
        const double sq = sae__decode_dots(mm, ids, cc, mask, W, ld, ld, big ? add : NULL,
                                           big ? NULL : sub, yy, qq);
        double acc[101], sq_ref = 0;
        for (int64_t i = 0; i < ld; i++) {
            acc[i] = yy_ref[i];
            for (int64_t a = 0; a < mm; a++)
                acc[i] += (double)cc[a] * W[ids[a] * ld + i];
            acc[i] += big ? add[i] : -sub[i];
            yy_ref[i] = (float)acc[i];
            sq_ref += acc[i] * acc[i];
        }
        for (int64_t a = 0; a < mm; a++) {
            double dot = 0;
            for (int64_t i = 0; i < ld; i++)
                dot += acc[i] * W[ids[a] * ld + i];
            qq_ref[a] += mask[a] != 0.0f ? (float)dot : 0.0f;
        }
        assert_close_f32(yy, yy_ref, ld, 1e-3, 1e-4, "decode_dots y");
        assert_close_f32(qq, qq_ref, mm, 1e-2, 1e-4, "decode_dots q");
        assert_true(fabs(sq - sq_ref) <= 1e-4 * sq_ref);
        test_free(ids), test_free(cc), test_free(mask), test_free(qq), test_free(qq_ref);
    }
    test_free(W);
}

static void test_schedules(void **state)
{
    (void)state;
    sae__train_cfg c = {.lr = 1.0, .lr_end = 0.1, .warmup_steps = 4, .total_steps = 20,
                        .lr_warmup = SAE_WARMUP_SAELENS, .lr_schedule = SAE_LR_CONSTANT};
    const double saelens_warm[] = {0.25, 0.5, 0.75, 1.0, 1.0};
    for (int s = 0; s < 5; s++)
        assert_true(fabs(sae__lr_at(&c, s) - saelens_warm[s]) < 1e-12);
    c.lr_warmup = SAE_WARMUP_FROM_ZERO;
    assert_true(sae__lr_at(&c, 0) == 0.0 && fabs(sae__lr_at(&c, 1) - 0.25) < 1e-12);
    c.decay_steps = 5; /* constant: decay from lr to 0 over steps 15..19 */
    assert_true(sae__lr_at(&c, 14) == 1.0 && fabs(sae__lr_at(&c, 15) - 1.0) < 1e-12 &&
                fabs(sae__lr_at(&c, 19) - 0.2) < 1e-12 && sae__lr_at(&c, 25) == 0.0);
    c.lr_schedule = SAE_LR_COSINE; /* cosine from 1 to 0.1 over steps 4..15, then decay from 0.1 */
    assert_true(fabs(sae__lr_at(&c, 4) - 1.0) < 1e-12);
    assert_true(fabs(sae__lr_at(&c, 4 + 11) - 0.1 * 5 / 5) < 1e-12);
    assert_true(fabs(sae__lr_at(&c, 4 + 5) - (0.1 + 0.9 * (1 + cos(M_PI * 5 / 11)) / 2)) < 1e-12);
    c.l1_warmup_steps = 2000;
    assert_true(sae__l1_scale_at(&c, 0) == 0 && sae__l1_scale_at(&c, 500) == 0.25 &&
                sae__l1_scale_at(&c, 5000) == 1);
    c.l1_warmup_steps = 0;
    assert_true(sae__l1_scale_at(&c, 0) == 1);
}

/* ---- behaviour ------------------------------------------------------------------------------ */

static void test_determinism(void **state)
{
    (void)state;
    for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++) {
        sae_trainer *a = random_trainer(&variants[vi], 24, 96, 6, 2, 42);
        sae_trainer *b = random_trainer(&variants[vi], 24, 96, 6, 2, 42);
        sae_trainer *one = random_trainer(&variants[vi], 24, 96, 6, 1, 42);
        run_steps(a, 5, 50, 24, 8, NULL);
        run_steps(b, 5, 50, 24, 8, NULL);
        run_steps(one, 5, 50, 24, 8, NULL);
        const size_t bytes = sizeof(float) * (size_t)a->n_params;
        /* same seed, same threads: identical bytes; and the thread count does not matter */
        for (int pass = 0; pass < 2; pass++) {
            const sae_trainer *o = pass ? one : b;
            if (memcmp(a->param, o->param, bytes) || memcmp(a->m, o->m, bytes) ||
                memcmp(a->v, o->v, bytes) ||
                memcmp(a->since_fired, o->since_fired, sizeof(int64_t) * 96))
                fail_msg("%s: trainers differ after 5 steps (%s)", variants[vi].name,
                         pass ? "1 vs 2 threads" : "same seed and threads");
        }
        sae_trainer_free(a), sae_trainer_free(b), sae_trainer_free(one);
    }
    /* another seed, other weights */
    sae_trainer *a = random_trainer(&variants[0], 24, 96, 6, 2, 42);
    sae_trainer *b = random_trainer(&variants[0], 24, 96, 6, 2, 43);
    assert_true(memcmp(a->param, b->param, sizeof(float) * 96 * 24) != 0);
    sae_trainer_free(a), sae_trainer_free(b);
}

/* Copy of everything a step may change. */
typedef struct snapshot {
    float *param, *m, *v;
    int64_t *since, step;
} snapshot;

static snapshot take(const sae_trainer *t)
{
    snapshot s = {test_malloc(sizeof(float) * (size_t)t->n_params),
                  test_malloc(sizeof(float) * (size_t)t->n_params),
                  test_malloc(sizeof(float) * (size_t)t->n_params),
                  test_malloc(sizeof(int64_t) * (size_t)t->cfg.F), t->step};
    memcpy(s.param, t->param, sizeof(float) * (size_t)t->n_params);
    memcpy(s.m, t->m, sizeof(float) * (size_t)t->n_params);
    memcpy(s.v, t->v, sizeof(float) * (size_t)t->n_params);
    memcpy(s.since, t->since_fired, sizeof(int64_t) * (size_t)t->cfg.F);
    return s;
}

static void assert_unchanged(const sae_trainer *t, snapshot s)
{
    const size_t bytes = sizeof(float) * (size_t)t->n_params;
    assert_true(memcmp(s.param, t->param, bytes) == 0 && memcmp(s.m, t->m, bytes) == 0 &&
                memcmp(s.v, t->v, bytes) == 0 && t->step == s.step &&
                memcmp(s.since, t->since_fired, sizeof(int64_t) * (size_t)t->cfg.F) == 0);
    test_free(s.param), test_free(s.m), test_free(s.v), test_free(s.since);
}

static void test_nonfinite_batch(void **state)
{
    (void)state;
    const int64_t n = 20, d = 12, F = 40;
    for (int skip = 0; skip < 2; skip++) {
        variant v = {"nonfinite", SAE_ARCH_TOPK, SAE_PRESET_SPARSIFY, {0}};
        v.extra.flags = skip ? SAE_TRAIN_SKIP_NONFINITE : 0;
        sae_trainer *t = random_trainer(&v, d, F, 4, 2, 5);
        float *x = test_malloc(sizeof(float) * (size_t)(n * d));
        /* the first step would set b_dec to the batch mean: a bad first batch must not */
        for (int round = 0; round < 2; round++) {
            fill_normal(x, n * d, 77, 1.0f);
            x[3 * d + 5] = round ? INFINITY : NAN;
            snapshot s = take(t);
            sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
            sae_status st = sae_trainer_step(t, n, x, d, &m);
            if (skip) {
                assert_int_equal(st, SAE_OK);
                assert_int_equal(m.skipped, 1);
            } else {
                assert_int_equal(st, SAE_ENUMERIC);
                assert_non_null(strstr(sae_last_error(), "x[3, 5]"));
            }
            assert_unchanged(t, s);
            assert_true(t->b_dec_pending == (round == 0));
            x[3 * d + 5] = 0.5f;
            assert_sae_ok(sae_trainer_step(t, n, x, d, &m));
            assert_int_equal(m.skipped, 0);
        }
        test_free(x);
        sae_trainer_free(t);
    }
}

static void test_option_validation(void **state)
{
    (void)state;
    const struct {
        const char *what;
        sae_status want;
        sae_trainer_options o;
    } cases[] = {
        {"unknown arch", SAE_EINVAL, {.arch = 9, .d_in = 8, .d_sae = 16}},
        {"batchtopk k 0", SAE_EINVAL, {.arch = SAE_ARCH_BATCHTOPK, .d_in = 8, .d_sae = 16}},
        {"d_in 0", SAE_EINVAL, {.d_in = 0, .d_sae = 16}},
        {"topk k 0", SAE_EINVAL, {.arch = SAE_ARCH_TOPK, .d_in = 8, .d_sae = 16}},
        {"topk k > F", SAE_EINVAL, {.arch = SAE_ARCH_TOPK, .d_in = 8, .d_sae = 16, .k = 17}},
        {"standard with k", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .k = 2}},
        {"unknown preset", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .preset = 5}},
        {"sparsify standard", SAE_EUNSUPPORTED, {.d_in = 8, .d_sae = 16, .preset = SAE_PRESET_SPARSIFY}},
        {"unknown flag", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .flags = 0x80}},
        {"unknown schedule", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .lr_schedule = 7}},
        {"unknown auxk", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .auxk = -2}},
        {"lr NaN", SAE_ENUMERIC, {.d_in = 8, .d_sae = 16, .lr = NAN}},
        {"lr zero", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .lr = SAE_TRAIN_OFF}},
        {"beta1 1", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .beta1 = 1.0}},
        {"cosine without total", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .lr_schedule = SAE_LR_COSINE}},
        {"decay > total", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .total_steps = 50, .decay_steps = 60}},
        {"k_aux > F", SAE_EINVAL, {.arch = SAE_ARCH_TOPK, .d_in = 8, .d_sae = 16, .k = 2, .k_aux = 17}},
        {"negative threads", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .n_threads = -1}},
        {"threshold_beta 2", SAE_EINVAL, {.d_in = 8, .d_sae = 16, .threshold_beta = 2}},
        {"sparsify aux + rescale", SAE_EUNSUPPORTED,
         {.arch = SAE_ARCH_TOPK, .d_in = 8, .d_sae = 16, .k = 2, .preset = SAE_PRESET_SPARSIFY,
          .rescale = SAE_SWITCH_ON, .auxk_coefficient = 1}},
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
    sae_trainer *t = NULL;
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.d_in = 8, o.d_sae = 16, o.allocator = test_allocator();
    assert_int_equal(sae_trainer_create(NULL, &o), SAE_EINVAL);
    assert_int_equal(sae_trainer_create(&t, NULL), SAE_EINVAL);
    o.struct_size = 2;
    assert_int_equal(sae_trainer_create(&t, &o), SAE_EINVAL);
    /* a newer caller's struct with a non-zero field this library does not know */
    struct {
        sae_trainer_options o;
        int64_t future;
    } big = {SAE_TRAINER_OPTIONS_INIT, 1};
    big.o.struct_size = sizeof big, big.o.d_in = 8, big.o.d_sae = 16;
    assert_int_equal(sae_trainer_create(&t, &big.o), SAE_EINVAL);
    big.future = 0;
    big.o.allocator = test_allocator();
    assert_sae_ok(sae_trainer_create(&t, &big.o));
    assert_int_equal(sae_trainer_step(t, 0, NULL, 8, NULL), SAE_EINVAL);
    float x[16] = {0};
    assert_int_equal(sae_trainer_step(t, 2, x, 7, NULL), SAE_ESHAPE);
    int64_t bad[16] = {0};
    bad[3] = -1;
    assert_int_equal(sae_trainer_set_since_fired(t, bad), SAE_EINVAL);
    sae_trainer_free(t);

    /* create_from: the options must agree with the dictionary */
    sae_dict *d = dict_from(oracle_case("saelens_standard_d32_s128_b16"), saelens_params,
                            SAE_ARCH_STANDARD, 0, 0);
    o = options_for(SAE_PRESET_SAELENS);
    o.d_in = 31;
    assert_int_equal(sae_trainer_create_from(&t, d, &o), SAE_ESHAPE);
    o.d_in = 32, o.arch = SAE_ARCH_TOPK;
    assert_int_equal(sae_trainer_create_from(&t, d, &o), SAE_ESHAPE);
    assert_int_equal(sae_trainer_create_from(&t, NULL, &o), SAE_EINVAL);
    sae_trainer_free(NULL);
    sae_dict_free(d);
}

static void test_preset_resolution(void **state)
{
    (void)state;
    sae_trainer_options o = options_for(SAE_PRESET_DICTIONARY_LEARNING);
    o.arch = SAE_ARCH_TOPK, o.d_in = 16, o.d_sae = 64, o.k = 4;
    o.clip_norm = SAE_TRAIN_OFF; /* an explicit zero */
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, &o));
    sae_trainer_options r = SAE_TRAINER_OPTIONS_INIT;
    assert_sae_ok(sae_trainer_get_options(t, &r));
    assert_true(fabs(r.lr - 0.0032) < 1e-12 && r.warmup_steps == 1000 &&
                r.b_dec_init == SAE_BDEC_GEOMETRIC_MEDIAN &&
                r.decoder_constraint == SAE_DECODER_UNIT_EPS && r.k_aux == 8 &&
                r.dead_window == 10000000 && r.clip_norm == SAE_TRAIN_OFF &&
                r.threshold_start_step == 1000 && fabs(r.auxk_coefficient - 1.0 / 32) < 1e-15);
    assert_true(t->cfg.clip_norm == 0 && t->cfg.relu_first && !t->cfg.rescale);
    /* the resolved options create the same trainer again */
    sae_trainer *again = NULL;
    assert_sae_ok(sae_trainer_create(&again, &r));
    sae_trainer_options r2 = SAE_TRAINER_OPTIONS_INIT;
    assert_sae_ok(sae_trainer_get_options(again, &r2));
    assert_memory_equal(&r2, &r, sizeof r);
    assert_memory_equal(again->param, t->param, sizeof(float) * (size_t)t->n_params);
    sae_trainer_free(again), sae_trainer_free(t);

    o = options_for(SAE_PRESET_SPARSIFY);
    o.arch = SAE_ARCH_TOPK, o.d_in = 16, o.d_sae = 64, o.k = 4, o.total_steps = 5000;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_true(t->cfg.decay_steps == 4000 && t->cfg.auxk_coefficient == 0 &&
                t->cfg.mse == SAE_MSE_FVU && t->cfg.b_dec_init == SAE_BDEC_MEAN &&
                t->cfg.clip_norm == 0);
    /* sparsify's init: W_dec = encoder rows scaled to unit norm */
    for (int64_t j = 0; j < 64; j++)
        assert_true(fabsf(sae__row_norm(t->p.W_dec + j * 16, 16) - 1.0f) < 1e-6f);
    sae_trainer_free(t);

    o = options_for(SAE_PRESET_SAELENS);
    o.d_in = 16, o.d_sae = 64;
    assert_sae_ok(sae_trainer_create(&t, &o));
    assert_true(t->cfg.lr == 3e-4 && t->cfg.clip_norm == 1.0 && t->cfg.l1_coefficient == 1.0 &&
                t->cfg.decoder_constraint == SAE_DECODER_FREE && t->cfg.warmup_steps == 0);
    for (int64_t j = 0; j < 64; j++) /* decoder_init_norm 0.1, W_enc = W_dec^T */
        assert_true(fabsf(sae__row_norm(t->p.W_dec + j * 16, 16) - 0.1f) < 1e-6f);
    assert_memory_equal(t->p.W_dec, t->p.W_encT, sizeof(float) * 64 * 16);
    sae_trainer_free(t);
}

/* Loss falls on a small sparse problem, and the exported dictionary reconstructs the batch as
 * the trainer's own forward pass does. */
static void test_convergence_and_export(void **state)
{
    (void)state;
    const int64_t n = 64, d = 16, F = 48;
    const int idx[] = {0, 1, 4, 6, 7};
    for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
        const variant *v = &variants[idx[i]];
        sae_trainer_options o = v->extra;
        o.struct_size = sizeof o, o.arch = v->arch, o.preset = v->preset, o.d_in = d;
        o.d_sae = F, o.k = v->arch == SAE_ARCH_TOPK ? 4 : 0, o.seed = 1;
        o.lr = 1e-2, o.warmup_steps = SAE_TRAIN_OFF, o.l1_warmup_steps = SAE_TRAIN_OFF;
        o.l1_coefficient = 1e-3, o.n_threads = 2, o.allocator = test_allocator();
        sae_trainer *t = NULL;
        assert_sae_ok(sae_trainer_create(&t, &o));
        double losses[50];
        run_steps(t, 50, n, d, 3, losses);
        double first = (losses[0] + losses[1] + losses[2]) / 3;
        double last = (losses[47] + losses[48] + losses[49]) / 3;
        printf("    %-40s mse %.4f -> %.4f\n", v->name, first, last);
        if (!(last < 0.5 * first))
            fail_msg("%s: mse %.4g -> %.4g over 50 steps", v->name, first, last);

        sae_dict *dict = NULL;
        assert_sae_ok(sae_trainer_export(t, &dict));
        float *x = test_malloc(sizeof(float) * (size_t)(n * d));
        float *xh = test_malloc(sizeof(float) * (size_t)(n * d));
        fill_normal(x, n * d, 4, 0.3f);
        sae_encoder *e = NULL;
        sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
        eo.allocator = test_allocator();
        assert_sae_ok(sae_encoder_create(&e, dict, &eo));
        assert_sae_ok(sae_encoder_reconstruct(e, n, x, d, xh, d, NULL, 0));
        double sq = 0;
        for (int64_t j = 0; j < n * d; j++)
            sq += ((double)xh[j] - x[j]) * ((double)xh[j] - x[j]);
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, d, &m, NULL));
        const double trainer_sq = m.fvu * sae__total_variance(n, d, x, d);
        if (fabs(sq - trainer_sq) > 1e-4 * trainer_sq)
            fail_msg("%s: exported dictionary's squared error %.9g, trainer's %.9g", v->name, sq,
                     trainer_sq);
        sae_encoder_free(e);
        sae_dict_free(dict);
        test_free(x), test_free(xh);
        sae_trainer_free(t);
    }
}

/* dictionary_learning's inference threshold: an EMA after threshold_start_step, exported as a
 * constant threshold vector that the encoder's threshold mode uses. */
static void test_threshold_export(void **state)
{
    (void)state;
    const int64_t n = 32, d = 12, F = 40;
    variant v = {"threshold", SAE_ARCH_TOPK, SAE_PRESET_DICTIONARY_LEARNING, {0}};
    v.extra.threshold_start_step = SAE_TRAIN_OFF; /* step > 0 */
    v.extra.warmup_steps = SAE_TRAIN_OFF;
    sae_trainer *t = random_trainer(&v, d, F, 3, 2, 8);
    run_steps(t, 1, n, d, 2, NULL);
    assert_true(t->threshold == -1.0f); /* `step > threshold_start_step` is false at step 0 */
    sae_dict *dict = NULL;
    assert_sae_ok(sae_trainer_export(t, &dict));
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(dict, &w));
    assert_null(w.threshold);
    sae_dict_free(dict);
    run_steps(t, 1, n, d, 3, NULL);
    const float first = t->threshold;
    assert_true(first > 0);
    run_steps(t, 1, n, d, 4, NULL);
    assert_true(t->threshold > 0 && fabsf(t->threshold - first) <= 0.01f * first + 1e-3f);
    assert_sae_ok(sae_trainer_export(t, &dict));
    assert_sae_ok(sae_dict_get_weights(dict, &w));
    assert_non_null(w.threshold);
    for (int64_t j = 0; j < F; j++)
        assert_true(w.threshold[j] == t->threshold);
    assert_true(sae_dict_arch(dict) == SAE_ARCH_TOPK && sae_dict_k(dict) == 3);
    sae_encoder *e = NULL;
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.flags = SAE_ENCODE_TOPK_THRESHOLD, eo.allocator = test_allocator();
    assert_sae_ok(sae_encoder_create(&e, dict, &eo));
    sae_encoder_free(e);
    sae_dict_free(dict);
    sae_trainer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_dl_standard_training),
        cmocka_unit_test(test_oracle_dl_topk_training),
        cmocka_unit_test(test_oracle_saelens_standard),
        cmocka_unit_test(test_oracle_saelens_topk),
        cmocka_unit_test(test_oracle_sparsify_topk),
        cmocka_unit_test(test_oracle_dl_autoencoder),
        cmocka_unit_test(test_oracle_dl_topk),
        cmocka_unit_test(test_oracle_openai_relu),
        cmocka_unit_test(test_oracle_geometric_median),
        cmocka_unit_test(test_fast_backward_matches_reference),
        cmocka_unit_test(test_large_shapes_match_reference),
        cmocka_unit_test(test_sparse_accumulation_matches_reference),
        cmocka_unit_test(test_adam_matches_reference),
        cmocka_unit_test(test_select_and_row_kernels),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_nonfinite_batch),
        cmocka_unit_test(test_option_validation),
        cmocka_unit_test(test_preset_resolution),
        cmocka_unit_test(test_convergence_and_export),
        cmocka_unit_test(test_threshold_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
