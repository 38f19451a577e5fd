/* evaluate_task_report.c: the output of `sae evaluate-task`: the side-by-side table of the
 * three axes with the top features per value (text), or one JSON object. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "evaluate_task.h"

static void print_row(const et_state *st, const char *name, size_t offset, bool sae_only,
                      bool sup_only)
{
    printf("  %-30s", name);
    for (int c = 0; c < st->n_cols; c++) {
        const column *col = &st->cols[c];
        double v = *(const double *)((const char *)col + offset);
        if ((sae_only && col->sup) || (sup_only && col->dict) || isnan(v))
            printf(" %16s", "-");
        else
            printf(" %16.3f", v);
    }
    printf("\n");
}

/* A row of counts of the SAE columns ("-" for the supervised ones). */
static void print_count_row(const et_state *st, const char *name, size_t offset)
{
    printf("  %-30s", name);
    for (int c = 0; c < st->n_cols; c++) {
        const column *col = &st->cols[c];
        if (col->sup)
            printf(" %16s", "-");
        else
            printf(" %16lld", (long long)*(const int64_t *)((const char *)col + offset));
    }
    printf("\n");
}

#define ROW(name, field, sae_only, sup_only) \
    print_row(st, name, offsetof(column, field), sae_only, sup_only)

void et_print_text(const et_state *st)
{
    const cli_task *t = &st->task;
    printf("task %s: %lld prompts, %lld pairs, node %s at the last position\n",
           t->name ? t->name : st->args.task, (long long)t->n_prompts, (long long)t->n_pairs,
           st->host.hook_names[st->hook_id]);
    printf("clean: mean logit difference %.3f, accuracy %.3f; node mean-ablated: mean logit "
           "difference %.3f\n", st->clean_mean, st->clean_acc,
           st->n_cols ? st->cols[0].approx.ablated : NAN);
    for (int32_t a = 0; a < t->n_attrs; a++) {
        printf("clean accuracy by %s:", t->attr_names[a]);
        for (int32_t v = 0; v < t->n_values[a]; v++)
            printf(" %s %.2f", t->value_names[a][v], st->value_acc[st->code_first[a] + v]);
        printf("\n");
    }
    if (t->n_pairs)
        printf("pairs: the base run prefers the counterfactual answer %.3f unedited, %.3f with "
               "the counterfactual node patched in\n", st->success_none, st->success_patch);
    printf("\n  %-30s", "");
    for (int c = 0; c < st->n_cols; c++)
        printf(" %16s", st->cols[c].label);
    printf("\napproximation\n");
    ROW("FVU at the node", fvu, false, false);
    ROW("m(a_hat)", approx.sufficient, false, false);
    ROW("sufficiency (1 best)", approx.sufficiency, false, false);
    ROW("m(a - a_hat + E[a_hat])", approx.necessary, false, false);
    ROW("necessity (0 best)", approx.necessity, false, false);
    printf("control (--exchange %lld)\n", (long long)st->args.exchange);
    ROW("edit success (sup. / SAE F1)", success[0], false, false);
    ROW("edit success (SAE greedy)", success[1], true, false);
    ROW("weight removed (sup. / F1)", removed[0], false, false);
    ROW("weight removed (greedy)", removed[1], true, false);
    printf("interpretability (F1 >= %.2f covers a value; over-split: a binary value with >= %d "
           "features of precision >= %.2f, recall >= %.2f)\n", st->args.high_f1, SPLIT_MIN,
           SPLIT_PRECISION, SPLIT_RECALL);
    printf("  %-30s", "values covered");
    for (int c = 0; c < st->n_cols; c++)
        if (st->cols[c].sup)
            printf(" %16s", "-");
        else
            printf(" %9lld of %3lld", (long long)st->cols[c].covered, (long long)st->n_codes);
    printf("\n");
    print_count_row(st, "occluded values", offsetof(column, occluded));
    print_count_row(st, "over-split binary values", offsetof(column, oversplit));
    const int64_t top = st->args.top;
    for (int c = 0; c < st->n_cols; c++) {
        const column *col = &st->cols[c];
        if (!col->dict)
            continue;
        int64_t k = top < sae_dict_d_sae(col->dict) ? top : sae_dict_d_sae(col->dict);
        printf("\n%s: top features by F1 per value (feature:F1), precise features, flags\n",
               col->label);
        for (int32_t a = 0; a < t->n_attrs; a++)
            for (int32_t v = 0; v < t->n_values[a]; v++) {
                int64_t code = st->code_first[a] + v;
                printf("  %s=%-12s", t->attr_names[a], t->value_names[a][v]);
                for (int64_t m = 0; m < k; m++)
                    printf(" %5d:%.2f", col->top_ids[code * k + m], col->top_f1[code * k + m]);
                printf("  precise %d%s%s\n", col->n_precise[code],
                       col->flags[code] & VALUE_OCCLUDED ? "  OCCLUDED" : "",
                       col->flags[code] & VALUE_OVERSPLIT ? "  OVER-SPLIT" : "");
            }
    }
}

