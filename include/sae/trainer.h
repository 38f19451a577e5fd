/**
 * @file trainer.h
 * @brief `sae_trainer`: train standard (ReLU + L1) and TopK SAEs with Adam.
 *
 * @defgroup trainer Training
 * @brief Optimiser state, loss recipe, schedules and dead-feature tracking (MATH.md, "Training
 *        losses").
 *
 * One call to sae_trainer_step() is one optimiser step on one batch:
 *   1. at the first step, b_dec from the batch (zero / mean / geometric median);
 *   2. forward: x' = x - b_dec, pre = x' W_enc + b_enc, codes, x_hat = f W_dec + b_dec;
 *   3. loss = reconstruction + l1_coefficient * warm-up * L1 (standard)
 *             + auxk_coefficient * AuxK (TopK, dead features);
 *   4. gradients (TopK: sparse, O(B k d_in) besides the encoder product; standard: sparse in
 *      the same way when the batch's mean L0 is at most d_sae / 16, else dense products);
 *   5. decoder constraint: remove from each decoder row's gradient its component along the row;
 *   6. gradient clipping by global norm; 7. Adam (torch semantics); 8. renormalise decoder rows;
 *   9. dead-feature counters, the learning-rate and L1 schedules advance.
 * Every convention on which SAELens, dictionary_learning and sparsify differ is a field of
 * @ref sae_trainer_options; a **preset** fills each field the caller leaves at zero, so that
 * the defaults reproduce one library exactly and every field can still be overridden.
 *
 * Thread safety: a trainer is used by one thread at a time and may move between threads. It
 * runs its own threads inside each call (@ref sae_trainer_options.n_threads). With a fixed seed
 * and thread count training is bit-identical from run to run.
 * @{
 */
#ifndef SAE_TRAINER_H
#define SAE_TRAINER_H

#include "dict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Optimiser, schedules and loss recipe of one SAE being trained. Opaque. */
typedef struct sae_trainer sae_trainer;

/** @brief Which library's defaults fill the fields left at zero. */
typedef enum sae_preset {
    SAE_PRESET_SAELENS = 0,             /**< SAELens v6 (default). */
    SAE_PRESET_DICTIONARY_LEARNING = 1, /**< dictionary_learning StandardTrainer / TopKTrainer. */
    SAE_PRESET_SPARSIFY = 2             /**< EleutherAI sparsify with its Adam optimiser (TopK only). */
} sae_preset;

/**
 * @brief An explicit zero (or "off") for fields where 0 means "the preset's value".
 *
 * Every field documented as taking it accepts any negative value with the same meaning.
 */
#define SAE_TRAIN_OFF (-1)

/** @brief A preset-or-override switch for yes/no conventions. */
typedef enum sae_switch {
    SAE_SWITCH_PRESET = 0, /**< The preset decides. */
    SAE_SWITCH_ON = 1,     /**< On. */
    SAE_SWITCH_OFF = 2     /**< Off. */
} sae_switch;

/** @brief Main learning-rate schedule between warm-up and final decay. */
typedef enum sae_lr_schedule {
    SAE_LR_PRESET = 0,   /**< The preset decides (constant in every preset). */
    SAE_LR_CONSTANT = 1, /**< lr. */
    SAE_LR_COSINE = 2    /**< Cosine from lr to lr_end over the steps between warm-up and decay. */
} sae_lr_schedule;

/** @brief Shape of the linear learning-rate warm-up over W steps (step s = 0, 1, ...). */
typedef enum sae_lr_warmup {
    SAE_WARMUP_PRESET = 0,    /**< The preset decides. */
    SAE_WARMUP_FROM_ZERO = 1, /**< lr * s / W: the first step has lr 0 (dictionary_learning, sparsify). */
    SAE_WARMUP_SAELENS = 2    /**< lr * (1/W + (1 - 1/W) s / (W - 1)) (torch LinearLR as SAELens uses it). */
} sae_lr_warmup;

