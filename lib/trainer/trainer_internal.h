/*
 * trainer_internal.h: the layout of sae_trainer and the pieces of a training step, shared by
 * the files of lib/trainer/ and by tests/test_trainer.c.
 *
 * Parameters, Adam moments and gradients share one layout, a contiguous block of
 *     W_encT (F, d_in) | W_dec (F, d_in) | b_enc (F) | b_dec (d_in) | extra blocks (F each)
 * W_encT is W_enc transposed (nn.Linear's encoder.weight): feature j's encoder column is the
 * contiguous row j, so the sparse backward writes whole rows of both weight gradients, and Adam,
 * clipping and the global gradient norm are one pass over one array. The extra blocks:
 *     JumpReLU  theta (F)          the trained threshold: log(theta_j) or theta_j
 *     Gated     r_mag (F) | b_mag (F)     (b_gate is the b_enc block)
 * so a checkpoint of the whole param / m / v blocks (n_params floats each) covers every
 * architecture.
 */
#ifndef SAE_TRAINER_INTERNAL_H
#define SAE_TRAINER_INTERNAL_H

#include <math.h>

#include "../internal.h"
#include "../kernels/kernels.h"
#include "sae/ortho.h"
#include "sae/trainer.h"

/* The options after preset resolution, as plain values (explicit zeros are 0). */
typedef struct sae__train_cfg {
    int32_t arch, preset;
    int64_t d_in, F, k;
    int threads;
    uint64_t seed;
    uint32_t flags;
    int32_t init, b_dec_init, lr_schedule, lr_warmup, mse, l1, auxk, dead_rule;
    int32_t decoder_constraint, jumprelu_sparsity, batchtopk_threshold;
    bool relu_first, rescale, b_dec_input, log_threshold, gated_aux_attached;
    double decoder_init_norm, lr, beta1, beta2, adam_eps, clip_norm, lr_end;
    int64_t total_steps, warmup_steps, decay_steps, l1_warmup_steps;
    double l1_coefficient, auxk_coefficient, threshold_beta;
    int64_t k_aux, dead_window, threshold_start_step;
    int64_t resample_steps; /* 0: never */
    bool activation_scaling;
    double bandwidth, init_threshold, tanh_scale, target_l0; /* JumpReLU */
    int32_t jumprelu_products; /* JumpReLU: 0 by the codes' density, 1 dense, 2 sparse (tests) */
    double ortho_lambda, weight_decay; /* 0: off */
    int64_t ortho_subset;              /* rows of the penalty's subset, in 1..F (F: all) */
} sae__train_cfg;

/* Views of one parameter-shaped block (parameters, moments or gradients). */
typedef struct sae__params {
    float *W_encT; /* (F, d_in) */
    float *W_dec;  /* (F, d_in) */
    float *b_enc;  /* (F) */
    float *b_dec;  /* (d_in) */
    float *theta;  /* JumpReLU (F): log(theta) or theta (cfg.log_threshold), else NULL */
    float *r_mag;  /* Gated (F), else NULL */
    float *b_mag;  /* Gated (F), else NULL */
} sae__params;

/* The threshold theta_j of a JumpReLU feature from its trained parameter (torch's float exp). */
static inline float sae__theta_of(const sae__train_cfg *c, float tau)
{
    return c->log_threshold ? expf(tau) : tau;
}

/* Scalars of one loss evaluation. */
typedef struct sae__loss_terms {
    double loss, mse, l1, l1_coef, aux, fvu, l0;
    double ortho; /* orthogonality penalty P (before lambda), 0 when off */
    int64_t n_dead;
    double row_min_mean; /* TopK: mean over rows of the smallest positive kept code, -1 if none */
    double min_positive; /* BatchTopK: smallest positive kept code of the batch, -1 if none */
} sae__loss_terms;

