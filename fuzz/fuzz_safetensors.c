/* fuzz_safetensors: the safetensors reader and writer (lib/io/safetensors.c).
 *
 * Input: a whole .safetensors file, opened from memory. Every tensor of a file that opens is
 * looked up by name, read byte by byte and converted to float32 when its dtype allows, so that
 * a header the reader accepted but whose offsets do not hold the data is caught by
 * AddressSanitizer. Then the tensors are written back with the writer and read again: the copy
 * must hold the same names, dtypes, shapes and bytes. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned read_all(const sae_st_reader *r)
{
    unsigned sink = 0;
    for (int64_t i = 0; i < sae_st_count(r); i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        if (sae_st_find(r, t->name) != t)
            abort(); /* names are unique and the lookup finds each */
        for (uint64_t b = 0; b < t->nbytes; b++)
            sink += ((const uint8_t *)t->data)[b];
        float *out = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        if (out && sae_st_to_f32(t, out, t->numel) == SAE_OK)
            for (int64_t j = 0; j < t->numel; j++)
                sink += out[j] != out[j];
        free(out);
    }
    return sink;
}

/* Write r's tensors to a file and check that it reads back the same. */
static void round_trip(const sae_st_reader *r)
{
    sae_st_writer *w = NULL;
    if (sae_st_writer_create(&w) != SAE_OK)
        abort();
    for (int64_t i = 0; i < sae_st_count(r); i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        if (sae_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data) != SAE_OK)
            abort(); /* whatever the reader accepts, the writer must take */
    }
    const char *path = fuzz_path("copy.safetensors");
    if (sae_st_writer_write(w, path) != SAE_OK)
        abort();
    sae_st_writer_free(w);
    sae_st_reader *c = NULL;
    if (sae_st_open(&c, path) != SAE_OK || sae_st_count(c) != sae_st_count(r))
        abort();
    for (int64_t i = 0; i < sae_st_count(r); i++) {
        const sae_tensor_info *a = sae_st_tensor_at(r, i), *b = sae_st_tensor_at(c, i);
        if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim ||
            memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) ||
            a->nbytes != b->nbytes || (a->nbytes && memcmp(a->data, b->data, a->nbytes)))
            abort();
    }
    sae_st_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sae_st_reader *r = NULL;
    sae_status s = sae_st_open_memory(&r, data, size);
    fuzz_note("safetensors", s, sae_last_error());
    if (s != SAE_OK)
        return 0;
    volatile unsigned sink = read_all(r);
    (void)sink;
    (void)sae_st_metadata(r, "format");
    round_trip(r);
    sae_st_close(r);
    return 0;
}
