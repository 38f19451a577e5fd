/* train_options.h: the options `sae train` and `sae finetune` share — the run (steps, batch,
 * learning rate, warm-up, seed, threads), the sae-icm orthogonality penalty, k, and where the
 * result goes — parsed in one place (train_options.c). */
#ifndef SAE_CLI_TRAIN_OPTIONS_H
#define SAE_CLI_TRAIN_OPTIONS_H

#include "cli.h"

typedef struct cli_train_options {
    int64_t steps, batch;
    int64_t warmup;           /* -1: not given */
    int64_t threads;          /* 0: not given (every CPU) */
    int64_t k;                /* --k (0: not given): train's TopK k, finetune's k for files
                                 that do not store one */
    double lr;                /* 0: the preset's */
    double ortho;             /* --ortho: weight of the orthogonality penalty */
    int64_t ortho_subset;     /* --ortho-subset: 0 every feature */
    bool ortho_given, ortho_subset_given;
    uint64_t seed;
    const char *out;          /* --out DIR */
    int32_t format;           /* --format: 0 not given, else SAE_FORMAT_SAELENS / SPARSIFY */
} cli_train_options;

/* Nothing given: batch 4096, warm-up -1, everything else 0. */
void cli_train_options_init(cli_train_options *o);

/* If `arg` is one of the options above, take it (and its value) and return true, with *rc = 0,
 * or for a bad value the exit code of the usage error (printed, naming `cmd`). */
bool cli_train_option(cli_train_options *o, cli_args *a, const char *arg, const char *usage,
                      const char *cmd, int *rc);

/* Set the fields of the trainer's options that these give (learning rate, seed, threads,
 * warm-up, orthogonality penalty and subset; "0" given for an optional term turns it off). */
void cli_train_options_apply(const cli_train_options *o, sae_trainer_options *to);

#endif
