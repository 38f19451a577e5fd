/* dict.c: sae_dict — validation, construction (copy / borrow / adopt), getters. */
#include <math.h>
#include <string.h>

#include "dict_internal.h"
#include "io/io_internal.h"

static const char *const arch_names[] = {"standard", "topk", "batchtopk", "jumprelu", "gated"};

const char *sae_arch_name(int32_t arch)
{
    return arch >= 0 && arch <= SAE_ARCH_GATED ? arch_names[arch] : "unknown";
}

/* The arrays of a weights struct, with their names and lengths, for uniform checks. */
typedef struct weight_slot {
    const char *name;
    float **field; /* in sae_dict_weights (cast away const: we only write adopted pointers) */
    int64_t length;
} weight_slot;

static int weight_slots(sae_dict_weights *w, const sae_dict_config *c, weight_slot slots[8])
{
    int64_t enc = c->d_in * c->d_sae;
    weight_slot all[8] = {
        {"W_enc", (float **)&w->W_enc, enc},       {"b_enc", (float **)&w->b_enc, c->d_sae},
        {"W_dec", (float **)&w->W_dec, enc},       {"b_dec", (float **)&w->b_dec, c->d_in},
        {"threshold", (float **)&w->threshold, c->d_sae},
        {"b_gate", (float **)&w->b_gate, c->d_sae}, {"b_mag", (float **)&w->b_mag, c->d_sae},
        {"r_mag", (float **)&w->r_mag, c->d_sae},
    };
    memcpy(slots, all, sizeof all);
    return 8;
}

static sae_status check_config(const sae_dict_config *c)
{
    if (c->arch < SAE_ARCH_STANDARD || c->arch > SAE_ARCH_GATED)
        return sae__fail(SAE_EINVAL, "unknown architecture %d", c->arch);
    if (c->d_in < 1 || c->d_sae < 1)
        return sae__fail(SAE_EINVAL, "d_in and d_sae must be positive (got %lld, %lld)",
                         (long long)c->d_in, (long long)c->d_sae);
    /* Feature ids are int32 in sparse codes; d_in * d_sae must fit in memory arithmetic. */
    if (c->d_sae > INT32_MAX || c->d_in > INT32_MAX || c->d_in > INT64_MAX / 4 / c->d_sae)
        return sae__fail(SAE_EINVAL, "dictionary of %lld x %lld is too large",
                         (long long)c->d_in, (long long)c->d_sae);
    bool topk = c->arch == SAE_ARCH_TOPK || c->arch == SAE_ARCH_BATCHTOPK;
    if (c->arch == SAE_ARCH_TOPK && (c->k < 1 || c->k > c->d_sae))
        return sae__fail(SAE_EINVAL, "topk needs 1 <= k <= d_sae (%lld), got k = %lld",
                         (long long)c->d_sae, (long long)c->k);
    if (topk && (c->k < 0 || c->k > c->d_sae))
        return sae__fail(SAE_EINVAL, "k = %lld is outside 0..d_sae (%lld)", (long long)c->k,
                         (long long)c->d_sae);
    if (!topk && c->k != 0)
        return sae__fail(SAE_EINVAL, "k = %lld given for a %s dictionary, which has no k",
                         (long long)c->k, sae_arch_name(c->arch));
    const uint32_t known = SAE_DICT_NO_B_DEC_INPUT | SAE_DICT_RELU_BEFORE_TOPK |
                           SAE_DICT_RESCALE_BY_DECODER_NORM;
    if (c->flags & ~known)
        return sae__fail(SAE_EINVAL, "unknown dictionary flags 0x%x", c->flags & ~known);
    if (c->input_norm < SAE_NORM_NONE || c->input_norm > SAE_NORM_LAYER_NORM)
        return sae__fail(SAE_EINVAL, "unknown input normalisation %d", c->input_norm);
    if (!isfinite(c->act_scale) || c->act_scale < 0)
        return sae__fail(SAE_ENUMERIC, "act_scale must be finite and positive, got %g",
                         (double)c->act_scale);
    return SAE_OK;
}

