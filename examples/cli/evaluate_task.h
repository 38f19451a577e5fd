/* evaluate_task.h: the state of `sae evaluate-task` (cmd_evaluate_task.c computes it,
 * evaluate_task_report.c prints it as text or JSON). */
#ifndef SAE_CLI_EVALUATE_TASK_H
#define SAE_CLI_EVALUATE_TASK_H

#include "task.h"

#define MAX_DICTS 8

/* Thresholds of the over-splitting report: a feature is precise for a value with precision
 * >= SPLIT_PRECISION and recall >= SPLIT_RECALL; a value of a binary attribute is over-split
 * when SPLIT_MIN or more features are precise for it (each covers a part of it). */
#define SPLIT_PRECISION 0.8
#define SPLIT_RECALL 0.05
#define SPLIT_MIN 3

/* What the interpretability report says of an attribute value. */
enum {
    VALUE_COVERED = 1,   /* a feature has F1 >= --high-f1 */
    VALUE_OCCLUDED = 2,  /* not covered, yet the supervised edits from or to it succeed */
    VALUE_OVERSPLIT = 4  /* binary attribute, >= SPLIT_MIN precise features */
};

typedef struct et_args {
    const char *model, *tokenizer, *task, *hook;
    const char *dicts[MAX_DICTS];
    int n_dicts;
    int64_t exchange, top;
    double high_f1;
    bool json;
} et_args;

/* One column of the table: a supervised dictionary or an SAE. */
typedef struct column {
    char label[64];
    sae_supervised *sup;        /* supervised column */
    sae_dict *dict;             /* SAE column */
    float *recon;               /* (n_prompts, d) reconstructions of the node */
    double fvu;
    sae_approximation approx;
    double success[2], removed[2]; /* supervised: [0] arithmetic; SAE: [0] F1, [1] greedy */
    /* SAE interpretability */
    float *precision, *recall, *f1; /* (n_codes, F) */
    int32_t *top_ids;           /* (n_codes, top) */
    float *top_f1;
    int32_t *n_precise;         /* (n_codes) features precise for the value */
    uint8_t *flags;             /* (n_codes) VALUE_* bits */
    int64_t covered, occluded, oversplit;
} column;

typedef struct et_state {
    et_args args;
    llama2_model *model;
    llama2_tokenizer *tok;
    sae_host host;
    cli_task task;
    int32_t hook_id;
    int64_t d, n_codes, n_dict_attrs;
    int32_t *dict_attr;         /* (n_attrs) index among the dictionary attributes, or -1 */
    int32_t *dict_labels;       /* (n_prompts, n_dict_attrs) */
    int64_t *code_first;        /* (n_attrs) code index of value 0 over all attributes */
    sae_prompts prompts, pair_prompts;
    int32_t *pair_tokens;
    int64_t *pair_offsets;
    int32_t *pair_answer, *pair_wrong;
    float *clean_diffs, *acts;  /* (n_prompts), (n_prompts, d) */
    float *edited, *diffs;      /* (n_pairs, d), (max(n_prompts, n_pairs)) */
    double clean_mean, clean_acc, success_none, success_patch;
    float *value_acc;           /* (n_codes) clean accuracy of the prompts with each value */
    float *value_sup_success;   /* (n_codes) supervised (mean) edits from or to the value */
    column cols[MAX_DICTS + 2];
    int n_cols;
} et_state;

/* Print the results as the side-by-side table (text) or one JSON object; 0 or an exit code. */
void et_print_text(const et_state *st);
int et_print_json(const et_state *st);

#endif
