/* fuzz_saelens: SAELens directories (lib/io/saelens.c, config_json.c, safetensors.c).
 *
 * Input: cfg.json, a NUL, then sae_weights.safetensors (fuzz_util.h). The text before the NUL
 * may itself hold a second NUL: what follows it, up to the weights, is activation_scaler.json
 * (read for normalize_activations "expected_average_only_in"); a seed without one has no such
 * file. A dictionary that loads is run on one row. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cfg_size, rest_size;
    const uint8_t *rest;
    fuzz_split(data, size, &cfg_size, &rest, &rest_size);
    fuzz_write("cfg.json", data, cfg_size);
    /* A second text part, if the rest starts with text and a NUL: the scaler. */
    size_t scaler_size, weights_size;
    const uint8_t *weights;
    fuzz_split(rest, rest_size, &scaler_size, &weights, &weights_size);
    if (scaler_size < rest_size && scaler_size > 0 && rest[0] == '{') {
        fuzz_write("activation_scaler.json", rest, scaler_size);
    } else {
        fuzz_remove("activation_scaler.json");
        weights = rest, weights_size = rest_size;
    }
    fuzz_write("sae_weights.safetensors", weights, weights_size);
    sae_dict *d = NULL;
    sae_status s = sae_dict_load(&d, fuzz_dir(), NULL);
    fuzz_note("saelens", s, sae_last_error());
    if (s == SAE_OK)
        fuzz_run_dict(d);
    sae_dict_free(d);
    return 0;
}
