/* trainer.c: sae_trainer — handle, workspace, and the order of a training step.
 *
 * A step (trainer.h) in the order of dictionary_learning's TopKTrainer.update, which the other
 * libraries' steps are special cases of:
 *   b_dec init (first step) -> loss and gradients -> decoder-gradient projection -> clip ->
 *   Adam -> decoder renormalisation -> dead counters, threshold EMA, step count.
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
static sae_status ensure_rows(sae_trainer *t, int64_t n)
{
    sae__workspace *w = &t->ws;
    if (n <= w->rows)
        return SAE_OK;
    const sae__train_cfg *c = &t->cfg;
    const int64_t F = c->F, d = c->d_in;
    const bool topk = c->arch == SAE_ARCH_TOPK;
    const int64_t k = topk ? c->k : SAE__RELU_SPARSE_WIDTH(F);
    const int64_t kx = topk && c->auxk_coefficient > 0 ? c->k_aux : 0;
    const sae_allocator *a = t->allocator;
    struct {
        void **p;
        int64_t count;
        size_t size;
    } rows[] = {
        {(void **)&w->xp, n * d, 4},        {(void **)&w->pre, n * F, 4},
        {(void **)&w->gpre, topk ? 1 : sae__standard_scratch_floats(c, n), 4},
        {(void **)&w->G, 2 * n * d, 4},     {(void **)&w->sel_ptr, n + 1, 8},
        {(void **)&w->sel_idx, n * k, 4},   {(void **)&w->sel_u, n * k, 4},
        {(void **)&w->sel_f, n * k, 4},     {(void **)&w->sel_g, n * k, 4},
        {(void **)&w->aux_idx, n * kx, 4},  {(void **)&w->aux_c, n * kx, 4},
        {(void **)&w->aux_g, n * kx, 4},    {(void **)&w->row_sums, 4 * n, 8},
        {(void **)&w->row_factor, n, 4},    {(void **)&w->row_weight, n, 8},
        {(void **)&w->csc_row, n * (k + kx), 4}, {(void **)&w->csc_cd, n * (k + kx), 4},
        {(void **)&w->csc_ce, n * (k + kx), 4},  {(void **)&w->gm_weights, n + d, 8},
    };
    w->rows = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (regrow(a, rows[i].p, rows[i].count, rows[i].size))
            return SAE_ENOMEM;
    w->rows = n;
    return SAE_OK;
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
        {(void **)&w->col_tmp, F, 4},
        {(void **)&w->thread_scratch, (int64_t)w->scratch_bytes * c->threads, 1},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!(*fixed[i].p = sae__alloc_array(a, (size_t)fixed[i].count, fixed[i].size)))
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
                     w->G, w->sel_idx, w->sel_ptr, w->sel_u, w->sel_f, w->sel_g, w->aux_idx,
                     w->aux_c, w->aux_g, w->row_sums, w->row_factor, w->row_weight, w->col_tmp,
                     w->dec_norm, w->fired, w->dead, w->dead_list, w->counts_next, w->csc_ptr,
                     w->csc_fill, w->csc_split, w->csc_row, w->csc_cd, w->csc_ce, w->grad_sq,
                     w->b_dec_backup, w->gm_weights, w->thread_scratch};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(t->allocator, owned[i]);
    sae__free(t->allocator, t);
}

/* ---- construction --------------------------------------------------------------------------- */

static sae_status make_trainer(sae_trainer **out, const sae_trainer_options *resolved,
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
    t->n_params = 2 * cfg->F * cfg->d_in + cfg->F + cfg->d_in;
    t->threshold = -1.0f;
    t->b_dec_pending = cfg->b_dec_init == SAE_BDEC_MEAN ||
                       cfg->b_dec_init == SAE_BDEC_GEOMETRIC_MEDIAN;
    if (alloc_fixed(t) != SAE_OK) {
        sae_trainer_free(t);
        return SAE_ENOMEM;
    }
    t->p = sae__params_view(t->param, cfg->F, cfg->d_in);
    t->gp = sae__params_view(t->grad, cfg->F, cfg->d_in);
    t->mp = sae__params_view(t->m, cfg->F, cfg->d_in);
    t->vp = sae__params_view(t->v, cfg->F, cfg->d_in);
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
        s = make_trainer(out, &o, &c);
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
    if (dc.arch != SAE_ARCH_STANDARD && dc.arch != SAE_ARCH_TOPK)
        return sae__fail(SAE_EUNSUPPORTED, "training %s SAEs is not supported yet",
                         sae_arch_name(dc.arch));
    if (dc.input_norm != SAE_NORM_NONE || (dc.flags & SAE_DICT_NO_B_DEC_INPUT))
        return sae__fail(SAE_EUNSUPPORTED, "the trainer needs a dictionary without input "
                                           "normalisation that subtracts b_dec from its input");
    sae_trainer_options shape = SAE_TRAINER_OPTIONS_INIT;
    shape.arch = dc.arch, shape.d_in = dc.d_in, shape.d_sae = dc.d_sae, shape.k = dc.k;
    sae_trainer_options o;
    sae__train_cfg c;
    sae_status s = sae__trainer_resolve(options, true, &shape, &o, &c);
    if (s == SAE_OK)
        s = make_trainer(out, &o, &c);
    if (s != SAE_OK)
        return s;
    sae_trainer *t = *out;
    const int64_t F = c.F, d = c.d_in;
    transpose(dw.W_enc, d, F, t->p.W_encT);
    memcpy(t->p.W_dec, dw.W_dec, sizeof(float) * (size_t)(F * d));
    if (dw.b_enc)
        memcpy(t->p.b_enc, dw.b_enc, sizeof(float) * (size_t)F);
    else
        memset(t->p.b_enc, 0, sizeof(float) * (size_t)F);
    if (dw.b_dec && c.b_dec_init != SAE_BDEC_ZERO)
        memcpy(t->p.b_dec, dw.b_dec, sizeof(float) * (size_t)d);
    else
        memset(t->p.b_dec, 0, sizeof(float) * (size_t)d);
    return SAE_OK;
}

