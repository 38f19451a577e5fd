/* fuzz_dictionary_learning: dictionary_learning folders (lib/io/dictionary_learning.c), the
 * .pt reader under it (lib/io/torch_pt.c: zip archive + pickle) and config_json.c.
 *
 * Input: config.json, a NUL, then ae.pt (fuzz_util.h). A dictionary that loads is run on one
 * row. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cfg_size, pt_size;
    const uint8_t *pt;
    fuzz_split(data, size, &cfg_size, &pt, &pt_size);
    fuzz_write("config.json", data, cfg_size);
    fuzz_write("ae.pt", pt, pt_size);
    sae_dict *d = NULL;
    sae_status s = sae_dict_load(&d, fuzz_dir(), NULL);
    fuzz_note("dictionary_learning", s, sae_last_error());
    if (s == SAE_OK)
        fuzz_run_dict(d);
    sae_dict_free(d);
    return 0;
}
