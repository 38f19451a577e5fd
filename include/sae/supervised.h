/**
 * @file supervised.h
 * @brief `sae_supervised`: supervised dictionaries from attribute labels, and the approximation,
 *        control and interpretability metrics of Makelov, Lange & Nanda (MATH.md, "Supervised
 *        dictionaries").
 *
 * @defgroup supervised Supervised dictionaries and principled evaluation
 * @brief Judge any dictionary on a task against one built from what is known about the inputs.
 *
 * **Labels.** A labelled dataset has n activation rows a_i (d wide) and n_attrs attributes;
 * attribute A takes n_values[A] values and row i has the value labels[i, A] in
 * [0, n_values[A]). Codes are numbered attribute by attribute: code c(A, v) =
 * Σ_{B < A} n_values[B] + v, n_codes = Σ_A n_values[A].
 *
 * **Supervised dictionary.** A bias u_bias (d) and one code vector u_{A,v} (d) per attribute
 * value; the reconstruction of row i is â_i = u_bias + Σ_A u_{A, labels[i, A]}.
 * - ::SAE_SUPERVISED_MEAN: u_bias = E[a], u_{A,v} = E[a | A = v] − E[a].
 * - ::SAE_SUPERVISED_LSTSQ: the codes minimise Σ_i ||a_i − â_i||² exactly (LAPACK, SVD, in
 *   double). The design (a bias column and one one-hot column per value) is rank-deficient —
 *   each attribute's columns sum to the bias column, and correlated attributes (a name and its
 *   gender) add more — so among the minimisers the minimum-norm one is taken, then each
 *   attribute's codes are shifted to have zero mean over the rows (Σ_v n_{A,v} u_{A,v} = 0) and
 *   the shifts moved into u_bias. The shift changes neither â nor an edit; it makes u_bias = E[a]
 *   and, on a balanced full-factorial design, gives exactly the mean codes.
 * A value that no row has gets the zero code.
 *
 * **Edits.** Changing attribute A from v to v' is a' = a − u_{A,v} + u_{A,v'} (the "arithmetic"
 * edit). As an ::sae_dict (sae_supervised_to_dict()) the dictionary is *decoder-only*: W_dec row
 * c(A, v) = u_{A,v}, b_dec = u_bias, a zero encoder (codes come from labels, not from
 * activations). Its feature patches are therefore of no use, but steering is: the edit v → v'
 * is a steer patch of feature c(A, v') with alpha +1 followed by one of c(A, v) with alpha −1
 * (sae_patch_create_steer(), unnormalised), applied to the rows to edit.
 *
 * **SAE metrics.** For any SAE: precision / recall / F1 of each feature's firing against each
 * attribute value (sae_feature_f1()), feature weights (sae_feature_weights()) and edits by
 * exchanging features (sae_feature_exchange()). The host-based runs (sae_prompts_run(),
 * sae_prompts_approximation()) replace the activation at the last position of each prompt,
 * the node of the evaluation, and score the logit difference between two answer tokens.
 *
 * Thread safety: a supervised dictionary is immutable once made and may be shared by threads.
 * The other functions touch only their arguments (the host runs are used as host.h says).
 * @{
 */
#ifndef SAE_SUPERVISED_H
#define SAE_SUPERVISED_H

#include "dict.h"
#include "host.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief A supervised dictionary. Opaque, immutable, shareable between threads. */
typedef struct sae_supervised sae_supervised;

/** @brief How the codes are computed (@ref sae_supervised_options.method). */
typedef enum sae_supervised_method {
    SAE_SUPERVISED_MEAN = 0, /**< Conditional means (Makelov `get_mean_codes`). */
    SAE_SUPERVISED_LSTSQ = 1 /**< Exact least squares (Makelov `get_mse_codes`). */
} sae_supervised_method;

/** @brief Settings of sae_supervised_create(). Initialise with ::SAE_SUPERVISED_OPTIONS_INIT. */
typedef struct sae_supervised_options {
    uint32_t struct_size;           /**< sizeof(sae_supervised_options). */
    int32_t method;                 /**< An ::sae_supervised_method (0: mean codes). */
    const sae_allocator *allocator; /**< NULL for the default. */
} sae_supervised_options;

