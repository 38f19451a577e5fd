/* trainer.c: sae_trainer — handle, workspace, and the order of a training step.
 *
 * A step (trainer.h) in the order of dictionary_learning's TopKTrainer.update, which the other
 * libraries' steps are special cases of:
 *   activation scaling -> b_dec init (first step) -> loss and gradients (the orthogonality
 *   penalty's last) -> decoder-gradient projection -> clip -> Adam (AdamW) -> decoder
 *   renormalisation -> dead counters, threshold EMA -> resampling (StandardTrainer.update) ->
 *   step count.
 * Nothing persistent changes until the loss and the gradient norm are known to be finite, so
 * a bad batch (or a diverged step) leaves the trainer as it was. */
#include <math.h>
#include <string.h>

#include "../io/io_internal.h"
#include "../kernels/kernels.h"
#include "trainer_internal.h"

/* ---- workspace ------------------------------------------------------------------------------ */

/* Replace a workspace array by one of `count` elements. BLIS's AVX2 small-matrix kernels may
 * load a few bytes past the end of an operand; 64 bytes of slack keep those loads inside the
 * allocation. */
static sae_status regrow(const sae_allocator *a, void **p, int64_t count, size_t size)
{
    void *q = sae__alloc_array(a, (size_t)(count > 0 ? count : 1) + 64 / size, size);
    if (!q)
        return SAE_ENOMEM;
    sae__free(a, *p);
    *p = q;
    return SAE_OK;
}

/* Arrays whose size depends on the batch: grown to n rows when a larger batch comes. */
sae_status sae__trainer_reserve(sae_trainer *t, int64_t n)
{
    sae__workspace *w = &t->ws;
    if (n <= w->rows)
        return SAE_OK;
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    /* TopK keeps k codes per row, BatchTopK k per row on average (k n in all), standard at
     * most SAE__RELU_SPARSE_WIDTH(F) per row on average on its sparse path; JumpReLU's codes
     * are counted per batch (sae__ensure_entries). */
    const bool sel = c->arch == SAE_ARCH_TOPK || c->arch == SAE_ARCH_BATCHTOPK;
    const int64_t k = sel ? c->k : c->arch == SAE_ARCH_STANDARD ? SAE__RELU_SPARSE_WIDTH(F) : 0;
    const int64_t kx = sel && c->auxk_coefficient > 0 ? c->k_aux : 0;
    /* scratch besides the encoder product: see sae__workspace.gpre */
    const int64_t scratch = c->arch == SAE_ARCH_STANDARD ? sae__standard_scratch_floats(c, n)
                            : c->arch == SAE_ARCH_TOPK   ? 0
                            : c->arch == SAE_ARCH_GATED  ? 2 * n * F
                                                         : n * F;
    const sae_allocator *a = t->allocator;
    struct {
        void **p;
        int64_t count;
        size_t size;
    } rows[] = {
        {(void **)&w->xp, n * d, 4},        {(void **)&w->pre, n * F, 4},
        {(void **)&w->gpre, scratch, 4},    {(void **)&w->G, 2 * n * d, 4},
        {(void **)&w->sel_idx, n * k, 4},   {(void **)&w->sel_u, n * k, 4},
        {(void **)&w->sel_f, n * k, 4},     {(void **)&w->sel_g, n * k, 4},
        {(void **)&w->aux_idx, n * kx, 4},  {(void **)&w->aux_c, n * kx, 4},
        {(void **)&w->aux_g, n * kx, 4},    {(void **)&w->row_sums, 4 * n, 8},
        {(void **)&w->row_factor, n, 4},    {(void **)&w->row_weight, n, 8},
        {(void **)&w->csc_row, n * (k + kx), 4}, {(void **)&w->csc_cd, n * (k + kx), 4},
        {(void **)&w->csc_ce, n * (k + kx), 4},  {(void **)&w->gm_weights, n + d, 8},
        {(void **)&w->row_ptr, n + 1, 8},
    };
    w->rows = 0, w->entries = 0, w->list_entries = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (regrow(a, rows[i].p, rows[i].count, rows[i].size))
            return SAE_ENOMEM;
    w->rows = n, w->entries = n * k, w->list_entries = n * (k + kx);
    return SAE_OK;
}

