/*
 * fuzz_util.h: what the libFuzzer targets of fuzz/ share.
 *
 * libsae's readers take paths, so a target writes its input into files of a private scratch
 * directory (under $TMPDIR, /tmp by default; made once per process, removed at exit) and loads
 * them from there: the fuzzer runs the same code as a caller does.
 *
 * Multi-file inputs: a target whose format is a directory (a text config + a binary weights
 * file) takes its input as the config text, a NUL byte, and the binary file. JSON text cannot
 * hold a raw NUL, so the split is unambiguous, and a seed is the two files joined by one NUL.
 */
#ifndef SAE_FUZZ_UTIL_H
#define SAE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "sae/sae.h"

/* The scratch directory of this process (made on the first call). */
const char *fuzz_dir(void);

/* fuzz_dir() "/" name, in a static buffer (one at a time). */
const char *fuzz_path(const char *name);

/* Write size bytes to fuzz_dir()/name, replacing the file; returns its path (static buffer,
 * as fuzz_path). Aborts if the file cannot be written: that is the harness failing, not libsae. */
const char *fuzz_write(const char *name, const uint8_t *data, size_t size);

/* Remove fuzz_dir()/name if it exists. */
void fuzz_remove(const char *name);

/* Split data[0..size) at the first NUL: *head_size bytes of text before it, and the rest after
 * it in *tail / *tail_size. Without a NUL the whole input is the head and the tail is empty. */
void fuzz_split(const uint8_t *data, size_t size, size_t *head_size, const uint8_t **tail,
                size_t *tail_size);

/* Run a dictionary that loaded: encode and reconstruct one row of ones, so that a file whose
 * shapes or values only look right (NaN weights, odd flags) goes through the kernels under the
 * sanitizers too. Aborts if an encode of a dictionary that loaded fails for any reason but
 * SAE_ENUMERIC, which the documentation allows. */
void fuzz_run_dict(const sae_dict *dict);

/* With SAE_FUZZ_VERBOSE set in the environment, print what a load gave ("saelens: format
 * error: <message>"), to check that seeds reach the code they are meant for. */
void fuzz_note(const char *what, sae_status status, const char *message);

#endif
