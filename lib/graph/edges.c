/* edges.c: the edges of a circuit (feature-circuits' jvp, MATH.md "Edge u → d") between the
 * nodes above the node threshold:
 *
 *   w(u → d) = g_d · (∂d/∂u)|clean · Δu,  direct paths only (every other circuit hook stopped).
 *
 * For a kept downstream node at hook b the seed at b is the gradient of g_d · d(x_b) with
 * respect to x_b, rows r of the pairs:
 *   feature k: seed[r] = (G_b D~_bᵀ)[r, k] [f_k(x_b[r]) != 0] e~_k        (d = f_k(x_b))
 *   error:     seed[r] = G_b[r] − Σ_{j active at r} (G_b D~_bᵀ)[r, j] e~_j  (d = x_b − x̂(x_b))
 * with G_b the (IG-averaged) gradient at b. One sae_host_backward_from per kept node and batch
 * delivers the vector-Jacobian products at every earlier circuit hook a at once; with positions
 * summed, all positions of all pairs are seeded together (the products are linear in the
 * seed). The weights of the upstream nodes are then the effect kernel (effects.c) with the
 * product in place of the gradient, aggregated like the nodes; the sums over batches, divided
 * by the number of pairs, are the edges. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

typedef struct {
    const sae_allocator *a;
    int32_t H;
    int64_t **node_of;       /* (H) (P, F + 1) kept node index of each slot, or -1 */
    int64_t *kept;           /* (H) kept nodes per hook */
    float **fc, **df, **de;  /* (H) (rows, F), (rows, F), (rows, D) states of the batch */
    float **vjp;             /* (H) (rows, D) products delivered by the host */
    float *seed, *fg, *m;    /* (rows, D), (rows, F_max), (rows, D) */
    double *acc;             /* (P, F_max + 1) */
} edge_work;

static void work_free(edge_work *w)
{
    for (int32_t k = 0; k < w->H; k++) {
        void *p[] = {w->node_of ? w->node_of[k] : NULL, w->fc ? w->fc[k] : NULL,
                     w->df ? w->df[k] : NULL, w->de ? w->de[k] : NULL,
                     w->vjp ? w->vjp[k] : NULL};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
            sae__free(w->a, p[i]);
    }
    void *p[] = {w->node_of, w->kept, w->fc, w->df, w->de, w->vjp, w->seed, w->fg, w->m, w->acc};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        sae__free(w->a, p[i]);
}

static sae_status work_init(edge_work *w, const sae__attrib *c, const sae_graph *g)
{
    const sae_allocator *a = c->a;
    const int64_t rows = c->rows, D = c->host.d_model;
    memset(w, 0, sizeof *w);
    w->a = a;
    w->H = c->H;
    const size_t ptr = sizeof(void *);
    if (!(w->node_of = sae__graph_zeroed(a, c->H, ptr)) ||
        !(w->fc = sae__graph_zeroed(a, c->H, ptr)) || !(w->df = sae__graph_zeroed(a, c->H, ptr)) ||
        !(w->de = sae__graph_zeroed(a, c->H, ptr)) || !(w->vjp = sae__graph_zeroed(a, c->H, ptr)) ||
        !(w->kept = sae__alloc_array(a, (size_t)c->H, sizeof(int64_t))) ||
        !(w->seed = sae__alloc_array(a, (size_t)(rows * D), sizeof(float))) ||
        !(w->m = sae__alloc_array(a, (size_t)(rows * D), sizeof(float))) ||
        !(w->fg = sae__alloc_array(a, (size_t)(rows * c->F_max), sizeof(float))) ||
        !(w->acc = sae__alloc_array(a, (size_t)(c->P * (c->F_max + 1)), sizeof(double))))
        return SAE_ENOMEM;
    for (int32_t k = 0; k < c->H; k++) {
        const int64_t F = c->saes[k].F, slots = c->P * (F + 1);
        if (!(w->node_of[k] = sae__alloc_array(a, (size_t)slots, sizeof(int64_t))) ||
            !(w->fc[k] = sae__alloc_array(a, (size_t)(rows * F), sizeof(float))) ||
            !(w->df[k] = sae__alloc_array(a, (size_t)(rows * F), sizeof(float))) ||
            !(w->de[k] = sae__alloc_array(a, (size_t)(rows * D), sizeof(float))) ||
            !(w->vjp[k] = sae__alloc_array(a, (size_t)(rows * D), sizeof(float))))
            return SAE_ENOMEM;
        memset(w->node_of[k], 0xff, (size_t)slots * sizeof(int64_t)); /* -1 */
        w->kept[k] = 0;
    }
    for (int64_t i = 0; i < g->n_nodes; i++) {
        if (!(fabsf(g->node_effect[i]) > g->node_threshold))
            continue;
        const int32_t k = g->node_hook[i];
        const int64_t p = g->node_pos[i] < 0 ? 0 : g->node_pos[i];
        w->node_of[k][p * (c->saes[k].F + 1) + 1 + g->node_feat[i]] = i;
        w->kept[k]++;
    }
    return SAE_OK;
}

