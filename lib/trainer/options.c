/* options.c: trainer options — preset resolution and validation.
 *
 * Every field a preset sets is a field of sae_trainer_options; zero means "the preset's
 * value", a negative value an explicit zero. Resolution fills the zero fields (keeping the
 * negative encoding, so that sae_trainer_get_options() round-trips), then sae__train_cfg gets
 * the plain values. The preset table is in trainer.h. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "trainer_internal.h"

/* No implicit padding: Python mirrors this struct field by field. */
_Static_assert(offsetof(sae_trainer_options, weight_decay) + sizeof(double) ==
                   sizeof(sae_trainer_options),
               "sae_trainer_options has trailing padding");
_Static_assert(offsetof(sae_trainer_options, threshold_start_step) == 224 &&
                   offsetof(sae_trainer_options, resample_steps) == 240 &&
                   offsetof(sae_trainer_options, jumprelu_bandwidth) == 272 &&
                   offsetof(sae_trainer_options, ortho_lambda) == 304,
               "sae_trainer_options has a padding hole");

#define OFF SAE_TRAIN_OFF
#define FILL(field, value)                                                                    \
    do {                                                                                       \
        if (o->field == 0)                                                                     \
            o->field = (value);                                                                \
    } while (0)

/* dictionary_learning and sparsify: lr = 2e-4 / sqrt(d_sae / 2^14). */
static double lr_for_width(int64_t F) { return 2e-4 / sqrt((double)F / 16384.0); }

/* Architectures that select codes (TopK, BatchTopK): top-k order and rescaling apply. */
static bool selects(int32_t arch) { return arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK; }

static void fill_saelens(sae_trainer_options *o, bool from_dict)
{
    const bool batch = o->arch == SAE_ARCH_BATCHTOPK;
    FILL(init, SAE_INIT_UNIFORM_TIED);
    FILL(decoder_init_norm, 0.1);
    FILL(b_dec_init, from_dict ? SAE_BDEC_KEEP : SAE_BDEC_ZERO);
    FILL(lr, 3e-4);
    FILL(clip_norm, 1.0);
    FILL(lr_warmup, SAE_WARMUP_SAELENS);
    FILL(warmup_steps, OFF);
    FILL(decay_steps, OFF);
    FILL(mse, SAE_MSE_SUM);
    FILL(l1, SAE_L1_DECODER_NORM);
    FILL(l1_coefficient, 1.0);
    FILL(l1_warmup_steps, OFF);
    FILL(topk_relu, batch ? SAE_TOPK_RELU_FIRST : SAE_TOPK_RELU_AFTER); /* BatchTopK: ReLU first */
    FILL(rescale, selects(o->arch) ? SAE_SWITCH_ON : SAE_SWITCH_OFF);
    FILL(auxk, SAE_AUXK_SAELENS);
    FILL(auxk_coefficient, 1.0);
    FILL(dead_rule, SAE_DEAD_STEPS);
    FILL(dead_window, 1000);
    FILL(decoder_constraint, SAE_DECODER_FREE);
    FILL(threshold_start_step, INT64_MAX);
    FILL(threshold_beta, batch ? 0.99 : 0.999); /* BatchTopK: 1 - topk_threshold_lr */
    FILL(jumprelu_sparsity, SAE_JUMPRELU_STEP);
    FILL(jumprelu_log_threshold, SAE_SWITCH_ON);
    FILL(jumprelu_bandwidth, 0.05);
    FILL(jumprelu_init_threshold, 0.01);
    FILL(gated_aux, SAE_GATED_AUX_ATTACHED);
    FILL(batchtopk_threshold, SAE_BATCHTOPK_THRESHOLD_SAELENS);
}