/* Grow `count` arrays of floats or int32 to hold `want` entries (room for more: the number
 * of codes varies from batch to batch), recording the new capacity. */
static sae_status grow_entries(const sae_allocator *a, void **arrays[], size_t count,
                               int64_t want, int64_t *capacity)
{
    if (want <= *capacity)
        return SAE_OK;
    const int64_t cap = want + want / 4;
    *capacity = 0;
    for (size_t i = 0; i < count; i++)
        if (regrow(a, arrays[i], cap, 4))
            return SAE_ENOMEM;
    *capacity = cap;
    return SAE_OK;
}

sae_status sae__ensure_entries(sae_trainer *t, int64_t nnz, bool lists)
{
    sae__workspace *w = &t->ws;
    void **sel[] = {(void **)&w->sel_idx, (void **)&w->sel_u, (void **)&w->sel_f,
                    (void **)&w->sel_g};
    void **csc[] = {(void **)&w->csc_row, (void **)&w->csc_cd, (void **)&w->csc_ce};
    sae_status s = grow_entries(t->allocator, sel, 4, nnz, &w->entries);
    if (s == SAE_OK && lists)
        s = grow_entries(t->allocator, csc, 3, nnz, &w->list_entries);
    return s;
}

/* Arrays of fixed size, allocated with the trainer. */
static sae_status alloc_fixed(sae_trainer *t)
{
    sae__workspace *w = &t->ws;
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    /* Per thread: one (F) row of floats, (F) selection keys, then the top-k heap. */
    w->scratch_bytes = (8 * (size_t)F + SAE_TOPK_SCRATCH_BYTES(c->k) + 63) / 64 * 64;
    const sae_allocator *a = t->allocator;
    struct {
        void **p;
        int64_t count;
        size_t size;
    } fixed[] = {
        {(void **)&t->param, t->n_params, 4}, {(void **)&t->m, t->n_params, 4},
        {(void **)&t->v, t->n_params, 4},     {(void **)&t->grad, t->n_params, 4},
        {(void **)&t->since_fired, F, 8},     {(void **)&w->dec_norm, F, 4},
        {(void **)&w->fired, F, 1},           {(void **)&w->dead, F, 1},
        {(void **)&w->dead_list, F, 4},       {(void **)&w->counts_next, F, 8},
        {(void **)&w->csc_ptr, F + 1, 8},     {(void **)&w->csc_fill, F, 8},
        {(void **)&w->csc_split, F, 8},
        {(void **)&w->grad_sq, 2 * F, 8}, {(void **)&w->b_dec_backup, d, 4},
        {(void **)&w->col_tmp, F, 4},         {(void **)&w->feat_sums, 4 * F, 8},
        {(void **)&w->thread_scratch, (int64_t)w->scratch_bytes * c->threads, 1},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!(*fixed[i].p = sae__alloc_array(a, (size_t)fixed[i].count, fixed[i].size)))
            return SAE_ENOMEM;
    if (c->ortho_lambda > 0 && c->ortho_subset < F && /* a subset to draw (ortho_term.c) */
        !(w->ortho_ids = sae__alloc_array(a, (size_t)c->ortho_subset, sizeof(int32_t))))
        return SAE_ENOMEM;
    memset(t->m, 0, sizeof(float) * (size_t)t->n_params);
    memset(t->v, 0, sizeof(float) * (size_t)t->n_params);
    memset(t->since_fired, 0, sizeof(int64_t) * (size_t)F);
    return SAE_OK;
}