/* ---- a step --------------------------------------------------------------------------------- */

sae_status sae__forward_backward(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                 double l1_coef, sae__loss_terms *out)
{
    if (t->cfg.arch == SAE_ARCH_TOPK)
        return sae__topk_loss_grad(t, n, x, ldx, out);
    return sae__standard_loss_grad(t, n, x, ldx, l1_coef, out);
}

/* Arguments of step and loss_and_grad; a non-finite x is reported at its first position. */
static sae_status check_batch(const sae_trainer *t, int64_t n, const float *x, int64_t ldx,
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
    m.n_dead = L->n_dead, m.lr = lr, m.grad_norm = grad_norm;
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
    sae_status s = check_batch(t, n, x, ldx, &nonfinite);
    if (nonfinite && (t->cfg.flags & SAE_TRAIN_SKIP_NONFINITE)) {
        sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
        m.skipped = 1, m.step = t->step;
        sae__write_options(metrics, &m, sizeof(sae_train_metrics));
        sae_clear_error();
        return SAE_OK;
    }
    if (s != SAE_OK || (s = ensure_rows(t, n)) != SAE_OK)
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
    sae_train_metrics m = metrics_of(t, &L, lr, grad_norm);
    t->step++;
    t->b_dec_pending = false;
    sae__write_options(metrics, &m, sizeof(sae_train_metrics));
    return SAE_OK;
}

sae_status sae__trainer_loss_and_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                      sae_train_metrics *metrics, const sae__grad_out *out)
{
    bool nonfinite = false;
    sae_status s = check_batch(t, n, x, ldx, &nonfinite);
    if (s != SAE_OK || (s = ensure_rows(t, n)) != SAE_OK)
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
    const bool topk = c->arch == SAE_ARCH_TOPK, threshold = topk && t->threshold >= 0;
    sae_dict_config dc = SAE_DICT_CONFIG_INIT;
    dc.arch = c->arch, dc.d_in = d, dc.d_sae = F, dc.k = topk ? c->k : 0;
    if (topk)
        dc.flags = (c->relu_first ? SAE_DICT_RELU_BEFORE_TOPK : 0u) |
                   (c->rescale ? SAE_DICT_RESCALE_BY_DECODER_NORM : 0u);
    float *W_enc = sae__alloc_array(a, (size_t)(F * d), sizeof(float));
    float *W_dec = sae__alloc_array(a, (size_t)(F * d), sizeof(float));
    float *b_enc = sae__alloc_array(a, (size_t)F, sizeof(float));
    float *b_dec = sae__alloc_array(a, (size_t)d, sizeof(float));
    float *thr = threshold ? sae__alloc_array(a, (size_t)F, sizeof(float)) : NULL;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.b_enc = b_enc, w.W_dec = W_dec, w.b_dec = b_dec, w.threshold = thr;
    if (!W_enc || !W_dec || !b_enc || !b_dec || (threshold && !thr)) {
        sae__dict_weights_free(a, &w);
        return SAE_ENOMEM;
    }
    transpose(t->p.W_encT, F, d, W_enc);
    memcpy(W_dec, t->p.W_dec, sizeof(float) * (size_t)(F * d));
    memcpy(b_enc, t->p.b_enc, sizeof(float) * (size_t)F);
    memcpy(b_dec, t->p.b_dec, sizeof(float) * (size_t)d);
    for (int64_t j = 0; thr && j < F; j++)
        thr[j] = t->threshold;
    return sae__dict_adopt(out, &dc, &w, a);
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
