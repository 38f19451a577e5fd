/* import_json.c: sae_graph_load_json — read back what export_json.c writes, every field
 * checked (messages name the file and the field: "circuit.json: nodes[3].effect ..."). Nodes
 * and edges go through sae_graph_add_nodes / sae_graph_add_edges, which check ranges and
 * duplicates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/config_json.h"
#include "graph_internal.h"

#define MAX_GRAPH_BYTES ((size_t)1 << 31)

/* "path: what[i]" into buf. */
static const char *origin(char *buf, size_t size, const char *path, const char *what, int64_t i)
{
    snprintf(buf, size, "%s: %s[%lld]", path, what, (long long)i);
    return buf;
}

/* The array obj[key] (required). */
static sae_status array(const cJSON *obj, const char *key, const char *path, const cJSON **out)
{
    *out = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!*out || !cJSON_IsArray(*out))
        return sae__fail(SAE_EFORMAT, "%s: %s is missing or not an array", path, key);
    return SAE_OK;
}

/* A feature id: an integer or "error". */
static sae_status feature(const cJSON *obj, const char *where, int32_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "feature");
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "error")) {
        *out = SAE_GRAPH_ERROR;
        return SAE_OK;
    }
    int64_t f = 0;
    sae_status s = sae__json_int(obj, "feature", true, 0, INT32_MAX, where, &f);
    *out = (int32_t)f;
    return s;
}

static sae_status read_hooks(const cJSON *root, const char *path, const sae_allocator *a,
                             sae_graph **out)
{
    const cJSON *hooks;
    sae_status s = array(root, "hooks", path, &hooks);
    if (s != SAE_OK)
        return s;
    int32_t n = (int32_t)cJSON_GetArraySize(hooks);
    if (n < 1)
        return sae__fail(SAE_EFORMAT, "%s: hooks is empty", path);
    const char **names = sae__alloc_array(a, (size_t)n, sizeof(char *));
    int64_t *d_sae = sae__alloc_array(a, (size_t)n, sizeof(int64_t));
    if (!names || !d_sae)
        s = SAE_ENOMEM;
    char where[512];
    int32_t i = 0;
    for (const cJSON *h = hooks->child; h && s == SAE_OK; h = h->next, i++) {
        origin(where, sizeof where, path, "hooks", i);
        d_sae[i] = 0;
        if ((s = sae__json_string(h, "name", where, &names[i])) == SAE_OK && !names[i])
            s = sae__fail(SAE_EFORMAT, "%s.name is missing", where);
        if (s == SAE_OK)
            s = sae__json_int(h, "d_sae", true, 1, INT32_MAX, where, &d_sae[i]);
    }
    if (s == SAE_OK && (s = sae_graph_create(out, n, names, d_sae, a)) != SAE_OK &&
        s != SAE_ENOMEM)
        s = sae__fail_prefix(SAE_EFORMAT, path);
    sae__free(a, names);
    sae__free(a, d_sae);
    return s;
}

/* "format": "libsae-circuit", "version": 1. */
static sae_status check_format(const cJSON *root, const char *path)
{
    const char *format = NULL;
    int64_t version = 0;
    sae_status s = sae__json_string(root, "format", path, &format);
    if (s != SAE_OK)
        return s;
    if (!format || strcmp(format, "libsae-circuit"))
        return sae__fail(SAE_EFORMAT, "%s: format is not \"libsae-circuit\"", path);
    return sae__json_int(root, "version", true, 1, 1, path, &version);
}