void sae_trainer_free(sae_trainer *t)
{
    if (!t)
        return;
    sae__workspace *w = &t->ws;
    void *owned[] = {t->param, t->m, t->v, t->grad, t->since_fired, w->xp, w->pre, w->gpre,
                     w->G, w->sel_idx, w->sel_u, w->sel_f, w->sel_g, w->aux_idx, w->aux_c,
                     w->aux_g, w->row_sums, w->row_factor, w->row_weight, w->col_tmp,
                     w->dec_norm, w->fired, w->dead, w->dead_list, w->counts_next, w->csc_ptr,
                     w->csc_fill, w->csc_split, w->csc_row, w->csc_cd, w->csc_ce, w->grad_sq,
                     w->b_dec_backup, w->gm_weights, w->thread_scratch, w->row_ptr,
                     w->feat_sums, t->ex.xs, t->ex.keys, t->ex.picked, w->ortho_ids};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(t->allocator, owned[i]);
    sae__free(t->allocator, t);
}

/* ---- construction --------------------------------------------------------------------------- */

sae_status sae__trainer_make(sae_trainer **out, const sae_trainer_options *resolved,
                             const sae__train_cfg *cfg)
{
    const sae_allocator *a = sae__allocator(resolved->allocator);
    sae_trainer *t = sae__alloc_array(a, 1, sizeof *t);
    if (!t)
        return SAE_ENOMEM;
    memset(t, 0, sizeof *t);
    t->opts = *resolved;
    t->cfg = *cfg;
    t->allocator = a;
    t->n_params = 2 * cfg->F * cfg->d_in + cfg->F + cfg->d_in +
                  sae__extra_blocks(cfg->arch) * cfg->F;
    /* SAELens' BatchTopK threshold starts at 0, the others unset */
    t->threshold = cfg->arch == SAE_ARCH_BATCHTOPK &&
                           cfg->batchtopk_threshold == SAE_BATCHTOPK_THRESHOLD_SAELENS
                       ? 0.0f
                       : -1.0f;
    t->b_dec_pending = cfg->b_dec_init == SAE_BDEC_MEAN ||
                       cfg->b_dec_init == SAE_BDEC_GEOMETRIC_MEDIAN;
    sae_rng_init(&t->ex.rng, cfg->seed, SAE__RESAMPLE_STREAM);
    t->ex.act_scale = cfg->activation_scaling ? 0.0f : 1.0f;
    if (alloc_fixed(t) != SAE_OK) {
        sae_trainer_free(t);
        return SAE_ENOMEM;
    }
    t->p = sae__params_layout(cfg, t->param);
    t->gp = sae__params_layout(cfg, t->grad);
    t->mp = sae__params_layout(cfg, t->m);
    t->vp = sae__params_layout(cfg, t->v);
    *out = t;
    return SAE_OK;
}

sae_status sae_trainer_create(sae_trainer **out, const sae_trainer_options *options)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "out is NULL");
    *out = NULL;
    if (!options)
        return sae__fail(SAE_EINVAL, "options are required (arch, d_in, d_sae)");
    sae_trainer_options o;
    sae__train_cfg c;
    sae_status s = sae__trainer_resolve(options, false, NULL, &o, &c);
    if (s == SAE_OK)
        s = sae__trainer_make(out, &o, &c);
    if (s == SAE_OK)
        sae__init_weights(&c, &(*out)->p);
    return s;
}

/* dst (cols, rows) = src (rows, cols)^T, in tiles so both sides stay in cache. */
static void transpose(const float *src, int64_t rows, int64_t cols, float *dst)
{
    for (int64_t i0 = 0; i0 < rows; i0 += 32)
        for (int64_t j0 = 0; j0 < cols; j0 += 32)
            for (int64_t i = i0; i < rows && i < i0 + 32; i++)
                for (int64_t j = j0; j < cols && j < j0 + 32; j++)
                    dst[j * rows + i] = src[i * cols + j];
}

