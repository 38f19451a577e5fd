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

/* The model-space effect of a unit code of feature j is sae__dict_direction_scale(d, j) · W_dec[j]:
 * 1/||d_j|| with SAE_DICT_RESCALE_BY_DECODER_NORM, times 1/act_scale with SAE_NORM_SCALE (the
 * scaling undone on the way out); 1 otherwise. Not meaningful for per-row normalisations. */
double sae__dict_direction_scale(const sae_dict *d, int64_t j);

#endif /* SAE_DICT_INTERNAL_H */
