/* saelens.c: SAELens directories — cfg.json + sae_weights.safetensors (FORMATS.md).
 *
 * Reads v6 configs (architecture, apply_b_dec_to_input, normalize_activations, k,
 * rescale_acts_by_decoder_norm, metadata{model_name, hook_name}) and pre-6.0 flat ones
 * (hook_point, activation_fn_str / activation_fn_kwargs.k, boolean normalize_activations).
 * Writes v6 configs for every architecture; BatchTopK is written as JumpReLU, as SAELens does. */
#include <math.h>
#include <string.h>

#include "config_json.h"
#include "export.h"

#define WEIGHTS_FILE "sae_weights.safetensors"
#define CONFIG_FILE "cfg.json"

/* What cfg.json says, before the weights are read. */
typedef struct saelens_cfg {
    sae_dict_config c;
    bool log_threshold;   /* training checkpoint: threshold stored as log */
} saelens_cfg;

static sae_status parse_norm(const cJSON *root, const char *origin, const char *dir,
                             sae_dict_config *c)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "normalize_activations");
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return SAE_OK;
    const char *mode = cJSON_IsTrue(v) ? "expected_average_only_in" : NULL;
    if (!mode && !cJSON_IsString(v))
        return sae__fail(SAE_EFORMAT, "%s: normalize_activations is neither a string nor a bool",
                         origin);
    if (!mode)
        mode = v->valuestring;
    if (!strcmp(mode, "none"))
        return SAE_OK;
    if (!strcmp(mode, "constant_norm_rescale")) {
        c->input_norm = SAE_NORM_CONSTANT_RESCALE;
        return SAE_OK;
    }
    if (!strcmp(mode, "layer_norm")) {
        c->input_norm = SAE_NORM_LAYER_NORM;
        return SAE_OK;
    }
    if (!strcmp(mode, "expected_average_only_in")) {
        /* The factor lives in activation_scaler.json when the run kept it separate; a finished
         * SAELens run folds it into the weights and then there is nothing to apply. */
        char path[4096];
        cJSON *scaler = NULL;
        if (!sae__path_join(path, sizeof path, dir, "activation_scaler.json"))
            return sae__fail(SAE_EINVAL, "path too long: %s", dir);
        sae_status s = sae__json_load(path, SAE__MAX_CONFIG_BYTES, &scaler);
        if (s == SAE_ENOTFOUND) {
            sae_clear_error();
            return SAE_OK;
        }
        if (s != SAE_OK)
            return s;
        double f = 1.0;
        s = sae__json_number(scaler, "scaling_factor", path, &f);
        cJSON_Delete(scaler);
        if (s == SAE_OK && !(f > 0))
            s = sae__fail(SAE_ENUMERIC, "%s: scaling_factor %g is not positive", path, f);
        if (s == SAE_OK && f != 1.0)
            c->input_norm = SAE_NORM_SCALE, c->act_scale = (float)f;
        return s;
    }
    return sae__fail(SAE_EUNSUPPORTED, "%s: normalize_activations \"%s\" is not supported",
                     origin, mode);
}

static sae_status parse_arch(const cJSON *root, const char *origin, saelens_cfg *cfg)
{
    const char *arch = NULL, *act_fn = NULL;
    sae_status s = sae__json_string(root, "architecture", origin, &arch);
    if (s == SAE_OK)
        s = sae__json_string(root, "activation_fn_str", origin, &act_fn);
    if (s != SAE_OK)
        return s;
    if (!arch) /* pre-6.0: architecture may be absent; the activation function says topk */
        arch = act_fn && !strcmp(act_fn, "topk") ? "topk" : "standard";
    static const struct { const char *name; int32_t arch; } known[] = {
        {"standard", SAE_ARCH_STANDARD}, {"topk", SAE_ARCH_TOPK},
        {"batchtopk", SAE_ARCH_BATCHTOPK}, {"matryoshka_batchtopk", SAE_ARCH_BATCHTOPK},
        {"jumprelu", SAE_ARCH_JUMPRELU}, {"gated", SAE_ARCH_GATED},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(arch, known[i].name)) {
            cfg->c.arch = known[i].arch;
            return SAE_OK;
        }
    return sae__fail(SAE_EUNSUPPORTED, "%s: architecture \"%s\" is not supported", origin, arch);
}

