/* data.h: the --data option of `sae train` and `sae eval`: activations from safetensors or raw
 * float32 shards, a directory of them, or the synthetic generator (sae_synth), opened as one
 * sae_source. */
#ifndef SAE_CLI_DATA_H
#define SAE_CLI_DATA_H

#include "cli.h"

/* The lines of the commands' help that describe the data options. */
#define CLI_DATA_HELP                                                                          \
    "data:\n"                                                                                  \
    "  --data PATH         a safetensors file ([..., d] floating tensor), a raw .f32/.bin file\n" \
    "                      of float32 rows, or a directory of them (read in name order);\n"     \
    "                      repeat for more files. 'synthetic' for the sae_synth generator\n"    \
    "  --tensor NAME       tensor to read in safetensors files (default: the only one, else x)\n" \
    "  --raw-d N           row width of raw .f32/.bin files\n"                                  \
    "  --shuffle ROWS      shuffle through a buffer of ROWS rows (default 0: stored order)\n"   \
    "synthetic data (--data synthetic; defaults of MATH.md):\n"                                 \
    "  --synth-d N         row width (default 256)\n"                                           \
    "  --synth-features G  ground-truth features (default 512)\n"                               \
    "  --synth-active X    expected features firing per row (default 5)\n"                      \
    "  --synth-decay X     ratio of successive firing probabilities (default 0.99)\n"           \
    "  --synth-noise X     standard deviation of Gaussian noise added to x (default 0)\n"       \
    "  --synth-correlated  correlated firing (Gaussian copula)\n"                               \
    "  --synth-seed S      seed of the generator (default 0)\n"

typedef struct cli_data {
    /* From the command line. */
    const char **paths;      /* --data values (not 'synthetic'), borrowed from argv */
    int64_t n_paths;
    bool synthetic;
    bool synth_options;      /* a --synth-* option was given */
    const char *tensor;
    int64_t raw_d;
    int64_t shuffle_rows;
    sae_synth_options synth;
    /* Opened by cli_data_open. */
    char **files;            /* the shard files, directories expanded */
    int64_t n_files;
    sae_synth *generator;
    sae_source *source;
} cli_data;

void cli_data_init(cli_data *d);

/* If `arg` is one of the data options, take it (and its value) and return true, with *rc = 0,
 * or for a bad value the exit code of the usage error (printed, naming `cmd`). false for other
 * options. */
bool cli_data_option(cli_data *d, cli_args *a, const char *arg, const char *usage,
                     const char *cmd, int *rc);

/* After the arguments: a usage error (printed; its exit code returned) unless the data
 * options make sense together; else 0. */
int cli_data_check(const cli_data *d, const char *usage, const char *cmd);

/* Open the source. default_raw_d: the width of raw files when --raw-d is absent (0: none);
 * loop: files restart at their end (synthetic data never ends); seed: the shuffle's.
 * Returns 0, or CLI_EXIT_FAILURE after printing the error. */
int cli_data_open(cli_data *d, int64_t default_raw_d, bool loop, uint64_t seed,
                  int32_t n_threads);

/* The hook point the data was captured at: the "hooks.<tensor>" metadata `sae capture` writes,
 * when every file is a safetensors file naming the same single hook point for the tensor read.
 * Copied into buf (size bytes); false when there is no such name (raw files, synthetic data,
 * several hook points, files that disagree). Call after cli_data_open. */
bool cli_data_hook_name(const cli_data *d, char *buf, size_t size);

/* "synthetic", the one file, or "N files": for messages. */
void cli_data_describe(const cli_data *d, char *buf, size_t size);

void cli_data_free(cli_data *d);

#endif
