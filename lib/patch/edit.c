/* edit.c: the feature edits that keep the error term: ablate (zero, mean, resample), clamp and
 * edit. All are one operation (patch.h): with f = encode(x) and a target row t of new codes for
 * the feature set S,
 *   x' = x + sum_{a : S_a = j} (t_a - f_j) d~_j             (n, d_in) += (n, |S|) (|S|, d_in)
 * where t is one row for all tokens (zero, mean, clamp, edit) or a row drawn per token from a
 * pool (resample). */
#include <string.h>

#include "../dict_internal.h"
#include "patch_internal.h"

/* Make an edit patch. The target rows are gathered from `src` (src_rows, d_sae), ld_src, at the
 * columns S when `gather`; copied as they are ((src_rows, |S|), ld_src) otherwise; zeros when
 * src is NULL. */
static sae_status create_edit(sae_patch **out, int32_t kind, const sae_dict *dict,
                              const int32_t *features, int64_t n_feat, const float *src,
                              int64_t src_rows, int64_t ld_src, bool gather,
                              const sae_patch_options *options)
{
    if (!features || n_feat < 1)
        return sae__fail(SAE_EINVAL, "feature edit: features is NULL or empty (%lld)",
                         (long long)n_feat);
    sae_status s = sae__patch_new(out, kind, dict, options, true);
    if (s != SAE_OK)
        return s;
    sae_patch *p = *out;
    const sae_dict_config *c = &dict->config;
    const int64_t F = p->d_sae, d_in = p->d_in, T = p->max_tokens;
    uint8_t *seen = NULL;
    p->n_feat = n_feat;
    p->target_rows = src ? src_rows : 1;
    p->row_norm = c->input_norm == SAE_NORM_LAYER_NORM || c->input_norm == SAE_NORM_CONSTANT_RESCALE;
    if (!(p->feat = sae__patch_alloc(p, n_feat, sizeof(int32_t))) ||
        !(p->target = sae__patch_alloc(p, p->target_rows * n_feat, sizeof(float))) ||
        !(seen = sae__patch_alloc(p, F, 1)) ||
        (p->row_norm && (!(p->delta_off = sae__patch_alloc(p, T + 1, sizeof(int64_t))) ||
                         !(p->zero_off = sae__patch_alloc(p, T + 1, sizeof(int64_t))) ||
                         !(p->delta_idx = sae__patch_alloc(p, T * n_feat, sizeof(int32_t))) ||
                         !(p->delta_val = sae__patch_alloc(p, T * n_feat, sizeof(float))) ||
                         !(p->xa = sae__patch_alloc(p, T * d_in, sizeof(float))) ||
                         !(p->xb = sae__patch_alloc(p, T * d_in, sizeof(float))))) ||
        (!p->row_norm && !(p->dirs = sae__patch_alloc(p, n_feat * d_in, sizeof(float)))))
        s = SAE_ENOMEM;
    for (int64_t a = 0; a < n_feat && s == SAE_OK; a++) {
        if ((s = sae__patch_check_feature(dict, features[a], "feature edit")))
            break;
        if (seen[features[a]]++)
            s = sae__fail(SAE_EINVAL, "feature edit: feature %d appears twice", features[a]);
        p->feat[a] = features[a];
    }
    for (int64_t r = 0; src && r < src_rows && s == SAE_OK; r++)
        for (int64_t a = 0; a < n_feat; a++)
            p->target[r * n_feat + a] = src[r * ld_src + (gather ? p->feat[a] : a)];
    int64_t bad = s == SAE_OK ? sae__first_nonfinite(p->target, p->target_rows * n_feat) : -1;
    if (bad >= 0)
        s = sae__fail(SAE_ENUMERIC, "feature edit: the new code of feature %d (target row %lld) "
                                    "is not finite", p->feat[bad % n_feat],
                      (long long)(bad / n_feat));
    /* Direct path: d~_j, the model-space effect of a unit code (dict_internal.h). */
    for (int64_t a = 0; p->dirs && a < n_feat && s == SAE_OK; a++)
        sae__dict_decoder_direction(dict, p->feat[a], p->dirs + a * d_in);
    sae__free(p->allocator, seen);
    if (s != SAE_OK) {
        sae_patch_free(p);
        *out = NULL;
    }
    return s;
}

sae_status sae_patch_create_ablate_zero(sae_patch **out, const sae_dict *dict,
                                        const int32_t *features, int64_t n_features,
                                        const sae_patch_options *options)
{
    return create_edit(out, SAE_PATCH_ABLATE, dict, features, n_features, NULL, 0, 0, false,
                       options);
}

