/*
 * patch_internal.h: the layout of sae_patch, shared by the files of lib/patch.
 *
 * One struct for every kind; a kind uses only its own fields (the others stay NULL / 0).
 * Every buffer is allocated at creation, so that an apply allocates nothing.
 */
#ifndef SAE_PATCH_INTERNAL_H
#define SAE_PATCH_INTERNAL_H

#include "../internal.h"

struct sae_patch {
    int32_t kind;               /* an sae_patch_kind_id */
    const sae_dict *dict;
    const sae_allocator *allocator;
    int64_t d_in, d_sae;
    int64_t max_tokens;         /* rows per block */
    sae_encoder *enc;           /* record (codes), splice, feature edits; sized for max_tokens */
    float *codes;               /* (max_tokens, d_sae) dense codes of a block */
    float *xa, *xb;             /* (max_tokens, d_in) reconstructions of a block */

    /* splice */
    bool keep_error;

    /* steer: the vector added to every row, (d_in) */
    float *steer;

    /* feature edits (ablate, clamp, edit): f'_S given per token by a row of `target` */
    int64_t n_feat;
    int32_t *feat;              /* (n_feat) the edited feature ids S */
    int64_t target_rows;        /* 1 (constant target) or the resample pool size */
    float *target;              /* (target_rows, n_feat) the new codes of S */
    sae_rng rng;                /* resample: the pool row of each token */
    bool row_norm;              /* per-row output normalisation: decode deltas with the encoder */
    float *dirs;                /* direct path: (n_feat, d_in) model-space directions d~_j */
    int64_t *delta_off;         /* row-norm path: (max_tokens + 1) CSR of f' - f */
    int32_t *delta_idx;         /* (max_tokens * n_feat) */
    float *delta_val;           /* (max_tokens * n_feat) */
    int64_t *zero_off;          /* (max_tokens + 1) zeros: the CSR of empty rows */

    /* record */
    uint32_t what;
    int64_t cap_tokens, cap_nnz, n_rec, nnz_rec;
    float *rec_x;               /* (cap_tokens, d_in) */
    int64_t *rec_off;           /* (cap_tokens + 1) */
    int32_t *rec_idx;           /* (cap_nnz) */
    float *rec_val;             /* (cap_nnz) */
};

/* Allocate a patch of `kind` for `dict` with the options read and checked, and its encoder and
 * dense-code block when `encoder` is set. On failure nothing is left allocated. (patch.c) */
sae_status sae__patch_new(sae_patch **out, int32_t kind, const sae_dict *dict,
                          const sae_patch_options *options, bool encoder);

/* Zeroed array of count elements of size bytes from the patch's allocator; NULL (ENOMEM set)
 * on failure. (patch.c) */
void *sae__patch_alloc(sae_patch *p, int64_t count, size_t size);

/* Check a feature id against the dictionary: SAE_ERANGE naming `what`. (patch.c) */
sae_status sae__patch_check_feature(const sae_dict *dict, int32_t feature, const char *what);

/* Apply one block of n <= max_tokens rows. (edit.c, record.c) */
sae_status sae__patch_edit_block(sae_patch *p, float *x, int64_t n, int64_t ld);
sae_status sae__patch_record_block(sae_patch *p, const float *x, int64_t n, int64_t ld);

/* Room for n more tokens in a recording patch (SAE_ERANGE when full). (record.c) */
sae_status sae__patch_record_room(const sae_patch *p, int64_t n);

#endif /* SAE_PATCH_INTERNAL_H */
