/* graph.c: sae_graph storage — life cycle, nodes and edges (growing arrays), info and borrowed
 * arrays, lookups, top-n queries, pruning, labels and metadata. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

void sae_graph_free(sae_graph *g)
{
    if (!g)
        return;
    const sae_allocator *a = g->a;
    for (int32_t i = 0; g->hook_names && i < g->n_hooks; i++)
        sae__free(a, g->hook_names[i]);
    for (int64_t i = 0; i < g->n_labels; i++)
        sae__free(a, g->label_text[i]);
    for (int64_t i = 0; i < g->n_meta; i++) {
        sae__free(a, g->meta_key[i]);
        sae__free(a, g->meta_value[i]);
    }
    void *owned[] = {g->hook_names, g->d_sae,     g->node_hook,  g->node_pos,   g->node_feat,
                     g->node_effect, g->edge_src, g->edge_dst,   g->edge_w,     g->label_hook,
                     g->label_feat, g->label_text, g->meta_key,  g->meta_value};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(a, owned[i]);
    sae__free(a, g);
}

sae_status sae_graph_create(sae_graph **out, int32_t n_hooks, const char *const *hook_names,
                            const int64_t *d_sae, const sae_allocator *allocator)
{
    if (out)
        *out = NULL;
    if (!out || n_hooks < 1 || !hook_names || !d_sae)
        return sae__fail(SAE_EINVAL, "graph create: out, hook_names and d_sae are required and "
                                     "n_hooks (%d) must be >= 1", (int)n_hooks);
    for (int32_t i = 0; i < n_hooks; i++) {
        if (!hook_names[i] || !hook_names[i][0] || d_sae[i] < 1 || d_sae[i] > INT32_MAX)
            return sae__fail(SAE_EINVAL, "graph create: hook %d has name %s and d_sae %lld",
                             (int)i, hook_names[i] ? hook_names[i] : "NULL",
                             (long long)d_sae[i]);
        for (int32_t j = 0; j < i; j++)
            if (!strcmp(hook_names[i], hook_names[j]))
                return sae__fail(SAE_EINVAL, "graph create: hooks %d and %d are both \"%s\"",
                                 (int)j, (int)i, hook_names[i]);
    }
    const sae_allocator *a = sae__allocator(allocator);
    sae_graph *g = sae__alloc_array(a, 1, sizeof *g);
    if (!g)
        return SAE_ENOMEM;
    memset(g, 0, sizeof *g);
    g->a = a;
    g->method = -1;
    g->metric_patch = NAN;
    g->hook_names = sae__alloc_array(a, (size_t)n_hooks, sizeof(char *));
    g->d_sae = sae__alloc_array(a, (size_t)n_hooks, sizeof(int64_t));
    bool ok = g->hook_names && g->d_sae;
    if (g->hook_names)
        memset(g->hook_names, 0, (size_t)n_hooks * sizeof(char *));
    g->n_hooks = n_hooks;
    for (int32_t i = 0; ok && i < n_hooks; i++) {
        g->d_sae[i] = d_sae[i];
        ok = (g->hook_names[i] = sae__strdup(a, hook_names[i])) != NULL;
    }
    if (!ok) {
        sae_graph_free(g);
        return SAE_ENOMEM;
    }
    *out = g;
    return SAE_OK;
}

void *sae__graph_zeroed(const sae_allocator *a, int64_t count, size_t size)
{
    const size_t n = (size_t)(count > 0 ? count : 1);
    void *p = sae__alloc_array(a, n, size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

/* Grow the arrays ptrs[i] (each of elem[i] bytes per entry) from *cap to at least need. */
static sae_status grow(const sae_allocator *a, int64_t *cap, int64_t used, int64_t need,
                       void **ptrs[], const size_t elem[], int n)
{
    if (need <= *cap)
        return SAE_OK;
    int64_t c = *cap > 0 ? *cap : 64;
    while (c < need)
        c *= 2;
    void *fresh[8];
    for (int i = 0; i < n; i++) {
        fresh[i] = sae__alloc_array(a, (size_t)c, elem[i]);
        if (!fresh[i]) {
            for (int j = 0; j < i; j++)
                sae__free(a, fresh[j]);
            return SAE_ENOMEM;
        }
        if (used > 0)
            memcpy(fresh[i], *ptrs[i], (size_t)used * elem[i]);
    }
    for (int i = 0; i < n; i++) {
        sae__free(a, *ptrs[i]);
        *ptrs[i] = fresh[i];
    }
    *cap = c;
    return SAE_OK;
}

