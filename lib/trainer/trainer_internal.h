/*
 * trainer_internal.h: the layout of sae_trainer and the pieces of a training step, shared by
 * the files of lib/trainer/ and by tests/test_trainer.c.
 *
 * Parameters, Adam moments and gradients share one layout, a contiguous block of
 *     W_encT (F, d_in) | W_dec (F, d_in) | b_enc (F) | b_dec (d_in)
 * W_encT is W_enc transposed (nn.Linear's encoder.weight): feature j's encoder column is the
 * contiguous row j, so the sparse backward writes whole rows of both weight gradients, and Adam
 * is one pass over one array.
 */
#ifndef SAE_TRAINER_INTERNAL_H
#define SAE_TRAINER_INTERNAL_H

#include "../internal.h"
#include "../kernels/kernels.h"
#include "sae/trainer.h"

/* The options after preset resolution, as plain values (explicit zeros are 0). */
typedef struct sae__train_cfg {
    int32_t arch, preset;
    int64_t d_in, F, k;
    int threads;
    uint64_t seed;
    uint32_t flags;
    int32_t init, b_dec_init, lr_schedule, lr_warmup, mse, l1, auxk, dead_rule;
    int32_t decoder_constraint;
    bool relu_first, rescale;
    double decoder_init_norm, lr, beta1, beta2, adam_eps, clip_norm, lr_end;
    int64_t total_steps, warmup_steps, decay_steps, l1_warmup_steps;
    double l1_coefficient, auxk_coefficient, threshold_beta;
    int64_t k_aux, dead_window, threshold_start_step;
} sae__train_cfg;

/* Views of one parameter-shaped block (parameters, moments or gradients). */
typedef struct sae__params {
    float *W_encT; /* (F, d_in) */
    float *W_dec;  /* (F, d_in) */
    float *b_enc;  /* (F) */
    float *b_dec;  /* (d_in) */
} sae__params;

/* Scalars of one loss evaluation. */
typedef struct sae__loss_terms {
    double loss, mse, l1, l1_coef, aux, fvu, l0;
    int64_t n_dead;
    double row_min_mean; /* TopK: mean over rows of the smallest positive kept code, -1 if none */
} sae__loss_terms;

/* Workspace of a step, sized for `rows` rows. */
typedef struct sae__workspace {
    int64_t rows;             /* capacity */
    float *xp;                /* (rows, d_in)   x - b_dec */
    float *pre;               /* (rows, F)      x' W_enc (no b_enc); standard: codes f in place */
    float *gpre;              /* standard: sae__standard_scratch_floats: per-thread tiles of
                                 dL/dpre, per-row partial sums */
    float *G;                 /* (2 rows, d_in) dL/dx_hat (rows 0..n), dL/de_aux (rows n..2n) */
    int32_t *sel_idx;         /* TopK: (rows, k) kept features, ascending; standard, sparse
                                 path: rows of positive codes from sel_ptr, capacity
                                 (rows, SAE__RELU_SPARSE_WIDTH(F)) here and in sel_u, sel_g */
    float *sel_u, *sel_f, *sel_g; /* (rows, k) decode coefficient f/s, code f, dL/dpre */
    int64_t *sel_ptr;         /* standard: (rows + 1) where each row's codes begin */
    int32_t relu_force;       /* standard: 0 picks the path by density, 1 forces dense (tests) */
    int32_t relu_taken;       /* standard: the path of the last batch, 1 dense, 2 sparse */
    int32_t *aux_idx;         /* AuxK: (rows, k_aux) */
    float *aux_c, *aux_g;     /* (rows, k_aux) decode coefficient, dL/dpre */
    double *row_sums;         /* (rows, 4) per row: ||r||^2, positive codes, AuxK ||y||^2 or
                                 L1 sum, smallest positive kept code */
    float *row_factor;        /* (rows) a_b of dL/dx_hat_b = a_b r_b */
    double *row_weight;       /* (rows) standard: rho_b of the L1 term */
    float *col_tmp;           /* (F) standard: sum_b rho_b f_bj */
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
} sae__workspace;

struct sae_trainer {
    sae_trainer_options opts; /* resolved, explicit zeros still negative (get_options) */
    sae__train_cfg cfg;
    const sae_allocator *allocator;
    int64_t n_params;
    float *param, *m, *v, *grad; /* (n_params) each, layout above */
    sae__params p, gp, mp, vp;   /* views of param, grad, m, v */
    int64_t step;                /* steps taken (Adam's t before this step) */
    int64_t *since_fired;        /* (F) dead-rule counters */
    float threshold;             /* TopK inference threshold, -1 until its EMA starts */
    bool b_dec_pending;          /* b_dec is initialised from the first batch */
    sae__workspace ws;
};

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

sae__params sae__params_view(float *base, int64_t F, int64_t d_in);
/* Draw W_encT and W_dec (b_enc, b_dec zero) from the seeded generator. */
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
/* db_dec = sum of the given G rows - db_enc W_encT (the encoder's input is x - b_dec). */
void sae__b_dec_grad(sae_trainer *t, int64_t n_rows, const float *G);

/* Reference twin of both fast paths: dense loops in double, same conventions. since: dead
 * counters before the batch; grad: views of a gradient block like t->gp. ENOMEM only. */
sae_status sae__loss_grad_ref(const sae__train_cfg *c, const sae__params *p, const int64_t *since,
                              double l1_coef, int64_t n, const float *x, int64_t ldx,
                              sae__params *grad, sae__loss_terms *out);

/* ---- selection (select.c) ----------------------------------------------------------------- */

/* The k largest of v[0..n) (1 <= k <= n) as sae__topk_select gives them (ties to the lower
 * index, ids ascending), by radix select: for large k. keys: (n) scratch. */
void sae__select_large(const float *v, int64_t n, int64_t k, uint32_t *keys, int32_t *idx,
                       float *val);

/* ---- sparse gradient accumulation (sparse_grad.c) ----------------------------------------- */

/* Per-feature lists (CSC) of the kept codes: main entries (row b) from sel_idx / sel_u /
 * sel_g, rows of k entries, or rows [row_ptr[b], row_ptr[b + 1]) when row_ptr is not NULL
 * (ReLU codes); AuxK entries (row n + b) from aux_idx (n, kx); in row order. */
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
/* One fused pass: g *= clip, torch-1.13 Adam (step t + 1, learning rate lr), then decoder rows
 * renormalised by the decoder constraint. */
void sae__adam_update(sae_trainer *t, double lr, float clip);
/* Reference: Adam on n contiguous values, written plainly (step = t + 1). */
void sae__adam_ref(const sae__train_cfg *c, int64_t step, double lr, float clip, float *p,
                   float *m, float *v, const float *g, int64_t n);

/* ---- for tests ---------------------------------------------------------------------------- */

/* Canonical-layout gradients (caller buffers): W_enc (d_in, F), b_enc (F), W_dec (F, d_in),
 * b_dec (d_in). */
typedef struct sae__grad_out {
    float *W_enc, *b_enc, *W_dec, *b_dec;
} sae__grad_out;

/* Loss and gradients of a batch with the current parameters; no state changes (b_dec is not
 * initialised from this batch). metrics as sae_trainer_step() reports them. */
sae_status sae__trainer_loss_and_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                      sae_train_metrics *metrics, const sae__grad_out *out);

#endif /* SAE_TRAINER_INTERNAL_H */
