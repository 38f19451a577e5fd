/* test_ortho_train.c: the sae-icm orthogonality penalty and fine-tuning recipe in sae_trainer
 * (lib/trainer/ortho_term.c, the RELATIVE_L2 reconstruction, AdamW, SAE_PRESET_SAE_ICM).
 * There is no sae-icm oracle of a fine-tuning step (../shared/oracle/README.md has the penalty
 * and the TopK forward only, reproduced in test_ortho.c), so the step is checked against naive
 * references:
 *   - the relative-L2 reconstruction of every architecture against the double-precision loss
 *     twins, and its value against sae_ortho_relative_l2 of the exported dictionary;
 *   - twin of the penalty path: with lambda > 0 the loss is the loss without plus lambda P and
 *     the gradient is the one without plus lambda dP/dW_dec from the naive penalty twin on the
 *     step's subset, every other block bit for bit unchanged (every architecture);
 *   - a whole step equals the documented order written out by hand: penalty gradient, decoder
 *     projection, norm, clip, AdamW, renormalisation (free and unit-norm decoders);
 *   - the gradient of the total loss against central finite differences (TopK, standard);
 *   - AdamW against its plain twin, and its decoupled decay alone;
 *   - the sae-icm preset's values and schedule (transformers' get_cosine_schedule_with_warmup
 *     written out), create_from keeping b_dec, option errors;
 *   - determinism, and subsets that change from step to step. (Bit-identical resume with the
 *     penalty on: test_checkpoint.c, configuration TOPK_ICM.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ortho/ortho_internal.h"
#include "trainer/trainer_internal.h"
#include "trainer_util.h"

static const struct {
    const char *name;
    int32_t arch;
    int64_t k;
} archs[] = {{"standard", SAE_ARCH_STANDARD, 0}, {"topk", SAE_ARCH_TOPK, 4},
             {"batchtopk", SAE_ARCH_BATCHTOPK, 4}, {"jumprelu", SAE_ARCH_JUMPRELU, 0},
             {"gated", SAE_ARCH_GATED, 0}};
#define N_ARCHS (sizeof archs / sizeof archs[0])

/* Options of architecture a on d x F with unit-norm initial rows (so that the penalty is of
 * the order of the reconstruction), two threads, the test allocator. */
static sae_trainer_options base_options(size_t a, int64_t d, int64_t F, int32_t preset)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.arch = archs[a].arch, o.k = archs[a].k, o.d_in = d, o.d_sae = F, o.preset = preset;
    o.n_threads = 2, o.allocator = test_allocator(), o.seed = 11, o.decoder_init_norm = 1.0;
    o.total_steps = 100; /* the sae-icm preset's cosine needs it */
    o.warmup_steps = SAE_TRAIN_OFF;
    if (o.arch == SAE_ARCH_JUMPRELU) /* codes near theta, so that every path has work */
        o.jumprelu_bandwidth = 0.5, o.jumprelu_init_threshold = 0.05;
    return o;
}

static sae_trainer *make(const sae_trainer_options *o)
{
    sae_trainer *t = NULL;
    assert_sae_ok(sae_trainer_create(&t, o));
    return t;
}

static float *batch(int64_t n, int64_t d, uint64_t seed)
{
    float *x = test_malloc(sizeof(float) * (size_t)(n * d));
    fill_normal(x, n * d, seed, 1.0f);
    for (int64_t i = 0; i < n * d; i += 5)
        x[i] += 0.7f;
    return x;
}

/* ---- relative-L2 reconstruction ------------------------------------------------------------- */

