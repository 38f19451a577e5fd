/*
 * torch_state_dict.c: bare torch state dicts (.pt) of openai/sparse_autoencoder and sae-icm.
 *
 * openai (sparse_autoencoder/model.py, Autoencoder.state_dict / from_state_dict):
 *   pre_bias [d] = b_dec, encoder.weight [n, d] = W_encᵀ, latent_bias [n] = b_enc,
 *   decoder.weight [d, n] = W_decᵀ; training buffers (stats_last_nonzero, ...) are ignored.
 *   'activation' (str, "ReLU" when absent, as from_state_dict defaults) and
 *   'activation_state_dict' ({'k': int, 'postact_fn': 'ReLU'} for TopK).
 *   "ReLU" -> standard; "TopK" -> SAE_ARCH_TOPK, top-k THEN ReLU (no RELU_BEFORE flag), and
 *   from_state_dict turns on LayerNorm (normalize = activation == "TopK"):
 *   SAE_NORM_LAYER_NORM. d and n come from the tensor shapes (pre_bias, latent_bias).
 * sae-icm (src/poet/callbacks.py SaveSAECallback): W_enc.weight [F, d], W_enc.bias [F],
 *   W_dec.weight [d, F], W_dec.bias [d] = b_dec; TopK with ReLU before top-k. k is not in the
 *   file (the run's conf['sae']['top_k']): the caller passes it in sae_load_options.k.
 */
#include <string.h>

#include "torch_pt.h"

/* Length of 1-D tensor `name`, which sets a dimension (`what`) of the dictionary. */
static sae_status vector_length(const sae__tensor_set *ts, const char *name, const char *what,
                                int64_t *out)
{
    const sae_tensor_info *t = sae__tensors_find(ts, name);
    if (!t)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s is missing", ts->origin, name);
    if (t->ndim != 1 || t->shape[0] < 1) {
        char sh[96];
        sae__format_shape(sh, sizeof sh, t->ndim, t->shape);
        return sae__fail(SAE_ESHAPE, "%s: %s has shape %s, expected [%s]", ts->origin, name, sh,
                         what);
    }
    *out = t->shape[0];
    return SAE_OK;
}

/* The four nn.Linear-layout arrays shared by both formats: W_enc from [F, d] (transposed),
 * b_enc [F], W_dec from [d, F] (transposed), b_dec [d]. */
static sae_status take_linear(const sae__tensor_set *ts, const char *enc_w, const char *enc_b,
                              const char *dec_w, const char *dec_b, int64_t d, int64_t F,
                              const sae_allocator *a, sae_dict_weights *w)
{
    const int64_t Fd[2] = {F, d}, dF[2] = {d, F}, vF[1] = {F}, vd[1] = {d};
    sae_status s;
    if ((s = sae__tensors_take_f32(ts, enc_w, 2, Fd, true, a, (float **)&w->W_enc)) ||
        (s = sae__tensors_take_f32(ts, enc_b, 1, vF, false, a, (float **)&w->b_enc)) ||
        (s = sae__tensors_take_f32(ts, dec_w, 2, dF, true, a, (float **)&w->W_dec)) ||
        (s = sae__tensors_take_f32(ts, dec_b, 1, vd, false, a, (float **)&w->b_dec)))
        return s;
    return SAE_OK;
}

static sae_status openai_config(const sae__pt_file *f, const sae__tensor_set *ts,
                                const sae_load_options *opt, sae_dict_config *c)
{
    const char *origin = sae__pt_origin(f);
    sae_status s;
    if ((s = vector_length(ts, "pre_bias", "d_in", &c->d_in)) ||
        (s = vector_length(ts, "latent_bias", "n_latents", &c->d_sae)))
        return s;
    const char *act = "ReLU"; /* from_state_dict: state_dict.pop("activation", "ReLU") */
    if (sae__pt_has_key(f, "activation") && !(act = sae__pt_get_string(f, "activation", NULL)))
        return sae__fail(SAE_EFORMAT, "%s: 'activation' is not a string", origin);
    if (strcmp(act, "ReLU") == 0) {
        if (opt->k > 0)
            return sae__fail(SAE_EINVAL, "%s: k given for a ReLU autoencoder, which has no k",
                             origin);
        c->arch = SAE_ARCH_STANDARD;
        c->input_norm = SAE_NORM_NONE;
        return SAE_OK;
    }
    if (strcmp(act, "TopK") != 0)
        return sae__fail(SAE_EUNSUPPORTED, "%s: activation '%s' is not supported (ReLU and TopK "
                         "are)", origin, act);
    /* TopK.from_state_dict reads activation_state_dict['k'] and ['postact_fn']. A file saved
     * without dropping the nested keys also has 'activation.k' / 'activation.postact_fn'. */
    int64_t k = 0, k2 = 0;
    bool nested = sae__pt_has_key(f, "activation_state_dict"), have_k = true;
    s = nested ? sae__pt_get_int(f, "activation_state_dict", "k", &k)
               : sae__pt_get_int(f, "activation.k", NULL, &k);
    if (s == SAE_ENOTFOUND) {
        have_k = false;
        s = SAE_OK;
    }
    if (s != SAE_OK)
        return s;
    if (nested && sae__pt_has_key(f, "activation.k")) {
        if ((s = sae__pt_get_int(f, "activation.k", NULL, &k2)))
            return s;
        if (have_k && k2 != k)
            return sae__fail(SAE_EFORMAT, "%s: activation_state_dict.k = %lld but activation.k "
                             "= %lld", origin, (long long)k, (long long)k2);
        k = k2;
        have_k = true;
    }
    if (!have_k && opt->k <= 0)
        return sae__fail(SAE_EFORMAT, "%s: the TopK activation has no k "
                         "(activation_state_dict.k); pass sae_load_options.k", origin);
    const char *post = nested ? sae__pt_get_string(f, "activation_state_dict", "postact_fn")
                              : sae__pt_get_string(f, "activation.postact_fn", NULL);
    if (!post)
        return sae__fail(SAE_EFORMAT, "%s: the TopK activation has no postact_fn string",
                         origin);
    if (strcmp(post, "ReLU") != 0)
        return sae__fail(SAE_EUNSUPPORTED, "%s: TopK with postact_fn '%s' is not supported "
                         "(only ReLU)", origin, post);
    c->arch = SAE_ARCH_TOPK;
    c->k = opt->k > 0 ? opt->k : k;
    c->flags = 0;                          /* top-k first, then ReLU of the kept values */
    c->input_norm = SAE_NORM_LAYER_NORM;   /* normalize = (activation == "TopK") */
    return SAE_OK;
}