/** @brief Reconstruction term (r = x_hat - x, B rows). */
typedef enum sae_mse_variant {
    SAE_MSE_PRESET = 0,     /**< The preset decides. */
    SAE_MSE_SUM = 1,        /**< mean_b sum_d r^2 (SAELens, dictionary_learning). */
    SAE_MSE_FVU = 2,        /**< sum r^2 / sum_b ||x_b - mean_b x||^2 (sparsify). */
    SAE_MSE_NORMALIZED = 3  /**< mean_b (sum_d r^2 / sum_d x^2) (OpenAI normalised MSE). */
} sae_mse_variant;

/** @brief Sparsity penalty of standard SAEs (f >= 0 after ReLU). */
typedef enum sae_l1_variant {
    SAE_L1_PRESET = 0,       /**< The preset decides. */
    SAE_L1_DECODER_NORM = 1, /**< mean_b sum_j f_j ||d_j|| (SAELens; dictionary_learning April update). */
    SAE_L1_PLAIN = 2,        /**< mean_b sum_j f_j (dictionary_learning StandardTrainer). */
    SAE_L1_NORMALIZED = 3    /**< mean_b sum_j f_j / ||x_b|| (OpenAI normalised L1). */
} sae_l1_variant;

/** @brief AuxK loss on dead features (TopK); e = x - x_hat, detached. */
typedef enum sae_auxk_variant {
    SAE_AUXK_PRESET = 0,   /**< The preset decides. */
    /** top-k_aux of the raw (rescaled) pre-activations of dead features, decoded with b_dec:
     *  min(n_dead / k_aux, 1) * mean_b ||e_aux - e||^2 (SAELens). */
    SAE_AUXK_SAELENS = 1,
    /** top-k_aux of ReLU(pre) of dead features, decoded with b_dec:
     *  min(n_dead / k_aux, 1) * sum ||e_aux - e||^2 / sum_b ||x_b - mean x||^2; as in sparsify
     *  it sends no gradient to the encoder. */
    SAE_AUXK_SPARSIFY = 2,
    /** top-k_aux of ReLU(pre) of dead features, decoded without b_dec:
     *  mean_b ||e - e_aux||^2 / mean_b ||e - mean_b e||^2 (dictionary_learning, OpenAI). */
    SAE_AUXK_DICTIONARY_LEARNING = 3
} sae_auxk_variant;

/** @brief When a feature counts as dead (window: @ref sae_trainer_options.dead_window). */
typedef enum sae_dead_rule {
    SAE_DEAD_PRESET = 0,        /**< The preset decides. */
    /** Steps since the feature last had a positive code, counted before this batch, > window
     *  (SAELens `dead_feature_window`). */
    SAE_DEAD_STEPS = 1,
    /** Tokens since the feature was last selected, counted before this batch, > window
     *  (sparsify). */
    SAE_DEAD_TOKENS_BEFORE = 2,
    /** Tokens since the feature was last selected, counted after this batch, >= window
     *  (dictionary_learning). */
    SAE_DEAD_TOKENS_AFTER = 3
} sae_dead_rule;

/** @brief Unit-norm decoder rows, and the epsilons each library uses for them. */
typedef enum sae_decoder_constraint {
    SAE_DECODER_PRESET = 0,     /**< The preset decides. */
    SAE_DECODER_FREE = 1,       /**< No constraint (SAELens v6). */
    /** g -= (g.d)d with d = W/||W||, renormalise W /= ||W||, no epsilon
     *  (dictionary_learning ConstrainedAdam). */
    SAE_DECODER_UNIT_EXACT = 2,
    /** d = W/(||W|| + 1e-6) in the projection, W /= (||W|| + FLT_EPSILON)
     *  (dictionary_learning TopK). */
    SAE_DECODER_UNIT_EPS = 3,
    /** g -= (g.W)W on the raw rows, W /= (||W|| + FLT_EPSILON) (sparsify). */
    SAE_DECODER_UNIT_RAW = 4
} sae_decoder_constraint;

