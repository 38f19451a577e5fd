/* cmd_evaluate_task.c: `sae evaluate-task --model M --tokenizer T --task FILE [--dict DIR]...
 * [--json]`: judge SAEs on a labelled task against supervised dictionaries (mean codes and
 * least squares) on the three axes of Makelov, Lange & Nanda (docs/evaluation.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate_task.h"

static const char usage[] =
    "usage: sae evaluate-task --model M --tokenizer T --task FILE [--dict DIR]... [--json]\n"
    "                         [options]\n"
    "\n"
    "Run the prompts of a task file (docs/evaluation.md) through a llama2.c model and judge\n"
    "each SAE given with --dict against two supervised dictionaries built from the prompts'\n"
    "attribute labels at the node (the hook point's last position):\n"
    "  approximation  sufficiency |m(a_hat) - m(mean)| / |m(a) - m(mean)| (1 best) and\n"
    "                 necessity with a - a_hat + E[a_hat] (0 best), m the mean logit\n"
    "                 difference between each prompt's answer and wrong token\n"
    "  control        for each counterfactual pair, edit the base run's node towards the\n"
    "                 counterfactual: supervised a - u_v + u_v'; SAE by exchanging features\n"
    "                 chosen by F1 or greedily; success = the edited run prefers the\n"
    "                 counterfactual's answer; weight removed = the edited features' share\n"
    "  interpretability  F1 of every feature's firing against every attribute value: values\n"
    "                 with a feature of high F1, occlusion and over-splitting\n"
    "\n"
    "options:\n"
    "  --model M           llama2.c checkpoint (required)\n"
    "  --tokenizer T       its tokenizer (required)\n"
    "  --task FILE         task file (required)\n"
    "  --dict DIR          an SAE at the task's hook point (any format `sae info` reads);\n"
    "                      repeat for up to 8, shown side by side\n"
    "  --hook NAME         hook point (default: the task file's \"hook\")\n"
    "  --exchange N        features exchanged by the SAE edits (default 2)\n"
    "  --high-f1 X         F1 from which a feature covers a value (default 0.8; a feature\n"
    "                      firing on every prompt has F1 2p/(1+p) for a value of frequency p,\n"
    "                      0.67 for a balanced binary attribute)\n"
    "  --top K             top features listed per value (default 3)\n"
    "  --json              print one JSON object instead of text\n"
    "  --help              print this help\n";
static int parse_args(int argc, char **argv, et_args *e)
{
    memset(e, 0, sizeof *e);
    e->exchange = 2;
    e->top = 3;
    e->high_f1 = 0.8;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        const char **slot = NULL;
        if (!is_opt)
            return cli_usage_error(usage, "evaluate-task: unexpected argument '%s'", arg);
        if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_opt_is(&a, arg, "--json")) {
            e->json = true;
            continue;
        } else if (cli_opt_is(&a, arg, "--model")) {
            slot = &e->model;
        } else if (cli_opt_is(&a, arg, "--tokenizer")) {
            slot = &e->tokenizer;
        } else if (cli_opt_is(&a, arg, "--task")) {
            slot = &e->task;
        } else if (cli_opt_is(&a, arg, "--hook")) {
            slot = &e->hook;
        } else if (cli_opt_is(&a, arg, "--dict")) {
            if (e->n_dicts == MAX_DICTS)
                return cli_usage_error(usage, "evaluate-task: at most %d --dict", MAX_DICTS);
            slot = &e->dicts[e->n_dicts++];
        }
        const char *v = cli_opt_value(&a);
        if (!v)
            return cli_usage_error(usage, "evaluate-task: %s needs a value", arg);
        if (slot) {
            *slot = v;
        } else if (cli_opt_is(&a, arg, "--exchange")) {
            if (!cli_parse_i64(v, 0, 1 << 20, &e->exchange))
                return cli_usage_error(usage, "evaluate-task: bad --exchange '%s'", v);
        } else if (cli_opt_is(&a, arg, "--top")) {
            if (!cli_parse_i64(v, 1, 1 << 20, &e->top))
                return cli_usage_error(usage, "evaluate-task: bad --top '%s'", v);
        } else if (cli_opt_is(&a, arg, "--high-f1")) {
            if (!cli_parse_f64(v, &e->high_f1) || e->high_f1 <= 0 || e->high_f1 > 1)
                return cli_usage_error(usage, "evaluate-task: --high-f1 must be in (0, 1]");
        } else {
            return cli_usage_error(usage, "evaluate-task: unknown option '%s'", arg);
        }
    }
    if (!e->model || !e->tokenizer || !e->task)
        return cli_usage_error(usage, "evaluate-task: --model, --tokenizer and --task are "
                               "required");
    return 0;
}

/* Fraction of v[0..n) above zero. */
static double frac_positive(const float *v, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += v[i] > 0.0f;
    return n ? (double)k / (double)n : 0.0;
}

