/* ablation.c: runs of the clean prompts with nodes ablated (feature-circuits' ablation.py) —
 * faithfulness and completeness of a circuit, their curve against circuit size, and SHIFT's
 * feature ablation.
 *
 * At each hook point of the graph the activations x arriving (after any ablation upstream) are
 * split into codes f and error ε (x = f D~ + b~ + ε); every node not kept takes its ablation
 * value — the mean over the patch prompts of the same length at that position (or zero) — and
 * x is rebuilt from the result. Keep flags live in slots (P, F + 1) per hook as in the
 * attribution (slot 0 of a position is the error). */
#include <math.h>
#include <string.h>

#include "graph_internal.h"

typedef struct {
    sae_host host;
    sae_graph_eval_options o;
    const sae_allocator *a;
    int threads;
    const sae_graph *g;
    int32_t H;
    sae__circuit_sae *saes;
    sae__pair_batches b;
    int64_t P, F_max;
    int64_t n_groups;        /* distinct prompt lengths */
    int64_t *group_of;       /* (n_batches) group of each batch */
    float **mean_f, **mean_e; /* (n_groups · H) (T, F), (T, D): the mean states */
    uint8_t **keep;          /* (H) (P, F + 1) */
    const sae__batch *batch; /* the batch being run, and its group */
    int64_t group;
    float *logits, *metric, *x, *f, *err;
} eval_ctx;

static void ctx_free(eval_ctx *c)
{
    const sae_allocator *a = c->a;
    for (int64_t i = 0; i < c->n_groups * c->H; i++) {
        if (c->mean_f)
            sae__free(a, c->mean_f[i]);
        if (c->mean_e)
            sae__free(a, c->mean_e[i]);
    }
    for (int32_t k = 0; c->keep && k < c->H; k++)
        sae__free(a, c->keep[k]);
    void *owned[] = {c->group_of, c->mean_f, c->mean_e, c->keep, c->logits, c->metric, c->x,
                     c->f, c->err};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(a, owned[i]);
    sae__circuit_saes_free(c->saes, c->H, a);
    sae__free(a, c->saes);
    sae__pair_batches_free(&c->b, a);
}

/* Check the options and inputs; resolve the hook names; build the SAEs, groups, keep tables
 * and workspace. */
