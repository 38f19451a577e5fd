/**
 * @file graph.h
 * @brief `sae_graph`: sparse feature circuits (Marks et al. 2024) — node effects of SAE features
 *        and SAE error terms on a metric, edges between them, pruning, faithfulness and
 *        completeness, feature ablation, and JSON / Graphviz export.
 *
 * @defgroup graph Feature circuits
 * @brief Discover and evaluate circuits of SAE features through a host model (MATH.md,
 *        "Patching and circuits"; feature-circuits' attribution.py, circuit.py, ablation.py).
 *
 * **The circuit's hook points.** A circuit is built over a list of hook points of a host
 * (host.h), upstream first (the order of the computation), each with a dictionary whose d_in is
 * the host's d_model and whose input normalisation is ::SAE_NORM_NONE or ::SAE_NORM_SCALE (the
 * per-row normalisations are ::SAE_EUNSUPPORTED). At hook point h the activations decompose as
 * x = Σ_j f_j d~_j + b~ + ε: codes f = encode(x), d~_j the model-space decoder direction of
 * feature j, ε = x − x̂ the error term.
 *
 * **Nodes.** A node is (hook, position, feature) or (hook, position, error); with
 * ::SAE_GRAPH_SUM the position is summed over (stored as -1). Its effect is its indirect effect
 * on the metric m, averaged over the prompt pairs:
 * - ::SAE_GRAPH_ATP (attribution patching): IE = ∇_x m|clean · d~_j (f_j,patch − f_j,clean) per
 *   feature and position; the error node contracts ∇_x m with ε_patch − ε_clean. The error term
 *   is detached: the gradient with respect to a code is the gradient at x along d~_j.
 * - ::SAE_GRAPH_IG (integrated gradients, feature-circuits' choice for nodes): the same with
 *   ∇_x m averaged over x_α = (1 − α) x_clean + α x_patch, α = s/N, s = 0..N−1, one hook point
 *   at a time with the others running clean.
 * - ::SAE_GRAPH_EXACT: one patched forward per node (each feature and position whose code
 *   differs, and each error position; all pairs of a batch at once), m(patched) − m(clean). For
 *   checking: its cost grows with the number of active features.
 * Without patch prompts (sae_prompt_pairs.patch_tokens NULL) the patch state is zero
 * (f_patch = 0, ε_patch = 0: zero ablation), as for unpaired behaviours and SHIFT.
 *
 * **Edges** (computed unless ::SAE_GRAPH_NO_EDGES) join nodes whose |effect| exceeds the node
 * threshold: for an upstream node u at hook a and a downstream node d at a later hook b,
 * w(u → d) = g_d · (∂d/∂u)|clean · Δu, g_d the (IG-averaged) gradient of m at node d, the
 * Jacobian taken along direct paths only: every other circuit hook point is a stop-gradient.
 * A downstream feature k contributes its code f_k(x_b) (gradient e~_k where active), a downstream
 * error its ε(x_b) = x_b − x̂(x_b). Edges are vector-Jacobian products from
 * sae_host_backward_from(): with ::SAE_GRAPH_SUM one backward per kept downstream node and batch
 * of pairs (positions and pairs are seeded together; the products are linear in the seed), with
 * ::SAE_GRAPH_PER_POSITION one per kept node and batch. Edges with |w| <= the edge threshold are
 * dropped.
 *
 * **Metric.** By default m = logit[clean_answer] − logit[patch_answer] at the last position of
 * each prompt (logit[clean_answer] when there are no patch answers), so that effects of nodes
 * that carry the behaviour are negative (feature-circuits' discovery metric has the other sign;
 * thresholds use |effect|). A ::sae_metric_fn replaces it.
 *
 * **Pairs and batches.** Clean and patch prompts of a pair have the same number of tokens; pairs
 * are grouped by length into batches of up to batch_size sequences (the host runs sequences of
 * equal length). ::SAE_GRAPH_PER_POSITION needs every pair to have the same length.
 *
 * Thread safety: a graph is used by one thread at a time; the functions that run a host use it
 * from the calling thread.
 * @{
 */