static double mean_f(const float *v, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : 0.0;
}

/* Model, tokenizer, task, hook, and the derived label tables. */
static int setup(et_state *st)
{
    const et_args *e = &st->args;
    sae_status s;
    if ((s = llama2_model_load(&st->model, e->model, NULL)))
        return cli_fail(e->model, "%s", llama2_last_error());
    const llama2_config *c = llama2_model_config(st->model);
    if ((s = llama2_tokenizer_load(&st->tok, e->tokenizer, c->vocab_size, NULL)))
        return cli_fail(e->tokenizer, "%s", llama2_last_error());
    int rc = cli_task_load(&st->task, e->task, st->tok);
    if (rc)
        return rc;
    llama2_model_host(st->model, &st->host);
    const char *hook = e->hook ? e->hook : st->task.hook;
    if (!hook)
        return cli_fail(e->task, "no hook point: give --hook or \"hook\" in the task file");
    if ((s = sae_host_find_hook(&st->hook_id, &st->host, hook)))
        return cli_fail_status(e->model, s);
    const cli_task *t = &st->task;
    st->d = st->host.d_model;
    st->dict_attr = cli_alloc_array(t->n_attrs, sizeof(int32_t));
    st->code_first = cli_alloc_array(t->n_attrs, sizeof(int64_t));
    if (!st->dict_attr || !st->code_first)
        return cli_fail(NULL, "out of memory");
    for (int32_t a = 0; a < t->n_attrs; a++) {
        st->code_first[a] = st->n_codes;
        st->n_codes += t->n_values[a];
        st->dict_attr[a] = t->in_dict[a] ? (int32_t)st->n_dict_attrs++ : -1;
    }
    if (st->n_dict_attrs == 0)
        return cli_fail(e->task, "no attribute has \"dictionary\": true");
    for (int64_t k = 0; k < t->n_pairs; k++)
        if (st->dict_attr[t->pair_attr[k]] < 0)
            return cli_fail(e->task, "pairs[%lld] edits \"%s\", which is not a dictionary "
                            "attribute", (long long)k, t->attr_names[t->pair_attr[k]]);
    st->dict_labels = cli_alloc_array(t->n_prompts * st->n_dict_attrs, sizeof(int32_t));
    if (!st->dict_labels)
        return cli_fail(NULL, "out of memory");
    for (int64_t i = 0; i < t->n_prompts; i++)
        for (int32_t a = 0; a < t->n_attrs; a++)
            if (st->dict_attr[a] >= 0)
                st->dict_labels[i * st->n_dict_attrs + st->dict_attr[a]] =
                    t->labels[i * t->n_attrs + a];
    st->prompts = (sae_prompts)SAE_PROMPTS_INIT;
    st->prompts.hook_id = st->hook_id;
    st->prompts.n_prompts = t->n_prompts;
    st->prompts.tokens = t->tokens;
    st->prompts.offsets = t->offsets;
    st->prompts.answer = t->answer;
    st->prompts.wrong = t->wrong;
    return 0;
}

