/* export.c: folding conventions into weights for writers, and writing configs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export.h"

/* Copy src (n floats) into a fresh array; a NULL src gives zeros when `zeros`, else NULL. */
static sae_status copy_vec(const sae_dict *d, const float *src, int64_t n, bool zeros,
                           float **out)
{
    *out = NULL;
    if (!src && !zeros)
        return SAE_OK;
    *out = sae__alloc_array(d->allocator, (size_t)n, sizeof(float));
    if (!*out)
        return SAE_ENOMEM;
    if (src)
        memcpy(*out, src, sizeof(float) * (size_t)n);
    else
        memset(*out, 0, sizeof(float) * (size_t)n);
    return SAE_OK;
}

void sae__export_free(const sae_dict *d, sae__export *e)
{
    const float *arrays[] = {e->w.W_enc, e->w.b_enc,  e->w.W_dec, e->w.b_dec,
                             e->w.threshold, e->w.b_gate, e->w.b_mag, e->w.r_mag};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        sae__free(d->allocator, (void *)arrays[i]);
    memset(e, 0, sizeof *e);
}

sae_status sae__export_fold(const sae_dict *d, bool fold_scale, bool fold_rescale,
                            sae__export *out)
{
    const int64_t D = d->config.d_in, F = d->config.d_sae;
    memset(out, 0, sizeof *out);
    out->w = (sae_dict_weights)SAE_DICT_WEIGHTS_INIT;
    out->d_in = D, out->d_sae = F;
    const float *src[8] = {d->W_enc,     d->b_enc,  d->W_dec, d->b_dec,
                           d->threshold, d->b_gate, d->b_mag, d->r_mag};
    const int64_t len[8] = {D * F, F, D * F, D, F, F, F, F};
    /* Biases a dictionary may leave NULL are materialised as zeros: file formats want them. */
    const bool gated = d->config.arch == SAE_ARCH_GATED;
    const bool zeros[8] = {false, !gated, false, true, false, gated, gated, gated};
    float *dst[8] = {NULL};
    for (int i = 0; i < 8; i++)
        if (copy_vec(d, src[i], len[i], zeros[i], &dst[i]) != SAE_OK) {
            for (int j = 0; j < i; j++)
                sae__free(d->allocator, dst[j]);
            return SAE_ENOMEM;
        }
    float *W_enc = dst[0], *b_enc = dst[1], *W_dec = dst[2], *b_dec = dst[3];
    out->w.W_enc = W_enc, out->w.b_enc = b_enc, out->w.W_dec = W_dec, out->w.b_dec = b_dec;
    out->w.threshold = dst[4], out->w.b_gate = dst[5], out->w.b_mag = dst[6], out->w.r_mag = dst[7];
    if (fold_scale && d->config.input_norm == SAE_NORM_SCALE && d->config.act_scale != 1.0f) {
        const float sc = d->config.act_scale;
        for (int64_t i = 0; i < D * F; i++)
            W_enc[i] *= sc, W_dec[i] /= sc;
        for (int64_t i = 0; b_dec && i < D; i++)
            b_dec[i] /= sc;
    }
    if (fold_rescale && (d->config.flags & SAE_DICT_RESCALE_BY_DECODER_NORM)) {
        const float *n = d->decoder_norms;
        for (int64_t i = 0; i < D; i++)
            for (int64_t j = 0; j < F; j++)
                W_enc[i * F + j] *= n[j];
        float *b_gate = dst[5], *b_mag = dst[6];
        for (int64_t j = 0; j < F; j++) {
            if (b_enc)
                b_enc[j] *= n[j];
            if (b_gate) /* the gate's sign and the magnitude both scale with n */
                b_gate[j] *= n[j], b_mag[j] *= n[j];
            for (int64_t i = 0; i < D; i++)
                W_dec[j * D + i] /= n[j];
        }
    }
    return SAE_OK;
}

sae_status sae__make_dir(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return sae__fail(SAE_EINVAL, "path too long: %s", dir);
    /* mkdir -p: create each missing component in turn. */
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(path, 0777) != 0 && !(errno == EEXIST && stat(path, &st) == 0 &&
                                        S_ISDIR(st.st_mode)))
            return sae__fail(SAE_EIO, "%s: cannot create directory %s: %s", dir, path,
                             strerror(errno));
        *p = saved;
        if (saved == '\0')
            return SAE_OK;
    }
}

static sae_status write_text(FILE *f, void *user)
{
    const char *text = user;
    size_t n = strlen(text);
    return fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF
               ? SAE_OK
               : sae__fail(SAE_EIO, "write failed: %s", strerror(errno));
}

sae_status sae__write_json(const char *dir, const char *name, const cJSON *json)
{
    char path[4096];
    if (!sae__path_join(path, sizeof path, dir, name))
        return sae__fail(SAE_EINVAL, "path too long: %s/%s", dir, name);
    char *text = cJSON_Print(json);
    if (!text)
        return sae__fail(SAE_ENOMEM, "out of memory printing %s", name);
    sae_status s = sae__write_file_atomic(path, write_text, text);
    cJSON_free(text);
    return s;
}