static void test_relative_l2_reconstruction(void **state)
{
    (void)state;
    const int64_t n = 33, d = 12, F = 40;
    float *x = batch(n, d, 1);
    for (size_t a = 0; a < N_ARCHS; a++) {
        sae_trainer_options o = base_options(a, d, F, SAE_PRESET_SAELENS);
        o.mse = SAE_MSE_RELATIVE_L2;
        sae_trainer *t = make(&o);
        run_steps(t, 2, 24, d, 5, NULL);
        char what[64];
        snprintf(what, sizeof what, "%s, relative L2", archs[a].name);
        const sae_train_metrics m = check_against_reference(t, n, x, d, what);
        /* BatchTopK's dictionary selects by threshold, not by batch: the others decode the
         * training forward's x_hat. */
        if (archs[a].arch != SAE_ARCH_BATCHTOPK) {
            sae_dict *dict = NULL;
            assert_sae_ok(sae_trainer_export(t, &dict));
            sae_encoder *e = NULL;
            sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
            eo.allocator = test_allocator();
            assert_sae_ok(sae_encoder_create(&e, dict, &eo));
            float *f = test_malloc(sizeof(float) * (size_t)(n * F));
            float *xh = test_malloc(sizeof(float) * (size_t)(n * d));
            assert_sae_ok(sae_encoder_encode(e, n, x, d, f, F, NULL, 0));
            assert_sae_ok(sae_encoder_decode(e, n, f, F, xh, d));
            double want = 0;
            assert_sae_ok(sae_ortho_relative_l2(&want, NULL, 0, xh, d, x, d, n, d));
            printf("    %-9s relative L2 %.6f (sae_ortho_relative_l2 of the export %.6f)\n",
                   archs[a].name, m.mse, want);
            assert_true(fabs(m.mse - want) <= 1e-5 * want);
            sae_encoder_free(e);
            sae_dict_free(dict);
            test_free(f), test_free(xh);
        }
        sae_trainer_free(t);
    }
    test_free(x);
}

/* ---- the penalty path against its twin ------------------------------------------------------ */

/* Raw loss and gradient of t at step `step` (the subset's draw), without changing it. */
static sae_train_metrics loss_grad_at(sae_trainer *t, int64_t step, int64_t n, const float *x)
{
    sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
    const int64_t saved = t->step;
    t->step = step;
    assert_sae_ok(sae__trainer_loss_and_grad(t, n, x, t->cfg.d_in, &m, NULL));
    t->step = saved;
    return m;
}

/* Penalty twin on rows W (F, d) over the subset of `step` (NULL: all), gradient into g. */
static double penalty_twin(const sae_trainer *t, int64_t step, int64_t subset, float *g)
{
    const int64_t F = t->cfg.F, d = t->cfg.d_in;
    int32_t *ids = NULL;
    if (subset < F) {
        ids = test_malloc(sizeof(int32_t) * (size_t)subset);
        assert_sae_ok(sae_ortho_subset(ids, NULL, subset, F, t->cfg.seed,
                                       (UINT64_C(1) << 32) + (uint64_t)step));
    }
    sae__ortho_rows r;
    assert_sae_ok(sae__ortho_rows_init(&r, t->p.W_dec, F, d, d, ids, ids ? subset : 0, 1));
    double P = 0;
    memset(g, 0, sizeof(float) * (size_t)(F * d));
    assert_sae_ok(sae__ortho_penalty_ref(&r, &P, g, d, (float)t->cfg.ortho_lambda));
    test_free(ids);
    return P;
}

