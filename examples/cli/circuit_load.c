/* circuit_load.c: loading for `sae circuit` (circuit.h) — the llama2.c model, tokenizer and
 * per-hook dictionaries; prompt-pair files; the clean model's accuracy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "circuit.h"

#define MAX_TOKENS 4096 /* per prompt: room for tokenizing a line */

int circuit_inputs_init(circuit_inputs *in, int argc)
{
    memset(in, 0, sizeof *in);
    if (!(in->dicts = calloc((size_t)argc + 1, sizeof *in->dicts)))
        return cli_fail(NULL, "out of memory");
    return 0;
}

void circuit_inputs_free(circuit_inputs *in)
{
    free(in->dicts);
    memset(in, 0, sizeof *in);
}

bool circuit_inputs_take(circuit_inputs *in, cli_args *a, const char *arg, bool is_opt,
                         const char *usage, const char *cmd, int *rc)
{
    *rc = 0;
    if (!is_opt) {
        if (!in->in_dicts)
            return false;
        in->dicts[in->n_dicts++] = arg;
        return true;
    }
    in->in_dicts = false;
    const char **slot = NULL;
    if (cli_opt_is(a, arg, "--model"))
        slot = &in->model;
    else if (cli_opt_is(a, arg, "--tokenizer"))
        slot = &in->tokenizer;
    else if (cli_opt_is(a, arg, "--pairs"))
        slot = &in->pairs;
    else if (cli_opt_is(a, arg, "--dicts"))
        slot = &in->dicts[in->n_dicts++], in->in_dicts = true;
    else
        return false;
    if (!(*slot = cli_opt_value(a)))
        *rc = cli_usage_error(usage, "%s: %s needs a value", cmd, arg);
    return true;
}

int circuit_inputs_check(const circuit_inputs *in, const char *usage, const char *cmd)
{
    if (!in->model || !in->tokenizer || !in->pairs || in->n_dicts == 0)
        return cli_usage_error(usage, "%s: --model, --tokenizer, --dicts and --pairs are "
                               "required", cmd);
    return 0;
}

void circuit_model_free(circuit_model *m)
{
    for (int32_t k = 0; m->dicts && k < m->n_hooks; k++)
        sae_dict_free(m->dicts[k]);
    free(m->dicts);
    free(m->hooks);
    free(m->paths);
    llama2_tokenizer_free(m->tok);
    llama2_model_free(m->model);
    memset(m, 0, sizeof *m);
}

/* The hook id of spec "HOOK=PATH" (*path set past '='), or of PATH's own hook_name metadata
 * once loaded (hook -1 here). */
static int32_t spec_hook(const sae_host *host, const char *spec, const char **path)
{
    const char *eq = strchr(spec, '=');
    *path = spec;
    if (!eq)
        return -1;
    char name[128];
    size_t n = (size_t)(eq - spec);
    if (n >= sizeof name)
        return -1;
    memcpy(name, spec, n);
    name[n] = '\0';
    int32_t id = -1;
    if (sae_host_find_hook(&id, host, name) != SAE_OK)
        return -1;
    *path = eq + 1;
    return id;
}

