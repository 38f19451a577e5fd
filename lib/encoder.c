/* encoder.c: sae_encoder — dense and sparse encode, decode, reconstruct (MATH.md, "Encode").
 *
 * Every path has the same three stages:
 *   1. prepare   x' = norm_in(x) - b_dec                    (n, d_in)  [skipped when identity]
 *   2. product   t  = x' W_enc                              (n, F)     BLIS, or the weight-
 *                                                                      streaming kernel for n <= 16
 *   3. epilogue  pre, codes = act(t)  per row               (kernels/activation.c)
 * Dense encode runs the product once over all rows into the caller's output; the sparse and
 * reconstruct paths work through blocks of at most `block_rows` rows so their workspace stays
 * bounded whatever n is. Workspace grows on demand, or is sized at creation (max_rows) so that
 * calls allocate nothing. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "codes_internal.h"
#include "dict_internal.h"
#include "kernels/kernels.h"

/* Rows per block on the bounded paths: about BLOCK_FLOATS floats of (rows, F) workspace. Large
 * enough that BLIS packs W_enc a few times per 4096-row batch at most. */
#define BLOCK_FLOATS (INT64_C(1) << 25)
#define MIN_BLOCK_ROWS 64

struct sae_encoder {
    const sae_dict *dict;
    const sae_allocator *allocator;
    int threads;
    sae__act_params act;
    bool topk;          /* top-k selection (not threshold mode) */
    bool needs_prep;    /* input normalisation or b_dec subtraction */
    bool row_stats;     /* per-row normalisation statistics (layer norm, constant rescale) */

    /* Workspace; capacities in rows. */
    int64_t xin_rows;  float *xin;           /* (xin_rows, d_in) prepared inputs */
    int64_t stat_rows; float *mu, *scale;    /* (stat_rows) per-row norm statistics */
    int64_t stats_valid;                     /* rows of the last encode, -1 if none */
    int64_t blk_rows;  float *block;         /* (blk_rows, F) products / dense codes */
    int64_t sel_rows;  int32_t *sel_idx;     /* (sel_rows, k) top-k selections */
    float *sel_val;                          /* (sel_rows, k) */
    int64_t *row_nnz;                        /* (sel_rows + 1) per-row counts */
    void *topk_scratch;                      /* threads * SAE_TOPK_SCRATCH_BYTES(k) */
};

/* ---- workspace ------------------------------------------------------------------------------ */

static int64_t block_rows_for(const sae_encoder *e, int64_t n)
{
    int64_t r = BLOCK_FLOATS / e->dict->config.d_sae;
    if (r < MIN_BLOCK_ROWS)
        r = MIN_BLOCK_ROWS;
    return n < r ? n : r;
}

/* Replace a workspace array by one of `count` elements (contents are not kept). */
static sae_status regrow(const sae_allocator *a, void **p, int64_t count, size_t size)
{
    void *q = sae__alloc_array(a, (size_t)(count > 0 ? count : 1), size);
    if (!q)
        return SAE_ENOMEM;
    sae__free(a, *p);
    *p = q;
    return SAE_OK;
}

static sae_status ensure_xin(sae_encoder *e, int64_t rows)
{
    if (!e->needs_prep || rows <= e->xin_rows)
        return SAE_OK;
    if (regrow(e->allocator, (void **)&e->xin, rows * e->dict->config.d_in, sizeof(float)))
        return SAE_ENOMEM;
    e->xin_rows = rows;
    return SAE_OK;
}

static sae_status ensure_stats(sae_encoder *e, int64_t rows)
{
    if (!e->row_stats || rows <= e->stat_rows)
        return SAE_OK;
    e->stats_valid = -1;
    if (regrow(e->allocator, (void **)&e->mu, rows, sizeof(float)) ||
        regrow(e->allocator, (void **)&e->scale, rows, sizeof(float)))
        return SAE_ENOMEM;
    e->stat_rows = rows;
    return SAE_OK;
}