static sae_status check_weights(const sae_dict_config *c, sae_dict_weights *w)
{
    if (!w->W_enc || !w->W_dec)
        return sae__fail(SAE_EINVAL, "W_enc and W_dec are required");
    bool gated = c->arch == SAE_ARCH_GATED;
    bool thresholded = c->arch == SAE_ARCH_JUMPRELU || c->arch == SAE_ARCH_BATCHTOPK;
    if (thresholded && !w->threshold)
        return sae__fail(SAE_EINVAL, "a %s dictionary needs a threshold vector",
                         sae_arch_name(c->arch));
    if (gated && w->b_enc)
        return sae__fail(SAE_EINVAL, "gated dictionaries have no b_enc (use b_gate and b_mag)");
    if (!gated && (w->b_gate || w->b_mag || w->r_mag))
        return sae__fail(SAE_EINVAL, "b_gate, b_mag and r_mag belong to gated dictionaries");
    if (w->threshold && !thresholded && c->arch != SAE_ARCH_TOPK)
        return sae__fail(SAE_EINVAL, "a %s dictionary has no threshold", sae_arch_name(c->arch));
    weight_slot slots[8];
    int n = weight_slots(w, c, slots);
    for (int i = 0; i < n; i++) {
        if (!*slots[i].field)
            continue;
        int64_t bad = sae__first_nonfinite(*slots[i].field, slots[i].length);
        if (bad >= 0)
            return sae__fail(SAE_ENUMERIC, "%s[%lld] is %g: weights must be finite",
                             slots[i].name, (long long)bad, (double)(*slots[i].field)[bad]);
    }
    return SAE_OK;
}

void sae__dict_weights_free(const sae_allocator *a, const sae_dict_weights *w)
{
    const float *owned[] = {w->W_enc, w->b_enc,  w->W_dec, w->b_dec,
                            w->threshold, w->b_gate, w->b_mag, w->r_mag};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(a, (void *)owned[i]);
}

void sae_dict_free(sae_dict *d)
{
    if (!d)
        return;
    const sae_allocator *a = d->allocator;
    if (d->owns_weights) {
        sae_dict_weights w = {sizeof w,     0u,           d->W_enc,  d->b_enc, d->W_dec,
                              d->b_dec,     d->threshold, d->b_gate, d->b_mag, d->r_mag};
        sae__dict_weights_free(a, &w);
    }
    sae__free(a, d->decoder_norms);
    sae__free(a, d->exp_r_mag);
    sae__free(a, d->model_name);
    sae__free(a, d->hook_name);
    sae__free(a, d);
}

/* ||d_j|| for every decoder row, accumulated in double. W_dec: (d_sae, d_in). */
static void decoder_row_norms(const float *W_dec, int64_t d_sae, int64_t d_in, float *out)
{
    for (int64_t j = 0; j < d_sae; j++) {
        const float *row = W_dec + j * d_in;
        double s = 0;
        for (int64_t i = 0; i < d_in; i++)
            s += (double)row[i] * row[i];
        out[j] = (float)sqrt(s);
    }
}

/* Build a dictionary around arrays that are either owned (`owns`) or borrowed. */
static sae_status make_dict(sae_dict **out, const sae_dict_config *config, sae_dict_weights *w,
                            const sae_allocator *a, bool owns)
{
    a = sae__allocator(a);
    sae_dict *d = sae__alloc_array(a, 1, sizeof *d);
    if (!d)
        return SAE_ENOMEM;
    memset(d, 0, sizeof *d);
    d->allocator = a;
    d->owns_weights = owns;
    d->config = *config;
    if (d->config.arch == SAE_ARCH_STANDARD || d->config.arch == SAE_ARCH_JUMPRELU ||
        d->config.arch == SAE_ARCH_GATED)
        d->config.k = 0;
    if (d->config.act_scale == 0.0f)
        d->config.act_scale = 1.0f;
    d->W_enc = (float *)w->W_enc, d->b_enc = (float *)w->b_enc;
    d->W_dec = (float *)w->W_dec, d->b_dec = (float *)w->b_dec;
    d->threshold = (float *)w->threshold;
    d->b_gate = (float *)w->b_gate, d->b_mag = (float *)w->b_mag, d->r_mag = (float *)w->r_mag;

    int64_t F = config->d_sae;
    d->decoder_norms = sae__alloc_array(a, (size_t)F, sizeof(float));
    bool ok = d->decoder_norms != NULL;
    if (ok && config->arch == SAE_ARCH_GATED) {
        d->exp_r_mag = sae__alloc_array(a, (size_t)F, sizeof(float));
        ok = d->exp_r_mag != NULL;
        for (int64_t j = 0; ok && j < F; j++)
            d->exp_r_mag[j] = d->r_mag ? expf(d->r_mag[j]) : 1.0f;
    }
    if (ok && config->model_name)
        ok = (d->model_name = sae__strdup(a, config->model_name)) != NULL;
    if (ok && config->hook_name)
        ok = (d->hook_name = sae__strdup(a, config->hook_name)) != NULL;
    if (!ok) {
        d->owns_weights = false; /* the caller frees (or keeps) the arrays on failure */
        sae_dict_free(d);
        return SAE_ENOMEM;
    }
    d->config.model_name = d->model_name;
    d->config.hook_name = d->hook_name;
    decoder_row_norms(d->W_dec, F, config->d_in, d->decoder_norms);
    *out = d;
    return SAE_OK;
}

