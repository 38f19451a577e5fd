/* circuit_pairs.c: `sae circuit pairs`: prompt pairs from a template file (docs/circuits.md,
 * examples/circuits/templates/), kept only when the model's tokenizer gives the clean and patch
 * prompts the same length and each answer is one token.
 *
 * A template file is a JSON object: "templates" (strings with {slot} fields), "shared" (slot ->
 * list of values, one drawn per pair for both prompts) and "classes" (>= 2 objects with
 * "answer" and "slots": slot -> list of values). Pair i takes class i mod C for its clean
 * prompt and another class, drawn, for its patch prompt; each class slot is drawn from the
 * prompt's class. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "circuit.h"

static const char usage[] =
    "usage: sae circuit pairs --template FILE --tokenizer T --n N --out FILE [--seed S]\n"
    "\n"
    "Generate N prompt pairs (JSON Lines for `sae circuit --pairs`) from a template file:\n"
    "pairs whose clean and patch prompts tokenize to different lengths, whose answers are not\n"
    "single tokens, or that repeat an earlier clean prompt are skipped.\n"
    "\n"
    "options:\n"
    "  --template FILE     the template (examples/circuits/templates/*.json)\n"
    "  --tokenizer T       the model's tokenizer (tok512.bin)\n"
    "  --vocab V           its vocabulary size (default 512)\n"
    "  --n N               pairs to write (required)\n"
    "  --seed S            seed of the draws (default 0)\n"
    "  --out FILE          output (required)\n"
    "  --help              print this help\n";

#define MAX_TEXT 1024

/* Draws per pair before a template is given up. A fuzz build gives up sooner: the same code
 * runs, with 20 times fewer tokenizations on a template that cannot give its pairs
 * (docs/hardening.md). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define DRAWS_PER_PAIR 10
#else
#define DRAWS_PER_PAIR 200
#endif

/* A random element of a JSON array of strings. */
static const char *draw(const cJSON *list, sae_rng *rng)
{
    int n = cJSON_GetArraySize(list);
    const cJSON *v = cJSON_GetArrayItem(list, (int)sae_rng_below(rng, (uint64_t)n));
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Fill `tmpl` into out: shared slots from `shared_pick` (values drawn once per pair, looked up
 * by slot), class slots from class `cls`. -1 on an unknown slot or overflow. */
static int fill(char *out, size_t size, const char *tmpl, const cJSON *shared_pick,
                const cJSON *cls_slots, const cJSON *cls_pick)
{
    size_t used = 0;
    for (const char *p = tmpl; *p;) {
        const char *open = strchr(p, '{');
        size_t lit = open ? (size_t)(open - p) : strlen(p);
        if (used + lit >= size)
            return -1;
        memcpy(out + used, p, lit);
        used += lit;
        if (!open)
            break;
        const char *close = strchr(open, '}');
        if (!close || close - open - 1 >= 64)
            return -1;
        char name[64];
        memcpy(name, open + 1, (size_t)(close - open - 1));
        name[close - open - 1] = '\0';
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(shared_pick, name);
        if (!v && cJSON_GetObjectItemCaseSensitive(cls_slots, name))
            v = cJSON_GetObjectItemCaseSensitive(cls_pick, name);
        if (!cJSON_IsString(v) || used + strlen(v->valuestring) >= size)
            return -1;
        memcpy(out + used, v->valuestring, strlen(v->valuestring));
        used += strlen(v->valuestring);
        p = close + 1;
    }
    out[used] = '\0';
    return 0;
}

/* One value per slot of `slots` (slot -> list) into a new object. */
static cJSON *pick(const cJSON *slots, sae_rng *rng)
{
    cJSON *o = cJSON_CreateObject();
    for (const cJSON *s = slots ? slots->child : NULL; o && s; s = s->next) {
        const char *v = cJSON_IsArray(s) && cJSON_GetArraySize(s) > 0 ? draw(s, rng) : NULL;
        if (!v || !cJSON_AddStringToObject(o, s->string, v)) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

static void write_line(FILE *f, const char *key, const char *value, const char *end)
{
    cJSON *s = cJSON_CreateString(value);
    char *text = s ? cJSON_PrintUnformatted(s) : NULL;
    fprintf(f, "\"%s\": %s%s", key, text ? text : "\"\"", end);
    free(text);
    cJSON_Delete(s);
}

/* Check the template's shape. */
static int check_template(const cJSON *t, const char *path)
{
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(t, "templates");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(t, "classes");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shared");
    if (!cJSON_IsArray(tm) || cJSON_GetArraySize(tm) < 1 || !cJSON_IsArray(cl) ||
        cJSON_GetArraySize(cl) < 2 || (sh && !cJSON_IsObject(sh)))
        return cli_fail(path, "needs \"templates\" (a non-empty list), \"classes\" (two or more) "
                        "and optionally \"shared\" (an object)");
    for (const cJSON *s = tm->child; s; s = s->next)
        if (!cJSON_IsString(s))
            return cli_fail(path, "templates must be strings");
    for (const cJSON *c = cl->child; c; c = c->next)
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "answer")) ||
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c, "slots")))
            return cli_fail(path, "each class needs \"answer\" (a string) and \"slots\"");
    return 0;
}

