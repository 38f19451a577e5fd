/* train.h: the settings of `sae train` (cmd_train.c), shared with the resumption of a run from
 * its checkpoint (train_resume.c). */
#ifndef SAE_CLI_TRAIN_H
#define SAE_CLI_TRAIN_H

#include "data.h"
#include "train_options.h"

typedef struct train_args {
    cli_data data;
    cli_train_options opt;  /* --steps (required), --k (TopK, BatchTopK), --format, ... */
    int32_t arch;          /* -1 until given */
    int32_t preset;
    int64_t d_sae;
    double l1;             /* --l1 */
    bool l1_given, no_repeat, resume;
    const char *checkpoint;   /* --checkpoint PATH, or NULL */
    int64_t checkpoint_every; /* 0: only at the end and on Ctrl-C */
} train_args;

/* With --resume: load t->checkpoint, check that it belongs to this command (architecture,
 * sizes, data width, preset, seed and the options given; --steps only where the learning-rate
 * schedule does not depend on it), and read past the rows its steps were trained on (steps *
 * --batch rows of t->data.source), so that training continues exactly where the run that wrote
 * it stopped. On success *out is the trainer; else the error is printed and the exit code
 * returned. */
int train_resume(const train_args *t, sae_trainer **out);

#endif