static sae_status read_header(const cJSON *root, const char *path, sae_graph *g)
{
    const char *method = NULL, *aggregation = NULL;
    int64_t steps = 0, n_pairs = 0, n_pos = 0;
    double nt = 0, et = 0, mc = NAN, mp = NAN;
    sae_status s;
    if ((s = sae__json_string(root, "method", path, &method)) != SAE_OK ||
        (s = sae__json_string(root, "aggregation", path, &aggregation)) != SAE_OK ||
        (s = sae__json_int(root, "ig_steps", false, 0, INT32_MAX, path, &steps)) != SAE_OK ||
        (s = sae__json_int(root, "n_pairs", false, 0, INT64_MAX, path, &n_pairs)) != SAE_OK ||
        (s = sae__json_int(root, "n_positions", false, 0, INT32_MAX, path, &n_pos)) != SAE_OK ||
        (s = sae__json_number(root, "node_threshold", path, &nt)) != SAE_OK ||
        (s = sae__json_number(root, "edge_threshold", path, &et)) != SAE_OK ||
        (s = sae__json_number(root, "metric_clean", path, &mc)) != SAE_OK ||
        (s = sae__json_number(root, "metric_patch", path, &mp)) != SAE_OK)
        return s;
    g->method = -1;
    for (int32_t m = SAE_GRAPH_IG; method && m <= SAE_GRAPH_EXACT; m++)
        if (!strcmp(method, sae_graph_method_name(m)))
            g->method = m;
    if (method && g->method < 0)
        return sae__fail(SAE_EFORMAT, "%s: method \"%s\" is not ig, atp or exact", path, method);
    if (aggregation && strcmp(aggregation, "sum") && strcmp(aggregation, "per_position"))
        return sae__fail(SAE_EFORMAT, "%s: aggregation \"%s\" is not sum or per_position", path,
                         aggregation);
    if (nt < 0 || et < 0)
        return sae__fail(SAE_EFORMAT, "%s: negative threshold", path);
    g->aggregation = aggregation && !strcmp(aggregation, "per_position") ? SAE_GRAPH_PER_POSITION
                                                                         : SAE_GRAPH_SUM;
    g->ig_steps = (int32_t)steps, g->n_pairs = n_pairs, g->n_positions = n_pos;
    g->node_threshold = (float)nt, g->edge_threshold = (float)et;
    g->metric_clean = isnan(mc) ? 0.0 : mc, g->metric_patch = mp;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (meta && !cJSON_IsObject(meta))
        return sae__fail(SAE_EFORMAT, "%s: metadata is not an object", path);
    for (const cJSON *m = meta ? meta->child : NULL; m && s == SAE_OK; m = m->next) {
        if (!cJSON_IsString(m))
            return sae__fail(SAE_EFORMAT, "%s: metadata.%s is not a string", path, m->string);
        s = sae_graph_set_metadata(g, m->string, m->valuestring);
    }
    return s;
}

static sae_status read_nodes(const cJSON *root, const char *path, sae_graph *g)
{
    const cJSON *nodes;
    sae_status s = array(root, "nodes", path, &nodes);
    if (s != SAE_OK)
        return s;
    const int64_t n = cJSON_GetArraySize(nodes);
    const size_t m = (size_t)(n > 0 ? n : 1);
    int32_t *hook = sae__alloc_array(g->a, m, sizeof(int32_t));
    int32_t *pos = sae__alloc_array(g->a, m, sizeof(int32_t));
    int32_t *feat = sae__alloc_array(g->a, m, sizeof(int32_t));
    float *effect = sae__alloc_array(g->a, m, sizeof(float));
    if (!hook || !pos || !feat || !effect)
        s = SAE_ENOMEM;
    char where[512];
    int64_t i = 0;
    for (const cJSON *v = nodes->child; v && s == SAE_OK; v = v->next, i++) {
        int64_t h = 0, p = SAE_GRAPH_ALL_POSITIONS;
        double e = 0;
        origin(where, sizeof where, path, "nodes", i);
        if ((s = sae__json_int(v, "hook", true, 0, INT32_MAX, where, &h)) != SAE_OK ||
            (s = sae__json_int(v, "position", false, 0, INT32_MAX, where, &p)) != SAE_OK ||
            (s = feature(v, where, &feat[i])) != SAE_OK ||
            (s = sae__json_number(v, "effect", where, &e)) != SAE_OK)
            break;
        hook[i] = (int32_t)h, pos[i] = (int32_t)p, effect[i] = (float)e;
    }
    if (s == SAE_OK && (s = sae_graph_add_nodes(g, n, hook, pos, feat, effect)) != SAE_OK &&
        s != SAE_ENOMEM)
        s = sae__fail_prefix(SAE_EFORMAT, path);
    void *p[] = {hook, pos, feat, effect};
    for (size_t j = 0; j < 4; j++)
        sae__free(g->a, p[j]);
    return s;
}