/* Each pair runs its base prompt and scores the counterfactual's answer against the base's. */
static int make_pair_prompts(et_state *st)
{
    const cli_task *t = &st->task;
    int64_t n = t->n_pairs, total = 0;
    for (int64_t k = 0; k < n; k++)
        total += t->offsets[t->pair_base[k] + 1] - t->offsets[t->pair_base[k]];
    st->pair_tokens = cli_alloc_array(total, sizeof(int32_t));
    st->pair_offsets = cli_alloc_array(n + 1, sizeof(int64_t));
    st->pair_answer = cli_alloc_array(n, sizeof(int32_t));
    st->pair_wrong = cli_alloc_array(n, sizeof(int32_t));
    if (!st->pair_tokens || !st->pair_offsets || !st->pair_answer || !st->pair_wrong)
        return cli_fail(NULL, "out of memory");
    st->pair_offsets[0] = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t b = t->pair_base[k], len = t->offsets[b + 1] - t->offsets[b];
        memcpy(st->pair_tokens + st->pair_offsets[k], t->tokens + t->offsets[b],
               (size_t)len * sizeof(int32_t));
        st->pair_offsets[k + 1] = st->pair_offsets[k] + len;
        st->pair_answer[k] = t->answer[t->pair_cf[k]];
        st->pair_wrong[k] = t->answer[b];
    }
    st->pair_prompts = st->prompts;
    st->pair_prompts.n_prompts = n;
    st->pair_prompts.tokens = st->pair_tokens;
    st->pair_prompts.offsets = st->pair_offsets;
    st->pair_prompts.answer = st->pair_answer;
    st->pair_prompts.wrong = st->pair_wrong;
    return 0;
}

/* Success rate of the pairs' base runs with the node replaced by `rows` (NULL: clean). */
static int pair_success(et_state *st, const float *rows, double *out)
{
    sae_status s = sae_prompts_run(st->diffs, NULL, 0, &st->host, &st->pair_prompts, rows, st->d);
    if (s)
        return cli_fail_status(st->args.model, s);
    *out = frac_positive(st->diffs, st->task.n_pairs);
    return 0;
}

/* Clean runs: the node activations, accuracy overall and per value, pair baselines. */
static int clean_runs(et_state *st)
{
    const cli_task *t = &st->task;
    const int64_t n = t->n_prompts, d = st->d, np = t->n_pairs;
    st->clean_diffs = cli_alloc_array(n, sizeof(float));
    st->acts = cli_alloc_array(n * d, sizeof(float));
    st->diffs = cli_alloc_array(n > np ? n : np, sizeof(float));
    st->edited = cli_alloc_array(np, d * (int64_t)sizeof(float));
    st->value_acc = cli_alloc_array(st->n_codes, sizeof(float));
    st->value_sup_success = cli_alloc_array(st->n_codes, sizeof(float));
    if (!st->clean_diffs || !st->acts || !st->diffs || !st->edited || !st->value_acc ||
        !st->value_sup_success)
        return cli_fail(NULL, "out of memory");
    sae_status s = sae_prompts_run(st->clean_diffs, st->acts, d, &st->host, &st->prompts, NULL, 0);
    if (s)
        return cli_fail_status(st->args.model, s);
    st->clean_mean = mean_f(st->clean_diffs, n);
    st->clean_acc = frac_positive(st->clean_diffs, n);
    for (int32_t a = 0; a < t->n_attrs; a++)
        for (int32_t v = 0; v < t->n_values[a]; v++) {
            int64_t k = 0, ok = 0;
            for (int64_t i = 0; i < n; i++)
                if (t->labels[i * t->n_attrs + a] == v) {
                    k++;
                    ok += st->clean_diffs[i] > 0.0f;
                }
            st->value_acc[st->code_first[a] + v] = k ? (float)ok / (float)k : NAN;
        }
    if (np == 0)
        return 0;
    int rc = pair_success(st, NULL, &st->success_none);
    for (int64_t k = 0; !rc && k < np; k++)
        memcpy(st->edited + k * d, st->acts + t->pair_cf[k] * d, (size_t)d * sizeof(float));
    return rc ? rc : pair_success(st, st->edited, &st->success_patch);
}

