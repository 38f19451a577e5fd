/* tensors.c: taking named tensors out of a file's tensor set, with shape checks. */
#include <stdio.h>
#include <string.h>

#include "io_internal.h"

const sae_tensor_info *sae__tensors_find(const sae__tensor_set *set, const char *name)
{
    for (int64_t i = 0; i < set->count; i++)
        if (strcmp(set->items[i].name, name) == 0)
            return &set->items[i];
    return NULL;
}

void sae__format_shape(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld",
                                 (long long)shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

sae_status sae__tensors_take_f32(const sae__tensor_set *set, const char *name, int ndim,
                                 const int64_t *shape, bool transpose, const sae_allocator *a,
                                 float **out)
{
    *out = NULL;
    const sae_tensor_info *t = sae__tensors_find(set, name);
    if (!t)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s is missing", set->origin, name);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char got[160], want[160];
        sae__format_shape(got, sizeof got, t->ndim, t->shape);
        sae__format_shape(want, sizeof want, ndim, shape);
        return sae__fail(SAE_ESHAPE, "%s: %s has shape %s, expected %s", set->origin, name, got,
                         want);
    }
    float *buf = sae__alloc_array(a, (size_t)(t->numel ? t->numel : 1), sizeof(float));
    if (!buf)
        return SAE_ENOMEM;
    sae_status s = sae_st_to_f32(t, buf, t->numel);
    if (s != SAE_OK) {
        sae__free(a, buf);
        char prefix[512];
        snprintf(prefix, sizeof prefix, "%s: tensor %s", set->origin, name);
        return sae__fail_prefix(s, prefix);
    }
    if (transpose && ndim == 2 && shape[0] > 1 && shape[1] > 1) {
        int64_t rows = shape[0], cols = shape[1];
        float *tr = sae__alloc_array(a, (size_t)t->numel, sizeof(float));
        if (!tr) {
            sae__free(a, buf);
            return SAE_ENOMEM;
        }
        /* Blocked transpose: (rows, cols) -> (cols, rows); 64x64 tiles keep both sides in cache. */
        for (int64_t i0 = 0; i0 < rows; i0 += 64)
            for (int64_t j0 = 0; j0 < cols; j0 += 64)
                for (int64_t i = i0; i < rows && i < i0 + 64; i++)
                    for (int64_t j = j0; j < cols && j < j0 + 64; j++)
                        tr[j * rows + i] = buf[i * cols + j];
        sae__free(a, buf);
        buf = tr;
    }
    *out = buf;
    return SAE_OK;
}