static sae_status parse_cfg(const cJSON *root, const char *origin, const char *dir,
                            saelens_cfg *cfg)
{
    sae_dict_config *c = &cfg->c;
    sae_status s = sae__json_int(root, "d_in", true, 1, INT32_MAX, origin, &c->d_in);
    if (s == SAE_OK)
        s = sae__json_int(root, "d_sae", true, 1, INT32_MAX, origin, &c->d_sae);
    if (s == SAE_OK)
        s = parse_arch(root, origin, cfg);
    bool apply_b_dec = true, rescale = false;
    if (s == SAE_OK)
        s = sae__json_bool(root, "apply_b_dec_to_input", origin, &apply_b_dec);
    if (s == SAE_OK)
        s = sae__json_bool(root, "rescale_acts_by_decoder_norm", origin, &rescale);
    if (s == SAE_OK && (c->arch == SAE_ARCH_TOPK || c->arch == SAE_ARCH_BATCHTOPK)) {
        s = sae__json_int(root, "k", false, 1, c->d_sae, origin, &c->k);
        const cJSON *kw = cJSON_GetObjectItemCaseSensitive(root, "activation_fn_kwargs");
        if (s == SAE_OK && c->k == 0 && cJSON_IsObject(kw)) /* pre-6.0 */
            s = sae__json_int(kw, "k", false, 1, c->d_sae, origin, &c->k);
        if (s == SAE_OK && c->arch == SAE_ARCH_TOPK && c->k == 0)
            s = sae__fail(SAE_EFORMAT, "%s: a topk SAE needs k", origin);
    }
    if (s == SAE_OK)
        s = parse_norm(root, origin, dir, c);
    if (s != SAE_OK)
        return s;
    c->flags = (apply_b_dec ? 0u : SAE_DICT_NO_B_DEC_INPUT) |
               (rescale ? SAE_DICT_RESCALE_BY_DECODER_NORM : 0u);
    /* Metadata: v6 nests it; pre-6.0 configs are flat. */
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const cJSON *src = cJSON_IsObject(meta) ? meta : root;
    const char *model = NULL, *hook = NULL;
    if ((s = sae__json_string(src, "model_name", origin, &model)) ||
        (s = sae__json_string(src, "hook_name", origin, &hook)))
        return s;
    if (!hook && (s = sae__json_string(root, "hook_point", origin, &hook)))
        return s;
    c->model_name = model, c->hook_name = hook;
    return SAE_OK;
}

