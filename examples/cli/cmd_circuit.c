/* cmd_circuit.c: `sae circuit`: discover a sparse feature circuit (graph.h) on a llama2.c model
 * from prompt pairs, write it as JSON (and DOT, and SVG through Graphviz when it is installed);
 * `sae circuit eval|pairs|compare` are in circuit_eval.c, circuit_pairs.c, circuit_compare.c. */
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "circuit.h"
#include "progress.h"

extern char **environ;

static const char usage[] =
    "usage: sae circuit --model M --tokenizer T --dicts HOOK=DIR... --pairs FILE --out JSON\n"
    "                   [--method atp|ig|exact] [--node-threshold X] [--edge-threshold X]\n"
    "                   [--dot FILE] [--svg FILE] [options]\n"
    "       sae circuit eval|pairs|compare ...   (sae circuit SUBCOMMAND --help)\n"
    "\n"
    "Discover a sparse feature circuit (Marks et al.): the effect of every SAE feature and SAE\n"
    "error node at the given hook points on the metric logit(clean answer) - logit(patch\n"
    "answer) when the clean prompt's activations are patched towards the patch prompt's, and\n"
    "the edges between the nodes above the node threshold. Prints the clean model's accuracy,\n"
    "the top nodes and the time taken.\n"
    "\n"
    "inputs:\n"
    "  --model M           llama2.c checkpoint (e.g. stories260K.bin)\n"
    "  --tokenizer T       its tokenizer (tok512.bin)\n"
    "  --dicts HOOK=DIR... one SAE per hook point (resid_pre.L, attn_out.L, mlp_out.L,\n"
    "                      resid_post.L), in any format `sae info` reads; several may follow\n"
    "                      one --dicts. DIR alone: the hook named in the SAE's metadata\n"
    "  --pairs FILE        prompt pairs, JSON Lines: {\"clean_prefix\", \"patch_prefix\",\n"
    "                      \"clean_answer\", \"patch_answer\"} (no patch_prefix: zero ablation)\n"
    "  --labels FILE       feature labels, lines \"HOOK<TAB>FEATURE<TAB>LABEL\" (FEATURE a\n"
    "                      number or 'error')\n"
    "method:\n"
    "  --method M          ig (default, integrated gradients), atp (attribution patching)\n"
    "                      or exact (one patched run per node: slow, for checking)\n"
    "  --steps N           steps of ig (default 10)\n"
    "  --per-position      one node per token position (prompts of one length)\n"
    "  --node-threshold X  edges join nodes with |effect| > X (default 0.1)\n"
    "  --edge-threshold X  keep edges with |weight| > X (default 0.01)\n"
    "  --no-edges          node effects only\n"
    "  --batch B           prompts per model run (default 16)\n"
    "  --threads T         threads of the SAE products (default: every CPU)\n"
    "outputs:\n"
    "  --out JSON          the circuit (required)\n"
    "  --dot FILE          the circuit for Graphviz (nodes above the node threshold)\n"
    "  --svg FILE          rendered with Graphviz `dot` (must be installed)\n"
    "  --max-nodes N       at most N nodes in the DOT/SVG, largest first (default 40)\n"
    "  --top N             nodes to list (default 10)\n"
    "  --help              print this help\n";

typedef struct circuit_args {
    circuit_inputs in;
    const char *out, *dot, *svg, *labels;
    sae_graph_options o;
    int64_t max_nodes, top;
} circuit_args;