static int generate(const cJSON *t, const char *path, const llama2_tokenizer *tok, int64_t n,
                    uint64_t seed, FILE *out, int64_t *skipped)
{
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(t, "templates");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(t, "classes");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shared");
    const int n_classes = cJSON_GetArraySize(cl);
    sae_rng rng;
    sae_rng_init(&rng, seed, 0);
    char **seen = calloc((size_t)n, sizeof *seen);
    char clean[MAX_TEXT], patch[MAX_TEXT];
    int64_t made = 0, tries = 0;
    int rc = seen ? 0 : cli_fail(NULL, "out of memory");
    while (!rc && made < n) {
        if (++tries > DRAWS_PER_PAIR * n) {
            rc = cli_fail(path, "only %lld of %lld pairs after %lld draws: the template has "
                          "too few distinct pairs of equal length", (long long)made,
                          (long long)n, (long long)(tries - 1));
            break;
        }
        const int c = (int)(made % n_classes);
        int other = (int)sae_rng_below(&rng, (uint64_t)(n_classes - 1));
        other += other >= c;
        const cJSON *cc = cJSON_GetArrayItem(cl, c), *pc = cJSON_GetArrayItem(cl, other);
        const char *tmpl = draw(tm, &rng);
        cJSON *sp = pick(sh, &rng);
        cJSON *cp = pick(cJSON_GetObjectItemCaseSensitive(cc, "slots"), &rng);
        cJSON *pp = pick(cJSON_GetObjectItemCaseSensitive(pc, "slots"), &rng);
        const char *ca = cJSON_GetObjectItemCaseSensitive(cc, "answer")->valuestring;
        const char *pa = cJSON_GetObjectItemCaseSensitive(pc, "answer")->valuestring;
        int32_t ta = 0, tb = 0;
        int64_t lc = 0, lp = 0;
        if (!sp || !cp || !pp ||
            fill(clean, sizeof clean, tmpl, sp, cJSON_GetObjectItemCaseSensitive(cc, "slots"),
                 cp) ||
            fill(patch, sizeof patch, tmpl, sp, cJSON_GetObjectItemCaseSensitive(pc, "slots"),
                 pp))
            rc = cli_fail(path, "template \"%s\" has a slot that no list fills", tmpl);
        else if (circuit_answer_token(tok, clean, ca, &ta, &lc) ||
                 circuit_answer_token(tok, patch, pa, &tb, &lp) || lc != lp)
            ++*skipped;
        else {
            int dup = 0;
            for (int64_t i = 0; i < made && !dup; i++)
                dup = !strcmp(seen[i], clean);
            if (dup)
                ++*skipped;
            else if (!(seen[made] = strdup(clean)))
                rc = cli_fail(NULL, "out of memory");
            else {
                fputc('{', out);
                write_line(out, "clean_prefix", clean, ", ");
                write_line(out, "patch_prefix", patch, ", ");
                write_line(out, "clean_answer", ca, ", ");
                write_line(out, "patch_answer", pa, "}\n");
                made++;
            }
        }
        cJSON_Delete(sp);
        cJSON_Delete(cp);
        cJSON_Delete(pp);
    }
    for (int64_t i = 0; seen && i < made; i++)
        free(seen[i]);
    free(seen);
    return rc;
}

