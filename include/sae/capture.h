/**
 * @file capture.h
 * @brief Activations from a host model: a source that runs the model as it is read, capture to
 *        a safetensors file, and the loss recovered when a dictionary is spliced in.
 *
 * @defgroup capture Capture and loss recovered
 * @brief Run token sequences through a ::sae_host and use the activations at its hook points.
 *
 * All three take token sequences as a row-major (n_seq, seq_len) array of int32 ids in
 * [0, vocab_size), borrowed for the call (for the source: for its life), and run them through
 * sae_host_forward() a batch of whole sequences at a time, so that memory depends on the batch,
 * never on n_seq. Activation row (s, t) is token t of sequence s.
 *
 * *Skipping BOS.* Position 0 of a sequence usually holds the beginning-of-sequence token, whose
 * residual-stream activations are outliers (often 10-100 times the norm of the others) that
 * SAEs are usually trained without. With skip_bos the source and the capture leave out the rows
 * of position 0 (a sequence then gives seq_len - 1 rows), and the loss recovered leaves
 * position 0 clean in every intervention and out of the mean activation.
 *
 * Thread safety: each call uses the host from the calling thread only (see @ref host); a host
 * source is one thread at a time, like every source. A dictionary may be shared.
 * @{
 */
#ifndef SAE_CAPTURE_H
#define SAE_CAPTURE_H

#include "dict.h"
#include "host.h"
#include "source.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief A source of the activations at one hook point of a host, computed as they are read.
 *
 * Rows come sequence by sequence: the forward pass runs @p seqs_per_batch sequences at a time
 * (the last batch may be shorter), and the activations at the hook point are handed out in the
 * order (s, t), without the rows of position 0 when @p skip_bos is set, so one epoch has
 * n_seq (seq_len - skip_bos) rows (sae_source_rows()). With
 * @ref sae_source_options.shuffle_buffer_rows = S > 0 they pass through a shuffle buffer of S
 * rows, as for a callback source (see @ref source). The source can restart: a looping source
 * runs the sequences again for each epoch, and sae_source_reset() is supported.
 * @ref sae_source_options.read_chunk_rows, raw_d and tensor_name are ignored: the source reads
 * one forward batch at a time.
 *
 * Memory: S + seqs_per_batch (seq_len - skip_bos) rows of d_model floats, plus what the host
 * needs for one batch, whatever n_seq is. The logits are not asked for (the host gets NULL).
 *
 * The host, the hook id and every token are checked here; the forward passes run inside
 * sae_source_next(), which returns the host's errors (and ::SAE_EINVAL if the host's pass did
 * not reach the hook point, or called it with a buffer of the wrong size).
 * @param[out] out The source; free with sae_source_free().
 * @param[in] host The model; the table and what it points to must outlive the source.
 * @param[in] hook_id Index into @ref sae_host.hook_names (e.g. from sae_host_find_hook()).
 * @param[in] tokens (n_seq, seq_len) token ids, borrowed: must outlive the source unchanged.
 * @param[in] n_seq Sequences (>= 1).
 * @param[in] seq_len Tokens per sequence (1 .. max_seq_len; >= 2 with @p skip_bos).
 * @param[in] seqs_per_batch Sequences per forward pass; 0: as many as make at most 2048 tokens
 *            (at least 1). At most n_seq are used.
 * @param[in] skip_bos 1: leave out the rows of position 0; 0: keep every row.
 * @param[in] options Settings (loop, seed, shuffle_buffer_rows, allocator), or NULL.
 * @return ::SAE_OK; ::SAE_EINVAL (NULL arguments, bad options or host, skip_bos not 0 or 1);
 *         ::SAE_ERANGE (hook id outside [0, n_hooks), a token outside [0, vocab_size), with its
 *         position); ::SAE_ESHAPE (n_seq, seq_len); ::SAE_ENOMEM.
 */
SAE_API sae_status sae_source_from_host(sae_source **out, const sae_host *host, int32_t hook_id,
                                        const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                                        int64_t seqs_per_batch, int32_t skip_bos,
                                        const sae_source_options *options);