/* FVU of the reconstructions at the node: Σ||a − â||² / Σ||a − mean a||². */
static double node_fvu(const et_state *st, const float *recon)
{
    const int64_t n = st->task.n_prompts, d = st->d;
    double err = 0.0, var = 0.0;
    for (int64_t j = 0; j < d; j++) {
        double mean = 0.0;
        for (int64_t i = 0; i < n; i++)
            mean += st->acts[i * d + j] / (double)n;
        for (int64_t i = 0; i < n; i++) {
            double r = st->acts[i * d + j] - recon[i * d + j], c = st->acts[i * d + j] - mean;
            err += r * r;
            var += c * c;
        }
    }
    return var > 0.0 ? err / var : NAN;
}

static int approximation(et_state *st, column *col)
{
    col->fvu = node_fvu(st, col->recon);
    col->approx = (sae_approximation)SAE_APPROXIMATION_INIT;
    sae_status s = sae_prompts_approximation(&col->approx, &st->host, &st->prompts, st->acts,
                                             st->d, col->recon, st->d, NULL);
    return s ? cli_fail_status(st->args.task, s) : 0;
}

static int supervised_column(et_state *st, column *col, int32_t method)
{
    const cli_task *t = &st->task;
    const int64_t n = t->n_prompts, d = st->d, np = t->n_pairs, na = st->n_dict_attrs;
    col->success[0] = col->success[1] = col->removed[0] = col->removed[1] = NAN;
    snprintf(col->label, sizeof col->label, "supervised %s",
             method == SAE_SUPERVISED_MEAN ? "mean" : "lstsq");
    int32_t *nv = cli_alloc_array(na, sizeof(int32_t));
    float *w = cli_alloc_array(n * na, sizeof(float));
    col->recon = cli_alloc_array(n * d, sizeof(float));
    if (!nv || !w || !col->recon) {
        free(nv);
        free(w);
        return cli_fail(NULL, "out of memory");
    }
    for (int32_t a = 0; a < t->n_attrs; a++)
        if (st->dict_attr[a] >= 0)
            nv[st->dict_attr[a]] = t->n_values[a];
    sae_supervised_options o = SAE_SUPERVISED_OPTIONS_INIT;
    o.method = method;
    sae_status s = sae_supervised_create(&col->sup, st->acts, n, d, d, st->dict_labels, na,
                                         (int32_t)na, nv, &o);
    if (!s)
        s = sae_supervised_reconstruct(col->sup, col->recon, d, st->dict_labels, na, n);
    if (!s)
        s = sae_supervised_weights(col->sup, w, na, st->dict_labels, na, n);
    double removed = 0.0;
    for (int64_t k = 0; !s && k < np; k++) {
        int64_t b = t->pair_base[k], c = t->pair_cf[k];
        int32_t a = t->pair_attr[k], da = st->dict_attr[a];
        int32_t from = t->labels[b * t->n_attrs + a], to = t->labels[c * t->n_attrs + a];
        memcpy(st->edited + k * d, st->acts + b * d, (size_t)d * sizeof(float));
        s = sae_supervised_edit(col->sup, st->edited + k * d, d, 1, da, &from, &to);
        removed += w[b * na + da] / (double)np;
    }
    free(nv);
    free(w);
    if (s)
        return cli_fail_status(st->args.task, s);
    if (np)
        col->removed[0] = removed;
    int rc = np ? pair_success(st, st->edited, &col->success[0]) : 0;
    /* Per value: success of the edits from or to it (for the occlusion report), mean codes. */
    if (!rc && method == SAE_SUPERVISED_MEAN)
        for (int64_t c = 0; c < st->n_codes; c++) {
            int64_t k_all = 0, ok = 0;
            for (int64_t k = 0; k < np; k++) {
                int32_t a = t->pair_attr[k];
                int64_t cb = st->code_first[a] + t->labels[t->pair_base[k] * t->n_attrs + a];
                int64_t cc = st->code_first[a] + t->labels[t->pair_cf[k] * t->n_attrs + a];
                if (cb == c || cc == c) {
                    k_all++;
                    ok += st->diffs[k] > 0.0f;
                }
            }
            st->value_sup_success[c] = k_all ? (float)ok / (float)k_all : NAN;
        }
    return rc ? rc : approximation(st, col);
}

