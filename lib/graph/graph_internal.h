/*
 * graph_internal.h: what the files of lib/graph share — the layout of sae_graph, the circuit's
 * SAEs in model space, prompt pairs in batches, the metric, hook dispatch, and the kernel that
 * turns gradients into node effects and edge weights.
 *
 * Notation (graph.h, MATH.md): at circuit hook k, x = f D~ + b~ + ε with f (n, F) the codes,
 * D~ (F, D) the model-space decoder directions, ε = x − x̂ the error. Rows of a batch are
 * r = e · T + t (pair e of the batch, position t). Node slots of a hook: P × (F + 1) with
 * P = 1 (summed positions) or T, slot p (F + 1) + 0 the error and p (F + 1) + 1 + j feature j.
 */
#ifndef SAE_GRAPH_INTERNAL_H
#define SAE_GRAPH_INTERNAL_H

#include "../internal.h"

/* ---- the graph (graph.c) ------------------------------------------------------------------ */

struct sae_graph {
    const sae_allocator *a;
    int32_t n_hooks;
    char **hook_names;          /* (n_hooks) */
    int64_t *d_sae;             /* (n_hooks) */
    int32_t method, aggregation, ig_steps;
    int64_t n_pairs, n_positions;
    float node_threshold, edge_threshold;
    double metric_clean, metric_patch;
    int64_t n_nodes, cap_nodes;
    int32_t *node_hook, *node_pos, *node_feat;
    float *node_effect;
    int64_t n_edges, cap_edges;
    int64_t *edge_src, *edge_dst;
    float *edge_w;
    int64_t n_labels, cap_labels;
    int32_t *label_hook, *label_feat;
    char **label_text;
    int64_t n_meta, cap_meta;
    char **meta_key, **meta_value;
};

/* A zeroed array of count (at least 1) elements of size bytes from a; NULL on failure. */
void *sae__graph_zeroed(const sae_allocator *a, int64_t count, size_t size);

/* Room for n more nodes / edges (arrays grown by doubling). SAE_ENOMEM leaves g unchanged. */
sae_status sae__graph_reserve_nodes(sae_graph *g, int64_t n);
sae_status sae__graph_reserve_edges(sae_graph *g, int64_t n);

/* Append a node or an edge; the room must have been reserved. No checks. */
void sae__graph_push_node(sae_graph *g, int32_t hook, int32_t pos, int32_t feat, float effect);
void sae__graph_push_edge(sae_graph *g, int64_t src, int64_t dst, float w);

/* ---- the circuit's SAEs in model space (saes.c) -------------------------------------------- */

typedef struct sae__circuit_sae {
    int32_t id;              /* hook id in the host */
    const sae_dict *dict;
    int64_t F, D;
    float *dec;              /* (F, D) d~_j */
    float *enc;              /* (F, D) e~_j: the gradient of an active code */
    float *bias;             /* (D) b~ */
    sae_encoder *encoder;    /* sized for max_rows */
} sae__circuit_sae;

/* The SAEs of a circuit: checks each dictionary (d_in = host d_model, affine normalisation),
 * the hook ids (distinct, in [0, n_hooks of host)), and builds the model-space directions.
 * out: (n_hooks) zeroed entries; free with sae__circuit_saes_free even on failure. */
sae_status sae__circuit_saes_init(sae__circuit_sae *out, const sae_host *host,
                                  const int32_t *hooks, const sae_dict *const *dicts,
                                  int32_t n_hooks, int64_t max_rows, int n_threads,
                                  const sae_allocator *a);
void sae__circuit_saes_free(sae__circuit_sae *s, int32_t n_hooks, const sae_allocator *a);

/* The state of activations x (n, D) at one SAE: codes f (n, F) and error err (n, D)
 * (x̂ = f D~ + b~, err = x − x̂). x == NULL is the zero state (f = 0, err = 0). */
sae_status sae__circuit_state(const sae__circuit_sae *s, const float *x, int64_t n, float *f,
                              float *err, int n_threads);

/* x (n, D) = f D~ + b~ + err: activations from a state. */
sae_status sae__circuit_compose(const sae__circuit_sae *s, const float *f, const float *err,
                                int64_t n, float *x, int n_threads);

