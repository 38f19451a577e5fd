/*
 * llama2.h: the llama2.c host — a small library (not part of libsae; static for C programs,
 * libsae_llama2.so for Python) that runs llama2.c checkpoints (../shared/design/FORMATS.md,
 * "llama2.c checkpoint") and their tokenizers, generates text as llama2.c's run.c, and exposes
 * the model to libsae as a `sae_host` with hook points resid_pre.L, attn_out.L, mlp_out.L and
 * resid_post.L.
 *
 * Errors: every fallible call returns a sae_status; the detail is in llama2_last_error()
 * (per thread). Memory comes from the sae_allocator given at load (NULL: libsae's default).
 * Thread safety: llama2_model_forward keeps what llama2_model_backward needs in the model, so a
 * model's forward and backward (and its host) are used by one thread at a time; generation
 * states may share a model across threads (llama2_state_step, llama2_state_prefill and
 * llama2_generate only read it), a state is used by one thread at a time; a tokenizer is
 * read-only after loading.
 */
#ifndef LLAMA2_H
#define LLAMA2_H

#include <stddef.h>
#include <stdint.h>

#include <sae/core.h>
#include <sae/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The 7 int32 of a checkpoint header; vocab_size is always positive here (the sign in the file
 * only says whether a separate classifier follows). */
typedef struct llama2_config {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} llama2_config;

typedef struct llama2_model llama2_model;
typedef struct llama2_state llama2_state;
typedef struct llama2_tokenizer llama2_tokenizer;

/* Hook kinds; the hook id of (layer L, kind k) is 4 L + k, in the order they run. */
enum llama2_hook_kind {
    LLAMA2_HOOK_RESID_PRE = 0,
    LLAMA2_HOOK_ATTN_OUT = 1,
    LLAMA2_HOOK_MLP_OUT = 2,
    LLAMA2_HOOK_RESID_POST = 3
};

/* Message of the last failed llama2_* call on this thread ("" if none). */
const char *llama2_last_error(void);

/* Load a checkpoint. Its size must be exactly what the header implies (with or without the
 * separate classifier), and the dimensions possible (positive, heads dividing dim, n_kv_heads
 * dividing n_heads, even head size): otherwise SAE_EFORMAT. SAE_EIO if it cannot be read. */
sae_status llama2_model_load(llama2_model **out, const char *path, const sae_allocator *allocator);
void llama2_model_free(llama2_model *m);
const llama2_config *llama2_model_config(const llama2_model *m);

/* Causal forward over whole sequences. tokens: (n_seq, seq_len), ids in [0, vocab);
 * 1 <= seq_len <= config seq_len. logits: (n_seq, seq_len, vocab) or NULL. hook (or NULL) is
 * called at every hook point with the (n_seq · seq_len, dim) activations. Keeps the residual
 * stream for llama2_model_backward in the model ((2 n_layers + 1) · n_seq · seq_len · dim floats,
 * until the next forward or llama2_model_free). */
sae_status llama2_model_forward(llama2_model *m, const int32_t *tokens, int64_t n_seq,
                                int64_t seq_len, float *logits, sae_hook_fn hook,
                                void *hook_user);

/* The backward pass of the last llama2_model_forward (same n_seq, seq_len; SAE_ESHAPE
 * otherwise, SAE_EINVAL if there was none or it failed): from d_logits (n_seq, seq_len, vocab),
 * the gradient of the loss at hook point h goes to d_hooks[h] ((n_seq · seq_len, dim), or NULL
 * when not wanted; d_hooks has 4 n_layers entries). Hooks count as the identity (host.h).
 * stop_grad (4 n_layers flags, or NULL): a hook point h with stop_grad[h] != 0 is a constant —
 * d_hooks[h] still receives the gradient arriving at h, but none flows on to what computed h, so
 * every hook before h receives only the gradient of paths that avoid h. Paths in a layer L:
 * resid_pre.L → attention → attn_out.L → (+) → MLP → mlp_out.L → (+) → resid_post.L, with the
 * residual skipping each block, and resid_post.L → resid_pre.L+1. Hence stopping resid_pre.L+1
 * or resid_post.L cuts everything below; stopping attn_out.l and mlp_out.l for all l > L (and
 * mlp_out.L) leaves at attn_out.L the direct path — the final norm and classifier only — which
 * then equals the gradient at resid_post.L and at resid_post of the last layer.
 * Cost: about two forwards (each layer is recomputed from the kept residual stream); nothing
 * below the lowest wanted hook is computed. */