/* Workspace of a step, sized for `rows` rows. */
typedef struct sae__workspace {
    int64_t rows;             /* capacity */
    float *xp;                /* (rows, d_in)   x - b_dec */
    float *pre;               /* (rows, F)      x' W_enc (no b_enc); standard: codes f in place */
    float *gpre;              /* standard: sae__standard_scratch_floats: per-thread tiles of
                                 dL/dpre, per-row partial sums; Gated (2 rows, F): codes and
                                 ReLU(pi_gate), then their gradients; BatchTopK: (rows, F)
                                 selection keys; JumpReLU: (rows, F) dense products */
    float *G;                 /* (2 rows, d_in) dL/dx_hat (rows 0..n), dL/de_aux (rows n..2n) */
    int32_t *sel_idx;         /* TopK: (rows, k) kept features, ascending; BatchTopK, JumpReLU,
                                 standard (sparse path): the kept codes of row b at
                                 row_ptr[b]..row_ptr[b + 1] */
    float *sel_u, *sel_f, *sel_g; /* decode coefficient f/s, code f, dL/dpre of each code
                                     (JumpReLU: sel_f is the code's dtheta share) */
    int64_t *row_ptr;         /* BatchTopK, JumpReLU, standard (sparse path): (rows + 1) */
    int64_t entries;          /* capacity of sel_* in codes */
    int64_t list_entries;     /* capacity of csc_* */
    int32_t relu_force;       /* standard: 0 picks the path by density, 1 forces dense (tests) */
    int32_t relu_taken;       /* standard: the path of the last batch, 1 dense, 2 sparse */
    int32_t *aux_idx;         /* AuxK: (rows, k_aux) */
    float *aux_c, *aux_g;     /* (rows, k_aux) decode coefficient, dL/dpre */
    double *row_sums;         /* (rows, 4) per row: ||r||^2, positive codes, AuxK ||y||^2 or
                                 L1 sum (JumpReLU: tanh sum), smallest positive kept code
                                 (JumpReLU: codes above theta; Gated: aux ||y||^2) */
    float *row_factor;        /* (rows) a_b of dL/dx_hat_b = a_b r_b */
    double *row_weight;       /* (rows) standard: rho_b of the L1 term */
    float *col_tmp;           /* (F) standard: sum_b rho_b f_bj; JumpReLU: theta; Gated:
                                 exp(r_mag), then sum_b dL/dt_b */
    double *feat_sums;        /* (4 F) per-feature sums of the JumpReLU and Gated backward */
    float *dec_norm;          /* (F) ||d_j|| of this step */
    uint8_t *fired, *dead;    /* (F) */
    int32_t *dead_list;       /* (F) ids of dead features, ascending */
    int64_t *counts_next;     /* (F) dead counters after this batch (committed by a step) */
    int64_t *csc_ptr;         /* (F + 1) per-feature lists of (row, coefficients) */
    int64_t *csc_fill;        /* (F) fill cursors */
    int64_t *csc_split;       /* (F) where each list's AuxK entries begin */
    int32_t *csc_row;         /* (rows (k + k_aux)) */
    float *csc_cd, *csc_ce;   /* (rows (k + k_aux)) coefficients of G rows / of x' rows */
    double *grad_sq;          /* (2 F) squared norms of the weight gradients' rows */
    float *b_dec_backup;      /* (d_in) */
    double *gm_weights;       /* (rows + d_in) geometric median scratch */
    char *thread_scratch;     /* threads * scratch_bytes: (F) floats, (F) keys, a top-k heap */
    size_t scratch_bytes;
    int32_t *ortho_ids;       /* (ortho_subset) the penalty's subset of this step, when it is
                                 not every feature; else NULL */
} sae__workspace;

/* sae_rng stream of the resampling draws (stream 0 draws the initial weights). */
#define SAE__RESAMPLE_STREAM 1
/* Step s draws the orthogonality penalty's subset from stream SAE__ORTHO_STREAM + s: clear of
 * the streams above for 2^64 - 2^32 steps. */
#define SAE__ORTHO_STREAM (UINT64_C(1) << 32)

