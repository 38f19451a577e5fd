/* task.h: task files of `sae evaluate-task` (docs/evaluation.md, "Task files"): prompts with
 * attribute labels and answer tokens, and counterfactual pairs, read from JSON and tokenized
 * with a llama2.c tokenizer. */
#ifndef SAE_CLI_TASK_H
#define SAE_CLI_TASK_H

#include "cli.h"
#include "llama2.h"

typedef struct cli_task {
    char *name;              /* "name", or NULL */
    char *hook;              /* "hook", or NULL */
    int32_t n_attrs;
    char **attr_names;       /* (n_attrs) */
    int32_t *n_values;       /* (n_attrs) */
    char ***value_names;     /* (n_attrs) arrays of n_values[a] names */
    uint8_t *in_dict;        /* (n_attrs) 1: part of the supervised dictionary */
    int64_t n_prompts;
    int32_t *tokens;         /* all prompts, one after the other */
    int64_t *offsets;        /* (n_prompts + 1) */
    int32_t *answer, *wrong; /* (n_prompts) single tokens */
    int32_t *labels;         /* (n_prompts, n_attrs) */
    int64_t n_pairs;
    int64_t *pair_base, *pair_cf; /* (n_pairs) prompt indices */
    int32_t *pair_attr;      /* (n_pairs) the attribute the pair changes */
} cli_task;

/* Read and tokenize a task file. Returns 0, or CLI_EXIT_FAILURE after printing
 * "sae: PATH: problem" (the task is then empty; cli_task_free it anyway). */
int cli_task_load(cli_task *task, const char *path, const llama2_tokenizer *tok);

void cli_task_free(cli_task *task);

#endif
