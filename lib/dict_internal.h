/*
 * dict_internal.h: the layout of sae_dict, shared by dict.c, encoder.c and the file writers.
 */
#ifndef SAE_DICT_INTERNAL_H
#define SAE_DICT_INTERNAL_H

#include "internal.h"

struct sae_dict {
    sae_dict_config config;     /* string fields point at model_name / hook_name below */
    const sae_allocator *allocator;
    bool owns_weights;          /* created (copied / adopted) vs wrapped (borrowed) */
    /* Weights, canonical layout (dict.h). Unused arrays are NULL. */
    float *W_enc;      /* (d_in, d_sae) */
    float *b_enc;      /* (d_sae) or NULL (zeros) */
    float *W_dec;      /* (d_sae, d_in) */
    float *b_dec;      /* (d_in) or NULL (zeros) */
    float *threshold;  /* (d_sae) or NULL */
    float *b_gate, *b_mag, *r_mag; /* Gated, (d_sae) each, or NULL */
    /* Derived, always owned. */
    float *decoder_norms;   /* (d_sae): ||d_j|| */
    float *exp_r_mag;       /* Gated: (d_sae) exp(r_mag_j), else NULL */
    char *model_name, *hook_name;
};

/* ---- the dictionary in model space (dict_linear.c) --------------------------------------------
 * For the input normalisations NONE and SCALE (sae__dict_is_affine) the reconstruction is affine
 * in the codes and each non-zero code is affine in x:
 *   x_hat = sum_j f_j d~_j + b~,        d~_j = W_dec[j] / (r_j s),   b~ = b_dec / s,
 *   where f_j != 0:  df_j/dx = e~_j = s r_j g_j W_enc[:, j],
 * with s = act_scale (SAE_NORM_SCALE) else 1, r_j = ||d_j|| (SAE_DICT_RESCALE_BY_DECODER_NORM)
 * else 1, g_j = exp(r_mag_j) (Gated) else 1. The patches' direct path, the supervised exchange
 * edits and the circuits' node and edge attributions are written in these terms. Each out is
 * (d_in). */
bool sae__dict_is_affine(const sae_dict *d);
void sae__dict_decoder_direction(const sae_dict *d, int64_t j, float *out);
void sae__dict_encoder_direction(const sae_dict *d, int64_t j, float *out);
void sae__dict_model_bias(const sae_dict *d, float *out);

#endif /* SAE_DICT_INTERNAL_H */