/* The states of batch i at every hook: clean codes, and the deltas of codes and error. */
static sae_status batch_states(sae__attrib *c, edge_work *w, int64_t i)
{
    const sae__batch *bt = &c->b.batches[i];
    const int64_t n = bt->count * bt->T, D = c->host.d_model;
    sae__pair_batches_load(&c->b, i);
    /* The clean run: the forward the backward passes differentiate. */
    sae__hook_io io = {D, c->xc, NULL, NULL};
    sae_status s = sae__run_io(&c->host, &c->b, bt, c->saes, c->H, false, &io, NULL, NULL, NULL);
    if (s != SAE_OK || (s = sae__attrib_step(c, 1)) != SAE_OK)
        return s;
    for (int32_t k = 0; k < c->H && s == SAE_OK; k++) {
        const sae__circuit_sae *sa = &c->saes[k];
        const float *xp = c->b.pairs.patch_tokens ? c->cache_xp[k] + c->batch_row[i] * D : NULL;
        if ((s = sae__circuit_state(sa, c->xc[k], n, w->fc[k], c->ec, c->threads)) != SAE_OK ||
            (s = sae__circuit_state(sa, xp, n, w->df[k], w->de[k], c->threads)) != SAE_OK)
            break;
        for (int64_t j = 0; j < n * sa->F; j++)
            w->df[k][j] -= w->fc[k][j];
        for (int64_t j = 0; j < n * D; j++)
            w->de[k][j] -= c->ec[j];
    }
    return s;
}

/* The seed of kept node (p, j) at hook b (see the top of the file); G the gradient at b, fg its
 * feature gradient G D~ᵀ, m the active features' part of the error's Jacobian. */
static void make_seed(const sae__attrib *c, const edge_work *w, const sae__batch *bt, int32_t b,
                      int64_t p, int64_t j, const float *G)
{
    const sae__circuit_sae *sa = &c->saes[b];
    const int64_t T = bt->T, n = bt->count * T, D = sa->D, F = sa->F;
    memset(w->seed, 0, (size_t)(n * D) * sizeof(float));
    for (int64_t r = 0; r < n; r++) {
        if (c->P > 1 && r % T != p)
            continue;
        float *out = w->seed + r * D;
        if (j < 0) {
            for (int64_t i = 0; i < D; i++)
                out[i] = G[r * D + i] - w->m[r * D + i];
        } else if (w->fc[b][r * F + j] != 0.0f) {
            const float coef = w->fg[r * F + j];
            for (int64_t i = 0; i < D; i++)
                out[i] = coef * sa->enc[j * D + i];
        }
    }
}

static bool all_zero(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return false;
    return true;
}

/* The weights from every earlier hook a < b into kept node `dst` (slot p, feature j of b) for
 * the products now in w->vjp. */
static sae_status upstream(sae__attrib *c, edge_work *w, sae__edge_map *map,
                           const sae__batch *bt, int32_t b, int64_t dst)
{
    const int64_t n = bt->count * bt->T, D = c->host.d_model;
    for (int32_t a = 0; a < b; a++) {
        const int64_t F = c->saes[a].F, slots = c->P * (F + 1);
        if (!w->kept[a] || all_zero(w->vjp[a], n * D))
            continue;
        sae_status s = sae__graph_contrib(c->feat, c->err, w->vjp[a], c->saes[a].dec, w->df[a],
                                          w->de[a], n, F, D, c->threads);
        if (s != SAE_OK)
            return s;
        memset(w->acc, 0, (size_t)slots * sizeof(double));
        sae__graph_accumulate(w->acc, c->feat, c->err, bt->count, bt->T, F, c->o.aggregation);
        for (int64_t u = 0; u < slots; u++)
            if (w->acc[u] != 0.0 && w->node_of[a][u] >= 0 &&
                (s = sae__edge_map_add(map, w->node_of[a][u], dst, w->acc[u])) != SAE_OK)
                return s;
    }
    return SAE_OK;
}