sae_status sae_trainer_create_from(sae_trainer **out, const sae_dict *init,
                                   const sae_trainer_options *options)
{
    if (!out || !init)
        return sae__fail(SAE_EINVAL, "out and init are required");
    *out = NULL;
    sae_dict_config dc = SAE_DICT_CONFIG_INIT;
    sae_dict_weights dw = SAE_DICT_WEIGHTS_INIT;
    sae_dict_get_config(init, &dc);
    sae_dict_get_weights(init, &dw);
    if (dc.arch == SAE_ARCH_BATCHTOPK)
        return sae__fail(SAE_EUNSUPPORTED, "batchtopk dictionaries cannot be trained further "
                                           "(the trainer exports BatchTopK as JumpReLU)");
    if (dc.input_norm != SAE_NORM_NONE)
        return sae__fail(SAE_EUNSUPPORTED,
                         "the trainer needs a dictionary without input normalisation");
    if ((dc.flags & SAE_DICT_RESCALE_BY_DECODER_NORM) &&
        (dc.arch == SAE_ARCH_JUMPRELU || dc.arch == SAE_ARCH_GATED))
        return sae__fail(SAE_EUNSUPPORTED, "a %s dictionary that rescales by decoder norms "
                                           "cannot be trained: fold the norms first",
                         sae_arch_name(dc.arch));
    sae_trainer_options shape = SAE_TRAINER_OPTIONS_INIT;
    shape.arch = dc.arch, shape.d_in = dc.d_in, shape.d_sae = dc.d_sae, shape.k = dc.k;
    shape.b_dec_input = dc.flags & SAE_DICT_NO_B_DEC_INPUT ? SAE_SWITCH_OFF : SAE_SWITCH_ON;
    sae_trainer_options o;
    sae__train_cfg c;
    sae_status s = sae__trainer_resolve(options, true, &shape, &o, &c);
    const int64_t F = c.F, d = c.d_in;
    for (int64_t j = 0; s == SAE_OK && c.arch == SAE_ARCH_JUMPRELU && c.log_threshold && j < F;
         j++)
        if (!(dw.threshold[j] > 0))
            s = sae__fail(SAE_EINVAL, "threshold[%lld] = %g: training log thresholds needs "
                                      "positive ones", (long long)j, (double)dw.threshold[j]);
    if (s == SAE_OK)
        s = sae__trainer_make(out, &o, &c);
    if (s != SAE_OK)
        return s;
    sae_trainer *t = *out;
    transpose(dw.W_enc, d, F, t->p.W_encT);
    memcpy(t->p.W_dec, dw.W_dec, sizeof(float) * (size_t)(F * d));
    /* Gated: b_gate is the b_enc block */
    const float *b_enc = c.arch == SAE_ARCH_GATED ? dw.b_gate : dw.b_enc;
    const struct {
        float *dst;
        const float *src;
        int64_t count;
    } vectors[] = {{t->p.b_enc, b_enc, F},
                   {t->p.b_dec, c.b_dec_init == SAE_BDEC_ZERO ? NULL : dw.b_dec, d},
                   {t->p.r_mag, dw.r_mag, F},
                   {t->p.b_mag, dw.b_mag, F}};
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        if (!vectors[i].dst)
            continue;
        if (vectors[i].src) /* absent optional vectors are zeros */
            memcpy(vectors[i].dst, vectors[i].src, sizeof(float) * (size_t)vectors[i].count);
        else
            memset(vectors[i].dst, 0, sizeof(float) * (size_t)vectors[i].count);
    }
    for (int64_t j = 0; t->p.theta && j < F; j++) /* torch.log of the saved threshold */
        t->p.theta[j] = c.log_threshold ? logf(dw.threshold[j]) : dw.threshold[j];
    return SAE_OK;
}

/* ---- a step --------------------------------------------------------------------------------- */

