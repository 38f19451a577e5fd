/* patch.c: sae_patch life cycle, the apply entry points (blocks of max_tokens rows, kind
 * dispatch, composition) and the two kinds that need no state of their own: splice and steer. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "patch_internal.h"

/* The default workspace, in rows: enough that each block (a) re-reads the encoder weights
 * seldom against its products, rows * (d_in + d_sae) ~ 2 d_in d_sae, a workspace about the size
 * of the two weight matrices (at d_in 768, d_sae 16384, blocks of 256 rows made a splice of 4096
 * rows 1.4-1.9x one encode + decode: the weights re-read and re-packed 16 times), and (b) has
 * the work to run on two threads (sae__threads_for), which one encode of the whole batch would
 * (blocks of 256 rows at d_in 64, d_sae 512 ran single-threaded: 1.4-1.6x). Between 256 and 1024
 * rows, which bounds the workspace at 4 KiB * (d_in + d_sae). */
static int64_t default_max_tokens(int64_t d_in, int64_t d_sae)
{
    const double weights = 2.0 * (double)d_in * (double)d_sae / (double)(d_in + d_sae);
    const double two_threads = 2.0 * SAE__WORK_PER_THREAD / ((double)d_in * (double)d_sae);
    const double rows = weights > two_threads ? weights : two_threads;
    return rows < 256 ? 256 : rows > 1024 ? 1024 : ((int64_t)rows + 63) / 64 * 64;
}

void *sae__patch_alloc(sae_patch *p, int64_t count, size_t size)
{
    void *q = sae__alloc_array(p->allocator, (size_t)(count > 0 ? count : 1), size);
    if (q)
        memset(q, 0, (size_t)(count > 0 ? count : 1) * size);
    return q;
}

sae_status sae__patch_check_feature(const sae_dict *dict, int32_t feature, const char *what)
{
    int64_t F = sae_dict_d_sae(dict);
    if (feature < 0 || feature >= F)
        return sae__fail(SAE_ERANGE, "%s: feature id %d is outside [0, %lld)", what, feature,
                         (long long)F);
    return SAE_OK;
}

void sae_patch_free(sae_patch *p)
{
    if (!p)
        return;
    sae_encoder_free(p->enc);
    void *owned[] = {p->codes, p->xa, p->xb, p->steer, p->feat, p->target, p->dirs,
                     p->delta_off, p->delta_idx, p->delta_val, p->zero_off,
                     p->rec_x, p->rec_off, p->rec_idx, p->rec_val};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(p->allocator, owned[i]);
    sae__free(p->allocator, p);
}

sae_status sae__patch_new(sae_patch **out, int32_t kind, const sae_dict *dict,
                          const sae_patch_options *options, bool encoder)
{
    if (!out || !dict)
        return sae__fail(SAE_EINVAL, "out and dict are required");
    *out = NULL;
    sae_patch_options o = SAE_PATCH_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, options, "sae_patch_options");
    if (s != SAE_OK)
        return s;
    if (o.n_threads < 0 || o.max_tokens < 0)
        return sae__fail(SAE_EINVAL, "patch options: negative n_threads (%d) or max_tokens (%lld)",
                         o.n_threads, (long long)o.max_tokens);
    /* Workspace sizes are products max_tokens * (d_in + d_sae); keep them in int64. */
    if (o.max_tokens > INT64_MAX / 4 / (sae_dict_d_in(dict) + sae_dict_d_sae(dict)))
        return sae__fail(SAE_EINVAL, "patch options: max_tokens %lld is too large",
                         (long long)o.max_tokens);
    const sae_allocator *a = sae__allocator(o.allocator);
    sae_patch *p = sae__alloc_array(a, 1, sizeof *p);
    if (!p)
        return SAE_ENOMEM;
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->dict = dict;
    p->allocator = a;
    p->d_in = sae_dict_d_in(dict);
    p->d_sae = sae_dict_d_sae(dict);
    p->max_tokens = o.max_tokens > 0 ? o.max_tokens : default_max_tokens(p->d_in, p->d_sae);
    if (encoder) {
        sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
        eo.n_threads = o.n_threads, eo.max_rows = p->max_tokens, eo.allocator = a;
        s = sae_encoder_create(&p->enc, dict, &eo);
        if (s == SAE_OK && !(p->codes = sae__patch_alloc(p, p->max_tokens * p->d_sae,
                                                           sizeof(float))))
            s = SAE_ENOMEM;
    }
    if (s != SAE_OK) {
        sae_patch_free(p);
        return s;
    }
    *out = p;
    return SAE_OK;
}

int32_t sae_patch_kind(const sae_patch *p) { return p ? p->kind : -1; }

/* ---- splice and steer ----------------------------------------------------------------------- */

sae_status sae_patch_create_splice(sae_patch **out, const sae_dict *dict, int32_t keep_error,
                                   const sae_patch_options *options)
{
    sae_status s = sae__patch_new(out, SAE_PATCH_SPLICE, dict, options, !keep_error);
    if (s != SAE_OK)
        return s;
    sae_patch *p = *out;
    p->keep_error = keep_error != 0;
    if (!p->keep_error && !(p->xa = sae__patch_alloc(p, p->max_tokens * p->d_in, sizeof(float)))) {
        sae_patch_free(p);
        *out = NULL;
        return SAE_ENOMEM;
    }
    return SAE_OK;
}

