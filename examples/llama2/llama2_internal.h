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
    /* What the last llama2_model_forward kept for llama2_model_backward: the residual stream
     * (2 L + 1, n_seq · seq_len, dim) — for layer l, row block 2 l enters the attention (after
     * the resid_pre.l hook), 2 l + 1 enters the MLP (resid_pre.l + attn_out.l), 2 L enters the
     * final norm (after the last resid_post hook). The backward recomputes everything else of a
     * layer from these, so the tape costs (2 L + 1) n dim floats and attention probabilities are
     * never stored. tape_n_seq = 0: no valid tape (none yet, or the forward failed). */
    float *tape;
    int64_t tape_cap, tape_n_seq, tape_seq_len;
};

/* A generation: the next position and the KV cache of the positions before it. */
struct llama2_state {
    const llama2_model *m;
    int64_t pos;
    float *kc, *vc; /* (1, L, seq_len, kv_dim) */
};

/* out (n, d) = rmsnorm(x) ⊙ w: x / sqrt(mean(x²) + 1e-5) · w per row. */
void llama2__rmsnorm(float *out, const float *x, const float *w, int64_t n, int64_t d);

/* out (n, o) row stride ldo = x (n, i) · Wᵀ, W (o, i). */
void llama2__matmul(float *out, int64_t ldo, const float *x, const float *W, int64_t n, int64_t o,
                    int64_t i);

/* Rotate pairs (2i, 2i+1) of each head of v (width d, head size hs) by pos · 1/10000^(2i/hs).
 * A negative pos applies the inverse (= transposed) rotation, which the backward pass uses. */
void llama2__rope(float *v, int64_t d, int64_t hs, int64_t pos);

/* p (pos + 1) = softmax over t <= pos of q_h · k_t / sqrt(hs), the attention of one head of query
 * position pos; qh (hs); k (pos + 1, kv_dim) keys, this head's group at column offset off. */
void llama2__attn_probs(const llama2_model *m, float *p, const float *qh, const float *k,
                        int64_t off, int64_t pos);

/* One pass over n_seq sequences of n_new tokens each, at positions pos0 .. pos0 + n_new - 1.
 * kc, vc: the KV cache of each sequence, (n_seq, L, cap, kv_dim), rows before pos0 filled by
 * earlier passes; this pass fills rows pos0 .. pos0 + n_new - 1. tokens: (n_seq, n_new).
 * logits: (n_seq, n_new, vocab) or NULL. The batched forward (pos0 = 0) and the KV-cache step
 * (n_seq = n_new = 1) are both this function, so they compute the same numbers. tape: NULL, or
 * (2 L + 1, n_seq · n_new, dim) receiving the residual stream as llama2_model.tape describes. */
sae_status llama2__run(const llama2_model *m, const int32_t *tokens, int64_t n_seq, int64_t n_new,
                       int64_t pos0, float *kc, float *vc, int64_t cap, float *logits,
                       sae_hook_fn hook, void *hook_user, float *tape);

/* llama2_tokenizer_encode with the reference twin of its merges, run.c's loop (tokenizer.c),
 * for the test that both give the same tokens. */
sae_status llama2__tokenizer_encode_reference(const llama2_tokenizer *t, const char *text,
                                              int bos, int eos, int32_t *tokens, int64_t cap,
                                              int64_t *n_out);

#endif /* LLAMA2_INTERNAL_H */
