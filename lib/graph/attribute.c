/* attribute.c: sae_graph_attribute — checks, workspace, the node pass over the batches of pairs
 * (clean and patch runs, gradients, effects summed into node slots), the nodes of the graph,
 * then the edge pass (edges.c). */
#include <math.h>
#include <string.h>

#include "graph_internal.h"

sae_status sae__attrib_step(sae__attrib *c, int64_t n)
{
    c->done += n;
    if (c->done > c->total)
        c->total = c->done;
    if (c->o.progress && c->o.progress(c->o.progress_user, c->done, c->total))
        return sae__fail(SAE_ECANCELED, "circuit attribution canceled by the progress callback");
    return SAE_OK;
}

/* (count) float arrays of n elements each, into a table. */
static float **alloc_table(const sae_allocator *a, int32_t count, int64_t n)
{
    float **t = sae__graph_zeroed(a, count, sizeof(float *));
    if (!t)
        return NULL;
    for (int32_t i = 0; i < count; i++)
        if (!(t[i] = sae__alloc_array(a, (size_t)(n > 0 ? n : 1), sizeof(float)))) {
            for (int32_t j = 0; j < i; j++)
                sae__free(a, t[j]);
            sae__free(a, t);
            return NULL;
        }
    return t;
}

static void free_table(const sae_allocator *a, void **t, int32_t count)
{
    for (int32_t i = 0; t && i < count; i++)
        sae__free(a, t[i]);
    sae__free(a, t);
}

static void attrib_free(sae__attrib *c)
{
    const sae_allocator *a = c->a;
    free_table(a, (void **)c->slots, c->H);
    free_table(a, (void **)c->xc, c->H);
    free_table(a, (void **)c->xp, c->H);
    free_table(a, (void **)c->grad, c->H);
    free_table(a, (void **)c->cache_xp, c->H);
    free_table(a, (void **)c->cache_grad, c->H);
    void *owned[] = {(void *)c->one, c->d_hooks, c->stop, c->logits, c->d_logits, c->m_clean,
                     c->m_run, c->fc, c->ec, c->fp, c->ep, c->feat, c->err, c->tmp,
                     c->batch_row};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(a, owned[i]);
    sae__circuit_saes_free(c->saes, c->H, a);
    sae__free(a, c->saes);
    sae__pair_batches_free(&c->b, a);
}

static sae_status check_options(const sae_graph_options *o)
{
    if (o->method < SAE_GRAPH_IG || o->method > SAE_GRAPH_EXACT)
        return sae__fail(SAE_EINVAL, "graph options: method %d is not a sae_graph_method",
                         (int)o->method);
    if (o->aggregation != SAE_GRAPH_SUM && o->aggregation != SAE_GRAPH_PER_POSITION)
        return sae__fail(SAE_EINVAL, "graph options: aggregation %d is not a "
                         "sae_graph_aggregation", (int)o->aggregation);
    if (o->ig_steps < 0 || o->n_threads < 0 || o->batch_size < 0 ||
        (o->flags & ~(uint32_t)SAE_GRAPH_NO_EDGES))
        return sae__fail(SAE_EINVAL, "graph options: negative ig_steps, n_threads or batch_size, "
                         "or unknown flags");
    if (!(o->node_threshold >= 0) || !(o->edge_threshold >= 0) || isinf(o->node_threshold) ||
        isinf(o->edge_threshold))
        return sae__fail(SAE_EINVAL, "graph options: thresholds %g and %g must be finite and "
                         ">= 0", (double)o->node_threshold, (double)o->edge_threshold);
    return SAE_OK;
}

