/**
 * @file trainer.h
 * @brief `sae_trainer`: train standard, TopK, BatchTopK, JumpReLU and Gated SAEs with Adam.
 *
 * @defgroup trainer Training
 * @brief Optimiser state, loss recipe, schedules and dead-feature tracking (MATH.md, "Training
 *        losses").
 *
 * One call to sae_trainer_step() is one optimiser step on one batch:
 *   1. at the first step, b_dec from the batch (zero / mean / geometric median);
 *   2. forward: x' = x - b_dec (or x, see @ref sae_trainer_options.b_dec_input),
 *      pre = x' W_enc + b_enc, codes f, x_hat = f W_dec + b_dec;
 *   3. loss = reconstruction + l1_coefficient * warm-up * sparsity + the architecture's
 *      auxiliary term:
 *      - standard: f = ReLU(pre), sparsity = L1 (::sae_l1_variant);
 *      - TopK: the k largest codes of each row, + auxk_coefficient * AuxK (dead features);
 *      - BatchTopK: the k * n largest codes of the whole batch of n rows, + AuxK; an inference
 *        threshold follows the smallest kept code (::sae_batchtopk_threshold) and the trained
 *        SAE is exported as a JumpReLU one;
 *      - JumpReLU: f = pre * H(pre - theta) with a trained threshold theta per feature, sparsity
 *        = an L0 (::sae_jumprelu_sparsity) differentiated through theta with a rectangle kernel
 *        of width jumprelu_bandwidth (straight-through estimator);
 *      - Gated: f = H(pi_gate) ReLU(pi_mag), pi_gate = x' W_enc + b_gate, pi_mag =
 *        x' (W_enc exp(r_mag)) + b_mag, sparsity = L1 of ReLU(pi_gate), + auxk_coefficient *
 *        mean_b ||ReLU(pi_gate) W_dec + b_dec - x||^2 (::sae_gated_aux);
 *      and for every architecture, with ortho_lambda > 0, + ortho_lambda * P: sae-icm's
 *      orthogonality penalty P = sum_{i>j in S} (d_i . d_j)^2 over a random subset S of
 *      ortho_subset decoder rows, drawn afresh every step (sae_ortho_penalty());
 *   4. gradients (TopK, BatchTopK, JumpReLU: sparse, proportional to the kept codes besides the
 *      encoder product; standard: sparse in the same way when the batch's mean L0 is at most
 *      d_sae / 16, else dense products), then ortho_lambda * dP/dW_dec added to the decoder's;
 *   5. decoder constraint: remove from each decoder row's gradient its component along the row
 *      (the penalty's share included, as for every term of the loss);
 *   6. gradient clipping by global norm (penalty included, as sae-icm clips its total loss's
 *      gradient); 7. Adam (torch semantics) over every parameter (JumpReLU's threshold, Gated's
 *      r_mag and b_mag included), AdamW with weight_decay > 0; 8. renormalise decoder rows;
 *   9. dead-feature counters, the inference threshold, the learning-rate and sparsity schedules
 *      advance;
 *   10. every resample_steps steps, dead features are resampled (sae_trainer_resample()).
 * With activation scaling the step trains on s x instead of x (sae_trainer_estimate_scale()).
 * sae_trainer_save() and sae_trainer_load() checkpoint the whole state: a resumed run continues
 * bit for bit as the uninterrupted one would (same thread count).
 * sae_trainer_fit() runs that loop over batches from a @ref source, with a progress callback.
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
#include "source.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Optimiser, schedules and loss recipe of one SAE being trained. Opaque. */
typedef struct sae_trainer sae_trainer;