/* A row of a resampling draw: its Efraimidis-Spirakis key. */
typedef struct sae__draw_key {
    double key;
    int64_t row;
} sae__draw_key;

/* State of resampling and activation scaling (resample.c, scaling.c), checkpointed, and their
 * buffers. */
typedef struct sae__train_extra {
    sae_rng rng;            /* resampling draws: seed cfg.seed, stream SAE__RESAMPLE_STREAM */
    float act_scale;        /* s: 1 with scaling off, 0 while not known yet */
    double scale_norm_sum;  /* sum of ||x_b|| over the rows given to sae_trainer_estimate_scale */
    int64_t scale_rows;     /* how many */
    int64_t xs_rows, key_rows; /* capacities of: */
    float *xs;              /* (xs_rows, d_in) s x */
    sae__draw_key *keys;    /* (key_rows) */
    int64_t *picked;        /* (key_rows) drawn rows, in draw order */
} sae__train_extra;

struct sae_trainer {
    sae_trainer_options opts; /* resolved, explicit zeros still negative (get_options) */
    sae__train_cfg cfg;
    const sae_allocator *allocator;
    int64_t n_params;
    float *param, *m, *v, *grad; /* (n_params) each, layout above */
    sae__params p, gp, mp, vp;   /* views of param, grad, m, v */
    int64_t step;                /* steps taken (Adam's t before this step) */
    int64_t *since_fired;        /* (F) dead-rule counters */
    float threshold;             /* TopK, BatchTopK inference threshold, -1 until its EMA starts
                                    (SAELens' BatchTopK rule: 0) */
    bool b_dec_pending;          /* b_dec is initialised from the first batch */
    sae__workspace ws;
    sae__train_extra ex;
};

/* Make a trainer for resolved options: everything allocated, m, v and the counters zero, the
 * weights not set. (trainer.c) */
sae_status sae__trainer_make(sae_trainer **out, const sae_trainer_options *resolved,
                             const sae__train_cfg *cfg);
/* Grow the step workspace to n rows. (trainer.c) */
sae_status sae__trainer_reserve(sae_trainer *t, int64_t n);
/* Arguments of a batch: trainer, n >= 1, x, ldx >= d_in (ESHAPE), finite x (ENUMERIC naming
 * the first non-finite position; *nonfinite set). (trainer.c) */
sae_status sae__check_batch(const sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                            bool *nonfinite);

/* ---- options (options.c) ------------------------------------------------------------------ */

/* Read the caller's options (NULL: defaults), fill zero fields from the preset, validate.
 * from_dict: b_dec_init defaults to KEEP. dict_shape (create_from, else NULL): the
 * dictionary's arch, d_in, d_sae and k; the options' values must be 0 or agree. */
sae_status sae__trainer_resolve(const sae_trainer_options *in, bool from_dict,
                                const sae_trainer_options *dict_shape,
                                sae_trainer_options *resolved, sae__train_cfg *cfg);

/* ---- schedules (schedule.c) --------------------------------------------------------------- */

/* Learning rate of step s (0-based). */
double sae__lr_at(const sae__train_cfg *c, int64_t s);
/* L1 coefficient scale of step s: min(s / W, 1), 1 without warm-up. */
double sae__l1_scale_at(const sae__train_cfg *c, int64_t s);

/* ---- initialisation (init.c) -------------------------------------------------------------- */

/* W_encT, W_dec, b_enc and b_dec of a block (extra blocks NULL). */
sae__params sae__params_view(float *base, int64_t F, int64_t d_in);
/* Extra per-feature blocks after b_dec: JumpReLU 1, Gated 2, others 0. */
int64_t sae__extra_blocks(int32_t arch);
/* Views of a block laid out for c's architecture (absent blocks NULL). */
sae__params sae__params_layout(const sae__train_cfg *c, float *base);
/* Draw W_encT and W_dec from the seeded generator; b_enc, b_dec, r_mag, b_mag zero, JumpReLU
 * thresholds at init_threshold. */
