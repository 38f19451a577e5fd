/* fuzz_prompt_pairs: the prompt-pair files of `sae circuit` (examples/cli/circuit_load.c,
 * circuit_pairs_load), tokenized with the small tokenizer of fuzz_cli.h.
 *
 * Input: the file (JSON Lines). Pairs that load are checked against circuit.h
 * (fuzz_load_pairs). Templates, which make such files, are fuzz_pair_templates. */

#include "fuzz_cli.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t n = 0;
    int complete = 0;
    fuzz_load_pairs(fuzz_write("pairs.jsonl", data, size), &n, &complete);
    return 0;
}