int cmd_circuit_pairs(int argc, char **argv)
{
    const char *tmpl = NULL, *tokenizer = NULL, *out = NULL;
    int64_t n = 0, seed = 0, vocab = 512;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        const char **slot = NULL;
        if (!is_opt)
            return cli_usage_error(usage, "circuit pairs: unexpected argument '%s'", arg);
        if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_opt_is(&a, arg, "--template")) {
            slot = &tmpl;
        } else if (cli_opt_is(&a, arg, "--tokenizer")) {
            slot = &tokenizer;
        } else if (cli_opt_is(&a, arg, "--out")) {
            slot = &out;
        } else if (cli_opt_is(&a, arg, "--n")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 1 << 24, &n))
                return cli_usage_error(usage, "circuit pairs: --n needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--seed")) {
            if (!cli_parse_i64(cli_opt_value(&a), 0, INT64_MAX, &seed))
                return cli_usage_error(usage, "circuit pairs: --seed needs an integer >= 0");
        } else if (cli_opt_is(&a, arg, "--vocab")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT32_MAX, &vocab))
                return cli_usage_error(usage, "circuit pairs: --vocab needs a positive integer");
        } else {
            return cli_usage_error(usage, "circuit pairs: unknown option '%s'", arg);
        }
        if (slot && !(*slot = cli_opt_value(&a)))
            return cli_usage_error(usage, "circuit pairs: %s needs a value", arg);
    }
    if (!tmpl || !tokenizer || !out || n == 0)
        return cli_usage_error(usage, "circuit pairs: --template, --tokenizer, --n and --out are "
                               "required");
    llama2_tokenizer *tok = NULL;
    if (llama2_tokenizer_load(&tok, tokenizer, (int32_t)vocab, NULL) != SAE_OK)
        return cli_fail(NULL, "%s", llama2_last_error());
    FILE *f = fopen(tmpl, "rb");
    char *text = NULL;
    long size = 0;
    int rc = 0;
    if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
        !(text = calloc((size_t)size + 1, 1)) || fread(text, 1, (size_t)size, f) != (size_t)size)
        rc = cli_fail(tmpl, "cannot read");
    if (f)
        fclose(f);
    cJSON *t = rc ? NULL : cJSON_Parse(text);
    free(text);
    if (!rc && !cJSON_IsObject(t))
        rc = cli_fail(tmpl, "not a JSON object");
    if (!rc)
        rc = check_template(t, tmpl);
    FILE *o = rc ? NULL : fopen(out, "w");
    if (!rc && !o)
        rc = cli_fail(out, "cannot create");
    int64_t skipped = 0;
    if (!rc)
        rc = generate(t, tmpl, tok, n, (uint64_t)seed, o, &skipped);
    if (o && fclose(o) != 0 && !rc)
        rc = cli_fail(out, "write error");
    if (!rc)
        printf("wrote %lld pairs to %s (%lld draws skipped: unequal lengths, answers of several "
               "tokens, repeats)\n", (long long)n, out, (long long)skipped);
    cJSON_Delete(t);
    llama2_tokenizer_free(tok);
    return rc;
}
