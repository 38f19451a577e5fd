/* codes.c: sae_codes, a growable CSR batch of sparse codes. */
#include <string.h>

#include "codes_internal.h"

sae_status sae_codes_create(sae_codes **out, const sae_allocator *allocator)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "out is NULL");
    const sae_allocator *a = sae__allocator(allocator);
    sae_codes *c = sae__alloc_array(a, 1, sizeof *c);
    if (!c)
        return SAE_ENOMEM;
    memset(c, 0, sizeof *c);
    c->allocator = a;
    c->offsets = sae__alloc_array(a, 1, sizeof(int64_t));
    if (!c->offsets) {
        sae__free(a, c);
        return SAE_ENOMEM;
    }
    c->offsets[0] = 0;
    *out = c;
    return SAE_OK;
}

void sae_codes_free(sae_codes *c)
{
    if (!c)
        return;
    sae__free(c->allocator, c->offsets);
    sae__free(c->allocator, c->indices);
    sae__free(c->allocator, c->values);
    sae__free(c->allocator, c);
}

/* Replace *ptr by a larger array holding the first `keep` elements. */
static sae_status grow_array(const sae_allocator *a, void **ptr, int64_t count, size_t size,
                             int64_t keep)
{
    void *p = sae__alloc_array(a, (size_t)count, size);
    if (!p)
        return SAE_ENOMEM;
    if (*ptr && keep > 0)
        memcpy(p, *ptr, (size_t)keep * size);
    sae__free(a, *ptr);
    *ptr = p;
    return SAE_OK;
}

sae_status sae__codes_grow(sae_codes *c, int64_t rows, int64_t nnz, int64_t keep_rows,
                           int64_t keep_nnz)
{
    if (rows > c->row_capacity) {
        int64_t cap = rows > 2 * c->row_capacity ? rows : 2 * c->row_capacity;
        if (grow_array(c->allocator, (void **)&c->offsets, cap + 1, sizeof(int64_t),
                       keep_rows + 1) != SAE_OK)
            return SAE_ENOMEM;
        c->row_capacity = cap;
    }
    if (nnz > c->nnz_capacity) {
        int64_t cap = nnz > 2 * c->nnz_capacity ? nnz : 2 * c->nnz_capacity;
        /* Grow both arrays into new blocks first, so a failure leaves the codes intact. */
        void *idx = c->indices, *val = c->values;
        c->indices = NULL, c->values = NULL;
        void *new_idx = NULL, *new_val = NULL;
        sae_status s = grow_array(c->allocator, &new_idx, cap, sizeof(int32_t), 0);
        if (s == SAE_OK)
            s = grow_array(c->allocator, &new_val, cap, sizeof(float), 0);
        if (s != SAE_OK) {
            sae__free(c->allocator, new_idx);
            c->indices = idx, c->values = val;
            return s;
        }
        if (keep_nnz > 0) {
            memcpy(new_idx, idx, (size_t)keep_nnz * sizeof(int32_t));
            memcpy(new_val, val, (size_t)keep_nnz * sizeof(float));
        }
        sae__free(c->allocator, idx);
        sae__free(c->allocator, val);
        c->indices = new_idx, c->values = new_val;
        c->nnz_capacity = cap;
    }
    return SAE_OK;
}

sae_status sae_codes_reserve(sae_codes *c, int64_t rows, int64_t nnz)
{
    if (!c || rows < 0 || nnz < 0)
        return sae__fail(SAE_EINVAL, "codes is NULL or a size is negative");
    return sae__codes_grow(c, rows, nnz, c->rows, c->offsets[c->rows]);
}

int64_t sae_codes_rows(const sae_codes *c) { return c ? c->rows : 0; }
int64_t sae_codes_nnz(const sae_codes *c) { return c ? c->offsets[c->rows] : 0; }
const int64_t *sae_codes_offsets(const sae_codes *c) { return c ? c->offsets : NULL; }
const int32_t *sae_codes_indices(const sae_codes *c) { return c ? c->indices : NULL; }
const float *sae_codes_values(const sae_codes *c) { return c ? c->values : NULL; }
