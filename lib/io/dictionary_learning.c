/*
 * dictionary_learning.c: saprmarks/dictionary_learning trainer folders: ae.pt (torch.save of the
 * state dict) + config.json ({"trainer": {dict_class, activation_dim, dict_size, k, ...},
 * "buffer": {...}}), written by training.trainSAE.
 *
 * Layouts (d = activation_dim, F = dict_size), mapped to the canonical one of dict.h:
 *   AutoEncoder        bias [d] = b_dec, encoder.weight [F, d] = W_encᵀ, encoder.bias [F],
 *                      decoder.weight [d, F] = W_decᵀ; ReLU; b_dec subtracted from the input.
 *   AutoEncoderNew     encoder.weight, encoder.bias, decoder.weight, decoder.bias [d] = b_dec;
 *                      f = ReLU(encoder(x)): b_dec is NOT subtracted (SAE_DICT_NO_B_DEC_INPUT).
 *   GatedAutoEncoder   decoder_bias = b_dec, encoder.weight, gate_bias = b_gate,
 *                      mag_bias = b_mag, r_mag, decoder.weight; no b_enc.
 *   JumpReluAutoEncoder  W_enc [d, F], b_enc, W_dec [F, d], b_dec, threshold [F] as stored;
 *                      apply_b_dec_to_input is not stored and is False.
 *   AutoEncoderTopK    encoder.weight, encoder.bias, decoder.weight, b_dec, k (int scalar),
 *                      threshold (float scalar, -1 = not set by training): ReLU before top-k;
 *                      the threshold is kept as a vector for SAE_ENCODE_TOPK_THRESHOLD
 *                      (dictionary_learning's encode(use_threshold=True), -1 included).
 *   BatchTopKSAE       as AutoEncoderTopK; inference is encode(use_threshold=True):
 *                      f = ReLU(pre) where ReLU(pre) > threshold, i.e. SAE_ARCH_BATCHTOPK.
 *   MatryoshkaBatchTopKSAE  W_enc [d, F], b_enc, W_dec [F, d], b_dec, k, threshold, group_sizes;
 *                      after loading every group is active, so inference is BatchTopK's.
 *
 * norm_factor: trainSAE(normalize_activations=True) trains on x / norm_factor but calls
 * ae.scale_biases(norm_factor) before every save (biases and threshold times norm_factor), so
 * the saved weights already act on raw activations (features come out norm_factor times those
 * seen in training; reconstructions are in raw units). Nothing is applied here.
 *
 * Shapes are checked against activation_dim / dict_size from config.json, never inferred from
 * the tensors; for a square dictionary (d == F) only the config tells the layouts apart.
 * Note: newer upstream Gated/JumpReLU encode() multiply features by decoder norms; the oracle
 * (commit 60ec6bf) and these files use the weights as stored, as here.
 */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "config_json.h"
#include "torch_pt.h"

typedef enum dl_class {
    DL_AUTOENCODER, DL_AUTOENCODER_NEW, DL_GATED, DL_JUMPRELU, DL_TOPK, DL_BATCHTOPK,
    DL_MATRYOSHKA
} dl_class;