/* Everything of c that depends on the checked inputs. */
static sae_status attrib_init(sae__attrib *c, const int32_t *hooks, const sae_dict *const *dicts,
                              int32_t H, const sae_prompt_pairs *pairs)
{
    const sae_allocator *a = c->a;
    const bool edges = !(c->o.flags & SAE_GRAPH_NO_EDGES);
    sae_status s = sae__pair_batches_init(&c->b, pairs, &c->host, c->o.batch_size, c->o.metric,
                                          c->o.metric_user, a);
    if (s != SAE_OK)
        return s;
    if (!(c->saes = sae__graph_zeroed(a, H, sizeof *c->saes)))
        return SAE_ENOMEM;
    c->H = H;
    if ((s = sae__circuit_saes_init(c->saes, &c->host, hooks, dicts, H, c->b.max_rows,
                                    c->threads, a)) != SAE_OK)
        return s;
    if ((c->o.method != SAE_GRAPH_EXACT || edges) && !c->host.backward)
        return sae__fail(SAE_EUNSUPPORTED, "circuit: the host has no backward pass (needed by "
                         "%s%s)", sae_graph_method_name(c->o.method), edges ? " and edges" : "");
    if (edges && !c->host.backward_from)
        return sae__fail(SAE_EUNSUPPORTED, "circuit: edges need the host's backward_from pass "
                         "(or set SAE_GRAPH_NO_EDGES)");
    const int64_t T0 = c->b.batches[0].T;
    if (c->o.aggregation == SAE_GRAPH_PER_POSITION)
        for (int64_t i = 0; i < c->b.n_batches; i++)
            if (c->b.batches[i].T != T0)
                return sae__fail(SAE_ESHAPE, "circuit: per-position nodes need prompts of one "
                                 "length; they have %lld and %lld tokens", (long long)T0,
                                 (long long)c->b.batches[i].T);
    c->P = c->o.aggregation == SAE_GRAPH_SUM ? 1 : T0;
    const int64_t D = c->host.d_model, rows = c->b.max_rows, V = c->host.vocab_size;
    c->rows = rows;
    for (int32_t k = 0; k < H; k++)
        c->F_max = c->saes[k].F > c->F_max ? c->saes[k].F : c->F_max;
    int64_t max_count = 0;
    for (int64_t i = 0; i < c->b.n_batches; i++)
        max_count = c->b.batches[i].count > max_count ? c->b.batches[i].count : max_count;
    if (!(c->slots = sae__graph_zeroed(a, H, sizeof(double *))))
        return SAE_ENOMEM;
    for (int32_t k = 0; k < H; k++)
        if (!(c->slots[k] = sae__graph_zeroed(a, c->P * (c->saes[k].F + 1), sizeof(double))))
            return SAE_ENOMEM;
    const int32_t NH = c->host.n_hooks;
    c->xc = alloc_table(a, H, rows * D);
    c->xp = alloc_table(a, H, rows * D);
    c->grad = alloc_table(a, H, rows * D);
    c->d_hooks = sae__alloc_array(a, (size_t)NH, sizeof(float *));
    c->stop = sae__alloc_array(a, (size_t)NH, 1);
    c->logits = sae__alloc_array(a, (size_t)(rows * V), sizeof(float));
    c->d_logits = sae__alloc_array(a, (size_t)(rows * V), sizeof(float));
    c->m_clean = sae__alloc_array(a, (size_t)max_count, sizeof(float));
    c->m_run = sae__alloc_array(a, (size_t)max_count, sizeof(float));
    c->fc = sae__alloc_array(a, (size_t)(rows * c->F_max), sizeof(float));
    c->fp = sae__alloc_array(a, (size_t)(rows * c->F_max), sizeof(float));
    c->feat = sae__alloc_array(a, (size_t)(rows * c->F_max), sizeof(float));
    c->ec = sae__alloc_array(a, (size_t)(rows * D), sizeof(float));
    c->ep = sae__alloc_array(a, (size_t)(rows * D), sizeof(float));
    c->tmp = sae__alloc_array(a, (size_t)(rows * D), sizeof(float));
    c->err = sae__alloc_array(a, (size_t)rows, sizeof(float));
    c->batch_row = sae__alloc_array(a, (size_t)c->b.n_batches, sizeof(int64_t));
    c->one = sae__graph_zeroed(a, H, sizeof(float *));
    if (!c->xc || !c->xp || !c->grad || !c->d_hooks || !c->stop || !c->logits ||
        !c->d_logits || !c->m_clean || !c->m_run || !c->fc || !c->fp || !c->feat || !c->ec ||
        !c->ep || !c->tmp || !c->err || !c->batch_row || !c->one)
        return SAE_ENOMEM;
    int64_t tokens = 0;
    for (int64_t i = 0; i < c->b.n_batches; i++) {
        c->batch_row[i] = tokens;
        tokens += c->b.batches[i].count * c->b.batches[i].T;
    }
    if (edges && (!(c->cache_xp = alloc_table(a, H, tokens * D)) ||
                  !(c->cache_grad = alloc_table(a, H, tokens * D))))
        return SAE_ENOMEM;
    /* Planned passes per batch: patch + clean forward, one backward, IG's steps. */
    const int64_t per = (pairs->patch_tokens ? 1 : 0) + 1 +
                        (c->o.method != SAE_GRAPH_EXACT || edges ? 1 : 0) +
                        (c->o.method == SAE_GRAPH_IG ? 2 * (c->o.ig_steps - 1) * H : 0);
    c->total = per * c->b.n_batches;
    return SAE_OK;
}

