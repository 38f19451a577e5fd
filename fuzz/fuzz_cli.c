/* fuzz_cli.c: the small tokenizer and the quiet output of the CLI readers' targets (fuzz_cli.h). */
#include "fuzz_cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circuit.h"
#include "fuzz_util.h"

/* Whole words of the seeds (fuzz/make_corpus.py): each is a token, and so is each
 * of its prefixes of two or more bytes. */
static const char *const words[] = {
    " She", " He", " she", " he", " they", " is", " are", " was", " cat", " cats", " dog",
    " the", " The", " Once", " upon", " time", " there", " named", " girl", " boy", " Lily",
    " Tim", " key", " keys", " \xc3\xa9t\xc3\xa9", /* " été": merges of multi-byte pieces */
};

#define MAX_PIECES 1024
#define MAX_PIECE 16

static char pieces[MAX_PIECES][MAX_PIECE];
static float scores[MAX_PIECES];
static int32_t n_pieces;
static char tok_path[1024];
static llama2_tokenizer *tok;
static FILE *diagnostics; /* stderr before fuzz_cli_quiet() */

static void add(const char *piece, float score)
{
    for (int32_t i = 0; i < n_pieces; i++)
        if (!strcmp(pieces[i], piece))
            return;
    if (n_pieces == MAX_PIECES || strlen(piece) >= MAX_PIECE)
        abort();
    strcpy(pieces[n_pieces], piece);
    scores[n_pieces++] = score;
}

/* The pieces in llama2.c order: <unk>, BOS, EOS, the 256 byte tokens, then the rest. */
static void make_pieces(void)
{
    char p[MAX_PIECE];
    add("<unk>", 0.0f);
    add("\n<s>\n", 0.0f);
    add("\n</s>\n", 0.0f);
    for (int b = 0; b < 256; b++) {
        snprintf(p, sizeof p, "<0x%02X>", b);
        add(p, 0.0f);
    }
    for (int c = ' '; c <= '~'; c++)
        add((char[]){(char)c, '\0'}, 0.0f);
    add("\xc3\xa9", 0.0f); /* "é": a piece of two bytes */
    for (int c = 0; c < 52; c++) {
        const char letter = (char)(c < 26 ? 'a' + c : 'A' + c - 26);
        add((char[]){' ', letter, '\0'}, 2.0f);
    }
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
        for (size_t len = 2; len <= strlen(words[w]); len++) {
            memcpy(p, words[w], len);
            p[len] = '\0';
            add(p, (float)len); /* longer merges first */
        }
}

/* The llama2.c tokenizer file: int32 max_token_length, then per piece float32 score, int32
 * length and the bytes (FORMATS.md). */
static void write_file(void)
{
    size_t size = 4, at = 0;
    int32_t longest = 0;
    for (int32_t i = 0; i < n_pieces; i++) {
        size += 8 + strlen(pieces[i]);
        longest = (int32_t)strlen(pieces[i]) > longest ? (int32_t)strlen(pieces[i]) : longest;
    }
    uint8_t *file = malloc(size);
    if (!file)
        abort();
    memcpy(file, &longest, 4), at += 4;
    for (int32_t i = 0; i < n_pieces; i++) {
        const int32_t len = (int32_t)strlen(pieces[i]);
        memcpy(file + at, &scores[i], 4);
        memcpy(file + at + 4, &len, 4);
        memcpy(file + at + 8, pieces[i], (size_t)len);
        at += 8 + (size_t)len;
    }
    snprintf(tok_path, sizeof tok_path, "%s", fuzz_write("tokenizer.bin", file, size));
    free(file);
}

const llama2_tokenizer *fuzz_tokenizer(void)
{
    if (!tok) {
        make_pieces();
        write_file();
        if (llama2_tokenizer_load(&tok, tok_path, n_pieces, NULL) != SAE_OK)
            fuzz_cli_abort("the tokenizer does not load: %s", llama2_last_error());
    }
    return tok;
}

const char *fuzz_tokenizer_path(void)
{
    fuzz_tokenizer();
    return tok_path;
}

int32_t fuzz_tokenizer_vocab(void)
{
    fuzz_tokenizer();
    return n_pieces;
}

void fuzz_check_tokens(const int32_t *tokens, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_pieces)
            fuzz_cli_abort("token %lld is %d, not an id of the tokenizer", (long long)i,
                           (int)tokens[i]);
}

void fuzz_cli_quiet(void)
{
    if (getenv("SAE_FUZZ_VERBOSE"))
        return;
    /* The tool prints through the stdio streams; glibc lets them be reassigned. The file
     * descriptors 1 and 2, which libFuzzer and the sanitizers use, stay as they are. */
    FILE *null = fopen("/dev/null", "w");
    if (!null)
        abort();
    diagnostics = stderr;
    stdout = null;
    stderr = null;
}

void fuzz_cli_abort(const char *fmt, ...)
{
    FILE *out = diagnostics ? diagnostics : stderr;
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", out);
    vfprintf(out, fmt, ap);
    fputc('\n', out);
    va_end(ap);
    fflush(out);
    abort();
}

static void check_pairs(const sae_prompt_pairs *q)
{
    if (q->n_pairs < 1 || q->offsets[0] != 0 || !q->clean_tokens || !q->clean_answers)
        fuzz_cli_abort("pairs: %lld pairs, offsets[0] %lld", (long long)q->n_pairs,
                       (long long)q->offsets[0]);
    for (int64_t i = 0; i < q->n_pairs; i++) {
        const int64_t at = q->offsets[i];
        if (q->offsets[i + 1] <= at || q->clean_tokens[at] != 1 ||
            (q->patch_tokens && q->patch_tokens[at] != 1))
            fuzz_cli_abort("pairs: prompt %lld is empty or does not start with BOS",
                           (long long)i);
    }
    const int64_t n = q->offsets[q->n_pairs];
    fuzz_check_tokens(q->clean_tokens, n);
    fuzz_check_tokens(q->clean_answers, q->n_pairs);
    if (q->patch_tokens)
        fuzz_check_tokens(q->patch_tokens, n);
    if (q->patch_answers)
        fuzz_check_tokens(q->patch_answers, q->n_pairs);
}

int fuzz_load_pairs(const char *path, int64_t *n_pairs, int *complete)
{
    circuit_pairs p;
    int rc = circuit_pairs_load(&p, path, fuzz_tokenizer());
    if (rc == 0) {
        check_pairs(&p.pairs);
        *n_pairs = p.pairs.n_pairs;
        *complete = p.pairs.patch_tokens && p.pairs.patch_answers;
    }
    circuit_pairs_free(&p);
    return rc;
}

/* libFuzzer calls this once before the first input (it is weak in libFuzzer; this object is
 * linked into every CLI target through the functions above). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_tokenizer();
    fuzz_cli_quiet();
    return 0;
}