/** @brief How b_dec is set from the first batch. */
typedef enum sae_b_dec_init {
    SAE_BDEC_PRESET = 0,           /**< sae_trainer_create(): the preset; create_from: keep. */
    SAE_BDEC_ZERO = 1,             /**< Zero (SAELens, dictionary_learning standard). */
    SAE_BDEC_MEAN = 2,             /**< Mean of the first batch (sparsify). */
    /** Geometric median of the first batch: Weiszfeld iterations from the mean, no epsilon,
     *  tol 1e-5, at most 100 (dictionary_learning TopK). */
    SAE_BDEC_GEOMETRIC_MEDIAN = 3,
    SAE_BDEC_KEEP = 4              /**< Keep the initial value. */
} sae_b_dec_init;

/** @brief Random initialisation of the weights by sae_trainer_create() (b_enc = 0). */
typedef enum sae_weight_init {
    SAE_INIT_PRESET = 0,       /**< The preset decides. */
    /** Decoder rows with uniform entries scaled to norm decoder_init_norm, W_enc = W_dec^T
     *  (SAELens kaiming-uniform, dictionary_learning TopK). */
    SAE_INIT_UNIFORM_TIED = 1,
    /** Decoder rows with normal entries scaled to norm decoder_init_norm, W_enc = W_dec^T
     *  (dictionary_learning AutoEncoder). */
    SAE_INIT_NORMAL_TIED = 2,
    /** W_enc entries uniform in +-1/sqrt(d_in); decoder rows = encoder columns scaled to norm
     *  decoder_init_norm (sparsify). */
    SAE_INIT_SPARSIFY = 3
} sae_weight_init;

/** @brief Order of ReLU and top-k selection while training. */
typedef enum sae_topk_relu {
    SAE_TOPK_RELU_PRESET = 0, /**< The preset decides. */
    SAE_TOPK_RELU_FIRST = 1,  /**< ReLU, then top-k (dictionary_learning, sparsify). */
    SAE_TOPK_RELU_AFTER = 2   /**< Top-k, then ReLU on the kept values (SAELens, OpenAI). */
} sae_topk_relu;

/** @brief Bits of @ref sae_trainer_options.flags. */
enum sae_trainer_flag {
    /** A batch with NaN or Inf is skipped (SAE_OK, metrics.skipped = 1, nothing changes)
     *  instead of failing with ::SAE_ENUMERIC. */
    SAE_TRAIN_SKIP_NONFINITE = 1u << 0
};

/**
 * @brief Settings of a trainer, fixed at creation. Initialise with ::SAE_TRAINER_OPTIONS_INIT.
 *
 * Zero in any field means "the preset's value" (see ::sae_preset); fields documented with
 * ::SAE_TRAIN_OFF take a negative value for an explicit zero. Preset values:
 *
 * | field | SAELens | dictionary_learning | sparsify |
 * |---|---|---|---|
 * | lr | 3e-4 | standard 1e-3; TopK 2e-4/sqrt(d_sae/2^14) | 2e-4/sqrt(d_sae/2^14) |
 * | beta1, beta2, adam_eps | 0.9, 0.999, 1e-8 | same | same |
 * | clip_norm | 1.0 | standard off; TopK 1.0 | off |
 * | lr_warmup, warmup_steps | SAELENS, 0 | FROM_ZERO, 1000 | FROM_ZERO, 1000 |
 * | decay_steps | 0 | 0 | total_steps - warmup_steps (0 if total_steps is 0) |
 * | lr_end (cosine) | lr / 10 | lr / 10 | lr / 10 |
 * | mse | SUM | SUM | FVU |
 * | l1, l1_coefficient, l1_warmup_steps | DECODER_NORM, 1.0, 0 | PLAIN, 0.1, 2000 | - |
 * | topk_relu, rescale | AFTER, on | FIRST, off | FIRST, off |
 * | auxk, auxk_coefficient, k_aux | SAELENS, 1.0, d_in/2 | DICTIONARY_LEARNING, 1/32, d_in/2 | SPARSIFY, off, d_in/2 |
 * | dead_rule, dead_window | STEPS, 1000 | TOKENS_AFTER, 10^7 | TOKENS_BEFORE, 10^7 |
 * | decoder_constraint | FREE | standard UNIT_EXACT; TopK UNIT_EPS | UNIT_RAW |
 * | b_dec_init | ZERO | standard ZERO; TopK GEOMETRIC_MEDIAN | MEAN |
 * | init, decoder_init_norm | UNIFORM_TIED, 0.1 | standard NORMAL_TIED, 0.1; TopK UNIFORM_TIED, 1 | SPARSIFY, 1 |
 * | threshold_start_step, threshold_beta | never | TopK 1000, 0.999 | never |
 */