int circuit_model_load(circuit_model *m, const char *model, const char *tokenizer,
                       const char *const *specs, int n_specs)
{
    memset(m, 0, sizeof *m);
    if (llama2_model_load(&m->model, model, NULL) != SAE_OK)
        return cli_fail(NULL, "%s", llama2_last_error());
    llama2_model_host(m->model, &m->host);
    if (llama2_tokenizer_load(&m->tok, tokenizer, llama2_model_config(m->model)->vocab_size,
                              NULL) != SAE_OK)
        return cli_fail(NULL, "%s", llama2_last_error());
    m->hooks = calloc((size_t)n_specs, sizeof *m->hooks);
    m->dicts = calloc((size_t)n_specs, sizeof *m->dicts);
    m->paths = calloc((size_t)n_specs, sizeof *m->paths);
    if (!m->hooks || !m->dicts || !m->paths)
        return cli_fail(NULL, "out of memory");
    for (int i = 0; i < n_specs; i++) {
        const char *path, *eq = strchr(specs[i], '=');
        int32_t id = spec_hook(&m->host, specs[i], &path);
        if (id < 0 && eq && access(specs[i], F_OK) != 0)
            return cli_fail(specs[i], "'%.*s' is not a hook point of the model (resid_pre.L, "
                            "attn_out.L, mlp_out.L, resid_post.L); give HOOK=PATH",
                            (int)(eq - specs[i]), specs[i]);
        sae_dict *d = NULL;
        int rc = cli_load_dict(path, 0, &d, NULL);
        if (rc)
            return rc;
        m->dicts[m->n_hooks] = d, m->paths[m->n_hooks] = path;
        m->n_hooks++;
        if (id < 0) {
            sae_dict_config c = SAE_DICT_CONFIG_INIT;
            sae_dict_get_config(d, &c);
            if (!c.hook_name || sae_host_find_hook(&id, &m->host, c.hook_name) != SAE_OK)
                return cli_fail(path, "its hook point (\"%s\") is not one of the model's "
                                "(resid_pre.L, attn_out.L, mlp_out.L, resid_post.L): give it "
                                "as HOOK=PATH", c.hook_name ? c.hook_name : "none");
        }
        for (int32_t k = 0; k + 1 < m->n_hooks; k++)
            if (m->hooks[k] == id)
                return cli_fail(path, "a second dictionary for %s", m->host.hook_names[id]);
        m->hooks[m->n_hooks - 1] = id;
    }
    /* Insertion sort by hook id: the order of the computation. */
    for (int32_t i = 1; i < m->n_hooks; i++)
        for (int32_t k = i; k > 0 && m->hooks[k - 1] > m->hooks[k]; k--) {
            int32_t h = m->hooks[k];
            sae_dict *d = m->dicts[k];
            const char *p = m->paths[k];
            m->hooks[k] = m->hooks[k - 1], m->dicts[k] = m->dicts[k - 1];
            m->paths[k] = m->paths[k - 1];
            m->hooks[k - 1] = h, m->dicts[k - 1] = d, m->paths[k - 1] = p;
        }
    return 0;
}

int circuit_answer_token(const llama2_tokenizer *tok, const char *prefix, const char *answer,
                         int32_t *token, int64_t *prefix_tokens)
{
    size_t lp = strlen(prefix), la = strlen(answer);
    char *both = malloc(lp + la + 1);
    int32_t *a = malloc(MAX_TOKENS * sizeof *a), *b = malloc(MAX_TOKENS * sizeof *b);
    int64_t na = 0, nb = 0;
    int rc = -1;
    if (both && a && b) {
        memcpy(both, prefix, lp);
        memcpy(both + lp, answer, la + 1);
        if (llama2_tokenizer_encode(tok, prefix, 1, 0, a, MAX_TOKENS, &na) == SAE_OK &&
            llama2_tokenizer_encode(tok, both, 1, 0, b, MAX_TOKENS, &nb) == SAE_OK &&
            nb == na + 1 && !memcmp(a, b, (size_t)na * sizeof *a)) {
            *token = b[na];
            rc = 0;
        }
    }
    if (prefix_tokens)
        *prefix_tokens = na;
    free(both);
    free(a);
    free(b);
    return rc;
}

void circuit_pairs_free(circuit_pairs *p)
{
    free(p->offsets);
    free(p->clean);
    free(p->patch);
    free(p->clean_answers);
    free(p->patch_answers);
    memset(p, 0, sizeof *p);
}

/* Append to a growing int32 array. */
static int push(int32_t **a, int64_t *n, int64_t *cap, const int32_t *v, int64_t count)
{
    if (*n + count > *cap) {
        int64_t c = *cap ? *cap : 256;
        while (c < *n + count)
            c *= 2;
        int32_t *q = realloc(*a, (size_t)c * sizeof *q);
        if (!q)
            return -1;
        *a = q, *cap = c;
    }
    memcpy(*a + *n, v, (size_t)count * sizeof *v);
    *n += count;
    return 0;
}