/** @brief Initialiser for ::sae_supervised_options. */
#define SAE_SUPERVISED_OPTIONS_INIT {sizeof(sae_supervised_options), 0, NULL}

/**
 * @brief Build a supervised dictionary from labelled activations.
 * @param[out] out The dictionary; free with sae_supervised_free().
 * @param[in] x (n, d), ldx >= d: activations, finite.
 * @param[in] n Rows, >= 1.
 * @param[in] d Width, >= 1.
 * @param[in] ldx Leading dimension of x.
 * @param[in] labels (n, n_attrs), ldl >= n_attrs: value of each attribute for each row.
 * @param[in] ldl Leading dimension of labels.
 * @param[in] n_attrs Attributes, >= 1.
 * @param[in] n_values (n_attrs) values per attribute, each >= 1.
 * @param[in] options Settings, or NULL for mean codes.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (a label), ::SAE_ENUMERIC (a
 *         non-finite activation, or the SVD failed), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_supervised_create(sae_supervised **out, const float *x, int64_t n,
                                         int64_t d, int64_t ldx, const int32_t *labels,
                                         int64_t ldl, int32_t n_attrs, const int32_t *n_values,
                                         const sae_supervised_options *options);

/** @brief Free a supervised dictionary. Accepts NULL. @param[in] sup The dictionary. */
SAE_API void sae_supervised_free(sae_supervised *sup);

/** @return Width d of the activations (0 for NULL). @param[in] sup The dictionary. */
SAE_API int64_t sae_supervised_d(const sae_supervised *sup);

/** @return Number of attributes (0 for NULL). @param[in] sup The dictionary. */
SAE_API int32_t sae_supervised_n_attributes(const sae_supervised *sup);

/**
 * @return Number of values of attribute @p attr, or 0 when it is out of range.
 * @param[in] sup The dictionary.
 * @param[in] attr Attribute index.
 */
SAE_API int32_t sae_supervised_n_values(const sae_supervised *sup, int32_t attr);

/** @return n_codes = Σ_A n_values[A] (0 for NULL). @param[in] sup The dictionary. */
SAE_API int64_t sae_supervised_n_codes(const sae_supervised *sup);

/**
 * @return The code index c(attr, value), or -1 when either is out of range.
 * @param[in] sup The dictionary.
 * @param[in] attr Attribute index.
 * @param[in] value Value of that attribute.
 */
SAE_API int64_t sae_supervised_code_index(const sae_supervised *sup, int32_t attr,
                                          int32_t value);

/** @return Borrowed (d) bias u_bias, valid until sae_supervised_free(); NULL for NULL.
 *  @param[in] sup The dictionary. */
SAE_API const float *sae_supervised_bias(const sae_supervised *sup);

/** @return Borrowed (n_codes, d) code vectors, row c(A, v) = u_{A,v}; NULL for NULL.
 *  @param[in] sup The dictionary. */
SAE_API const float *sae_supervised_codes(const sae_supervised *sup);

/**
 * @brief Reconstruct from labels: out_i = u_bias + Σ_A u_{A, labels[i, A]}.
 * @param[in] sup The dictionary.
 * @param[out] out (n, d), ldo >= d.
 * @param[in] ldo Leading dimension of out.
 * @param[in] labels (n, n_attrs), ldl >= n_attrs.
 * @param[in] ldl Leading dimension of labels.
 * @param[in] n Rows, >= 0.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (a label; nothing written).
 */
SAE_API sae_status sae_supervised_reconstruct(const sae_supervised *sup, float *out, int64_t ldo,
                                              const int32_t *labels, int64_t ldl, int64_t n);

/**
 * @brief Edit one attribute in place: x_i <- x_i − u_{attr, from[i]} + u_{attr, to[i]}.
 * @param[in] sup The dictionary.
 * @param[in,out] x (n, d), ldx >= d.
 * @param[in] ldx Leading dimension of x.
 * @param[in] n Rows, >= 0.
 * @param[in] attr The attribute edited.
 * @param[in] from (n) its current value per row.
 * @param[in] to (n) its new value per row.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (attribute or value; x unchanged).
 */
SAE_API sae_status sae_supervised_edit(const sae_supervised *sup, float *x, int64_t ldx,
                                       int64_t n, int32_t attr, const int32_t *from,
                                       const int32_t *to);