static sae_status ensure_sel(sae_encoder *e, int64_t rows)
{
    if (rows <= e->sel_rows)
        return SAE_OK;
    int64_t k = e->topk ? e->act.k : 1;
    if (regrow(e->allocator, (void **)&e->sel_idx, rows * k, sizeof(int32_t)) ||
        regrow(e->allocator, (void **)&e->sel_val, rows * k, sizeof(float)) ||
        regrow(e->allocator, (void **)&e->row_nnz, rows + 1, sizeof(int64_t)))
        return SAE_ENOMEM;
    e->sel_rows = rows;
    return SAE_OK;
}

static sae_status ensure_block(sae_encoder *e, int64_t rows)
{
    if (rows > e->blk_rows) {
        if (regrow(e->allocator, (void **)&e->block, rows * e->dict->config.d_sae, sizeof(float)))
            return SAE_ENOMEM;
        e->blk_rows = rows;
    }
    return ensure_sel(e, rows);
}

/* Everything a call over n rows needs: blocked paths (sparse, reconstruct, dense decode with
 * rescaling) or the dense encode (all rows at once). */
static sae_status ensure_workspace(sae_encoder *e, int64_t n, bool blocked)
{
    int64_t rows = blocked ? block_rows_for(e, n) : n;
    sae_status s = ensure_stats(e, n);
    if (s == SAE_OK)
        s = ensure_xin(e, rows);
    if (s == SAE_OK)
        s = blocked ? ensure_block(e, rows) : ensure_sel(e, rows);
    return s;
}

void sae_encoder_free(sae_encoder *e)
{
    if (!e)
        return;
    const sae_allocator *a = e->allocator;
    void *owned[] = {e->xin, e->mu, e->scale, e->block, e->sel_idx, e->sel_val, e->row_nnz,
                     e->topk_scratch};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(a, owned[i]);
    sae__free(a, e);
}

sae_status sae_encoder_create(sae_encoder **out, const sae_dict *d,
                              const sae_encoder_options *options)
{
    if (!out || !d)
        return sae__fail(SAE_EINVAL, "out and dict are required");
    *out = NULL;
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, options, "sae_encoder_options");
    if (s != SAE_OK)
        return s;
    if (o.n_threads < 0 || o.max_rows < 0 || (o.flags & ~(uint32_t)SAE_ENCODE_TOPK_THRESHOLD))
        return sae__fail(SAE_EINVAL, "encoder options: negative n_threads/max_rows or unknown flags");
    const sae_dict_config *c = &d->config;
    bool threshold_mode = (o.flags & SAE_ENCODE_TOPK_THRESHOLD) != 0;
    if (threshold_mode && (c->arch != SAE_ARCH_TOPK || !d->threshold))
        return sae__fail(SAE_EINVAL, "SAE_ENCODE_TOPK_THRESHOLD needs a TopK dictionary with a "
                                     "threshold");

    const sae_allocator *a = sae__allocator(o.allocator);
    sae_encoder *e = sae__alloc_array(a, 1, sizeof *e);
    if (!e)
        return SAE_ENOMEM;
    memset(e, 0, sizeof *e);
    e->dict = d;
    e->allocator = a;
    e->threads = sae__threads(o.n_threads);
    e->stats_valid = -1;
    e->act = (sae__act_params){
        .arch = c->arch, .F = c->d_sae, .k = c->k,
        .relu_before_topk = (c->flags & SAE_DICT_RELU_BEFORE_TOPK) != 0,
        .use_threshold = threshold_mode,
        .b_enc = d->b_enc, .threshold = d->threshold,
        .rescale = (c->flags & SAE_DICT_RESCALE_BY_DECODER_NORM) ? d->decoder_norms : NULL,
        .b_gate = d->b_gate, .b_mag = d->b_mag, .exp_r_mag = d->exp_r_mag,
    };
    e->topk = c->arch == SAE_ARCH_TOPK && !threshold_mode;
    e->row_stats = c->input_norm == SAE_NORM_LAYER_NORM ||
                   c->input_norm == SAE_NORM_CONSTANT_RESCALE;
    e->needs_prep = c->input_norm != SAE_NORM_NONE ||
                    (d->b_dec && !(c->flags & SAE_DICT_NO_B_DEC_INPUT));

    if (e->topk)
        s = regrow(a, &e->topk_scratch, e->threads, SAE_TOPK_SCRATCH_BYTES(c->k));
    /* Size for both the dense (all rows) and the blocked paths, so no call allocates. */
    if (s == SAE_OK && o.max_rows > 0)
        s = ensure_workspace(e, o.max_rows, false);
    if (s == SAE_OK && o.max_rows > 0)
        s = ensure_workspace(e, o.max_rows, true);
    if (s != SAE_OK) {
        sae_encoder_free(e);
        return s;
    }
    *out = e;
    return SAE_OK;
}

