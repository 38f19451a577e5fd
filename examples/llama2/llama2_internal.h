/* llama2_internal.h: what the files of the llama2.c host share. */
#ifndef LLAMA2_INTERNAL_H
#define LLAMA2_INTERNAL_H

#include "llama2.h"

/* Set this thread's llama2_last_error() (printf-style) and return `status`. */
sae_status llama2__fail(sae_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* count * size bytes from `a` (64-byte aligned), NULL (message set) on overflow or failure. */
void *llama2__alloc(const sae_allocator *a, size_t count, size_t size);

/* Weights, pointing into one buffer read from the file. Matrices are row-major [out, in]. */
struct llama2_model {
    llama2_config c;
    int64_t head_size, kv_dim;
    const sae_allocator *allocator;
    float *data;                 /* everything after the header */
    const float *emb;            /* (vocab, dim) */
    const float *rms_att;        /* (L, dim) */
    const float *wq, *wk, *wv;   /* (L, dim, dim), (L, kv_dim, dim), (L, kv_dim, dim) */
    const float *wo;             /* (L, dim, dim) */
    const float *rms_ffn;        /* (L, dim) */
    const float *w1, *w2, *w3;   /* (L, hidden, dim), (L, dim, hidden), (L, hidden, dim) */
    const float *rms_final;      /* (dim) */
    const float *wcls;           /* (vocab, dim): emb when shared */
    char (*hook_name_text)[32];  /* (4 L) "resid_pre.0", ... */
    const char **hook_names;     /* (4 L) pointers into hook_name_text */
};

/* One pass over n_seq sequences of n_new tokens each, at positions pos0 .. pos0 + n_new - 1.
 * kc, vc: the KV cache of each sequence, (n_seq, L, cap, kv_dim), rows before pos0 filled by
 * earlier passes; this pass fills rows pos0 .. pos0 + n_new - 1. tokens: (n_seq, n_new).
 * logits: (n_seq, n_new, vocab) or NULL. The batched forward (pos0 = 0) and the KV-cache step
 * (n_seq = n_new = 1) are both this function, so they compute the same numbers. */
sae_status llama2__run(const llama2_model *m, const int32_t *tokens, int64_t n_seq, int64_t n_new,
                       int64_t pos0, float *kc, float *vc, int64_t cap, float *logits,
                       sae_hook_fn hook, void *hook_user);

#endif /* LLAMA2_INTERNAL_H */
