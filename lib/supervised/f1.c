/* f1.c: the interpretability axis (Makelov `sae_interp.py`): precision / recall / F1 of each
 * feature's firing pattern against each attribute value, and the top features per value. */
#include <string.h>

#include "supervised_internal.h"

sae_status sae_feature_f1(float *precision, float *recall, float *f1, int64_t ld,
                          const float *codes, int64_t ldf, int64_t n, int64_t d_sae,
                          const int32_t *labels, int64_t ldl, int32_t n_attrs,
                          const int32_t *n_values, const sae_allocator *allocator)
{
    if (!f1 || !codes || n < 1 || d_sae < 1)
        return sae__fail(SAE_EINVAL, "feature F1: f1 and codes are required, n >= 1 (%lld), "
                         "d_sae >= 1 (%lld)", (long long)n, (long long)d_sae);
    if (ld < d_sae || ldf < d_sae)
        return sae__fail(SAE_ESHAPE, "feature F1: leading dimensions %lld (outputs) and %lld "
                         "(codes) must be >= d_sae %lld", (long long)ld, (long long)ldf,
                         (long long)d_sae);
    sae_status s = sae__check_labels(labels, ldl, n, n_attrs, n_values, "feature F1");
    if (s)
        return s;
    int64_t n_codes = 0;
    for (int32_t a = 0; a < n_attrs; a++)
        n_codes += n_values[a];
    /* joint[c, j] = |z_j ∧ code c|, fires[j] = |z_j|, count[c] = rows with code c. */
    int64_t *joint = sae__alloc_array(allocator, (size_t)(n_codes * d_sae), sizeof(int64_t));
    int64_t *fires = sae__alloc_array(allocator, (size_t)d_sae, sizeof(int64_t));
    int64_t *count = sae__alloc_array(allocator, (size_t)n_codes, sizeof(int64_t));
    int64_t *row_codes = sae__alloc_array(allocator, (size_t)n_attrs, sizeof(int64_t));
    if (!joint || !fires || !count || !row_codes) {
        s = SAE_ENOMEM;
        goto done;
    }
    memset(joint, 0, (size_t)(n_codes * d_sae) * sizeof(int64_t));
    memset(fires, 0, (size_t)d_sae * sizeof(int64_t));
    memset(count, 0, (size_t)n_codes * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        for (int32_t a = 0, c0 = 0; a < n_attrs; c0 += n_values[a], a++) {
            row_codes[a] = c0 + labels[i * ldl + a];
            count[row_codes[a]]++;
        }
        const float *f = codes + i * ldf;
        for (int64_t j = 0; j < d_sae; j++) {
            if (!(f[j] > 0.0f))
                continue;
            fires[j]++;
            for (int32_t a = 0; a < n_attrs; a++)
                joint[row_codes[a] * d_sae + j]++;
        }
    }
    for (int64_t c = 0; c < n_codes; c++)
        for (int64_t j = 0; j < d_sae; j++) {
            double tp = (double)joint[c * d_sae + j];
            double p = fires[j] ? tp / (double)fires[j] : 0.0;
            double r = count[c] ? tp / (double)count[c] : 0.0;
            if (precision)
                precision[c * ld + j] = (float)p;
            if (recall)
                recall[c * ld + j] = (float)r;
            f1[c * ld + j] = p + r > 0.0 ? (float)(2.0 * p * r / (p + r)) : 0.0f;
        }
done:
    sae__free(allocator, joint);
    sae__free(allocator, fires);
    sae__free(allocator, count);
    sae__free(allocator, row_codes);
    return s;
}

sae_status sae_feature_f1_top(int32_t *ids, float *values, int64_t ldo, const float *f1,
                              int64_t ld_f1, int64_t n_codes, int64_t d_sae, int64_t k)
{
    if (!ids || !f1 || n_codes < 0 || d_sae < 1 || k < 1 || k > d_sae)
        return sae__fail(SAE_EINVAL, "feature F1 top: ids and f1 are required, 1 <= k (%lld) "
                         "<= d_sae (%lld), n_codes >= 0", (long long)k, (long long)d_sae);
    if (ldo < k || ld_f1 < d_sae)
        return sae__fail(SAE_ESHAPE, "feature F1 top: leading dimensions %lld (outputs, k %lld) "
                         "and %lld (f1, d_sae %lld)", (long long)ldo, (long long)k,
                         (long long)ld_f1, (long long)d_sae);
    /* Insertion into a sorted list of k: O(d_sae · k) per value, k is small. */
    for (int64_t c = 0; c < n_codes; c++) {
        const float *row = f1 + c * ld_f1;
        int32_t *top = ids + c * ldo;
        int64_t kept = 0;
        for (int64_t j = 0; j < d_sae; j++) {
            int64_t at = kept;
            while (at > 0 && row[top[at - 1]] < row[j])
                at--;
            if (at >= k)
                continue;
            for (int64_t m = (kept < k ? kept : k - 1); m > at; m--)
                top[m] = top[m - 1];
            top[at] = (int32_t)j;
            kept += kept < k;
        }
        if (values)
            for (int64_t m = 0; m < k; m++)
                values[c * ldo + m] = row[top[m]];
    }
    return SAE_OK;
}
