/* cmd_generate.c: `sae generate --model M --tokenizer T [--prompt P] [...]`: text from a
 * llama2.c checkpoint (the llama2.c host, examples/llama2, as run.c generates), optionally with
 * SAE patches (steer, clamp, ablate, splice) at one hook point on every pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "llama2.h"

static const char usage[] =
    "usage: sae generate --model M --tokenizer T [--prompt P] [--temperature 0] [--steps N]\n"
    "                    [--dict DIR --hook H (--steer F:A | --clamp F:V | --ablate F,F,...\n"
    "                    | --splice)...] [options]\n"
    "\n"
    "Generate text with a llama2.c checkpoint M and its tokenizer T as llama2.c's run.c does:\n"
    "the prompt after BOS, then one token per position with a KV cache until N positions have\n"
    "run or BOS comes; greedy at temperature 0, else temperature and top-p sampling with run.c's\n"
    "seeded generator (the same seed gives run.c's text). With --dict and --hook, SAE patches\n"
    "change the activations at hook point H on every pass (the whole prompt, then each new\n"
    "token), applied in the order given.\n"
    "\n"
    "options:\n"
    "  --prompt P        text to continue (default: none, start from BOS)\n"
    "  --steps N         positions to run, prompt included (default 256, at most the model's\n"
    "                    context length)\n"
    "  --temperature T   0 (default): greedy; > 0: sample from softmax(logits / T)\n"
    "  --top-p P         sample from the most probable tokens whose mass exceeds P; 0 or 1:\n"
    "                    from all tokens (default 0.9, as run.c)\n"
    "  --seed S          seed of the sampler, >= 1 (default 1)\n"
    "  --dict DIR        an SAE (any format `sae info` reads) whose d_in is the model's dim\n"
    "  --hook H          hook point of the patches: resid_pre.L, attn_out.L, mlp_out.L or\n"
    "                    resid_post.L (default: the SAE's own hook name, if the model has it)\n"
    "  --steer F:A       add A times decoder row F (repeatable)\n"
    "  --normalize       steer along unit decoder rows instead\n"
    "  --clamp F:V       set feature F's code to V, keeping the SAE's error (repeatable)\n"
    "  --ablate F,F,...  set the codes of these features to 0, keeping the error (repeatable)\n"
    "  --splice          replace the activations by the SAE's reconstruction\n"
    "  --compare         print the text without patches first, then with them\n"
    "  --k K             k for SAE files that do not store it (sae-icm)\n"
    "  --threads T       threads of the SAE encoder (default: every CPU this process may use)\n"
    "  --help            print this help\n";

typedef enum { SPEC_STEER, SPEC_CLAMP, SPEC_ABLATE, SPEC_SPLICE } spec_kind;

/* One patch as given on the command line (option and arg: its text, for messages). */
typedef struct {
    spec_kind kind;
    const char *option, *arg;
    int64_t feature;
    double value;
} patch_spec;

typedef struct {
    const char *model, *tokenizer, *prompt, *dict, *hook;
    int64_t steps, seed, k, threads;
    double temperature, top_p;
    bool normalize, compare;
    patch_spec *specs; /* (n_specs), room for argc */
    int n_specs;
} generate_args;

/* "F:X" with F an integer id >= 0 and X a finite number. */
static bool parse_pair(const char *text, int64_t *feature, double *value)
{
    const char *colon = text ? strchr(text, ':') : NULL;
    char id[32];
    if (!colon || (size_t)(colon - text) >= sizeof id)
        return false;
    memcpy(id, text, (size_t)(colon - text));
    id[colon - text] = '\0';
    return cli_parse_i64(id, 0, INT32_MAX, feature) && cli_parse_f64(colon + 1, value);
}

/* "F,F,..." of ids >= 0 into out (NULL: only count them; else room for that count);
 * the count, or -1 when malformed. */
static int64_t parse_ids(const char *text, int32_t *out)
{
    int64_t n = 0;
    for (const char *p = text; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char id[32];
        int64_t v;
        if (len == 0 || len >= sizeof id)
            return -1;
        memcpy(id, p, len);
        id[len] = '\0';
        if (!cli_parse_i64(id, 0, INT32_MAX, &v))
            return -1;
        if (out)
            out[n] = (int32_t)v;
        n++;
        p = comma ? comma + 1 : NULL;
        if (comma && !*p)
            return -1;
    }
    return text && *text ? n : -1;
}

