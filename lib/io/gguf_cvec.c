/* gguf_cvec.c: llama.cpp control vectors (GGUF v3) from steering directions.
 *
 * Layout written (all integers little-endian; llama.cpp `llama_control_vector_load` and gguf-py
 * GGUFWriter(path, "controlvector") read / write the same):
 *   "GGUF" u32 version=3  u64 n_tensors  u64 n_kv=3
 *   kv: string key, u32 type, value  -- general.architecture STRING "controlvector",
 *       controlvector.model_hint STRING, controlvector.layer_count INT32 (= n_tensors)
 *   tensor info: string name "direction.<L>", u32 n_dims=1, u64 ne[0]=d, u32 type=F32 (0),
 *                u64 offset from the data start (multiples of 32)
 *   zero padding to a multiple of 32 bytes, then the tensors, each padded to 32 bytes.
 * A string is u64 length + bytes (no NUL). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "io_internal.h"

#define GGUF_ALIGN 32
#define GGUF_TYPE_INT32 5
#define GGUF_TYPE_STRING 8
#define GGML_TYPE_F32 0

typedef struct cvec_job {
    const char *path, *model_hint;
    int64_t d, ld;
    int32_t n;
    const int32_t *layers;
    const float *dirs;
    uint64_t written;   /* bytes so far, for the alignment padding */
} cvec_job;

static sae_status put(cvec_job *j, FILE *f, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, f) != n)
        return sae__fail(SAE_EIO, "%s: cannot write: %s", j->path, strerror(errno));
    j->written += n;
    return SAE_OK;
}

static sae_status put_uint(cvec_job *j, FILE *f, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return put(j, f, b, (size_t)bytes);
}

static sae_status put_string(cvec_job *j, FILE *f, const char *s)
{
    size_t n = strlen(s);
    sae_status st = put_uint(j, f, n, 8);
    return st ? st : put(j, f, s, n);
}

static sae_status pad(cvec_job *j, FILE *f)
{
    static const unsigned char zeros[GGUF_ALIGN];
    return put(j, f, zeros, (size_t)((GGUF_ALIGN - j->written % GGUF_ALIGN) % GGUF_ALIGN));
}

static sae_status write_cvec(FILE *f, void *user)
{
    cvec_job *j = user;
    const uint64_t bytes = (uint64_t)j->d * 4, stride = (bytes + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    char name[32];
    sae_status s = put(j, f, "GGUF", 4);
    if (!s) s = put_uint(j, f, 3, 4);
    if (!s) s = put_uint(j, f, (uint64_t)j->n, 8);
    if (!s) s = put_uint(j, f, 3, 8);
    if (!s) s = put_string(j, f, "general.architecture");
    if (!s) s = put_uint(j, f, GGUF_TYPE_STRING, 4);
    if (!s) s = put_string(j, f, "controlvector");
    if (!s) s = put_string(j, f, "controlvector.model_hint");
    if (!s) s = put_uint(j, f, GGUF_TYPE_STRING, 4);
    if (!s) s = put_string(j, f, j->model_hint);
    if (!s) s = put_string(j, f, "controlvector.layer_count");
    if (!s) s = put_uint(j, f, GGUF_TYPE_INT32, 4);
    if (!s) s = put_uint(j, f, (uint32_t)j->n, 4);
    for (int32_t i = 0; i < j->n && !s; i++) {
        snprintf(name, sizeof name, "direction.%d", j->layers[i]);
        s = put_string(j, f, name);
        if (!s) s = put_uint(j, f, 1, 4);
        if (!s) s = put_uint(j, f, (uint64_t)j->d, 8);
        if (!s) s = put_uint(j, f, GGML_TYPE_F32, 4);
        if (!s) s = put_uint(j, f, (uint64_t)i * stride, 8);
    }
    for (int32_t i = 0; i < j->n && !s; i++) {
        s = pad(j, f);
        for (int64_t k = 0; k < j->d && !s; k++) {
            uint32_t w;
            memcpy(&w, j->dirs + i * j->ld + k, 4);
            s = put_uint(j, f, w, 4);
        }
    }
    return s ? s : pad(j, f);
}

sae_status sae_steering_export_gguf(const char *path, const char *model_hint, int64_t d,
                                    int32_t n_layers, const int32_t *layers,
                                    const float *directions, int64_t ld)
{
    if (!path || !model_hint || !*model_hint || !layers || !directions || d < 1 || n_layers < 1)
        return sae__fail(SAE_EINVAL, "control vector export: path, a non-empty model_hint, "
                                     "layers and directions are required, d (%lld) and n_layers "
                                     "(%d) >= 1", (long long)d, n_layers);
    if (ld < d)
        return sae__fail(SAE_ESHAPE, "control vector export: leading dimension %lld below d %lld",
                         (long long)ld, (long long)d);
    for (int32_t i = 0; i < n_layers; i++) {
        if (layers[i] < 1)
            return sae__fail(SAE_ERANGE, "control vector export: layer %d; llama.cpp steers "
                                         "layers >= 1 only", layers[i]);
        for (int32_t k = 0; k < i; k++)
            if (layers[k] == layers[i])
                return sae__fail(SAE_EINVAL, "control vector export: layer %d appears twice",
                                 layers[i]);
        int64_t bad = sae__first_nonfinite(directions + i * ld, d);
        if (bad >= 0)
            return sae__fail(SAE_ENUMERIC, "control vector export: direction of layer %d is not "
                                           "finite at %lld", layers[i], (long long)bad);
    }
    cvec_job job = {path, model_hint, d, ld, n_layers, layers, directions, 0};
    return sae__write_file_atomic(path, write_cvec, &job);
}
