/* circuit_compare.c: `sae circuit compare A.json B.json`: how two circuits over the same hook
 * points (e.g. by attribution patching, integrated gradients and exact patching) agree on their
 * node effects — Spearman and Pearson correlation over the union of their nodes (a node absent
 * from one has effect 0 there), and the overlap of their top-N nodes by |effect|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circuit.h"

static const char usage[] =
    "usage: sae circuit compare A.json B.json [--top N,N,...] [--json]\n"
    "\n"
    "Compare the node effects of two circuits over the same hook points: Spearman rank\n"
    "correlation and Pearson correlation over the union of their nodes (absent nodes count 0),\n"
    "and for each N the share of A's top N nodes (by |effect|) among B's top N.\n"
    "\n"
    "options:\n"
    "  --top LIST          sizes of the top-N overlap (default 10,20,50)\n"
    "  --json              print one JSON object\n"
    "  --help              print this help\n";

/* Effects of the union of nodes: a[i], b[i]. */
typedef struct {
    double *a, *b;
    int64_t n;
} paired;

/* Index of node (hook name, position, feature) of g in h, or -1. */
static int64_t find_in(const sae_graph *g, const sae_graph_arrays *ga, int64_t i,
                       const sae_graph *h)
{
    const char *name = sae_graph_hook_name(g, ga->node_hooks[i]);
    for (int32_t k = 0; sae_graph_hook_name(h, k); k++) {
        int64_t j = -1;
        if (!strcmp(sae_graph_hook_name(h, k), name) &&
            sae_graph_find_node(&j, h, k, ga->node_positions[i], ga->node_features[i]) == SAE_OK)
            return j;
    }
    return -1;
}

static int pair_up(const sae_graph *ga_g, const sae_graph *gb_g, paired *p)
{
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT, b = SAE_GRAPH_ARRAYS_INIT;
    sae_graph_get_arrays(ga_g, &a);
    sae_graph_get_arrays(gb_g, &b);
    p->a = calloc((size_t)(a.n_nodes + b.n_nodes + 1), sizeof(double));
    p->b = calloc((size_t)(a.n_nodes + b.n_nodes + 1), sizeof(double));
    p->n = 0;
    if (!p->a || !p->b)
        return cli_fail(NULL, "out of memory");
    for (int64_t i = 0; i < a.n_nodes; i++) {
        int64_t j = find_in(ga_g, &a, i, gb_g);
        p->a[p->n] = a.node_effects[i];
        p->b[p->n++] = j >= 0 ? b.node_effects[j] : 0.0;
    }
    for (int64_t j = 0; j < b.n_nodes; j++)
        if (find_in(gb_g, &b, j, ga_g) < 0)
            p->a[p->n] = 0.0, p->b[p->n++] = b.node_effects[j];
    return 0;
}

typedef struct {
    double v;
    int64_t i;
} item;

static int cmp_item(const void *x, const void *y)
{
    const item *a = x, *b = y;
    return a->v < b->v ? -1 : a->v > b->v;
}

/* Ranks 1..n with ties averaged. */
static void ranks(const double *v, int64_t n, double *r, item *tmp)
{
    for (int64_t i = 0; i < n; i++)
        tmp[i] = (item){v[i], i};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_item);
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j + 1 < n && tmp[j + 1].v == tmp[i].v)
            j++;
        for (int64_t k = i; k <= j; k++)
            r[tmp[k].i] = 0.5 * (double)(i + j) + 1.0;
        i = j + 1;
    }
}

static double pearson(const double *x, const double *y, int64_t n)
{
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int64_t i = 0; i < n; i++)
        mx += x[i] / (double)n, my += y[i] / (double)n;
    for (int64_t i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxy / sqrt(sxx * syy);
}

/* Share of the top-n of x (by |value|) that are in the top-n of y. */
static double overlap(const double *x, const double *y, int64_t count, int64_t n, item *tx,
                      item *ty)
{
    for (int64_t i = 0; i < count; i++)
        tx[i] = (item){-fabs(x[i]), i}, ty[i] = (item){-fabs(y[i]), i};
    qsort(tx, (size_t)count, sizeof *tx, cmp_item);
    qsort(ty, (size_t)count, sizeof *ty, cmp_item);
    n = n < count ? n : count;
    int64_t both = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            both += tx[i].i == ty[j].i;
    return n ? (double)both / (double)n : NAN;
}

int cmd_circuit_compare(int argc, char **argv)
{
    const char *files[2] = {NULL, NULL}, *tops = "10,20,50";
    int n_files = 0;
    bool json = false;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            if (n_files == 2)
                return cli_usage_error(usage, "circuit compare: more than two circuits");
            files[n_files++] = arg;
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_opt_is(&a, arg, "--top")) {
            if (!(tops = cli_opt_value(&a)))
                return cli_usage_error(usage, "circuit compare: --top needs a list");
        } else if (cli_opt_is(&a, arg, "--json")) {
            json = true;
        } else {
            return cli_usage_error(usage, "circuit compare: unknown option '%s'", arg);
        }
    }
    int64_t *sizes = NULL, n_sizes = 0;
    if (n_files != 2)
        return cli_usage_error(usage, "circuit compare: give two circuit files");
    if (circuit_parse_sizes(tops, &sizes, &n_sizes))
        return cli_usage_error(usage, "circuit compare: --top needs integers like 10,20");
    sae_graph *g[2] = {NULL, NULL};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        sae_status s = sae_graph_load_json(&g[i], files[i], NULL);
        if (s != SAE_OK)
            rc = cli_fail_status(files[i], s);
    }
    paired p = {NULL, NULL, 0};
    if (!rc)
        rc = pair_up(g[0], g[1], &p);
    double *ra = !rc ? malloc((size_t)(p.n + 1) * sizeof(double)) : NULL;
    double *rb = !rc ? malloc((size_t)(p.n + 1) * sizeof(double)) : NULL;
    item *t1 = !rc ? malloc((size_t)(p.n + 1) * sizeof(item)) : NULL;
    item *t2 = !rc ? malloc((size_t)(p.n + 1) * sizeof(item)) : NULL;
    if (!rc && (!ra || !rb || !t1 || !t2))
        rc = cli_fail(NULL, "out of memory");
    if (!rc) {
        ranks(p.a, p.n, ra, t1);
        ranks(p.b, p.n, rb, t1);
        const double spearman = pearson(ra, rb, p.n), r = pearson(p.a, p.b, p.n);
        if (json)
            printf("{\"nodes\": %lld, \"spearman\": %.6g, \"pearson\": %.6g, \"top_overlap\": {",
                   (long long)p.n, spearman, r);
        else
            printf("%lld nodes: Spearman %.4f, Pearson %.4f\n", (long long)p.n, spearman, r);
        for (int64_t i = 0; i < n_sizes; i++) {
            double o = overlap(p.a, p.b, p.n, sizes[i], t1, t2);
            if (json)
                printf("%s\"%lld\": %.6g", i ? ", " : "", (long long)sizes[i], o);
            else
                printf("top %lld overlap: %.3f\n", (long long)sizes[i], o);
        }
        if (json)
            printf("}}\n");
    }
    free(ra);
    free(rb);
    free(t1);
    free(t2);
    free(p.a);
    free(p.b);
    free(sizes);
    sae_graph_free(g[0]);
    sae_graph_free(g[1]);
    return rc;
}