static sae_status read_edges(const cJSON *root, const char *path, sae_graph *g)
{
    const cJSON *edges;
    sae_status s = array(root, "edges", path, &edges);
    if (s != SAE_OK)
        return s;
    const int64_t n = cJSON_GetArraySize(edges);
    const size_t m = (size_t)(n > 0 ? n : 1);
    int64_t *src = sae__alloc_array(g->a, m, sizeof(int64_t));
    int64_t *dst = sae__alloc_array(g->a, m, sizeof(int64_t));
    float *w = sae__alloc_array(g->a, m, sizeof(float));
    if (!src || !dst || !w)
        s = SAE_ENOMEM;
    char where[512];
    int64_t i = 0;
    for (const cJSON *v = edges->child; v && s == SAE_OK; v = v->next, i++) {
        double x = 0;
        origin(where, sizeof where, path, "edges", i);
        if ((s = sae__json_int(v, "source", true, 0, INT64_MAX, where, &src[i])) != SAE_OK ||
            (s = sae__json_int(v, "target", true, 0, INT64_MAX, where, &dst[i])) != SAE_OK ||
            (s = sae__json_number(v, "weight", where, &x)) != SAE_OK)
            break;
        w[i] = (float)x;
    }
    if (s == SAE_OK && (s = sae_graph_add_edges(g, n, src, dst, w)) != SAE_OK && s != SAE_ENOMEM)
        s = sae__fail_prefix(SAE_EFORMAT, path);
    sae__free(g->a, src);
    sae__free(g->a, dst);
    sae__free(g->a, w);
    return s;
}

static sae_status read_labels(const cJSON *root, const char *path, sae_graph *g)
{
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (!labels)
        return SAE_OK;
    if (!cJSON_IsArray(labels))
        return sae__fail(SAE_EFORMAT, "%s: labels is not an array", path);
    char where[512];
    int64_t i = 0;
    sae_status s = SAE_OK;
    for (const cJSON *v = labels->child; v && s == SAE_OK; v = v->next, i++) {
        int64_t h = 0;
        int32_t f = 0;
        const char *text = NULL;
        origin(where, sizeof where, path, "labels", i);
        if ((s = sae__json_int(v, "hook", true, 0, INT32_MAX, where, &h)) != SAE_OK ||
            (s = feature(v, where, &f)) != SAE_OK ||
            (s = sae__json_string(v, "label", where, &text)) != SAE_OK)
            break;
        if (!text)
            return sae__fail(SAE_EFORMAT, "%s.label is missing", where);
        if ((s = sae_graph_set_label(g, (int32_t)h, f, text)) != SAE_OK && s != SAE_ENOMEM)
            s = sae__fail_prefix(SAE_EFORMAT, where);
    }
    return s;
}

sae_status sae_graph_load_json(sae_graph **out, const char *path,
                               const sae_allocator *allocator)
{
    if (out)
        *out = NULL;
    if (!out || !path)
        return sae__fail(SAE_EINVAL, "graph load json: out and path are required");
    cJSON *root = NULL;
    sae_status s = sae__json_load(path, MAX_GRAPH_BYTES, &root);
    if (s != SAE_OK)
        return s;
    const sae_allocator *a = sae__allocator(allocator);
    sae_graph *g = NULL;
    if ((s = check_format(root, path)) == SAE_OK && (s = read_hooks(root, path, a, &g)) == SAE_OK &&
        (s = read_header(root, path, g)) == SAE_OK &&
        (s = read_nodes(root, path, g)) == SAE_OK && (s = read_edges(root, path, g)) == SAE_OK)
        s = read_labels(root, path, g);
    cJSON_Delete(root);
    if (s != SAE_OK) {
        sae_graph_free(g);
        return s;
    }
    *out = g;
    return SAE_OK;
}