#ifndef SAE_GRAPH_H
#define SAE_GRAPH_H

#include "dict.h"
#include "host.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief A feature circuit: hook points, nodes with effects, weighted edges, labels. */
typedef struct sae_graph sae_graph;

/** @brief The feature id of an error node. */
#define SAE_GRAPH_ERROR (-1)
/** @brief The position of a node summed over positions (::SAE_GRAPH_SUM). */
#define SAE_GRAPH_ALL_POSITIONS (-1)

/** @brief How node effects are computed (@ref sae_graph_options.method). */
typedef enum sae_graph_method {
    SAE_GRAPH_IG = 0,   /**< Integrated gradients, ig_steps steps per hook point (default). */
    SAE_GRAPH_ATP = 1,  /**< Attribution patching: one gradient at the clean run. */
    SAE_GRAPH_EXACT = 2 /**< One patched run per node. */
} sae_graph_method;

/** @brief Positions kept or summed (@ref sae_graph_options.aggregation). */
typedef enum sae_graph_aggregation {
    SAE_GRAPH_SUM = 0,         /**< Sum over positions, then mean over pairs (default). */
    SAE_GRAPH_PER_POSITION = 1 /**< One node per position, mean over pairs. */
} sae_graph_aggregation;

/** @brief Bits of @ref sae_graph_options.flags. */
enum sae_graph_flag {
    SAE_GRAPH_NO_EDGES = 1u << 0 /**< Node effects only. */
};

/**
 * @brief Prompt pairs: clean prompts, their patch (counterfactual) prompts and the two answers.
 *
 * Pair i has the tokens [offsets[i], offsets[i + 1]) of clean_tokens and of patch_tokens. All
 * arrays are borrowed for the duration of a call. Initialise with ::SAE_PROMPT_PAIRS_INIT.
 */
typedef struct sae_prompt_pairs {
    uint32_t struct_size;          /**< sizeof(sae_prompt_pairs). */
    uint32_t reserved;             /**< Zero. */
    int64_t n_pairs;               /**< Pairs (>= 1). */
    const int64_t *offsets;        /**< (n_pairs + 1), offsets[0] = 0, increasing. */
    const int32_t *clean_tokens;   /**< (offsets[n_pairs]) token ids of the clean prompts. */
    const int32_t *patch_tokens;   /**< Same layout, or NULL: zero ablation (no patch run). */
    const int32_t *clean_answers;  /**< (n_pairs) the answer of each clean prompt. */
    const int32_t *patch_answers;  /**< (n_pairs) the counterfactual answers, or NULL. */
} sae_prompt_pairs;

/** @brief Initialiser for ::sae_prompt_pairs. */
#define SAE_PROMPT_PAIRS_INIT {sizeof(sae_prompt_pairs), 0u, 0, NULL, NULL, NULL, NULL, NULL}

/**
 * @brief A metric on the logits of a batch of sequences, one value per sequence.
 * @param[in] user The pointer given with the callback.
 * @param[in] logits (n_seq, seq_len, vocab_size).
 * @param[in] n_seq Sequences.
 * @param[in] seq_len Tokens per sequence.
 * @param[in] vocab_size Logits per token.
 * @param[in] pairs (n_seq) the index of the pair each sequence belongs to.
 * @param[out] metric (n_seq) the metric of each sequence.
 * @param[out] d_logits NULL, or (n_seq, seq_len, vocab_size): the gradient of
 *             Σ_s metric[s] (each sequence's gradient in its own rows).
 * @return ::SAE_OK or an error, which stops the call.
 */
typedef sae_status (*sae_metric_fn)(void *user, const float *logits, int64_t n_seq,
                                    int64_t seq_len, int64_t vocab_size, const int64_t *pairs,
                                    float *metric, float *d_logits);