/* One trainer class per architecture, each with its own defaults. */
static void fill_dictionary_learning(sae_trainer_options *o, bool from_dict)
{
    const int32_t a = o->arch;
    const bool topk = selects(a), jump = a == SAE_ARCH_JUMPRELU, gated = a == SAE_ARCH_GATED;
    FILL(init, topk    ? SAE_INIT_UNIFORM_TIED
               : gated ? SAE_INIT_UNTIED
                       : SAE_INIT_NORMAL_TIED);
    FILL(decoder_init_norm, a == SAE_ARCH_STANDARD ? 0.1 : 1.0);
    FILL(b_dec_init, from_dict ? SAE_BDEC_KEEP
                     : topk    ? SAE_BDEC_GEOMETRIC_MEDIAN
                               : SAE_BDEC_ZERO);
    FILL(lr, topk ? lr_for_width(o->d_sae) : jump ? 7e-5 : gated ? 5e-5 : 1e-3);
    FILL(beta1, jump || gated ? OFF : 0.9); /* Adam(betas=(0, 0.999)) */
    FILL(clip_norm, topk || jump ? 1.0 : OFF);
    FILL(lr_warmup, SAE_WARMUP_FROM_ZERO);
    FILL(warmup_steps, 1000);
    FILL(decay_steps, OFF);
    FILL(mse, SAE_MSE_SUM);
    FILL(l1, SAE_L1_PLAIN);
    FILL(l1_coefficient, jump ? 1.0 : 0.1); /* JumpReLU sparsity_penalty, else l1_penalty */
    FILL(l1_warmup_steps, 2000);
    FILL(topk_relu, SAE_TOPK_RELU_FIRST);
    FILL(rescale, SAE_SWITCH_OFF);
    FILL(auxk, SAE_AUXK_DICTIONARY_LEARNING);
    FILL(auxk_coefficient, gated ? 1.0 : 1.0 / 32.0);
    /* Resampling marks a feature dead after resample_steps / 2 steps without firing. */
    const int64_t half = o->resample_steps > 0 ? o->resample_steps / 2 : 0;
    FILL(dead_rule, o->resample_steps > 0 ? SAE_DEAD_STEPS_AFTER : SAE_DEAD_TOKENS_AFTER);
    FILL(dead_window, o->resample_steps > 0 ? (half > 0 ? half : OFF) : 10000000);
    FILL(decoder_constraint, topk || jump ? SAE_DECODER_UNIT_EPS : SAE_DECODER_UNIT_EXACT);
    FILL(threshold_start_step, topk ? 1000 : INT64_MAX);
    FILL(b_dec_input, jump ? SAE_SWITCH_OFF : SAE_SWITCH_ON);
    FILL(jumprelu_sparsity, SAE_JUMPRELU_TARGET_L0);
    FILL(jumprelu_log_threshold, SAE_SWITCH_OFF);
    FILL(jumprelu_bandwidth, 0.001);
    FILL(jumprelu_init_threshold, OFF);
    FILL(gated_aux, SAE_GATED_AUX_DETACHED);
    FILL(batchtopk_threshold, SAE_BATCHTOPK_THRESHOLD_DICTIONARY_LEARNING);
}

static void fill_sparsify(sae_trainer_options *o, bool from_dict)
{
    FILL(init, SAE_INIT_SPARSIFY);
    FILL(decoder_init_norm, 1.0);
    FILL(b_dec_init, from_dict ? SAE_BDEC_KEEP : SAE_BDEC_MEAN);
    FILL(lr, lr_for_width(o->d_sae));
    FILL(clip_norm, OFF);
    FILL(lr_warmup, SAE_WARMUP_FROM_ZERO);
    FILL(warmup_steps, 1000);
    /* transformers' get_linear_schedule_with_warmup: linear decay to 0 after the warm-up. */
    int64_t warm = o->warmup_steps > 0 ? o->warmup_steps : 0;
    FILL(decay_steps, o->total_steps > warm ? o->total_steps - warm : OFF);
    FILL(mse, SAE_MSE_FVU);
    FILL(l1, SAE_L1_PLAIN);
    FILL(l1_coefficient, OFF);
    FILL(l1_warmup_steps, OFF);
    FILL(topk_relu, SAE_TOPK_RELU_FIRST);
    FILL(rescale, SAE_SWITCH_OFF);
    FILL(auxk, SAE_AUXK_SPARSIFY);
    FILL(auxk_coefficient, OFF); /* sparsify's auxk_alpha defaults to 0 */
    FILL(dead_rule, SAE_DEAD_TOKENS_BEFORE);
    FILL(dead_window, 10000000);
    FILL(decoder_constraint, SAE_DECODER_UNIT_RAW);
    FILL(threshold_start_step, INT64_MAX);
}

