/* fuzz_sparsify: sparsify directories (lib/io/sparsify.c, config_json.c, safetensors.c).
 *
 * Input: cfg.json, a NUL, then sae.safetensors (fuzz_util.h). A dictionary that loads is run
 * on one row. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cfg_size, weights_size;
    const uint8_t *weights;
    fuzz_split(data, size, &cfg_size, &weights, &weights_size);
    fuzz_write("cfg.json", data, cfg_size);
    fuzz_write("sae.safetensors", weights, weights_size);
    sae_dict *d = NULL;
    sae_status s = sae_dict_load(&d, fuzz_dir(), NULL);
    fuzz_note("sparsify", s, sae_last_error());
    if (s == SAE_OK)
        fuzz_run_dict(d);
    sae_dict_free(d);
    return 0;
}
