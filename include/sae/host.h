/**
 * @file host.h
 * @brief `sae_host`: the callback table through which libsae reaches a language model.
 *
 * @defgroup host Model hosts
 * @brief Run a model with hooks installed, and take gradients at its hook points.
 *
 * libsae never runs a language model itself. A *host* is a table of callbacks that the caller
 * fills in: an inference engine, a PyTorch model reached through ctypes, or the llama2.c host in
 * examples/llama2. It gives the model's dimensions, its *hook points* and two passes:
 *
 * - **forward**: run a batch of token sequences (n_seq, seq_len) and return the logits
 *   (n_seq, seq_len, vocab). At every hook point the host calls a ::sae_hook_fn with the
 *   activations there, a row-major [n_tokens, d_model] buffer (n_tokens = n_seq · seq_len, row
 *   s · seq_len + t is token t of sequence s), which the hook may read (recording) or change in
 *   place (patching); the host continues with the changed values.
 * - **backward** (optional): from a gradient on the logits of the last forward, deliver the
 *   gradient of that loss at chosen hook points. A hook point marked stop-gradient passes no
 *   gradient upstream (its activations are treated as constants), so only paths that avoid it
 *   contribute to the gradients before it. A hook callback counts as the identity in the backward
 *   pass: the gradient flows through a patch unchanged (the error term of a splice is detached).
 *
 * Hook points are named `kind.layer`: `resid_pre.L` (the residual stream entering layer L),
 * `attn_out.L` (the attention output added to it), `mlp_out.L` (the MLP output added to it),
 * `resid_post.L` (the residual stream leaving layer L). A host may offer other names. A hook id
 * is an index into @ref sae_host.hook_names.
 *
 * Thread safety: a host's callbacks are called from the thread that calls sae_host_forward() or
 * sae_host_backward(); whether one host may run on several threads at once is the host's choice
 * (a host with a backward pass keeps the state of its last forward, so one thread at a time).
 * @{
 */
#ifndef SAE_HOST_H
#define SAE_HOST_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief Called by a host at each hook point of a forward pass.
 *
 * The signature of sae_patch_apply() after its first argument, so that a patch (or a list of
 * them) can be installed directly.
 * @param[in] user The pointer given with the hook.
 * @param[in] hook_id Which hook point (index into @ref sae_host.hook_names).
 * @param[in,out] x (n_tokens, d_model) activations, row stride @p ld; may be changed in place.
 * @param[in] n_tokens Rows of @p x.
 * @param[in] ld Leading dimension of @p x (>= d_model).
 * @return ::SAE_OK, or an error that stops the forward pass and is returned by it.
 */
typedef sae_status (*sae_hook_fn)(void *user, int32_t hook_id, float *x, int64_t n_tokens,
                                  int64_t ld);

/**
 * @brief The forward pass of a host.
 * @param[in] user @ref sae_host.user.
 * @param[in] tokens (n_seq, seq_len) token ids, each in [0, vocab_size).
 * @param[in] n_seq Sequences (>= 1).
 * @param[in] seq_len Tokens per sequence (1 .. max_seq_len); position 0 is the first token.
 * @param[out] logits (n_seq, seq_len, vocab_size), or NULL when only the hooks matter.
 * @param[in] hook Called at each hook point in the order of the computation, or NULL.
 * @param[in] hook_user Passed to @p hook unchanged.
 * @return ::SAE_OK or an error (the error of @p hook unchanged).
 */
typedef sae_status (*sae_host_forward_fn)(void *user, const int32_t *tokens, int64_t n_seq,
                                          int64_t seq_len, float *logits, sae_hook_fn hook,
                                          void *hook_user);

/**
 * @brief The backward pass of a host, for the batch of its last forward pass.
 * @param[in] user @ref sae_host.user.
 * @param[in] n_seq Sequences of the last forward (checked by the host).
 * @param[in] seq_len Tokens per sequence of the last forward (checked by the host).
 * @param[in] d_logits (n_seq, seq_len, vocab_size) gradient of the loss on the logits.
 * @param[out] d_hooks (n_hooks) pointers: entry h is NULL (not wanted) or an
 *             (n_seq · seq_len, d_model) buffer that receives the gradient at hook point h.
 * @param[in] stop_grad (n_hooks) flags, non-zero: stop the gradient at hook h; or NULL.
 * @return ::SAE_OK or an error.
 */
typedef sae_status (*sae_host_backward_fn)(void *user, int64_t n_seq, int64_t seq_len,
                                           const float *d_logits, float *const *d_hooks,
                                           const uint8_t *stop_grad);