/**
 * @brief Weight of each attribute's code in the reconstruction (Makelov
 *        `get_manual_sae_feature_weights`): w_{i,A} = ⟨u_{A,v}, r_i⟩ / ||r_i||² with
 *        v = labels[i, A] and r_i = â_i − u_bias; Σ_A w_{i,A} = 1 (all 0 when r_i = 0).
 * @param[in] sup The dictionary.
 * @param[out] out (n, n_attrs), ldo >= n_attrs.
 * @param[in] ldo Leading dimension of out.
 * @param[in] labels (n, n_attrs), ldl >= n_attrs.
 * @param[in] ldl Leading dimension of labels.
 * @param[in] n Rows, >= 0.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_supervised_weights(const sae_supervised *sup, float *out, int64_t ldo,
                                          const int32_t *labels, int64_t ldl, int64_t n);

/**
 * @brief The dictionary as a decoder-only ::sae_dict (standard architecture, d_sae = n_codes):
 *        W_dec = the codes, b_dec = u_bias, W_enc and b_enc zero, ::SAE_DICT_NO_B_DEC_INPUT.
 *
 * For the patching routines that add decoder directions (steering: the supervised edit is
 * steer(c(A, v'), +1) then steer(c(A, v), −1)) and for saving with sae_dict_save(). Encoding
 * with it gives zero codes: the codes of a supervised dictionary come from labels.
 * @param[in] sup The dictionary.
 * @param[out] out The new dictionary (copies); free with sae_dict_free().
 * @param[in] allocator For the new dictionary, or NULL for the default.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_supervised_to_dict(const sae_supervised *sup, sae_dict **out,
                                          const sae_allocator *allocator);

/**
 * @brief Precision, recall and F1 of every feature against every attribute value (Makelov
 *        `sae_interp.py`).
 *
 * With z_j(i) = [codes[i, j] > 0] and the mask [labels[i, A] = v]:
 * precision = |z_j ∧ A=v| / |z_j|, recall = |z_j ∧ A=v| / |A=v|, F1 = 2PR / (P + R); each is 0
 * when its denominator is (a feature that never fires, a value no row has).
 * @param[out] precision (n_codes, d_sae), ld >= d_sae, row c(A, v); or NULL.
 * @param[out] recall Same shape, or NULL.
 * @param[out] f1 Same shape (required).
 * @param[in] ld Leading dimension of the three outputs.
 * @param[in] codes (n, d_sae), ldf >= d_sae: the dense codes of the rows.
 * @param[in] ldf Leading dimension of codes.
 * @param[in] n Rows, >= 1.
 * @param[in] d_sae Features, >= 1.
 * @param[in] labels (n, n_attrs), ldl >= n_attrs.
 * @param[in] ldl Leading dimension of labels.
 * @param[in] n_attrs Attributes, >= 1.
 * @param[in] n_values (n_attrs) values per attribute, each >= 1.
 * @param[in] allocator For the counts, or NULL for the default.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (a label), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_feature_f1(float *precision, float *recall, float *f1, int64_t ld,
                                  const float *codes, int64_t ldf, int64_t n, int64_t d_sae,
                                  const int32_t *labels, int64_t ldl, int32_t n_attrs,
                                  const int32_t *n_values, const sae_allocator *allocator);

/**
 * @brief The k features of highest F1 for each attribute value (`get_high_f1_features`),
 *        descending, ties to the lower feature id.
 * @param[out] ids (n_codes, k), ldo >= k: feature ids.
 * @param[out] values (n_codes, k), ldo >= k: their F1, or NULL.
 * @param[in] ldo Leading dimension of ids and values.
 * @param[in] f1 (n_codes, d_sae), ld_f1 >= d_sae (sae_feature_f1()).
 * @param[in] ld_f1 Leading dimension of f1.
 * @param[in] n_codes Rows of f1, >= 0.
 * @param[in] d_sae Features, >= 1.
 * @param[in] k 1 <= k <= d_sae.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE.
 */
SAE_API sae_status sae_feature_f1_top(int32_t *ids, float *values, int64_t ldo, const float *f1,
                                      int64_t ld_f1, int64_t n_codes, int64_t d_sae, int64_t k);

