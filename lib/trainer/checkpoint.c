/* checkpoint.c: sae_trainer_save / sae_trainer_load.
 *
 * One safetensors file, written by the safetensors writer crash-safely (lib/io/atomic_file.c:
 * temporary file, fsync, rename, fsync of the directory):
 *   param            F32 [n_params]  the whole parameter block (trainer_internal.h layout)
 *   adam.m, adam.v   F32 [n_params]  Adam's moments, same layout
 *   since_fired      I64 [d_sae]     dead-rule counters
 *   step             I64 []          steps taken
 *   threshold        F32 []          TopK inference threshold, -1 until its EMA starts
 *   b_dec_pending    U8  []          1: b_dec is still to be set from the first batch
 *   scale            F32 []          activation scale: 1 without scaling, 0 while not known
 *   scale.norm_sum   F64 []          sum of ||x_b|| given to sae_trainer_estimate_scale
 *   scale.rows       I64 []          rows behind it
 *   rng.counter      U64 []          resampling generator (seed and stream follow the options)
 *   rng.buffer       U32 [4], rng.buffered U32 []
 * (The orthogonality penalty's subsets are drawn from (seed, step) alone: nothing to save.)
 * __metadata__: format = "libsae.trainer", format_version = "1", libsae_version, and options:
 * the resolved sae_trainer_options (explicit zeros negative) as a JSON object with one key per
 * field. JSON numbers are doubles, so 64-bit integers are decimal strings; doubles are numbers
 * with 17 significant digits (read back exactly); 32-bit integers are numbers.
 * Parameter blocks are saved whole: an architecture with more parameter arrays needs no change
 * here. A new option field needs a row in OPTION_FIELDS (a static assertion checks). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../io/config_json.h"
#include "trainer_internal.h"

#define FORMAT_NAME "libsae.trainer"
#define FORMAT_VERSION 1

/* ---- options as JSON ---------------------------------------------------------------------- */

#define KIND_SIZE_I32 4
#define KIND_SIZE_U32 4
#define KIND_SIZE_I64 8
#define KIND_SIZE_U64 8
#define KIND_SIZE_F64 8

#define OPTION_FIELDS(X)                                                                       \
    X(arch, I32) X(d_in, I64) X(d_sae, I64) X(k, I64) X(preset, I32) X(n_threads, I32)          \
    X(seed, U64) X(flags, U32) X(init, I32) X(decoder_init_norm, F64) X(b_dec_init, I32)        \
    X(lr_schedule, I32) X(lr, F64) X(beta1, F64) X(beta2, F64) X(adam_eps, F64)                 \
    X(clip_norm, F64) X(lr_warmup, I32) X(mse, I32) X(lr_end, F64) X(total_steps, I64)          \
    X(warmup_steps, I64) X(decay_steps, I64) X(l1, I32) X(topk_relu, I32)                       \
    X(l1_coefficient, F64) X(l1_warmup_steps, I64) X(rescale, I32) X(auxk, I32)                 \
    X(auxk_coefficient, F64) X(k_aux, I64) X(dead_rule, I32) X(decoder_constraint, I32)         \
    X(dead_window, I64) X(threshold_beta, F64) X(threshold_start_step, I64)                     \
    X(resample_steps, I64) X(activation_scaling, I32) X(b_dec_input, I32)                      \
    X(jumprelu_sparsity, I32) X(jumprelu_log_threshold, I32) X(gated_aux, I32)                  \
    X(batchtopk_threshold, I32) X(jumprelu_bandwidth, F64) X(jumprelu_init_threshold, F64)      \
    X(jumprelu_tanh_scale, F64) X(target_l0, F64) X(ortho_lambda, F64) X(ortho_subset, I64)   \
    X(weight_decay, F64)

typedef enum field_kind { KIND_I32, KIND_U32, KIND_I64, KIND_U64, KIND_F64 } field_kind;

typedef struct option_field {
    const char *name;
    size_t offset;
    field_kind kind;
} option_field;

#define FIELD_ROW(f, kind) {#f, offsetof(sae_trainer_options, f), KIND_##kind},
static const option_field option_fields[] = {OPTION_FIELDS(FIELD_ROW)};

#define FIELD_SIZE(f, kind) +sizeof(((sae_trainer_options *)0)->f)
#define FIELD_KIND_CHECK(f, kind)                                                              \
    _Static_assert(sizeof(((sae_trainer_options *)0)->f) == KIND_SIZE_##kind, #f " has the "   \
                   "wrong kind in OPTION_FIELDS");