sae_status sae__graph_reserve_nodes(sae_graph *g, int64_t n)
{
    void **p[] = {(void **)&g->node_hook, (void **)&g->node_pos, (void **)&g->node_feat,
                  (void **)&g->node_effect};
    const size_t e[] = {sizeof(int32_t), sizeof(int32_t), sizeof(int32_t), sizeof(float)};
    return grow(g->a, &g->cap_nodes, g->n_nodes, g->n_nodes + n, p, e, 4);
}

sae_status sae__graph_reserve_edges(sae_graph *g, int64_t n)
{
    void **p[] = {(void **)&g->edge_src, (void **)&g->edge_dst, (void **)&g->edge_w};
    const size_t e[] = {sizeof(int64_t), sizeof(int64_t), sizeof(float)};
    return grow(g->a, &g->cap_edges, g->n_edges, g->n_edges + n, p, e, 3);
}

void sae__graph_push_node(sae_graph *g, int32_t hook, int32_t pos, int32_t feat, float effect)
{
    int64_t i = g->n_nodes++;
    g->node_hook[i] = hook, g->node_pos[i] = pos, g->node_feat[i] = feat;
    g->node_effect[i] = effect;
}

void sae__graph_push_edge(sae_graph *g, int64_t src, int64_t dst, float w)
{
    int64_t i = g->n_edges++;
    g->edge_src[i] = src, g->edge_dst[i] = dst, g->edge_w[i] = w;
}

/* Node keys for duplicate detection. */
typedef struct {
    int32_t hook, pos, feat;
} node_key;

static int cmp_key(const void *pa, const void *pb)
{
    const node_key *a = pa, *b = pb;
    if (a->hook != b->hook)
        return a->hook < b->hook ? -1 : 1;
    if (a->pos != b->pos)
        return a->pos < b->pos ? -1 : 1;
    return a->feat < b->feat ? -1 : a->feat > b->feat;
}

sae_status sae_graph_add_nodes(sae_graph *g, int64_t n, const int32_t *hooks,
                               const int32_t *positions, const int32_t *features,
                               const float *effects)
{
    if (!g || n < 0 || (n > 0 && (!hooks || !positions || !features || !effects)))
        return sae__fail(SAE_EINVAL, "graph add nodes: graph and arrays are required, n >= 0");
    for (int64_t i = 0; i < n; i++) {
        if (hooks[i] < 0 || hooks[i] >= g->n_hooks || positions[i] < SAE_GRAPH_ALL_POSITIONS ||
            features[i] < SAE_GRAPH_ERROR || features[i] >= g->d_sae[hooks[i]])
            return sae__fail(SAE_ERANGE, "graph add nodes: node %lld (hook %d, position %d, "
                             "feature %d) is out of range", (long long)i, (int)hooks[i],
                             (int)positions[i], (int)features[i]);
        if (!isfinite(effects[i]))
            return sae__fail(SAE_ENUMERIC, "graph add nodes: effect of node %lld is %g",
                             (long long)i, (double)effects[i]);
    }
    /* Duplicates among the old and new nodes: sort all keys. */
    int64_t total = g->n_nodes + n;
    node_key *keys = sae__alloc_array(g->a, (size_t)(total > 0 ? total : 1), sizeof *keys);
    if (!keys)
        return SAE_ENOMEM;
    for (int64_t i = 0; i < total; i++)
        keys[i] = i < g->n_nodes
                      ? (node_key){g->node_hook[i], g->node_pos[i], g->node_feat[i]}
                      : (node_key){hooks[i - g->n_nodes], positions[i - g->n_nodes],
                                   features[i - g->n_nodes]};
    qsort(keys, (size_t)total, sizeof *keys, cmp_key);
    sae_status s = SAE_OK;
    for (int64_t i = 1; i < total && s == SAE_OK; i++)
        if (!cmp_key(keys + i - 1, keys + i))
            s = sae__fail(SAE_EINVAL, "graph add nodes: node (hook %d, position %d, feature %d) "
                          "appears twice", (int)keys[i].hook, (int)keys[i].pos,
                          (int)keys[i].feat);
    sae__free(g->a, keys);
    if (s == SAE_OK && (s = sae__graph_reserve_nodes(g, n)) == SAE_OK)
        for (int64_t i = 0; i < n; i++)
            sae__graph_push_node(g, hooks[i], positions[i], features[i], effects[i]);
    return s;
}