/**
 * @brief Progress of a long call: @p done of @p total host passes.
 * @param[in] user The pointer given with the callback.
 * @param[in] done Passes done.
 * @param[in] total Passes planned (it may grow once the nodes that need edges are known).
 * @return 0 to continue, non-zero to stop (the call returns ::SAE_ECANCELED).
 */
typedef int (*sae_graph_progress_fn)(void *user, int64_t done, int64_t total);

/** @brief Settings of sae_graph_attribute(). Initialise with ::SAE_GRAPH_OPTIONS_INIT. */
typedef struct sae_graph_options {
    uint32_t struct_size;      /**< sizeof(sae_graph_options). */
    int32_t method;            /**< A ::sae_graph_method. */
    int32_t aggregation;       /**< A ::sae_graph_aggregation. */
    int32_t ig_steps;          /**< N of integrated gradients (0: 10). */
    float node_threshold;      /**< Edges join nodes with |effect| > this (>= 0; INIT: 0.1). */
    float edge_threshold;      /**< Edges with |w| <= this are dropped (>= 0; INIT: 0.01). */
    uint32_t flags;            /**< Bits of ::sae_graph_flag. */
    int32_t n_threads;         /**< Threads of the SAE products (0: sae_default_threads()). */
    int64_t batch_size;        /**< Sequences per host pass (0: 16). */
    sae_metric_fn metric;      /**< The metric, or NULL for the logit difference. */
    void *metric_user;         /**< Passed to @ref metric. */
    sae_graph_progress_fn progress; /**< Called after each host pass, or NULL. */
    void *progress_user;       /**< Passed to @ref progress. */
    const sae_allocator *allocator; /**< For the graph and the workspace; NULL: default. */
} sae_graph_options;

/** @brief Initialiser for ::sae_graph_options. */
#define SAE_GRAPH_OPTIONS_INIT                                                                  \
    {sizeof(sae_graph_options), SAE_GRAPH_IG, SAE_GRAPH_SUM, 0, 0.1f, 0.01f, 0u, 0, 0, NULL,  \
     NULL, NULL, NULL, NULL}

/**
 * @brief Discover a circuit: node effects of every feature and error node at the given hook
 *        points, and edges between the nodes above the node threshold.
 *
 * Cost in host passes per batch: 2 forwards (clean, patch) and 1 backward; IG adds
 * ig_steps · n_hooks forwards and backwards, EXACT one forward per node; edges add 1 forward and
 * one backward from a hook per kept downstream node (per kept node and position with
 * ::SAE_GRAPH_PER_POSITION). Memory beyond a batch's workspace: with edges, the patch
 * activations and the gradients of every pair at every hook point
 * (2 · tokens · d_model · n_hooks floats).
 * @param[out] out The graph; free with sae_graph_free().
 * @param[in] host The model; needs a backward pass for ATP and IG, and a backward_from pass for
 *            edges.
 * @param[in] hooks (n_hooks) distinct hook ids of @p host, upstream first.
 * @param[in] dicts (n_hooks) the dictionary at each hook point (borrowed during the call).
 * @param[in] n_hooks Hook points (>= 1).
 * @param[in] pairs The prompt pairs.
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE (d_in, lengths), ::SAE_ERANGE (a token, answer
 *         or hook id), ::SAE_EUNSUPPORTED (a dictionary's normalisation; a host without the
 *         backward pass needed), ::SAE_ENUMERIC (a node effect that is not finite: NaN or
 *         infinite activations, gradients or metric), ::SAE_ENOMEM, ::SAE_ECANCELED, or the
 *         error of the host or metric.
 */
SAE_API sae_status sae_graph_attribute(sae_graph **out, const sae_host *host,
                                       const int32_t *hooks, const sae_dict *const *dicts,
                                       int32_t n_hooks, const sae_prompt_pairs *pairs,
                                       const sae_graph_options *options);

