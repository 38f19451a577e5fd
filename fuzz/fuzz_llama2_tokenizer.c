/* fuzz_llama2_tokenizer: llama2.c tokenizers (examples/llama2/tokenizer.c).
 *
 * Input: two bytes v (little-endian; vocab_size = 259 + v % 1024, the caller's number, which a
 * tokenizer file does not hold), a text up to a NUL, then the tokenizer file. A tokenizer that
 * loads encodes the text (with BOS and EOS) and decodes every piece. A text of up to 512 bytes
 * is also encoded with the reference twin of the merges (run.c's loop): the tokens must be the
 * same, whatever the pieces and scores (duplicates, empty pieces, NaN). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "llama2.h"
#include "llama2_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int32_t vocab = 259 + (int32_t)((data[0] | data[1] << 8) % 1024);
    size_t text_size, file_size;
    const uint8_t *file;
    fuzz_split(data + 2, size - 2, &text_size, &file, &file_size);
    const char *path = fuzz_write("tok.bin", file, file_size);
    llama2_tokenizer *t = NULL;
    sae_status s = llama2_tokenizer_load(&t, path, vocab, NULL);
    fuzz_note("llama2 tokenizer", s, llama2_last_error());
    if (s != SAE_OK)
        return 0;
    char *text = malloc(text_size + 1);
    int32_t *tokens = malloc(sizeof(int32_t) * (text_size + 3));
    if (!text || !tokens)
        abort();
    memcpy(text, data + 2, text_size);
    text[text_size] = '\0';
    int64_t n = 0;
    if (llama2_tokenizer_encode(t, text, 1, 1, tokens, (int64_t)text_size + 3, &n) != SAE_OK)
        abort(); /* strlen(text) + 3 ids always suffice */
    if (text_size <= 512) {
        int32_t ref[512 + 3];
        int64_t n_ref = 0;
        if (llama2__tokenizer_encode_reference(t, text, 1, 1, ref, (int64_t)text_size + 3,
                                               &n_ref) != SAE_OK ||
            n_ref != n || memcmp(ref, tokens, (size_t)n * sizeof *ref))
            abort(); /* the fast merges differ from run.c's */
    }
    int32_t prev = 1;
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= vocab || !llama2_tokenizer_piece(t, prev, tokens[i]))
            abort();
        prev = tokens[i];
    }
    for (int32_t id = 0; id < vocab; id++)
        (void)strlen(llama2_tokenizer_piece(t, 1, id));
    free(tokens);
    free(text);
    llama2_tokenizer_free(t);
    return 0;
}
