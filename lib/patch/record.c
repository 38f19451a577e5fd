/* record.c: the recording patch. Appends the rows (n, d_in) and/or their sparse codes (CSR) to
 * buffers sized at creation; x is not changed. A call that does not fit appends nothing
 * (sae_patch_apply restores the counts when a later block runs out of room). */
#include <string.h>

#include "patch_internal.h"

sae_status sae_patch_create_record(sae_patch **out, const sae_dict *dict, uint32_t what,
                                   int64_t capacity_tokens, int64_t capacity_nnz,
                                   const sae_patch_options *options)
{
    const uint32_t known = SAE_RECORD_ACTIVATIONS | SAE_RECORD_CODES;
    if (what == 0 || (what & ~known))
        return sae__fail(SAE_EINVAL, "record: `what` is 0x%x, needs SAE_RECORD_ACTIVATIONS "
                                     "and/or SAE_RECORD_CODES", what);
    if (capacity_tokens < 1 || capacity_nnz < 0 ||
        (dict && capacity_tokens > INT64_MAX / 4 / (sae_dict_d_in(dict) + sae_dict_d_sae(dict))))
        return sae__fail(SAE_EINVAL, "record: capacity of %lld tokens and %lld non-zeros",
                         (long long)capacity_tokens, (long long)capacity_nnz);
    const bool codes = (what & SAE_RECORD_CODES) != 0;
    sae_status s = sae__patch_new(out, SAE_PATCH_RECORD, dict, options, codes);
    if (s != SAE_OK)
        return s;
    sae_patch *p = *out;
    p->what = what;
    p->cap_tokens = capacity_tokens;
    if (codes && capacity_nnz == 0)
        capacity_nnz = capacity_tokens *
                       (sae_dict_arch(dict) == SAE_ARCH_TOPK ? sae_dict_k(dict) : p->d_sae);
    p->cap_nnz = codes ? capacity_nnz : 0;
    if (((what & SAE_RECORD_ACTIVATIONS) &&
         !(p->rec_x = sae__patch_alloc(p, capacity_tokens * p->d_in, sizeof(float)))) ||
        (codes && (!(p->rec_off = sae__patch_alloc(p, capacity_tokens + 1, sizeof(int64_t))) ||
                   !(p->rec_idx = sae__patch_alloc(p, p->cap_nnz, sizeof(int32_t))) ||
                   !(p->rec_val = sae__patch_alloc(p, p->cap_nnz, sizeof(float)))))) {
        sae_patch_free(p);
        *out = NULL;
        return SAE_ENOMEM;
    }
    return SAE_OK;
}

sae_status sae__patch_record_room(const sae_patch *p, int64_t n)
{
    if (n > p->cap_tokens - p->n_rec)
        return sae__fail(SAE_ERANGE, "record buffer full: %lld of %lld tokens used, %lld more do "
                                     "not fit (read it and sae_patch_clear_record)",
                         (long long)p->n_rec, (long long)p->cap_tokens, (long long)n);
    return SAE_OK;
}

sae_status sae__patch_record_block(sae_patch *p, const float *x, int64_t n, int64_t ld)
{
    const int64_t d_in = p->d_in, F = p->d_sae, base = p->n_rec;
    if (p->rec_x)
        for (int64_t r = 0; r < n; r++)
            memcpy(p->rec_x + (base + r) * d_in, x + r * ld, sizeof(float) * (size_t)d_in);
    if (p->what & SAE_RECORD_CODES) {
        sae_status s = sae_encoder_encode(p->enc, n, x, ld, p->codes, F, NULL, 0);
        if (s != SAE_OK)
            return s;
        int64_t nnz = p->nnz_rec;
        for (int64_t r = 0; r < n; r++) {
            const float *f = p->codes + r * F;
            for (int64_t j = 0; j < F; j++) {
                if (f[j] == 0.0f)
                    continue;
                if (nnz == p->cap_nnz)
                    return sae__fail(SAE_ERANGE, "record buffer full: %lld non-zero codes "
                                                 "recorded, capacity %lld",
                                     (long long)nnz, (long long)p->cap_nnz);
                p->rec_idx[nnz] = (int32_t)j;
                p->rec_val[nnz++] = f[j];
            }
            p->rec_off[base + r + 1] = nnz;
        }
        p->nnz_rec = nnz;
    }
    p->n_rec = base + n;
    return SAE_OK;
}

sae_status sae_patch_get_record(const sae_patch *p, sae_patch_record *out)
{
    if (!p || p->kind != SAE_PATCH_RECORD)
        return sae__fail(SAE_EINVAL, "get record: not a recording patch");
    sae_patch_record v = {sizeof v,   p->what,    p->n_rec,   p->nnz_rec, p->d_in,
                          p->rec_x,   p->rec_off, p->rec_idx, p->rec_val};
    if (!sae__write_options(out, &v, sizeof v))
        return sae__fail(SAE_EINVAL, "get record: out must be initialised with "
                                     "SAE_PATCH_RECORD_INIT");
    return SAE_OK;
}

sae_status sae_patch_clear_record(sae_patch *p)
{
    if (!p || p->kind != SAE_PATCH_RECORD)
        return sae__fail(SAE_EINVAL, "clear record: not a recording patch");
    p->n_rec = 0;
    p->nnz_rec = 0;
    return SAE_OK;
}
