/* sparsify.c: EleutherAI sparsify directories — cfg.json + sae.safetensors (FORMATS.md).
 *
 * sparsify SAEs are TopK with ReLU before selection, b_dec always subtracted from the input:
 *   encoder.weight (F, d_in) [= W_enc^T], encoder.bias (F), W_dec (F, d_in), b_dec (d_in).
 * Transcoders, skip connections and groupmax are refused with a clear message. */
#include <string.h>

#include "config_json.h"
#include "export.h"

#define WEIGHTS_FILE "sae.safetensors"
#define CONFIG_FILE "cfg.json"

static sae_status parse_cfg(const cJSON *root, const char *origin, sae_dict_config *c)
{
    int64_t expansion = 0, F = 0;
    const char *activation = NULL;
    bool transcode = false, skip = false;
    sae_status s;
    if ((s = sae__json_int(root, "d_in", true, 1, INT32_MAX, origin, &c->d_in)) ||
        (s = sae__json_int(root, "num_latents", false, 0, INT32_MAX, origin, &F)) ||
        (s = sae__json_int(root, "expansion_factor", false, 0, INT32_MAX, origin, &expansion)) ||
        (s = sae__json_string(root, "activation", origin, &activation)) ||
        (s = sae__json_bool(root, "transcode", origin, &transcode)) ||
        (s = sae__json_bool(root, "skip_connection", origin, &skip)))
        return s;
    if (activation && strcmp(activation, "topk"))
        return sae__fail(SAE_EUNSUPPORTED, "%s: activation \"%s\" is not supported", origin,
                         activation);
    if (transcode || skip)
        return sae__fail(SAE_EUNSUPPORTED, "%s: sparsify transcoders and skip connections are "
                                           "not supported", origin);
    if (F == 0)
        F = c->d_in * expansion; /* num_latents 0 means d_in * expansion_factor */
    if (F < 1 || F > INT32_MAX)
        return sae__fail(SAE_EFORMAT, "%s: neither num_latents nor expansion_factor gives a "
                                      "feature count", origin);
    c->d_sae = F;
    c->arch = SAE_ARCH_TOPK;
    c->flags = SAE_DICT_RELU_BEFORE_TOPK;
    return sae__json_int(root, "k", true, 1, F, origin, &c->k);
}

sae_status sae__load_sparsify(sae_dict **out, const char *dir, const sae_load_options *opt)
{
    char cfg_path[4096], weights_path[4096];
    if (!sae__path_join(cfg_path, sizeof cfg_path, dir, CONFIG_FILE) ||
        !sae__path_join(weights_path, sizeof weights_path, dir, WEIGHTS_FILE))
        return sae__fail(SAE_EINVAL, "path too long: %s", dir);
    cJSON *root = NULL;
    sae_status s = sae__json_load(cfg_path, SAE__MAX_CONFIG_BYTES, &root);
    if (s != SAE_OK)
        return s;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    s = parse_cfg(root, cfg_path, &c);
    cJSON_Delete(root);
    if (s != SAE_OK)
        return s;
    if (opt->k > 0)
        c.k = opt->k;
    sae_st_reader *reader = NULL;
    if ((s = sae_st_open(&reader, weights_path)))
        return s;
    const sae_allocator *a = sae__allocator(opt->allocator);
    sae__tensor_set ts = sae__st_tensor_set(reader, weights_path);
    const int64_t fd[2] = {c.d_sae, c.d_in}, vf[1] = {c.d_sae}, vd[1] = {c.d_in};
    float *W_enc = NULL, *b_enc = NULL, *W_dec = NULL, *b_dec = NULL;
    if (!(s = sae__tensors_take_f32(&ts, "encoder.weight", 2, fd, true, a, &W_enc)) &&
        !(s = sae__tensors_take_f32(&ts, "encoder.bias", 1, vf, false, a, &b_enc)) &&
        !(s = sae__tensors_take_f32(&ts, "W_dec", 2, fd, false, a, &W_dec)))
        s = sae__tensors_take_f32(&ts, "b_dec", 1, vd, false, a, &b_dec);
    sae_st_close(reader);
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.b_enc = b_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    if (s != SAE_OK) {
        float *arrays[] = {W_enc, b_enc, W_dec, b_dec};
        for (int i = 0; i < 4; i++)
            sae__free(a, arrays[i]);
        return s;
    }
    return sae__dict_adopt(out, &c, &w, a);
}

