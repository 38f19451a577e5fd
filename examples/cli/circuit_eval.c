/* circuit_eval.c: `sae circuit eval`: faithfulness and completeness of a circuit (the nodes
 * above its threshold) and their curve against circuit size, by mean ablation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circuit.h"

static const char usage[] =
    "usage: sae circuit eval --model M --tokenizer T --dicts HOOK=DIR... --pairs FILE\n"
    "                        --circuit JSON [--sizes N,N,...] [--json] [options]\n"
    "\n"
    "Faithfulness (m(C) - m(empty)) / (m(M) - m(empty)) and completeness (the same for the\n"
    "complement of C) of the circuit made of the nodes above the circuit's node threshold, and\n"
    "of the circuits made of the N nodes of largest |effect| for each N of --sizes. Nodes\n"
    "outside the circuit take their mean over the patch prompts (feature-circuits' ablation).\n"
    "\n"
    "options:\n"
    "  --model M, --tokenizer T, --dicts HOOK=DIR..., --pairs FILE   as for `sae circuit`\n"
    "  --circuit JSON      the circuit written by `sae circuit` (required)\n"
    "  --sizes LIST        circuit sizes of the curve (default 1,2,5,10,20,50,100,200,500)\n"
    "  --ablation A        mean (default) or zero\n"
    "  --errors E          nodes (default: error nodes like features), keep or remove\n"
    "  --no-completeness   skip the complement runs of the curve\n"
    "  --batch B           prompts per model run (default 16)\n"
    "  --json              print one JSON object\n"
    "  --help              print this help\n";

typedef struct eval_args {
    circuit_inputs in;
    const char *circuit, *sizes;
    sae_graph_eval_options o;
    bool json, no_completeness;
} eval_args;

static int parse_args(int argc, char **argv, eval_args *e)
{
    memset(e, 0, sizeof *e);
    e->o = (sae_graph_eval_options)SAE_GRAPH_EVAL_OPTIONS_INIT;
    e->sizes = "1,2,5,10,20,50,100,200,500";
    int rc = circuit_inputs_init(&e->in, argc);
    if (rc)
        return rc;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        const char **slot = NULL, *v;
        if (circuit_inputs_take(&e->in, &a, arg, is_opt, usage, "circuit eval", &rc)) {
            if (rc)
                return rc;
        } else if (!is_opt) {
            return cli_usage_error(usage, "circuit eval: unexpected argument '%s'", arg);
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_opt_is(&a, arg, "--circuit")) {
            slot = &e->circuit;
        } else if (cli_opt_is(&a, arg, "--sizes")) {
            slot = &e->sizes;
        } else if (cli_opt_is(&a, arg, "--ablation")) {
            v = cli_opt_value(&a);
            if (v && !strcmp(v, "mean"))
                e->o.ablation = SAE_ABLATE_MEAN;
            else if (v && !strcmp(v, "zero"))
                e->o.ablation = SAE_ABLATE_ZERO;
            else
                return cli_usage_error(usage, "circuit eval: --ablation is mean or zero");
        } else if (cli_opt_is(&a, arg, "--errors")) {
            v = cli_opt_value(&a);
            if (v && !strcmp(v, "nodes"))
                e->o.errors = SAE_GRAPH_ERRORS_AS_NODES;
            else if (v && !strcmp(v, "keep"))
                e->o.errors = SAE_GRAPH_ERRORS_KEEP;
            else if (v && !strcmp(v, "remove"))
                e->o.errors = SAE_GRAPH_ERRORS_REMOVE;
            else
                return cli_usage_error(usage, "circuit eval: --errors is nodes, keep or remove");
        } else if (cli_opt_is(&a, arg, "--batch")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 1 << 20, &e->o.batch_size))
                return cli_usage_error(usage, "circuit eval: --batch needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--json")) {
            e->json = true;
        } else if (cli_opt_is(&a, arg, "--no-completeness")) {
            e->no_completeness = true;
        } else {
            return cli_usage_error(usage, "circuit eval: unknown option '%s'", arg);
        }
        if (slot && !(*slot = cli_opt_value(&a)))
            return cli_usage_error(usage, "circuit eval: %s needs a value", arg);
    }
    if ((rc = circuit_inputs_check(&e->in, usage, "circuit eval")))
        return rc;
    if (!e->circuit)
        return cli_usage_error(usage, "circuit eval: --circuit is required");
    return 0;
}

/* The dictionaries of m in the order of the graph's hook points. */
static int graph_dicts(const circuit_model *m, const sae_graph *g, const sae_dict **out)
{
    sae_graph_info info = SAE_GRAPH_INFO_INIT;
    sae_graph_get_info(g, &info);
    for (int32_t k = 0; k < info.n_hooks; k++) {
        out[k] = NULL;
        for (int32_t i = 0; i < m->n_hooks; i++)
            if (!strcmp(m->host.hook_names[m->hooks[i]], sae_graph_hook_name(g, k)))
                out[k] = m->dicts[i];
        if (!out[k])
            return cli_fail(NULL, "no dictionary given for the circuit's hook point %s",
                            sae_graph_hook_name(g, k));
    }
    return 0;
}

