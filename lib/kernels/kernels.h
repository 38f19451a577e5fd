/*
 * kernels.h: the numeric kernels of the encoder, each with a naive reference twin that the
 * tests compare it against on random shapes (tests/test_kernels.c).
 */
#ifndef SAE_KERNELS_H
#define SAE_KERNELS_H

#include "../internal.h"

/* ---- top-k selection (topk.c) ---------------------------------------------------------------
 * The k largest of v[0..n) (1 <= k <= n). Ties go to the lower index, so the result is a
 * function of the values alone. Output: idx[0..k) ascending, val[i] = v[idx[i]].
 * scratch: room for k (value, index) pairs, SAE_TOPK_SCRATCH_BYTES(k) bytes.
 * With NaN in the row, which entries are kept is unspecified (NaN propagates to the codes). */
#define SAE_TOPK_SCRATCH_BYTES(k) ((size_t)(k) * 8u)
void sae__topk_select(const float *v, int64_t n, int64_t k, int32_t *idx, float *val,
                      void *scratch);
/* Reference: k passes, each taking the best entry not yet taken. O(n k), no allocation. */
void sae__topk_select_ref(const float *v, int64_t n, int64_t k, int32_t *idx, float *val);

/* ---- weight-streaming product for small batches (gemm_stream.c) ----------------------------
 *   C = A B        A: (m, k) lda >= k;  B: (k, n) ldb >= n;  C: (m, n) ldc >= n
 * For small m (a decode step, a handful of tokens) the cost is reading B once: this kernel
 * streams B row by row, each thread owning a band of columns, and skips rows of B whose
 * coefficients in A are all zero (sparse codes decode for free). m <= SAE_STREAM_MAX_M. */
#define SAE_STREAM_MAX_M 16
void sae__sgemm_stream(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc, int n_threads);
void sae__sgemm_ref(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float *C, int64_t ldc);

/* ---- tiled product for large shapes (gemm_tiles.c) -----------------------------------------
 *   C = alpha op(A) op(B) + beta C    op(A): (m, k);  op(B): (k, n);  C: (m, n) ldc >= n
 * C is cut into tiles of tile_m rows and tile_n columns (< 1: the whole extent); the threads
 * take tiles dynamically, each tile one single-threaded BLAS call, then
 * epilogue(user, r0, r1, c0, c1) on the tile C[r0:r1, c0:c1] just written (NULL: none), by
 * the same thread. Epilogues of different tiles may run concurrently. The first BLAS error is
 * returned. */
typedef void (*sae__tile_fn)(void *user, int64_t r0, int64_t r1, int64_t c0, int64_t c1);
sae_status sae__sgemm_tiles(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                            float beta, float *C, int64_t ldc, int64_t tile_m, int64_t tile_n,
                            int n_threads, sae__tile_fn epilogue, void *user);

/* ---- activation epilogue (activation.c) -----------------------------------------------------
 * Turns one row of the encoder product t = x' W_enc (F values) into pre-activations and codes.
 * Everything a dictionary's conventions change is in `sae__act_params`. */
typedef struct sae__act_params {
    int32_t arch;              /* sae_arch */
    int64_t F, k;
    bool relu_before_topk;
    bool use_threshold;        /* TopK in threshold mode */
    const float *b_enc;        /* (F) or NULL */
    const float *threshold;    /* (F) or NULL */
    const float *rescale;      /* (F) decoder norms when rescaling by them, else NULL */
    const float *b_gate, *b_mag, *exp_r_mag; /* Gated */
} sae__act_params;

/* t: (F) row of x' W_enc, overwritten with scratch values.
 * pre: (F) or NULL: raw pre-activations (Gated: magnitude pre-activation). Must not alias t.
 * f: (F) or NULL: dense codes. May be t itself (the codes then replace the product in place);
 *    NULL leaves the dense codes in t for every architecture but TopK.
 * idx/val: for TopK (not in threshold mode) (k) entries each, required: the selected ids
 *          (ascending) and their code values (possibly 0 after ReLU).
 * topk_scratch: SAE_TOPK_SCRATCH_BYTES(k) bytes for TopK, else unused.
 * Returns the number of entries written to idx/val (k for TopK, 0 otherwise). */
int64_t sae__act_row(const sae__act_params *p, float *t, float *pre, float *f, int32_t *idx,
                     float *val, void *topk_scratch);
/* The same formulas written plainly (t is not modified; f required; TopK k <= SAE_REF_MAX_K). */
#define SAE_REF_MAX_K 1024
void sae__act_row_ref(const sae__act_params *p, const float *t, float *pre, float *f);

#endif /* SAE_KERNELS_H */