/* F1 tables, top features, and the coverage / occlusion / over-splitting counts. */
static int interpretability(et_state *st, column *col, const float *codes, int64_t F)
{
    const cli_task *t = &st->task;
    const int64_t nc = st->n_codes, top = st->args.top < F ? st->args.top : F;
    col->precision = cli_alloc_array(nc * F, sizeof(float));
    col->recall = cli_alloc_array(nc * F, sizeof(float));
    col->f1 = cli_alloc_array(nc * F, sizeof(float));
    col->top_ids = cli_alloc_array(nc * top, sizeof(int32_t));
    col->top_f1 = cli_alloc_array(nc * top, sizeof(float));
    col->n_precise = cli_alloc_array(nc, sizeof(int32_t));
    col->flags = cli_alloc_array(nc, 1);
    if (!col->precision || !col->recall || !col->f1 || !col->top_ids || !col->top_f1 ||
        !col->n_precise || !col->flags)
        return cli_fail(NULL, "out of memory");
    sae_status s = sae_feature_f1(col->precision, col->recall, col->f1, F, codes, F,
                                  t->n_prompts, F, t->labels, t->n_attrs, t->n_attrs,
                                  t->n_values, NULL);
    if (!s)
        s = sae_feature_f1_top(col->top_ids, col->top_f1, top, col->f1, F, nc, F, top);
    if (s)
        return cli_fail_status(st->args.task, s);
    for (int32_t a = 0; a < t->n_attrs; a++)
        for (int32_t v = 0; v < t->n_values[a]; v++) {
            int64_t c = st->code_first[a] + v;
            int32_t precise = 0;
            for (int64_t j = 0; j < F; j++)
                precise += col->precision[c * F + j] >= SPLIT_PRECISION &&
                           col->recall[c * F + j] >= SPLIT_RECALL;
            col->n_precise[c] = precise;
            bool covered = col->top_f1[c * top] >= st->args.high_f1;
            col->flags[c] = (covered ? VALUE_COVERED : 0) |
                            (!covered && st->value_sup_success[c] >= 0.5f ? VALUE_OCCLUDED : 0) |
                            (t->n_values[a] == 2 && precise >= SPLIT_MIN ? VALUE_OVERSPLIT : 0);
            col->covered += covered;
            col->occluded += (col->flags[c] & VALUE_OCCLUDED) != 0;
            col->oversplit += (col->flags[c] & VALUE_OVERSPLIT) != 0;
        }
    return 0;
}