/* Take the weights for `c` from the tensor set into w (arrays from allocator a). */
static sae_status take_weights(const sae__tensor_set *ts, saelens_cfg *cfg, const sae_allocator *a,
                               sae_dict_weights *w)
{
    const sae_dict_config *c = &cfg->c;
    const int64_t D = c->d_in, F = c->d_sae;
    const int64_t enc[2] = {D, F}, dec[2] = {F, D}, vf[1] = {F}, vd[1] = {D};
    sae_status s;
    if ((s = sae__tensors_take_f32(ts, "W_enc", 2, enc, false, a, (float **)&w->W_enc)) ||
        (s = sae__tensors_take_f32(ts, "W_dec", 2, dec, false, a, (float **)&w->W_dec)) ||
        (s = sae__tensors_take_f32(ts, "b_dec", 1, vd, false, a, (float **)&w->b_dec)))
        return s;
    if (c->arch == SAE_ARCH_GATED) {
        if ((s = sae__tensors_take_f32(ts, "b_gate", 1, vf, false, a, (float **)&w->b_gate)) ||
            (s = sae__tensors_take_f32(ts, "b_mag", 1, vf, false, a, (float **)&w->b_mag)) ||
            (s = sae__tensors_take_f32(ts, "r_mag", 1, vf, false, a, (float **)&w->r_mag)))
            return s;
    } else if ((s = sae__tensors_take_f32(ts, "b_enc", 1, vf, false, a, (float **)&w->b_enc))) {
        return s;
    }
    if (c->arch == SAE_ARCH_JUMPRELU || c->arch == SAE_ARCH_BATCHTOPK) {
        /* Inference files store threshold; training checkpoints store log_threshold. */
        const char *name = sae__tensors_find(ts, "threshold") ? "threshold" : "log_threshold";
        if ((s = sae__tensors_take_f32(ts, name, 1, vf, false, a, (float **)&w->threshold)))
            return s;
        if (!strcmp(name, "log_threshold"))
            for (int64_t j = 0; j < F; j++)
                ((float *)w->threshold)[j] = expf(w->threshold[j]);
    }
    /* Older files: decode scales features by scaling_factor; fold it into W_dec rows. */
    if (sae__tensors_find(ts, "scaling_factor")) {
        float *sf = NULL;
        if ((s = sae__tensors_take_f32(ts, "scaling_factor", 1, vf, false, a, &sf)))
            return s;
        for (int64_t j = 0; j < F; j++)
            for (int64_t i = 0; i < D; i++)
                ((float *)w->W_dec)[j * D + i] *= sf[j];
        sae__free(a, sf);
    }
    return SAE_OK;
}

sae_status sae__load_saelens(sae_dict **out, const char *dir, const sae_load_options *opt)
{
    char cfg_path[4096], weights_path[4096];
    if (!sae__path_join(cfg_path, sizeof cfg_path, dir, CONFIG_FILE) ||
        !sae__path_join(weights_path, sizeof weights_path, dir, WEIGHTS_FILE))
        return sae__fail(SAE_EINVAL, "path too long: %s", dir);
    cJSON *root = NULL;
    sae_status s = sae__json_load(cfg_path, SAE__MAX_CONFIG_BYTES, &root);
    if (s != SAE_OK)
        return s;
    saelens_cfg cfg = {.c = SAE_DICT_CONFIG_INIT};
    s = parse_cfg(root, cfg_path, dir, &cfg);
    if (s == SAE_OK && opt->k > 0) {
        if (cfg.c.arch != SAE_ARCH_TOPK && cfg.c.arch != SAE_ARCH_BATCHTOPK)
            s = sae__fail(SAE_EINVAL, "%s: k given for a %s SAE", cfg_path,
                          sae_arch_name(cfg.c.arch));
        cfg.c.k = opt->k;
    }
    sae_st_reader *reader = NULL;
    if (s == SAE_OK)
        s = sae_st_open(&reader, weights_path);
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    const sae_allocator *a = sae__allocator(opt->allocator);
    if (s == SAE_OK) {
        sae__tensor_set ts = sae__st_tensor_set(reader, weights_path);
        s = take_weights(&ts, &cfg, a, &w);
        if (s != SAE_OK)
            sae__dict_weights_free(a, &w);
    }
    if (s == SAE_OK) {
        s = sae__dict_adopt(out, &cfg.c, &w, a);
        if (s != SAE_OK)
            sae__fail_prefix(s, dir);
    }
    sae_st_close(reader);
    cJSON_Delete(root); /* model/hook strings were copied by the dictionary */
    return s;
}

/* ---- writing -------------------------------------------------------------------------------- */

static const char *norm_name(int32_t norm)
{
    switch (norm) {
    case SAE_NORM_CONSTANT_RESCALE: return "constant_norm_rescale";
    case SAE_NORM_LAYER_NORM: return "layer_norm";
    default: return "none"; /* SAE_NORM_SCALE is folded into the weights */
    }
}