sae_status sae__forward_backward(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                 double l1_coef, sae__loss_terms *out)
{
    sae_status s;
    switch (t->cfg.arch) {
    case SAE_ARCH_TOPK: s = sae__topk_loss_grad(t, n, x, ldx, out); break;
    case SAE_ARCH_BATCHTOPK: s = sae__batchtopk_loss_grad(t, n, x, ldx, out); break;
    case SAE_ARCH_JUMPRELU: s = sae__jumprelu_loss_grad(t, n, x, ldx, l1_coef, out); break;
    case SAE_ARCH_GATED: s = sae__gated_loss_grad(t, n, x, ldx, l1_coef, out); break;
    default: s = sae__standard_loss_grad(t, n, x, ldx, l1_coef, out); break;
    }
    return s == SAE_OK ? sae__ortho_term(t, out) : s;
}

/* Arguments of a batch; a non-finite x is reported at its first position. */
sae_status sae__check_batch(const sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                            bool *nonfinite)
{
    if (!t)
        return sae__fail(SAE_EINVAL, "trainer is NULL");
    if (n < 1 || !x)
        return sae__fail(SAE_EINVAL, "a batch needs n >= 1 rows and x (got n = %lld)",
                         (long long)n);
    const int64_t d = t->cfg.d_in;
    if (ldx < d)
        return sae__fail(SAE_ESHAPE, "leading dimension of x is %lld, needs >= %lld",
                         (long long)ldx, (long long)d);
    *nonfinite = false;
    for (int64_t b = 0; b < n; b++) {
        int64_t i = sae__first_nonfinite(x + b * ldx, d);
        if (i >= 0) {
            *nonfinite = true;
            return sae__fail(SAE_ENUMERIC, "x[%lld, %lld] is %g: batches must be finite",
                             (long long)b, (long long)i, (double)x[b * ldx + i]);
        }
    }
    return SAE_OK;
}

static sae_train_metrics metrics_of(const sae_trainer *t, const sae__loss_terms *L, double lr,
                                    double grad_norm)
{
    sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
    m.step = t->step, m.loss = L->loss, m.mse = L->mse, m.l1 = L->l1;
    m.l1_coefficient = L->l1_coef, m.aux = L->aux, m.fvu = L->fvu, m.l0 = L->l0;
    m.n_dead = L->n_dead, m.lr = lr, m.grad_norm = grad_norm, m.ortho = L->ortho;
    return m;
}

/* b_dec from the first batch, keeping the old value for a rollback. */
static void init_b_dec(sae_trainer *t, int64_t n, const float *x, int64_t ldx)
{
    const int64_t d = t->cfg.d_in;
    memcpy(t->ws.b_dec_backup, t->p.b_dec, sizeof(float) * (size_t)d);
    if (t->cfg.b_dec_init == SAE_BDEC_MEAN)
        sae__batch_mean(n, d, x, ldx, t->p.b_dec);
    else
        sae__geometric_median(n, d, x, ldx, 100, 1e-5, t->ws.gm_weights, t->p.b_dec);
}

