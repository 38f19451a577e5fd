/* export_dot.c: sae_graph_save_dot — a circuit for Graphviz `dot`. Layout: one rank per hook
 * point, upstream at the top, held in order by an invisible chain of hook-name nodes at the
 * left; feature nodes are ellipses and error nodes boxes with a grey border, filled white to
 * red (positive effect) or blue (negative) by |effect| relative to the largest shown; edges are
 * red or blue by sign, their width 0.5 + 3.5 |w| / max |w| points. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../io/io_internal.h"
#include "graph_internal.h"

typedef struct {
    const sae_graph *g;
    const char *path;
    const uint8_t *shown;    /* (n_nodes) */
    float max_effect, max_weight, edge_threshold;
} dot_job;

/* A label text for DOT's "..." strings: quotes and backslashes escaped, newlines kept out. */
static void dot_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

/* #rrggbb from white towards red (v > 0) or blue (v < 0), by t = |v| / max in [0, 1]. */
static void fill_colour(FILE *f, float v, float max)
{
    float t = max > 0 ? fabsf(v) / max : 0.0f;
    t = t > 1.0f ? 1.0f : t;
    int fade = (int)lroundf(255.0f * (1.0f - 0.75f * t));
    if (v >= 0)
        fprintf(f, "#ff%02x%02x", fade, fade);
    else
        fprintf(f, "#%02x%02xff", fade, fade);
}

static sae_status write_dot(FILE *f, void *user)
{
    const dot_job *j = user;
    const sae_graph *g = j->g;
    fprintf(f, "digraph circuit {\n  rankdir=TB;\n  nodesep=0.15;\n  ranksep=0.6;\n"
               "  node [fontname=\"Helvetica\", fontsize=10, style=filled, penwidth=1];\n"
               "  edge [arrowsize=0.5];\n");
    for (int32_t k = 0; k < g->n_hooks; k++) {
        fprintf(f, "  { rank=same;\n    hook%d [shape=plaintext, style=\"\", fontsize=12, "
                   "label=\"", (int)k);
        dot_text(f, g->hook_names[k]);
        fprintf(f, "\"];\n");
        for (int64_t i = 0; i < g->n_nodes; i++) {
            if (!j->shown[i] || g->node_hook[i] != k)
                continue;
            const bool err = g->node_feat[i] == SAE_GRAPH_ERROR;
            const char *label = sae_graph_label(g, k, g->node_feat[i]);
            fprintf(f, "    n%lld [shape=%s, color=\"%s\", fillcolor=\"", (long long)i,
                    err ? "box" : "ellipse", err ? "#808080" : "#404040");
            fill_colour(f, g->node_effect[i], j->max_effect);
            fprintf(f, "\", label=\"");
            if (label) {
                dot_text(f, label);
                fputs("\\n", f);
            }
            if (err)
                fputs("error", f);
            else
                fprintf(f, "#%d", (int)g->node_feat[i]);
            if (g->node_pos[i] >= 0)
                fprintf(f, " @%d", (int)g->node_pos[i]);
            fprintf(f, "\\n%+.3g\"];\n", (double)g->node_effect[i]);
        }
        fprintf(f, "  }\n");
    }
    for (int32_t k = 0; k + 1 < g->n_hooks; k++)
        fprintf(f, "  hook%d -> hook%d [style=invis];\n", (int)k, (int)k + 1);
    for (int64_t e = 0; e < g->n_edges; e++) {
        const float w = g->edge_w[e];
        if (!j->shown[g->edge_src[e]] || !j->shown[g->edge_dst[e]] ||
            !(fabsf(w) > j->edge_threshold))
            continue;
        const double width = 0.5 + 3.5 * (j->max_weight > 0 ? fabsf(w) / j->max_weight : 0.0);
        fprintf(f, "  n%lld -> n%lld [penwidth=%.2f, color=\"%s\"];\n",
                (long long)g->edge_src[e], (long long)g->edge_dst[e], width,
                w >= 0 ? "#d62728" : "#1f77b4");
    }
    fprintf(f, "}\n");
    return ferror(f) ? sae__fail(SAE_EIO, "%s: write error", j->path) : SAE_OK;
}

sae_status sae_graph_save_dot(const sae_graph *g, const char *path,
                              const sae_graph_dot_options *options)
{
    if (!g || !path)
        return sae__fail(SAE_EINVAL, "graph save dot: graph and path are required");
    sae_graph_dot_options o = SAE_GRAPH_DOT_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, options, "sae_graph_dot_options");
    if (s != SAE_OK)
        return s;
    if (!(o.node_threshold >= 0) || !(o.edge_threshold >= 0) || o.max_nodes < 0)
        return sae__fail(SAE_EINVAL, "graph save dot: thresholds (%g, %g) and max_nodes (%d) "
                         "must be >= 0", (double)o.node_threshold, (double)o.edge_threshold,
                         (int)o.max_nodes);
    const int64_t n = g->n_nodes;
    uint8_t *shown = sae__alloc_array(g->a, (size_t)(n > 0 ? n : 1), 1);
    int64_t *order = sae__alloc_array(g->a, (size_t)(n > 0 ? n : 1), sizeof(int64_t));
    int64_t ranked = 0;
    if (!shown || !order ||
        (s = sae_graph_top_nodes(order, &ranked, g, n, -1)) != SAE_OK) {
        sae__free(g->a, shown);
        sae__free(g->a, order);
        return s != SAE_OK ? s : SAE_ENOMEM;
    }
    memset(shown, 0, (size_t)(n > 0 ? n : 1));
    dot_job j = {g, path, shown, 0.0f, 0.0f, o.edge_threshold};
    int64_t count = 0;
    for (int64_t r = 0; r < ranked; r++) {
        const int64_t i = order[r];
        if (!(fabsf(g->node_effect[i]) > o.node_threshold) || (o.max_nodes && count == o.max_nodes))
            break;
        shown[i] = 1;
        count++;
        j.max_effect = fmaxf(j.max_effect, fabsf(g->node_effect[i]));
    }
    for (int64_t e = 0; e < g->n_edges; e++)
        if (shown[g->edge_src[e]] && shown[g->edge_dst[e]])
            j.max_weight = fmaxf(j.max_weight, fabsf(g->edge_w[e]));
    s = sae__write_file_atomic(path, write_dot, &j);
    sae__free(g->a, shown);
    sae__free(g->a, order);
    return s;
}