static void test_penalty_twin(void **state)
{
    (void)state;
    const int64_t n = 30, d = 10, F = 40;
    const double lambda = 0.05;
    float *x = batch(n, d, 2);
    for (size_t a = 0; a < N_ARCHS; a++)
        for (int all = 0; all < 2; all++) {
            const int64_t subset = all ? F : 16, step = 5;
            sae_trainer_options o = base_options(a, d, F, SAE_PRESET_SAELENS);
            sae_trainer *off = make(&o);
            o.ortho_lambda = lambda, o.ortho_subset = all ? SAE_TRAIN_OFF : subset;
            sae_trainer *on = make(&o);
            assert_int_equal(on->cfg.ortho_subset, subset);
            assert_true(all ? on->ws.ortho_ids == NULL : on->ws.ortho_ids != NULL);
            const int64_t N = on->n_params;
            assert_memory_equal(on->param, off->param, sizeof(float) * (size_t)N);
            const sae_train_metrics mo = loss_grad_at(off, step, n, x);
            const sae_train_metrics mp = loss_grad_at(on, step, n, x);
            float *g = test_malloc(sizeof(float) * (size_t)(F * d));
            const double P = penalty_twin(on, step, subset, g);
            /* every block but W_dec, bit for bit */
            assert_memory_equal(on->gp.W_encT, off->gp.W_encT, sizeof(float) * (size_t)(F * d));
            const int64_t tail = N - 2 * F * d; /* b_enc, b_dec and the extra blocks */
            assert_memory_equal(on->gp.b_enc, off->gp.b_enc, sizeof(float) * (size_t)tail);
            /* W_dec: the same plus lambda dP/dW_dec; rows outside S untouched */
            int64_t moved_rows = 0;
            for (int64_t j = 0; j < F; j++) {
                bool any = false;
                for (int64_t i = 0; i < d; i++) {
                    any |= g[j * d + i] != 0.0f;
                    g[j * d + i] += off->gp.W_dec[j * d + i];
                }
                if (!any)
                    assert_memory_equal(on->gp.W_dec + j * d, off->gp.W_dec + j * d,
                                        sizeof(float) * (size_t)d);
                moved_rows += any;
            }
            assert_int_equal(moved_rows, subset);
            check_scaled(on->gp.W_dec, g, F * d, 1e-5, archs[a].name);
            assert_true(mo.ortho == 0.0 && fabs(mp.ortho - P) <= 1e-5 * P);
            assert_true(fabs(mp.loss - (mo.loss + lambda * mp.ortho)) <= 1e-12 * mp.loss);
            assert_true(mp.mse == mo.mse && mp.l1 == mo.l1 && mp.aux == mo.aux);
            if (all)
                printf("    %-9s P %.5g over %lld rows; loss %.6g = %.6g + %g P\n",
                       archs[a].name, mp.ortho, (long long)subset, mp.loss, mo.loss, lambda);
            test_free(g);
            sae_trainer_free(on);
            sae_trainer_free(off);
        }
    test_free(x);
}

/* ---- a whole step in the documented order --------------------------------------------------- */

static void test_step_order(void **state)
{
    (void)state;
    const int64_t n = 24, d = 10, F = 30;
    float *x = batch(n, d, 3);
    const struct {
        const char *name;
        int32_t preset, constraint;
    } cases[] = {{"sae-icm (free decoder, AdamW)", SAE_PRESET_SAE_ICM, SAE_DECODER_FREE},
                 {"dictionary_learning (unit rows)", SAE_PRESET_DICTIONARY_LEARNING,
                  SAE_DECODER_UNIT_EPS}};
    for (size_t c = 0; c < 2; c++) {
        sae_trainer_options o = base_options(1, d, F, cases[c].preset);
        o.ortho_lambda = 0.2, o.ortho_subset = 12, o.lr = 1e-2, o.clip_norm = 0.05;
        o.b_dec_init = SAE_BDEC_ZERO, o.weight_decay = 0.1;
        sae_trainer *t = make(&o);
        assert_int_equal(t->cfg.decoder_constraint, cases[c].constraint);
        const int64_t N = t->n_params;
        float *p = test_malloc(sizeof(float) * (size_t)N), *g = test_malloc(sizeof(float) * (size_t)N);
        float *m = test_calloc((size_t)N, sizeof(float)), *v = test_calloc((size_t)N, sizeof(float));
        memcpy(p, t->param, sizeof(float) * (size_t)N);
        const sae_train_metrics mg = loss_grad_at(t, 0, n, x);
        memcpy(g, t->grad, sizeof(float) * (size_t)N);
        /* by hand: projection of the whole decoder gradient (penalty included), norm, clip,
         * AdamW, renormalisation */
        sae__params pv = sae__params_view(p, F, d), gv = sae__params_view(g, F, d);
        for (int64_t j = 0; j < F; j++)
            sae__project_row(cases[c].constraint, pv.W_dec + j * d, gv.W_dec + j * d, d);
        double norm = 0;
        for (int64_t i = 0; i < N; i++)
            norm += (double)g[i] * g[i];
        norm = sqrt(norm);
        const float clip = sae__clip_factor(norm, 0.05);
        assert_true(clip < 1.0f);
        sae__adam_ref(&t->cfg, 1, sae__lr_at(&t->cfg, 0), clip, p, m, v, g, N);
        for (int64_t j = 0; j < F; j++)
            sae__renorm_row(cases[c].constraint, pv.W_dec + j * d, d);
        sae_train_metrics ms = SAE_TRAIN_METRICS_INIT;
        assert_sae_ok(sae_trainer_step(t, n, x, d, &ms));
        printf("    %s: ortho %.5g, grad norm %.5g (clip %.4f)\n", cases[c].name, ms.ortho,
               ms.grad_norm, (double)clip);
        assert_true(ms.ortho == mg.ortho && ms.loss == mg.loss && ms.ortho > 0);
        assert_true(fabs(ms.grad_norm - norm) <= 1e-9 * norm);
        assert_close_f32(t->param, p, N, 1e-7, 1e-6, cases[c].name);
        assert_close_f32(t->m, m, N, 1e-9, 1e-6, "m");
        test_free(p), test_free(g), test_free(m), test_free(v);
        sae_trainer_free(t);
    }
    test_free(x);
}