void sae__init_weights(const sae__train_cfg *c, sae__params *p);
/* out (d) = mean of the n rows of x (ldx). */
void sae__batch_mean(int64_t n, int64_t d, const float *x, int64_t ldx, float *out);
/* dictionary_learning geometric_median: Weiszfeld from the mean, w_i = 1/||x_i - m|| (no eps),
 * m = sum w_i x_i / sum w_i, stop when ||m - m_prev|| < tol or after max_iter iterations.
 * w: (n + d) scratch. A point that coincides with the estimate is returned as the median
 * (upstream would divide by zero). */
void sae__geometric_median(int64_t n, int64_t d, const float *x, int64_t ldx, int max_iter,
                           double tol, double *w, float *out);

/* ---- dead features (dead.c) --------------------------------------------------------------- */

/* Counters after a batch of n rows given which features fired, and the dead mask of this step
 * by the rule (before or after the batch). Returns the number of dead features and lists them
 * (ascending) in dead_list. */
int64_t sae__dead_update(const sae__train_cfg *c, const int64_t *since, const uint8_t *fired,
                         int64_t n, int64_t *next, uint8_t *dead, int32_t *dead_list);
/* Whether a counter means dead by the rule, for counters as they stand after a batch: the
 * "after" rules compare the counter after the batch, the others the one before it. */
bool sae__is_dead(const sae__train_cfg *c, int64_t count);

/* ---- loss and gradients (loss_common.c, loss_topk.c, loss_standard.c, loss_ref.c) --------- */

/* Loss and raw gradients (into t->gp) of the batch with the current parameters; fills the
 * workspace's fired / dead / counts_next. Changes no persistent state. l1_coef: the effective
 * L1 coefficient of this step. */
sae_status sae__forward_backward(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                 double l1_coef, sae__loss_terms *out);
sae_status sae__topk_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                               sae__loss_terms *out);
sae_status sae__standard_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                   double l1_coef, sae__loss_terms *out);
sae_status sae__batchtopk_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                    sae__loss_terms *out);
sae_status sae__jumprelu_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                   double l1_coef, sae__loss_terms *out);
sae_status sae__gated_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                double l1_coef, sae__loss_terms *out);
/* With ortho_lambda > 0 (ortho_term.c): draw step t->step's subset S, add lambda * P(S) to
 * out->loss (P into out->ortho) and lambda * dP/dW_dec to the decoder's gradient. Called after
 * the architecture's loss, before the decoder projection. ENOMEM only. */
sae_status sae__ortho_term(sae_trainer *t, sae__loss_terms *out);

/* Room in sel_* for nnz codes, and with `lists` in csc_* for their entries (no AuxK entries:
 * JumpReLU, whose number of codes varies from batch to batch): grows the workspace. */
sae_status sae__ensure_entries(sae_trainer *t, int64_t nnz, bool lists);
/* AuxK (TopK, BatchTopK; loss_topk.c) of a batch whose residuals r = x_hat - x are in G rows
 * 0..n, over the n_dead dead features of w->dead_list: per row the selection, decode and dot
 * products (aux_idx, aux_c, aux_g raw, G rows n..2n = y), then *aux, the term before its
 * coefficient, and *beta with dL/de_aux = beta y. scale: decoder norms when rescaling, else
 * NULL; tv: total variance of x. Returns the number kept per row (0: no AuxK). */
int64_t sae__auxk_forward(sae_trainer *t, int64_t n, int64_t n_dead, const float *scale,
                          double tv, double *aux, double *beta);
/* BatchTopK inference threshold after step `step` (::sae_batchtopk_threshold) from theta and
 * the batch's smallest positive kept code m (-1 if none). */
float sae__batchtopk_threshold(const sae__train_cfg *c, int64_t step, float theta, double m);

/* Standard: the backward is sparse when the mean L0 of a batch is at most this (the lists'
 * capacity per row), else dense. Loss and gradients measured at d_in 768, d_sae 16384, 4096
 * rows, 2 threads: dense 6.8 CPU-s at any L0; sparse 3.3 at L0 = F/32, 4.8 at F/16, 8.9 at
 * F/8 (break-even near F/11). */
