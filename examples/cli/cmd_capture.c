/* cmd_capture.c: `sae capture --model M (--tokens F | --text F) --hook H|KIND|all --out FILE`:
 * run token sequences through a llama2.c model and write the activations at hook points to a
 * safetensors file with sae_host_capture (streamed, atomic). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static const char usage[] =
    "usage: sae capture --model M [--tokenizer T] (--tokens FILE | --text FILE) --hook H|all\n"
    "                   --out FILE [options]\n"
    "\n"
    "Run token sequences through a llama2.c model and write the activations at hook points to\n"
    "a safetensors file, one F32 tensor per hook kind, named after it (resid_pre, attn_out,\n"
    "mlp_out, resid_post). The file is streamed (memory: one forward batch, whatever the\n"
    "number of sequences) and replaced atomically. With --hook:\n"
    "  resid_post.2         one hook point (SAELens names such as blocks.2.hook_resid_post\n"
    "                       work too): resid_post [n_seq, seq_len, d_model]\n"
    "  resid_post           that kind at every layer: [n_seq, seq_len, n_layers, d_model]\n"
    "  all                  every kind at every layer, one tensor per kind, each\n"
    "                       [n_seq, seq_len, n_layers, d_model]\n"
    "With --skip-bos the position axis has seq_len - 1 entries. The metadata key hooks.<name>\n"
    "lists the hook points of each tensor. A file of one hook point is ready for\n"
    "`sae train --data FILE`.\n"
    "\n"
    "options:\n"
    "  --hook H            what to capture (above; required)\n"
    "  --out FILE          the safetensors file to write (required)\n"
    CLI_MODEL_HELP
    "  --help              print this help\n";

typedef struct capture_args {
    cli_model model;
    const char *hook, *out;
} capture_args;

/* Parse argv into *c; 0, or the exit code of a usage error (printed). --help returns -1. */
static int parse_args(int argc, char **argv, capture_args *c)
{
    memset(c, 0, sizeof *c);
    cli_model_init(&c->model);
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    int rc = 0;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            return cli_usage_error(usage, "capture: unexpected argument '%s'", arg);
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_model_option(&c->model, &a, arg, usage, "capture", &rc)) {
            if (rc)
                return rc;
        } else if (cli_opt_is(&a, arg, "--hook")) {
            if (!(c->hook = cli_opt_value(&a)))
                return cli_usage_error(usage, "capture: --hook needs a hook point, a kind or "
                                              "'all'");
        } else if (cli_opt_is(&a, arg, "--out")) {
            if (!(c->out = cli_opt_value(&a)))
                return cli_usage_error(usage, "capture: --out needs a file");
        } else {
            return cli_usage_error(usage, "capture: unknown option '%s'", arg);
        }
    }
    if (!c->hook)
        return cli_usage_error(usage, "capture: missing --hook (a hook point, a kind or 'all')");
    if (!c->out)
        return cli_usage_error(usage, "capture: missing --out FILE");
    return cli_model_check(&c->model, usage, "capture", true);
}

/* What goes into the file: n_tensors names (kinds) and their hook ids, n_stack per tensor
 * (0: one hook point, no layer axis). At most one tensor per hook point of layer 0. */
typedef struct capture_plan {
    char **names;       /* (n_tensors) */
    int32_t *hook_ids;  /* (n_tensors, max(n_stack, 1)) */
    int32_t n_tensors, n_stack;
} capture_plan;

static void plan_free(capture_plan *p)
{
    for (int32_t i = 0; p->names && i < p->n_tensors; i++)
        free(p->names[i]);
    free(p->names);
    free(p->hook_ids);
}