static cJSON *json_approx(const column *col)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "fvu", col->fvu);
    cJSON_AddNumberToObject(o, "clean", col->approx.clean);
    cJSON_AddNumberToObject(o, "mean_ablated", col->approx.ablated);
    cJSON_AddNumberToObject(o, "sufficient", col->approx.sufficient);
    cJSON_AddNumberToObject(o, "necessary", col->approx.necessary);
    cJSON_AddNumberToObject(o, "sufficiency", col->approx.sufficiency);
    cJSON_AddNumberToObject(o, "necessity", col->approx.necessity);
    return o;
}

/* NaN has no JSON form: null. */
static void add_number(cJSON *o, const char *key, double v)
{
    if (isnan(v))
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, v);
}

static cJSON *json_column(const et_state *st, const column *col)
{
    const cli_task *t = &st->task;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "label", col->label);
    cJSON_AddStringToObject(o, "kind", col->sup ? "supervised" : "sae");
    if (col->dict)
        cJSON_AddNumberToObject(o, "d_sae", (double)sae_dict_d_sae(col->dict));
    cJSON_AddItemToObject(o, "approximation", json_approx(col));
    cJSON *ctl = cJSON_AddObjectToObject(o, "control");
    if (col->sup) {
        add_number(ctl, "success", col->success[0]);
        add_number(ctl, "weight_removed", col->removed[0]);
    } else {
        add_number(ctl, "success_f1", col->success[0]);
        add_number(ctl, "weight_removed_f1", col->removed[0]);
        add_number(ctl, "success_greedy", col->success[1]);
        add_number(ctl, "weight_removed_greedy", col->removed[1]);
    }
    if (!col->dict)
        return o;
    cJSON *in = cJSON_AddObjectToObject(o, "interpretability");
    cJSON_AddNumberToObject(in, "covered", (double)col->covered);
    cJSON_AddNumberToObject(in, "occluded", (double)col->occluded);
    cJSON_AddNumberToObject(in, "over_split", (double)col->oversplit);
    cJSON *vals = cJSON_AddArrayToObject(in, "values");
    int64_t k = st->args.top < sae_dict_d_sae(col->dict) ? st->args.top : sae_dict_d_sae(col->dict);
    for (int32_t a = 0; a < t->n_attrs; a++)
        for (int32_t v = 0; v < t->n_values[a]; v++) {
            int64_t code = st->code_first[a] + v;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "attribute", t->attr_names[a]);
            cJSON_AddStringToObject(e, "value", t->value_names[a][v]);
            cJSON *ids = cJSON_AddArrayToObject(e, "top_features");
            cJSON *f1s = cJSON_AddArrayToObject(e, "top_f1");
            for (int64_t m = 0; m < k; m++) {
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(col->top_ids[code * k + m]));
                cJSON_AddItemToArray(f1s, cJSON_CreateNumber(col->top_f1[code * k + m]));
            }
            cJSON_AddNumberToObject(e, "precise_features", col->n_precise[code]);
            cJSON_AddBoolToObject(e, "occluded", (col->flags[code] & VALUE_OCCLUDED) != 0);
            cJSON_AddBoolToObject(e, "over_split", (col->flags[code] & VALUE_OVERSPLIT) != 0);
            cJSON_AddItemToArray(vals, e);
        }
    return o;
}

int et_print_json(const et_state *st)
{
    const cli_task *t = &st->task;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "task", t->name ? t->name : st->args.task);
    cJSON_AddStringToObject(root, "hook", st->host.hook_names[st->hook_id]);
    cJSON_AddNumberToObject(root, "prompts", (double)t->n_prompts);
    cJSON_AddNumberToObject(root, "pairs", (double)t->n_pairs);
    cJSON_AddNumberToObject(root, "exchange", (double)st->args.exchange);
    cJSON *clean = cJSON_AddObjectToObject(root, "clean");
    cJSON_AddNumberToObject(clean, "mean_logit_diff", st->clean_mean);
    cJSON_AddNumberToObject(clean, "accuracy", st->clean_acc);
    add_number(clean, "mean_ablated_logit_diff", st->n_cols ? st->cols[0].approx.ablated : NAN);
    cJSON *by = cJSON_AddObjectToObject(clean, "accuracy_by_value");
    for (int32_t a = 0; a < t->n_attrs; a++) {
        cJSON *attr = cJSON_AddObjectToObject(by, t->attr_names[a]);
        for (int32_t v = 0; v < t->n_values[a]; v++)
            add_number(attr, t->value_names[a][v], st->value_acc[st->code_first[a] + v]);
    }
    if (t->n_pairs) {
        cJSON *base = cJSON_AddObjectToObject(root, "pair_baselines");
        cJSON_AddNumberToObject(base, "success_unedited", st->success_none);
        cJSON_AddNumberToObject(base, "success_activation_patch", st->success_patch);
    }
    cJSON *cols = cJSON_AddArrayToObject(root, "dictionaries");
    for (int c = 0; c < st->n_cols; c++)
        cJSON_AddItemToArray(cols, json_column(st, &st->cols[c]));
    return cli_print_json(root);
}