/**
 * @brief The backward pass of a host from a gradient given at one hook point, for the batch of
 *        its last forward pass (optional; the edges of a circuit need it).
 *
 * The gradient of the scalar ⟨seed, x_s⟩, x_s the activations at hook @p seed_hook in the last
 * forward, with respect to the activations at the other hook points: what sae_host_backward()
 * computes when the loss is ⟨seed, x_s⟩ instead of a function of the logits. The same rules
 * hold: hooks count as the identity, a stopped hook receives the gradient arriving at it and
 * passes none on (stopping @p seed_hook itself passes nothing on). d_hooks[seed_hook] receives
 * the seed; hook points that x_s does not depend on (those after it) receive zeros. At a hook
 * whose activations are added to a stream (`attn_out.L`, `mlp_out.L`), the seed flows into what
 * computed them only, not into the stream they are added to.
 * @param[in] user @ref sae_host.user.
 * @param[in] n_seq Sequences of the last forward (checked by the host).
 * @param[in] seq_len Tokens per sequence of the last forward (checked by the host).
 * @param[in] seed_hook The hook point of the seed, in [0, n_hooks).
 * @param[in] seed (n_seq · seq_len, d_model) the gradient given at @p seed_hook.
 * @param[out] d_hooks (n_hooks) pointers: NULL or (n_seq · seq_len, d_model) buffers.
 * @param[in] stop_grad (n_hooks) flags, or NULL.
 * @return ::SAE_OK or an error.
 */
typedef sae_status (*sae_host_backward_from_fn)(void *user, int64_t n_seq, int64_t seq_len,
                                                int32_t seed_hook, const float *seed,
                                                float *const *d_hooks,
                                                const uint8_t *stop_grad);

/**
 * @brief A model as libsae sees it. Initialise with ::SAE_HOST_INIT, then fill in every field.
 *
 * The library reads min(struct_size, sizeof(sae_host)) bytes, so an older caller's table still
 * works when fields are appended. The table and everything it points to are borrowed: they must
 * outlive every call that receives the table.
 */
typedef struct sae_host {
    uint32_t struct_size;            /**< sizeof(sae_host). */
    int32_t n_hooks;                 /**< Number of hook points (>= 0). */
    int64_t d_model;                 /**< Width of the activations at every hook point. */
    int64_t vocab_size;              /**< Logits per token. */
    int64_t n_layers;                /**< Transformer layers (informative). */
    int64_t max_seq_len;             /**< Longest sequence the forward pass accepts. */
    const char *const *hook_names;   /**< (n_hooks) distinct NUL-terminated names. */
    sae_host_forward_fn forward;     /**< The forward pass (required). */
    sae_host_backward_fn backward;   /**< The backward pass, or NULL if the host has none. */
    void *user;                      /**< Passed to the callbacks. */
    sae_host_backward_from_fn backward_from; /**< Backward from a hook point, or NULL. */
} sae_host;

/** @brief Initialiser for ::sae_host (everything else zero / NULL). */
#define SAE_HOST_INIT {sizeof(sae_host), 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL}

/**
 * @brief Check a host table: struct_size, positive dimensions, a forward callback, and
 *        n_hooks distinct non-empty hook names.
 * @param[in] host The table.
 * @return ::SAE_OK, or ::SAE_EINVAL with a message naming the bad field.
 */
SAE_API sae_status sae_host_check(const sae_host *host);

/**
 * @brief Look up a hook point by name.
 * @param[out] out_id Its index in @ref sae_host.hook_names (-1 on failure).
 * @param[in] host The table (checked as by sae_host_check()).
 * @param[in] name E.g. "resid_post.3".
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOTFOUND (the message lists a few valid names).
 */
SAE_API sae_status sae_host_find_hook(int32_t *out_id, const sae_host *host, const char *name);

/**
 * @brief Run the host's forward pass after checking the arguments.
 *
 * Checks the table, the shape (n_seq >= 1, 1 <= seq_len <= max_seq_len) and that every token is
 * in [0, vocab_size) before the host sees anything.
 * @param[in] host The table.
 * @param[in] tokens (n_seq, seq_len) token ids.
 * @param[in] n_seq Sequences.
 * @param[in] seq_len Tokens per sequence.
 * @param[out] logits (n_seq, seq_len, vocab_size), or NULL.
 * @param[in] hook Called at each hook point, or NULL.
 * @param[in] hook_user Passed to @p hook.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (a token id), or the error of the
 *         host or of the hook.
 */
SAE_API sae_status sae_host_forward(const sae_host *host, const int32_t *tokens, int64_t n_seq,
                                    int64_t seq_len, float *logits, sae_hook_fn hook,
                                    void *hook_user);