sae_status sae_graph_add_edges(sae_graph *g, int64_t n, const int64_t *sources,
                               const int64_t *targets, const float *weights)
{
    if (!g || n < 0 || (n > 0 && (!sources || !targets || !weights)))
        return sae__fail(SAE_EINVAL, "graph add edges: graph and arrays are required, n >= 0");
    for (int64_t i = 0; i < n; i++) {
        if (sources[i] < 0 || sources[i] >= g->n_nodes || targets[i] < 0 ||
            targets[i] >= g->n_nodes)
            return sae__fail(SAE_ERANGE, "graph add edges: edge %lld joins nodes %lld and %lld, "
                             "the graph has %lld", (long long)i, (long long)sources[i],
                             (long long)targets[i], (long long)g->n_nodes);
        if (!isfinite(weights[i]))
            return sae__fail(SAE_ENUMERIC, "graph add edges: weight of edge %lld is %g",
                             (long long)i, (double)weights[i]);
    }
    sae_status s = sae__graph_reserve_edges(g, n);
    for (int64_t i = 0; s == SAE_OK && i < n; i++)
        sae__graph_push_edge(g, sources[i], targets[i], weights[i]);
    return s;
}

sae_status sae_graph_get_info(const sae_graph *g, sae_graph_info *out)
{
    if (!g)
        return sae__fail(SAE_EINVAL, "graph info: graph is NULL");
    sae_graph_info v = {sizeof v,          g->method,         g->aggregation, g->ig_steps,
                        g->n_pairs,        g->n_positions,    g->node_threshold,
                        g->edge_threshold, g->metric_clean,   g->metric_patch,
                        g->n_nodes,        g->n_edges,        g->n_hooks,     0u};
    if (!sae__write_options(out, &v, sizeof v))
        return sae__fail(SAE_EINVAL, "graph info: out must be initialised with "
                                     "SAE_GRAPH_INFO_INIT");
    return SAE_OK;
}

const char *sae_graph_hook_name(const sae_graph *g, int32_t hook)
{
    return g && hook >= 0 && hook < g->n_hooks ? g->hook_names[hook] : NULL;
}

int64_t sae_graph_hook_d_sae(const sae_graph *g, int32_t hook)
{
    return g && hook >= 0 && hook < g->n_hooks ? g->d_sae[hook] : 0;
}

sae_status sae_graph_get_arrays(const sae_graph *g, sae_graph_arrays *out)
{
    if (!g)
        return sae__fail(SAE_EINVAL, "graph arrays: graph is NULL");
    sae_graph_arrays v = {sizeof v,     0u,           g->n_nodes,    g->n_edges,
                          g->node_hook, g->node_pos,  g->node_feat,  g->node_effect,
                          g->edge_src,  g->edge_dst,  g->edge_w};
    if (!sae__write_options(out, &v, sizeof v))
        return sae__fail(SAE_EINVAL, "graph arrays: out must be initialised with "
                                     "SAE_GRAPH_ARRAYS_INIT");
    return SAE_OK;
}

sae_status sae_graph_find_node(int64_t *out_node, const sae_graph *g, int32_t hook,
                               int32_t position, int32_t feature)
{
    if (out_node)
        *out_node = -1;
    if (!out_node || !g)
        return sae__fail(SAE_EINVAL, "graph find node: out_node and graph are required");
    for (int64_t i = 0; i < g->n_nodes; i++)
        if (g->node_hook[i] == hook && g->node_pos[i] == position && g->node_feat[i] == feature) {
            *out_node = i;
            return SAE_OK;
        }
    return sae__fail(SAE_ENOTFOUND, "graph has no node (hook %d, position %d, feature %d)",
                     (int)hook, (int)position, (int)feature);
}

