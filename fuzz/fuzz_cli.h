/*
 * fuzz_cli.h: what the targets of the `sae` tool's readers (examples/cli: task files, prompt
 * pairs, pair templates) share.
 *
 * Those readers tokenize what they read with a llama2.c tokenizer. The targets use a small one
 * made here once per process (never ../shared): the 3 special and 256 byte tokens, every
 * printable ASCII character, " " + each letter, and a few words (with the prefixes their
 * merges go through, the longer the higher the score), so that fuzzed text tokenizes to real
 * merged tokens and one-token answers such as "she" or " She" exist. fuzz/make_corpus.py writes
 * its seeds with these words.
 *
 * The tool prints one line on stderr for each file it rejects, and `sae circuit pairs` a line
 * on stdout: fuzz_cli_quiet() sends both to /dev/null unless SAE_FUZZ_VERBOSE is set (the
 * sanitizers and libFuzzer write to the file descriptors directly and stay visible).
 */
#ifndef SAE_FUZZ_CLI_H
#define SAE_FUZZ_CLI_H

#include <stdint.h>

#include "llama2.h"

/* The tokenizer (made on the first call; aborts if that fails). */
const llama2_tokenizer *fuzz_tokenizer(void);

/* Its file in the scratch directory (a stable string) and its vocabulary size. */
const char *fuzz_tokenizer_path(void);
int32_t fuzz_tokenizer_vocab(void);

/* Check that tokens[0..n) are ids of the tokenizer; aborts otherwise. */
void fuzz_check_tokens(const int32_t *tokens, int64_t n);

/* Load a prompt-pair file with circuit_pairs_load and check what loaded against circuit.h
 * (offsets from 0 upwards, prompts that start with BOS, every id a token; aborts otherwise):
 * the reader's exit code, and for 0 the number of pairs and whether each has a patch prompt
 * and answer. */
int fuzz_load_pairs(const char *path, int64_t *n_pairs, int *complete);

/* Silence the tool's stdout and stderr lines (not with SAE_FUZZ_VERBOSE). The targets need not
 * call this or fuzz_tokenizer(): fuzz_cli.c's LLVMFuzzerInitialize does both. */
void fuzz_cli_quiet(void);

/* Print "fuzz: <message>" where stderr was before fuzz_cli_quiet(), and abort: a reader gave
 * something its documentation rules out. */
void fuzz_cli_abort(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