/**
 * @brief Run the host's backward pass for its last forward pass after checking the arguments.
 * @param[in] host The table.
 * @param[in] n_seq Sequences of the last forward.
 * @param[in] seq_len Tokens per sequence of the last forward.
 * @param[in] d_logits (n_seq, seq_len, vocab_size) gradient on the logits.
 * @param[out] d_hooks (n_hooks) pointers, NULL or (n_seq · seq_len, d_model) buffers.
 * @param[in] stop_grad (n_hooks) flags, or NULL for none.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_EUNSUPPORTED (no backward callback), or
 *         the error of the host.
 */
SAE_API sae_status sae_host_backward(const sae_host *host, int64_t n_seq, int64_t seq_len,
                                     const float *d_logits, float *const *d_hooks,
                                     const uint8_t *stop_grad);

/**
 * @brief Run the host's backward pass from a gradient at a hook point (see
 *        ::sae_host_backward_from_fn) for its last forward pass, after checking the arguments.
 * @param[in] host The table.
 * @param[in] n_seq Sequences of the last forward.
 * @param[in] seq_len Tokens per sequence of the last forward.
 * @param[in] seed_hook The hook point of the seed, in [0, n_hooks).
 * @param[in] seed (n_seq · seq_len, d_model) gradient at @p seed_hook.
 * @param[out] d_hooks (n_hooks) pointers, NULL or (n_seq · seq_len, d_model) buffers.
 * @param[in] stop_grad (n_hooks) flags, or NULL for none.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (seed_hook), ::SAE_EUNSUPPORTED
 *         (no backward_from callback), or the error of the host.
 */
SAE_API sae_status sae_host_backward_from(const sae_host *host, int64_t n_seq, int64_t seq_len,
                                          int32_t seed_hook, const float *seed,
                                          float *const *d_hooks, const uint8_t *stop_grad);

/**
 * @brief Mean cross-entropy of logits at target tokens, and its gradient on the logits: the
 *        usual scalar to backpropagate with sae_host_backward().
 *
 * CE = (1/N) Σ_{i: targets[i] >= 0} (logsumexp(logits_i) − logits_i[targets[i]]), N the number
 * of counted rows (computed in double). Gradient: row i counted, (softmax(logits_i) − e_t) / N;
 * otherwise 0. For next-token loss of sequences, targets[s, t] = tokens[s, t + 1] and −1 at the
 * last position.
 * @param[out] out_ce The mean cross-entropy (nats).
 * @param[out] d_logits (n_tokens, vocab_size) gradient of CE, or NULL.
 * @param[in] logits (n_tokens, vocab_size).
 * @param[in] targets (n_tokens) target ids in [0, vocab_size), or negative: row not counted.
 * @param[in] n_tokens Rows (>= 1).
 * @param[in] vocab_size Logits per row (>= 1).
 * @return ::SAE_OK, ::SAE_EINVAL (NULL pointer, no counted row), ::SAE_ESHAPE,
 *         ::SAE_ERANGE (a target >= vocab_size), ::SAE_ENUMERIC (a non-finite loss: NaN or
 *         +Inf in a counted row, or -Inf at a target; -Inf elsewhere masks that token).
 */
SAE_API sae_status sae_logits_ce(float *out_ce, float *d_logits, const float *logits,
                                 const int32_t *targets, int64_t n_tokens, int64_t vocab_size);

/**
 * @brief Logit difference between two tokens at the last position, averaged over sequences,
 *        and its gradient on the logits.
 *
 * diff = (1/n_seq) Σ_s (logits[s, seq_len − 1, token_a] − logits[s, seq_len − 1, token_b]);
 * the gradient is +1/n_seq at token_a and −1/n_seq at token_b of each last position, 0
 * elsewhere (all 0 if the tokens are equal).
 * @param[out] out_diff The mean difference.
 * @param[out] d_logits (n_seq, seq_len, vocab_size) gradient of diff, or NULL.
 * @param[in] logits (n_seq, seq_len, vocab_size).
 * @param[in] n_seq Sequences (>= 1).
 * @param[in] seq_len Tokens per sequence (>= 1).
 * @param[in] vocab_size Logits per token (>= 1).
 * @param[in] token_a Token whose logit counts positively, in [0, vocab_size).
 * @param[in] token_b Token whose logit counts negatively, in [0, vocab_size).
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (a token id).
 */
SAE_API sae_status sae_logits_diff(float *out_diff, float *d_logits, const float *logits,
                                   int64_t n_seq, int64_t seq_len, int64_t vocab_size,
                                   int32_t token_a, int32_t token_b);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_HOST_H */