OPTION_FIELDS(FIELD_KIND_CHECK)
/* Every field but struct_size and allocator is saved. */
_Static_assert(sizeof(uint32_t) + sizeof(void *) OPTION_FIELDS(FIELD_SIZE) ==
                   sizeof(sae_trainer_options),
               "a field of sae_trainer_options is missing from OPTION_FIELDS");

#define N_FIELDS ((int)(sizeof option_fields / sizeof option_fields[0]))

/* The options as JSON text (cJSON_free), or NULL when out of memory. */
static char *options_json(const sae_trainer_options *o)
{
    cJSON *obj = cJSON_CreateObject();
    bool ok = obj != NULL;
    for (int i = 0; ok && i < N_FIELDS; i++) {
        const option_field *f = &option_fields[i];
        const char *p = (const char *)o + f->offset;
        char buf[64];
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
        double f64;
        switch (f->kind) {
        case KIND_I32:
            memcpy(&i32, p, sizeof i32);
            snprintf(buf, sizeof buf, "%d", (int)i32);
            ok = cJSON_AddRawToObject(obj, f->name, buf) != NULL;
            break;
        case KIND_U32:
            memcpy(&u32, p, sizeof u32);
            snprintf(buf, sizeof buf, "%u", (unsigned)u32);
            ok = cJSON_AddRawToObject(obj, f->name, buf) != NULL;
            break;
        case KIND_I64:
            memcpy(&i64, p, sizeof i64);
            snprintf(buf, sizeof buf, "%lld", (long long)i64);
            ok = cJSON_AddStringToObject(obj, f->name, buf) != NULL;
            break;
        case KIND_U64:
            memcpy(&u64, p, sizeof u64);
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)u64);
            ok = cJSON_AddStringToObject(obj, f->name, buf) != NULL;
            break;
        case KIND_F64: /* resolved options are finite */
            memcpy(&f64, p, sizeof f64);
            snprintf(buf, sizeof buf, "%.17g", f64);
            ok = cJSON_AddRawToObject(obj, f->name, buf) != NULL;
            break;
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    return text;
}

/* A decimal string, whole: an optional '-' (signed only) and digits, in range. */
static bool parse_decimal(const char *s, bool is_signed, int64_t *i, uint64_t *u)
{
    if (!s || (!(*s >= '0' && *s <= '9') && !(is_signed && *s == '-')))
        return false;
    char *end;
    errno = 0;
    if (is_signed)
        *i = strtoll(s, &end, 10);
    else
        *u = strtoull(s, &end, 10);
    return errno == 0 && end != s && *end == '\0';
}

static const option_field *find_field(const char *name)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (strcmp(option_fields[i].name, name) == 0)
            return &option_fields[i];
    return NULL;
}

/* One field of obj into o. */
static sae_status read_field(const cJSON *obj, const option_field *f, const char *origin,
                             sae_trainer_options *o)
{
    char *p = (char *)o + f->offset;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
    if (!v)
        return sae__fail(SAE_EFORMAT, "%s: option %s is missing", origin, f->name);
    int64_t i64 = 0;
    uint64_t u64 = 0;
    double f64 = 0;
    sae_status s = SAE_OK;
    switch (f->kind) {
    case KIND_I32:
    case KIND_U32:
        s = sae__json_int(obj, f->name, true, f->kind == KIND_I32 ? INT32_MIN : 0,
                          f->kind == KIND_I32 ? INT32_MAX : UINT32_MAX, origin, &i64);
        if (s == SAE_OK && f->kind == KIND_I32)
            memcpy(p, &(int32_t){(int32_t)i64}, sizeof(int32_t));
        else if (s == SAE_OK)
            memcpy(p, &(uint32_t){(uint32_t)i64}, sizeof(uint32_t));
        return s;
    case KIND_I64:
    case KIND_U64:
        if (!cJSON_IsString(v) ||
            !parse_decimal(v->valuestring, f->kind == KIND_I64, &i64, &u64))
            return sae__fail(SAE_EFORMAT, "%s: option %s is not a string of decimal digits "
                             "(a %s 64-bit integer)", origin, f->name,
                             f->kind == KIND_I64 ? "signed" : "unsigned");
        if (f->kind == KIND_I64)
            memcpy(p, &i64, sizeof i64);
        else
            memcpy(p, &u64, sizeof u64);
        return SAE_OK;
    case KIND_F64:
        if ((s = sae__json_number(obj, f->name, origin, &f64)) == SAE_OK)
            memcpy(p, &f64, sizeof f64);
        return s;
    }
    return SAE_OK;
}