/* sae-icm's fine-tuning recipe (trainer.h): what finetune_sae.py, config.yaml and
 * insert_sae.py fix; SAELens fills the rest. */
static void fill_sae_icm(sae_trainer_options *o, bool from_dict)
{
    FILL(mse, SAE_MSE_RELATIVE_L2);
    FILL(ortho_lambda, 1e-4);
    FILL(lr, 5e-5);
    FILL(beta2, 0.95);
    FILL(weight_decay, 0.01);
    FILL(lr_warmup, SAE_WARMUP_FROM_ZERO); /* get_cosine_schedule_with_warmup: s / W */
    FILL(warmup_steps, 200);
    FILL(lr_schedule, SAE_LR_COSINE);
    FILL(lr_end, OFF);
    FILL(topk_relu, SAE_TOPK_RELU_FIRST);  /* TopKSAE: relu, then topk */
    FILL(rescale, SAE_SWITCH_OFF);
    FILL(auxk_coefficient, OFF);
    fill_saelens(o, from_dict); /* clip_norm 1.0, decoder FREE, no decay, b_dec KEEP / ZERO, ... */
}

/* Fields every preset shares. */
static void fill_common(sae_trainer_options *o)
{
    FILL(lr_schedule, SAE_LR_CONSTANT);
    FILL(beta1, 0.9);
    FILL(beta2, 0.999);
    FILL(adam_eps, 1e-8);
    FILL(lr_end, o->lr / 10.0);
    FILL(k_aux, o->d_in / 2 > 0 ? o->d_in / 2 : 1);
    FILL(threshold_beta, 0.999);
    FILL(resample_steps, OFF); /* dictionary_learning's default is None */
    FILL(activation_scaling, SAE_SWITCH_OFF);
    FILL(b_dec_input, SAE_SWITCH_ON);
    FILL(jumprelu_tanh_scale, 4.0);
    FILL(target_l0, 20.0);
    FILL(ortho_lambda, OFF);
    FILL(ortho_subset, SAE_ORTHO_SUBSET_DEFAULT);
    FILL(weight_decay, OFF);
}

static double plain(double v) { return v < 0 ? 0.0 : v; }
static int64_t plain_i(int64_t v) { return v < 0 ? 0 : v; }

static sae_status check_enum(int32_t v, int32_t max, const char *name)
{
    if (v < 0 || v > max)
        return sae__fail(SAE_EINVAL, "trainer option %s = %d is not a known value", name, v);
    return SAE_OK;
}

static sae_status check_shape(const sae_trainer_options *o)
{
    if (o->arch < SAE_ARCH_STANDARD || o->arch > SAE_ARCH_GATED)
        return sae__fail(SAE_EINVAL, "unknown architecture %d", o->arch);
    if (o->d_in < 1 || o->d_sae < 1)
        return sae__fail(SAE_EINVAL, "d_in and d_sae must be positive (got %lld, %lld)",
                         (long long)o->d_in, (long long)o->d_sae);
    if (o->d_sae > INT32_MAX || o->d_in > INT32_MAX || o->d_in > INT64_MAX / 8 / o->d_sae)
        return sae__fail(SAE_EINVAL, "an SAE of %lld x %lld is too large", (long long)o->d_in,
                         (long long)o->d_sae);
    if (selects(o->arch) && (o->k < 1 || o->k > o->d_sae))
        return sae__fail(SAE_EINVAL, "%s needs 1 <= k <= d_sae (%lld), got k = %lld",
                         sae_arch_name(o->arch), (long long)o->d_sae, (long long)o->k);
    if (!selects(o->arch) && o->k != 0)
        return sae__fail(SAE_EINVAL, "k = %lld given for a %s SAE", (long long)o->k,
                         sae_arch_name(o->arch));
    if (o->preset < 0 || o->preset > SAE_PRESET_SAE_ICM)
        return sae__fail(SAE_EINVAL, "unknown preset %d", o->preset);
    if (o->preset == SAE_PRESET_SPARSIFY && o->arch != SAE_ARCH_TOPK)
        return sae__fail(SAE_EUNSUPPORTED, "the sparsify preset trains TopK SAEs only");
    if (o->rescale == SAE_SWITCH_ON && !selects(o->arch))
        return sae__fail(SAE_EINVAL, "rescale applies to TopK and BatchTopK SAEs, not %s",
                         sae_arch_name(o->arch));
    if (o->n_threads < 0)
        return sae__fail(SAE_EINVAL, "n_threads is negative");
    if (o->flags & ~(uint32_t)SAE_TRAIN_SKIP_NONFINITE)
        return sae__fail(SAE_EINVAL, "unknown trainer flags 0x%x",
                         o->flags & ~(uint32_t)SAE_TRAIN_SKIP_NONFINITE);
    return SAE_OK;
}