/**
 * @brief An empty graph over named hook points (to fill with sae_graph_add_nodes() and
 *        sae_graph_add_edges()).
 * @param[out] out The graph; free with sae_graph_free().
 * @param[in] n_hooks Hook points (>= 1).
 * @param[in] hook_names (n_hooks) non-empty names; copied.
 * @param[in] d_sae (n_hooks) features of each hook point's dictionary (>= 1).
 * @param[in] allocator NULL for the default.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_graph_create(sae_graph **out, int32_t n_hooks,
                                    const char *const *hook_names, const int64_t *d_sae,
                                    const sae_allocator *allocator);

/** @brief Free a graph. Accepts NULL. @param[in] graph The graph. */
SAE_API void sae_graph_free(sae_graph *graph);

/**
 * @brief Add nodes. Node indices are assigned in order of addition.
 * @param[in,out] graph The graph.
 * @param[in] n Nodes to add.
 * @param[in] hooks (n) hook indices in [0, n_hooks).
 * @param[in] positions (n) positions >= 0, or ::SAE_GRAPH_ALL_POSITIONS.
 * @param[in] features (n) feature ids in [0, d_sae) of the hook, or ::SAE_GRAPH_ERROR.
 * @param[in] effects (n) finite effects.
 * @return ::SAE_OK, ::SAE_EINVAL (NULL; a node already present), ::SAE_ERANGE,
 *         ::SAE_ENUMERIC, ::SAE_ENOMEM. On failure nothing is added.
 */
SAE_API sae_status sae_graph_add_nodes(sae_graph *graph, int64_t n, const int32_t *hooks,
                                       const int32_t *positions, const int32_t *features,
                                       const float *effects);

/**
 * @brief Add edges between existing nodes.
 * @param[in,out] graph The graph.
 * @param[in] n Edges to add.
 * @param[in] sources (n) upstream node indices.
 * @param[in] targets (n) downstream node indices.
 * @param[in] weights (n) finite weights.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ERANGE, ::SAE_ENUMERIC, ::SAE_ENOMEM. On failure
 *         nothing is added.
 */
SAE_API sae_status sae_graph_add_edges(sae_graph *graph, int64_t n, const int64_t *sources,
                                       const int64_t *targets, const float *weights);

/** @brief What a graph was built from (sae_graph_get_info()). */
typedef struct sae_graph_info {
    uint32_t struct_size;   /**< sizeof(sae_graph_info). */
    int32_t method;         /**< ::sae_graph_method (-1 for a graph made by hand). */
    int32_t aggregation;    /**< ::sae_graph_aggregation. */
    int32_t ig_steps;       /**< N of IG (0 unless IG). */
    int64_t n_pairs;        /**< Pairs averaged over (0 for a graph made by hand). */
    int64_t n_positions;    /**< Tokens per prompt of a per-position graph, else 0. */
    float node_threshold;   /**< The node threshold of the edges. */
    float edge_threshold;   /**< The edge threshold. */
    double metric_clean;    /**< Mean metric on the clean prompts. */
    double metric_patch;    /**< Mean metric on the patch prompts (NaN without). */
    int64_t n_nodes;        /**< Nodes. */
    int64_t n_edges;        /**< Edges. */
    int32_t n_hooks;        /**< Hook points. */
    uint32_t reserved;      /**< Zero. */
} sae_graph_info;

/** @brief Initialiser for ::sae_graph_info. */
#define SAE_GRAPH_INFO_INIT                                                                     \
    {sizeof(sae_graph_info), 0, 0, 0, 0, 0, 0.0f, 0.0f, 0.0, 0.0, 0, 0, 0, 0u}

/**
 * @brief Read a graph's metadata and sizes.
 * @param[in] graph The graph.
 * @param[out] out Filled; set out->struct_size first (::SAE_GRAPH_INFO_INIT does).
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_graph_get_info(const sae_graph *graph, sae_graph_info *out);

/** @return The name of hook point @p hook, or NULL when out of range. @param[in] graph The
 *          graph. @param[in] hook Index in [0, n_hooks). */
