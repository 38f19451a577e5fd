/* fuzz_prompt_pairs: the prompt-pair files of `sae circuit` (examples/cli/circuit_load.c,
 * circuit_pairs_load) and the template files of `sae circuit pairs` (examples/cli/
 * circuit_pairs.c), tokenized with the small tokenizer of fuzz_cli.h.
 *
 * Input: one byte b, then the file. b even: a prompt-pair file (JSON Lines). b odd: a template
 * file, run through `sae circuit pairs --n N --seed S` with N = 1 + (b >> 1 & 1) and S = b >> 2
 * (one or two pairs: each draw tokenizes four prompts, and a template that cannot give N pairs
 * is given up after 200 N draws); when that succeeds, the pairs it wrote must load with circuit_pairs_load, N of
 * them, each with a patch prompt and answer (the generator's output is the reader's input).
 * Pairs that load are checked against circuit.h: offsets from 0 upwards, prompts that start
 * with BOS, every id a token. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "circuit.h"
#include "fuzz_cli.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_tokenizer();
    fuzz_cli_quiet();
    return 0;
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

/* Load `path`; check what loaded. The reader's exit code. */
static int load_pairs(const char *path, int64_t *n_pairs, int *complete)
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

/* `sae circuit pairs` on the template; what it writes must load. */
static void run_template(uint8_t b, const char *template_path)
{
    char tmpl[1024], out[1024], n[8], seed[8], vocab[16];
    snprintf(tmpl, sizeof tmpl, "%s", template_path); /* fuzz_path's buffer is reused */
    snprintf(out, sizeof out, "%s", fuzz_path("pairs_out.jsonl"));
    const int64_t want = 1 + (b >> 1 & 1);
    snprintf(n, sizeof n, "%" PRId64, want);
    snprintf(seed, sizeof seed, "%d", b >> 2);
    snprintf(vocab, sizeof vocab, "%d", (int)fuzz_tokenizer_vocab());
    char *argv[] = {"pairs", "--template", tmpl, "--tokenizer",
                    (char *)fuzz_tokenizer_path(), "--vocab", vocab, "--n", n, "--seed", seed,
                    "--out", out, NULL};
    if (cmd_circuit_pairs((int)(sizeof argv / sizeof argv[0]) - 1, argv) != 0)
        return;
    int64_t got = 0;
    int complete = 0;
    if (load_pairs(out, &got, &complete) != 0 || got != want || !complete)
        fuzz_cli_abort("pairs: `sae circuit pairs` wrote %lld complete pairs (%d), asked for "
                       "%lld, that do not load as such", (long long)got, complete,
                       (long long)want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        run_template(data[0], fuzz_write("template.json", data + 1, size - 1));
    } else {
        int64_t n = 0;
        int complete = 0;
        load_pairs(fuzz_write("pairs.jsonl", data + 1, size - 1), &n, &complete);
    }
    return 0;
}