sae_status sae_trainer_step(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                            sae_train_metrics *metrics)
{
    bool nonfinite = false;
    sae_status s = sae__check_batch(t, n, x, ldx, &nonfinite);
    if (nonfinite && (t->cfg.flags & SAE_TRAIN_SKIP_NONFINITE)) {
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        m.skipped = 1, m.step = t->step;
        sae__write_options(metrics, &m, sizeof(sae_train_metrics));
        sae_clear_error();
        return SAE_OK;
    }
    float scale = 1.0f;
    if (s != SAE_OK || (s = sae__trainer_reserve(t, n)) != SAE_OK ||
        (s = sae__resample_reserve(t, n)) != SAE_OK ||
        (s = sae__scale_batch(t, n, &x, &ldx, &scale)) != SAE_OK)
        return s;
    const sae__train_cfg *c = &t->cfg;
    const double lr = sae__lr_at(c, t->step);
    const double l1_coef = c->l1_coefficient * sae__l1_scale_at(c, t->step);
    const bool init = t->b_dec_pending && t->step == 0;
    if (init)
        init_b_dec(t, n, x, ldx);

    sae__loss_terms L;
    s = sae__forward_backward(t, n, x, ldx, l1_coef, &L);
    const double grad_norm = s == SAE_OK ? sae__grad_project_and_norm(t) : 0;
    if (s == SAE_OK && (!isfinite(L.loss) || !isfinite(grad_norm)))
        s = sae__fail(SAE_ENUMERIC, "step %lld: the loss (%g) or the gradient norm (%g) is not "
                      "finite; nothing was updated", (long long)t->step, L.loss, grad_norm);
    if (s != SAE_OK) {
        if (init)
            memcpy(t->p.b_dec, t->ws.b_dec_backup, sizeof(float) * (size_t)c->d_in);
        return s;
    }

    sae__adam_update(t, lr, sae__clip_factor(grad_norm, c->clip_norm));
    memcpy(t->since_fired, t->ws.counts_next, sizeof(int64_t) * (size_t)c->F);
    /* dictionary_learning: `if step > threshold_start_step`, EMA of the batch's mean smallest
     * positive kept code (rows without one are left out; upstream's mean would be inf). */
    if (c->arch == SAE_ARCH_TOPK && t->step > c->threshold_start_step && L.row_min_mean >= 0)
        t->threshold = t->threshold < 0
                           ? (float)L.row_min_mean
                           : (float)(c->threshold_beta * t->threshold +
                                     (1.0 - c->threshold_beta) * L.row_min_mean);
    if (c->arch == SAE_ARCH_BATCHTOPK)
        t->threshold = sae__batchtopk_threshold(c, t->step, t->threshold, L.min_positive);
    sae_train_metrics m = metrics_of(t, &L, lr, grad_norm);
    t->ex.act_scale = scale;
    int64_t resampled;
    s = sae__resample_after_step(t, t->step, n, x, ldx, &resampled);
    t->step++;
    t->b_dec_pending = false;
    sae__write_options(metrics, &m, sizeof(sae_train_metrics));
    return s;
}

sae_status sae__trainer_loss_and_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                      sae_train_metrics *metrics, const sae__grad_out *out)
{
    bool nonfinite = false;
    float scale;
    sae_status s = sae__check_batch(t, n, x, ldx, &nonfinite);
    if (s != SAE_OK || (s = sae__trainer_reserve(t, n)) != SAE_OK ||
        (s = sae__scale_batch(t, n, &x, &ldx, &scale)) != SAE_OK)
        return s;
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    sae__loss_terms L;
    const double l1_coef = c->l1_coefficient * sae__l1_scale_at(c, t->step);
    if ((s = sae__forward_backward(t, n, x, ldx, l1_coef, &L)))
        return s;
    sae_train_metrics m = metrics_of(t, &L, sae__lr_at(c, t->step), 0);
    sae__write_options(metrics, &m, sizeof(sae_train_metrics));
    if (out) {
        transpose(t->gp.W_encT, F, d, out->W_enc);
        memcpy(out->b_enc, t->gp.b_enc, sizeof(float) * (size_t)F);
        memcpy(out->W_dec, t->gp.W_dec, sizeof(float) * (size_t)(F * d));
        memcpy(out->b_dec, t->gp.b_dec, sizeof(float) * (size_t)d);
        const struct {
            float *dst;
            const float *src;
        } extra[] = {{out->theta, t->gp.theta}, {out->r_mag, t->gp.r_mag},
                     {out->b_mag, t->gp.b_mag}};
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
            if (extra[i].dst && extra[i].src)
                memcpy(extra[i].dst, extra[i].src, sizeof(float) * (size_t)F);
    }
    return SAE_OK;
}

/* ---- export and getters --------------------------------------------------------------------- */