/* ---- finite differences --------------------------------------------------------------------- */

/* Central differences of the total loss in every decoder entry against the gradient (the
 * decoder does not move the selection or the ReLU: the loss is smooth in it). */
static void test_finite_differences(void **state)
{
    (void)state;
    const int64_t n = 12, d = 6, F = 10;
    float *x = batch(n, d, 4);
    const size_t picks[] = {1, 0}; /* topk (sae-icm preset), standard (L1 of decoder norms) */
    for (size_t pi = 0; pi < 2; pi++) {
        const size_t a = picks[pi];
        sae_trainer_options o = base_options(a, d, F, a == 1 ? SAE_PRESET_SAE_ICM
                                                             : SAE_PRESET_SAELENS);
        o.k = a == 1 ? 3 : 0, o.mse = SAE_MSE_RELATIVE_L2, o.ortho_lambda = 0.5;
        o.ortho_subset = 6, o.l1_coefficient = 0.01;
        sae_trainer *t = make(&o);
        const sae_train_metrics m0 = loss_grad_at(t, 3, n, x);
        float *grad = test_malloc(sizeof(float) * (size_t)(F * d));
        float *fd = test_malloc(sizeof(float) * (size_t)(F * d));
        memcpy(grad, t->gp.W_dec, sizeof(float) * (size_t)(F * d));
        const float h = 3e-3f;
        for (int64_t e = 0; e < F * d; e++) {
            const float w0 = t->p.W_dec[e];
            t->p.W_dec[e] = w0 + h;
            const double hi = loss_grad_at(t, 3, n, x).loss;
            t->p.W_dec[e] = w0 - h;
            const double lo = loss_grad_at(t, 3, n, x).loss;
            t->p.W_dec[e] = w0;
            /* the step actually taken in float */
            fd[e] = (float)((hi - lo) / ((double)(w0 + h) - (double)(w0 - h)));
        }
        printf("    %s: loss %.6g (ortho %.5g), dL/dW_dec by central differences\n",
               archs[a].name, m0.loss, m0.ortho);
        check_scaled(grad, fd, F * d, 2e-3, archs[a].name);
        test_free(grad), test_free(fd);
        sae_trainer_free(t);
    }
    test_free(x);
}

/* ---- AdamW ---------------------------------------------------------------------------------- */

static void test_adamw(void **state)
{
    (void)state;
    sae_trainer_options o = base_options(1, 8, 20, SAE_PRESET_SAELENS);
    o.weight_decay = 0.3, o.decoder_constraint = SAE_DECODER_FREE;
    sae_trainer *t = make(&o);
    const int64_t N = t->n_params;
    float *p = test_malloc(sizeof(float) * (size_t)N), *m = test_malloc(sizeof(float) * (size_t)N);
    float *v = test_malloc(sizeof(float) * (size_t)N);
    /* the fused pass against the plain twin, at step 7 with moments */
    fill_normal(t->grad, N, 1, 0.1f);
    fill_normal(t->m, N, 2, 0.01f);
    fill_normal(t->v, N, 3, 0.01f);
    for (int64_t i = 0; i < N; i++)
        t->v[i] *= t->v[i];
    memcpy(p, t->param, sizeof(float) * (size_t)N);
    memcpy(m, t->m, sizeof(float) * (size_t)N);
    memcpy(v, t->v, sizeof(float) * (size_t)N);
    t->step = 6;
    sae__adam_update(t, 1e-2, 0.5f);
    sae__adam_ref(&t->cfg, 7, 1e-2, 0.5f, p, m, v, t->grad, N);
    assert_close_f32(t->param, p, N, 1e-7, 1e-6, "adamw params");
    assert_close_f32(t->m, m, N, 1e-9, 1e-6, "adamw m");
    /* decoupled: without gradient or moments only the decay moves p, p *= 1 - lr wd (torch's
     * param.mul_(1 - lr * weight_decay)), the same for every parameter block */
    memset(t->grad, 0, sizeof(float) * (size_t)N);
    memset(t->m, 0, sizeof(float) * (size_t)N);
    memset(t->v, 0, sizeof(float) * (size_t)N);
    memcpy(p, t->param, sizeof(float) * (size_t)N);
    sae__adam_update(t, 1e-2, 1.0f);
    const float f = (float)(1.0 - 1e-2 * 0.3);
    for (int64_t i = 0; i < N; i++)
        if (t->param[i] != p[i] * f)
            fail_msg("param %lld: %.9g, expected %.9g * %.9g", (long long)i, (double)t->param[i],
                     (double)p[i], (double)f);
    test_free(p), test_free(m), test_free(v);
    sae_trainer_free(t);
}