static sae_status check_enums(const sae_trainer_options *o)
{
    sae_status s;
    if ((s = check_enum(o->init, SAE_INIT_UNTIED, "init")) ||
        (s = check_enum(o->b_dec_init, SAE_BDEC_KEEP, "b_dec_init")) ||
        (s = check_enum(o->lr_schedule, SAE_LR_COSINE, "lr_schedule")) ||
        (s = check_enum(o->lr_warmup, SAE_WARMUP_SAELENS, "lr_warmup")) ||
        (s = check_enum(o->mse, SAE_MSE_RELATIVE_L2, "mse")) ||
        (s = check_enum(o->l1, SAE_L1_NORMALIZED, "l1")) ||
        (s = check_enum(o->topk_relu, SAE_TOPK_RELU_AFTER, "topk_relu")) ||
        (s = check_enum(o->rescale, SAE_SWITCH_OFF, "rescale")) ||
        (s = check_enum(o->auxk, SAE_AUXK_DICTIONARY_LEARNING, "auxk")) ||
        (s = check_enum(o->dead_rule, SAE_DEAD_STEPS_AFTER, "dead_rule")) ||
        (s = check_enum(o->activation_scaling, SAE_SWITCH_OFF, "activation_scaling")) ||
        (s = check_enum(o->decoder_constraint, SAE_DECODER_UNIT_RAW, "decoder_constraint")) ||
        (s = check_enum(o->b_dec_input, SAE_SWITCH_OFF, "b_dec_input")) ||
        (s = check_enum(o->jumprelu_sparsity, SAE_JUMPRELU_TARGET_L0, "jumprelu_sparsity")) ||
        (s = check_enum(o->jumprelu_log_threshold, SAE_SWITCH_OFF, "jumprelu_log_threshold")) ||
        (s = check_enum(o->gated_aux, SAE_GATED_AUX_DETACHED, "gated_aux")) ||
        (s = check_enum(o->batchtopk_threshold, SAE_BATCHTOPK_THRESHOLD_DICTIONARY_LEARNING,
                        "batchtopk_threshold")))
        return s;
    return SAE_OK;
}