sae_status sae_steering_direction(float *out, int64_t n_out, const sae_dict *dict,
                                  int32_t feature, float alpha, int32_t normalize)
{
    if (!out || !dict)
        return sae__fail(SAE_EINVAL, "steering direction: out and dict are required");
    const int64_t d_in = sae_dict_d_in(dict);
    if (n_out != d_in)
        return sae__fail(SAE_ESHAPE, "steering direction: out has %lld elements, d_in is %lld",
                         (long long)n_out, (long long)d_in);
    sae_status s = sae__patch_check_feature(dict, feature, "steering direction");
    if (s != SAE_OK)
        return s;
    if (!isfinite(alpha))
        return sae__fail(SAE_ENUMERIC, "steering direction: alpha is %g", (double)alpha);
    double scale = alpha;
    if (normalize) {
        double norm = sae_dict_decoder_norms(dict)[feature];
        if (!(norm > 0))
            return sae__fail(SAE_ENUMERIC, "steering direction: decoder row %d has norm 0, "
                                           "cannot normalise", feature);
        scale /= norm;
    }
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    if ((s = sae_dict_get_weights(dict, &w)))
        return s;
    const float *row = w.W_dec + (int64_t)feature * d_in;
    for (int64_t i = 0; i < d_in; i++)
        out[i] = (float)(scale * row[i]);
    return SAE_OK;
}

sae_status sae_patch_create_steer(sae_patch **out, const sae_dict *dict, int32_t feature,
                                  float alpha, int32_t normalize, const sae_patch_options *options)
{
    sae_status s = sae__patch_new(out, SAE_PATCH_STEER, dict, options, false);
    if (s != SAE_OK)
        return s;
    sae_patch *p = *out;
    if (!(p->steer = sae__patch_alloc(p, p->d_in, sizeof(float))))
        s = SAE_ENOMEM;
    else
        s = sae_steering_direction(p->steer, p->d_in, dict, feature, alpha, normalize);
    if (s != SAE_OK) {
        sae_patch_free(p);
        *out = NULL;
    }
    return s;
}

/* ---- apply ---------------------------------------------------------------------------------- */

/* One block of n <= max_tokens rows. */
static sae_status apply_block(sae_patch *p, float *x, int64_t n, int64_t ld)
{
    const int64_t d_in = p->d_in;
    switch (p->kind) {
    case SAE_PATCH_RECORD:
        return sae__patch_record_block(p, x, n, ld);
    case SAE_PATCH_SPLICE: {
        /* x <- x_hat, through a workspace: the encoder's output must not alias its input. */
        sae_status s = sae_encoder_reconstruct(p->enc, n, x, ld, p->xa, d_in, NULL, 0);
        if (s != SAE_OK)
            return s;
        for (int64_t r = 0; r < n; r++)
            memcpy(x + r * ld, p->xa + r * d_in, sizeof(float) * (size_t)d_in);
        return SAE_OK;
    }
    case SAE_PATCH_STEER:
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < d_in; i++)
                x[r * ld + i] += p->steer[i];
        return SAE_OK;
    default:
        return sae__patch_edit_block(p, x, n, ld);
    }
}

static sae_status check_apply(const sae_patch *p, const float *x, int64_t n, int64_t ld)
{
    if (!p)
        return sae__fail(SAE_EINVAL, "patch is NULL");
    if (n < 0)
        return sae__fail(SAE_EINVAL, "patch apply: n_tokens %lld is negative", (long long)n);
    if (n > 0 && !x)
        return sae__fail(SAE_EINVAL, "patch apply: x is NULL");
    if (n > 0 && ld < p->d_in)
        return sae__fail(SAE_ESHAPE, "patch apply: leading dimension %lld is below d_in %lld",
                         (long long)ld, (long long)p->d_in);
    return SAE_OK;
}

sae_status sae_patch_apply(sae_patch *p, float *x, int64_t n, int64_t ld)
{
    sae_status s = check_apply(p, x, n, ld);
    if (s != SAE_OK || n == 0 || (p->kind == SAE_PATCH_SPLICE && p->keep_error))
        return s;
    if (p->kind == SAE_PATCH_RECORD && (s = sae__patch_record_room(p, n)))
        return s;
    /* A recording that runs out of non-zeros in a later block is undone: all or nothing. */
    const int64_t n_rec = p->n_rec, nnz_rec = p->nnz_rec;
    for (int64_t r0 = 0; r0 < n && s == SAE_OK; r0 += p->max_tokens)
        s = apply_block(p, x + r0 * ld, n - r0 < p->max_tokens ? n - r0 : p->max_tokens, ld);
    if (s != SAE_OK)
        p->n_rec = n_rec, p->nnz_rec = nnz_rec;
    return s;
}

sae_status sae_patch_apply_list(sae_patch *const *patches, int32_t n_patches, float *x,
                                int64_t n, int64_t ld)
{
    if (n_patches < 0 || (n_patches > 0 && !patches))
        return sae__fail(SAE_EINVAL, "patch list: %d patches at %p", n_patches,
                         (const void *)patches);
    for (int32_t i = 0; i < n_patches; i++) {
        if (!patches[i])
            return sae__fail(SAE_EINVAL, "patch list: patch %d is NULL", i);
        if (patches[i]->d_in != patches[0]->d_in)
            return sae__fail(SAE_ESHAPE, "patch list: patch %d has d_in %lld, patch 0 has %lld", i,
                             (long long)patches[i]->d_in, (long long)patches[0]->d_in);
    }
    for (int32_t i = 0; i < n_patches; i++) {
        sae_status s = sae_patch_apply(patches[i], x, n, ld);
        if (s != SAE_OK) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "patch %d", i);
            return sae__fail_prefix(s, prefix);
        }
    }
    return SAE_OK;
}
