/* model.h: the model options of `sae capture` and `sae eval`: a llama2.c checkpoint run by the
 * llama2.c host (examples/llama2), the token sequences to run through it (an integer tensor, or
 * text cut into sequences), and hook point names (the host's, or SAELens' blocks.L.hook_X). */
#ifndef SAE_CLI_MODEL_H
#define SAE_CLI_MODEL_H

#include "cli.h"
#include "llama2.h"

#define CLI_DEFAULT_SEQ_LEN 128

/* The lines of the commands' help that describe the model options. */
#define CLI_MODEL_HELP                                                                         \
    "model and tokens:\n"                                                                      \
    "  --model FILE        a llama2.c checkpoint (e.g. stories260K.bin)\n"                     \
    "  --tokenizer FILE    its tokenizer (e.g. tok512.bin); needed with --text\n"              \
    "  --text FILE         UTF-8 text. Each non-empty line is a document; the documents are\n" \
    "                      tokenized (llama2.c's encoder), joined into one stream with BOS\n"  \
    "                      between them, and cut into sequences of BOS + SEQ_LEN - 1 tokens\n" \
    "                      of the stream (a piece starting at a BOS separator skips it; the\n" \
    "                      last, shorter piece is dropped)\n"                                  \
    "  --tokens FILE       a safetensors file with an integer tensor (I32 or I64) [n_seq,\n"   \
    "                      seq_len]: 'tokens', or the file's only tensor\n"                    \
    "  --seq-len N         tokens per sequence with --text, >= 2 (default 128)\n"              \
    "  --max-seqs N        use only the first N sequences\n"                                   \
    "  --batch-seqs N      sequences per forward pass (default: about 2048 tokens)\n"          \
    "  --skip-bos          leave out position 0 (the BOS token, whose activations are\n"       \
    "                      outliers SAEs are usually trained without)\n"

typedef struct cli_model {
    /* From the command line. */
    const char *model_path, *tokenizer_path, *text_path, *tokens_path;
    int64_t seq_len;          /* --seq-len (0: not given) */
    int64_t max_seqs;         /* 0: all */
    int64_t batch_seqs;       /* 0: the library's default */
    bool skip_bos;
    /* Opened by cli_model_open. */
    llama2_model *model;
    sae_host host;
    int32_t *tokens;          /* (n_seq, len) */
    int64_t n_seq, len;
} cli_model;

void cli_model_init(cli_model *m);

/* If `arg` is one of the model options, take it (and its value) and return true, with *rc = 0,
 * or for a bad value the exit code of the usage error (printed, naming `cmd`). */
bool cli_model_option(cli_model *m, cli_args *a, const char *arg, const char *usage,
                      const char *cmd, int *rc);

/* After the arguments: whether a model was asked for (--model), and a usage error (exit code,
 * printed) unless the options make sense together; else 0. required: --model must be given. */
int cli_model_check(const cli_model *m, const char *usage, const char *cmd, bool required);

/* Load the model and make the token sequences. 0, or CLI_EXIT_FAILURE after printing. */
int cli_model_open(cli_model *m);

/* "N sequences of L tokens (FILE)", for messages. */
void cli_model_describe(const cli_model *m, char *buf, size_t size);

void cli_model_free(cli_model *m);

/* The hook point named `name`: the host's name (resid_post.3) or the SAELens /
 * TransformerLens one (blocks.3.hook_resid_post). -1 when neither exists. */
int32_t cli_model_find_hook(const cli_model *m, const char *name);

/* "resid_pre.L, attn_out.L, mlp_out.L, resid_post.L (L < 5)": the host's hook names for an
 * error message. */
void cli_model_hook_names(const cli_model *m, char *buf, size_t size);

#endif