/* Options from the JSON text, every field required, no unknown field. */
static sae_status parse_options(const char *text, const char *origin, sae_trainer_options *o)
{
    if (!text)
        return sae__fail(SAE_EFORMAT, "%s: no options in __metadata__", origin);
    cJSON *root = cJSON_Parse(text);
    sae_status s = SAE_OK;
    if (!root || !cJSON_IsObject(root))
        s = sae__fail(SAE_EFORMAT, "%s: the options are not a JSON object", origin);
    for (const cJSON *it = root ? root->child : NULL; s == SAE_OK && it; it = it->next)
        if (!find_field(it->string))
            s = sae__fail(SAE_EUNSUPPORTED, "%s: option %s is unknown to libsae %s", origin,
                          it->string, sae_version_string());
    for (int i = 0; s == SAE_OK && i < N_FIELDS; i++)
        s = read_field(root, &option_fields[i], origin, o);
    cJSON_Delete(root);
    return s;
}

/* ---- tensors ------------------------------------------------------------------------------ */

/* The scalars of a checkpoint, staged so that loading validates them before use. */
typedef struct ckpt_scalars {
    int64_t step;
    float threshold;
    uint8_t b_dec_pending;
    float scale;
    double scale_norm_sum;
    int64_t scale_rows;
    uint64_t rng_counter;
    uint32_t rng_buffer[4];
    uint32_t rng_buffered;
} ckpt_scalars;

typedef struct ckpt_tensor {
    const char *name;
    int32_t dtype;
    int32_t ndim; /* 0 or 1 */
    int64_t len;  /* elements */
    void *data;
} ckpt_tensor;

#define N_TENSORS 13

/* The tensors of a checkpoint and where they live: the trainer's arrays, the staged scalars. */
static void tensor_table(sae_trainer *t, ckpt_scalars *sc, ckpt_tensor tab[N_TENSORS])
{
    const int64_t P = t->n_params, F = t->cfg.F;
    const ckpt_tensor rows[N_TENSORS] = {
        {"param", SAE_DTYPE_F32, 1, P, t->param},
        {"adam.m", SAE_DTYPE_F32, 1, P, t->m},
        {"adam.v", SAE_DTYPE_F32, 1, P, t->v},
        {"since_fired", SAE_DTYPE_I64, 1, F, t->since_fired},
        {"step", SAE_DTYPE_I64, 0, 1, &sc->step},
        {"threshold", SAE_DTYPE_F32, 0, 1, &sc->threshold},
        {"b_dec_pending", SAE_DTYPE_U8, 0, 1, &sc->b_dec_pending},
        {"scale", SAE_DTYPE_F32, 0, 1, &sc->scale},
        {"scale.norm_sum", SAE_DTYPE_F64, 0, 1, &sc->scale_norm_sum},
        {"scale.rows", SAE_DTYPE_I64, 0, 1, &sc->scale_rows},
        {"rng.counter", SAE_DTYPE_U64, 0, 1, &sc->rng_counter},
        {"rng.buffer", SAE_DTYPE_U32, 1, 4, sc->rng_buffer},
        {"rng.buffered", SAE_DTYPE_U32, 0, 1, &sc->rng_buffered},
    };
    memcpy(tab, rows, sizeof rows);
}

static void scalars_of(const sae_trainer *t, ckpt_scalars *sc)
{
    *sc = (ckpt_scalars){
        .step = t->step, .threshold = t->threshold, .b_dec_pending = t->b_dec_pending,
        .scale = t->ex.act_scale, .scale_norm_sum = t->ex.scale_norm_sum,
        .scale_rows = t->ex.scale_rows, .rng_counter = t->ex.rng.counter,
        .rng_buffered = t->ex.rng.buffered,
    };
    memcpy(sc->rng_buffer, t->ex.rng.buffer, sizeof sc->rng_buffer);
}