static const struct {
    const char *name;
    dl_class cls;
    const char *keys[8]; /* every tensor the class's state dict holds (strict, as upstream's
                            load_state_dict) */
} dl_classes[] = {
    {"AutoEncoder", DL_AUTOENCODER, {"bias", "encoder.weight", "encoder.bias", "decoder.weight"}},
    {"AutoEncoderNew", DL_AUTOENCODER_NEW,
     {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"}},
    {"GatedAutoEncoder", DL_GATED,
     {"decoder_bias", "encoder.weight", "r_mag", "gate_bias", "mag_bias", "decoder.weight"}},
    {"JumpReluAutoEncoder", DL_JUMPRELU, {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}},
    {"AutoEncoderTopK", DL_TOPK,
     {"encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k", "threshold"}},
    {"BatchTopKSAE", DL_BATCHTOPK,
     {"encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k", "threshold"}},
    {"MatryoshkaBatchTopKSAE", DL_MATRYOSHKA,
     {"W_enc", "b_enc", "W_dec", "b_dec", "k", "threshold", "group_sizes"}},
};

#define DL_PATH_MAX 4096

/* ae.pt and config.json from a directory or from the ae.pt file itself. */
static sae_status resolve_paths(const char *path, char ae[DL_PATH_MAX], char cfg[DL_PATH_MAX])
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sae__fail(SAE_ENOTFOUND, "%s: no such file or directory", path);
    if (S_ISDIR(st.st_mode)) {
        if (!sae__path_join(ae, DL_PATH_MAX, path, "ae.pt") ||
            !sae__path_join(cfg, DL_PATH_MAX, path, "config.json"))
            return sae__fail(SAE_EINVAL, "path too long: %s", path);
        if (stat(ae, &st) != 0)
            return sae__fail(SAE_ENOTFOUND, "%s: no ae.pt in this directory", path);
    } else {
        size_t n = strlen(path);
        if (n >= DL_PATH_MAX)
            return sae__fail(SAE_EINVAL, "path too long: %s", path);
        memcpy(ae, path, n + 1);
        char dir[DL_PATH_MAX];
        const char *slash = strrchr(path, '/');
        if (!slash)
            strcpy(dir, ".");
        else if (slash == path)
            strcpy(dir, "/");
        else {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
        if (!sae__path_join(cfg, DL_PATH_MAX, dir, "config.json"))
            return sae__fail(SAE_EINVAL, "path too long: %s", path);
    }
    if (stat(cfg, &st) != 0)
        return sae__fail(SAE_ENOTFOUND, "%s: not found; a dictionary_learning ae.pt needs the "
                         "config.json written beside it (its dict_class and sizes)", cfg);
    return SAE_OK;
}

/* What config.json says. */
typedef struct dl_cfg {
    dl_class cls;
    const char *cls_name;
    int64_t d, F, k;             /* k: 0 when absent */
    const char *lm_name, *submodule_name; /* borrowed from the cJSON tree, or NULL */
} dl_cfg;

static const char *json_str_or_null(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static sae_status parse_config(const cJSON *root, const char *cfg_path, dl_cfg *c)
{
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "trainer");
    if (!cJSON_IsObject(tr))
        return sae__fail(SAE_EFORMAT, "%s: no \"trainer\" object (not a dictionary_learning "
                         "config.json)", cfg_path);
    const cJSON *dc = cJSON_GetObjectItemCaseSensitive(tr, "dict_class");
    if (!cJSON_IsString(dc))
        return sae__fail(SAE_EFORMAT, "%s: trainer.dict_class is missing or not a string",
                         cfg_path);
    size_t i = 0, n = sizeof dl_classes / sizeof dl_classes[0];
    while (i < n && strcmp(dl_classes[i].name, dc->valuestring) != 0)
        i++;
    if (i == n)
        return sae__fail(SAE_EUNSUPPORTED, "%s: dict_class %s is not supported (AutoEncoder, "
                         "AutoEncoderNew, GatedAutoEncoder, JumpReluAutoEncoder, "
                         "AutoEncoderTopK, BatchTopKSAE, MatryoshkaBatchTopKSAE are)", cfg_path,
                         dc->valuestring);
    c->cls = dl_classes[i].cls;
    c->cls_name = dl_classes[i].name;
    sae_status s;
    if ((s = sae__json_int(tr, "activation_dim", true, 1, INT32_MAX, cfg_path, &c->d)) ||
        (s = sae__json_int(tr, "dict_size", true, 1, INT32_MAX, cfg_path, &c->F)) ||
        (s = sae__json_int(tr, "k", false, 1, INT32_MAX, cfg_path, &c->k)))
        return s;
    /* norm_factor is already folded into the saved biases (see the top of this file); only
     * check that it is a number when present. */
    double norm_factor = 1.0;
    if ((s = sae__json_number(tr, "norm_factor", cfg_path, &norm_factor)))
        return s;
    c->lm_name = json_str_or_null(tr, "lm_name");
    c->submodule_name = json_str_or_null(tr, "submodule_name");
    return SAE_OK;
}

/* Every tensor of the file must belong to the class (upstream loads with strict=True). */
static sae_status check_keys(const sae__tensor_set *ts, const dl_cfg *c)
{
    size_t ci = 0;
    while (dl_classes[ci].cls != c->cls)
        ci++;
    for (int64_t i = 0; i < ts->count; i++) {
        bool known = false;
        for (int j = 0; j < 8 && dl_classes[ci].keys[j] && !known; j++)
            known = strcmp(ts->items[i].name, dl_classes[ci].keys[j]) == 0;
        if (!known)
            return sae__fail(SAE_EFORMAT, "%s: tensor %s does not belong to a %s (is "
                             "config.json's dict_class right?)", ts->origin, ts->items[i].name,
                             c->cls_name);
    }
    return SAE_OK;
}

/* An int scalar tensor (k). *present = false when absent. */
static sae_status scalar_int(const sae__tensor_set *ts, const char *name, bool *present,
                             int64_t *out)
{
    const sae_tensor_info *t = sae__tensors_find(ts, name);
    *present = t != NULL;
    if (!t)
        return SAE_OK;
    if (t->ndim != 0) {
        char sh[96];
        sae__format_shape(sh, sizeof sh, t->ndim, t->shape);
        return sae__fail(SAE_ESHAPE, "%s: %s has shape %s, expected a scalar []", ts->origin,
                         name, sh);
    }
    if (t->dtype == SAE_DTYPE_I32) {
        int32_t v;
        memcpy(&v, t->data, sizeof v);
        *out = v;
    } else if (t->dtype == SAE_DTYPE_I64) {
        memcpy(out, t->data, sizeof *out);
    } else {
        return sae__fail(SAE_EFORMAT, "%s: %s is not an int32/int64 tensor", ts->origin, name);
    }
    return SAE_OK;
}

/* A float scalar tensor (threshold). *present = false when absent. */
static sae_status scalar_float(const sae__tensor_set *ts, const char *name,
                               const sae_allocator *a, bool *present, float *out)
{
    *present = sae__tensors_find(ts, name) != NULL;
    if (!*present)
        return SAE_OK;
    float *v = NULL;
    sae_status s = sae__tensors_take_f32(ts, name, 0, NULL, false, a, &v);
    if (s != SAE_OK)
        return s;
    *out = v[0];
    sae__free(a, v);
    if (!isfinite(*out))
        return sae__fail(SAE_ENUMERIC, "%s: %s is %g", ts->origin, name, (double)*out);
    return SAE_OK;
}

/* k and threshold of the TopK family into the config and weights. */
static sae_status take_topk(const sae__tensor_set *ts, const dl_cfg *c, const sae_load_options *opt,
                            const sae_allocator *a, sae_dict_config *dc, sae_dict_weights *w)
{
    bool has_k = false, has_t = false;
    int64_t k = 0;
    float threshold = -1.0f;
    sae_status s = scalar_int(ts, "k", &has_k, &k);
    if (s == SAE_OK)
        s = scalar_float(ts, "threshold", a, &has_t, &threshold);
    if (s != SAE_OK)
        return s;
    if (has_k && c->k > 0 && k != c->k)
        return sae__fail(SAE_EFORMAT, "%s: stores k = %lld but config.json says k = %lld",
                         ts->origin, (long long)k, (long long)c->k);
    if (!has_k)
        k = c->k;
    if (opt->k > 0)
        k = opt->k;
    if (k <= 0)
        return sae__fail(SAE_EFORMAT, "%s: no k in ae.pt or config.json; pass "
                         "sae_load_options.k", ts->origin);
    dc->k = k;
    bool batch = c->cls == DL_BATCHTOPK || c->cls == DL_MATRYOSHKA;
    if (batch && !has_t)
        return sae__fail(SAE_EFORMAT, "%s: a %s needs its threshold (inference uses it)",
                         ts->origin, c->cls_name);
    if (batch || has_t) {
        float *v = sae__alloc_array(a, (size_t)c->F, sizeof(float));
        if (!v)
            return SAE_ENOMEM;
        for (int64_t j = 0; j < c->F; j++)
            v[j] = threshold;
        w->threshold = v;
    }
    if (c->cls == DL_MATRYOSHKA && sae__tensors_find(ts, "group_sizes")) {
        /* Informational only: after loading every group is active. Check it sums to F. */
        const sae_tensor_info *g = sae__tensors_find(ts, "group_sizes");
        int64_t sum = 0;
        if (g->ndim != 1 || (g->dtype != SAE_DTYPE_I64 && g->dtype != SAE_DTYPE_I32))
            return sae__fail(SAE_EFORMAT, "%s: group_sizes is not a 1-D int tensor", ts->origin);
        for (int64_t i = 0; i < g->numel; i++) {
            int64_t v = 0;
            if (g->dtype == SAE_DTYPE_I64)
                memcpy(&v, (const char *)g->data + 8 * i, 8);
            else {
                int32_t v32;
                memcpy(&v32, (const char *)g->data + 4 * i, 4);
                v = v32;
            }
            if (v <= 0 || v > c->F)
                return sae__fail(SAE_EFORMAT, "%s: group_sizes[%lld] = %lld", ts->origin,
                                 (long long)i, (long long)v);
            sum += v;
        }
        if (sum != c->F)
            return sae__fail(SAE_EFORMAT, "%s: group_sizes sum to %lld, not dict_size %lld",
                             ts->origin, (long long)sum, (long long)c->F);
    }
    return SAE_OK;
}

static sae_status take_weights(const sae__tensor_set *ts, const dl_cfg *c,
                               const sae_load_options *opt, const sae_allocator *a,
                               sae_dict_config *dc, sae_dict_weights *w)
{
    const int64_t d = c->d, F = c->F;
    const int64_t Fd[2] = {F, d}, dF[2] = {d, F}, vF[1] = {F}, vd[1] = {d};
    float **W_enc = (float **)&w->W_enc, **b_enc = (float **)&w->b_enc;
    float **W_dec = (float **)&w->W_dec, **b_dec = (float **)&w->b_dec;
    sae_status s = check_keys(ts, c);
    if (s != SAE_OK)
        return s;
    bool topk_family = c->cls == DL_TOPK || c->cls == DL_BATCHTOPK || c->cls == DL_MATRYOSHKA;
    if (!topk_family && opt->k > 0)
        return sae__fail(SAE_EINVAL, "%s: k given for a %s, which has no k", ts->origin,
                         c->cls_name);
    switch (c->cls) {
    case DL_AUTOENCODER:
    case DL_AUTOENCODER_NEW:
    case DL_TOPK:
    case DL_BATCHTOPK: {
        /* nn.Linear layout: encoder.weight [F, d], decoder.weight [d, F]. */
        const char *bias = c->cls == DL_AUTOENCODER       ? "bias"
                           : c->cls == DL_AUTOENCODER_NEW ? "decoder.bias"
                                                          : "b_dec";
        if ((s = sae__tensors_take_f32(ts, "encoder.weight", 2, Fd, true, a, W_enc)) ||
            (s = sae__tensors_take_f32(ts, "encoder.bias", 1, vF, false, a, b_enc)) ||
            (s = sae__tensors_take_f32(ts, "decoder.weight", 2, dF, true, a, W_dec)) ||
            (s = sae__tensors_take_f32(ts, bias, 1, vd, false, a, b_dec)))
            return s;
        dc->arch = c->cls == DL_TOPK        ? SAE_ARCH_TOPK
                   : c->cls == DL_BATCHTOPK ? SAE_ARCH_BATCHTOPK
                                            : SAE_ARCH_STANDARD;
        if (c->cls == DL_AUTOENCODER_NEW)
            dc->flags |= SAE_DICT_NO_B_DEC_INPUT;
        if (c->cls == DL_TOPK || c->cls == DL_BATCHTOPK) {
            dc->flags |= SAE_DICT_RELU_BEFORE_TOPK;
            s = take_topk(ts, c, opt, a, dc, w);
        }
        return s;
    }
    case DL_GATED:
        if ((s = sae__tensors_take_f32(ts, "encoder.weight", 2, Fd, true, a, W_enc)) ||
            (s = sae__tensors_take_f32(ts, "decoder.weight", 2, dF, true, a, W_dec)) ||
            (s = sae__tensors_take_f32(ts, "decoder_bias", 1, vd, false, a, b_dec)) ||
            (s = sae__tensors_take_f32(ts, "gate_bias", 1, vF, false, a, (float **)&w->b_gate)) ||
            (s = sae__tensors_take_f32(ts, "mag_bias", 1, vF, false, a, (float **)&w->b_mag)) ||
            (s = sae__tensors_take_f32(ts, "r_mag", 1, vF, false, a, (float **)&w->r_mag)))
            return s;
        dc->arch = SAE_ARCH_GATED;
        return SAE_OK;
    case DL_JUMPRELU:
    case DL_MATRYOSHKA:
        /* nn.Parameter layout, as SAELens: W_enc [d, F], W_dec [F, d]. */
        if ((s = sae__tensors_take_f32(ts, "W_enc", 2, dF, false, a, W_enc)) ||
            (s = sae__tensors_take_f32(ts, "b_enc", 1, vF, false, a, b_enc)) ||
            (s = sae__tensors_take_f32(ts, "W_dec", 2, Fd, false, a, W_dec)) ||
            (s = sae__tensors_take_f32(ts, "b_dec", 1, vd, false, a, b_dec)))
            return s;
        if (c->cls == DL_JUMPRELU) {
            dc->arch = SAE_ARCH_JUMPRELU;
            dc->flags |= SAE_DICT_NO_B_DEC_INPUT; /* apply_b_dec_to_input: not stored, False */
            return sae__tensors_take_f32(ts, "threshold", 1, vF, false, a,
                                         (float **)&w->threshold);
        }
        dc->arch = SAE_ARCH_BATCHTOPK;
        dc->flags |= SAE_DICT_RELU_BEFORE_TOPK;
        return take_topk(ts, c, opt, a, dc, w);
    }
    return sae__fail(SAE_EUNSUPPORTED, "%s: unhandled dict_class", ts->origin);
}

sae_status sae__load_dictionary_learning(sae_dict **out, const char *path,
                                         const sae_load_options *opt)
{
    if (!out || !path)
        return sae__fail(SAE_EINVAL, "out and path are required");
    *out = NULL;
    const sae_load_options defaults = SAE_LOAD_OPTIONS_INIT;
    if (!opt)
        opt = &defaults;
    const sae_allocator *a = sae__allocator(opt->allocator);
    char ae[DL_PATH_MAX], cfg_path[DL_PATH_MAX];
    sae_status s = resolve_paths(path, ae, cfg_path);
    if (s != SAE_OK)
        return s;
    cJSON *root = NULL;
    if ((s = sae__json_load(cfg_path, SAE__MAX_CONFIG_BYTES, &root)) != SAE_OK)
        return s;
    dl_cfg c;
    memset(&c, 0, sizeof c);
    s = parse_config(root, cfg_path, &c);
    sae__pt_file *pt = NULL;
    if (s == SAE_OK)
        s = sae__pt_open(&pt, ae, a);
    sae_dict_config dc = SAE_DICT_CONFIG_INIT;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    if (s == SAE_OK) {
        sae__tensor_set ts = sae__pt_tensors(pt);
        dc.d_in = c.d;
        dc.d_sae = c.F;
        dc.input_norm = SAE_NORM_NONE;
        dc.model_name = c.lm_name;
        dc.hook_name = c.submodule_name;
        s = take_weights(&ts, &c, opt, a, &dc, &w);
        if (s != SAE_OK)
            sae__dict_weights_free(a, &w);
    }
    sae__pt_close(pt);
    if (s == SAE_OK) {
        s = sae__dict_adopt(out, &dc, &w, a); /* frees the arrays on failure */
        if (s != SAE_OK)
            sae__fail_prefix(s, ae);
    }
    cJSON_Delete(root); /* the metadata strings were copied by the dictionary */
    return s;
}
