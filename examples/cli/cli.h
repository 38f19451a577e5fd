/* cli.h: the commands of the `sae` tool, one per cmd_*.c file, and the helpers they share
 * (util.c). Each command returns the process exit code: 0 on success, 1 when the work failed
 * (a file is missing or malformed, ...), 2 for a usage error. Errors are one line on stderr:
 * "sae: <file>: <problem>". */
#ifndef SAE_CLI_H
#define SAE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sae/sae.h>

#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

int cmd_version(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_capture(int argc, char **argv);
int cmd_evaluate_task(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_coherence(int argc, char **argv);
int cmd_circuit(int argc, char **argv);

/* ---- errors (util.c) ------------------------------------------------------------------- */

/* Print "sae: <file>: <message>" on one line and return CLI_EXIT_FAILURE. The message is
 * printf-style; newlines in it become spaces. `file` may be NULL. */
int cli_fail(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report a failed libsae call: its sae_last_error() (or the status text when that is empty),
 * prefixed by `file` unless the message already starts with it. Returns CLI_EXIT_FAILURE. */
int cli_fail_status(const char *file, sae_status status);

/* Print "sae: <message>" and the usage synopsis (the text of `usage` before its first blank
 * line) on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- output (util.c) ------------------------------------------------------------------- */

struct cJSON;

/* Print the JSON value (indented, one trailing newline) and delete it. 0, or CLI_EXIT_FAILURE
 * when it cannot be printed (out of memory; the error is printed). */
int cli_print_json(struct cJSON *value);

/* ---- loading (util.c) ------------------------------------------------------------------ */

/* Detect the format of `path` and load it with k (0 = from the file). On failure prints the
 * error line (with a hint about --k for sae-icm files) and returns CLI_EXIT_FAILURE; else 0.
 * *format may be NULL. */
int cli_load_dict(const char *path, int64_t k, sae_dict **out, int32_t *format);

/* ---- arguments (util.c) ---------------------------------------------------------------- */

/* A tiny argument scanner: options may be given as "--name VALUE" or "--name=VALUE", and may
 * come before or after the positional arguments; "--" ends the options. */
typedef struct cli_args {
    int argc;
    char **argv;
    int i;               /* next argument to read */
    bool options_done;   /* after "--" */
    const char *value;   /* value of the last option matched by cli_opt_value */
    const char *inline_value; /* "=VALUE" part of the current option, or NULL */
} cli_args;

/* Start scanning argv[1..argc) (argv[0] is the command name). */
void cli_args_init(cli_args *a, int argc, char **argv);

/* The next argument, or NULL at the end. *is_option tells whether it starts with "--" (and
 * options are not done); for "--name=VALUE" only "--name" is compared by cli_opt_is. */
const char *cli_args_next(cli_args *a, bool *is_option);

/* Whether the current option (returned by cli_args_next) is `name` ("--k"). */
bool cli_opt_is(const cli_args *a, const char *arg, const char *name);

/* Take the option's value (inline or the next argument); NULL when it is missing. */
const char *cli_opt_value(cli_args *a);

/* Parse a decimal integer in [min, max]; false when it is not one. */
bool cli_parse_i64(const char *text, int64_t min, int64_t max, int64_t *out);

/* Parse a finite floating-point number; false when it is not one. */
bool cli_parse_f64(const char *text, double *out);

/* ---- output helpers (util.c) ----------------------------------------------------------- */

/* Write s as a JSON string literal (with quotes) to stdout; NULL writes null. */
void cli_json_string(const char *s);

/* One histogram line on stdout: "  label  count  ####", the bar 40 wide at count = max. */
void cli_print_bar(const char *label, int64_t count, int64_t max);

/* "[2, 3, 4]" into buf. */
void cli_format_shape(char *buf, size_t size, int ndim, const int64_t *shape);

/* ---- memory and time (util.c) ---------------------------------------------------------- */

/* malloc of count elements of size bytes, never of 0 bytes; NULL on overflow or failure. */
void *cli_alloc_array(int64_t count, size_t size);

/* Seconds on a monotonic clock. */
double cli_now_seconds(void);

#endif