/* The string field `key` of a line's object, or NULL. */
static const char *field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One line: tokens and answers appended. 0, or the exit code (error printed). */
static int read_pair(const cJSON *o, const char *where, const llama2_tokenizer *tok,
                     circuit_pairs *p, int64_t *cap, int first, int *paired, int *two_answers)
{
    const char *cp = field(o, "clean_prefix"), *ca = field(o, "clean_answer");
    const char *pp = field(o, "patch_prefix"), *pa = field(o, "patch_answer");
    if (!cp || !ca)
        return cli_fail(where, "needs string fields clean_prefix and clean_answer");
    if (first)
        *paired = pp != NULL, *two_answers = pa != NULL;
    if ((pp != NULL) != *paired || (pa != NULL) != *two_answers)
        return cli_fail(where, "patch_prefix and patch_answer must be on every line or none");
    int32_t a_clean = 0, a_patch = 0;
    int64_t nc = 0, np = 0;
    if (circuit_answer_token(tok, cp, ca, &a_clean, &nc))
        return cli_fail(where, "clean_answer \"%s\" is not one token after the prompt", ca);
    if (pa && circuit_answer_token(tok, pp ? pp : cp, pa, &a_patch, &np))
        return cli_fail(where, "patch_answer \"%s\" is not one token after the prompt", pa);
    int32_t *t = malloc(MAX_TOKENS * sizeof *t);
    int rc = 0;
    int64_t n = 0, cap_c = *cap, cap_p = *cap, n_before = p->offsets[p->pairs.n_pairs];
    int64_t len_c = n_before, len_p = n_before;
    if (!t || llama2_tokenizer_encode(tok, cp, 1, 0, t, MAX_TOKENS, &n) != SAE_OK ||
        push(&p->clean, &len_c, &cap_c, t, n))
        rc = cli_fail(where, "cannot tokenize clean_prefix");
    if (!rc && pp) {
        if (llama2_tokenizer_encode(tok, pp, 1, 0, t, MAX_TOKENS, &np) != SAE_OK)
            rc = cli_fail(where, "cannot tokenize patch_prefix");
        else if (np != n)
            rc = cli_fail(where, "the clean prefix has %lld tokens, the patch prefix %lld: "
                          "they must have the same", (long long)n, (long long)np);
        else if (push(&p->patch, &len_p, &cap_p, t, np))
            rc = cli_fail(where, "out of memory");
    }
    free(t);
    if (rc)
        return rc;
    *cap = cap_c > cap_p ? cap_c : cap_p;
    int64_t i = p->pairs.n_pairs;
    p->clean_answers[i] = a_clean, p->patch_answers[i] = a_patch;
    p->offsets[i + 1] = len_c;
    p->pairs.n_pairs++;
    return 0;
}