static int parse_args(int argc, char **argv, circuit_args *c)
{
    memset(c, 0, sizeof *c);
    c->o = (sae_graph_options)SAE_GRAPH_OPTIONS_INIT;
    c->max_nodes = 40, c->top = 10;
    int rc = circuit_inputs_init(&c->in, argc);
    if (rc)
        return rc;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        const char **slot = NULL;
        double x = 0;
        int64_t n = 0;
        if (circuit_inputs_take(&c->in, &a, arg, is_opt, usage, "circuit", &rc)) {
            if (rc)
                return rc;
        } else if (!is_opt) {
            return cli_usage_error(usage, "circuit: unexpected argument '%s'", arg);
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_opt_is(&a, arg, "--out")) {
            slot = &c->out;
        } else if (cli_opt_is(&a, arg, "--dot")) {
            slot = &c->dot;
        } else if (cli_opt_is(&a, arg, "--svg")) {
            slot = &c->svg;
        } else if (cli_opt_is(&a, arg, "--labels")) {
            slot = &c->labels;
        } else if (cli_opt_is(&a, arg, "--method")) {
            const char *v = cli_opt_value(&a);
            int32_t m = -1;
            for (int32_t i = SAE_GRAPH_IG; v && i <= SAE_GRAPH_EXACT; i++)
                if (!strcmp(v, sae_graph_method_name(i)))
                    m = i;
            if (m < 0)
                return cli_usage_error(usage, "circuit: --method is atp, ig or exact");
            c->o.method = m;
        } else if (cli_opt_is(&a, arg, "--steps")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 100000, &n))
                return cli_usage_error(usage, "circuit: --steps needs a positive integer");
            c->o.ig_steps = (int32_t)n;
        } else if (cli_opt_is(&a, arg, "--per-position")) {
            c->o.aggregation = SAE_GRAPH_PER_POSITION;
        } else if (cli_opt_is(&a, arg, "--no-edges")) {
            c->o.flags |= SAE_GRAPH_NO_EDGES;
        } else if (cli_opt_is(&a, arg, "--node-threshold")) {
            if (!cli_parse_f64(cli_opt_value(&a), &x) || x < 0)
                return cli_usage_error(usage, "circuit: --node-threshold needs a number >= 0");
            c->o.node_threshold = (float)x;
        } else if (cli_opt_is(&a, arg, "--edge-threshold")) {
            if (!cli_parse_f64(cli_opt_value(&a), &x) || x < 0)
                return cli_usage_error(usage, "circuit: --edge-threshold needs a number >= 0");
            c->o.edge_threshold = (float)x;
        } else if (cli_opt_is(&a, arg, "--batch")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 1 << 20, &c->o.batch_size))
                return cli_usage_error(usage, "circuit: --batch needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--threads")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 4096, &n))
                return cli_usage_error(usage, "circuit: --threads needs an integer in 1..4096");
            c->o.n_threads = (int32_t)n;
        } else if (cli_opt_is(&a, arg, "--max-nodes")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT32_MAX, &c->max_nodes))
                return cli_usage_error(usage, "circuit: --max-nodes needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--top")) {
            if (!cli_parse_i64(cli_opt_value(&a), 0, 1 << 20, &c->top))
                return cli_usage_error(usage, "circuit: --top needs an integer >= 0");
        } else {
            return cli_usage_error(usage, "circuit: unknown option '%s'", arg);
        }
        if (slot && !(*slot = cli_opt_value(&a)))
            return cli_usage_error(usage, "circuit: %s needs a value", arg);
    }
    if ((rc = circuit_inputs_check(&c->in, usage, "circuit")))
        return rc;
    if (!c->out)
        return cli_usage_error(usage, "circuit: --out is required");
    return 0;
}

/* Labels file: "HOOK<TAB>FEATURE<TAB>LABEL" lines, HOOK a hook name of the graph. */
static int read_labels(sae_graph *g, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_fail(path, "cannot open");
    char *line = NULL;
    size_t size = 0;
    int64_t lineno = 0;
    int rc = 0;
    while (!rc && getline(&line, &size, f) > 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!line[0])
            continue;
        if (!t2) {
            rc = cli_fail(path, "line %lld: expected HOOK<TAB>FEATURE<TAB>LABEL",
                          (long long)lineno);
            break;
        }
        *t1 = *t2 = '\0';
        int32_t hook = -1;
        for (int32_t k = 0; sae_graph_hook_name(g, k); k++)
            if (!strcmp(sae_graph_hook_name(g, k), line))
                hook = k;
        int64_t feat = SAE_GRAPH_ERROR;
        if (hook < 0 || (strcmp(t1 + 1, "error") && !cli_parse_i64(t1 + 1, 0, INT32_MAX, &feat)))
            rc = cli_fail(path, "line %lld: unknown hook '%s' or feature '%s'",
                          (long long)lineno, line, t1 + 1);
        else if (sae_graph_set_label(g, hook, (int32_t)feat, t2 + 1) != SAE_OK)
            rc = cli_fail_status(path, SAE_ERANGE);
    }
    free(line);
    fclose(f);
    return rc;
}

/* Run `dot -Tsvg dotfile -o svg`; whether Graphviz was there. */
static int render_svg(const char *dotfile, const char *svg)
{
    char *args[] = {"dot", "-Tsvg", (char *)dotfile, "-o", (char *)svg, NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "dot", NULL, NULL, args, environ) != 0)
        return cli_fail(svg, "not rendered: Graphviz `dot` is not installed (render %s with "
                        "`dot -Tsvg`)", dotfile);
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cli_fail(svg, "`dot -Tsvg %s` failed", dotfile);
    return 0;
}

typedef struct {
    cli_progress bar;
    double start;
} progress_state;

static int on_progress(void *user, int64_t done, int64_t total)
{
    progress_state *p = user;
    p->bar.total = total;
    double t = cli_now_seconds() - p->start;
    if (cli_progress_due(&p->bar, done, t))
        cli_progress_draw(&p->bar, done, t, 0.0, "");
    return 0;
}

static void print_node(const sae_graph *g, const sae_graph_arrays *a, int64_t i)
{
    const char *label = sae_graph_label(g, a->node_hooks[i], a->node_features[i]);
    printf("  %-14s ", sae_graph_hook_name(g, a->node_hooks[i]));
    if (a->node_features[i] == SAE_GRAPH_ERROR)
        printf("error   ");
    else
        printf("#%-6d ", a->node_features[i]);
    if (a->node_positions[i] >= 0)
        printf("@%-3d ", a->node_positions[i]);
    printf("%+10.4f%s%s\n", (double)a->node_effects[i], label ? "  " : "", label ? label : "");
}