/** @brief Which library's defaults fill the fields left at zero. */
typedef enum sae_preset {
    SAE_PRESET_SAELENS = 0,             /**< SAELens v6 (default). */
    /** dictionary_learning StandardTrainer, TopKTrainer, BatchTopKTrainer, JumpReluTrainer,
     *  GatedSAETrainer. */
    SAE_PRESET_DICTIONARY_LEARNING = 1,
    SAE_PRESET_SPARSIFY = 2,            /**< EleutherAI sparsify with its Adam optimiser (TopK only). */
    /** sae-icm's fine-tuning recipe (mrtzmllr/sae-icm finetune_sae.py): relative-L2
     *  reconstruction, orthogonality penalty, AdamW, warm-up + cosine (see
     *  @ref sae_trainer_options). */
    SAE_PRESET_SAE_ICM = 3
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
    SAE_MSE_NORMALIZED = 3, /**< mean_b (sum_d r^2 / sum_d x^2) (OpenAI normalised MSE). */
    /** mean_b ||r_b|| / (||x_b|| + 1e-8), the norm not squared (sae-icm; as
     *  sae_ortho_relative_l2()). */
    SAE_MSE_RELATIVE_L2 = 4
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
    SAE_DEAD_TOKENS_AFTER = 3,
    /** Steps since the feature last had a positive code, counted after this batch, > window
     *  (dictionary_learning StandardTrainer's resampling rule, window resample_steps / 2;
     *  standard SAEs only). */
    SAE_DEAD_STEPS_AFTER = 4
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
    SAE_INIT_SPARSIFY = 3,
    /** W_enc entries uniform in +-1/sqrt(d_in) (nn.Linear's default); decoder rows drawn
     *  independently, normal entries scaled to norm decoder_init_norm (dictionary_learning
     *  GatedAutoEncoder). */
    SAE_INIT_UNTIED = 4
} sae_weight_init;

/** @brief Order of ReLU and top-k selection while training (TopK, BatchTopK). */
typedef enum sae_topk_relu {
    SAE_TOPK_RELU_PRESET = 0, /**< The preset decides. */
    SAE_TOPK_RELU_FIRST = 1,  /**< ReLU, then top-k (dictionary_learning, sparsify). */
    SAE_TOPK_RELU_AFTER = 2   /**< Top-k, then ReLU on the kept values (SAELens, OpenAI). */
} sae_topk_relu;

/**
 * @brief JumpReLU sparsity term S (scaled by @ref sae_trainer_options.l1_coefficient).
 *
 * H is the step function, theta_j the feature's threshold, pre the pre-activations, f the
 * codes. Every H is differentiated through theta only, with the rectangle kernel of width
 * eps = jumprelu_bandwidth: dH(v - theta)/dtheta = -(1/eps) [|v - theta| < eps/2]; the codes
 * f = pre H(pre - theta) likewise give dtheta -(theta/eps) [|pre - theta| < eps/2] dL/df.
 * (SAELens' optional pre-activation loss on dead features, pre_act_loss_coefficient, off by
 * default, is not implemented.)
 */
typedef enum sae_jumprelu_sparsity {
    SAE_JUMPRELU_PRESET = 0,     /**< The preset decides. */
    /** S = mean_b sum_j H(pre_bj - theta_j) (SAELens "step", DeepMind). */
    SAE_JUMPRELU_STEP = 1,
    /** S = mean_b sum_j tanh(c f_bj ||d_j||), c = jumprelu_tanh_scale (SAELens "tanh",
     *  Anthropic). */
    SAE_JUMPRELU_TANH = 2,
    /** S = (L0 / target_l0 - 1)^2 with L0 = mean_b sum_j H(f_bj - theta_j): the step of the
     *  codes, not of the pre-activations (dictionary_learning JumpReluTrainer). */
    SAE_JUMPRELU_TARGET_L0 = 3
} sae_jumprelu_sparsity;

/** @brief Gated: which decoder the auxiliary reconstruction ReLU(pi_gate) W_dec + b_dec uses. */
typedef enum sae_gated_aux {
    SAE_GATED_AUX_PRESET = 0,   /**< The preset decides. */
    SAE_GATED_AUX_ATTACHED = 1, /**< W_dec and b_dec receive its gradient (SAELens). */
    SAE_GATED_AUX_DETACHED = 2  /**< W_dec and b_dec are constants in it (dictionary_learning). */
} sae_gated_aux;

/**
 * @brief BatchTopK: how the inference threshold theta follows m, the smallest positive kept
 *        code of each batch (with rescaling: of the rescaled codes).
 *
 * The exported JumpReLU dictionary has theta in every feature (-1 before the first update:
 * then it is plain ReLU, as dictionary_learning's BatchTopKSAE with an unset threshold).
 */