/* Parse argv into *g; 0, or the exit code of a usage error (printed). --help returns -1. */
static int parse_args(int argc, char **argv, generate_args *g)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        patch_spec *sp = &g->specs[g->n_specs];
        if (!is_opt)
            return cli_usage_error(usage, "generate: unexpected argument '%s'", arg);
        if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_opt_is(&a, arg, "--model")) {
            if (!(g->model = cli_opt_value(&a)))
                return cli_usage_error(usage, "generate: --model needs a file");
        } else if (cli_opt_is(&a, arg, "--tokenizer")) {
            if (!(g->tokenizer = cli_opt_value(&a)))
                return cli_usage_error(usage, "generate: --tokenizer needs a file");
        } else if (cli_opt_is(&a, arg, "--prompt")) {
            if (!(g->prompt = cli_opt_value(&a)))
                return cli_usage_error(usage, "generate: --prompt needs a text");
        } else if (cli_opt_is(&a, arg, "--dict")) {
            if (!(g->dict = cli_opt_value(&a)))
                return cli_usage_error(usage, "generate: --dict needs a path");
        } else if (cli_opt_is(&a, arg, "--hook")) {
            if (!(g->hook = cli_opt_value(&a)))
                return cli_usage_error(usage, "generate: --hook needs a hook point name");
        } else if (cli_opt_is(&a, arg, "--steps")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT32_MAX, &g->steps))
                return cli_usage_error(usage, "generate: --steps needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--seed")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &g->seed))
                return cli_usage_error(usage, "generate: --seed needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--temperature")) {
            if (!cli_parse_f64(cli_opt_value(&a), &g->temperature) || g->temperature < 0)
                return cli_usage_error(usage, "generate: --temperature needs a number >= 0");
        } else if (cli_opt_is(&a, arg, "--top-p")) {
            if (!cli_parse_f64(cli_opt_value(&a), &g->top_p) || g->top_p < 0 || g->top_p > 1)
                return cli_usage_error(usage, "generate: --top-p needs a number in [0, 1]");
        } else if (cli_opt_is(&a, arg, "--k")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &g->k))
                return cli_usage_error(usage, "generate: --k needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--threads")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 4096, &g->threads))
                return cli_usage_error(usage, "generate: --threads needs an integer in 1..4096");
        } else if (cli_opt_is(&a, arg, "--normalize")) {
            g->normalize = true;
        } else if (cli_opt_is(&a, arg, "--compare")) {
            g->compare = true;
        } else if (cli_opt_is(&a, arg, "--splice")) {
            *sp = (patch_spec){SPEC_SPLICE, "--splice", "", 0, 0};
            g->n_specs++;
        } else if (cli_opt_is(&a, arg, "--steer") || cli_opt_is(&a, arg, "--clamp")) {
            bool steer = cli_opt_is(&a, arg, "--steer");
            sp->kind = steer ? SPEC_STEER : SPEC_CLAMP;
            sp->option = steer ? "--steer" : "--clamp";
            if (!parse_pair(sp->arg = cli_opt_value(&a), &sp->feature, &sp->value))
                return cli_usage_error(usage, "generate: %s needs FEATURE:%s (e.g. 12:%s)",
                                       steer ? "--steer" : "--clamp", steer ? "ALPHA" : "VALUE",
                                       steer ? "8" : "4.5");
            g->n_specs++;
        } else if (cli_opt_is(&a, arg, "--ablate")) {
            sp->kind = SPEC_ABLATE;
            sp->option = "--ablate";
            if (!(sp->arg = cli_opt_value(&a)) || parse_ids(sp->arg, NULL) < 0)
                return cli_usage_error(usage, "generate: --ablate needs feature ids F,F,...");
            g->n_specs++;
        } else {
            return cli_usage_error(usage, "generate: unknown option '%s'", arg);
        }
    }
    if (!g->model || !g->tokenizer)
        return cli_usage_error(usage, "generate: --model and --tokenizer are required");
    if (g->n_specs > 0 && !g->dict)
        return cli_usage_error(usage, "generate: patches need an SAE (--dict DIR)");
    if (g->dict && g->n_specs == 0)
        return cli_usage_error(usage, "generate: --dict needs a patch (--steer, --clamp, "
                                      "--ablate or --splice)");
    if ((g->hook || g->compare) && !g->dict)
        return cli_usage_error(usage, "generate: %s needs --dict and a patch",
                               g->hook ? "--hook" : "--compare");
    return 0;
}

