/* circuit.h: what the files of `sae circuit` share — the llama2.c model and tokenizer, the
 * dictionaries named per hook point, and prompt pairs read from a JSON Lines file and tokenized.
 *
 * Prompt-pair files (docs/circuits.md): one JSON object per line with "clean_prefix",
 * "clean_answer" and optionally "patch_prefix", "patch_answer" (feature-circuits' field names).
 * A prefix is tokenized with BOS as llama2.c does; an answer must be the single token that
 * follows its prefix (tokens(prefix + answer) = tokens(prefix) + one). The clean and patch
 * prefixes of a pair must have the same number of tokens. Either every line has a patch prefix
 * or none (zero ablation); likewise the patch answer. */
#ifndef SAE_CLI_CIRCUIT_H
#define SAE_CLI_CIRCUIT_H

#include "cli.h"
#include "llama2.h"

/* The inputs `sae circuit` and `sae circuit eval` share: --model, --tokenizer, --pairs and
 * --dicts HOOK=DIR... (the specs of circuit_model_load; several may follow one --dicts). */
typedef struct circuit_inputs {
    const char *model, *tokenizer, *pairs;
    const char **dicts; /* (n_dicts) specs, borrowed from argv */
    int n_dicts;
    bool in_dicts;      /* the last option was --dicts: plain arguments are more specs */
} circuit_inputs;

/* Room for the specs of argc arguments. 0 or the exit code (error printed). */
int circuit_inputs_init(circuit_inputs *in, int argc);
void circuit_inputs_free(circuit_inputs *in);

/* Take `arg` (is_opt: an option, else a plain argument) if it is one of the inputs: true, with
 * *rc = 0, or for a bad value the exit code of the usage error (printed, naming `cmd`). */
bool circuit_inputs_take(circuit_inputs *in, cli_args *a, const char *arg, bool is_opt,
                         const char *usage, const char *cmd, int *rc);

/* After the arguments: 0 when every input was given, else the usage error's exit code. */
int circuit_inputs_check(const circuit_inputs *in, const char *usage, const char *cmd);

/* The model, its tokenizer and host, and the dictionaries of the circuit in hook order. */
typedef struct circuit_model {
    llama2_model *model;
    llama2_tokenizer *tok;
    sae_host host;
    int32_t n_hooks;
    int32_t *hooks;       /* host hook ids, ascending (the order of the computation) */
    sae_dict **dicts;     /* (n_hooks) */
    const char **paths;   /* (n_hooks) where each dictionary came from */
} circuit_model;

/* Load the model and tokenizer, and each "HOOK=PATH" (or "PATH" whose SAE names its hook
 * point in its metadata) of specs; sorted by hook id. 0 or the exit code (error printed). */
int circuit_model_load(circuit_model *m, const char *model, const char *tokenizer,
                       const char *const *specs, int n_specs);
void circuit_model_free(circuit_model *m);

/* Prompt pairs tokenized (owned arrays behind `pairs`). */
typedef struct circuit_pairs {
    sae_prompt_pairs pairs;
    int64_t *offsets;
    int32_t *clean, *patch, *clean_answers, *patch_answers;
} circuit_pairs;

/* Read and tokenize a prompt-pair file. 0 or the exit code (error printed, naming the line). */
int circuit_pairs_load(circuit_pairs *p, const char *path, const llama2_tokenizer *tok);
void circuit_pairs_free(circuit_pairs *p);

/* The token after `prefix` that `answer` adds (tokens(prefix + answer) must be tokens(prefix)
 * and one more). 0 and *token, or -1 when the answer is not one token there. */
int circuit_answer_token(const llama2_tokenizer *tok, const char *prefix, const char *answer,
                         int32_t *token, int64_t *prefix_tokens);

/* The clean model's accuracy: the share of clean prompts whose clean answer has a larger logit
 * than the patch answer, and of patch prompts where the patch answer wins (NaN without patch
 * prompts or answers). */
int circuit_accuracy(const circuit_model *m, const circuit_pairs *p, double *clean_acc,
                     double *patch_acc);

/* Subcommands (circuit_eval.c, circuit_pairs.c, circuit_compare.c). */
int cmd_circuit_eval(int argc, char **argv);
int cmd_circuit_pairs(int argc, char **argv);
int cmd_circuit_compare(int argc, char **argv);

/* A comma-separated list of positive integers ("1,2,5,10") into a malloc'd array. 0 on success
 * (*out, *n), -1 when malformed. */
int circuit_parse_sizes(const char *text, int64_t **out, int64_t *n);

#endif