/* ---- argument checks ------------------------------------------------------------------------ */

static sae_status check_matrix(int64_t n, const void *p, int64_t ld, int64_t cols,
                               const char *name)
{
    if (n > 0 && !p)
        return sae__fail(SAE_EINVAL, "%s is NULL", name);
    if (n > 0 && ld < cols)
        return sae__fail(SAE_ESHAPE, "leading dimension of %s is %lld, needs >= %lld", name,
                         (long long)ld, (long long)cols);
    return SAE_OK;
}

static sae_status check_call(const sae_encoder *e, int64_t n)
{
    if (!e)
        return sae__fail(SAE_EINVAL, "encoder is NULL");
    if (n < 0)
        return sae__fail(SAE_EINVAL, "row count %lld is negative", (long long)n);
    return SAE_OK;
}

/* ---- stage 1: prepare the input ------------------------------------------------------------- */

/* Per-row statistics of the input normalisation, written to mu/scale at row `at`:
 * constant rescale: scale = sqrt(d_in) / ||x||; layer norm: mu and the unbiased std (torch's
 * x.std(-1)). Accumulated in double. */
static void row_statistics(sae_encoder *e, const float *xr, int64_t at)
{
    const int64_t d_in = e->dict->config.d_in;
    double sum = 0, ss = 0;
    if (e->dict->config.input_norm == SAE_NORM_CONSTANT_RESCALE) {
        for (int64_t i = 0; i < d_in; i++)
            ss += (double)xr[i] * xr[i];
        e->scale[at] = (float)(sqrt((double)d_in) / sqrt(ss));
        return;
    }
    for (int64_t i = 0; i < d_in; i++)
        sum += xr[i];
    double mu = sum / (double)d_in;
    for (int64_t i = 0; i < d_in; i++)
        ss += ((double)xr[i] - mu) * ((double)xr[i] - mu);
    e->mu[at] = (float)mu;
    e->scale[at] = (float)sqrt(ss / (double)(d_in - 1));
}

/* x'[r] = norm_in(x[r]) - b_dec for rows [0, n), statistics recorded at rows stat0 + r.
 * Returns the matrix to multiply and its leading dimension (x itself when there is nothing to
 * do). */
static const float *prepare(sae_encoder *e, int64_t n, const float *x, int64_t ldx,
                            int64_t stat0, int64_t *ld_out)
{
    const sae_dict *d = e->dict;
    const int64_t d_in = d->config.d_in;
    if (!e->needs_prep) {
        *ld_out = ldx;
        return x;
    }
    const float *b_dec = (d->config.flags & SAE_DICT_NO_B_DEC_INPUT) ? NULL : d->b_dec;
    const int norm = d->config.input_norm;
    const int T = sae__threads_for(e->threads, (double)n * (double)d_in);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * ldx;
        float *out = e->xin + r * d_in;
        if (e->row_stats)
            row_statistics(e, xr, stat0 + r);
        /* norm_in(x) = (x - shift) * mul, or (x - mu) / (std + 1e-5) for layer norm. */
        float shift = 0.0f, mul = 1.0f, div = 1.0f;
        if (norm == SAE_NORM_SCALE)
            mul = d->config.act_scale;
        else if (norm == SAE_NORM_CONSTANT_RESCALE)
            mul = e->scale[stat0 + r];
        else if (norm == SAE_NORM_LAYER_NORM)
            shift = e->mu[stat0 + r], div = e->scale[stat0 + r] + 1e-5f;
        for (int64_t i = 0; i < d_in; i++) {
            float v = (xr[i] - shift) * mul / div;
            out[i] = b_dec ? v - b_dec[i] : v;
        }
    }
    *ld_out = d_in;
    return e->xin;
}