static sae_status icm_config(const sae__pt_file *f, const sae__tensor_set *ts,
                             const sae_load_options *opt, sae_dict_config *c)
{
    sae_status s;
    if ((s = vector_length(ts, "W_dec.bias", "d_model", &c->d_in)) ||
        (s = vector_length(ts, "W_enc.bias", "d_sae", &c->d_sae)))
        return s;
    if (opt->k <= 0)
        return sae__fail(SAE_EINVAL, "%s: sae-icm files do not store k (it is the run's "
                         "conf['sae']['top_k']): pass it in sae_load_options.k",
                         sae__pt_origin(f));
    c->arch = SAE_ARCH_TOPK;
    c->k = opt->k;
    c->flags = SAE_DICT_RELU_BEFORE_TOPK;
    c->input_norm = SAE_NORM_NONE;
    return SAE_OK;
}

static bool has_all(const sae__tensor_set *ts, const char *const *names)
{
    for (; *names; names++)
        if (!sae__tensors_find(ts, *names))
            return false;
    return true;
}

static const char *const openai_keys[] = {"pre_bias", "encoder.weight", "latent_bias",
                                          "decoder.weight", NULL};
static const char *const icm_keys[] = {"W_enc.weight", "W_enc.bias", "W_dec.weight",
                                       "W_dec.bias", NULL};

static sae_status detect(const sae__pt_file *f, int32_t *format)
{
    sae__tensor_set ts = sae__pt_tensors(f);
    if (has_all(&ts, openai_keys)) {
        *format = SAE_FORMAT_OPENAI;
        return SAE_OK;
    }
    if (has_all(&ts, icm_keys)) {
        *format = SAE_FORMAT_SAE_ICM;
        return SAE_OK;
    }
    static const char *const dl_hint[] = {"encoder.weight", NULL};
    static const char *const dl_hint2[] = {"W_enc", "W_dec", NULL};
    if (has_all(&ts, dl_hint) || has_all(&ts, dl_hint2))
        return sae__fail(SAE_EFORMAT, "%s: neither an openai nor an sae-icm state dict; if it "
                         "is a dictionary_learning ae.pt, its config.json must be beside it",
                         ts.origin);
    return sae__fail(SAE_EFORMAT, "%s: neither an openai (pre_bias, encoder.weight, "
                     "latent_bias, decoder.weight) nor an sae-icm (W_enc.weight, W_enc.bias, "
                     "W_dec.weight, W_dec.bias) state dict", ts.origin);
}

sae_status sae__detect_torch_format(const char *file, int32_t *format)
{
    if (!file || !format)
        return sae__fail(SAE_EINVAL, "file and format are required");
    sae__pt_file *f = NULL;
    sae_status s = sae__pt_open(&f, file, NULL);
    if (s == SAE_OK)
        s = detect(f, format);
    sae__pt_close(f);
    return s;
}

sae_status sae__load_torch_state_dict(sae_dict **out, const char *file, int32_t format,
                                      const sae_load_options *opt)
{
    if (!out || !file)
        return sae__fail(SAE_EINVAL, "out and file are required");
    *out = NULL;
    const sae_load_options defaults = SAE_LOAD_OPTIONS_INIT;
    if (!opt)
        opt = &defaults;
    if (format != SAE_FORMAT_AUTO && format != SAE_FORMAT_OPENAI && format != SAE_FORMAT_SAE_ICM)
        return sae__fail(SAE_EINVAL, "format %d is not a torch state-dict format", format);
    const sae_allocator *a = sae__allocator(opt->allocator);
    sae__pt_file *f = NULL;
    sae_status s = sae__pt_open(&f, file, a);
    if (s == SAE_OK && format == SAE_FORMAT_AUTO)
        s = detect(f, &format);
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    if (s == SAE_OK) {
        sae__tensor_set ts = sae__pt_tensors(f);
        if (format == SAE_FORMAT_OPENAI) {
            s = openai_config(f, &ts, opt, &c);
            if (s == SAE_OK)
                s = take_linear(&ts, "encoder.weight", "latent_bias", "decoder.weight",
                                "pre_bias", c.d_in, c.d_sae, a, &w);
        } else {
            s = icm_config(f, &ts, opt, &c);
            if (s == SAE_OK)
                s = take_linear(&ts, "W_enc.weight", "W_enc.bias", "W_dec.weight", "W_dec.bias",
                                c.d_in, c.d_sae, a, &w);
        }
        if (s != SAE_OK)
            sae__dict_weights_free(a, &w);
    }
    sae__pt_close(f);
    if (s == SAE_OK) {
        s = sae__dict_adopt(out, &c, &w, a); /* frees the arrays on failure */
        if (s != SAE_OK)
            sae__fail_prefix(s, file);
    }
    return s;
}