/* ---- prompt pairs in batches (pairs.c) ---------------------------------------------------- */

typedef struct sae__batch {
    int64_t first;           /* index into sae__pair_batches.order */
    int64_t count;           /* pairs (sequences) */
    int64_t T;               /* tokens per prompt */
} sae__batch;

typedef struct sae__pair_batches {
    sae_prompt_pairs pairs;  /* the caller's pairs (copied header, borrowed arrays) */
    int64_t *order;          /* (n_pairs) pair indices grouped by length (stable) */
    sae__batch *batches;
    int64_t n_batches;
    int64_t max_rows;        /* largest count · T */
    int64_t max_T;
    int32_t *clean, *patch;  /* (max_rows) tokens of the current batch */
    int64_t *index;          /* (max count) pair index of each sequence of the current batch */
    sae_metric_fn metric;
    void *metric_user;
    int64_t vocab;
} sae__pair_batches;

/* Check the pairs against the host (lengths 1..max_seq_len, equal clean / patch lengths given
 * by the shared offsets, tokens and answers in the vocabulary) and group them into batches of
 * at most batch_size sequences of one length. */
sae_status sae__pair_batches_init(sae__pair_batches *b, const sae_prompt_pairs *pairs,
                                  const sae_host *host, int64_t batch_size, sae_metric_fn metric,
                                  void *metric_user, const sae_allocator *a);
void sae__pair_batches_free(sae__pair_batches *b, const sae_allocator *a);

/* Load batch i's tokens into b->clean / b->patch and b->index. */
void sae__pair_batches_load(sae__pair_batches *b, int64_t i);

/* The metric of each sequence of the loaded batch (n_seq, T) and, when d_logits is not NULL,
 * its gradient: the callback, or logit[clean answer] − logit[patch answer] at the last
 * position. */
sae_status sae__pair_metric(const sae__pair_batches *b, const float *logits, int64_t n_seq,
                            int64_t T, float *metric, float *d_logits);

/* ---- hook dispatch (run.c) ---------------------------------------------------------------- */

/* A per-circuit-hook callback: k is the index of the hook in the circuit. */
typedef sae_status (*sae__circuit_hook_fn)(void *user, int32_t k, float *x, int64_t n,
                                           int64_t ld);

typedef struct sae__dispatch {
    const sae__circuit_sae *saes;
    int32_t n_hooks;
    sae__circuit_hook_fn fn;
    void *user;
} sae__dispatch;

/* A sae_hook_fn (user: sae__dispatch) calling d->fn for the circuit's hook points. */
sae_status sae__dispatch_hook(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld);

/* What the common hooks do at circuit hook k: rec[k] (n, D) receives x when not NULL; then
 * x = set[k] when set[k] is not NULL; then x += add[k] when add[k] is not NULL. Arrays of
 * n_hooks pointers, each NULL or NULL-able. */
typedef struct sae__hook_io {
    int64_t D;               /* d_model: the width of the rows */
    float *const *rec;
    const float *const *set;
    const float *const *add;
} sae__hook_io;

/* A sae__circuit_hook_fn with user = sae__hook_io. */
sae_status sae__hook_io_fn(void *user, int32_t k, float *x, int64_t n, int64_t ld);

/* Forward the loaded batch's clean (or patch) prompts with io at the circuit hooks; logits
 * (n_seq, T, vocab) and the metric (n_seq) and its gradient when the pointers are not NULL. */
sae_status sae__run_io(const sae_host *host, sae__pair_batches *b, const sae__batch *batch,
                       const sae__circuit_sae *saes, int32_t n_hooks, bool patch,
                       const sae__hook_io *io, float *logits, float *metric, float *d_logits);

/* ---- the effect kernel (effects.c) -------------------------------------------------------- */

/* Contributions of the nodes of one hook given a gradient G at it:
 *   feat (n, F) = (G D~ᵀ) ⊙ df        err (n) = rowwise <G, derr>
 * G, derr: (n, D); dec: (F, D); df: (n, F). The node effect (G the gradient of m) and the edge
 * weight (G a vector-Jacobian product from a downstream node) are both this. */