static sae_status ctx_init(eval_ctx *c, const sae_graph *g, const sae_host *host,
                           const sae_dict *const *dicts, const sae_prompt_pairs *pairs,
                           const sae_graph_eval_options *options)
{
    memset(c, 0, sizeof *c);
    c->o = (sae_graph_eval_options)SAE_GRAPH_EVAL_OPTIONS_INIT;
    c->host = (sae_host)SAE_HOST_INIT;
    c->a = sae__allocator(NULL);
    if (!g || !dicts)
        return sae__fail(SAE_EINVAL, "circuit evaluation: graph and dicts are required");
    sae_status s = sae__read_options(&c->o, sizeof c->o, options, "sae_graph_eval_options");
    if (s != SAE_OK || (s = sae_host_check(host)) != SAE_OK ||
        (s = sae__read_options(&c->host, sizeof c->host, host, "sae_host")) != SAE_OK)
        return s;
    if ((c->o.ablation != SAE_ABLATE_MEAN && c->o.ablation != SAE_ABLATE_ZERO) ||
        c->o.errors < SAE_GRAPH_ERRORS_AS_NODES || c->o.errors > SAE_GRAPH_ERRORS_REMOVE ||
        c->o.n_threads < 0 || c->o.batch_size < 0)
        return sae__fail(SAE_EINVAL, "circuit evaluation options: ablation %d, errors %d, "
                         "n_threads %d, batch_size %lld", (int)c->o.ablation, (int)c->o.errors,
                         (int)c->o.n_threads, (long long)c->o.batch_size);
    c->a = sae__allocator(c->o.allocator);
    c->threads = sae__threads(c->o.n_threads);
    c->g = g;
    if ((s = sae__pair_batches_init(&c->b, pairs, &c->host, c->o.batch_size, c->o.metric,
                                    c->o.metric_user, c->a)) != SAE_OK)
        return s;
    const int32_t H = g->n_hooks;
    int32_t *ids = sae__alloc_array(c->a, (size_t)H, sizeof(int32_t));
    c->saes = sae__graph_zeroed(c->a, H, sizeof *c->saes);
    if (!ids || !c->saes) {
        sae__free(c->a, ids);
        return SAE_ENOMEM;
    }
    c->H = H;
    for (int32_t k = 0; k < H && s == SAE_OK; k++) {
        s = sae_host_find_hook(&ids[k], host, g->hook_names[k]);
        if (s == SAE_OK && dicts[k] && sae_dict_d_sae(dicts[k]) != g->d_sae[k])
            s = sae__fail(SAE_ESHAPE, "circuit evaluation: the dictionary at \"%s\" has %lld "
                          "features, the graph %lld", g->hook_names[k],
                          (long long)sae_dict_d_sae(dicts[k]), (long long)g->d_sae[k]);
    }
    if (s == SAE_OK)
        s = sae__circuit_saes_init(c->saes, &c->host, ids, dicts, H, c->b.max_rows, c->threads,
                                   c->a);
    sae__free(c->a, ids);
    if (s != SAE_OK)
        return s;
    c->P = g->aggregation == SAE_GRAPH_PER_POSITION ? g->n_positions : 1;
    if (!(c->group_of = sae__alloc_array(c->a, (size_t)c->b.n_batches, sizeof(int64_t))))
        return SAE_ENOMEM;
    for (int64_t i = 0; i < c->b.n_batches; i++) {
        const int64_t T = c->b.batches[i].T;
        if (g->aggregation == SAE_GRAPH_PER_POSITION && T != g->n_positions)
            return sae__fail(SAE_ESHAPE, "circuit evaluation: the graph has nodes per position "
                             "of prompts of %lld tokens; a prompt has %lld",
                             (long long)g->n_positions, (long long)T);
        if (i > 0 && T != c->b.batches[i - 1].T)
            c->n_groups++;
        c->group_of[i] = c->n_groups;
    }
    c->n_groups++;
    const int64_t rows = c->b.max_rows, D = c->host.d_model;
    int64_t max_count = 0;
    for (int32_t k = 0; k < H; k++)
        c->F_max = c->saes[k].F > c->F_max ? c->saes[k].F : c->F_max;
    for (int64_t i = 0; i < c->b.n_batches; i++)
        max_count = c->b.batches[i].count > max_count ? c->b.batches[i].count : max_count;
    const size_t ptr = sizeof(void *);
    if (!(c->keep = sae__graph_zeroed(c->a, H, ptr)) ||
        !(c->mean_f = sae__graph_zeroed(c->a, c->n_groups * H, ptr)) ||
        !(c->mean_e = sae__graph_zeroed(c->a, c->n_groups * H, ptr)) ||
        !(c->logits = sae__alloc_array(c->a, (size_t)(rows * c->host.vocab_size),
                                       sizeof(float))) ||
        !(c->metric = sae__alloc_array(c->a, (size_t)max_count, sizeof(float))) ||
        !(c->x = sae__alloc_array(c->a, (size_t)(rows * D), sizeof(float))) ||
        !(c->err = sae__alloc_array(c->a, (size_t)(rows * D), sizeof(float))) ||
        !(c->f = sae__alloc_array(c->a, (size_t)(rows * c->F_max), sizeof(float))))
        return SAE_ENOMEM;
    for (int32_t k = 0; k < H; k++)
        if (!(c->keep[k] = sae__alloc_array(c->a, (size_t)(c->P * (c->saes[k].F + 1)), 1)))
            return SAE_ENOMEM;
    return SAE_OK;
}