/* The node pass over batch i. */
static sae_status node_batch(sae__attrib *c, int64_t i, double *sum_clean, double *sum_patch)
{
    const sae__batch *bt = &c->b.batches[i];
    const int64_t n = bt->count * bt->T, D = c->host.d_model;
    const bool edges = !(c->o.flags & SAE_GRAPH_NO_EDGES), paired = c->b.pairs.patch_tokens;
    sae__pair_batches_load(&c->b, i);
    sae_status s = SAE_OK;
    /* The patch run first: the host's backward differentiates its last forward, the clean
     * one. Without patch prompts the patch state is zero, its activations b~. */
    sae__hook_io io = {D, c->xp, NULL, NULL};
    if (paired) {
        if ((s = sae__run_io(&c->host, &c->b, bt, c->saes, c->H, true, &io, c->logits,
                             c->m_run, NULL)) != SAE_OK ||
            (s = sae__attrib_step(c, 1)) != SAE_OK)
            return s;
        for (int64_t e = 0; e < bt->count; e++)
            *sum_patch += c->m_run[e];
    } else {
        for (int32_t k = 0; k < c->H; k++)
            for (int64_t r = 0; r < n; r++)
                memcpy(c->xp[k] + r * D, c->saes[k].bias, (size_t)D * sizeof(float));
    }
    io.rec = c->xc;
    const bool grads = c->o.method != SAE_GRAPH_EXACT || edges;
    if ((s = sae__run_io(&c->host, &c->b, bt, c->saes, c->H, false, &io, c->logits, c->m_clean,
                         grads ? c->d_logits : NULL)) != SAE_OK ||
        (s = sae__attrib_step(c, 1)) != SAE_OK)
        return s;
    for (int64_t e = 0; e < bt->count; e++)
        *sum_clean += c->m_clean[e];
    if (grads && (s = sae__attrib_gradients(c, bt)) != SAE_OK)
        return s;
    for (int32_t k = 0; k < c->H && s == SAE_OK; k++) {
        const sae__circuit_sae *sa = &c->saes[k];
        const int64_t F = sa->F;
        if ((s = sae__circuit_state(sa, c->xc[k], n, c->fc, c->ec, c->threads)) != SAE_OK ||
            (s = sae__circuit_state(sa, paired ? c->xp[k] : NULL, n, c->fp, c->ep,
                                    c->threads)) != SAE_OK)
            break;
        /* Deltas in place: fp <- fp − fc, ep <- ep − ec. */
        for (int64_t j = 0; j < n * F; j++)
            c->fp[j] -= c->fc[j];
        for (int64_t j = 0; j < n * D; j++)
            c->ep[j] -= c->ec[j];
        if (c->o.method == SAE_GRAPH_EXACT)
            s = sae__attrib_exact(c, bt, k, c->fp, c->ep);
        else
            s = sae__graph_contrib(c->feat, c->err, c->grad[k], sa->dec, c->fp, c->ep, n, F, D,
                                   c->threads);
        if (s != SAE_OK)
            break;
        sae__graph_accumulate(c->slots[k], c->feat, c->err, bt->count, bt->T, F,
                              c->o.aggregation);
        if (edges) {
            const size_t bytes = (size_t)(n * D) * sizeof(float);
            memcpy(c->cache_xp[k] + c->batch_row[i] * D, c->xp[k], bytes);
            memcpy(c->cache_grad[k] + c->batch_row[i] * D, c->grad[k], bytes);
        }
    }
    return s;
}

/* The nodes of the graph: every slot with a non-zero mean effect, in slot order (hook,
 * position, error then features). */