#define SAE__RELU_SPARSE_WIDTH(F) (((F) + 15) / 16)
/* Floats of the standard loss's scratch (workspace gpre) for n rows. */
int64_t sae__standard_scratch_floats(const sae__train_cfg *c, int64_t n);

/* Shared stages. xp = x - b_dec; decoder norms; pre = xp W_enc (without b_enc: its consumers
 * add it while they read each row) by sae__sgemm_tiles in column tiles of SAE__ENCODE_TILE
 * features, epilogue (or NULL) called on each tile (kernels.h). */
#define SAE__ENCODE_TILE 1024
sae_status sae__encode_dense(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                             sae__tile_fn epilogue, void *user);
/* sum_b ||x_b - mean x||^2 (double). */
double sae__total_variance(int64_t n, int64_t d, const float *x, int64_t ldx);
/* The reconstruction term of the mse variant, and factor (n): a_b with dL/dx_hat_b = a_b r_b.
 * sq: per-row ||r_b||^2 at sq[b * stride]; tv: total variance. */
double sae__mse_terms(const sae__train_cfg *c, int64_t n, const float *x, int64_t ldx,
                      const double *sq, int64_t stride, double tv, float *factor);
/* db_dec = sum of the given G rows - db_enc W_encT (the encoder's input is x - b_dec; without
 * b_dec_input only the sum). */
void sae__b_dec_grad(sae_trainer *t, int64_t n_rows, const float *G);
/* The same with s (F) = sum_b dL/dt_b in place of db_enc (Gated: t feeds both paths). */
void sae__b_dec_grad_from(sae_trainer *t, int64_t n_rows, const float *G, const float *s);

/* The reference twins' scratch: a table of buffers, *p receiving count elements of size
 * bytes. sae__ref_buffers_alloc allocates them all zeroed with the default allocator; on
 * SAE_ENOMEM the ones already allocated stay set (the rest NULL) for the caller to free. */
typedef struct sae__ref_buffer {
    void **p;
    int64_t count;
    size_t size;
} sae__ref_buffer;
sae_status sae__ref_buffers_alloc(const sae__ref_buffer *table, size_t n);

/* Reference twin of every fast path (standard, TopK and BatchTopK here; JumpReLU and Gated
 * dispatched to their own twins): dense loops in double, same conventions. since: dead
 * counters before the batch; grad: views of a gradient block like t->gp. ENOMEM only. */
sae_status sae__loss_grad_ref(const sae__train_cfg *c, const sae__params *p, const int64_t *since,
                              double l1_coef, int64_t n, const float *x, int64_t ldx,
                              sae__params *grad, sae__loss_terms *out);
/* Twin helpers (double): total variance of n rows of z (n, d); the reconstruction term of r
 * (n, d) = x_hat - x with gx = dL/dx_hat and *sq = sum r^2 (tv: total variance of x). */
double sae__variance_ref(const double *z, int64_t n, int64_t d);
double sae__mse_ref(const sae__train_cfg *c, int64_t n, const float *x, int64_t ldx,
                    const double *r, double tv, double *gx, double *sq);
sae_status sae__jumprelu_loss_grad_ref(const sae__train_cfg *c, const sae__params *p,
                                       const int64_t *since, double l1_coef, int64_t n,
                                       const float *x, int64_t ldx, sae__params *grad,
                                       sae__loss_terms *out);
sae_status sae__gated_loss_grad_ref(const sae__train_cfg *c, const sae__params *p,
                                    const int64_t *since, double l1_coef, int64_t n,
                                    const float *x, int64_t ldx, sae__params *grad,
                                    sae__loss_terms *out);

/* ---- selection (select.c) ----------------------------------------------------------------- */

/* The k largest of v[0..n) (1 <= k <= n) as sae__topk_select gives them (ties to the lower
 * index, ids ascending), by radix select: for large k. keys: (n) scratch. */