SAE_API const char *sae_graph_hook_name(const sae_graph *graph, int32_t hook);

/** @return d_sae of hook point @p hook, or 0 when out of range. @param[in] graph The graph.
 *          @param[in] hook Index in [0, n_hooks). */
SAE_API int64_t sae_graph_hook_d_sae(const sae_graph *graph, int32_t hook);

/**
 * @brief Borrowed arrays of a graph's nodes and edges (sae_graph_get_arrays()), valid until the
 *        graph changes or is freed.
 */
typedef struct sae_graph_arrays {
    uint32_t struct_size;          /**< sizeof(sae_graph_arrays). */
    uint32_t reserved;             /**< Zero. */
    int64_t n_nodes;               /**< Nodes. */
    int64_t n_edges;               /**< Edges. */
    const int32_t *node_hooks;     /**< (n_nodes) hook indices. */
    const int32_t *node_positions; /**< (n_nodes) positions or ::SAE_GRAPH_ALL_POSITIONS. */
    const int32_t *node_features;  /**< (n_nodes) feature ids or ::SAE_GRAPH_ERROR. */
    const float *node_effects;     /**< (n_nodes) effects. */
    const int64_t *edge_sources;   /**< (n_edges) upstream node indices. */
    const int64_t *edge_targets;   /**< (n_edges) downstream node indices. */
    const float *edge_weights;     /**< (n_edges) weights. */
} sae_graph_arrays;

/** @brief Initialiser for ::sae_graph_arrays. */
#define SAE_GRAPH_ARRAYS_INIT                                                                   \
    {sizeof(sae_graph_arrays), 0u, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL}

/**
 * @brief Borrow a graph's arrays.
 * @param[in] graph The graph.
 * @param[out] out Filled; set out->struct_size first (::SAE_GRAPH_ARRAYS_INIT does).
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_graph_get_arrays(const sae_graph *graph, sae_graph_arrays *out);

/**
 * @brief Find a node.
 * @param[out] out_node Its index, or -1.
 * @param[in] graph The graph.
 * @param[in] hook Hook index.
 * @param[in] position Position or ::SAE_GRAPH_ALL_POSITIONS.
 * @param[in] feature Feature id or ::SAE_GRAPH_ERROR.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOTFOUND.
 */
SAE_API sae_status sae_graph_find_node(int64_t *out_node, const sae_graph *graph, int32_t hook,
                                       int32_t position, int32_t feature);

/**
 * @brief The nodes of largest |effect|, largest first (ties: lower index first).
 * @param[out] out (n) node indices.
 * @param[out] n_out How many were written: min(n, nodes).
 * @param[in] graph The graph.
 * @param[in] n Room in @p out.
 * @param[in] hook Only nodes of this hook index, or -1 for all.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ERANGE (hook).
 */
SAE_API sae_status sae_graph_top_nodes(int64_t *out, int64_t *n_out, const sae_graph *graph,
                                       int64_t n, int32_t hook);

/**
 * @brief The edges of largest |weight|, largest first (ties: lower index first).
 * @param[out] out (n) edge indices.
 * @param[out] n_out How many were written: min(n, edges).
 * @param[in] graph The graph.
 * @param[in] n Room in @p out.
 * @return ::SAE_OK or ::SAE_EINVAL.
 */
SAE_API sae_status sae_graph_top_edges(int64_t *out, int64_t *n_out, const sae_graph *graph,
                                       int64_t n);

/**
 * @brief Prune in place: drop nodes with |effect| <= node_threshold (and their edges) and
 *        edges with |weight| <= edge_threshold. Node and edge indices are renumbered (the
 *        order is kept). The thresholds recorded in the graph become the larger of the old and
 *        the new.
 * @param[in,out] graph The graph.
 * @param[in] node_threshold >= 0.
 * @param[in] edge_threshold >= 0.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM (the graph is then unchanged).
 */