/* Sort items (index, |value|) by |value| descending, index ascending on ties. */
typedef struct {
    int64_t index;
    float mag;
} ranked;

static int cmp_ranked(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->mag != b->mag)
        return a->mag > b->mag ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The n largest |values| (of the entries whose hook_of is `hook`, or all when hook < 0)
 * into out. */
static sae_status top(int64_t *out, int64_t *n_out, const sae_allocator *a, const float *values,
                      int64_t count, const int32_t *hook_of, int32_t hook, int64_t n)
{
    ranked *r = sae__alloc_array(a, (size_t)(count > 0 ? count : 1), sizeof *r);
    if (!r)
        return SAE_ENOMEM;
    int64_t m = 0;
    for (int64_t i = 0; i < count; i++)
        if (hook < 0 || hook_of[i] == hook)
            r[m++] = (ranked){i, fabsf(values[i])};
    qsort(r, (size_t)m, sizeof *r, cmp_ranked);
    *n_out = m < n ? m : n;
    for (int64_t i = 0; i < *n_out; i++)
        out[i] = r[i].index;
    sae__free(a, r);
    return SAE_OK;
}

sae_status sae_graph_top_nodes(int64_t *out, int64_t *n_out, const sae_graph *g, int64_t n,
                               int32_t hook)
{
    if (n_out)
        *n_out = 0;
    if (!n_out || !g || n < 0 || (n > 0 && !out))
        return sae__fail(SAE_EINVAL, "graph top nodes: out, n_out and graph are required");
    if (hook < -1 || hook >= g->n_hooks)
        return sae__fail(SAE_ERANGE, "graph top nodes: hook %d is outside [-1, %d)", (int)hook,
                         (int)g->n_hooks);
    return top(out, n_out, g->a, g->node_effect, g->n_nodes, g->node_hook, hook, n);
}

sae_status sae_graph_top_edges(int64_t *out, int64_t *n_out, const sae_graph *g, int64_t n)
{
    if (n_out)
        *n_out = 0;
    if (!n_out || !g || n < 0 || (n > 0 && !out))
        return sae__fail(SAE_EINVAL, "graph top edges: out, n_out and graph are required");
    return top(out, n_out, g->a, g->edge_w, g->n_edges, NULL, -1, n);
}

sae_status sae_graph_prune(sae_graph *g, float node_threshold, float edge_threshold)
{
    if (!g || !(node_threshold >= 0) || !(edge_threshold >= 0) || isinf(node_threshold) ||
        isinf(edge_threshold))
        return sae__fail(SAE_EINVAL, "graph prune: graph is required and the thresholds (%g, "
                         "%g) must be finite and >= 0", (double)node_threshold,
                         (double)edge_threshold);
    int64_t *map = sae__alloc_array(g->a, (size_t)(g->n_nodes > 0 ? g->n_nodes : 1),
                                    sizeof(int64_t));
    if (!map)
        return SAE_ENOMEM;
    int64_t kept = 0;
    for (int64_t i = 0; i < g->n_nodes; i++) {
        map[i] = fabsf(g->node_effect[i]) > node_threshold ? kept : -1;
        if (map[i] < 0)
            continue;
        g->node_hook[kept] = g->node_hook[i], g->node_pos[kept] = g->node_pos[i];
        g->node_feat[kept] = g->node_feat[i], g->node_effect[kept] = g->node_effect[i];
        kept++;
    }
    g->n_nodes = kept;
    int64_t e = 0;
    for (int64_t i = 0; i < g->n_edges; i++) {
        int64_t s = map[g->edge_src[i]], d = map[g->edge_dst[i]];
        if (s < 0 || d < 0 || !(fabsf(g->edge_w[i]) > edge_threshold))
            continue;
        g->edge_src[e] = s, g->edge_dst[e] = d, g->edge_w[e] = g->edge_w[i];
        e++;
    }
    g->n_edges = e;
    sae__free(g->a, map);
    g->node_threshold = node_threshold > g->node_threshold ? node_threshold : g->node_threshold;
    g->edge_threshold = edge_threshold > g->edge_threshold ? edge_threshold : g->edge_threshold;
    return SAE_OK;
}