static void apply_scalars(sae_trainer *t, const ckpt_scalars *sc)
{
    t->step = sc->step;
    t->threshold = sc->threshold;
    t->b_dec_pending = sc->b_dec_pending != 0;
    t->ex.act_scale = sc->scale;
    t->ex.scale_norm_sum = sc->scale_norm_sum;
    t->ex.scale_rows = sc->scale_rows;
    t->ex.rng.counter = sc->rng_counter;
    memcpy(t->ex.rng.buffer, sc->rng_buffer, sizeof sc->rng_buffer);
    t->ex.rng.buffered = sc->rng_buffered;
}

sae_status sae_trainer_save(const sae_trainer *t, const char *path)
{
    if (!t || !path)
        return sae__fail(SAE_EINVAL, "trainer and path are required");
    ckpt_scalars sc;
    scalars_of(t, &sc);
    ckpt_tensor tab[N_TENSORS];
    tensor_table((sae_trainer *)t, &sc, tab); /* only read from here on */
    char *options = options_json(&t->opts);
    char version[16];
    snprintf(version, sizeof version, "%d", FORMAT_VERSION);
    sae_st_writer *w = NULL;
    sae_status s = options ? sae_st_writer_create(&w)
                           : sae__fail(SAE_ENOMEM, "out of memory writing the options");
    for (int i = 0; s == SAE_OK && i < N_TENSORS; i++)
        s = sae_st_writer_add(w, tab[i].name, tab[i].dtype, tab[i].ndim, &tab[i].len,
                              tab[i].data);
    const char *meta[][2] = {{"format", FORMAT_NAME}, {"format_version", version},
                             {"libsae_version", sae_version_string()}, {"options", options}};
    for (size_t i = 0; s == SAE_OK && i < sizeof meta / sizeof meta[0]; i++)
        s = sae_st_writer_set_metadata(w, meta[i][0], meta[i][1]);
    if (s == SAE_OK)
        s = sae_st_writer_write(w, path);
    sae_st_writer_free(w);
    cJSON_free(options);
    return s;
}

/* ---- loading ------------------------------------------------------------------------------ */

static sae_status check_format(const sae_st_reader *r, const char *path)
{
    const char *format = sae_st_metadata(r, "format");
    const char *version = sae_st_metadata(r, "format_version");
    if (!format || strcmp(format, FORMAT_NAME) != 0)
        return sae__fail(SAE_EFORMAT, "%s: not a libsae trainer checkpoint (__metadata__ "
                         "format is %s%s%s, expected \"" FORMAT_NAME "\")", path,
                         format ? "\"" : "", format ? format : "missing", format ? "\"" : "");
    int64_t v = 0;
    if (!parse_decimal(version, true, &v, NULL) || v < 1)
        return sae__fail(SAE_EFORMAT, "%s: format_version %s%s%s is not a positive integer",
                         path, version ? "\"" : "", version ? version : "missing",
                         version ? "\"" : "");
    if (v != FORMAT_VERSION)
        return sae__fail(SAE_EUNSUPPORTED, "%s: checkpoint format version %lld; libsae %s reads "
                         "version %d", path, (long long)v, sae_version_string(), FORMAT_VERSION);
    return SAE_OK;
}

/* Copy tensor `e` of the file into its place after checking dtype and shape. */
static sae_status take(const sae_st_reader *r, const char *path, const ckpt_tensor *e)
{
    const sae_tensor_info *ti = sae_st_find(r, e->name);
    if (!ti)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s is missing", path, e->name);
    if (ti->dtype != e->dtype)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s is %s, expected %s", path, e->name,
                         sae_dtype_name(ti->dtype), sae_dtype_name(e->dtype));
    if (ti->ndim != e->ndim || (e->ndim == 1 && ti->shape[0] != e->len)) {
        char got[96], want[96];
        sae__format_shape(got, sizeof got, ti->ndim, ti->shape);
        sae__format_shape(want, sizeof want, e->ndim, &e->len);
        return sae__fail(SAE_ESHAPE, "%s: tensor %s has shape %s, expected %s", path, e->name,
                         got, want);
    }
    memcpy(e->data, ti->data, (size_t)ti->nbytes);
    return SAE_OK;
}