/* Read and validate the caller's config and weights structs into local copies. */
static sae_status read_inputs(const sae_dict_config *config, const sae_dict_weights *weights,
                              sae_dict_config *c, sae_dict_weights *w)
{
    if (!config || !weights)
        return sae__fail(SAE_EINVAL, "config and weights are required");
    *c = (sae_dict_config)SAE_DICT_CONFIG_INIT;
    *w = (sae_dict_weights)SAE_DICT_WEIGHTS_INIT;
    sae_status s = sae__read_options(c, sizeof *c, config, "sae_dict_config");
    if (s == SAE_OK)
        s = sae__read_options(w, sizeof *w, weights, "sae_dict_weights");
    if (s == SAE_OK)
        s = check_config(c);
    if (s == SAE_OK)
        s = check_weights(c, w);
    return s;
}

sae_status sae__dict_adopt(sae_dict **out, const sae_dict_config *config, sae_dict_weights *w,
                           const sae_allocator *a)
{
    sae_dict_config c;
    sae_dict_weights local;
    sae_status s = out ? read_inputs(config, w, &c, &local) : sae__fail(SAE_EINVAL, "out is NULL");
    if (s == SAE_OK)
        s = make_dict(out, &c, &local, a, true);
    if (s != SAE_OK && w)
        sae__dict_weights_free(a, w);
    return s;
}

sae_status sae_dict_create(sae_dict **out, const sae_dict_config *config,
                           const sae_dict_weights *weights, const sae_allocator *allocator)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "out is NULL");
    *out = NULL;
    sae_dict_config c;
    sae_dict_weights w;
    sae_status s = read_inputs(config, weights, &c, &w);
    if (s != SAE_OK)
        return s;
    /* Copy every given array; on failure free the copies made so far. */
    sae_dict_weights copy = w;
    weight_slot src[8], dst[8];
    int n = weight_slots(&w, &c, src);
    weight_slots(&copy, &c, dst);
    for (int i = 0; i < n; i++) {
        if (!*src[i].field)
            continue;
        *dst[i].field = sae__alloc_array(allocator, (size_t)src[i].length, sizeof(float));
        if (!*dst[i].field) {
            for (int j = 0; j < i; j++)
                if (*src[j].field)
                    sae__free(allocator, *dst[j].field);
            return SAE_ENOMEM;
        }
        memcpy(*dst[i].field, *src[i].field, (size_t)src[i].length * sizeof(float));
    }
    s = make_dict(out, &c, &copy, allocator, true);
    if (s != SAE_OK)
        sae__dict_weights_free(allocator, &copy);
    return s;
}

sae_status sae_dict_wrap(sae_dict **out, const sae_dict_config *config,
                         const sae_dict_weights *weights, const sae_allocator *allocator)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "out is NULL");
    *out = NULL;
    sae_dict_config c;
    sae_dict_weights w;
    sae_status s = read_inputs(config, weights, &c, &w);
    return s == SAE_OK ? make_dict(out, &c, &w, allocator, false) : s;
}

sae_status sae_dict_get_config(const sae_dict *d, sae_dict_config *out)
{
    if (!d || !sae__write_options(out, &d->config, sizeof d->config))
        return sae__fail(SAE_EINVAL, "dict and an initialised out are required");
    return SAE_OK;
}

sae_status sae_dict_get_weights(const sae_dict *d, sae_dict_weights *out)
{
    if (!d)
        return sae__fail(SAE_EINVAL, "dict is NULL");
    sae_dict_weights w = {sizeof w,     0u,           d->W_enc,  d->b_enc, d->W_dec,
                          d->b_dec,     d->threshold, d->b_gate, d->b_mag, d->r_mag};
    if (!sae__write_options(out, &w, sizeof w))
        return sae__fail(SAE_EINVAL, "out must be initialised with SAE_DICT_WEIGHTS_INIT");
    return SAE_OK;
}

int32_t sae_dict_arch(const sae_dict *d) { return d ? d->config.arch : -1; }
int64_t sae_dict_d_in(const sae_dict *d) { return d ? d->config.d_in : 0; }
int64_t sae_dict_d_sae(const sae_dict *d) { return d ? d->config.d_sae : 0; }
int64_t sae_dict_k(const sae_dict *d) { return d ? d->config.k : 0; }
const float *sae_dict_decoder_norms(const sae_dict *d) { return d ? d->decoder_norms : NULL; }