/* ---- the sae-icm preset --------------------------------------------------------------------- */

/* transformers.get_cosine_schedule_with_warmup's multiplier (num_cycles 0.5), written out. */
static double hf_cosine(int64_t s, int64_t W, int64_t T)
{
    if (s < W)
        return (double)s / (double)(W > 1 ? W : 1);
    double progress = (double)(s - W) / (double)(T - W > 1 ? T - W : 1);
    double v = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    return v > 0 ? v : 0;
}

static sae_dict *topk_dict(int64_t d, int64_t F, int64_t k)
{
    float *We = test_malloc(sizeof(float) * (size_t)(d * F)), *Wd = test_malloc(sizeof(float) * (size_t)(d * F));
    float *be = test_malloc(sizeof(float) * (size_t)F), *bd = test_malloc(sizeof(float) * (size_t)d);
    fill_normal(We, d * F, 7, 0.3f), fill_normal(Wd, d * F, 8, 0.3f);
    fill_normal(be, F, 9, 0.1f), fill_normal(bd, d, 10, 0.5f);
    sae_dict_config dc = SAE_DICT_CONFIG_INIT;
    dc.arch = SAE_ARCH_TOPK, dc.d_in = d, dc.d_sae = F, dc.k = k;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = We, w.b_enc = be, w.W_dec = Wd, w.b_dec = bd;
    sae_dict *dict = NULL;
    assert_sae_ok(sae_dict_create(&dict, &dc, &w, test_allocator()));
    test_free(We), test_free(Wd), test_free(be), test_free(bd);
    return dict;
}