/**
 * @brief Feature weights in the reconstruction (Makelov `get_feature_weights`):
 *        w_j = g_j ⟨W_dec[j], y⟩ / ||y||², y = Σ_j g_j W_dec[j] = x̂ − b_dec before the output
 *        normalisation, g_j = f_j (divided by ||d_j|| with ::SAE_DICT_RESCALE_BY_DECODER_NORM).
 *        Σ_j w_j = 1 (all 0 when y = 0).
 * @param[out] w (n, d_sae), ldw >= d_sae.
 * @param[in] ldw Leading dimension of w.
 * @param[in] dict The SAE.
 * @param[in] codes (n, d_sae), ldf >= d_sae.
 * @param[in] ldf Leading dimension of codes.
 * @param[in] n Rows, >= 0.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_feature_weights(float *w, int64_t ldw, const sae_dict *dict,
                                       const float *codes, int64_t ldf, int64_t n);

/** @brief How sae_feature_exchange() picks the features it exchanges. */
typedef enum sae_exchange_method {
    /** Interpretation-aware (`get_edit_using_f1_scores`): the n_exchange features active in a
     *  of highest F1 for the current value are removed, the n_exchange active in a' of highest
     *  F1 for the new value are inserted with their values in a'. */
    SAE_EXCHANGE_F1 = 0,
    /** Interpretation-agnostic (`get_edit_using_sae_opt`): n_exchange greedy steps, each
     *  setting the one feature j to f_j(a') that brings the edit closest to a' − a. */
    SAE_EXCHANGE_GREEDY = 1
} sae_exchange_method;

/**
 * @brief Edit activations towards counterfactual ones by exchanging SAE features (MATH.md,
 *        "Control").
 *
 * With f = encode(a), f' = encode(a') and S the features chosen, the target codes are t_j = 0
 * for the removed features and f'_j for the inserted ones (F1), or f'_j for every chosen one
 * (greedy), and out = a + decode(t) − decode(f) on S, i.e. a + Σ_{j∈S} (t_j − f_j) d~_j with
 * d~_j the model-space direction (the error term is kept). Greedy: with δ = a' − a and c = 0,
 * each step picks j* = argmin_j ||c + (f'_j − f_j) d~_j − δ|| over the features not yet chosen
 * with f'_j ≠ f_j, then c += (f'_{j*} − f_{j*}) d~_{j*}; it stops early when none is left.
 * Edit magnitude: removed[i] = Σ_{j∈S} w_j(a_i), the weights of sae_feature_weights() at a.
 * @param[out] out (n, d_in), ldo >= d_in: the edited activations.
 * @param[in] ldo Leading dimension of out.
 * @param[out] removed (n) weight of the edited features, or NULL.
 * @param[in] dict The SAE (dense codes; any architecture; ::SAE_NORM_NONE or ::SAE_NORM_SCALE).
 * @param[in] a (n, d_in), lda >= d_in: the activations to edit.
 * @param[in] lda Leading dimension of a.
 * @param[in] a_cf (n, d_in), ldcf >= d_in: the counterfactual activations.
 * @param[in] ldcf Leading dimension of a_cf.
 * @param[in] n Rows, >= 0.
 * @param[in] method An ::sae_exchange_method.
 * @param[in] n_exchange Features removed and inserted (F1) or greedy steps, >= 0.
 * @param[in] f1_from F1: (n, d_sae), ld_f1 >= d_sae, row i the F1 of every feature for the
 *            current value of row i; NULL for greedy.
 * @param[in] f1_to F1: the same for the new value; NULL for greedy.
 * @param[in] ld_f1 Leading dimension of f1_from and f1_to.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_EUNSUPPORTED (per-row input
 *         normalisation), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_feature_exchange(float *out, int64_t ldo, float *removed,
                                        const sae_dict *dict, const float *a, int64_t lda,
                                        const float *a_cf, int64_t ldcf, int64_t n,
                                        int32_t method, int32_t n_exchange,
                                        const float *f1_from, const float *f1_to, int64_t ld_f1);

/** @brief Prompts of a task, for the host runs. Initialise with ::SAE_PROMPTS_INIT. Borrowed. */
typedef struct sae_prompts {
    uint32_t struct_size;   /**< sizeof(sae_prompts). */
    int32_t hook_id;        /**< The hook point of the node (sae_host_find_hook()). */
    int64_t n_prompts;      /**< Prompts, >= 1. */
    const int32_t *tokens;  /**< All prompts' token ids, one after the other. */
    const int64_t *offsets; /**< (n_prompts + 1): prompt p is tokens[offsets[p] .. offsets[p+1]),
                                 1 to max_seq_len tokens. */
    const int32_t *answer;  /**< (n_prompts) token whose logit counts positively. */
    const int32_t *wrong;   /**< (n_prompts) token whose logit counts negatively. */
} sae_prompts;