/* ---- patches ------------------------------------------------------------------------------ */

/* The patches of one hook point, as a sae_hook_fn user. */
typedef struct {
    int32_t hook_id;
    const char *hook_name;
    sae_patch **patches;
    int32_t n;
} hook_patches;

static sae_status apply_at_hook(void *user, int32_t hook_id, float *x, int64_t n_tokens,
                                int64_t ld)
{
    const hook_patches *h = user;
    return hook_id == h->hook_id ? sae_patch_apply_list(h->patches, h->n, x, n_tokens, ld)
                                 : SAE_OK;
}

/* Make the patch of one spec; on failure print "sae: --steer 9:1: <why>" and return 1. */
static int make_patch(const generate_args *g, const patch_spec *sp, const sae_dict *dict,
                      sae_patch **out)
{
    sae_patch_options o = SAE_PATCH_OPTIONS_INIT;
    o.n_threads = (int32_t)g->threads;
    sae_status s = SAE_OK;
    int64_t n_ids = 0;
    int32_t *ids = NULL;
    switch (sp->kind) {
    case SPEC_SPLICE:
        s = sae_patch_create_splice(out, dict, 0, &o);
        break;
    case SPEC_STEER:
    case SPEC_CLAMP:
        s = sp->kind == SPEC_STEER
                ? sae_patch_create_steer(out, dict, (int32_t)sp->feature, (float)sp->value,
                                         g->normalize, &o)
                : sae_patch_create_clamp(out, dict, (int32_t)sp->feature, (float)sp->value, &o);
        break;
    case SPEC_ABLATE:
        if (!(ids = cli_alloc_array(parse_ids(sp->arg, NULL), sizeof *ids)))
            return cli_fail(NULL, "out of memory");
        n_ids = parse_ids(sp->arg, ids);
        s = sae_patch_create_ablate_zero(out, dict, ids, n_ids, &o);
        free(ids);
        break;
    }
    char label[128];
    snprintf(label, sizeof label, "%s%s%s", sp->option, sp->arg[0] ? " " : "", sp->arg);
    return s == SAE_OK ? 0 : cli_fail_status(label, s);
}

/* ---- generation --------------------------------------------------------------------------- */

/* Print the text of tokens[1..n) as run.c does, except that it keeps bytes >= 0x80 (so UTF-8
 * comes out whole) and drops only lone control bytes other than whitespace. */
static void print_text(const llama2_tokenizer *t, const int32_t *tokens, int64_t n)
{
    for (int64_t i = 1; i < n; i++) {
        const char *p = llama2_tokenizer_piece(t, tokens[i - 1], tokens[i]);
        unsigned char c = (unsigned char)p[0];
        if (p[0] && p[1] == '\0' && (c < 0x20 || c == 0x7f) && !strchr("\t\n\v\f\r", p[0]))
            continue;
        fputs(p, stdout);
    }
    putchar('\n');
}

/* Generate once (hook may be NULL) and print the text; 0 or the exit code of the failure. */
static int generate_once(const generate_args *g, llama2_state *st, const llama2_tokenizer *tok,
                         const int32_t *prompt, int64_t n_prompt, const hook_patches *hook,
                         int32_t *tokens)
{
    const llama2_sampling sampling = {(float)g->temperature, (float)g->top_p,
                                      (uint64_t)g->seed};
    int64_t n = 0;
    sae_clear_error();
    sae_status s = llama2_generate(st, prompt, n_prompt, g->steps, &sampling,
                                   hook ? apply_at_hook : NULL, (void *)hook, tokens, &n);
    if (s != SAE_OK) /* a patch failed (libsae's message) or the model did (llama2's) */
        return cli_fail(NULL, "generation failed: %s", sae_last_error()[0] ? sae_last_error()
                                                                           : llama2_last_error());
    print_text(tok, tokens, n);
    return 0;
}

