/* task.c: reading task files (task.h). Every problem names the JSON path of the bad item
 * ("prompts[3].labels.name"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "task.h"

static char *dup_str(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    return d ? strcpy(d, s) : NULL;
}

/* The whole file as a NUL-terminated string, or NULL. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1))) {
        if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        } else {
            buf[size] = '\0';
        }
    }
    fclose(f);
    return buf;
}

/* Index of `s` among names[0..n), or -1. */
static int32_t find_name(char *const *names, int32_t n, const char *s)
{
    for (int32_t i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return i;
    return -1;
}

/* The one token `text` encodes to (without BOS: the dummy-prefix space makes "she" " she"). */
static int one_token(const llama2_tokenizer *tok, const char *text, int32_t *out)
{
    int64_t cap = (int64_t)strlen(text) + 3, n = 0;
    int32_t *ids = cli_alloc_array(cap, sizeof(int32_t));
    int rc = ids && llama2_tokenizer_encode(tok, text, 0, 0, ids, cap, &n) == SAE_OK && n == 1
                 ? 0 : -1;
    if (rc == 0)
        *out = ids[0];
    free(ids);
    return rc;
}

static int load_attributes(cli_task *t, const cJSON *attrs, const char *path)
{
    if (!cJSON_IsArray(attrs) || cJSON_GetArraySize(attrs) < 1)
        return cli_fail(path, "\"attributes\" must be a non-empty array");
    t->n_attrs = cJSON_GetArraySize(attrs);
    t->attr_names = calloc((size_t)t->n_attrs, sizeof(char *));
    t->n_values = calloc((size_t)t->n_attrs, sizeof(int32_t));
    t->value_names = calloc((size_t)t->n_attrs, sizeof(char **));
    t->in_dict = calloc((size_t)t->n_attrs, 1);
    if (!t->attr_names || !t->n_values || !t->value_names || !t->in_dict)
        return cli_fail(path, "out of memory");
    for (int32_t a = 0; a < t->n_attrs; a++) {
        const cJSON *at = cJSON_GetArrayItem(attrs, a);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(at, "name");
        const cJSON *values = cJSON_GetObjectItemCaseSensitive(at, "values");
        const cJSON *dict = cJSON_GetObjectItemCaseSensitive(at, "dictionary");
        if (!cJSON_IsString(name) || !cJSON_IsArray(values) || cJSON_GetArraySize(values) < 1 ||
            (dict && !cJSON_IsBool(dict)))
            return cli_fail(path, "attributes[%d] needs a string \"name\", a non-empty array "
                            "\"values\" and optionally a boolean \"dictionary\"", (int)a);
        if (find_name(t->attr_names, a, name->valuestring) >= 0)
            return cli_fail(path, "attributes[%d]: attribute \"%s\" appears twice", (int)a,
                            name->valuestring);
        t->attr_names[a] = dup_str(name->valuestring);
        t->in_dict[a] = !dict || cJSON_IsTrue(dict);
        t->n_values[a] = cJSON_GetArraySize(values);
        t->value_names[a] = calloc((size_t)t->n_values[a], sizeof(char *));
        if (!t->attr_names[a] || !t->value_names[a])
            return cli_fail(path, "out of memory");
        for (int32_t v = 0; v < t->n_values[a]; v++) {
            const cJSON *val = cJSON_GetArrayItem(values, v);
            if (!cJSON_IsString(val))
                return cli_fail(path, "attributes[%d].values[%d] is not a string", (int)a,
                                (int)v);
            if (find_name(t->value_names[a], v, val->valuestring) >= 0)
                return cli_fail(path, "attributes[%d]: value \"%s\" appears twice", (int)a,
                                val->valuestring);
            if (!(t->value_names[a][v] = dup_str(val->valuestring)))
                return cli_fail(path, "out of memory");
        }
    }
    return 0;
}

static int load_prompts(cli_task *t, const cJSON *prompts, bool bos, const char *path,
                        const llama2_tokenizer *tok)
{
    if (!cJSON_IsArray(prompts) || cJSON_GetArraySize(prompts) < 1)
        return cli_fail(path, "\"prompts\" must be a non-empty array");
    t->n_prompts = cJSON_GetArraySize(prompts);
    int64_t cap = 0, n = t->n_prompts;
    for (const cJSON *p = prompts->child; p; p = p->next) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        cap += cJSON_IsString(text) ? (int64_t)strlen(text->valuestring) + 3 : 0;
    }
    t->tokens = cli_alloc_array(cap, sizeof(int32_t));
    t->offsets = cli_alloc_array(n + 1, sizeof(int64_t));
    t->answer = cli_alloc_array(n, sizeof(int32_t));
    t->wrong = cli_alloc_array(n, sizeof(int32_t));
    t->labels = cli_alloc_array(n * t->n_attrs, sizeof(int32_t));
    if (!t->tokens || !t->offsets || !t->answer || !t->wrong || !t->labels)
        return cli_fail(path, "out of memory");
    t->offsets[0] = 0;
    int64_t i = 0;
    for (const cJSON *p = prompts->child; p; p = p->next, i++) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        const cJSON *answer = cJSON_GetObjectItemCaseSensitive(p, "answer");
        const cJSON *wrong = cJSON_GetObjectItemCaseSensitive(p, "wrong");
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(p, "labels");
        if (!cJSON_IsString(text) || !cJSON_IsString(answer) || !cJSON_IsString(wrong) ||
            !cJSON_IsObject(labels))
            return cli_fail(path, "prompts[%lld] needs strings \"text\", \"answer\", \"wrong\" "
                            "and an object \"labels\"", (long long)i);
        int64_t len = 0;
        if (llama2_tokenizer_encode(tok, text->valuestring, bos, 0, t->tokens + t->offsets[i],
                                    cap - t->offsets[i], &len) != SAE_OK || len < 1)
            return cli_fail(path, "prompts[%lld].text cannot be tokenized: %s", (long long)i,
                            llama2_last_error());
        t->offsets[i + 1] = t->offsets[i] + len;
        if (one_token(tok, answer->valuestring, &t->answer[i]) ||
            one_token(tok, wrong->valuestring, &t->wrong[i]))
            return cli_fail(path, "prompts[%lld]: \"answer\" (\"%s\") and \"wrong\" (\"%s\") must "
                            "each be one token", (long long)i, answer->valuestring,
                            wrong->valuestring);
        if (t->answer[i] == t->wrong[i])
            return cli_fail(path, "prompts[%lld]: \"answer\" and \"wrong\" are the same token",
                            (long long)i);
        for (int32_t a = 0; a < t->n_attrs; a++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(labels, t->attr_names[a]);
            int32_t id = cJSON_IsString(v) ? find_name(t->value_names[a], t->n_values[a],
                                                       v->valuestring) : -1;
            if (id < 0)
                return cli_fail(path, "prompts[%lld].labels.%s is missing or not one of the "
                                "attribute's values", (long long)i, t->attr_names[a]);
            t->labels[i * t->n_attrs + a] = id;
        }
    }
    return 0;
}