int circuit_pairs_load(circuit_pairs *p, const char *path, const llama2_tokenizer *tok)
{
    memset(p, 0, sizeof *p);
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_fail(path, "cannot open");
    char *line = NULL, where[4200];
    size_t size = 0;
    int64_t cap = 0, cap_pairs = 0, lineno = 0;
    int rc = 0, paired = 0, two = 0;
    p->pairs = (sae_prompt_pairs)SAE_PROMPT_PAIRS_INIT;
    while (!rc && getline(&line, &size, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        if (p->pairs.n_pairs + 2 > cap_pairs) {
            cap_pairs = cap_pairs ? 2 * cap_pairs : 64;
            int64_t *o = realloc(p->offsets, (size_t)(cap_pairs + 1) * sizeof *o);
            int32_t *a = realloc(p->clean_answers, (size_t)cap_pairs * sizeof *a);
            if (o)
                p->offsets = o;
            if (a)
                p->clean_answers = a;
            int32_t *b = realloc(p->patch_answers, (size_t)cap_pairs * sizeof *b);
            if (b)
                p->patch_answers = b;
            if (!o || !a || !b) {
                rc = cli_fail(path, "out of memory");
                break;
            }
            if (p->pairs.n_pairs == 0)
                p->offsets[0] = 0;
        }
        snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
        cJSON *o = cJSON_Parse(line);
        if (!cJSON_IsObject(o))
            rc = cli_fail(where, "not a JSON object");
        else
            rc = read_pair(o, where, tok, p, &cap, p->pairs.n_pairs == 0, &paired, &two);
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    if (!rc && p->pairs.n_pairs == 0)
        rc = cli_fail(path, "no prompt pairs");
    if (rc) {
        circuit_pairs_free(p);
        return rc;
    }
    p->pairs.offsets = p->offsets, p->pairs.clean_tokens = p->clean;
    p->pairs.patch_tokens = paired ? p->patch : NULL;
    p->pairs.clean_answers = p->clean_answers;
    p->pairs.patch_answers = two ? p->patch_answers : NULL;
    return 0;
}

/* Whether answer `a` beats answer `b` at the last position of tokens. */
static int wins(const circuit_model *m, const int32_t *tokens, int64_t n, int32_t a, int32_t b,
                float *logits, int *ok)
{
    if (sae_host_forward(&m->host, tokens, 1, n, logits, NULL, NULL) != SAE_OK) {
        *ok = 0;
        return 0;
    }
    const float *z = logits + (n - 1) * m->host.vocab_size;
    return z[a] > z[b];
}

int circuit_accuracy(const circuit_model *m, const circuit_pairs *p, double *clean_acc,
                     double *patch_acc)
{
    const sae_prompt_pairs *q = &p->pairs;
    int64_t longest = 0, right_c = 0, right_p = 0;
    for (int64_t i = 0; i < q->n_pairs; i++)
        longest = q->offsets[i + 1] - q->offsets[i] > longest ? q->offsets[i + 1] - q->offsets[i]
                                                              : longest;
    float *logits = cli_alloc_array(longest * m->host.vocab_size, sizeof(float));
    if (!logits)
        return cli_fail(NULL, "out of memory");
    int ok = 1;
    *clean_acc = *patch_acc = NAN;
    for (int64_t i = 0; q->patch_answers && i < q->n_pairs && ok; i++) {
        const int64_t n = q->offsets[i + 1] - q->offsets[i];
        right_c += wins(m, q->clean_tokens + q->offsets[i], n, q->clean_answers[i],
                        q->patch_answers[i], logits, &ok);
        if (q->patch_tokens)
            right_p += wins(m, q->patch_tokens + q->offsets[i], n, q->patch_answers[i],
                            q->clean_answers[i], logits, &ok);
    }
    free(logits);
    if (!ok)
        return cli_fail(NULL, "%s", sae_last_error());
    if (q->patch_answers) {
        *clean_acc = (double)right_c / (double)q->n_pairs;
        if (q->patch_tokens)
            *patch_acc = (double)right_p / (double)q->n_pairs;
    }
    return 0;
}

int circuit_parse_sizes(const char *text, int64_t **out, int64_t *n)
{
    *out = NULL, *n = 0;
    if (!text || !*text)
        return -1;
    int64_t count = 1;
    for (const char *c = text; *c; c++)
        count += *c == ',';
    int64_t *v = malloc((size_t)count * sizeof *v);
    char *copy = strdup(text);
    int rc = v && copy ? 0 : -1;
    char *save = NULL;
    int64_t i = 0;
    for (char *tokn = copy ? strtok_r(copy, ",", &save) : NULL; tokn && !rc;
         tokn = strtok_r(NULL, ",", &save))
        if (!cli_parse_i64(tokn, 0, INT64_MAX, &v[i++]))
            rc = -1;
    free(copy);
    if (rc || i != count) {
        free(v);
        return -1;
    }
    *out = v, *n = count;
    return 0;
}