SAE_API sae_status sae_graph_prune(sae_graph *graph, float node_threshold, float edge_threshold);

/**
 * @brief Attach a human-readable label to a feature (or error) of a hook point; JSON and DOT
 *        exports show it. A second label replaces the first; an empty one removes it.
 * @param[in,out] graph The graph.
 * @param[in] hook Hook index.
 * @param[in] feature Feature id or ::SAE_GRAPH_ERROR.
 * @param[in] label UTF-8 text; copied.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ERANGE, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_graph_set_label(sae_graph *graph, int32_t hook, int32_t feature,
                                       const char *label);

/** @return The label of a feature, or NULL; borrowed until the graph changes. @param[in] graph
 *          The graph. @param[in] hook Hook index. @param[in] feature Feature id or
 *          ::SAE_GRAPH_ERROR. */
SAE_API const char *sae_graph_label(const sae_graph *graph, int32_t hook, int32_t feature);

/**
 * @brief Set a metadata string (exported in JSON; e.g. "model", "behaviour"). A second value
 *        replaces the first.
 * @param[in,out] graph The graph.
 * @param[in] key Non-empty key; copied.
 * @param[in] value Value; copied.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_graph_set_metadata(sae_graph *graph, const char *key, const char *value);

/** @return The metadata value of @p key, or NULL; borrowed until the graph changes.
 *          @param[in] graph The graph. @param[in] key The key. */
SAE_API const char *sae_graph_metadata(const sae_graph *graph, const char *key);

/**
 * @brief Write a graph as JSON, atomically.
 *
 * An object with "format": "libsae-circuit", "version": 1, the fields of ::sae_graph_info
 * ("method" and "aggregation" as names), "metadata" (object of strings), "hooks"
 * ([{"name", "d_sae"}]), "nodes" ([{"hook", "position" (null when summed), "feature" (an
 * integer or "error"), "effect", "label" (when set)}], a node's index being its place in the
 * array), "labels" ([{"hook", "feature", "label"}], every label set) and "edges" ([{"source",
 * "target", "weight"}]). Metrics that are not finite are written as null. sae_graph_load_json()
 * reads it back (the same arrays, bit for bit).
 * @param[in] graph The graph.
 * @param[in] path Output file.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_EIO.
 */
SAE_API sae_status sae_graph_save_json(const sae_graph *graph, const char *path);

/**
 * @brief Read a graph written by sae_graph_save_json().
 * @param[out] out The graph; free with sae_graph_free().
 * @param[in] path The file.
 * @param[in] allocator NULL for the default.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ENOTFOUND, ::SAE_EIO, ::SAE_EFORMAT (naming the bad
 *         field), ::SAE_ENOMEM.
 */
SAE_API sae_status sae_graph_load_json(sae_graph **out, const char *path,
                                       const sae_allocator *allocator);

/** @brief Settings of sae_graph_save_dot(). Initialise with ::SAE_GRAPH_DOT_OPTIONS_INIT. */
typedef struct sae_graph_dot_options {
    uint32_t struct_size;   /**< sizeof(sae_graph_dot_options). */
    float node_threshold;   /**< Show nodes with |effect| > this (>= 0). */
    float edge_threshold;   /**< Show edges with |weight| > this (>= 0). */
    int32_t max_nodes;      /**< Show at most this many nodes, largest |effect| first (0: all). */
} sae_graph_dot_options;

/** @brief Initialiser for ::sae_graph_dot_options (everything shown). */
#define SAE_GRAPH_DOT_OPTIONS_INIT {sizeof(sae_graph_dot_options), 0.0f, 0.0f, 0}