sae_status sae_trainer_export(const sae_trainer *t, sae_dict **out)
{
    if (!t || !out)
        return sae__fail(SAE_EINVAL, "trainer and out are required");
    *out = NULL;
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    const sae_allocator *a = t->allocator;
    const bool topk = c->arch == SAE_ARCH_TOPK, batch = c->arch == SAE_ARCH_BATCHTOPK;
    const bool jump = c->arch == SAE_ARCH_JUMPRELU, gated = c->arch == SAE_ARCH_GATED;
    const bool threshold = (topk && t->threshold >= 0) || batch || jump;
    sae_dict_config dc = SAE_DICT_CONFIG_INIT;
    dc.arch = batch ? SAE_ARCH_JUMPRELU : c->arch, dc.d_in = d, dc.d_sae = F;
    dc.k = topk ? c->k : 0;
    dc.flags = (topk && c->relu_first ? SAE_DICT_RELU_BEFORE_TOPK : 0u) |
               (c->rescale ? SAE_DICT_RESCALE_BY_DECODER_NORM : 0u) |
               (c->b_dec_input ? 0u : SAE_DICT_NO_B_DEC_INPUT);
    /* Gated: b_gate, r_mag and b_mag in place of b_enc */
    float *W_enc = sae__alloc_array(a, (size_t)(F * d), sizeof(float));
    float *W_dec = sae__alloc_array(a, (size_t)(F * d), sizeof(float));
    float *b_enc = sae__alloc_array(a, (size_t)F, sizeof(float));
    float *b_dec = sae__alloc_array(a, (size_t)d, sizeof(float));
    float *thr = threshold ? sae__alloc_array(a, (size_t)F, sizeof(float)) : NULL;
    float *r_mag = gated ? sae__alloc_array(a, (size_t)F, sizeof(float)) : NULL;
    float *b_mag = gated ? sae__alloc_array(a, (size_t)F, sizeof(float)) : NULL;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec, w.b_dec = b_dec, w.threshold = thr;
    w.b_enc = gated ? NULL : b_enc, w.b_gate = gated ? b_enc : NULL;
    w.r_mag = r_mag, w.b_mag = b_mag;
    if (!W_enc || !W_dec || !b_enc || !b_dec || (threshold && !thr) ||
        (gated && (!r_mag || !b_mag))) {
        sae__dict_weights_free(a, &w);
        return SAE_ENOMEM;
    }
    transpose(t->p.W_encT, F, d, W_enc);
    memcpy(W_dec, t->p.W_dec, sizeof(float) * (size_t)(F * d));
    memcpy(b_enc, t->p.b_enc, sizeof(float) * (size_t)F);
    memcpy(b_dec, t->p.b_dec, sizeof(float) * (size_t)d);
    for (int64_t j = 0; thr && j < F; j++)
        thr[j] = jump ? sae__theta_of(c, t->p.theta[j]) : t->threshold;
    if (gated) {
        memcpy(r_mag, t->p.r_mag, sizeof(float) * (size_t)F);
        memcpy(b_mag, t->p.b_mag, sizeof(float) * (size_t)F);
    }
    sae__scale_config(t, &dc);
    sae_status s = sae__dict_adopt(out, &dc, &w, a);
    return s == SAE_OK ? sae__scale_fold(out) : s;
}

sae_status sae_trainer_get_options(const sae_trainer *t, sae_trainer_options *out)
{
    if (!t || !sae__write_options(out, &t->opts, sizeof t->opts))
        return sae__fail(SAE_EINVAL, "trainer and an initialised out are required");
    return SAE_OK;
}

int64_t sae_trainer_steps(const sae_trainer *t) { return t ? t->step : 0; }

const int64_t *sae_trainer_since_fired(const sae_trainer *t) { return t ? t->since_fired : NULL; }

sae_status sae_trainer_set_since_fired(sae_trainer *t, const int64_t *counts)
{
    if (!t || !counts)
        return sae__fail(SAE_EINVAL, "trainer and counts are required");
    for (int64_t j = 0; j < t->cfg.F; j++)
        if (counts[j] < 0)
            return sae__fail(SAE_EINVAL, "counts[%lld] = %lld is negative", (long long)j,
                             (long long)counts[j]);
    memcpy(t->since_fired, counts, sizeof(int64_t) * (size_t)t->cfg.F);
    return SAE_OK;
}
