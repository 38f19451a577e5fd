/* eval.c: sae_dict_evaluate — reconstruction, sparsity and feature-density metrics of a
 * dictionary over the rows of a source, in one pass with bounded memory (formulas in eval.h).
 *
 * Per block of n rows: read, check finiteness, sparse encode + sparse decode, then fold the
 * block into running sums (double): ||r||^2, ||x_hat||^2, <x, x_hat>, the l2 ratios, the
 * non-zeros, the per-feature fire counts, and the per-column mean and centred sum of squares
 * (block statistics from two passes over the block, merged with Chan et al.'s update so the
 * total variance never comes from a difference of large sums). */
#include <math.h>
#include <string.h>

#include "internal.h"

#define EVAL_DEFAULT_BLOCK 4096
#define EVAL_DEFAULT_DENSE 0.1

/* Running sums over the rows seen so far. */
typedef struct eval_acc {
    int64_t rows, nnz, ratio_rows;
    double err_sq, xhat_sq, x_dot_xhat, ratio_sum;
    double *mean, *m2;   /* (d_in) per-column mean and centred sum of squares */
    double *block_mean;  /* (d_in) scratch */
    int64_t *counts;     /* (d_sae) rows on which each feature fired */
} eval_acc;

static sae_status read_eval_options(const sae_eval_options *given, sae_eval_options *o)
{
    const sae_eval_options defaults = SAE_EVAL_OPTIONS_INIT;
    *o = defaults;
    sae_status s = sae__read_options(o, sizeof *o, given, "sae_eval_options");
    if (s != SAE_OK)
        return s;
    if (o->n_threads < 0 || o->max_rows < 0 || o->block_rows < 0 || o->reserved != 0)
        return sae__fail(SAE_EINVAL, "sae_eval_options: n_threads, max_rows and block_rows must "
                         "be >= 0 and reserved 0");
    if (!(o->dense_threshold >= 0 && o->dense_threshold <= 1))
        return sae__fail(SAE_EINVAL, "sae_eval_options.dense_threshold is %g, must be in (0, 1] "
                         "(0 for the default %g)", o->dense_threshold, EVAL_DEFAULT_DENSE);
    if (o->block_rows == 0)
        o->block_rows = EVAL_DEFAULT_BLOCK;
    if (o->dense_threshold == 0)
        o->dense_threshold = EVAL_DEFAULT_DENSE;
    return SAE_OK;
}

/* Fold one block: x (n, d) as read, x_hat (n, d), codes of the block. */
static void accumulate(eval_acc *acc, int64_t n, int64_t d, const float *x, const float *x_hat,
                       const sae_codes *codes)
{
    for (int64_t b = 0; b < n; b++) {
        const float *xr = x + b * d, *hr = x_hat + b * d;
        double e2 = 0, h2 = 0, x2 = 0, xh = 0;
        for (int64_t i = 0; i < d; i++) {
            const double xv = xr[i], hv = hr[i], r = xv - hv;
            e2 += r * r, h2 += hv * hv, x2 += xv * xv, xh += xv * hv;
        }
        acc->err_sq += e2, acc->xhat_sq += h2, acc->x_dot_xhat += xh;
        if (x2 > 0) {
            acc->ratio_sum += sqrt(h2 / x2);
            acc->ratio_rows++;
        }
    }
    /* Column statistics of the block, then Chan's merge:
     * M2 += M2_block + delta^2 * n_a n_b / (n_a + n_b), mean += delta * n_b / (n_a + n_b). */
    double *bm = acc->block_mean;
    memset(bm, 0, sizeof(double) * (size_t)d);
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < d; i++)
            bm[i] += x[b * d + i];
    for (int64_t i = 0; i < d; i++)
        bm[i] /= (double)n;
    const double na = (double)acc->rows, nb = (double)n, nt = na + nb;
    for (int64_t i = 0; i < d; i++) {
        double m2b = 0;
        for (int64_t b = 0; b < n; b++) {
            const double c = x[b * d + i] - bm[i];
            m2b += c * c;
        }
        const double delta = bm[i] - acc->mean[i];
        acc->m2[i] += m2b + delta * delta * na * nb / nt;
        acc->mean[i] += delta * nb / nt;
    }
    acc->rows += n;

    const int64_t nnz = sae_codes_nnz(codes);
    const int32_t *idx = sae_codes_indices(codes);
    for (int64_t z = 0; z < nnz; z++)
        acc->counts[idx[z]]++;
    acc->nnz += nnz;
}