/* *slot = a copy of value (the old string freed). */
static sae_status set_string(const sae_allocator *a, char **slot, const char *value)
{
    char *copy = sae__strdup(a, value);
    if (!copy)
        return SAE_ENOMEM;
    sae__free(a, *slot);
    *slot = copy;
    return SAE_OK;
}

sae_status sae_graph_set_label(sae_graph *g, int32_t hook, int32_t feature, const char *label)
{
    if (!g || !label)
        return sae__fail(SAE_EINVAL, "graph set label: graph and label are required");
    if (hook < 0 || hook >= g->n_hooks || feature < SAE_GRAPH_ERROR ||
        feature >= g->d_sae[hook])
        return sae__fail(SAE_ERANGE, "graph set label: hook %d feature %d is out of range",
                         (int)hook, (int)feature);
    int64_t i = 0;
    while (i < g->n_labels && !(g->label_hook[i] == hook && g->label_feat[i] == feature))
        i++;
    if (!label[0]) { /* remove */
        if (i < g->n_labels) {
            sae__free(g->a, g->label_text[i]);
            g->n_labels--;
            g->label_hook[i] = g->label_hook[g->n_labels];
            g->label_feat[i] = g->label_feat[g->n_labels];
            g->label_text[i] = g->label_text[g->n_labels];
        }
        return SAE_OK;
    }
    if (i < g->n_labels)
        return set_string(g->a, &g->label_text[i], label);
    void **p[] = {(void **)&g->label_hook, (void **)&g->label_feat, (void **)&g->label_text};
    const size_t e[] = {sizeof(int32_t), sizeof(int32_t), sizeof(char *)};
    sae_status s = grow(g->a, &g->cap_labels, g->n_labels, g->n_labels + 1, p, e, 3);
    if (s != SAE_OK)
        return s;
    g->label_text[i] = NULL;
    if ((s = set_string(g->a, &g->label_text[i], label)) != SAE_OK)
        return s;
    g->label_hook[i] = hook, g->label_feat[i] = feature;
    g->n_labels++;
    return SAE_OK;
}

const char *sae_graph_label(const sae_graph *g, int32_t hook, int32_t feature)
{
    for (int64_t i = 0; g && i < g->n_labels; i++)
        if (g->label_hook[i] == hook && g->label_feat[i] == feature)
            return g->label_text[i];
    return NULL;
}

sae_status sae_graph_set_metadata(sae_graph *g, const char *key, const char *value)
{
    if (!g || !key || !key[0] || !value)
        return sae__fail(SAE_EINVAL, "graph set metadata: graph, a non-empty key and a value "
                                     "are required");
    for (int64_t i = 0; i < g->n_meta; i++)
        if (!strcmp(g->meta_key[i], key))
            return set_string(g->a, &g->meta_value[i], value);
    void **p[] = {(void **)&g->meta_key, (void **)&g->meta_value};
    const size_t e[] = {sizeof(char *), sizeof(char *)};
    sae_status s = grow(g->a, &g->cap_meta, g->n_meta, g->n_meta + 1, p, e, 2);
    if (s != SAE_OK)
        return s;
    char *k = sae__strdup(g->a, key), *v = sae__strdup(g->a, value);
    if (!k || !v) {
        sae__free(g->a, k);
        sae__free(g->a, v);
        return SAE_ENOMEM;
    }
    g->meta_key[g->n_meta] = k, g->meta_value[g->n_meta] = v;
    g->n_meta++;
    return SAE_OK;
}

const char *sae_graph_metadata(const sae_graph *g, const char *key)
{
    for (int64_t i = 0; g && key && i < g->n_meta; i++)
        if (!strcmp(g->meta_key[i], key))
            return g->meta_value[i];
    return NULL;
}

const char *sae_graph_method_name(int32_t method)
{
    switch (method) {
    case SAE_GRAPH_IG: return "ig";
    case SAE_GRAPH_ATP: return "atp";
    case SAE_GRAPH_EXACT: return "exact";
    default: return "unknown";
    }
}