/* x_hat[r] += b_dec, then undo the input normalisation, for rows [0, n) with statistics at
 * rows stat0 + r. */
static void finish_rows(const sae_encoder *e, int64_t n, float *x_hat, int64_t ldx,
                        int64_t stat0)
{
    const sae_dict *d = e->dict;
    const sae_dict_config *c = &d->config;
    for (int64_t r = 0; r < n; r++) {
        float *xr = x_hat + r * ldx;
        if (d->b_dec)
            for (int64_t i = 0; i < c->d_in; i++)
                xr[i] += d->b_dec[i];
        if (c->input_norm == SAE_NORM_NONE)
            continue;
        float mul = 1.0f, add = 0.0f;
        if (c->input_norm == SAE_NORM_SCALE)
            mul = 1.0f / c->act_scale;
        else if (c->input_norm == SAE_NORM_CONSTANT_RESCALE)
            mul = 1.0f / e->scale[stat0 + r];
        else
            mul = e->scale[stat0 + r], add = e->mu[stat0 + r];
        for (int64_t i = 0; i < c->d_in; i++)
            xr[i] = xr[i] * mul + add;
    }
}

/* ---- stage 2: the products ------------------------------------------------------------------ */

/* C (m, n) = A (m, k) B (k, n): streaming kernel for a few rows, BLIS otherwise. */
static sae_status product(const sae_encoder *e, int64_t m, int64_t n, int64_t k, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc)
{
    if (m <= SAE_STREAM_MAX_M) {
        sae__sgemm_stream(m, n, k, A, lda, B, ldb, C, ldc, e->threads);
        return SAE_OK;
    }
    return sae__sgemm(false, false, m, n, k, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, e->threads);
}

/* ---- stage 3: epilogue over rows ------------------------------------------------------------ */

/* Rows [0, n) of t (ldt): pre (optional), dense codes f (optional; NULL leaves the codes in t
 * for non-TopK), selections into sel_idx/sel_val (TopK). */
static void epilogue(sae_encoder *e, int64_t n, float *t, int64_t ldt, float *pre, int64_t ldp,
                     float *f, int64_t ldf)
{
    const int64_t k = e->act.k;
    const int T = sae__threads_for(e->threads, (double)n * (double)e->dict->config.d_sae);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int64_t r = 0; r < n; r++) {
        int tid = omp_get_thread_num();
        char *scratch = e->topk ? (char *)e->topk_scratch + tid * SAE_TOPK_SCRATCH_BYTES(k) : NULL;
        sae__act_row(&e->act, t + r * ldt, pre ? pre + r * ldp : NULL, f ? f + r * ldf : NULL,
                     e->topk ? e->sel_idx + r * k : NULL, e->topk ? e->sel_val + r * k : NULL,
                     scratch);
    }
}

/* ---- sparse accumulation -------------------------------------------------------------------- */

/* out (d_in) += v / ||d_j|| (when rescaling) * W_dec[j, :]. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void accumulate(const sae_encoder *e, int64_t j, float v, float *out)
{
    const int64_t d_in = e->dict->config.d_in;
    if (e->act.rescale)
        v /= e->act.rescale[j];
    const float *row = e->dict->W_dec + j * d_in;
    for (int64_t i = 0; i < d_in; i++)
        out[i] += v * row[i];
}

/* out (d_in) = sum_a val[a] d_{idx[a]} (codes given as a list). */
static void decode_row_list(const sae_encoder *e, int64_t nnz, const int32_t *idx,
                            const float *val, float *out)
{
    memset(out, 0, sizeof(float) * (size_t)e->dict->config.d_in);
    for (int64_t a = 0; a < nnz; a++)
        if (val[a] != 0.0f)
            accumulate(e, idx[a], val[a], out);
}