sae_status llama2_model_backward(llama2_model *m, int64_t n_seq, int64_t seq_len,
                                 const float *d_logits, float *const *d_hooks,
                                 const uint8_t *stop_grad);

/* The backward pass of the last llama2_model_forward from a gradient `seed`
 * ((n_seq · seq_len, dim)) given at hook point seed_hook instead of on the logits: the gradient of
 * ⟨seed, x_seed_hook⟩ at the wanted hooks, with the rules of llama2_model_backward
 * (sae_host_backward_from_fn in host.h). Cost: the layers from the seed's down to the lowest
 * wanted hook. SAE_ERANGE for a seed hook outside [0, 4 n_layers). */
sae_status llama2_model_backward_from(llama2_model *m, int64_t n_seq, int64_t seq_len,
                                      int32_t seed_hook, const float *seed,
                                      float *const *d_hooks, const uint8_t *stop_grad);

/* The model as a libsae host with forward, backward and backward_from (borrowed: the model must
 * outlive the table). */
void llama2_model_host(llama2_model *m, sae_host *out);

/* Token-by-token generation with a KV cache: each step runs `token` at the next position (0,
 * 1, ...) and writes its logits (vocab). Hooks see (1, dim) buffers. A prefill runs n tokens
 * (a prompt) at the next n positions in one pass: logits (n, vocab) or NULL, hooks see (n, dim)
 * buffers, and the numbers are those of n steps; a step is a prefill of one token. SAE_ERANGE
 * when the tokens do not fit in the context (seq_len) or an id is outside [0, vocab). */
sae_status llama2_state_create(llama2_state **out, const llama2_model *m);
void llama2_state_free(llama2_state *s);
void llama2_state_reset(llama2_state *s);
sae_status llama2_state_step(llama2_state *s, int32_t token, float *logits, sae_hook_fn hook,
                             void *hook_user);
sae_status llama2_state_prefill(llama2_state *s, const int32_t *tokens, int64_t n,
                                float *logits, sae_hook_fn hook, void *hook_user);

/* How llama2_generate picks each next token, as llama2.c's run.c: temperature 0 is greedy
 * (argmax); otherwise softmax(logits / temperature), then a draw among all tokens (top_p <= 0 or
 * >= 1) or among the smallest most-probable set whose mass exceeds top_p, with run.c's xorshift
 * generator started at seed (>= 1; run.c's -s). */
typedef struct llama2_sampling {
    float temperature, top_p;
    uint64_t seed;
} llama2_sampling;

/* Generate from the start of the context, as run.c: reset s, run the prompt (n_prompt >= 1 ids,
 * usually BOS first) in one prefill, then sample a token and run it, until `steps` positions
 * have run (n_prompt <= steps <= seq_len) or BOS is sampled. tokens (room for steps + 1 ids)
 * receives the prompt and then the sampled tokens (not the final BOS); *n_tokens their count.
 * hook (or NULL) runs on every pass. SAE_ERANGE for steps or n_prompt out of range, SAE_EINVAL
 * for a negative or non-finite temperature or a zero seed when sampling. */
sae_status llama2_generate(llama2_state *s, const int32_t *prompt, int64_t n_prompt,
                           int64_t steps, const llama2_sampling *sampling, sae_hook_fn hook,
                           void *hook_user, int32_t *tokens, int64_t *n_tokens);

/* Load a tokenizer of `vocab_size` tokens (the model's). SAE_EFORMAT on a truncated file, an
 * impossible length or trailing bytes. */
sae_status llama2_tokenizer_load(llama2_tokenizer **out, const char *path, int32_t vocab_size,
                                 const sae_allocator *allocator);
void llama2_tokenizer_free(llama2_tokenizer *t);

/* Encode UTF-8 text as llama2.c run.c does: optional BOS (1), a dummy-prefix space when the text
 * is not empty, code points that are tokens else their bytes as <0xNN> tokens, then the
 * highest-scoring merges of adjacent pairs until none applies; optional EOS (2).
 * tokens: room for `cap` ids (strlen(text) + 3 always suffices). SAE_ERANGE if cap is short. */
sae_status llama2_tokenizer_encode(const llama2_tokenizer *t, const char *text, int bos, int eos,
                                   int32_t *tokens, int64_t cap, int64_t *n_out);

/* The text of `token` following `prev`, as run.c prints it: byte tokens <0xNN> give that byte,
 * and after BOS a leading space is dropped. Borrowed from t. NULL for an id
 * out of range. */
const char *llama2_tokenizer_piece(const llama2_tokenizer *t, int32_t prev, int32_t token);

#ifdef __cplusplus
}
#endif

#endif /* LLAMA2_H */