/* The mean states of each length group over its patch prompts (clean prompts without). */
static sae_status compute_means(eval_ctx *c)
{
    const int64_t D = c->host.d_model;
    float **rec = sae__graph_zeroed(c->a, c->H, sizeof(float *));
    int64_t *count = sae__alloc_array(c->a, (size_t)c->n_groups, sizeof(int64_t));
    sae_status s = rec && count ? SAE_OK : SAE_ENOMEM;
    for (int32_t k = 0; s == SAE_OK && k < c->H; k++)
        if (!(rec[k] = sae__alloc_array(c->a, (size_t)(c->b.max_rows * D), sizeof(float))))
            s = SAE_ENOMEM;
    for (int64_t gi = 0; s == SAE_OK && gi < c->n_groups; gi++)
        count[gi] = 0;
    /* Allocate the zeroed sums of each group at its length. */
    for (int64_t i = 0; s == SAE_OK && i < c->b.n_batches; i++) {
        const int64_t gi = c->group_of[i], T = c->b.batches[i].T;
        for (int32_t k = 0; s == SAE_OK && k < c->H; k++) {
            float **mf = &c->mean_f[gi * c->H + k], **me = &c->mean_e[gi * c->H + k];
            if (*mf)
                continue;
            const int64_t nf = T * c->saes[k].F;
            if (!(*mf = sae__alloc_array(c->a, (size_t)nf, sizeof(float))) ||
                !(*me = sae__alloc_array(c->a, (size_t)(T * D), sizeof(float))))
                s = SAE_ENOMEM;
            else {
                memset(*mf, 0, (size_t)nf * sizeof(float));
                memset(*me, 0, (size_t)(T * D) * sizeof(float));
            }
        }
    }
    const bool paired = c->b.pairs.patch_tokens != NULL;
    for (int64_t i = 0; s == SAE_OK && i < c->b.n_batches; i++) {
        const sae__batch *bt = &c->b.batches[i];
        const int64_t gi = c->group_of[i], T = bt->T, n = bt->count * T;
        sae__pair_batches_load(&c->b, i);
        sae__hook_io io = {D, rec, NULL, NULL};
        if ((s = sae__run_io(&c->host, &c->b, bt, c->saes, c->H, paired, &io, NULL, NULL,
                             NULL)) != SAE_OK)
            break;
        count[gi] += bt->count;
        for (int32_t k = 0; s == SAE_OK && k < c->H; k++) {
            const int64_t F = c->saes[k].F;
            if ((s = sae__circuit_state(&c->saes[k], rec[k], n, c->f, c->err, c->threads)))
                break;
            float *mf = c->mean_f[gi * c->H + k], *me = c->mean_e[gi * c->H + k];
            for (int64_t r = 0; r < n; r++) {
                const int64_t t = r % T;
                for (int64_t j = 0; j < F; j++)
                    mf[t * F + j] += c->f[r * F + j];
                for (int64_t d = 0; d < D; d++)
                    me[t * D + d] += c->err[r * D + d];
            }
        }
    }
    /* Sums to means: divide each group's tables by its number of prompts. */
    for (int64_t i = 0; s == SAE_OK && i < c->b.n_batches; i++) {
        const int64_t gi = c->group_of[i], T = c->b.batches[i].T;
        if (i > 0 && c->group_of[i - 1] == gi)
            continue;
        for (int32_t k = 0; k < c->H; k++) {
            float *mf = c->mean_f[gi * c->H + k], *me = c->mean_e[gi * c->H + k];
            for (int64_t j = 0; j < T * c->saes[k].F; j++)
                mf[j] /= (float)count[gi];
            for (int64_t j = 0; j < T * D; j++)
                me[j] /= (float)count[gi];
        }
    }
    for (int32_t k = 0; rec && k < c->H; k++)
        sae__free(c->a, rec[k]);
    sae__free(c->a, rec);
    sae__free(c->a, count);
    return s;
}

/* The hook of an ablated run at circuit hook k: nodes not kept take their ablation values. */
static sae_status ablate_hook(void *user, int32_t k, float *x, int64_t n, int64_t ld)
{
    eval_ctx *c = user;
    const sae__circuit_sae *sa = &c->saes[k];
    const int64_t F = sa->F, D = sa->D, T = c->batch->T;
    for (int64_t r = 0; r < n; r++)
        memcpy(c->x + r * D, x + r * ld, (size_t)D * sizeof(float));
    sae_status s = sae__circuit_state(sa, c->x, n, c->f, c->err, c->threads);
    if (s != SAE_OK)
        return s;
    const bool mean = c->o.ablation == SAE_ABLATE_MEAN;
    const float *mf = mean ? c->mean_f[c->group * c->H + k] : NULL;
    const float *me = mean ? c->mean_e[c->group * c->H + k] : NULL;
    for (int64_t r = 0; r < n; r++) {
        const int64_t t = r % T;
        const uint8_t *kp = c->keep[k] + (c->P > 1 ? t : 0) * (F + 1);
        if (!kp[0])
            for (int64_t d = 0; d < D; d++)
                c->err[r * D + d] = me ? me[t * D + d] : 0.0f;
        for (int64_t j = 0; j < F; j++)
            if (!kp[1 + j])
                c->f[r * F + j] = mf ? mf[t * F + j] : 0.0f;
    }
    if ((s = sae__circuit_compose(sa, c->f, c->err, n, c->x, c->threads)) != SAE_OK)
        return s;
    for (int64_t r = 0; r < n; r++)
        memcpy(x + r * ld, c->x + r * D, (size_t)D * sizeof(float));
    return SAE_OK;
}