static cJSON *make_cfg(const sae_dict *d)
{
    const sae_dict_config *c = &d->config;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_CreateObject();
    if (!root || !meta) {
        cJSON_Delete(root);
        cJSON_Delete(meta);
        return NULL;
    }
    bool thresholded = c->arch == SAE_ARCH_JUMPRELU || c->arch == SAE_ARCH_BATCHTOPK;
    const char *arch = thresholded ? "jumprelu" : sae_arch_name(c->arch);
    cJSON_AddStringToObject(root, "architecture", arch);
    cJSON_AddNumberToObject(root, "d_in", (double)c->d_in);
    cJSON_AddNumberToObject(root, "d_sae", (double)c->d_sae);
    cJSON_AddStringToObject(root, "dtype", "float32");
    cJSON_AddStringToObject(root, "device", "cpu");
    cJSON_AddBoolToObject(root, "apply_b_dec_to_input", !(c->flags & SAE_DICT_NO_B_DEC_INPUT));
    cJSON_AddStringToObject(root, "normalize_activations", norm_name(c->input_norm));
    cJSON_AddStringToObject(root, "reshape_activations", "none");
    if (c->arch == SAE_ARCH_TOPK) {
        cJSON_AddNumberToObject(root, "k", (double)c->k);
        cJSON_AddBoolToObject(root, "rescale_acts_by_decoder_norm",
                              (c->flags & SAE_DICT_RESCALE_BY_DECODER_NORM) != 0);
    }
    if (c->model_name)
        cJSON_AddStringToObject(meta, "model_name", c->model_name);
    if (c->hook_name)
        cJSON_AddStringToObject(meta, "hook_name", c->hook_name);
    cJSON_AddStringToObject(meta, "libsae_version", sae_version_string());
    cJSON_AddItemToObject(root, "metadata", meta);
    return root;
}

static sae_status write_weights(const sae__export *e, int32_t arch, const char *path)
{
    sae_st_writer *wr = NULL;
    sae_status s = sae_st_writer_create(&wr);
    if (s != SAE_OK)
        return s;
    const int64_t enc[2] = {e->d_in, e->d_sae}, dec[2] = {e->d_sae, e->d_in};
    const int64_t vf[1] = {e->d_sae}, vd[1] = {e->d_in};
    struct { const char *name; const float *data; int nd; const int64_t *shape; } t[] = {
        {"W_enc", e->w.W_enc, 2, enc},       {"W_dec", e->w.W_dec, 2, dec},
        {"b_enc", e->w.b_enc, 1, vf},        {"b_dec", e->w.b_dec, 1, vd},
        {"threshold", e->w.threshold, 1, vf}, {"b_gate", e->w.b_gate, 1, vf},
        {"b_mag", e->w.b_mag, 1, vf},        {"r_mag", e->w.r_mag, 1, vf},
    };
    for (size_t i = 0; s == SAE_OK && i < sizeof t / sizeof t[0]; i++)
        if (t[i].data && !(arch == SAE_ARCH_TOPK && !strcmp(t[i].name, "threshold")))
            s = sae_st_writer_add(wr, t[i].name, SAE_DTYPE_F32, t[i].nd, t[i].shape, t[i].data);
    if (s == SAE_OK)
        s = sae_st_writer_write(wr, path);
    sae_st_writer_free(wr);
    return s;
}

sae_status sae__save_saelens(const sae_dict *d, const char *dir)
{
    char path[4096];
    if (!sae__path_join(path, sizeof path, dir, WEIGHTS_FILE))
        return sae__fail(SAE_EINVAL, "path too long: %s", dir);
    sae_status s = sae__make_dir(dir);
    sae__export e;
    if (s == SAE_OK)
        /* SAELens rescales by decoder norms for TopK only: fold it for the others. */
        s = sae__export_fold(d, true, d->config.arch != SAE_ARCH_TOPK, &e);
    if (s != SAE_OK)
        return s;
    s = write_weights(&e, d->config.arch, path);
    sae__export_free(d, &e);
    if (s != SAE_OK)
        return s;
    cJSON *cfg = make_cfg(d);
    if (!cfg)
        return sae__fail(SAE_ENOMEM, "out of memory building cfg.json");
    s = sae__write_json(dir, CONFIG_FILE, cfg);
    cJSON_Delete(cfg);
    return s;
}