/* Load the SAE, check it against the model, find the hook and make the patches into h. */
static int setup_patches(const generate_args *g, llama2_model *m, sae_dict **dict,
                         hook_patches *h)
{
    int rc = cli_load_dict(g->dict, g->k, dict, NULL);
    if (rc)
        return rc;
    sae_host host;
    llama2_model_host(m, &host);
    if (sae_dict_d_in(*dict) != host.d_model)
        return cli_fail(g->dict, "the SAE's d_in is %lld but the model's dim is %lld",
                        (long long)sae_dict_d_in(*dict), (long long)host.d_model);
    const char *hook = g->hook;
    if (!hook) {
        sae_dict_config c = SAE_DICT_CONFIG_INIT;
        sae_status s = sae_dict_get_config(*dict, &c);
        if (s != SAE_OK)
            return cli_fail_status(g->dict, s);
        if (!c.hook_name || !c.hook_name[0])
            return cli_fail(g->dict, "the SAE does not name its hook point: give --hook");
        hook = c.hook_name;
    }
    sae_status s = sae_host_find_hook(&h->hook_id, &host, hook);
    if (s != SAE_OK)
        return cli_fail_status(g->hook ? "--hook" : g->dict, s);
    h->hook_name = host.hook_names[h->hook_id]; /* borrowed from the model */
    if (!(h->patches = calloc((size_t)g->n_specs, sizeof *h->patches)))
        return cli_fail(NULL, "out of memory");
    for (int i = 0; i < g->n_specs; i++, h->n++)
        if ((rc = make_patch(g, &g->specs[i], *dict, &h->patches[i])))
            return rc;
    return 0;
}

/* Tokenize the prompt (BOS first) into a new array. */
static int encode_prompt(const generate_args *g, const llama2_tokenizer *tok, int32_t **prompt,
                         int64_t *n_prompt)
{
    const char *text = g->prompt ? g->prompt : "";
    const int64_t cap = (int64_t)strlen(text) + 3;
    if (!(*prompt = cli_alloc_array(cap, sizeof **prompt)))
        return cli_fail(NULL, "out of memory");
    if (llama2_tokenizer_encode(tok, text, 1, 0, *prompt, cap, n_prompt) != SAE_OK)
        return cli_fail(g->tokenizer, "%s", llama2_last_error());
    if (*n_prompt > g->steps)
        return cli_fail(NULL, "the prompt is %lld tokens long (with BOS), more than --steps %lld",
                        (long long)*n_prompt, (long long)g->steps);
    return 0;
}

int cmd_generate(int argc, char **argv)
{
    generate_args g = {.steps = 256, .seed = 1, .top_p = 0.9};
    if (!(g.specs = calloc((size_t)argc, sizeof *g.specs)))
        return cli_fail(NULL, "out of memory");
    int rc = parse_args(argc, argv, &g);
    llama2_model *m = NULL;
    llama2_tokenizer *tok = NULL;
    llama2_state *st = NULL;
    sae_dict *dict = NULL;
    hook_patches h = {-1, NULL, NULL, 0};
    int32_t *prompt = NULL, *tokens = NULL;
    int64_t n_prompt = 0;
    if (rc)
        goto done;
    if (llama2_model_load(&m, g.model, NULL) != SAE_OK) {
        rc = cli_fail(NULL, "%s", llama2_last_error());
        goto done;
    }
    const llama2_config *c = llama2_model_config(m);
    if (g.steps > c->seq_len) {
        rc = cli_fail(g.model, "--steps %lld is more than the model's context length %d",
                      (long long)g.steps, c->seq_len);
        goto done;
    }
    if (llama2_tokenizer_load(&tok, g.tokenizer, c->vocab_size, NULL) != SAE_OK) {
        rc = cli_fail(NULL, "%s", llama2_last_error());
        goto done;
    }
    if ((rc = encode_prompt(&g, tok, &prompt, &n_prompt)) ||
        (g.dict && (rc = setup_patches(&g, m, &dict, &h))))
        goto done;
    if (llama2_state_create(&st, m) != SAE_OK ||
        !(tokens = cli_alloc_array(g.steps + 1, sizeof *tokens))) {
        rc = cli_fail(NULL, "out of memory");
        goto done;
    }
    if (g.compare) {
        printf("[without patches]\n");
        if ((rc = generate_once(&g, st, tok, prompt, n_prompt, NULL, tokens)))
            goto done;
        printf("[with patches at %s]\n", h.hook_name);
    }
    rc = generate_once(&g, st, tok, prompt, n_prompt, g.dict ? &h : NULL, tokens);
    if (!rc && fflush(stdout) != 0)
        rc = cli_fail(NULL, "cannot write to standard output");
done:
    for (int32_t i = 0; i < h.n; i++)
        sae_patch_free(h.patches[i]);
    free(h.patches);
    free(tokens);
    free(prompt);
    sae_dict_free(dict);
    llama2_state_free(st);
    llama2_tokenizer_free(tok);
    llama2_model_free(m);
    free(g.specs);
    return rc < 0 ? 0 : rc;
}