/* out (d_in) = sum_j f[j] d_j over the non-zeros of a dense row f (F). */
static void decode_row_scan(const sae_encoder *e, const float *f, float *out)
{
    memset(out, 0, sizeof(float) * (size_t)e->dict->config.d_in);
    for (int64_t j = 0; j < e->act.F; j++)
        if (f[j] != 0.0f)
            accumulate(e, j, f[j], out);
}

/* Number of non-zero codes in row r of a block (TopK: of its selections). */
static int64_t row_count(const sae_encoder *e, const float *block_row, int64_t r)
{
    int64_t c = 0;
    if (e->topk) {
        for (int64_t a = 0; a < e->act.k; a++)
            c += e->sel_val[r * e->act.k + a] != 0.0f;
    } else {
        for (int64_t j = 0; j < e->act.F; j++)
            c += block_row[j] != 0.0f;
    }
    return c;
}

/* Write the non-zero codes of block row r (ascending ids) to idx/val. */
static void row_extract(const sae_encoder *e, const float *block_row, int64_t r, int32_t *idx,
                        float *val)
{
    int64_t c = 0;
    if (e->topk) {
        const int32_t *si = e->sel_idx + r * e->act.k;
        const float *sv = e->sel_val + r * e->act.k;
        for (int64_t a = 0; a < e->act.k; a++)
            if (sv[a] != 0.0f)
                idx[c] = si[a], val[c++] = sv[a];
    } else {
        for (int64_t j = 0; j < e->act.F; j++)
            if (block_row[j] != 0.0f)
                idx[c] = (int32_t)j, val[c++] = block_row[j];
    }
}

/* Encode rows [r0, r0 + nr) of x into the block: the codes stay in the block rows (dense) or in
 * the selections (TopK). Statistics go to rows r0.. of the statistics arrays. */
static sae_status encode_block(sae_encoder *e, int64_t r0, int64_t nr, const float *x,
                               int64_t ldx)
{
    const sae_dict *d = e->dict;
    const int64_t F = d->config.d_sae;
    int64_t lda;
    const float *A = prepare(e, nr, x + r0 * ldx, ldx, r0, &lda);
    sae_status s = product(e, nr, F, d->config.d_in, A, lda, d->W_enc, F, e->block, F);
    if (s == SAE_OK)
        epilogue(e, nr, e->block, F, NULL, 0, NULL, 0);
    return s;
}

/* ---- public calls --------------------------------------------------------------------------- */

sae_status sae_encoder_encode(sae_encoder *e, int64_t n, const float *x, int64_t ldx, float *f,
                              int64_t ldf, float *pre, int64_t ldpre)
{
    sae_status s = check_call(e, n);
    if (s != SAE_OK)
        return s;
    const sae_dict *d = e->dict;
    const int64_t F = d->config.d_sae, d_in = d->config.d_in;
    if ((s = check_matrix(n, x, ldx, d_in, "x")) || (s = check_matrix(n, f, ldf, F, "f")) ||
        (pre && (s = check_matrix(n, pre, ldpre, F, "pre"))))
        return s;
    if (pre && pre == f)
        return sae__fail(SAE_EINVAL, "pre and f must be different buffers");
    if (n == 0)
        return SAE_OK;
    if ((s = ensure_workspace(e, n, false)))
        return s;
    int64_t lda;
    const float *A = prepare(e, n, x, ldx, 0, &lda);
    e->stats_valid = e->row_stats ? n : -1;
    /* One product over all rows, straight into f; the epilogue turns each row into codes in
     * place and writes pre beside it. */
    if ((s = product(e, n, F, d_in, A, lda, d->W_enc, F, f, ldf)))
        return s;
    epilogue(e, n, f, ldf, pre, ldpre, f, ldf);
    return SAE_OK;
}