/* The metrics from the sums (formulas in eval.h). */
static void finish(const eval_acc *acc, int64_t d, int64_t F, double dense_threshold,
                   sae_eval_result *r)
{
    double tv = 0;
    for (int64_t i = 0; i < d; i++)
        tv += acc->m2[i];
    const double N = (double)acc->rows;
    r->rows = acc->rows;
    r->d_sae = F;
    r->mse = acc->err_sq / N;
    r->fvu = tv > 0 ? acc->err_sq / tv : NAN;
    r->explained_variance = 1.0 - r->fvu;
    r->l0 = (double)acc->nnz / N;
    r->relative_reconstruction_bias = acc->x_dot_xhat != 0 ? acc->xhat_sq / acc->x_dot_xhat
                                                           : NAN;
    r->shrinkage = acc->ratio_rows > 0 ? acc->ratio_sum / (double)acc->ratio_rows : NAN;
    r->dense_threshold = dense_threshold;
    for (int64_t j = 0; j < F; j++) {
        if (acc->counts[j] == 0) {
            r->n_dead++;
            continue;
        }
        const double p = (double)acc->counts[j] / N;
        if (p > dense_threshold)
            r->n_dense++;
        const double pos = (log10(p) - SAE_EVAL_DENSITY_LOG10_MIN) / SAE_EVAL_DENSITY_BIN_WIDTH;
        const int64_t bin = pos < 0 ? 0 : (int64_t)pos;
        r->density_histogram[bin < SAE_EVAL_DENSITY_BINS ? bin : SAE_EVAL_DENSITY_BINS - 1]++;
    }
}

sae_status sae_dict_evaluate(sae_eval_result *out, int64_t *fire_counts, const sae_dict *dict,
                             sae_source *src, const sae_eval_options *options)
{
    if (!out || out->struct_size < 4 || !dict || !src)
        return sae__fail(SAE_EINVAL, "out (with struct_size set), dict and source are required");
    sae_eval_options o;
    sae_status s = read_eval_options(options, &o);
    if (s != SAE_OK)
        return s;
    const int64_t d = sae_dict_d_in(dict), F = sae_dict_d_sae(dict);
    if (sae_source_d(src) != d)
        return sae__fail(SAE_ESHAPE, "the source has rows of width %lld, the dictionary d_in = %lld",
                         (long long)sae_source_d(src), (long long)d);
    int64_t max_rows = o.max_rows;
    if (max_rows == 0)
        max_rows = sae_source_rows(src) >= 0 ? sae_source_rows(src) : INT64_MAX;
    const int64_t block = o.block_rows < max_rows ? o.block_rows : (max_rows > 0 ? max_rows : 1);
    if ((uint64_t)block > SIZE_MAX / sizeof(float) / 2 / (uint64_t)d)
        return sae__fail(SAE_EINVAL, "block_rows %lld is too large", (long long)block);

    const sae_allocator *a = sae__allocator(o.allocator);
    eval_acc acc = {0};
    float *x = sae__alloc_array(a, (size_t)(2 * block * d), sizeof(float));
    float *x_hat = x ? x + block * d : NULL;
    acc.mean = sae__alloc_array(a, (size_t)(3 * d), sizeof(double));
    acc.counts = sae__alloc_array(a, (size_t)F, sizeof(int64_t));
    sae_encoder *enc = NULL;
    sae_codes *codes = NULL;
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.n_threads = o.n_threads, eo.max_rows = block, eo.flags = o.encode_flags;
    eo.allocator = o.allocator;
    if (!x || !acc.mean || !acc.counts)
        s = SAE_ENOMEM;
    else if ((s = sae_encoder_create(&enc, dict, &eo)) == SAE_OK)
        s = sae_codes_create(&codes, o.allocator);
    if (s == SAE_OK) {
        acc.m2 = acc.mean + d, acc.block_mean = acc.mean + 2 * d;
        memset(acc.mean, 0, sizeof(double) * (size_t)(2 * d));
        memset(acc.counts, 0, sizeof(int64_t) * (size_t)F);
    }

    while (s == SAE_OK && acc.rows < max_rows) {
        const int64_t want = max_rows - acc.rows < block ? max_rows - acc.rows : block;
        int64_t n = 0;
        if ((s = sae_source_next(src, want, x, d, &n)) != SAE_OK || n == 0)
            break;
        for (int64_t b = 0; b < n; b++) {
            const int64_t i = sae__first_nonfinite(x + b * d, d);
            if (i >= 0) {
                s = sae__fail(SAE_ENUMERIC, "row %lld, column %lld of the data is %g: "
                              "evaluation needs finite rows", (long long)(acc.rows + b),
                              (long long)i, (double)x[b * d + i]);
                break;
            }
        }
        if (s == SAE_OK && (s = sae_encoder_encode_sparse(enc, n, x, d, codes)) == SAE_OK &&
            (s = sae_encoder_decode_sparse(enc, n, sae_codes_offsets(codes),
                                           sae_codes_indices(codes), sae_codes_values(codes),
                                           x_hat, d)) == SAE_OK)
            accumulate(&acc, n, d, x, x_hat, codes);
    }
    if (s == SAE_OK && acc.rows == 0)
        s = sae__fail(SAE_EINVAL, "the source delivered no rows to evaluate");
    if (s == SAE_OK) {
        sae_eval_result r = SAE_EVAL_RESULT_INIT;
        finish(&acc, d, F, o.dense_threshold, &r);
        sae__write_options(out, &r, sizeof r);
        if (fire_counts)
            memcpy(fire_counts, acc.counts, sizeof(int64_t) * (size_t)F);
    }
    sae_codes_free(codes);
    sae_encoder_free(enc);
    sae__free(a, acc.counts);
    sae__free(a, acc.mean);
    sae__free(a, x);
    return s;
}
