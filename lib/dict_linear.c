/* dict_linear.c: a dictionary as affine maps in model space (dict_internal.h): the model-space
 * decoder direction d~_j and bias b~ of the reconstruction, and the gradient e~_j of an active
 * code with respect to the input. Derivation from the encoder (encoder.c, activation.c):
 * x' = s x - b_dec, t = x' W_enc; the code is act(v_j) with v_j = (t_j g_j + b_j) r_j, which
 * equals v_j where the code is non-zero (ReLU, TopK, JumpReLU, BatchTopK; Gated with its gate
 * open); decoding divides the code by r_j and the output by s. */

#include "dict_internal.h"

bool sae__dict_is_affine(const sae_dict *d)
{
    return d->config.input_norm == SAE_NORM_NONE || d->config.input_norm == SAE_NORM_SCALE;
}

/* s of the formulas: the input scale. */
static double input_scale(const sae_dict *d)
{
    return d->config.input_norm == SAE_NORM_SCALE ? (double)d->config.act_scale : 1.0;
}

/* r_j of the formulas: the decoder norm when codes are rescaled by it. */
static double code_scale(const sae_dict *d, int64_t j)
{
    return (d->config.flags & SAE_DICT_RESCALE_BY_DECODER_NORM) ? (double)d->decoder_norms[j]
                                                                : 1.0;
}

void sae__dict_decoder_direction(const sae_dict *d, int64_t j, float *out)
{
    const int64_t d_in = d->config.d_in;
    const double mul = 1.0 / (code_scale(d, j) * input_scale(d));
    const float *row = d->W_dec + j * d_in;
    for (int64_t i = 0; i < d_in; i++)
        out[i] = (float)(mul * row[i]);
}

void sae__dict_encoder_direction(const sae_dict *d, int64_t j, float *out)
{
    const int64_t d_in = d->config.d_in, F = d->config.d_sae;
    double mul = input_scale(d) * code_scale(d, j);
    if (d->exp_r_mag)
        mul *= d->exp_r_mag[j];
    for (int64_t i = 0; i < d_in; i++)
        out[i] = (float)(mul * d->W_enc[i * F + j]);
}

void sae__dict_model_bias(const sae_dict *d, float *out)
{
    const int64_t d_in = d->config.d_in;
    const double mul = 1.0 / input_scale(d);
    for (int64_t i = 0; i < d_in; i++)
        out[i] = d->b_dec ? (float)(mul * d->b_dec[i]) : 0.0f;
}