typedef enum sae_batchtopk_threshold {
    SAE_BATCHTOPK_THRESHOLD_PRESET = 0, /**< The preset decides. */
    /** theta starts at 0 and every step theta = beta theta + (1 - beta) m; a batch without a
     *  positive code leaves it (SAELens, beta = 1 - topk_threshold_lr). threshold_start_step
     *  is not used. */
    SAE_BATCHTOPK_THRESHOLD_SAELENS = 1,
    /** At the steps after threshold_start_step: the first sets theta = m, the next
     *  theta = beta theta + (1 - beta) m, with m = 0 for a batch without a positive code
     *  (dictionary_learning). */
    SAE_BATCHTOPK_THRESHOLD_DICTIONARY_LEARNING = 2
} sae_batchtopk_threshold;

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
 * ::SAE_TRAIN_OFF take a negative value for an explicit zero. Fields that do not concern the
 * architecture are resolved but not used. Preset values (std = standard, bt = BatchTopK,
 * jr = JumpReLU; "DL" = dictionary_learning, whose trainer per architecture sets its own
 * defaults; sparsify trains TopK only):
 *
 * | field | SAELens | dictionary_learning | sparsify |
 * |---|---|---|---|
 * | lr | 3e-4 | std 1e-3; TopK, bt 2e-4/sqrt(d_sae/2^14); jr 7e-5; Gated 5e-5 | 2e-4/sqrt(d_sae/2^14) |
 * | beta1, beta2, adam_eps | 0.9, 0.999, 1e-8 | 0.9 (jr, Gated: off), 0.999, 1e-8 | 0.9, 0.999, 1e-8 |
 * | clip_norm | 1.0 | std, Gated off; TopK, bt, jr 1.0 | off |
 * | lr_warmup, warmup_steps | SAELENS, 0 | FROM_ZERO, 1000 | FROM_ZERO, 1000 |
 * | decay_steps | 0 | 0 | total_steps - warmup_steps (0 if total_steps is 0) |
 * | lr_end (cosine) | lr / 10 | lr / 10 | lr / 10 |
 * | mse | SUM | SUM | FVU |
 * | l1 (std, Gated) | DECODER_NORM | PLAIN | - |
 * | l1_coefficient | 1.0 | std, Gated 0.1; jr 1.0 | - |
 * | l1_warmup_steps | 0 | 2000 | - |
 * | topk_relu | TopK AFTER; bt FIRST | FIRST | FIRST |
 * | rescale (TopK, bt) | on | off | off |
 * | auxk | SAELENS | DICTIONARY_LEARNING | SPARSIFY |
 * | auxk_coefficient | 1.0 | TopK, bt 1/32; Gated 1.0 | off |
 * | k_aux | d_in/2 | d_in/2 | d_in/2 |
 * | dead_rule, dead_window | STEPS, 1000 | TOKENS_AFTER, 10^7 | TOKENS_BEFORE, 10^7 |
 * | decoder_constraint | FREE | std, Gated UNIT_EXACT; TopK, bt, jr UNIT_EPS | UNIT_RAW |
 * | b_dec_init | ZERO | TopK, bt GEOMETRIC_MEDIAN; others ZERO | MEAN |
 * | init, decoder_init_norm | UNIFORM_TIED, 0.1 | std NORMAL_TIED, 0.1; TopK, bt UNIFORM_TIED, 1; jr NORMAL_TIED, 1; Gated UNTIED, 1 | SPARSIFY, 1 |
 * | threshold_start_step | never | TopK, bt 1000 | never |
 * | threshold_beta | TopK 0.999; bt 0.99 | 0.999 | 0.999 |
 * | b_dec_input | on | jr off; others on | on |
 * | jumprelu_sparsity, jumprelu_log_threshold | STEP, on | TARGET_L0, off | - |
 * | jumprelu_bandwidth, jumprelu_init_threshold | 0.05, 0.01 | 0.001, 0 | - |
 * | jumprelu_tanh_scale, target_l0 | 4, 20 | 4, 20 | - |
 * | gated_aux | ATTACHED | DETACHED | - |
 * | batchtopk_threshold | SAELENS | DICTIONARY_LEARNING | - |
 * | resample_steps | off | off (upstream's default is None) | off |
 * | dead_rule, dead_window (resampling on) | as above | STEPS_AFTER, resample_steps / 2 | - |
 * | activation_scaling | off | off | off |
 * | ortho_lambda, ortho_subset, weight_decay | off, 1024, off | off, 1024, off | off, 1024, off |
 *
 * The sae-icm preset (::SAE_PRESET_SAE_ICM; mrtzmllr/sae-icm finetune_sae.py, config.yaml and
 * insert_sae.py, REFERENCE.md 2.1) is its recipe for fine-tuning an SAE with the penalty, to
 * be used with sae_trainer_create_from(). It sets what sae-icm fixes: mse RELATIVE_L2,
 * ortho_lambda 1e-4, ortho_subset 1024; torch.optim.AdamW with lr 5e-5, betas (0.9, 0.95),
 * adam_eps 1e-8 and weight_decay 0.01 on every parameter (sae-icm hands all its trainable SAE
 * parameters, biases included, to AdamW as one group); clip_norm 1.0 (the transformers Trainer's
 * max_grad_norm); lr_warmup FROM_ZERO over warmup_steps 200, then lr_schedule COSINE down to
 * lr_end 0 at total_steps (transformers' get_cosine_schedule_with_warmup: total_steps is
 * required), no decay_steps; decoder_constraint FREE (sae-icm never normalises its decoder);
 * TopK: topk_relu FIRST, no rescaling, no AuxK (auxk_coefficient off) and no inference
 * threshold (threshold_start_step never); b_dec_init KEEP from a dictionary (ZERO for a fresh
 * SAE). Every other field (initialisation, dead rule, the sparsity terms of the architectures
 * sae-icm does not fine-tune) takes the SAELens value.
 */
typedef struct sae_trainer_options {
    uint32_t struct_size;   /**< sizeof(sae_trainer_options), set by ::SAE_TRAINER_OPTIONS_INIT. */
    /** An ::sae_arch value: ::SAE_ARCH_STANDARD, ::SAE_ARCH_TOPK, ::SAE_ARCH_BATCHTOPK,
     *  ::SAE_ARCH_JUMPRELU or ::SAE_ARCH_GATED. create_from: 0 takes the dictionary's. */
    int32_t arch;
    int64_t d_in;           /**< Input width (create_from: 0 or the dictionary's). */
    int64_t d_sae;          /**< Number of features (create_from: 0 or the dictionary's). */
    /** TopK: features kept per row; BatchTopK: per row on average (k * n per batch of n rows)
     *  (create_from: 0 takes the dictionary's). */
    int64_t k;
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
    int32_t l1;             /**< A ::sae_l1_variant value (standard; Gated: the L1 of ReLU(pi_gate)). */
    int32_t topk_relu;      /**< A ::sae_topk_relu value (TopK, BatchTopK). */
    /** Sparsity coefficient: standard and Gated L1, JumpReLU's ::sae_jumprelu_sparsity term;
     *  ::SAE_TRAIN_OFF for 0. */
    double l1_coefficient;
    /** Linear warm-up of the sparsity coefficient from 0 (scale min(s/W, 1)); ::SAE_TRAIN_OFF
     *  for none. */
    int64_t l1_warmup_steps;
    /** A ::sae_switch: TopK and BatchTopK select on pre * ||d_j|| and decode f / ||d_j||. */
    int32_t rescale;
    int32_t auxk;           /**< A ::sae_auxk_variant value (TopK, BatchTopK). */
    /** AuxK coefficient (TopK, BatchTopK), Gated: the auxiliary reconstruction's;
     *  ::SAE_TRAIN_OFF for none. */
    double auxk_coefficient;
    int64_t k_aux;          /**< AuxK: dead features kept per row, and the n_dead scale's denominator. */
    int32_t dead_rule;      /**< A ::sae_dead_rule value. */
    int32_t decoder_constraint; /**< A ::sae_decoder_constraint value. */
    int64_t dead_window;    /**< Dead after this many steps or tokens (see ::sae_dead_rule); ::SAE_TRAIN_OFF for 0. */
    /** Inference threshold EMA factor, in (0, 1]: TopK, and BatchTopK (::sae_batchtopk_threshold). */
    double threshold_beta;
    /** TopK: after this step the inference threshold follows an EMA of each row's smallest
     *  positive kept code (dictionary_learning); BatchTopK: see ::sae_batchtopk_threshold;
     *  INT64_MAX: never; ::SAE_TRAIN_OFF for 0. */
    int64_t threshold_start_step;
    const sae_allocator *allocator; /**< NULL for the default. */
    /** Standard SAEs: resample dead features (sae_trainer_resample()) after every step s with
     *  s % resample_steps == 0, and restart the learning-rate warm-up after each of them
     *  (dictionary_learning StandardTrainer); ::SAE_TRAIN_OFF: never. */
    int64_t resample_steps;
    /** A ::sae_switch: train on s x with s = sqrt(d_in) / mean ||x|| (SAELens
     *  "expected_average_only_in"); see sae_trainer_estimate_scale(). */
    int32_t activation_scaling;
    /** A ::sae_switch: the encoder reads x' = x - b_dec (on) or x (off: dictionary_learning
     *  JumpReLU, exported with ::SAE_DICT_NO_B_DEC_INPUT). create_from: the preset is the
     *  dictionary's convention. */
    int32_t b_dec_input;
    int32_t jumprelu_sparsity; /**< A ::sae_jumprelu_sparsity value (JumpReLU). */
    /** A ::sae_switch: JumpReLU trains log(theta) (SAELens) rather than theta itself
     *  (dictionary_learning). Adam, clipping and the gradient norm then see log(theta). */
    int32_t jumprelu_log_threshold;
    int32_t gated_aux;      /**< A ::sae_gated_aux value (Gated). */
    int32_t batchtopk_threshold; /**< A ::sae_batchtopk_threshold value (BatchTopK). */
    double jumprelu_bandwidth; /**< JumpReLU: width eps of the rectangle kernel (> 0). */
    /** JumpReLU: initial threshold of every feature (sae_trainer_create(); > 0 with log
     *  thresholds); ::SAE_TRAIN_OFF for 0. */
    double jumprelu_init_threshold;
    double jumprelu_tanh_scale; /**< JumpReLU: c of ::SAE_JUMPRELU_TANH (> 0). */
    double target_l0;       /**< JumpReLU: target_l0 of ::SAE_JUMPRELU_TARGET_L0 (> 0). */
    /** Weight lambda of sae-icm's orthogonality penalty on the decoder rows as trained (with
     *  activation scaling: in scaled units) (sae_ortho_penalty()), any architecture, >= 0;
     *  ::SAE_TRAIN_OFF for none. */
    double ortho_lambda;
    /** Rows in the penalty's random subset S, drawn afresh every step: step s draws
     *  sae_ortho_subset(seed, 2^32 + s), a function of the seed and the step only, so a resumed
     *  run draws the same subsets. Negative, or >= d_sae: every feature (no draw). */
    int64_t ortho_subset;
    /** AdamW's decoupled weight decay (torch.optim.AdamW): p *= 1 - lr * weight_decay before
     *  each Adam update, on every parameter; >= 0; ::SAE_TRAIN_OFF for none (plain Adam). */
    double weight_decay;
} sae_trainer_options;

/** @brief Initialiser for ::sae_trainer_options: every field at its preset default. */
#define SAE_TRAINER_OPTIONS_INIT                                                                 \
    {sizeof(sae_trainer_options), 0, 0, 0, 0, 0, 0, 0u, 0u, 0, 0.0, 0, 0, 0.0, 0.0, 0.0, 0.0,   \
     0.0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0.0, 0, NULL, 0, 0, 0, 0, 0,  \
     0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0}

/**
 * @brief What one step measured. Initialise with ::SAE_TRAIN_METRICS_INIT.
 *
 * loss = mse + l1_coefficient * l1 + auxk_coefficient * aux + ortho_lambda * ortho.
 */
typedef struct sae_train_metrics {
    uint32_t struct_size;   /**< sizeof(sae_train_metrics). */
    uint32_t skipped;       /**< 1 when the batch was skipped (::SAE_TRAIN_SKIP_NONFINITE). */
    int64_t step;           /**< Index of the step (0 for the first). */
    double loss;            /**< Total loss. */
    double mse;             /**< Reconstruction term (::sae_mse_variant). */
    /** Sparsity term before its coefficient: standard L1, JumpReLU's ::sae_jumprelu_sparsity
     *  term, Gated L1 of ReLU(pi_gate); 0 for TopK and BatchTopK. */
    double l1;
    double l1_coefficient;  /**< Coefficient applied to l1 at this step (after warm-up). */
    /** Before auxk_coefficient: AuxK (TopK, BatchTopK; 0 without dead features), Gated's
     *  auxiliary reconstruction mean_b ||ReLU(pi_gate) W_dec + b_dec - x||^2. */
    double aux;
    double fvu;             /**< sum ||x - x_hat||^2 / sum_b ||x_b - mean x||^2. */
    double l0;              /**< Mean number of positive codes per row. */
    int64_t n_dead;         /**< Dead features by the dead rule at this step (the AuxK mask). */
    double lr;              /**< Learning rate used. */
    double grad_norm;       /**< Global gradient norm after the decoder projection, before clipping. */
    /** Orthogonality penalty P of this step's subset before ortho_lambda (at the weights the
     *  step started from); 0 when the penalty is off. */
    double ortho;
} sae_train_metrics;

/** @brief Initialiser for ::sae_train_metrics. */
#define SAE_TRAIN_METRICS_INIT                                                                   \
    {sizeof(sae_train_metrics), 0u, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0}

/**
 * @brief Make a trainer with freshly initialised weights.
 *
 * Fills the fields left at zero from the preset, validates every field (unknown enum values,
 * sizes, k in 1..d_sae, betas in [0, 1), cosine or decay without total_steps, ...) and draws
 * the weights from @ref sae_rng seeded with options->seed.
 * @param[out] out The trainer; free with sae_trainer_free().
 * JumpReLU thresholds start at jumprelu_init_threshold, Gated's r_mag and b_mag at 0.
 * @param[in] options Settings; arch, d_in, d_sae (and k for TopK and BatchTopK) are required.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_EUNSUPPORTED (sparsify preset for another
 *         architecture than TopK) or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_trainer_create(sae_trainer **out, const sae_trainer_options *options);

/**
 * @brief Make a trainer that continues from a dictionary's weights (copied).
 *
 * arch, d_in, d_sae and k default to the dictionary's and must agree with it when given.
 * The training conventions (ReLU order, rescaling) come from the options, not from the
 * dictionary's flags; b_dec_input defaults to the dictionary's (::SAE_DICT_NO_B_DEC_INPUT).
 * b_dec is kept unless options->b_dec_init asks for an initialisation. JumpReLU: the
 * threshold vector is trained (as its logarithm with jumprelu_log_threshold, which then needs
 * positive thresholds). Gated: b_gate, r_mag and b_mag (zeros when absent).
 * @param[out] out The trainer; free with sae_trainer_free().
 * @param[in] init A standard, TopK, JumpReLU or Gated dictionary without input normalisation.
 *            The trainer does not keep it.
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
 * With activation scaling on, the step trains on s x: s is estimated from this batch at the
 * first step unless sae_trainer_estimate_scale() set it, and the metrics are in scaled units.
 * The batch is checked before anything changes: a NaN or Inf is ::SAE_ENUMERIC (or a skipped
 * batch with ::SAE_TRAIN_SKIP_NONFINITE), and so is a non-finite loss or gradient, in which
 * case the weights, optimiser state and counters are left as they were. The workspace grows
 * to the largest batch seen: n * d_sae floats for the encoder product (standard: plus n * 512
 * floats per thread), twice that for BatchTopK and JumpReLU, three times for Gated; JumpReLU adds
 * 16 bytes per code in the window or above the threshold.
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
 * threshold as a constant vector once its EMA has started. BatchTopK: a JumpReLU dictionary
 * whose threshold vector is the learned threshold (::sae_batchtopk_threshold), with
 * ::SAE_DICT_RESCALE_BY_DECODER_NORM when rescaling. JumpReLU: its thresholds theta (exp of the
 * trained logarithms). Gated: b_gate, r_mag and b_mag, no b_enc. ::SAE_DICT_NO_B_DEC_INPUT when
 * b_dec_input is off. Encoding with the dictionary gives the training forward's codes (JumpReLU
 * trained without log thresholds: where theta >= 0, since the dictionary's codes are never
 * negative; BatchTopK: thresholding replaces the batch selection).
 *
 * With an activation scale s the dictionary works on unscaled activations: s is folded into
 * the weights (W_enc * s, W_dec / s, b_dec / s; b_enc and thresholds unchanged, SAELens
 * fold_activation_norm_scaling_factor), so its codes of x are the training codes of s x and its
 * reconstructions x_hat / s. With rescaling by decoder norms those norms are folded too
 * (W_enc * n_j, b_enc * n_j, W_dec / n_j, the flag dropped) so that the codes stay the same.
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

/**
 * @brief Resample the dead features now (dictionary_learning StandardTrainer.resample_neurons).
 *
 * Dead: by the trainer's dead rule on the counters as they stand (sae_trainer_since_fired();
 * ::SAE_DEAD_TOKENS_AFTER: count >= dead_window, the other rules: count > dead_window).
 * With r_b = ||x_b - x_hat_b|| for the current weights, m = min(n_dead, rows with r_b > 0 and
 * x_b != 0) rows are drawn without replacement with probability proportional to r_b (as
 * torch.multinomial(r, m) does upstream; by Efraimidis-Spirakis keys from the trainer's seeded
 * generator, so the draw is reproducible and checkpointed). The first m dead features
 * (ascending) j take the drawn rows x_b in draw order:
 *   encoder column j = x_b * a * 0.2, a = mean ||encoder column|| over the features that are
 *   not dead (over all features if every one is dead); decoder row j = x_b / ||x_b||;
 *   b_enc_j = 0; Adam moments of those three zeroed (b_dec's and the step count unchanged).
 * The dead counters are not reset, as upstream. With activation scaling, x is scaled first.
 * @param[in,out] trainer A standard-SAE trainer.
 * @param[in] n Rows in the batch (>= 1).
 * @param[in] x (n, d_in), ldx >= d_in, finite.
 * @param[in] ldx Leading dimension of x.
 * @param[out] n_resampled Number of features resampled (m), or NULL.
 * @return ::SAE_OK, ::SAE_EINVAL (activation scale not known yet), ::SAE_ESHAPE,
 *         ::SAE_ENUMERIC, ::SAE_EUNSUPPORTED (not a standard SAE) or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_trainer_resample(sae_trainer *trainer, int64_t n, const float *x,
                                        int64_t ldx, int64_t *n_resampled);

/**
 * @brief Estimate the activation scale from a batch, before training starts.
 *
 * s = sqrt(d_in) / mean ||x_b||, the mean over every row given to this function so far
 * (SAELens estimates it over n_batches_for_norm_estimate = 1000 batches: call this once per
 * batch; with equal batch sizes the mean over rows equals SAELens' mean of batch means).
 * Without any call, the first sae_trainer_step() estimates s from its own batch.
 * @param[in,out] trainer A trainer with activation_scaling on that has taken no step yet.
 * @param[in] n Rows (>= 1).
 * @param[in] x (n, d_in), ldx >= d_in, finite.
 * @param[in] ldx Leading dimension of x.
 * @return ::SAE_OK, ::SAE_EINVAL (scaling off, training started), ::SAE_ESHAPE or
 *         ::SAE_ENUMERIC (non-finite rows, or a zero mean norm).
 */
SAE_API sae_status sae_trainer_estimate_scale(sae_trainer *trainer, int64_t n, const float *x,
                                              int64_t ldx);

/**
 * @brief The activation scale s the trainer multiplies its batches by.
 * @param[in] trainer The trainer.
 * @return s; 1 when scaling is off or s is not known yet.
 */
SAE_API float sae_trainer_activation_scale(const sae_trainer *trainer);

/**
 * @brief Write a checkpoint of the whole training state (crash-safe: temporary file, fsync,
 *        rename, fsync of the directory).
 *
 * One safetensors file: the parameter block and both Adam moments (whole, generic over the
 * architecture), the dead-feature counters, the step count, the inference threshold, the
 * pending b_dec initialisation, the activation scale and its estimate, the resampling
 * generator, and in `__metadata__` the format name and version and the resolved options as
 * JSON. The workspace is not saved.
 * @param[in] trainer The trainer.
 * @param[in] path Destination; an existing file is replaced only by a complete new one.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_EIO or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_trainer_save(const sae_trainer *trainer, const char *path);

/**
 * @brief Make a trainer from a checkpoint of sae_trainer_save().
 *
 * Everything is validated before use: the format and its version, the options (through the
 * same checks as sae_trainer_create()), every tensor's dtype and shape, and every value
 * (finite weights and moments, non-negative second moments and counters, ...). Continuing a
 * loaded trainer gives bit-identical results to the uninterrupted run with the same number of
 * threads (the saved n_threads).
 * @param[out] out The trainer; free with sae_trainer_free().
 * @param[in] path The checkpoint.
 * @param[in] allocator Allocator of the new trainer, or NULL for the default.
 * @return ::SAE_OK, ::SAE_ENOTFOUND, ::SAE_EIO, ::SAE_EFORMAT (not a checkpoint, or malformed),
 *         ::SAE_EUNSUPPORTED (a newer format version), ::SAE_ESHAPE, ::SAE_ENUMERIC,
 *         ::SAE_EINVAL (invalid options) or ::SAE_ENOMEM.
 */
SAE_API sae_status sae_trainer_load(sae_trainer **out, const char *path,
                                    const sae_allocator *allocator);

/* ---- training loop ----------------------------------------------------------------------- */

/** @brief Settings of sae_trainer_fit(). Initialise with ::SAE_FIT_OPTIONS_INIT. */
typedef struct sae_fit_options {
    uint32_t struct_size;  /**< sizeof(sae_fit_options), set by ::SAE_FIT_OPTIONS_INIT. */
    uint32_t reserved;     /**< Zero. */
    /** Steps to take; 0: up to the trainer's @ref sae_trainer_options.total_steps, counting
     *  the steps it has already taken (so a resumed trainer finishes its run). */
    int64_t steps;
    int64_t batch_size;    /**< Rows per step; 0 = 4096. */
    int64_t report_every;  /**< Call the progress callback after every this many steps; 0 = 1. */
} sae_fit_options;

/** @brief Initialiser for ::sae_fit_options. */
#define SAE_FIT_OPTIONS_INIT {sizeof(sae_fit_options), 0u, 0, 0, 0}

/** @brief Where a call to sae_trainer_fit() stands. Initialise with ::SAE_FIT_PROGRESS_INIT. */
typedef struct sae_fit_progress {
    uint32_t struct_size;     /**< sizeof(sae_fit_progress). */
    uint32_t source_ended;    /**< 1 once the source has run dry (a finite source's end). */
    /** Steps taken by this call so far. A batch skipped under ::SAE_TRAIN_SKIP_NONFINITE
     *  counts here (and in tokens), although sae_trainer_steps() does not advance for it. */
    int64_t steps_done;
    int64_t steps_total;      /**< Steps this call was asked to take. */
    int64_t tokens;           /**< Rows (tokens) trained on by this call: steps_done * batch. */
    double elapsed_seconds;   /**< Wall-clock time since the call began (monotonic clock). */
    double tokens_per_second; /**< tokens / elapsed_seconds (0 before any time has passed). */
} sae_fit_progress;

/** @brief Initialiser for ::sae_fit_progress. */
#define SAE_FIT_PROGRESS_INIT {sizeof(sae_fit_progress), 0u, 0, 0, 0, 0.0, 0.0}

/**
 * @brief Progress callback of sae_trainer_fit(), called after a step.
 * @param[in] user The pointer given to sae_trainer_fit().
 * @param[in] progress Where the fit stands (borrowed for the call).
 * @param[in] metrics What the step just taken measured (borrowed for the call).
 * @return 0 to go on; any other value stops the fit, which then returns ::SAE_ECANCELED.
 */
typedef int (*sae_fit_fn)(void *user, const sae_fit_progress *progress,
                          const sae_train_metrics *metrics);

/**
 * @brief Train for a number of steps on batches drawn from a source.
 *
 * Each step reads batch_size rows with sae_source_next() and passes them to
 * sae_trainer_step(), so a fit is bit-for-bit the loop a caller would write by hand. After
 * every report_every-th step, and after the last step of the call whatever report_every is,
 * @p fn receives the progress and the step's metrics. The steps taken stay taken whatever
 * ends the call.
 *
 * A finite source that runs dry ends the fit early with ::SAE_OK and
 * @ref sae_fit_progress.source_ended = 1 (steps_done tells how far it got): every step sees a
 * full batch, so the last rows of the source, fewer than batch_size, are not trained on. Use
 * a looping source (@ref sae_source_options.loop) to train for more than one epoch.
 * @param[in,out] trainer The trainer.
 * @param[in,out] source Rows of width d_in; read from where it stands.
 * @param[in] options Settings (steps is required unless the trainer has total_steps), or NULL
 *            to run up to total_steps with the defaults.
 * @param[out] summary The final progress, or NULL. Set summary->struct_size first
 *             (::SAE_FIT_PROGRESS_INIT does); filled on every return once the arguments are
 *             valid, up to min(struct_size, sizeof).
 * @param[in] fn Progress callback, or NULL.
 * @param[in] user Passed to @p fn unchanged.
 * @return ::SAE_OK (all steps taken, or the source ran dry); ::SAE_ECANCELED (@p fn asked to
 *         stop); ::SAE_EINVAL (bad options, no step count); ::SAE_ESHAPE (the source's width
 *         is not d_in); ::SAE_ENOMEM; or the error of sae_source_next() or sae_trainer_step()
 *         (a non-finite batch is ::SAE_ENUMERIC unless ::SAE_TRAIN_SKIP_NONFINITE).
 */
SAE_API sae_status sae_trainer_fit(sae_trainer *trainer, sae_source *source,
                                   const sae_fit_options *options, sae_fit_progress *summary,
                                   sae_fit_fn fn, void *user);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_TRAINER_H */
