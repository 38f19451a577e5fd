/* fuzz_pair_templates: the template files of `sae circuit pairs` (examples/cli/
 * circuit_pairs.c), tokenized with the small tokenizer of fuzz_cli.h.
 *
 * Input: one byte b, then the template file, run through `sae circuit pairs --n N --seed S`
 * with N = 1 + (b >> 1 & 1) and S = b >> 2 (one or two pairs: each draw tokenizes four
 * prompts, and a template that cannot give N pairs is given up after 10 N draws in the fuzz
 * build, 200 N in the tool: FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION). When that
 * succeeds, the pairs it wrote must load with circuit_pairs_load, N of them, each with a patch
 * prompt and answer (the generator's output is the reader's input; fuzz_load_pairs). */
#include <inttypes.h>
#include <stdio.h>

#include "circuit.h"
#include "fuzz_cli.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    if (fuzz_load_pairs(out, &got, &complete) != 0 || got != want || !complete)
        fuzz_cli_abort("pairs: `sae circuit pairs` wrote %lld complete pairs (%d), asked for "
                       "%lld, that do not load as such", (long long)got, complete,
                       (long long)want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 1)
        run_template(data[0], fuzz_write("template.json", data + 1, size - 1));
    return 0;
}
