/* rows.c: checking, tiling and gathering the decoder rows a call measures (ortho_internal.h),
 * and the statistics every coherence pass derives from its sums. */
#include <string.h>

#include "ortho_internal.h"

sae_status sae__ortho_rows_init(sae__ortho_rows *r, const float *W, int64_t F, int64_t d,
                                int64_t ld, const int32_t *subset, int64_t n_subset,
                                int64_t min_n)
{
    if (!W)
        return sae__fail(SAE_EINVAL, "W_dec is NULL");
    if (F < 1 || d < 1 || F > INT32_MAX)
        return sae__fail(SAE_EINVAL, "W_dec has shape (%lld, %lld); need 1 <= rows <= 2^31-1, "
                         "d >= 1", (long long)F, (long long)d);
    if (ld < d)
        return sae__fail(SAE_ESHAPE, "leading dimension of W_dec is %lld, needs >= %lld",
                         (long long)ld, (long long)d);
    if (!subset && n_subset != 0)
        return sae__fail(SAE_EINVAL, "subset is NULL but n_subset is %lld (0 means all "
                         "features)", (long long)n_subset);
    int64_t n = subset ? n_subset : F;
    if (n < min_n || n > F)
        return sae__fail(SAE_EINVAL, "%lld directions requested out of %lld; need %lld..%lld",
                         (long long)n, (long long)F, (long long)min_n, (long long)F);
    *r = (sae__ortho_rows){.W = W, .F = F, .d = d, .ld = ld, .subset = subset, .n = n};
    if (subset) { /* ids in range and distinct: one bit per feature */
        uint64_t *seen = sae__alloc_array(NULL, (size_t)((F + 63) / 64), sizeof(uint64_t));
        if (!seen)
            return SAE_ENOMEM;
        memset(seen, 0, (size_t)((F + 63) / 64) * sizeof(uint64_t));
        sae_status s = SAE_OK;
        for (int64_t k = 0; k < n && s == SAE_OK; k++) {
            int64_t id = subset[k];
            if (id < 0 || id >= F)
                s = sae__fail(SAE_EINVAL, "subset[%lld] = %lld is outside [0, %lld)",
                              (long long)k, (long long)id, (long long)F);
            else if (seen[id / 64] >> (id % 64) & 1)
                s = sae__fail(SAE_EINVAL, "subset[%lld] = %lld is repeated", (long long)k,
                              (long long)id);
            else
                seen[id / 64] |= UINT64_C(1) << (id % 64);
        }
        sae__free(NULL, seen);
        if (s != SAE_OK)
            return s;
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t id = sae__ortho_id(r, k), bad = sae__first_nonfinite(W + id * ld, d);
        if (bad >= 0)
            return sae__fail(SAE_ENUMERIC, "W_dec[%lld, %lld] is %g: decoder rows must be "
                             "finite", (long long)id, (long long)bad,
                             (double)W[id * ld + bad]);
    }
    return SAE_OK;
}

const float *sae__ortho_block(const sae__ortho_rows *r, int64_t k0, int64_t m, float *buf,
                              int64_t *ld_out)
{
    if (!r->subset) {
        *ld_out = r->ld;
        return r->W + k0 * r->ld;
    }
    for (int64_t k = 0; k < m; k++)
        memcpy(buf + k * r->d, r->W + sae__ortho_id(r, k0 + k) * r->ld,
               (size_t)r->d * sizeof(float));
    *ld_out = r->d;
    return buf;
}

int64_t sae__ortho_tile_rows(int64_t d, int64_t n)
{
    int64_t t = (INT64_C(1) << 22) / d;
    t = t < 16 ? 16 : t > 1024 ? 1024 : t;
    return t < n ? t : n;
}

void sae__coherence_finish(sae_coherence *c, const sae__coherence_sums *s, const float *fmax)
{
    double n = (double)s->n, d = (double)s->d, pairs = n * (n - 1) / 2;
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    c->n_bins = SAE_COHERENCE_BINS;
    c->n = s->n;
    c->d = s->d;
    c->n_zero = s->n_zero;
    c->max_i = s->max_i;
    c->max_j = s->max_j;
    c->max_cos = s->max_cos;
    c->sum_cos = s->sum_cos;
    c->mean_cos = s->sum_cos / pairs;
    /* all ordered pairs: twice the i > j sums, plus the diagonal (cos_ii = 1 unless zero) */
    c->welch_sum_norm = 2 * s->sum_cos2 + (double)(s->n - s->n_zero);
    c->welch_mean_norm = c->welch_sum_norm / (n * n);
    c->welch_bound = 1.0 / d;
    c->welch_sum_raw = 2 * s->sum_raw2 + s->sum_diag2;
    c->welch_normalizing_raw = s->sum_sq * s->sum_sq;
    c->welch_mean_raw = c->welch_normalizing_raw > 0
                            ? c->welch_sum_raw / c->welch_normalizing_raw
                            : 0.0;
    c->frame_potential = 2 * s->sum_cos2;
    c->frame_potential_bound = n * n / d - n > 0 ? n * n / d - n : 0.0;
    double sum_max = 0;
    for (int64_t k = 0; k < s->n; k++) {
        int b = (int)(fmax[k] * SAE_COHERENCE_BINS);
        c->max_cos_hist[b < 0 ? 0 : b >= SAE_COHERENCE_BINS ? SAE_COHERENCE_BINS - 1 : b]++;
        sum_max += fmax[k];
    }
    c->mean_max_cos = sum_max / n;
}

sae_status sae__ortho_dict_decoder(const sae_dict *dict, const float **W_dec, int64_t *F,
                                   int64_t *d)
{
    if (!dict)
        return sae__fail(SAE_EINVAL, "dict is NULL");
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    sae_status s = sae_dict_get_weights(dict, &w);
    *W_dec = w.W_dec, *F = sae_dict_d_sae(dict), *d = sae_dict_d_in(dict);
    return s;
}