/* The edge pass over batch i. */
static sae_status edge_batch(sae__attrib *c, edge_work *w, sae__edge_map *map, int64_t i)
{
    const sae__batch *bt = &c->b.batches[i];
    const int64_t n = bt->count * bt->T, D = c->host.d_model;
    sae_status s = batch_states(c, w, i);
    for (int32_t b = 1; b < c->H && s == SAE_OK; b++) {
        const sae__circuit_sae *sa = &c->saes[b];
        const int64_t F = sa->F;
        if (!w->kept[b])
            continue;
        const float *G = c->cache_grad[b] + c->batch_row[i] * D;
        if ((s = sae__sgemm(false, true, n, F, D, 1.0f, G, D, sa->dec, D, 0.0f, w->fg, F,
                            c->threads)) != SAE_OK)
            break;
        /* m = (fg ⊙ [fc != 0]) E~: the active codes' share of the error's Jacobian. */
        for (int64_t j = 0; j < n * F; j++)
            c->feat[j] = w->fc[b][j] != 0.0f ? w->fg[j] : 0.0f;
        if ((s = sae__sgemm(false, false, n, D, F, 1.0f, c->feat, F, sa->enc, D, 0.0f, w->m, D,
                            c->threads)) != SAE_OK)
            break;
        memset(c->d_hooks, 0, (size_t)c->host.n_hooks * sizeof(float *));
        for (int32_t a = 0; a < b; a++)
            c->d_hooks[c->saes[a].id] = w->vjp[a];
        c->stop[sa->id] = 0;
        for (int64_t slot = 0; slot < c->P * (F + 1) && s == SAE_OK; slot++) {
            const int64_t dst = w->node_of[b][slot];
            if (dst < 0)
                continue;
            make_seed(c, w, bt, b, slot / (F + 1), slot % (F + 1) - 1, G);
            if ((s = sae_host_backward_from(&c->host, bt->count, bt->T, sa->id, w->seed,
                                            c->d_hooks, c->stop)) == SAE_OK &&
                (s = sae__attrib_step(c, 1)) == SAE_OK)
                s = upstream(c, w, map, bt, b, dst);
        }
        c->stop[sa->id] = 1;
    }
    return s;
}

/* Edge entries for sorting by (target, source). */
typedef struct {
    int64_t src, dst;
    float w;
} entry;

static int cmp_entry(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->dst != b->dst)
        return a->dst < b->dst ? -1 : 1;
    return a->src < b->src ? -1 : a->src > b->src;
}

/* The edges of the map whose mean weight passes the threshold, sorted, into g. */
static sae_status collect(const sae__attrib *c, const sae__edge_map *map, sae_graph *g)
{
    entry *e = sae__alloc_array(c->a, (size_t)(map->count > 0 ? map->count : 1), sizeof *e);
    if (!e)
        return SAE_ENOMEM;
    int64_t n = 0;
    for (int64_t i = 0; i < map->cap; i++) {
        if (map->src[i] < 0)
            continue;
        const float v = (float)(map->w[i] / (double)c->b.pairs.n_pairs);
        if (fabsf(v) > c->o.edge_threshold)
            e[n++] = (entry){map->src[i], map->dst[i], v};
    }
    qsort(e, (size_t)n, sizeof *e, cmp_entry);
    sae_status s = sae__graph_reserve_edges(g, n);
    for (int64_t i = 0; s == SAE_OK && i < n; i++)
        sae__graph_push_edge(g, e[i].src, e[i].dst, e[i].w);
    sae__free(c->a, e);
    return s;
}

sae_status sae__attrib_edges(sae__attrib *c, sae_graph *g)
{
    edge_work w;
    sae__edge_map map;
    memset(&map, 0, sizeof map);
    sae_status s = work_init(&w, c, g);
    if (s == SAE_OK)
        s = sae__edge_map_init(&map, c->a);
    if (s == SAE_OK) {
        int64_t seeds = 0;
        for (int32_t k = 1; k < c->H; k++)
            seeds += w.kept[k];
        c->total += c->b.n_batches * (1 + seeds);
        memset(c->stop, 0, (size_t)c->host.n_hooks);
        for (int32_t k = 0; k < c->H; k++)
            c->stop[c->saes[k].id] = 1;
    }
    for (int64_t i = 0; s == SAE_OK && i < c->b.n_batches; i++)
        s = edge_batch(c, &w, &map, i);
    if (s == SAE_OK)
        s = collect(c, &map, g);
    sae__edge_map_free(&map);
    work_free(&w);
    return s;
}
