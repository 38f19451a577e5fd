/* codes_internal.h: the layout of sae_codes (CSR), shared by codes.c and encoder.c. */
#ifndef SAE_CODES_INTERNAL_H
#define SAE_CODES_INTERNAL_H

#include "internal.h"

struct sae_codes {
    const sae_allocator *allocator;
    int64_t rows, row_capacity; /* offsets has row_capacity + 1 entries */
    int64_t nnz_capacity;
    int64_t *offsets;           /* (rows + 1) */
    int32_t *indices;           /* (offsets[rows]) */
    float *values;              /* (offsets[rows]) */
};

/* Make room for `rows` rows and `nnz` non-zeros, keeping the first `keep_nnz` entries and the
 * first `keep_rows` + 1 offsets. */
sae_status sae__codes_grow(sae_codes *c, int64_t rows, int64_t nnz, int64_t keep_rows,
                           int64_t keep_nnz);

#endif