sae_status sae_encoder_encode_sparse(sae_encoder *e, int64_t n, const float *x, int64_t ldx,
                                     sae_codes *codes)
{
    sae_status s = check_call(e, n);
    if (s != SAE_OK)
        return s;
    if (!codes)
        return sae__fail(SAE_EINVAL, "codes is NULL");
    if ((s = check_matrix(n, x, ldx, e->dict->config.d_in, "x")))
        return s;
    if ((s = ensure_workspace(e, n, true)) || (s = sae__codes_grow(codes, n, 0, 0, 0)))
        return s;
    const int64_t F = e->dict->config.d_sae;
    codes->rows = 0;
    codes->offsets[0] = 0;
    for (int64_t r0 = 0; r0 < n; r0 += e->blk_rows) {
        int64_t nr = n - r0 < e->blk_rows ? n - r0 : e->blk_rows;
        if ((s = encode_block(e, r0, nr, x, ldx)))
            return s;
        /* Count, then make room, then fill: rows are filled in parallel at their offsets. */
        int64_t *cnt = e->row_nnz;
        const int T = sae__threads_for(e->threads, (double)nr * (double)F);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
        for (int64_t r = 0; r < nr; r++)
            cnt[r] = row_count(e, e->block + r * F, r);
        int64_t base = codes->offsets[r0];
        for (int64_t r = 0; r < nr; r++)
            codes->offsets[r0 + r + 1] = codes->offsets[r0 + r] + cnt[r];
        if ((s = sae__codes_grow(codes, n, codes->offsets[r0 + nr], r0 + nr, base)))
            return s;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
        for (int64_t r = 0; r < nr; r++) {
            int64_t o = codes->offsets[r0 + r];
            row_extract(e, e->block + r * F, r, codes->indices + o, codes->values + o);
        }
        codes->rows = r0 + nr;
    }
    e->stats_valid = e->row_stats ? n : -1;
    return SAE_OK;
}

static sae_status check_stats(const sae_encoder *e, int64_t n)
{
    if (e->row_stats && e->stats_valid != n)
        return sae__fail(SAE_EINVAL,
                         "decoding a %s-normalised dictionary needs the statistics of an encode "
                         "of the same %lld rows on this encoder (use reconstruct)",
                         e->dict->config.input_norm == SAE_NORM_LAYER_NORM ? "layer" : "norm",
                         (long long)n);
    return SAE_OK;
}

sae_status sae_encoder_decode(sae_encoder *e, int64_t n, const float *f, int64_t ldf,
                              float *x_hat, int64_t ldx)
{
    sae_status s = check_call(e, n);
    if (s != SAE_OK)
        return s;
    const sae_dict *d = e->dict;
    const int64_t F = d->config.d_sae, d_in = d->config.d_in;
    if ((s = check_matrix(n, f, ldf, F, "f")) || (s = check_matrix(n, x_hat, ldx, d_in, "x_hat")) ||
        (s = check_stats(e, n)))
        return s;
    if (n == 0)
        return SAE_OK;
    if (!e->act.rescale) {
        if ((s = product(e, n, d_in, F, f, ldf, d->W_dec, d_in, x_hat, ldx)))
            return s;
    } else {
        /* Codes are divided by ||d_j|| before decoding: scale a block copy, then multiply. */
        if ((s = ensure_block(e, block_rows_for(e, n))))
            return s;
        for (int64_t r0 = 0; r0 < n; r0 += e->blk_rows) {
            int64_t nr = n - r0 < e->blk_rows ? n - r0 : e->blk_rows;
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < F; j++)
                    e->block[r * F + j] = f[(r0 + r) * ldf + j] / e->act.rescale[j];
            if ((s = product(e, nr, d_in, F, e->block, F, d->W_dec, d_in, x_hat + r0 * ldx, ldx)))
                return s;
        }
    }
    finish_rows(e, n, x_hat, ldx, 0);
    return SAE_OK;
}