static sae_status make_nodes(sae__attrib *c, sae_graph *g)
{
    const double n_pairs = (double)c->b.pairs.n_pairs;
    int64_t count = 0;
    for (int32_t k = 0; k < c->H; k++)
        for (int64_t i = 0; i < c->P * (c->saes[k].F + 1); i++)
            count += c->slots[k][i] != 0.0;
    sae_status s = sae__graph_reserve_nodes(g, count);
    for (int32_t k = 0; k < c->H && s == SAE_OK; k++) {
        const int64_t F = c->saes[k].F;
        for (int64_t p = 0; p < c->P; p++)
            for (int64_t j = -1; j < F; j++) {
                double v = c->slots[k][p * (F + 1) + 1 + j];
                if (v == 0.0)
                    continue;
                if (!isfinite(v))
                    return sae__fail(SAE_ENUMERIC, "circuit: the effect of feature %lld at "
                                     "\"%s\" is not finite", (long long)j,
                                     c->host.hook_names[c->saes[k].id]);
                sae__graph_push_node(g, k,
                                     c->o.aggregation == SAE_GRAPH_SUM ? SAE_GRAPH_ALL_POSITIONS
                                                                       : (int32_t)p,
                                     (int32_t)j, (float)(v / n_pairs));
            }
    }
    return s;
}

sae_status sae_graph_attribute(sae_graph **out, const sae_host *host, const int32_t *hooks,
                               const sae_dict *const *dicts, int32_t n_hooks,
                               const sae_prompt_pairs *pairs, const sae_graph_options *options)
{
    if (out)
        *out = NULL;
    if (!out)
        return sae__fail(SAE_EINVAL, "graph attribute: out is NULL");
    sae__attrib c;
    memset(&c, 0, sizeof c);
    c.o = (sae_graph_options)SAE_GRAPH_OPTIONS_INIT;
    c.host = (sae_host)SAE_HOST_INIT;
    sae_status s = sae__read_options(&c.o, sizeof c.o, options, "sae_graph_options");
    if (s != SAE_OK || (s = check_options(&c.o)) != SAE_OK ||
        (s = sae_host_check(host)) != SAE_OK ||
        (s = sae__read_options(&c.host, sizeof c.host, host, "sae_host")) != SAE_OK)
        return s;
    if (c.o.ig_steps == 0)
        c.o.ig_steps = 10;
    c.a = sae__allocator(c.o.allocator);
    c.threads = sae__threads(c.o.n_threads);
    sae_graph *g = NULL;
    if ((s = attrib_init(&c, hooks, dicts, n_hooks, pairs)) == SAE_OK) {
        const char **names = sae__alloc_array(c.a, (size_t)n_hooks, sizeof(char *));
        int64_t *d_sae = sae__alloc_array(c.a, (size_t)n_hooks, sizeof(int64_t));
        if (!names || !d_sae)
            s = SAE_ENOMEM;
        for (int32_t k = 0; s == SAE_OK && k < n_hooks; k++)
            names[k] = c.host.hook_names[hooks[k]], d_sae[k] = c.saes[k].F;
        if (s == SAE_OK)
            s = sae_graph_create(&g, n_hooks, names, d_sae, c.a);
        sae__free(c.a, names);
        sae__free(c.a, d_sae);
    }
    double sum_clean = 0.0, sum_patch = 0.0;
    for (int64_t i = 0; s == SAE_OK && i < c.b.n_batches; i++)
        s = node_batch(&c, i, &sum_clean, &sum_patch);
    if (s == SAE_OK && (s = make_nodes(&c, g)) == SAE_OK) {
        const double n_pairs = (double)c.b.pairs.n_pairs;
        g->method = c.o.method;
        g->aggregation = c.o.aggregation;
        g->ig_steps = c.o.method == SAE_GRAPH_IG ? c.o.ig_steps : 0;
        g->n_pairs = c.b.pairs.n_pairs;
        g->n_positions = c.o.aggregation == SAE_GRAPH_PER_POSITION ? c.P : 0;
        g->node_threshold = c.o.node_threshold;
        g->edge_threshold = c.o.edge_threshold;
        g->metric_clean = sum_clean / n_pairs;
        g->metric_patch = c.b.pairs.patch_tokens ? sum_patch / n_pairs : NAN;
        if (!(c.o.flags & SAE_GRAPH_NO_EDGES))
            s = sae__attrib_edges(&c, g);
    }
    attrib_free(&c);
    if (s != SAE_OK) {
        sae_graph_free(g);
        return s;
    }
    *out = g;
    return SAE_OK;
}