typedef struct sae_trainer_options {
    uint32_t struct_size;   /**< sizeof(sae_trainer_options), set by ::SAE_TRAINER_OPTIONS_INIT. */
    int32_t arch;           /**< ::SAE_ARCH_STANDARD or ::SAE_ARCH_TOPK. create_from: 0 takes the dictionary's. */
    int64_t d_in;           /**< Input width (create_from: 0 or the dictionary's). */
    int64_t d_sae;          /**< Number of features (create_from: 0 or the dictionary's). */
    int64_t k;              /**< TopK: features kept per row (create_from: 0 takes the dictionary's). */
    int32_t preset;         /**< A ::sae_preset value. */
    int32_t n_threads;      /**< Threads per call; 0 = sae_default_threads(). */
    uint64_t seed;          /**< Seed of the weight initialisation (sae_rng). */
    uint32_t flags;         /**< Bits of ::sae_trainer_flag. */
    int32_t init;           /**< A ::sae_weight_init value. */
    double decoder_init_norm; /**< Norm of the initial decoder rows (> 0). */
    int32_t b_dec_init;     /**< A ::sae_b_dec_init value. */
    int32_t lr_schedule;    /**< A ::sae_lr_schedule value. */
    double lr;              /**< Base learning rate (> 0). */
    double beta1;           /**< Adam beta1 in [0, 1); ::SAE_TRAIN_OFF for 0. */
    double beta2;           /**< Adam beta2 in [0, 1); ::SAE_TRAIN_OFF for 0. */
    double adam_eps;        /**< Adam epsilon; ::SAE_TRAIN_OFF for 0. */
    double clip_norm;       /**< Clip the global gradient norm to this; ::SAE_TRAIN_OFF: no clipping. */
    int32_t lr_warmup;      /**< A ::sae_lr_warmup value. */
    int32_t mse;            /**< A ::sae_mse_variant value. */
    double lr_end;          /**< Cosine: final learning rate (and start of the final decay); ::SAE_TRAIN_OFF for 0. */
    int64_t total_steps;    /**< Steps of the run (needed by cosine and final decay; 0 = unknown). */
    int64_t warmup_steps;   /**< Learning-rate warm-up steps; ::SAE_TRAIN_OFF for none. */
    int64_t decay_steps;    /**< Final steps with a linear decay to 0; ::SAE_TRAIN_OFF for none. */
    int32_t l1;             /**< A ::sae_l1_variant value (standard). */
    int32_t topk_relu;      /**< A ::sae_topk_relu value (TopK). */
    double l1_coefficient;  /**< L1 coefficient (standard); ::SAE_TRAIN_OFF for 0. */
    int64_t l1_warmup_steps; /**< Linear L1-coefficient warm-up from 0 (scale min(s/W, 1)); ::SAE_TRAIN_OFF for none. */
    int32_t rescale;        /**< A ::sae_switch: TopK selects on pre * ||d_j|| and decodes f / ||d_j||. */
    int32_t auxk;           /**< A ::sae_auxk_variant value (TopK). */
    double auxk_coefficient; /**< AuxK coefficient; ::SAE_TRAIN_OFF for no AuxK. */
    int64_t k_aux;          /**< AuxK: dead features kept per row, and the n_dead scale's denominator. */
    int32_t dead_rule;      /**< A ::sae_dead_rule value. */
    int32_t decoder_constraint; /**< A ::sae_decoder_constraint value. */
    int64_t dead_window;    /**< Dead after this many steps or tokens (see ::sae_dead_rule); ::SAE_TRAIN_OFF for 0. */
    double threshold_beta;  /**< TopK inference threshold EMA factor, in (0, 1]. */
    /** TopK: after this step the inference threshold follows an EMA of each row's smallest
     *  positive kept code (dictionary_learning); INT64_MAX: never; ::SAE_TRAIN_OFF for 0. */
    int64_t threshold_start_step;
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_trainer_options;

/** @brief Initialiser for ::sae_trainer_options: every field at its preset default. */
#define SAE_TRAINER_OPTIONS_INIT                                                                 \
    {sizeof(sae_trainer_options), 0, 0, 0, 0, 0, 0, 0u, 0u, 0, 0.0, 0, 0, 0.0, 0.0, 0.0, 0.0,   \
     0.0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0.0, 0, NULL}

/**
 * @brief What one step measured. Initialise with ::SAE_TRAIN_METRICS_INIT.
 *
 * loss = mse + l1_coefficient * l1 + auxk_coefficient * aux.
 */
typedef struct sae_train_metrics {
    uint32_t struct_size;   /**< sizeof(sae_train_metrics). */
    uint32_t skipped;       /**< 1 when the batch was skipped (::SAE_TRAIN_SKIP_NONFINITE). */
    int64_t step;           /**< Index of the step (0 for the first). */
    double loss;            /**< Total loss. */
    double mse;             /**< Reconstruction term (::sae_mse_variant). */
    double l1;              /**< Sparsity penalty before its coefficient (standard; 0 for TopK). */
    double l1_coefficient;  /**< Coefficient applied to l1 at this step (after warm-up). */
    double aux;             /**< AuxK term before auxk_coefficient (0 without dead features). */
    double fvu;             /**< sum ||x - x_hat||^2 / sum_b ||x_b - mean x||^2. */
    double l0;              /**< Mean number of positive codes per row. */
    int64_t n_dead;         /**< Dead features by the dead rule at this step (the AuxK mask). */
    double lr;              /**< Learning rate used. */
    double grad_norm;       /**< Global gradient norm after the decoder projection, before clipping. */
} sae_train_metrics;

/** @brief Initialiser for ::sae_train_metrics. */
#define SAE_TRAIN_METRICS_INIT                                                                   \
    {sizeof(sae_train_metrics), 0u, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0}

/**
 * @brief Make a trainer with freshly initialised weights.
 *
 * Fills the fields left at zero from the preset, validates every field (unknown enum values,
 * sizes, k in 1..d_sae, betas in [0, 1), cosine or decay without total_steps, ...) and draws
 * the weights from @ref sae_rng seeded with options->seed.
 * @param[out] out The trainer; free with sae_trainer_free().
 * @param[in] options Settings; arch, d_in, d_sae (and k for TopK) are required.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_EUNSUPPORTED (sparsify preset for a standard SAE) or
 *         ::SAE_ENOMEM.
 */
SAE_API sae_status sae_trainer_create(sae_trainer **out, const sae_trainer_options *options);

/**
 * @brief Make a trainer that continues from a dictionary's weights (copied).
 *
 * arch, d_in, d_sae and k default to the dictionary's and must agree with it when given.
 * The training conventions (ReLU order, rescaling) come from the options, not from the
 * dictionary's flags. b_dec is kept unless options->b_dec_init asks for an initialisation.
 * @param[out] out The trainer; free with sae_trainer_free().
 * @param[in] init A standard or TopK dictionary without input normalisation that subtracts
 *            b_dec from its input. The trainer does not keep it.
 * @param[in] options Settings, or NULL for the SAELens preset.
 * @return As sae_trainer_create(), plus ::SAE_ESHAPE when the options disagree with the
 *         dictionary and ::SAE_EUNSUPPORTED for other architectures or conventions.
 */
SAE_API sae_status sae_trainer_create_from(sae_trainer **out, const sae_dict *init,
                                           const sae_trainer_options *options);

/** @brief Free a trainer. Accepts NULL. @param[in] trainer The trainer. */
SAE_API void sae_trainer_free(sae_trainer *trainer);

/**
 * @brief One optimiser step on a batch.
 *
 * The batch is checked before anything changes: a NaN or Inf is ::SAE_ENUMERIC (or a skipped
 * batch with ::SAE_TRAIN_SKIP_NONFINITE), and so is a non-finite loss or gradient, in which
 * case the weights, optimiser state and counters are left as they were. The workspace grows
 * to the largest batch seen (TopK and standard: about n * d_sae floats for the encoder product;
 * standard: plus n * 512 floats per thread).
 * @param[in,out] trainer The trainer.
 * @param[in] n Rows in the batch (>= 1).
 * @param[in] x (n, d_in), ldx >= d_in.
 * @param[in] ldx Leading dimension of x.
 * @param[out] metrics What the step measured, or NULL. Set metrics->struct_size first
 *             (::SAE_TRAIN_METRICS_INIT does); filled up to min(struct_size, sizeof).
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENUMERIC or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_trainer_step(sae_trainer *trainer, int64_t n, const float *x, int64_t ldx,
                                    sae_train_metrics *metrics);

/**
 * @brief The current weights as a dictionary usable by the encoder (copied).
 *
 * Standard: a standard dictionary. TopK: k and the training conventions as dictionary flags
 * (::SAE_DICT_RELU_BEFORE_TOPK, ::SAE_DICT_RESCALE_BY_DECODER_NORM), and the inference
 * threshold as a constant vector once its EMA has started.
 * @param[in] trainer The trainer.
 * @param[out] out The dictionary; free with sae_dict_free(). Allocated with the trainer's
 *             allocator.
 * @return ::SAE_OK, ::SAE_EINVAL or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_trainer_export(const sae_trainer *trainer, sae_dict **out);

/**
 * @brief The settings after the preset filled the zero fields.
 *
 * Explicit zeros stay negative (::SAE_TRAIN_OFF), so the struct can be passed back to
 * sae_trainer_create().
 * @param[in] trainer The trainer.
 * @param[out] out Filled up to min(out->struct_size, sizeof(sae_trainer_options)); set
 *             out->struct_size first (::SAE_TRAINER_OPTIONS_INIT does).
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_trainer_get_options(const sae_trainer *trainer, sae_trainer_options *out);

/** @return Steps taken so far. @param[in] trainer The trainer. */
SAE_API int64_t sae_trainer_steps(const sae_trainer *trainer);

/**
 * @brief Per-feature counters of the dead rule: steps (::SAE_DEAD_STEPS) or tokens since the
 *        feature last fired.
 * @param[in] trainer The trainer.
 * @return Borrowed (d_sae) array, valid until the next call that changes the trainer.
 */
SAE_API const int64_t *sae_trainer_since_fired(const sae_trainer *trainer);

/**
 * @brief Replace the dead-feature counters (resuming a run, or marking features dead).
 * @param[in,out] trainer The trainer.
 * @param[in] counts (d_sae) non-negative counters, copied.
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_trainer_set_since_fired(sae_trainer *trainer, const int64_t *counts);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_TRAINER_H */