/* Run every batch (ablated per c->keep when `ablate`); the mean metric into *mean and each
 * pair's into per_pair (n_pairs) when not NULL. */
static sae_status run_all(eval_ctx *c, bool ablate, double *mean, float *per_pair)
{
    double sum = 0.0;
    sae__dispatch d = {c->saes, c->H, ablate_hook, c};
    sae_status s = SAE_OK;
    for (int64_t i = 0; s == SAE_OK && i < c->b.n_batches; i++) {
        const sae__batch *bt = &c->b.batches[i];
        sae__pair_batches_load(&c->b, i);
        c->batch = bt, c->group = c->group_of[i];
        s = sae_host_forward(&c->host, c->b.clean, bt->count, bt->T, c->logits,
                             ablate ? sae__dispatch_hook : NULL, ablate ? &d : NULL);
        if (s == SAE_OK)
            s = sae__pair_metric(&c->b, c->logits, bt->count, bt->T, c->metric, NULL);
        for (int64_t e = 0; s == SAE_OK && e < bt->count; e++) {
            sum += c->metric[e];
            if (per_pair)
                per_pair[c->b.index[e]] = c->metric[e];
        }
    }
    if (mean)
        *mean = sum / (double)c->b.pairs.n_pairs;
    return s;
}

/* Keep flags: the flagged nodes (flags NULL: none) kept and the rest ablated, or the reverse
 * with `complement`; then the error slots per c->o.errors unless `nodes_only`. */
static void set_keep(eval_ctx *c, const uint8_t *flags, bool complement, bool nodes_only)
{
    const sae_graph *g = c->g;
    for (int32_t k = 0; k < c->H; k++)
        memset(c->keep[k], complement ? 1 : 0, (size_t)(c->P * (c->saes[k].F + 1)));
    for (int64_t i = 0; flags && i < g->n_nodes; i++)
        if (flags[i]) {
            const int32_t k = g->node_hook[i];
            const int64_t p = g->node_pos[i] < 0 ? 0 : g->node_pos[i];
            c->keep[k][p * (c->saes[k].F + 1) + 1 + g->node_feat[i]] = complement ? 0 : 1;
        }
    if (nodes_only || c->o.errors == SAE_GRAPH_ERRORS_AS_NODES)
        return;
    for (int32_t k = 0; k < c->H; k++)
        for (int64_t p = 0; p < c->P; p++)
            c->keep[k][p * (c->saes[k].F + 1)] = c->o.errors == SAE_GRAPH_ERRORS_KEEP;
}

static sae_status prepare(eval_ctx *c, const sae_graph *g, const sae_host *host,
                          const sae_dict *const *dicts, const sae_prompt_pairs *pairs,
                          const sae_graph_eval_options *options)
{
    sae_status s = ctx_init(c, g, host, dicts, pairs, options);
    if (s == SAE_OK && c->o.ablation == SAE_ABLATE_MEAN)
        s = compute_means(c);
    return s;
}

/* m(M) and m(∅). */
static sae_status full_and_empty(eval_ctx *c, double *full, double *empty)
{
    sae_status s = run_all(c, false, full, NULL);
    if (s == SAE_OK) {
        set_keep(c, NULL, false, false);
        s = run_all(c, true, empty, NULL);
    }
    return s;
}

/* (m − m(∅)) / (m(M) − m(∅)). */
static double ratio(double m, double full, double empty) { return (m - empty) / (full - empty); }