static int sae_column(et_state *st, column *col, const char *path)
{
    const cli_task *t = &st->task;
    const int64_t n = t->n_prompts, d = st->d, np = t->n_pairs;
    if (cli_load_dict(path, 0, &col->dict, NULL))
        return CLI_EXIT_FAILURE;
    const int64_t F = sae_dict_d_sae(col->dict);
    snprintf(col->label, sizeof col->label, "SAE %lld", (long long)F);
    col->success[0] = col->success[1] = col->removed[0] = col->removed[1] = NAN; /* no pairs */
    if (sae_dict_d_in(col->dict) != d)
        return cli_fail(path, "the SAE has d_in %lld, the model's hook points have %lld",
                        (long long)sae_dict_d_in(col->dict), (long long)d);
    col->recon = cli_alloc_array(n * d, sizeof(float));
    float *codes = cli_alloc_array(n * F, sizeof(float));
    float *f1_from = cli_alloc_array(np, F * (int64_t)sizeof(float));
    float *f1_to = cli_alloc_array(np, F * (int64_t)sizeof(float));
    float *removed = cli_alloc_array(np, sizeof(float));
    float *a = cli_alloc_array(np, d * (int64_t)sizeof(float));
    float *a_cf = cli_alloc_array(np, d * (int64_t)sizeof(float));
    sae_encoder *enc = NULL;
    int rc = 0;
    sae_status s = SAE_OK;
    if (!col->recon || !codes || !f1_from || !f1_to || !removed || !a || !a_cf) {
        rc = cli_fail(NULL, "out of memory");
        goto done;
    }
    if ((s = sae_encoder_create(&enc, col->dict, NULL)) ||
        (s = sae_encoder_encode(enc, n, st->acts, d, codes, F, NULL, 0)) ||
        (s = sae_encoder_reconstruct(enc, n, st->acts, d, col->recon, d, NULL, 0))) {
        rc = cli_fail_status(path, s);
        goto done;
    }
    if ((rc = interpretability(st, col, codes, F)) || (rc = approximation(st, col)))
        goto done;
    for (int64_t k = 0; k < np; k++) {
        int32_t at = t->pair_attr[k];
        int64_t cb = st->code_first[at] + t->labels[t->pair_base[k] * t->n_attrs + at];
        int64_t cc = st->code_first[at] + t->labels[t->pair_cf[k] * t->n_attrs + at];
        memcpy(f1_from + k * F, col->f1 + cb * F, (size_t)F * sizeof(float));
        memcpy(f1_to + k * F, col->f1 + cc * F, (size_t)F * sizeof(float));
        memcpy(a + k * d, st->acts + t->pair_base[k] * d, (size_t)d * sizeof(float));
        memcpy(a_cf + k * d, st->acts + t->pair_cf[k] * d, (size_t)d * sizeof(float));
    }
    for (int m = 0; m < 2 && np > 0 && !rc; m++) {
        s = sae_feature_exchange(st->edited, d, removed, col->dict, a, d, a_cf, d, np,
                                 m == 0 ? SAE_EXCHANGE_F1 : SAE_EXCHANGE_GREEDY,
                                 (int32_t)st->args.exchange, f1_from, f1_to, F);
        if (s) {
            rc = cli_fail_status(path, s);
            break;
        }
        col->removed[m] = mean_f(removed, np);
        rc = pair_success(st, st->edited, &col->success[m]);
    }
done:
    sae_encoder_free(enc);
    free(codes);
    free(f1_from);
    free(f1_to);
    free(removed);
    free(a);
    free(a_cf);
    return rc;
}

static void free_state(et_state *st)
{
    for (int c = 0; c < st->n_cols; c++) {
        column *col = &st->cols[c];
        sae_supervised_free(col->sup);
        sae_dict_free(col->dict);
        void *owned[] = {col->recon, col->precision, col->recall, col->f1, col->top_ids,
                         col->top_f1, col->n_precise, col->flags};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
            free(owned[i]);
    }
    void *owned[] = {st->dict_attr, st->dict_labels, st->code_first, st->pair_tokens,
                     st->pair_offsets, st->pair_answer, st->pair_wrong, st->clean_diffs,
                     st->acts, st->edited, st->diffs, st->value_acc, st->value_sup_success};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        free(owned[i]);
    cli_task_free(&st->task);
    llama2_tokenizer_free(st->tok);
    llama2_model_free(st->model);
}

int cmd_evaluate_task(int argc, char **argv)
{
    et_state *st = calloc(1, sizeof *st);
    if (!st)
        return cli_fail(NULL, "out of memory");
    int rc = parse_args(argc, argv, &st->args);
    if (rc) {
        free(st);
        return rc < 0 ? 0 : rc;
    }
    if (!(rc = setup(st)) && !(rc = make_pair_prompts(st)) && !(rc = clean_runs(st)))
        for (int32_t m = 0; m < 2 && !rc; m++)
            rc = supervised_column(st, &st->cols[st->n_cols++],
                                   m == 0 ? SAE_SUPERVISED_MEAN : SAE_SUPERVISED_LSTSQ);
    for (int i = 0; i < st->args.n_dicts && !rc; i++)
        rc = sae_column(st, &st->cols[st->n_cols++], st->args.dicts[i]);
    if (!rc) {
        if (st->args.json)
            rc = et_print_json(st);
        else
            et_print_text(st);
    }
    free_state(st);
    free(st);
    return rc;
}