sae_status sae_encoder_decode_sparse(sae_encoder *e, int64_t n, const int64_t *offsets,
                                     const int32_t *indices, const float *values, float *x_hat,
                                     int64_t ldx)
{
    sae_status s = check_call(e, n);
    if (s != SAE_OK)
        return s;
    const int64_t F = e->dict->config.d_sae, d_in = e->dict->config.d_in;
    if (!offsets || (s = check_matrix(n, x_hat, ldx, d_in, "x_hat")) || (s = check_stats(e, n)))
        return s ? s : sae__fail(SAE_EINVAL, "offsets is NULL");
    if (offsets[0] != 0)
        return sae__fail(SAE_EINVAL, "offsets[0] is %lld, must be 0", (long long)offsets[0]);
    for (int64_t r = 0; r < n; r++)
        if (offsets[r + 1] < offsets[r])
            return sae__fail(SAE_EINVAL, "offsets decrease at row %lld", (long long)r);
    if (offsets[n] > 0 && (!indices || !values))
        return sae__fail(SAE_EINVAL, "indices and values are required");
    for (int64_t a = 0; a < offsets[n]; a++)
        if (indices[a] < 0 || indices[a] >= F)
            return sae__fail(SAE_ERANGE, "feature id %d at position %lld is outside [0, %lld)",
                             indices[a], (long long)a, (long long)F);
    const int T = sae__threads_for(e->threads, (double)offsets[n] * (double)d_in);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int64_t r = 0; r < n; r++)
        decode_row_list(e, offsets[r + 1] - offsets[r], indices + offsets[r],
                        values + offsets[r], x_hat + r * ldx);
    finish_rows(e, n, x_hat, ldx, 0);
    return SAE_OK;
}

sae_status sae_encoder_reconstruct(sae_encoder *e, int64_t n, const float *x, int64_t ldx,
                                   float *x_hat, int64_t ldxh, float *error, int64_t lde)
{
    sae_status s = check_call(e, n);
    if (s != SAE_OK)
        return s;
    const sae_dict *d = e->dict;
    const int64_t F = d->config.d_sae, d_in = d->config.d_in;
    if ((s = check_matrix(n, x, ldx, d_in, "x")) ||
        (s = check_matrix(n, x_hat, ldxh, d_in, "x_hat")) ||
        (error && (s = check_matrix(n, error, lde, d_in, "error"))))
        return s;
    if ((s = ensure_workspace(e, n, true)))
        return s;
    for (int64_t r0 = 0; r0 < n; r0 += e->blk_rows) {
        int64_t nr = n - r0 < e->blk_rows ? n - r0 : e->blk_rows;
        if ((s = encode_block(e, r0, nr, x, ldx)))
            return s;
        float *out = x_hat + r0 * ldxh;
        int64_t total = 0;
        if (!e->topk) {
            const int Tc = sae__threads_for(e->threads, (double)nr * (double)F);
#pragma omp parallel for schedule(static) num_threads(Tc) if (Tc > 1) reduction(+ : total)
            for (int64_t r = 0; r < nr; r++)
                total += row_count(e, e->block + r * F, r);
        }
        if (e->topk || total * 8 <= nr * F) {
            /* Sparse enough: accumulate the decoder rows of the non-zero codes. */
            const int T = sae__threads_for(e->threads, (double)(e->topk ? nr * e->act.k : total) *
                                                           (double)d_in);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
            for (int64_t r = 0; r < nr; r++) {
                if (e->topk)
                    decode_row_list(e, e->act.k, e->sel_idx + r * e->act.k,
                                    e->sel_val + r * e->act.k, out + r * ldxh);
                else
                    decode_row_scan(e, e->block + r * F, out + r * ldxh);
            }
        } else {
            if (e->act.rescale)
                for (int64_t r = 0; r < nr; r++)
                    for (int64_t j = 0; j < F; j++)
                        e->block[r * F + j] /= e->act.rescale[j];
            if ((s = product(e, nr, d_in, F, e->block, F, d->W_dec, d_in, out, ldxh)))
                return s;
        }
        finish_rows(e, nr, out, ldxh, r0);
        if (error)
            for (int64_t r = 0; r < nr; r++)
                for (int64_t i = 0; i < d_in; i++)
                    error[(r0 + r) * lde + i] = x[(r0 + r) * ldx + i] - out[r * ldxh + i];
    }
    e->stats_valid = e->row_stats ? n : -1;
    return SAE_OK;
}