/**
 * @brief Write a graph in Graphviz DOT, atomically.
 *
 * One rank per hook point (upstream at the top), feature nodes as ellipses and error nodes as
 * grey boxes, labelled with the feature (its label when set), the position and the effect; fill
 * colour blue for negative effects, red for positive, stronger for larger |effect|; edge width
 * proportional to |weight| (largest 4 points), blue or red by sign. `dot -Tsvg` renders it.
 * @param[in] graph The graph.
 * @param[in] path Output file.
 * @param[in] options What to show, or NULL for everything.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_EIO, ::SAE_ENOMEM.
 */
SAE_API sae_status sae_graph_save_dot(const sae_graph *graph, const char *path,
                                      const sae_graph_dot_options *options);

/** @brief Ablation values for nodes outside a circuit (@ref sae_graph_eval_options.ablation). */
typedef enum sae_graph_ablation {
    SAE_ABLATE_MEAN = 0, /**< Mean over the patch prompts of the same length (clean prompts when
                              there are none), per position (default, feature-circuits). */
    SAE_ABLATE_ZERO = 1  /**< Zero codes; zero error. */
} sae_graph_ablation;

/** @brief How error nodes are treated by the evaluation (feature-circuits' handle_errors). */
typedef enum sae_graph_errors {
    SAE_GRAPH_ERRORS_AS_NODES = 0, /**< Like feature nodes (default). */
    SAE_GRAPH_ERRORS_KEEP = 1,     /**< Never ablated. */
    SAE_GRAPH_ERRORS_REMOVE = 2    /**< Always ablated. */
} sae_graph_errors;

/** @brief Settings of the evaluations. Initialise with ::SAE_GRAPH_EVAL_OPTIONS_INIT. */
typedef struct sae_graph_eval_options {
    uint32_t struct_size;      /**< sizeof(sae_graph_eval_options). */
    int32_t ablation;          /**< A ::sae_graph_ablation. */
    int32_t errors;            /**< A ::sae_graph_errors. */
    int32_t n_threads;         /**< Threads of the SAE products (0: default). */
    int64_t batch_size;        /**< Sequences per host pass (0: 16). */
    sae_metric_fn metric;      /**< The metric, or NULL for the logit difference. */
    void *metric_user;         /**< Passed to @ref metric. */
    const sae_allocator *allocator; /**< Workspace; NULL: default. */
} sae_graph_eval_options;

/** @brief Initialiser for ::sae_graph_eval_options. */
#define SAE_GRAPH_EVAL_OPTIONS_INIT                                                             \
    {sizeof(sae_graph_eval_options), SAE_ABLATE_MEAN, SAE_GRAPH_ERRORS_AS_NODES, 0, 0, NULL,   \
     NULL, NULL}

/** @brief Faithfulness and completeness of a circuit (sae_graph_evaluate()). */
typedef struct sae_graph_eval {
    uint32_t struct_size;      /**< sizeof(sae_graph_eval). */
    uint32_t reserved;         /**< Zero. */
    int64_t n_nodes;           /**< Nodes in the circuit. */
    double metric_full;        /**< m(M): the model with nothing ablated. */
    double metric_empty;       /**< m(∅): every node ablated. */
    double metric_circuit;     /**< m(C): every node outside the circuit ablated. */
    double metric_complement;  /**< m(M \\ C): every node of the circuit ablated. */
    double faithfulness;       /**< (m(C) − m(∅)) / (m(M) − m(∅)). */
    double completeness;       /**< (m(M \\ C) − m(∅)) / (m(M) − m(∅)). */
} sae_graph_eval;

/** @brief Initialiser for ::sae_graph_eval. */
#define SAE_GRAPH_EVAL_INIT {sizeof(sae_graph_eval), 0u, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}