static int summarize(const sae_graph *g, const circuit_args *c, double seconds)
{
    sae_graph_info info = SAE_GRAPH_INFO_INIT;
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
    sae_graph_get_info(g, &info);
    sae_graph_get_arrays(g, &a);
    int64_t kept = 0;
    for (int64_t i = 0; i < a.n_nodes; i++)
        kept += fabsf(a.node_effects[i]) > info.node_threshold;
    printf("metric: clean %.4f, patch %.4f (mean logit difference)\n", info.metric_clean,
           info.metric_patch);
    printf("nodes: %lld with an effect, %lld with |effect| > %g; edges: %lld\n",
           (long long)a.n_nodes, (long long)kept, (double)info.node_threshold,
           (long long)a.n_edges);
    printf("time: %.2f s (%s)\n", seconds, sae_graph_method_name(info.method));
    int64_t *top = cli_alloc_array(c->top, sizeof(int64_t)), n_top = 0;
    if (!top || sae_graph_top_nodes(top, &n_top, g, c->top, -1) != SAE_OK) {
        free(top);
        return cli_fail(NULL, "out of memory");
    }
    if (n_top)
        printf("top nodes:\n");
    for (int64_t i = 0; i < n_top; i++)
        print_node(g, &a, top[i]);
    free(top);
    return 0;
}

/* The DOT file (a temporary one beside the SVG when only --svg is given) and the SVG. */
static int write_pictures(const sae_graph *g, const circuit_args *c)
{
    if (!c->dot && !c->svg)
        return 0;
    char tmp[4096];
    const char *dot = c->dot;
    if (!dot) {
        snprintf(tmp, sizeof tmp, "%s.dot", c->svg);
        dot = tmp;
    }
    sae_graph_info info = SAE_GRAPH_INFO_INIT;
    sae_graph_get_info(g, &info);
    sae_graph_dot_options d = SAE_GRAPH_DOT_OPTIONS_INIT;
    d.node_threshold = info.node_threshold, d.edge_threshold = info.edge_threshold;
    d.max_nodes = (int32_t)c->max_nodes;
    sae_status s = sae_graph_save_dot(g, dot, &d);
    if (s != SAE_OK)
        return cli_fail_status(dot, s);
    int rc = c->svg ? render_svg(dot, c->svg) : 0;
    if (!c->dot)
        remove(tmp);
    return rc;
}

int cmd_circuit(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "eval"))
        return cmd_circuit_eval(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "pairs"))
        return cmd_circuit_pairs(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "compare"))
        return cmd_circuit_compare(argc - 1, argv + 1);
    circuit_args c;
    int rc = parse_args(argc, argv, &c);
    if (rc) {
        circuit_inputs_free(&c.in);
        return rc < 0 ? 0 : rc;
    }
    circuit_model m;
    circuit_pairs p;
    memset(&p, 0, sizeof p);
    sae_graph *g = NULL;
    double acc_c = 0, acc_p = 0;
    if (!(rc = circuit_model_load(&m, c.in.model, c.in.tokenizer, c.in.dicts, c.in.n_dicts)) &&
        !(rc = circuit_pairs_load(&p, c.in.pairs, m.tok)) &&
        !(rc = circuit_accuracy(&m, &p, &acc_c, &acc_p))) {
        printf("pairs: %lld from %s", (long long)p.pairs.n_pairs, c.in.pairs);
        if (!isnan(acc_c))
            printf("; clean model accuracy: %.1f%% on clean prompts", 100.0 * acc_c);
        if (!isnan(acc_p))
            printf(", %.1f%% on patch prompts", 100.0 * acc_p);
        printf("\n");
        progress_state ps;
        cli_progress_init(&ps.bar, stderr, 1, "runs");
        ps.start = cli_now_seconds();
        c.o.progress = on_progress, c.o.progress_user = &ps;
        sae_status s = sae_graph_attribute(&g, &m.host, m.hooks, (const sae_dict *const *)m.dicts,
                                           m.n_hooks, &p.pairs, &c.o);
        cli_progress_finish(&ps.bar);
        const double seconds = cli_now_seconds() - ps.start;
        if (s != SAE_OK)
            rc = cli_fail_status(NULL, s);
        if (!rc && c.labels)
            rc = read_labels(g, c.labels);
        if (!rc) {
            sae_graph_set_metadata(g, "model", c.in.model);
            sae_graph_set_metadata(g, "pairs", c.in.pairs);
            char buf[64];
            snprintf(buf, sizeof buf, "%.4f", acc_c);
            sae_graph_set_metadata(g, "clean_accuracy", buf);
            snprintf(buf, sizeof buf, "%.3f", seconds);
            sae_graph_set_metadata(g, "seconds", buf);
            if ((s = sae_graph_save_json(g, c.out)) != SAE_OK)
                rc = cli_fail_status(c.out, s);
        }
        if (!rc)
            rc = summarize(g, &c, seconds);
        if (!rc)
            rc = write_pictures(g, &c);
    }
    sae_graph_free(g);
    circuit_pairs_free(&p);
    circuit_model_free(&m);
    circuit_inputs_free(&c.in);
    return rc;
}
