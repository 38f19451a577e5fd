/* fuzz_torch_pt: bare torch state dicts, OpenAI sparse_autoencoder and sae-icm
 * (lib/io/torch_state_dict.c), through the .pt reader (lib/io/torch_pt.c: zip + pickle).
 *
 * Input: one byte k (sae_load_options.k: sae-icm files need it from the caller, OpenAI TopK may
 * override theirs; 0 = none), then the .pt file. The format is detected from the tensor names,
 * as sae_dict_load does for a lone .pt file. A dictionary that loads is run on one row. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    o.k = data[0];
    const char *path = fuzz_write("sae.pt", data + 1, size - 1);
    sae_dict *d = NULL;
    sae_status s = sae_dict_load(&d, path, &o);
    fuzz_note("torch_pt", s, sae_last_error());
    if (s == SAE_OK)
        fuzz_run_dict(d);
    sae_dict_free(d);
    return 0;
}