sae_status sae__save_sparsify(const sae_dict *d, const char *dir)
{
    const sae_dict_config *c = &d->config;
    if (c->arch != SAE_ARCH_TOPK)
        return sae__fail(SAE_EUNSUPPORTED, "sparsify stores TopK SAEs only, not %s",
                         sae_arch_name(c->arch));
    if ((c->flags & SAE_DICT_NO_B_DEC_INPUT) ||
        (c->input_norm != SAE_NORM_NONE && c->input_norm != SAE_NORM_SCALE))
        return sae__fail(SAE_EUNSUPPORTED, "sparsify always subtracts b_dec and has no per-token "
                                           "input normalisation");
    char path[4096];
    if (!sae__path_join(path, sizeof path, dir, WEIGHTS_FILE))
        return sae__fail(SAE_EINVAL, "path too long: %s", dir);
    sae__export e;
    sae_status s = sae__make_dir(dir);
    if (s == SAE_OK)
        s = sae__export_fold(d, true, true, &e); /* sparsify has no scale nor norm rescale */
    if (s != SAE_OK)
        return s;
    /* encoder.weight is W_enc^T (F, d_in). */
    const int64_t D = c->d_in, F = c->d_sae;
    float *enc_t = sae__alloc_array(d->allocator, (size_t)(D * F), sizeof(float));
    sae_st_writer *wr = NULL;
    if (!enc_t || (s = sae_st_writer_create(&wr)) != SAE_OK) {
        sae__free(d->allocator, enc_t);
        sae__export_free(d, &e);
        return enc_t ? s : SAE_ENOMEM;
    }
    for (int64_t i = 0; i < D; i++)
        for (int64_t j = 0; j < F; j++)
            enc_t[j * D + i] = e.w.W_enc[i * F + j];
    const int64_t fd[2] = {F, D}, vf[1] = {F}, vd[1] = {D};
    if (!(s = sae_st_writer_add(wr, "encoder.weight", SAE_DTYPE_F32, 2, fd, enc_t)) &&
        !(s = sae_st_writer_add(wr, "encoder.bias", SAE_DTYPE_F32, 1, vf, e.w.b_enc)) &&
        !(s = sae_st_writer_add(wr, "W_dec", SAE_DTYPE_F32, 2, fd, e.w.W_dec)) &&
        !(s = sae_st_writer_add(wr, "b_dec", SAE_DTYPE_F32, 1, vd, e.w.b_dec)))
        s = sae_st_writer_write(wr, path);
    sae_st_writer_free(wr);
    sae__free(d->allocator, enc_t);
    sae__export_free(d, &e);
    if (s != SAE_OK)
        return s;
    cJSON *cfg = cJSON_CreateObject();
    if (!cfg)
        return sae__fail(SAE_ENOMEM, "out of memory building cfg.json");
    cJSON_AddStringToObject(cfg, "activation", "topk");
    cJSON_AddNumberToObject(cfg, "expansion_factor", (double)(F / D > 0 ? F / D : 1));
    cJSON_AddBoolToObject(cfg, "normalize_decoder", true);
    cJSON_AddNumberToObject(cfg, "num_latents", (double)F);
    cJSON_AddNumberToObject(cfg, "k", (double)c->k);
    cJSON_AddBoolToObject(cfg, "multi_topk", false);
    cJSON_AddBoolToObject(cfg, "skip_connection", false);
    cJSON_AddBoolToObject(cfg, "transcode", false);
    cJSON_AddNumberToObject(cfg, "d_in", (double)D);
    s = sae__write_json(dir, CONFIG_FILE, cfg);
    cJSON_Delete(cfg);
    return s;
}