/* A prompt index: an integer in [0, n), or -1 (1.5 is no index, nor is 1e300). */
static int64_t prompt_index(const cJSON *v, int64_t n)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble >= (double)n ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    return (int64_t)v->valuedouble;
}

static int load_pairs(cli_task *t, const cJSON *pairs, const char *path)
{
    if (!pairs)
        return 0;
    if (!cJSON_IsArray(pairs))
        return cli_fail(path, "\"pairs\" must be an array");
    int64_t n = t->n_pairs = cJSON_GetArraySize(pairs);
    t->pair_base = cli_alloc_array(n, sizeof(int64_t));
    t->pair_cf = cli_alloc_array(n, sizeof(int64_t));
    t->pair_attr = cli_alloc_array(n, sizeof(int32_t));
    if (!t->pair_base || !t->pair_cf || !t->pair_attr)
        return cli_fail(path, "out of memory");
    int64_t k = 0;
    for (const cJSON *p = pairs->child; p; p = p->next, k++) {
        const cJSON *base = cJSON_GetObjectItemCaseSensitive(p, "base");
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(p, "counterfactual");
        const cJSON *attr = cJSON_GetObjectItemCaseSensitive(p, "attribute");
        int32_t a = cJSON_IsString(attr) ? find_name(t->attr_names, t->n_attrs,
                                                     attr->valuestring) : -1;
        const int64_t b = prompt_index(base, t->n_prompts), c = prompt_index(cf, t->n_prompts);
        if (a < 0 || b < 0 || c < 0)
            return cli_fail(path, "pairs[%lld] needs prompt indices \"base\" and "
                            "\"counterfactual\" and the name of an \"attribute\"", (long long)k);
        if (t->labels[b * t->n_attrs + a] == t->labels[c * t->n_attrs + a] ||
            t->answer[b] == t->answer[c])
            return cli_fail(path, "pairs[%lld]: the counterfactual must differ from the base in "
                            "\"%s\" and in its answer", (long long)k, t->attr_names[a]);
        t->pair_base[k] = b;
        t->pair_cf[k] = c;
        t->pair_attr[k] = a;
    }
    return 0;
}

int cli_task_load(cli_task *t, const char *path, const llama2_tokenizer *tok)
{
    memset(t, 0, sizeof *t);
    char *text = read_text(path);
    if (!text)
        return cli_fail(path, "cannot read the task file");
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return cli_fail(path, "not a JSON object");
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *hook = cJSON_GetObjectItemCaseSensitive(root, "hook");
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(root, "bos");
    int rc = 0;
    if ((name && !cJSON_IsString(name)) || (hook && !cJSON_IsString(hook)) ||
        (bos && !cJSON_IsBool(bos)))
        rc = cli_fail(path, "\"name\" and \"hook\" must be strings, \"bos\" a boolean");
    if (!rc && ((name && !(t->name = dup_str(name->valuestring))) ||
                (hook && !(t->hook = dup_str(hook->valuestring)))))
        rc = cli_fail(path, "out of memory");
    if (!rc)
        rc = load_attributes(t, cJSON_GetObjectItemCaseSensitive(root, "attributes"), path);
    if (!rc)
        rc = load_prompts(t, cJSON_GetObjectItemCaseSensitive(root, "prompts"),
                          !bos || cJSON_IsTrue(bos), path, tok);
    if (!rc)
        rc = load_pairs(t, cJSON_GetObjectItemCaseSensitive(root, "pairs"), path);
    cJSON_Delete(root);
    return rc;
}

void cli_task_free(cli_task *t)
{
    for (int32_t a = 0; t->attr_names && t->value_names && a < t->n_attrs; a++) {
        free(t->attr_names[a]);
        for (int32_t v = 0; t->value_names[a] && v < t->n_values[a]; v++)
            free(t->value_names[a][v]);
        free(t->value_names[a]);
    }
    void *owned[] = {t->name, t->hook, t->attr_names, t->n_values, t->value_names, t->in_dict,
                     t->tokens, t->offsets, t->answer, t->wrong, t->labels, t->pair_base,
                     t->pair_cf, t->pair_attr};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        free(owned[i]);
    memset(t, 0, sizeof *t);
}
