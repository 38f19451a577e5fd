/* fuzz_task: task files of `sae evaluate-task` (examples/cli/task.c, cli_task_load).
 *
 * Input: the task file (JSON), tokenized with the small tokenizer of fuzz_cli.h. A task that
 * loads is checked against what task.h and docs/evaluation.md promise the evaluation: every
 * prompt at least one token, every id a token, one-token answers that differ from the wrong
 * ones, labels among their attribute's values, pairs of existing prompts that differ in their
 * attribute and answer. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_cli.h"
#include "fuzz_util.h"
#include "task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_task(const cli_task *t)
{
    if (t->n_attrs < 1 || t->n_prompts < 1 || t->n_pairs < 0 || t->offsets[0] != 0)
        fuzz_cli_abort("task: %d attributes, %lld prompts, %lld pairs", (int)t->n_attrs,
                       (long long)t->n_prompts, (long long)t->n_pairs);
    for (int32_t a = 0; a < t->n_attrs; a++) {
        if (!t->attr_names[a] || t->n_values[a] < 1)
            fuzz_cli_abort("task: attribute %d has no name or no values", (int)a);
        for (int32_t v = 0; v < t->n_values[a]; v++)
            if (!t->value_names[a][v])
                fuzz_cli_abort("task: value %d of attribute %d has no name", (int)v, (int)a);
    }
    for (int64_t i = 0; i < t->n_prompts; i++) {
        if (t->offsets[i + 1] <= t->offsets[i])
            fuzz_cli_abort("task: prompt %lld has no tokens", (long long)i);
        if (t->answer[i] == t->wrong[i])
            fuzz_cli_abort("task: prompt %lld: answer and wrong are the same", (long long)i);
        fuzz_check_tokens(&t->answer[i], 1);
        fuzz_check_tokens(&t->wrong[i], 1);
        for (int32_t a = 0; a < t->n_attrs; a++)
            if (t->labels[i * t->n_attrs + a] < 0 ||
                t->labels[i * t->n_attrs + a] >= t->n_values[a])
                fuzz_cli_abort("task: prompt %lld: label %d out of range", (long long)i, (int)a);
    }
    fuzz_check_tokens(t->tokens, t->offsets[t->n_prompts]);
    for (int64_t k = 0; k < t->n_pairs; k++) {
        const int64_t b = t->pair_base[k], c = t->pair_cf[k];
        const int32_t a = t->pair_attr[k];
        if (b < 0 || b >= t->n_prompts || c < 0 || c >= t->n_prompts || a < 0 ||
            a >= t->n_attrs || t->labels[b * t->n_attrs + a] == t->labels[c * t->n_attrs + a] ||
            t->answer[b] == t->answer[c])
            fuzz_cli_abort("task: pair %lld is not a counterfactual pair", (long long)k);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("task.json", data, size);
    cli_task t;
    if (cli_task_load(&t, path, fuzz_tokenizer()) == 0)
        check_task(&t);
    cli_task_free(&t);
    return 0;
}