static void test_sae_icm_preset(void **state)
{
    (void)state;
    const int64_t d = 8, F = 24, T = 1000;
    sae_dict *dict = topk_dict(d, F, 3);
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    o.preset = SAE_PRESET_SAE_ICM, o.allocator = test_allocator();
    sae_trainer *t = NULL;
    assert_int_equal(sae_trainer_create_from(&t, dict, &o), SAE_EINVAL); /* cosine: T needed */
    o.total_steps = T;
    assert_sae_ok(sae_trainer_create_from(&t, dict, &o));
    sae_trainer_options r = SAE_TRAINER_OPTIONS_INIT;
    assert_sae_ok(sae_trainer_get_options(t, &r));
    assert_int_equal(r.mse, SAE_MSE_RELATIVE_L2);
    assert_true(r.ortho_lambda == 1e-4 && r.ortho_subset == 1024 && r.weight_decay == 0.01);
    assert_true(r.lr == 5e-5 && r.beta1 == 0.9 && r.beta2 == 0.95 && r.adam_eps == 1e-8);
    assert_true(r.clip_norm == 1.0 && r.lr_end < 0 && r.decay_steps < 0);
    assert_int_equal(r.lr_warmup, SAE_WARMUP_FROM_ZERO);
    assert_int_equal(r.warmup_steps, 200);
    assert_int_equal(r.lr_schedule, SAE_LR_COSINE);
    assert_int_equal(r.decoder_constraint, SAE_DECODER_FREE);
    assert_int_equal(r.topk_relu, SAE_TOPK_RELU_FIRST);
    assert_int_equal(r.rescale, SAE_SWITCH_OFF);
    assert_true(r.auxk_coefficient < 0 && r.threshold_start_step == INT64_MAX);
    assert_int_equal(r.b_dec_init, SAE_BDEC_KEEP);
    assert_int_equal(t->cfg.ortho_subset, F); /* 1024 > F: every feature */
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(dict, &w));
    assert_memory_equal(t->p.b_dec, w.b_dec, sizeof(float) * (size_t)d);
    const int64_t steps[] = {0, 1, 100, 199, 200, 201, 600, 998, 999};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const double want = 5e-5 * hf_cosine(steps[i], 200, T);
        assert_true(fabs(sae__lr_at(&t->cfg, steps[i]) - want) <= 1e-15);
    }
    sae_trainer_free(t);
    /* the other presets: penalty and decay off, subset 1024 */
    for (int32_t p = SAE_PRESET_SAELENS; p <= SAE_PRESET_SPARSIFY; p++) {
        sae_trainer_options q = SAE_TRAINER_OPTIONS_INIT;
        q.preset = p, q.allocator = test_allocator(), q.total_steps = T;
        assert_sae_ok(sae_trainer_create_from(&t, dict, &q));
        assert_sae_ok(sae_trainer_get_options(t, &r));
        assert_true(r.ortho_lambda < 0 && r.weight_decay < 0 && r.ortho_subset == 1024);
        assert_true(t->cfg.ortho_lambda == 0 && t->cfg.weight_decay == 0);
        sae_trainer_free(t);
    }
    /* bad values */
    const struct {
        double lambda, wd;
        int32_t mse;
        sae_status want;
    } bad[] = {{NAN, 0, 0, SAE_ENUMERIC}, {0, INFINITY, 0, SAE_ENUMERIC},
               {0, 0, SAE_MSE_RELATIVE_L2 + 1, SAE_EINVAL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sae_trainer_options q = o;
        q.ortho_lambda = bad[i].lambda, q.weight_decay = bad[i].wd, q.mse = bad[i].mse;
        assert_int_equal(sae_trainer_create_from(&t, dict, &q), bad[i].want);
        assert_null(t);
        printf("    refused: %s\n", sae_last_error());
    }
    sae_dict_free(dict);
}

/* ---- determinism and the subsets ------------------------------------------------------------ */

static void test_determinism_and_subsets(void **state)
{
    (void)state;
    const int64_t d = 10, F = 40, n = 20;
    sae_trainer_options o = base_options(1, d, F, SAE_PRESET_SAE_ICM);
    o.ortho_lambda = 0.1, o.ortho_subset = 8, o.lr = 1e-3;
    sae_trainer *a = make(&o), *b = make(&o);
    run_steps(a, 6, n, d, 3, NULL);
    run_steps(b, 6, n, d, 3, NULL);
    assert_memory_equal(a->param, b->param, sizeof(float) * (size_t)a->n_params);
    assert_memory_equal(a->v, b->v, sizeof(float) * (size_t)a->n_params);
    /* the last step's subset is step 5's draw; steps draw different subsets */
    int32_t s5[8], s4[8];
    assert_sae_ok(sae_ortho_subset(s5, NULL, 8, F, o.seed, (UINT64_C(1) << 32) + 5));
    assert_sae_ok(sae_ortho_subset(s4, NULL, 8, F, o.seed, (UINT64_C(1) << 32) + 4));
    assert_memory_equal(a->ws.ortho_ids, s5, sizeof s5);
    assert_memory_not_equal(s4, s5, sizeof s5);
    /* another seed, other subsets (and other weights) */
    o.seed = 12;
    sae_trainer *c = make(&o);
    run_steps(c, 6, n, d, 3, NULL);
    assert_memory_not_equal(c->ws.ortho_ids, s5, sizeof s5);
    sae_trainer_free(a), sae_trainer_free(b), sae_trainer_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relative_l2_reconstruction),
        cmocka_unit_test(test_penalty_twin),
        cmocka_unit_test(test_step_order),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sae_icm_preset),
        cmocka_unit_test(test_determinism_and_subsets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