void sae__select_large(const float *v, int64_t n, int64_t k, uint32_t *keys, int32_t *idx,
                       float *val);
/* The selection's order-preserving key of a float (-0 as +0). */
uint32_t sae__select_key(float v);
/* Radix select over keys[0..n) (1 <= k <= n, n may exceed INT32_MAX): the key of the k-th
 * largest, and in *ties how many entries equal to it are kept (the first ones in index
 * order). Keeping every key above it and those ties keeps exactly k. */
uint32_t sae__radix_kth(const uint32_t *keys, int64_t n, int64_t k, int64_t *ties);

/* ---- sparse gradient accumulation (sparse_grad.c) ----------------------------------------- */

/* Per-feature lists (CSC) of the kept codes: main entries (row b) from sel_idx / sel_u /
 * sel_g, rows of k entries, or rows [row_ptr[b], row_ptr[b + 1]) when row_ptr is not NULL
 * (BatchTopK, JumpReLU, ReLU codes); AuxK entries (row n + b) from aux_idx (n, kx); in row
 * order. */
void sae__csc_build(sae__workspace *w, int64_t F, int64_t n, int64_t k, const int64_t *row_ptr,
                    int64_t kx);
/* For every feature j (threads own disjoint feature ranges):
 *   dW_dec[j] = sum cd G[row],  dW_encT[j] = sum ce xp[row mod n],  db_enc[j] = sum ce. */
void sae__csc_accumulate(sae_trainer *t, int64_t n);
/* Reference: the same sums by scattering every entry (no lists); row_ptr as in csc_build. */
void sae__sparse_accumulate_ref(int64_t F, int64_t d, int64_t n, int64_t k,
                                const int64_t *row_ptr, const int32_t *idx, const float *cd,
                                const float *ce, int64_t kx, const int32_t *aux_idx,
                                const float *aux_cd, const float *aux_ce, const float *G,
                                const float *xp, sae__params *grad);

/* ---- row primitives (rowops.c): vectorised, fixed summation order ------------------------- */

double sae__dot_dbl(const float *a, const float *b, int64_t n); /* double accumulators */
double sae__sumsq(const float *a, int64_t n);                   /* sum a^2 in double */
double sae__sum_dbl(const float *a, int64_t n);                 /* sum a in double */
/* Decoder rows picked by id, columns [0, w) of rows with stride ldw (W offset to the first
 * column): y (w) += sum_a c[a] W[idx[a]] (c[a] = 0 skipped), and q[a] += y . W[idx[a]] where
 * mask[a] != 0. */
void sae__gather_axpy(int64_t m, const int32_t *idx, const float *c, const float *W, int64_t ldw,
                      float *y, int64_t w);
void sae__gather_dots(int64_t m, const int32_t *idx, const float *mask, const float *W,
                      int64_t ldw, const float *y, int64_t w, float *q);
/* One row decoded from m decoder rows picked by id, and its dot products with them, in column
 * chunks whose m row pieces stay in L2 between the two uses (W: rows of d floats, stride ldw):
 *   y (d) = y + sum_a c[a] W[idx[a]] + add - sub        add, sub: (d) or NULL
 *   q[a] += y . W[idx[a]] where mask[a] != 0
 * Returns ||y||^2 (double). */
double sae__decode_dots(int64_t m, const int32_t *idx, const float *c, const float *mask,
                        const float *W, int64_t ldw, int64_t d, const float *add,
                        const float *sub, float *y, float *q);

/* ---- decoder constraint (decoder_constraint.c) -------------------------------------------- */

/* g (d) -= its component along the decoder row w (d), with the mode's epsilons. */
void sae__project_row(int32_t mode, const float *w, float *g, int64_t d);
/* w (d) /= ||w|| (+ the mode's epsilon). */
void sae__renorm_row(int32_t mode, float *w, int64_t d);
/* ||w|| accumulated in double. */
float sae__row_norm(const float *w, int64_t d);