sae_status sae__graph_contrib(float *feat, float *err, const float *G, const float *dec,
                              const float *df, const float *derr, int64_t n, int64_t F,
                              int64_t D, int n_threads);
/* The same with plain loops (double accumulation): the reference twin. */
void sae__graph_contrib_ref(float *feat, float *err, const float *G, const float *dec,
                            const float *df, const float *derr, int64_t n, int64_t F,
                            int64_t D);

/* Add the contributions of a batch (count pairs of T tokens) into node slots (P, F + 1) per
 * the aggregation: SUM adds every row into p = 0, PER_POSITION adds row e T + t into p = t. */
void sae__graph_accumulate(double *slots, const float *feat, const float *err, int64_t count,
                           int64_t T, int64_t F, int32_t aggregation);

/* ---- edge accumulator (edge_map.c) ----------------------------------------------------------
 * Sums of edge weights keyed by (source node, target node): open addressing with linear
 * probing, grown at half load. */
typedef struct sae__edge_map {
    const sae_allocator *a;
    int64_t cap, count;        /* cap: a power of two */
    int64_t *src, *dst;        /* (cap); src -1: empty */
    double *w;                 /* (cap) */
} sae__edge_map;

sae_status sae__edge_map_init(sae__edge_map *m, const sae_allocator *a);
void sae__edge_map_free(sae__edge_map *m);
/* w(src, dst) += v. */
sae_status sae__edge_map_add(sae__edge_map *m, int64_t src, int64_t dst, double v);

/* ---- attribution (attribute.c, gradients.c, exact.c, edges.c) ------------------------------ */

typedef struct sae__attrib {
    sae_host host;             /* the caller's table, read with its struct_size */
    sae_graph_options o;
    const sae_allocator *a;
    int threads;
    int32_t H;
    sae__circuit_sae *saes;    /* (H) */
    sae__pair_batches b;
    int64_t P;                 /* node positions per hook: 1 (SUM) or T */
    int64_t F_max, rows;       /* largest d_sae; rows of the largest batch */
    double **slots;            /* (H) (P, F + 1) sums of node effects over pairs */
    /* Workspace of one batch. */
    float **xc, **xp, **grad;  /* (H) (rows, D): clean, patch activations; gradient */
    float **d_hooks;           /* (host n_hooks) pointers handed to the host */
    uint8_t *stop;             /* (host n_hooks) stop-gradient flags */
    float *logits, *d_logits;  /* (rows, vocab) */
    float *m_clean, *m_run;    /* (batch) metric per sequence */
    float *fc, *ec, *fp, *ep;  /* (rows, F_max), (rows, D), ... states */
    float *feat, *err;         /* (rows, F_max), (rows) contributions */
    float *tmp;                /* (rows, D) */
    const float **one;         /* (H) NULL but for one entry: a set / add table of sae__hook_io */
    /* With edges: the patch activations and gradients of every pair, (H) (tokens, D). */
    float **cache_xp, **cache_grad;
    int64_t *batch_row;        /* (n_batches) first row of each batch in the caches */
    int64_t done, total;       /* progress, in host passes */
} sae__attrib;

/* Count n host passes and report progress; SAE_ECANCELED if the callback asks to stop. */
sae_status sae__attrib_step(sae__attrib *c, int64_t n);

/* Gradients of the metric at every hook (c->grad) for the loaded batch whose clean run has
 * just been made with its d_logits in c->d_logits: the clean gradient, then for IG the mean
 * over the interpolations (gradients.c). */
sae_status sae__attrib_gradients(sae__attrib *c, const sae__batch *batch);

/* Exact effects at hook k of the loaded batch into c->feat / c->err, given the deltas of the
 * codes df (rows, F) and of the error de (rows, D) and the clean metric c->m_clean
 * (exact.c). */
sae_status sae__attrib_exact(sae__attrib *c, const sae__batch *batch, int32_t k,
                             const float *df, const float *de);

/* The edges of graph g between its nodes above the node threshold (edges.c). */
sae_status sae__attrib_edges(sae__attrib *c, sae_graph *g);

#endif /* SAE_GRAPH_INTERNAL_H */