/* Tensor `kind` (its first len characters): the hook point `id`, or every layer (id < 0). */
static int add_tensor(capture_plan *p, const cli_model *m, const char *kind, int len, int32_t id)
{
    const int32_t L = (int32_t)m->host.n_layers;
    char *name = malloc((size_t)len + 1);
    if (!name)
        return cli_fail(NULL, "out of memory");
    snprintf(name, (size_t)len + 1, "%.*s", len, kind);
    const int32_t t = p->n_tensors++;
    p->names[t] = name;
    if (id >= 0) {
        p->hook_ids[t] = id;
        return 0;
    }
    p->n_stack = L;
    for (int32_t l = 0; l < L; l++) {
        char hook[256];
        snprintf(hook, sizeof hook, "%s.%d", name, (int)l);
        if ((id = cli_model_find_hook(m, hook)) < 0)
            return cli_fail(m->model_path, "the model has no hook point %s", hook);
        p->hook_ids[t * L + l] = id;
    }
    return 0;
}

/* --hook H: one hook point; a kind (every layer); or all (the kinds of layer 0's names). */
static int plan_capture(capture_plan *p, const cli_model *m, const char *hook)
{
    const int32_t H = m->host.n_hooks;
    p->names = calloc((size_t)H + 1, sizeof *p->names);
    p->hook_ids = cli_alloc_array((H + 1) * (m->host.n_layers + 1), sizeof *p->hook_ids);
    if (!p->names || !p->hook_ids)
        return cli_fail(NULL, "out of memory");
    int32_t id = cli_model_find_hook(m, hook);
    char layer0[256];
    snprintf(layer0, sizeof layer0, "%s.0", hook);
    if (id >= 0) {
        /* Named after its kind: the host's name without its layer suffix. */
        const char *own = m->host.hook_names[id], *dot = strrchr(own, '.');
        return add_tensor(p, m, own, dot ? (int)(dot - own) : (int)strlen(own), id);
    }
    if (cli_model_find_hook(m, layer0) >= 0)
        return add_tensor(p, m, hook, (int)strlen(hook), -1);
    if (!strcmp(hook, "all")) {
        int rc = 0;
        for (int32_t i = 0; !rc && i < H; i++) {
            const char *name = m->host.hook_names[i];
            const size_t n = strlen(name);
            if (n > 2 && !strcmp(name + n - 2, ".0"))
                rc = add_tensor(p, m, name, (int)(n - 2), -1);
        }
        return rc;
    }
    char names[256];
    cli_model_hook_names(m, names, sizeof names);
    return cli_fail(m->model_path, "no hook point or kind '%s'; the model has %s", hook, names);
}

int cmd_capture(int argc, char **argv)
{
    capture_args c;
    int rc = parse_args(argc, argv, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    capture_plan p = {0};
    if ((rc = cli_model_open(&c.model)) || (rc = plan_capture(&p, &c.model, c.hook))) {
        plan_free(&p);
        cli_model_free(&c.model);
        return rc;
    }
    sae_capture_options o = SAE_CAPTURE_OPTIONS_INIT;
    o.skip_bos = c.model.skip_bos;
    o.seqs_per_batch = c.model.batch_seqs;
    const double t0 = cli_now_seconds();
    sae_status s = sae_host_capture(c.out, &c.model.host, c.model.tokens, c.model.n_seq,
                                    c.model.len, p.n_tensors, (const char *const *)p.names,
                                    p.n_stack, p.hook_ids, &o);
    const double seconds = cli_now_seconds() - t0;
    if (s != SAE_OK) {
        rc = cli_fail_status(c.out, s);
    } else {
        char what[512];
        cli_model_describe(&c.model, what, sizeof what);
        const int64_t T = c.model.len - c.model.skip_bos;
        printf("%s: %s", c.out, what);
        for (int32_t i = 0; i < p.n_tensors; i++) {
            printf(i ? ", %s [%lld, %lld" : "\n  %s [%lld, %lld", p.names[i],
                   (long long)c.model.n_seq, (long long)T);
            if (p.n_stack)
                printf(", %d", (int)p.n_stack);
            printf(", %lld]", (long long)c.model.host.d_model);
        }
        printf(" F32\n  %.0f tokens/s (%.2f s)\n",
               seconds > 0 ? (double)(c.model.n_seq * c.model.len) / seconds : 0.0, seconds);
        if (fflush(stdout) != 0)
            rc = cli_fail(NULL, "cannot write to standard output");
    }
    plan_free(&p);
    cli_model_free(&c.model);
    return rc;
}
