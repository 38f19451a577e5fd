/* fuzz_graph_json: circuit files (lib/graph/import_json.c, written by sae_graph_save_json).
 *
 * Input: the JSON text. A graph that loads is queried (top nodes and edges), written back and
 * read again — the round trip must give the same nodes and edges, else the target aborts —,
 * exported as DOT and pruned, so that whatever the reader accepts also goes through the code
 * that uses it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether a and b hold the same n values of `size` bytes. */
static int same(const void *a, const void *b, int64_t n, size_t size)
{
    return n == 0 || memcmp(a, b, (size_t)n * size) == 0;
}

/* The same for floats, where any NaN equals any NaN (the file has no NaN payloads). */
static int same_floats(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i] || (isnan(a[i]) && isnan(b[i]))))
            return 0;
    return 1;
}

static void check_round_trip(const sae_graph *g)
{
    const char *path = fuzz_path("again.json");
    if (sae_graph_save_json(g, path) != SAE_OK)
        return; /* e.g. a label the writer refuses: the reader accepted it, the writer says so */
    sae_graph *back = NULL;
    if (sae_graph_load_json(&back, path, NULL) != SAE_OK)
        abort(); /* the library cannot read what it wrote */
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT, b = SAE_GRAPH_ARRAYS_INIT;
    sae_graph_get_arrays(g, &a);
    sae_graph_get_arrays(back, &b);
    if (a.n_nodes != b.n_nodes || a.n_edges != b.n_edges ||
        !same(a.node_hooks, b.node_hooks, a.n_nodes, sizeof *a.node_hooks) ||
        !same(a.node_positions, b.node_positions, a.n_nodes, sizeof *a.node_positions) ||
        !same(a.node_features, b.node_features, a.n_nodes, sizeof *a.node_features) ||
        !same_floats(a.node_effects, b.node_effects, a.n_nodes) ||
        !same(a.edge_sources, b.edge_sources, a.n_edges, sizeof *a.edge_sources) ||
        !same(a.edge_targets, b.edge_targets, a.n_edges, sizeof *a.edge_targets) ||
        !same_floats(a.edge_weights, b.edge_weights, a.n_edges))
        abort();
    sae_graph_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sae_graph *g = NULL;
    sae_status s = sae_graph_load_json(&g, fuzz_write("circuit.json", data, size), NULL);
    fuzz_note("graph json", s, sae_last_error());
    if (s != SAE_OK)
        return 0;
    int64_t top[8], n = 0;
    sae_graph_top_nodes(top, &n, g, 8, -1);
    sae_graph_top_edges(top, &n, g, 8);
    check_round_trip(g);
    sae_graph_dot_options dot = SAE_GRAPH_DOT_OPTIONS_INIT;
    dot.max_nodes = 8;
    sae_graph_save_dot(g, fuzz_path("circuit.dot"), &dot);
    sae_graph_prune(g, 0.1f, 0.01f);
    sae_graph_free(g);
    return 0;
}