/**
 * @brief Faithfulness and completeness of a circuit (feature-circuits' ablation.py).
 *
 * Runs the clean prompts with every node outside the circuit replaced by its ablation value at
 * every hook point of the graph (m(C)), likewise for the complement and for the empty circuit;
 * each hook point encodes the activations as they arrive (after the ablations upstream). A
 * node's features are replaced at every position (summed nodes) or at its position. Metrics
 * are means over the pairs.
 * @param[out] out Filled; set out->struct_size first (::SAE_GRAPH_EVAL_INIT does).
 * @param[in] graph The graph (its hook names are looked up in @p host).
 * @param[in] circuit (n_nodes) non-zero: the node is in the circuit; or NULL: the nodes with
 *            |effect| > the graph's node threshold.
 * @param[in] host The model.
 * @param[in] dicts (n_hooks of the graph) the dictionaries, as at attribution.
 * @param[in] pairs Prompt pairs (the clean prompts run; the patch prompts give the means).
 * @param[in] options Settings, or NULL for defaults.
 * @return ::SAE_OK, ::SAE_EINVAL, ::SAE_ESHAPE, ::SAE_ENOTFOUND (a hook name), ::SAE_ERANGE,
 *         ::SAE_EUNSUPPORTED, ::SAE_ENOMEM, or the error of the host or metric. Non-finite
 *         activations of the host propagate into the metrics and ratios (NaN), not an error.
 */
SAE_API sae_status sae_graph_evaluate(sae_graph_eval *out, const sae_graph *graph,
                                      const uint8_t *circuit, const sae_host *host,
                                      const sae_dict *const *dicts,
                                      const sae_prompt_pairs *pairs,
                                      const sae_graph_eval_options *options);

/**
 * @brief Faithfulness (and completeness) against circuit size: circuit i holds the sizes[i]
 *        nodes of largest |effect| (sae_graph_top_nodes()).
 * @param[out] faithfulness (n_sizes) values.
 * @param[out] completeness (n_sizes) values, or NULL to skip the complement runs.
 * @param[in] graph The graph.
 * @param[in] sizes (n_sizes) circuit sizes >= 0 (larger than the graph: all nodes).
 * @param[in] n_sizes Points (>= 1).
 * @param[in] host The model.
 * @param[in] dicts (n_hooks of the graph) the dictionaries.
 * @param[in] pairs Prompt pairs.
 * @param[in] options Settings, or NULL for defaults.
 * @return As sae_graph_evaluate().
 */
SAE_API sae_status sae_graph_faithfulness_curve(double *faithfulness, double *completeness,
                                                const sae_graph *graph, const int64_t *sizes,
                                                int64_t n_sizes, const sae_host *host,
                                                const sae_dict *const *dicts,
                                                const sae_prompt_pairs *pairs,
                                                const sae_graph_eval_options *options);

/**
 * @brief Ablate chosen nodes (SHIFT): run the clean prompts with the flagged nodes replaced by
 *        their ablation value (zero with ::SAE_ABLATE_ZERO, the SHIFT setting) and every other
 *        node kept — in particular the error terms — and report the metric per pair.
 * @param[out] metric_clean (n_pairs) the metric of the unablated model.
 * @param[out] metric_ablated (n_pairs) the metric with the nodes ablated.
 * @param[in] graph The graph whose nodes are flagged.
 * @param[in] nodes (n_nodes) non-zero: ablate this node.
 * @param[in] host The model.
 * @param[in] dicts (n_hooks of the graph) the dictionaries.
 * @param[in] pairs Prompt pairs.
 * @param[in] options Settings (ablation value, metric), or NULL for defaults; @ref
 *            sae_graph_eval_options.errors is not used.
 * @return As sae_graph_evaluate().
 */
SAE_API sae_status sae_graph_ablate(float *metric_clean, float *metric_ablated,
                                    const sae_graph *graph, const uint8_t *nodes,
                                    const sae_host *host, const sae_dict *const *dicts,
                                    const sae_prompt_pairs *pairs,
                                    const sae_graph_eval_options *options);

/** @return Static name of a method ("ig", "atp", "exact"), or "unknown". @param[in] method A
 *          ::sae_graph_method. */
SAE_API const char *sae_graph_method_name(int32_t method);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_GRAPH_H */