/* ---- optimiser (adam.c) ------------------------------------------------------------------- */

/* Decoder projection on the gradient, then the global gradient norm (deterministic order). */
double sae__grad_project_and_norm(sae_trainer *t);
/* torch clip_grad_norm_ factor: min(max_norm / (total + 1e-6), 1) in float; 1 if max_norm <= 0. */
float sae__clip_factor(double total_norm, double max_norm);
/* One fused pass: g *= clip, torch-1.13 Adam or AdamW (weight_decay; step t + 1, learning rate
 * lr), then decoder rows renormalised by the decoder constraint. */
void sae__adam_update(sae_trainer *t, double lr, float clip);
/* Reference: Adam (AdamW with c->weight_decay) on n contiguous values, written plainly
 * (step = t + 1). */
void sae__adam_ref(const sae__train_cfg *c, int64_t step, double lr, float clip, float *p,
                   float *m, float *v, const float *g, int64_t n);

/* ---- activation scaling (scaling.c) ------------------------------------------------------- */

/* The batch a step trains on: x itself without scaling, else s x in t->ex.xs (ld d_in), s
 * estimated from this batch while none is known. *scale: the s used (1 without scaling); the
 * caller commits it (t->ex.act_scale) once the step has succeeded. ENOMEM, ENUMERIC. */
sae_status sae__scale_batch(sae_trainer *t, int64_t n, const float **x, int64_t *ldx,
                            float *scale);
/* The exported dictionary's input scaling (SAE_NORM_SCALE, s) when s is not 1, and its folding
 * into the weights of the dictionary made with it (replaced; freed on failure). */
void sae__scale_config(const sae_trainer *t, sae_dict_config *dc);
sae_status sae__scale_fold(sae_dict **d);

/* ---- resampling (resample.c) -------------------------------------------------------------- */

/* Buffers of a resampling of n rows (grown before a step changes anything). */
sae_status sae__resample_reserve(sae_trainer *t, int64_t n);
/* After step s (0-based) is applied, on the batch it trained on: resample when resampling is on
 * and s % resample_steps == 0. *n_resampled: how many (0 otherwise). */
sae_status sae__resample_after_step(sae_trainer *t, int64_t s, int64_t n, const float *x,
                                    int64_t ldx, int64_t *n_resampled);
/* ||x_b - x_hat_b|| for the n rows with the current weights (standard SAE) into loss (n); the
 * workspace must hold n rows. */
sae_status sae__resample_losses(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                double *loss);
/* Draw min(m, rows of positive weight) of the n rows without replacement, P proportional to
 * weight (n), into rows in draw order (Efraimidis-Spirakis keys; one uniform per row). keys: (n)
 * scratch. Returns how many. */
int64_t sae__draw_rows(sae_rng *rng, const double *weight, int64_t n, int64_t m,
                       sae__draw_key *keys, int64_t *rows);
/* The replacement itself, given the draw: dead (F) mask, rows (m) of x in draw order; the
 * first m dead features take them (m <= number of dead features). */
void sae__resample_apply(sae_trainer *t, const uint8_t *dead, const float *x, int64_t ldx,
                         const int64_t *rows, int64_t m);

/* ---- for tests ---------------------------------------------------------------------------- */

/* Canonical-layout gradients (caller buffers): W_enc (d_in, F), b_enc (F), W_dec (F, d_in),
 * b_dec (d_in). */
typedef struct sae__grad_out {
    float *W_enc, *b_enc, *W_dec, *b_dec;
    float *theta, *r_mag, *b_mag; /* (F) each, or NULL: the extra blocks */
} sae__grad_out;

/* Loss and gradients of a batch with the current parameters; no state changes (b_dec is not
 * initialised from this batch). metrics as sae_trainer_step() reports them. */
sae_status sae__trainer_loss_and_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                      sae_train_metrics *metrics, const sae__grad_out *out);

#endif /* SAE_TRAINER_INTERNAL_H */