/** @brief Initialiser for ::sae_prompts. */
#define SAE_PROMPTS_INIT {sizeof(sae_prompts), 0, 0, NULL, NULL, NULL, NULL}

/**
 * @brief Run every prompt (one forward each) and measure its logit difference
 *        logit(answer) − logit(wrong) at the last position; optionally record and replace the
 *        activation at the hook point's last position (the node).
 * @param[out] diffs (n_prompts) the logit differences.
 * @param[out] acts (n_prompts, d_model), ld_acts >= d_model: the node's activation as it
 *             arrived (before any replacement), or NULL.
 * @param[in] ld_acts Leading dimension of acts.
 * @param[in] host The model.
 * @param[in] prompts The prompts and the hook point.
 * @param[in] replace (n_prompts, d_model), ld_replace >= d_model: row p replaces the node of
 *            prompt p; or NULL (clean runs).
 * @param[in] ld_replace Leading dimension of replace.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ERANGE (a token), ::SAE_ENOMEM, or the
 *         host's error.
 */
SAE_API sae_status sae_prompts_run(float *diffs, float *acts, int64_t ld_acts,
                                   const sae_host *host, const sae_prompts *prompts,
                                   const float *replace, int64_t ld_replace);

/** @brief Approximation scores of one dictionary (sae_prompts_approximation()). Each m is the
 *         mean over prompts of the logit difference. */
typedef struct sae_approximation {
    uint32_t struct_size; /**< sizeof(sae_approximation). */
    uint32_t reserved;    /**< Zero. */
    double clean;         /**< m(a): clean runs. */
    double ablated;       /**< m(E[a]): the node mean-ablated (mean over the prompts). */
    double sufficient;    /**< m(â): the node replaced by its reconstruction. */
    double necessary;     /**< m(a − â + E[â]): the dictionary's part mean-ablated. */
    double sufficiency;   /**< |m(â) − m(E[a])| / |m(a) − m(E[a])|; 1 is best. */
    double necessity;     /**< |m(a − â + E[â]) − m(E[a])| / |m(a) − m(E[a])|; 0 is best (the
                               dictionary's part is as needed as the whole activation). */
} sae_approximation;

/** @brief Initialiser for ::sae_approximation. */
#define SAE_APPROXIMATION_INIT {sizeof(sae_approximation), 0u, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}

/**
 * @brief Sufficiency and necessity of a dictionary's reconstructions of the node (Makelov et
 *        al., approximation axis), against mean ablation. Four runs of every prompt.
 * @param[out] out Filled; set out->struct_size first (::SAE_APPROXIMATION_INIT does).
 * @param[in] host The model.
 * @param[in] prompts The prompts and the hook point.
 * @param[in] acts (n_prompts, d_model), ld_acts >= d_model: the clean node activations
 *            (sae_prompts_run()).
 * @param[in] ld_acts Leading dimension of acts.
 * @param[in] recon (n_prompts, d_model), ld_recon >= d_model: their reconstructions â.
 * @param[in] ld_recon Leading dimension of recon.
 * @param[in] allocator For the work buffers, or NULL for the default.
 * @return As sae_prompts_run(); ::SAE_ENUMERIC when m(a) = m(E[a]) (no score).
 */
SAE_API sae_status sae_prompts_approximation(sae_approximation *out, const sae_host *host,
                                             const sae_prompts *prompts, const float *acts,
                                             int64_t ld_acts, const float *recon,
                                             int64_t ld_recon, const sae_allocator *allocator);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_SUPERVISED_H */