/* Values a trainer can run from. */
static sae_status check_values(const sae_trainer *t, const ckpt_scalars *sc, const char *path)
{
    const int64_t P = t->n_params, F = t->cfg.F;
    const struct {
        const char *name;
        const float *a;
    } blocks[] = {{"param", t->param}, {"adam.m", t->m}, {"adam.v", t->v}};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        int64_t at = sae__first_nonfinite(blocks[i].a, P);
        if (at >= 0)
            return sae__fail(SAE_ENUMERIC, "%s: %s[%lld] is %g", path, blocks[i].name,
                             (long long)at, (double)blocks[i].a[at]);
    }
    for (int64_t i = 0; i < P; i++)
        if (t->v[i] < 0)
            return sae__fail(SAE_ENUMERIC, "%s: adam.v[%lld] = %g is negative", path,
                             (long long)i, (double)t->v[i]);
    for (int64_t j = 0; j < F; j++)
        if (t->since_fired[j] < 0)
            return sae__fail(SAE_ENUMERIC, "%s: since_fired[%lld] = %lld is negative", path,
                             (long long)j, (long long)t->since_fired[j]);
    const bool bdec_from_batch = t->cfg.b_dec_init == SAE_BDEC_MEAN ||
                                 t->cfg.b_dec_init == SAE_BDEC_GEOMETRIC_MEDIAN;
    const char *bad = NULL;
    if (sc->step < 0)
        bad = "step is negative";
    else if (!isfinite(sc->threshold) || (sc->threshold != -1.0f && sc->threshold < 0))
        bad = "threshold is neither -1 nor finite and non-negative";
    else if (sc->b_dec_pending > 1 || (sc->b_dec_pending && (sc->step > 0 || !bdec_from_batch)))
        bad = "b_dec_pending is not 0 or 1, or pending after the first step or without an "
              "initialisation from the batch";
    else if (!isfinite(sc->scale) || sc->scale < 0 ||
             (t->cfg.activation_scaling ? sc->step > 0 && sc->scale == 0 : sc->scale != 1.0f))
        bad = "scale is not 1 without activation scaling, or not finite and non-negative "
              "(positive once training started) with it";
    else if (!isfinite(sc->scale_norm_sum) || sc->scale_norm_sum < 0 || sc->scale_rows < 0)
        bad = "scale.norm_sum or scale.rows is negative or not finite";
    else if (sc->rng_buffered > 4)
        bad = "rng.buffered exceeds 4";
    return bad ? sae__fail(SAE_ENUMERIC, "%s: %s", path, bad) : SAE_OK;
}

/* The trainer of an open checkpoint (validated), into *out. */
static sae_status load_from(sae_trainer **out, const sae_st_reader *r, const char *path,
                            const sae_allocator *allocator)
{
    sae_trainer_options o = SAE_TRAINER_OPTIONS_INIT, resolved;
    sae__train_cfg cfg;
    sae_status s = check_format(r, path);
    if (s == SAE_OK)
        s = parse_options(sae_st_metadata(r, "options"), path, &o);
    if (s != SAE_OK)
        return s;
    o.allocator = allocator;
    if ((s = sae__trainer_resolve(&o, false, NULL, &resolved, &cfg)) != SAE_OK)
        return sae__fail_prefix(s, path);
    sae_trainer *t = NULL;
    if ((s = sae__trainer_make(&t, &resolved, &cfg)) != SAE_OK)
        return s;
    ckpt_scalars sc;
    ckpt_tensor tab[N_TENSORS];
    tensor_table(t, &sc, tab);
    for (int i = 0; s == SAE_OK && i < N_TENSORS; i++)
        s = take(r, path, &tab[i]);
    for (int64_t i = 0; s == SAE_OK && i < sae_st_count(r); i++) {
        const char *name = sae_st_tensor_at(r, i)->name;
        bool known = false;
        for (int j = 0; j < N_TENSORS; j++)
            known |= strcmp(tab[j].name, name) == 0;
        if (!known)
            s = sae__fail(SAE_EFORMAT, "%s: unexpected tensor %s", path, name);
    }
    if (s == SAE_OK)
        s = check_values(t, &sc, path);
    if (s != SAE_OK) {
        sae_trainer_free(t);
        return s;
    }
    apply_scalars(t, &sc);
    *out = t;
    return SAE_OK;
}

sae_status sae_trainer_load(sae_trainer **out, const char *path, const sae_allocator *allocator)
{
    if (!out || !path)
        return sae__fail(SAE_EINVAL, "out and path are required");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return sae__fail(SAE_ENOTFOUND, "%s: no such checkpoint", path);
    sae_st_reader *r = NULL;
    sae_status s = sae_st_open(&r, path);
    if (s == SAE_OK)
        s = load_from(out, r, path, allocator);
    sae_st_close(r);
    return s;
}