/** @brief Settings of sae_host_capture(). Initialise with ::SAE_CAPTURE_OPTIONS_INIT. */
typedef struct sae_capture_options {
    uint32_t struct_size;   /**< sizeof(sae_capture_options). */
    int32_t skip_bos;       /**< 1: leave out position 0 (the position axis has seq_len - 1
                                 entries); 0: keep it. */
    int64_t seqs_per_batch; /**< Sequences per forward pass; 0: as many as make at most 2048
                                 tokens (at least 1). */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_capture_options;

/** @brief Initialiser for ::sae_capture_options. */
#define SAE_CAPTURE_OPTIONS_INIT {sizeof(sae_capture_options), 0, 0, NULL}

/**
 * @brief Run token sequences through a host and write the activations at some of its hook
 *        points to a safetensors file, streamed and atomically.
 *
 * The file holds @p n_tensors F32 tensors. With @p n_stack = 0, tensor i is the hook point
 * hook_ids[i], of shape [n_seq, T, d_model]; with @p n_stack >= 1 it stacks the n_stack hook
 * points hook_ids[i n_stack .. i n_stack + n_stack - 1] along a third axis, shape
 * [n_seq, T, n_stack, d_model] (e.g. one tensor per hook kind with a layer axis). T is seq_len,
 * or seq_len - 1 with skip_bos. The `__metadata__` says what each tensor holds: key `hooks.<name>`,
 * value the hook names of its hook points joined by commas; key `skip_bos`, "0" or "1".
 *
 * The header is written first (every size is known), then each forward batch's activations
 * go to their place in every tensor: memory is one batch's activations (seqs_per_batch · T ·
 * (number of hook ids) · d_model floats) plus the host's, whatever n_seq is. The file is
 * written under a temporary name beside @p path and renamed over it once complete and synced;
 * on any failure (a bad argument, the host, the disk) @p path is left as it was and no
 * temporary file remains.
 * @param[in] path Output file (replaced atomically).
 * @param[in] host The model.
 * @param[in] tokens (n_seq, seq_len) token ids.
 * @param[in] n_seq Sequences (>= 1).
 * @param[in] seq_len Tokens per sequence (1 .. max_seq_len; >= 2 with skip_bos).
 * @param[in] n_tensors Tensors to write (>= 1).
 * @param[in] names (n_tensors) distinct tensor names (valid UTF-8, not `__metadata__`).
 * @param[in] n_stack 0: one hook point per tensor, no stacking axis; >= 1: hook points per
 *            tensor, stacked.
 * @param[in] hook_ids (n_tensors · max(n_stack, 1)) hook ids, row i for tensor i; an id may
 *            appear more than once.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK; ::SAE_EINVAL (NULL arguments, bad options or host, duplicate or invalid
 *         names, a hook point the host's pass did not reach); ::SAE_ERANGE (a hook id or a
 *         token); ::SAE_ESHAPE; ::SAE_EIO; ::SAE_ENOMEM; or the error of the host.
 */
SAE_API sae_status sae_host_capture(const char *path, const sae_host *host, const int32_t *tokens,
                                    int64_t n_seq, int64_t seq_len, int32_t n_tensors,
                                    const char *const *names, int32_t n_stack,
                                    const int32_t *hook_ids, const sae_capture_options *options);

/** @brief Settings of sae_dict_loss_recovered(). Initialise with
 *         ::SAE_LOSS_RECOVERED_OPTIONS_INIT. */
typedef struct sae_loss_recovered_options {
    uint32_t struct_size;   /**< sizeof(sae_loss_recovered_options). */
    int32_t n_threads;      /**< Threads of the encoder; 0 = sae_default_threads(). */
    int64_t seqs_per_batch; /**< Sequences per forward pass; 0: as many as make at most 2048
                                 tokens and 2^22 logits (at least 1). */
    int32_t skip_bos;       /**< 1: position 0 stays clean in every run and out of the mean. */
    uint32_t reserved;      /**< Zero. */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_loss_recovered_options;

/** @brief Initialiser for ::sae_loss_recovered_options. */
#define SAE_LOSS_RECOVERED_OPTIONS_INIT {sizeof(sae_loss_recovered_options), 0, 0, 0, 0u, NULL}

/** @brief What sae_dict_loss_recovered() measured (formulas there). Initialise with
 *         ::SAE_LOSS_RECOVERED_INIT. */
typedef struct sae_loss_recovered {
    uint32_t struct_size; /**< sizeof(sae_loss_recovered). */
    uint32_t reserved;    /**< Zero. */
    int64_t n_tokens;     /**< Predictions scored: n_seq (seq_len - 1). */
    double ce_clean;      /**< Mean next-token cross-entropy of the model (nats). */
    double ce_spliced;    /**< ... with x replaced by the reconstruction x_hat. */
    double ce_zero;       /**< ... with x replaced by 0. */
    double ce_mean;       /**< ... with x replaced by the mean activation mu. */
    double kl_spliced;    /**< Mean KL(clean || spliced) of the next-token distributions. */
    double kl_zero;       /**< Mean KL(clean || zero-ablated). */
    double kl_mean;       /**< Mean KL(clean || mean-ablated). */
    double score_zero;    /**< (ce_zero - ce_spliced) / (ce_zero - ce_clean). */
    double score_mean;    /**< (ce_mean - ce_spliced) / (ce_mean - ce_clean). */
    double kl_score_zero; /**< (kl_zero - kl_spliced) / kl_zero. */
    double kl_score_mean; /**< (kl_mean - kl_spliced) / kl_mean. */
} sae_loss_recovered;

/** @brief Initialiser for ::sae_loss_recovered. */
#define SAE_LOSS_RECOVERED_INIT                                                                  \
    {sizeof(sae_loss_recovered), 0u, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}

/**
 * @brief Loss recovered: how much of the model's next-token loss survives when a dictionary's
 *        reconstruction replaces the activations at a hook point (MATH.md, "Evaluation").
 *
 * The model runs on every sequence five times: clean; spliced (x <- x_hat = decode(encode(x))
 * at the hook point, the error term dropped, as sae_patch_create_splice() with keep_error 0);
 * zero-ablated (x <- 0); mean-ablated (x <- mu); and a first pass that computes mu, the mean of
 * the clean activations at the hook point over every token evaluated (all n_seq seq_len
 * positions, or the n_seq (seq_len - 1) positions t >= 1 with skip_bos; a sum in double). With
 * skip_bos, position 0 keeps its clean activations in the spliced and ablated runs.
 *
 * For each of the n_tokens = n_seq (seq_len - 1) positions t < seq_len - 1, with target the
 * next token y = tokens[s, t + 1], p the clean next-token distribution softmax(z) and q that
 * of a run: CE = logsumexp(z_q) - z_q[y], KL(p || q) = sum_v p_v (log p_v - log q_v); both
 * are averaged over the positions (sums in double). Then
 * - score_zero = (ce_zero - ce_spliced) / (ce_zero - ce_clean), score_mean likewise with
 *   ce_mean: 1 when the splice costs nothing, 0 when it is as bad as the ablation (SAELens
 *   `ce_loss_score` with zero ablation);
 * - kl_score_zero = (kl_zero - kl_spliced) / kl_zero, kl_score_mean likewise (SAELens
 *   `kl_div_score`).
 * A score whose denominator is 0 is NaN.
 *
 * Memory: two batches of logits (seqs_per_batch seq_len vocab_size floats each), the splice's
 * encoder workspace (for min(seqs_per_batch seq_len, 1024) rows), and the host's.
 * @param[out] out The result, filled (up to min(out->struct_size, sizeof)) on success only.
 *             Set out->struct_size first (::SAE_LOSS_RECOVERED_INIT does).
 * @param[in] host The model.
 * @param[in] hook_id Hook point to splice (index into @ref sae_host.hook_names).
 * @param[in] dict The dictionary; its d_in must be the host's d_model.
 * @param[in] tokens (n_seq, seq_len) token ids.
 * @param[in] n_seq Sequences (>= 1).
 * @param[in] seq_len Tokens per sequence (2 .. max_seq_len).
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK; ::SAE_EINVAL (NULL arguments, bad options or host, a hook point the
 *         host's pass did not reach); ::SAE_ERANGE (hook id, a token); ::SAE_ESHAPE (seq_len,
 *         d_in != d_model); ::SAE_ENUMERIC (logits of a run that are not finite, naming it);
 *         ::SAE_ENOMEM; or the error of the host.
 */
SAE_API sae_status sae_dict_loss_recovered(sae_loss_recovered *out, const sae_host *host,
                                           int32_t hook_id, const sae_dict *dict,
                                           const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                                           const sae_loss_recovered_options *options);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_CAPTURE_H */
