/*
 * supervised_internal.h: the layout of sae_supervised and the helpers the files of
 * lib/supervised share.
 */
#ifndef SAE_SUPERVISED_INTERNAL_H
#define SAE_SUPERVISED_INTERNAL_H

#include "../internal.h"

struct sae_supervised {
    const sae_allocator *allocator;
    int64_t d;          /* width of an activation */
    int32_t n_attrs;
    int64_t n_codes;    /* Σ_A n_values[A] */
    int32_t *n_values;  /* (n_attrs) */
    int64_t *first;     /* (n_attrs) code index of value 0 of each attribute */
    float *bias;        /* (d) u_bias */
    float *codes;       /* (n_codes, d) u_{A,v}, row first[A] + v */
};

/* Check a label matrix (n, n_attrs), ldl >= n_attrs, against n_values (each >= 1): SAE_EINVAL
 * for NULL or bad counts, SAE_ESHAPE for ldl, SAE_ERANGE naming the first bad label. `what`
 * names the caller in the message. (labels.c) */
sae_status sae__check_labels(const int32_t *labels, int64_t ldl, int64_t n, int32_t n_attrs,
                             const int32_t *n_values, const char *what);

/* Naive twin of sae__lstsq_min_norm (internal.h): X = (AᵀA)⁺ AᵀB, the pseudo-inverse of the
 * Gram matrix by cyclic Jacobi rotations, in double; same shapes and strides. Eigenvalues below
 * 1e-10 · λ_max count as zero. For the tests. (lstsq_ref.c) */
sae_status sae__lstsq_min_norm_ref(double *X, int64_t ldx, const double *A, int64_t lda,
                                   const double *B, int64_t ldb, int64_t m, int64_t n, int64_t k,
                                   const sae_allocator *allocator);

#endif /* SAE_SUPERVISED_INTERNAL_H */
