/* export_json.c: sae_graph_save_json — the graph as one JSON object (graph.h), streamed to the
 * file (millions of edges never become a tree in memory). Floats are printed with 9 significant
 * digits, enough to read back the same float32. */
#include <math.h>
#include <stdio.h>

#include "../io/io_internal.h"
#include "graph_internal.h"

/* s as a JSON string literal. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* A number, or null when it is not finite (JSON has no NaN). */
static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.17g", v);
    else
        fputs("null", f);
}

static const char *aggregation_name(int32_t aggregation)
{
    return aggregation == SAE_GRAPH_PER_POSITION ? "per_position" : "sum";
}

typedef struct {
    const sae_graph *g;
    const char *path;
} target;

static sae_status write_graph(FILE *f, void *user)
{
    const sae_graph *g = ((const target *)user)->g;
    fprintf(f, "{\n\"format\": \"libsae-circuit\",\n\"version\": 1,\n\"method\": ");
    if (g->method >= 0)
        json_string(f, sae_graph_method_name(g->method));
    else
        fputs("null", f);
    fprintf(f, ",\n\"aggregation\": ");
    json_string(f, aggregation_name(g->aggregation));
    fprintf(f, ",\n\"ig_steps\": %d,\n\"n_pairs\": %lld,\n\"n_positions\": %lld,\n",
            (int)g->ig_steps, (long long)g->n_pairs, (long long)g->n_positions);
    fprintf(f, "\"node_threshold\": %.9g,\n\"edge_threshold\": %.9g,\n\"metric_clean\": ",
            (double)g->node_threshold, (double)g->edge_threshold);
    json_number(f, g->metric_clean);
    fprintf(f, ",\n\"metric_patch\": ");
    json_number(f, g->metric_patch);
    fprintf(f, ",\n\"metadata\": {");
    for (int64_t i = 0; i < g->n_meta; i++) {
        fputs(i ? ", " : "", f);
        json_string(f, g->meta_key[i]);
        fputs(": ", f);
        json_string(f, g->meta_value[i]);
    }
    fprintf(f, "},\n\"hooks\": [");
    for (int32_t k = 0; k < g->n_hooks; k++) {
        fprintf(f, "%s\n  {\"name\": ", k ? "," : "");
        json_string(f, g->hook_names[k]);
        fprintf(f, ", \"d_sae\": %lld}", (long long)g->d_sae[k]);
    }
    fprintf(f, "\n],\n\"nodes\": [");
    for (int64_t i = 0; i < g->n_nodes; i++) {
        fprintf(f, "%s\n  {\"hook\": %d, \"position\": ", i ? "," : "", (int)g->node_hook[i]);
        if (g->node_pos[i] < 0)
            fputs("null", f);
        else
            fprintf(f, "%d", (int)g->node_pos[i]);
        if (g->node_feat[i] == SAE_GRAPH_ERROR)
            fputs(", \"feature\": \"error\"", f);
        else
            fprintf(f, ", \"feature\": %d", (int)g->node_feat[i]);
        fprintf(f, ", \"effect\": %.9g", (double)g->node_effect[i]);
        const char *label = sae_graph_label(g, g->node_hook[i], g->node_feat[i]);
        if (label) {
            fputs(", \"label\": ", f);
            json_string(f, label);
        }
        fputc('}', f);
    }
    fprintf(f, "\n],\n\"labels\": [");
    for (int64_t i = 0; i < g->n_labels; i++) {
        fprintf(f, "%s\n  {\"hook\": %d, \"feature\": ", i ? "," : "", (int)g->label_hook[i]);
        if (g->label_feat[i] == SAE_GRAPH_ERROR)
            fputs("\"error\"", f);
        else
            fprintf(f, "%d", (int)g->label_feat[i]);
        fputs(", \"label\": ", f);
        json_string(f, g->label_text[i]);
        fputc('}', f);
    }
    fprintf(f, "\n],\n\"edges\": [");
    for (int64_t i = 0; i < g->n_edges; i++)
        fprintf(f, "%s\n  {\"source\": %lld, \"target\": %lld, \"weight\": %.9g}", i ? "," : "",
                (long long)g->edge_src[i], (long long)g->edge_dst[i], (double)g->edge_w[i]);
    fprintf(f, "\n]\n}\n");
    return ferror(f) ? sae__fail(SAE_EIO, "%s: write error", ((const target *)user)->path)
                     : SAE_OK;
}

sae_status sae_graph_save_json(const sae_graph *g, const char *path)
{
    if (!g || !path)
        return sae__fail(SAE_EINVAL, "graph save json: graph and path are required");
    target t = {g, path};
    return sae__write_file_atomic(path, write_graph, &t);
}
