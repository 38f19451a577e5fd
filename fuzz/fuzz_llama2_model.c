/* fuzz_llama2_model: llama2.c checkpoints (examples/llama2/model.c), the bundled host model.
 *
 * Input: a whole checkpoint file. A small model that loads runs two generation steps, which
 * read every weight array: a header whose sizes passed the checks but whose arrays do not lie
 * inside the file would be caught by AddressSanitizer. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "llama2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("model.bin", data, size);
    llama2_model *m = NULL;
    sae_status s = llama2_model_load(&m, path, NULL);
    fuzz_note("llama2 model", s, llama2_last_error());
    if (s != SAE_OK)
        return 0;
    const llama2_config *c = llama2_model_config(m);
    /* The file bounds every array; the KV cache (n_layers · seq_len · kv_dim) can still be
     * quadratic in it, so only small models run. */
    if ((int64_t)c->n_layers * c->seq_len * c->dim <= (1 << 16)) {
        llama2_state *st = NULL;
        float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
        if (!logits || llama2_state_create(&st, m) != SAE_OK)
            abort();
        for (int32_t pos = 0; pos < 2 && pos < c->seq_len; pos++)
            if (llama2_state_step(st, pos % c->vocab_size, logits, NULL, NULL) != SAE_OK)
                abort();
        llama2_state_free(st);
        free(logits);
    }
    llama2_model_free(m);
    return 0;
}