/* Numeric ranges, on the plain values. */
static sae_status check_values(const sae__train_cfg *c)
{
    const struct {
        const char *name;
        double v;
    } finite[] = {{"lr", c->lr}, {"beta1", c->beta1}, {"beta2", c->beta2},
                  {"adam_eps", c->adam_eps}, {"clip_norm", c->clip_norm},
                  {"lr_end", c->lr_end}, {"l1_coefficient", c->l1_coefficient},
                  {"auxk_coefficient", c->auxk_coefficient},
                  {"decoder_init_norm", c->decoder_init_norm},
                  {"threshold_beta", c->threshold_beta},
                  {"jumprelu_bandwidth", c->bandwidth},
                  {"jumprelu_init_threshold", c->init_threshold},
                  {"jumprelu_tanh_scale", c->tanh_scale}, {"target_l0", c->target_l0},
                  {"ortho_lambda", c->ortho_lambda}, {"weight_decay", c->weight_decay}};
    for (size_t i = 0; i < sizeof finite / sizeof finite[0]; i++)
        if (!isfinite(finite[i].v))
            return sae__fail(SAE_ENUMERIC, "trainer option %s is %g", finite[i].name,
                             finite[i].v);
    if (!(c->lr > 0))
        return sae__fail(SAE_EINVAL, "lr must be positive, got %g", c->lr);
    if (c->beta1 >= 1 || c->beta2 >= 1)
        return sae__fail(SAE_EINVAL, "Adam betas must be in [0, 1), got %g, %g", c->beta1,
                         c->beta2);
    if (!(c->decoder_init_norm > 0))
        return sae__fail(SAE_EINVAL, "decoder_init_norm must be positive");
    if (c->threshold_beta > 1)
        return sae__fail(SAE_EINVAL, "threshold_beta must be in (0, 1], got %g",
                         c->threshold_beta);
    if (c->total_steps < 0)
        return sae__fail(SAE_EINVAL, "total_steps is negative");
    if (c->arch == SAE_ARCH_GATED && c->l1 == SAE_L1_NORMALIZED)
        return sae__fail(SAE_EUNSUPPORTED, "the OpenAI-normalised L1 is not supported for "
                                           "gated SAEs");
    if (c->arch == SAE_ARCH_JUMPRELU) {
        if (!(c->bandwidth > 0))
            return sae__fail(SAE_EINVAL, "jumprelu_bandwidth must be positive, got %g",
                             c->bandwidth);
        if (c->log_threshold && !(c->init_threshold > 0))
            return sae__fail(SAE_EINVAL, "log thresholds need jumprelu_init_threshold > 0, "
                                         "got %g", c->init_threshold);
        if (c->jumprelu_sparsity == SAE_JUMPRELU_TANH && !(c->tanh_scale > 0))
            return sae__fail(SAE_EINVAL, "jumprelu_tanh_scale must be positive, got %g",
                             c->tanh_scale);
        if (c->jumprelu_sparsity == SAE_JUMPRELU_TARGET_L0 && !(c->target_l0 > 0))
            return sae__fail(SAE_EINVAL, "target_l0 must be positive, got %g", c->target_l0);
    }
    if (c->k_aux > c->F)
        return sae__fail(SAE_EINVAL, "k_aux = %lld exceeds d_sae = %lld", (long long)c->k_aux,
                         (long long)c->F);
    if (c->arch == SAE_ARCH_TOPK && c->rescale && c->auxk == SAE_AUXK_SPARSIFY &&
        c->auxk_coefficient > 0)
        return sae__fail(SAE_EUNSUPPORTED, "sparsify's AuxK sends no gradient to the encoder; "
                                           "with rescaling by decoder norms it would reach "
                                           "them: not supported");
    if (c->arch != SAE_ARCH_STANDARD &&
        (c->resample_steps > 0 || c->dead_rule == SAE_DEAD_STEPS_AFTER))
        return sae__fail(SAE_EUNSUPPORTED, "resampling and its dead rule STEPS_AFTER are "
                                           "dictionary_learning StandardTrainer's: standard "
                                           "SAEs only");
    bool needs_total = c->lr_schedule == SAE_LR_COSINE || c->decay_steps > 0;
    if (needs_total && c->total_steps < c->warmup_steps + c->decay_steps +
                                            (c->lr_schedule == SAE_LR_COSINE ? 1 : 0))
        return sae__fail(SAE_EINVAL,
                         "total_steps = %lld leaves no room for %lld warm-up and %lld decay "
                         "steps%s", (long long)c->total_steps, (long long)c->warmup_steps,
                         (long long)c->decay_steps,
                         c->lr_schedule == SAE_LR_COSINE ? " and a cosine phase" : "");
    return SAE_OK;
}