/* A code row of length n (mean, source): NULL or not d_sae long is an error. */
static sae_status check_code_row(const sae_dict *dict, const float *row, int64_t n,
                                 const char *what)
{
    if (!dict || !row)
        return sae__fail(SAE_EINVAL, "%s: dict and the code row are required", what);
    if (n != sae_dict_d_sae(dict))
        return sae__fail(SAE_ESHAPE, "%s: the code row has %lld entries, d_sae is %lld", what,
                         (long long)n, (long long)sae_dict_d_sae(dict));
    return SAE_OK;
}

sae_status sae_patch_create_ablate_mean(sae_patch **out, const sae_dict *dict,
                                        const int32_t *features, int64_t n_features,
                                        const float *mean, int64_t n_mean,
                                        const sae_patch_options *options)
{
    sae_status s = check_code_row(dict, mean, n_mean, "mean ablation");
    return s ? s : create_edit(out, SAE_PATCH_ABLATE, dict, features, n_features, mean, 1, 0,
                               true, options);
}

sae_status sae_patch_create_ablate_resample(sae_patch **out, const sae_dict *dict,
                                            const int32_t *features, int64_t n_features,
                                            const float *pool, int64_t pool_rows,
                                            int64_t pool_cols, int64_t ld_pool, uint64_t seed,
                                            const sae_patch_options *options)
{
    if (!dict || !pool || pool_rows < 1)
        return sae__fail(SAE_EINVAL, "resample ablation: dict and a pool of >= 1 rows are "
                                     "required (%lld rows)", (long long)pool_rows);
    if (pool_cols != sae_dict_d_sae(dict) || ld_pool < pool_cols)
        return sae__fail(SAE_ESHAPE, "resample ablation: pool has %lld columns (ld %lld), d_sae "
                                     "is %lld", (long long)pool_cols, (long long)ld_pool,
                         (long long)sae_dict_d_sae(dict));
    sae_status s = create_edit(out, SAE_PATCH_ABLATE, dict, features, n_features, pool,
                               pool_rows, ld_pool, true, options);
    if (s == SAE_OK)
        sae_rng_init(&(*out)->rng, seed, 0);
    return s;
}

sae_status sae_patch_create_clamp(sae_patch **out, const sae_dict *dict, int32_t feature,
                                  float value, const sae_patch_options *options)
{
    return create_edit(out, SAE_PATCH_CLAMP, dict, &feature, 1, &value, 1, 1, false, options);
}

sae_status sae_patch_create_edit(sae_patch **out, const sae_dict *dict, const int32_t *features,
                                 int64_t n_features, const float *source, int64_t n_source,
                                 const sae_patch_options *options)
{
    sae_status s = check_code_row(dict, source, n_source, "feature edit");
    return s ? s : create_edit(out, SAE_PATCH_EDIT, dict, features, n_features, source, 1, 0,
                               true, options);
}

/* x (n, d_in) += Delta W~ for one block, Delta = t - f on S. */
sae_status sae__patch_edit_block(sae_patch *p, float *x, int64_t n, int64_t ld)
{
    const int64_t F = p->d_sae, d_in = p->d_in, S = p->n_feat;
    sae_status s = sae_encoder_encode(p->enc, n, x, ld, p->codes, F, NULL, 0);
    if (s != SAE_OK)
        return s;
    int64_t nnz = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *t = p->target;
        if (p->target_rows > 1)
            t += (int64_t)sae_rng_below(&p->rng, (uint64_t)p->target_rows) * S;
        const float *f = p->codes + r * F;
        float *xr = x + r * ld;
        for (int64_t a = 0; a < S; a++) {
            float delta = t[a] - f[p->feat[a]];
            if (delta == 0.0f)
                continue;
            if (!p->row_norm) {
                const float *dir = p->dirs + a * d_in;
                for (int64_t i = 0; i < d_in; i++)
                    xr[i] += delta * dir[i];
            } else {
                p->delta_idx[nnz] = p->feat[a];
                p->delta_val[nnz++] = delta;
            }
        }
        if (p->row_norm)
            p->delta_off[r + 1] = nnz;
    }
    if (!p->row_norm)
        return SAE_OK;
    /* Per-row output normalisation: x += decode(Delta) - decode(0), both with the statistics of
     * this block's encode (b_dec and the row mean cancel). */
    if ((s = sae_encoder_decode_sparse(p->enc, n, p->delta_off, p->delta_idx, p->delta_val, p->xa,
                                       d_in)) ||
        (s = sae_encoder_decode_sparse(p->enc, n, p->zero_off, NULL, NULL, p->xb, d_in)))
        return s;
    for (int64_t r = 0; r < n; r++)
        if (p->delta_off[r + 1] > p->delta_off[r])
            for (int64_t i = 0; i < d_in; i++)
                x[r * ld + i] += p->xa[r * d_in + i] - p->xb[r * d_in + i];
    return SAE_OK;
}
