/*
 * export.h: what the dictionary writers share — folding conventions a target format cannot
 * express into the weights, and writing tensors + a JSON config into a directory.
 */
#ifndef SAE_EXPORT_H
#define SAE_EXPORT_H

#include <cjson/cJSON.h>

#include "../dict_internal.h"
#include "io_internal.h"

/* Weights of `d` with conventions folded in, in the canonical layout. Arrays are fresh copies
 * (free with sae__export_free); biases `d` leaves NULL are zeros (b_dec; b_enc, or Gated's
 * b_gate, b_mag, r_mag); a threshold is NULL where `d` has none.
 *   fold_scale:   SAE_NORM_SCALE s  -> W_enc * s, W_dec / s, b_dec / s (SAELens'
 *                 fold_activation_norm_scaling_factor); the result has no input scaling.
 *   fold_rescale: rescale by decoder norms n (codes = act(pre * n), decoded as codes / n) ->
 *                 W_enc * n, b_enc * n (Gated: b_gate * n, b_mag * n), W_dec / n; thresholds
 *                 already compare against pre * n and stay. Same codes, same reconstructions. */
typedef struct sae__export {
    sae_dict_weights w;
    int64_t d_in, d_sae;
} sae__export;

sae_status sae__export_fold(const sae_dict *d, bool fold_scale, bool fold_rescale,
                            sae__export *out);
void sae__export_free(const sae_dict *d, sae__export *e);

/* mkdir -p: create `dir` and any missing parents; an existing directory is fine. */
sae_status sae__make_dir(const char *dir);

/* Write `json` (printed, indented) to dir/name crash-safely. */
sae_status sae__write_json(const char *dir, const char *name, const cJSON *json);

#endif