static void to_cfg(const sae_trainer_options *o, sae__train_cfg *c)
{
    *c = (sae__train_cfg){
        .arch = o->arch, .preset = o->preset, .d_in = o->d_in, .F = o->d_sae, .k = o->k,
        .threads = sae__threads(o->n_threads), .seed = o->seed, .flags = o->flags,
        .init = o->init, .b_dec_init = o->b_dec_init, .lr_schedule = o->lr_schedule,
        .lr_warmup = o->lr_warmup, .mse = o->mse, .l1 = o->l1, .auxk = o->auxk,
        .dead_rule = o->dead_rule, .decoder_constraint = o->decoder_constraint,
        .relu_first = o->topk_relu == SAE_TOPK_RELU_FIRST,
        .rescale = o->rescale == SAE_SWITCH_ON && selects(o->arch),
        .b_dec_input = o->b_dec_input == SAE_SWITCH_ON,
        .log_threshold = o->jumprelu_log_threshold == SAE_SWITCH_ON,
        .gated_aux_attached = o->gated_aux == SAE_GATED_AUX_ATTACHED,
        .jumprelu_sparsity = o->jumprelu_sparsity, .batchtopk_threshold = o->batchtopk_threshold,
        .bandwidth = o->jumprelu_bandwidth, .init_threshold = plain(o->jumprelu_init_threshold),
        .tanh_scale = o->jumprelu_tanh_scale, .target_l0 = o->target_l0,
        .decoder_init_norm = o->decoder_init_norm, .lr = o->lr, .beta1 = plain(o->beta1),
        .beta2 = plain(o->beta2), .adam_eps = plain(o->adam_eps),
        .clip_norm = plain(o->clip_norm), .lr_end = plain(o->lr_end),
        .total_steps = o->total_steps, .warmup_steps = plain_i(o->warmup_steps),
        .decay_steps = plain_i(o->decay_steps), .l1_warmup_steps = plain_i(o->l1_warmup_steps),
        .l1_coefficient = plain(o->l1_coefficient),
        .auxk_coefficient = plain(o->auxk_coefficient), .threshold_beta = o->threshold_beta,
        .k_aux = o->k_aux, .dead_window = plain_i(o->dead_window),
        .threshold_start_step = plain_i(o->threshold_start_step),
        .resample_steps = plain_i(o->resample_steps),
        .activation_scaling = o->activation_scaling == SAE_SWITCH_ON,
        .ortho_lambda = plain(o->ortho_lambda), .weight_decay = plain(o->weight_decay),
        /* negative or >= F: every feature */
        .ortho_subset = o->ortho_subset < 0 || o->ortho_subset > o->d_sae ? o->d_sae
                                                                           : o->ortho_subset,
    };
}

sae_status sae__trainer_resolve(const sae_trainer_options *in, bool from_dict,
                                const sae_trainer_options *dict_shape,
                                sae_trainer_options *resolved, sae__train_cfg *cfg)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, in, "sae_trainer_options");
    if (s != SAE_OK)
        return s;
    if (dict_shape) { /* create_from: shape fields default to the dictionary's and must agree */
        const struct {
            const char *name;
            int64_t mine, theirs;
        } f[] = {{"arch", o.arch, dict_shape->arch},
                 {"d_in", o.d_in, dict_shape->d_in},
                 {"d_sae", o.d_sae, dict_shape->d_sae},
                 {"k", o.k, dict_shape->k}};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            if (f[i].mine != 0 && f[i].mine != f[i].theirs)
                return sae__fail(SAE_ESHAPE, "options.%s = %lld but the dictionary has %lld",
                                 f[i].name, (long long)f[i].mine, (long long)f[i].theirs);
        o.arch = dict_shape->arch;
        o.d_in = dict_shape->d_in, o.d_sae = dict_shape->d_sae;
        o.k = dict_shape->k;
        if (o.b_dec_input == SAE_SWITCH_PRESET) /* the dictionary's convention */
            o.b_dec_input = dict_shape->b_dec_input;
    }
    if ((s = check_shape(&o)) || (s = check_enums(&o)))
        return s;
    if (o.preset == SAE_PRESET_SAELENS)
        fill_saelens(&o, from_dict);
    else if (o.preset == SAE_PRESET_DICTIONARY_LEARNING)
        fill_dictionary_learning(&o, from_dict);
    else if (o.preset == SAE_PRESET_SPARSIFY)
        fill_sparsify(&o, from_dict);
    else
        fill_sae_icm(&o, from_dict);
    fill_common(&o);
    to_cfg(&o, cfg);
    if ((s = check_values(cfg)))
        return s;
    *resolved = o;
    return SAE_OK;
}