sae_status sae_graph_evaluate(sae_graph_eval *out, const sae_graph *graph,
                              const uint8_t *circuit, const sae_host *host,
                              const sae_dict *const *dicts, const sae_prompt_pairs *pairs,
                              const sae_graph_eval_options *options)
{
    if (!out || out->struct_size < 4)
        return sae__fail(SAE_EINVAL, "circuit evaluation: out must be initialised with "
                                     "SAE_GRAPH_EVAL_INIT");
    eval_ctx c;
    sae_status s = prepare(&c, graph, host, dicts, pairs, options);
    uint8_t *flags = NULL;
    sae_graph_eval v = SAE_GRAPH_EVAL_INIT;
    if (s == SAE_OK && !circuit) {
        if (!(flags = sae__alloc_array(c.a, (size_t)(graph->n_nodes + 1), 1)))
            s = SAE_ENOMEM;
        for (int64_t i = 0; s == SAE_OK && i < graph->n_nodes; i++)
            flags[i] = fabsf(graph->node_effect[i]) > graph->node_threshold;
        circuit = flags;
    }
    for (int64_t i = 0; s == SAE_OK && i < graph->n_nodes; i++)
        v.n_nodes += circuit[i] != 0;
    if (s == SAE_OK)
        s = full_and_empty(&c, &v.metric_full, &v.metric_empty);
    if (s == SAE_OK) {
        set_keep(&c, circuit, false, false);
        s = run_all(&c, true, &v.metric_circuit, NULL);
    }
    if (s == SAE_OK) {
        set_keep(&c, circuit, true, false);
        s = run_all(&c, true, &v.metric_complement, NULL);
    }
    if (s == SAE_OK) {
        v.faithfulness = ratio(v.metric_circuit, v.metric_full, v.metric_empty);
        v.completeness = ratio(v.metric_complement, v.metric_full, v.metric_empty);
        sae__write_options(out, &v, sizeof v);
    }
    sae__free(c.a, flags);
    ctx_free(&c);
    return s;
}

sae_status sae_graph_faithfulness_curve(double *faithfulness, double *completeness,
                                        const sae_graph *graph, const int64_t *sizes,
                                        int64_t n_sizes, const sae_host *host,
                                        const sae_dict *const *dicts,
                                        const sae_prompt_pairs *pairs,
                                        const sae_graph_eval_options *options)
{
    if (!faithfulness || !sizes || n_sizes < 1)
        return sae__fail(SAE_EINVAL, "faithfulness curve: faithfulness and sizes are required, "
                                     "n_sizes (%lld) >= 1", (long long)n_sizes);
    for (int64_t i = 0; i < n_sizes; i++)
        if (sizes[i] < 0)
            return sae__fail(SAE_EINVAL, "faithfulness curve: size %lld is %lld", (long long)i,
                             (long long)sizes[i]);
    eval_ctx c;
    sae_status s = prepare(&c, graph, host, dicts, pairs, options);
    const int64_t n = s == SAE_OK ? graph->n_nodes : 0;
    int64_t *order = NULL, ranked = 0;
    uint8_t *flags = NULL;
    double full = 0, empty = 0;
    if (s == SAE_OK && (!(order = sae__alloc_array(c.a, (size_t)(n + 1), sizeof(int64_t))) ||
                        !(flags = sae__alloc_array(c.a, (size_t)(n + 1), 1))))
        s = SAE_ENOMEM;
    if (s == SAE_OK && (s = sae_graph_top_nodes(order, &ranked, graph, n, -1)) == SAE_OK)
        s = full_and_empty(&c, &full, &empty);
    for (int64_t i = 0; s == SAE_OK && i < n_sizes; i++) {
        memset(flags, 0, (size_t)(n + 1));
        for (int64_t r = 0; r < ranked && r < sizes[i]; r++)
            flags[order[r]] = 1;
        double m = 0;
        set_keep(&c, flags, false, false);
        if ((s = run_all(&c, true, &m, NULL)) != SAE_OK)
            break;
        faithfulness[i] = ratio(m, full, empty);
        if (completeness) {
            set_keep(&c, flags, true, false);
            if ((s = run_all(&c, true, &m, NULL)) != SAE_OK)
                break;
            completeness[i] = ratio(m, full, empty);
        }
    }
    sae__free(c.a, order);
    sae__free(c.a, flags);
    ctx_free(&c);
    return s;
}

sae_status sae_graph_ablate(float *metric_clean, float *metric_ablated, const sae_graph *graph,
                            const uint8_t *nodes, const sae_host *host,
                            const sae_dict *const *dicts, const sae_prompt_pairs *pairs,
                            const sae_graph_eval_options *options)
{
    if (!metric_clean || !metric_ablated || !nodes)
        return sae__fail(SAE_EINVAL, "circuit ablate: metric_clean, metric_ablated and nodes "
                                     "are required");
    eval_ctx c;
    sae_status s = prepare(&c, graph, host, dicts, pairs, options);
    if (s == SAE_OK)
        s = run_all(&c, false, NULL, metric_clean);
    if (s == SAE_OK) {
        set_keep(&c, nodes, true, true);
        s = run_all(&c, true, NULL, metric_ablated);
    }
    ctx_free(&c);
    return s;
}