static void print_results(const eval_args *e, const sae_graph_eval *ev, const int64_t *sizes,
                          int64_t n, const double *faith, const double *comp)
{
    if (e->json) {
        printf("{\"metric_full\": %.6g, \"metric_empty\": %.6g, \"circuit\": {\"nodes\": %lld, "
               "\"metric\": %.6g, \"faithfulness\": %.6g, \"completeness\": %.6g}, \"curve\": [",
               ev->metric_full, ev->metric_empty, (long long)ev->n_nodes, ev->metric_circuit,
               ev->faithfulness, ev->completeness);
        for (int64_t i = 0; i < n; i++) {
            printf("%s{\"nodes\": %lld, \"faithfulness\": %.6g", i ? ", " : "",
                   (long long)sizes[i], faith[i]);
            if (comp)
                printf(", \"completeness\": %.6g", comp[i]);
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("m(M) %.4f, m(empty) %.4f\n", ev->metric_full, ev->metric_empty);
    printf("circuit above the threshold: %lld nodes, m(C) %.4f, faithfulness %.3f, "
           "completeness %.3f\n", (long long)ev->n_nodes, ev->metric_circuit, ev->faithfulness,
           ev->completeness);
    printf("%8s  %12s  %12s\n", "nodes", "faithfulness", "completeness");
    for (int64_t i = 0; i < n; i++) {
        printf("%8lld  %12.3f", (long long)sizes[i], faith[i]);
        if (comp)
            printf("  %12.3f", comp[i]);
        printf("\n");
    }
}

int cmd_circuit_eval(int argc, char **argv)
{
    eval_args e;
    int rc = parse_args(argc, argv, &e);
    if (rc) {
        circuit_inputs_free(&e.in);
        return rc < 0 ? 0 : rc;
    }
    int64_t *sizes = NULL, n = 0;
    if (circuit_parse_sizes(e.sizes, &sizes, &n)) {
        circuit_inputs_free(&e.in);
        return cli_usage_error(usage, "circuit eval: --sizes needs integers like 1,2,5");
    }
    circuit_model m;
    circuit_pairs p;
    memset(&m, 0, sizeof m);
    memset(&p, 0, sizeof p);
    sae_graph *g = NULL;
    const sae_dict **dicts = NULL;
    double *faith = calloc((size_t)n, sizeof *faith), *comp = calloc((size_t)n, sizeof *comp);
    sae_status s = sae_graph_load_json(&g, e.circuit, NULL);
    if (s != SAE_OK)
        rc = cli_fail_status(e.circuit, s);
    if (!rc && !(rc = circuit_model_load(&m, e.in.model, e.in.tokenizer, e.in.dicts, e.in.n_dicts))) {
        sae_graph_info info = SAE_GRAPH_INFO_INIT;
        sae_graph_get_info(g, &info);
        if (!(dicts = calloc((size_t)info.n_hooks, sizeof *dicts)) || !faith || !comp)
            rc = cli_fail(NULL, "out of memory");
        if (!rc && !(rc = graph_dicts(&m, g, dicts)) &&
            !(rc = circuit_pairs_load(&p, e.in.pairs, m.tok))) {
            sae_graph_eval ev = SAE_GRAPH_EVAL_INIT;
            if ((s = sae_graph_evaluate(&ev, g, NULL, &m.host, dicts, &p.pairs, &e.o)) ||
                (s = sae_graph_faithfulness_curve(faith, e.no_completeness ? NULL : comp, g,
                                                  sizes, n, &m.host, dicts, &p.pairs, &e.o)))
                rc = cli_fail_status(NULL, s);
            else
                print_results(&e, &ev, sizes, n, faith, e.no_completeness ? NULL : comp);
        }
    }
    circuit_model_free(&m);
    circuit_pairs_free(&p);
    sae_graph_free(g);
    free(dicts);
    free(sizes);
    free(faith);
    free(comp);
    circuit_inputs_free(&e.in);
    return rc;
}
