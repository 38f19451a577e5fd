/* test_safetensors.c: the safetensors reader and writer, and the atomic file helpers. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_internal.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, test_malloc'd. */
static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    unsigned char *buf = test_malloc((size_t)size + 1);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

/* A file image: header length field `n_field`, the header text, then data_size zero bytes
 * (test_malloc'd, exactly *size bytes so that valgrind sees any over-read). */
static unsigned char *make_raw(uint64_t n_field, const char *header, size_t data_size,
                               size_t *size)
{
    size_t h = strlen(header);
    *size = 8 + h + data_size;
    unsigned char *buf = test_malloc(*size);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(n_field >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, 0, data_size);
    return buf;
}

static void assert_error(sae_status got, sae_status want, const char *fragment)
{
    if (got != want)
        fail_msg("status %d (%s), expected %d (%s); message: %s", got, sae_status_str(got), want,
                 sae_status_str(want), sae_last_error());
    if (!strstr(sae_last_error(), fragment))
        fail_msg("message \"%s\" does not mention \"%s\"", sae_last_error(), fragment);
}

/* The header, followed by data_size bytes, must be rejected as EFORMAT with `fragment`. */
static void expect_bad_header(const char *header, size_t data_size, const char *fragment)
{
    size_t size;
    unsigned char *buf = make_raw(strlen(header), header, data_size, &size);
    sae_st_reader *r = (sae_st_reader *)buf; /* must be reset to NULL */
    assert_error(sae_st_open_memory(&r, buf, size), SAE_EFORMAT, fragment);
    assert_null(r);
    test_free(buf);
}

static void expect_good_header(const char *header, size_t data_size)
{
    size_t size;
    unsigned char *buf = make_raw(strlen(header), header, data_size, &size);
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open_memory(&r, buf, size));
    sae_st_close(r);
    test_free(buf);
}

static const sae_tensor_info *must_find(const sae_st_reader *r, const char *name)
{
    const sae_tensor_info *t = sae_st_find(r, name);
    if (!t)
        fail_msg("tensor %s is missing", name);
    return t;
}

static void assert_shape(const sae_tensor_info *t, int ndim, const int64_t *shape)
{
    assert_int_equal(t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        assert_int_equal(t->shape[i], shape[i]);
    for (int i = ndim; i < SAE_MAX_DIMS; i++)
        assert_int_equal(t->shape[i], 0);
}

/* Exact equality, with NaN equal to NaN and the sign of zero and of infinity checked. */
static void assert_same_float(float got, float want, int64_t index, const char *what)
{
    if (isnan(want) ? isnan(got) : (got == want && signbit(got) == signbit(want)))
        return;
    fail_msg("%s[%lld] = %.9g, expected %.9g", what, (long long)index, got, want);
}

/* ---- dtypes and conversion ----------------------------------------------------------------- */

static void test_dtype_table(void **state)
{
    assert_int_equal(sae_dtype_size(SAE_DTYPE_BOOL), 1);
    assert_int_equal(sae_dtype_size(SAE_DTYPE_F16), 2);
    assert_int_equal(sae_dtype_size(SAE_DTYPE_BF16), 2);
    assert_int_equal(sae_dtype_size(SAE_DTYPE_F32), 4);
    assert_int_equal(sae_dtype_size(SAE_DTYPE_I64), 8);
    assert_int_equal(sae_dtype_size(SAE_DTYPE_F8_E5M2), 1);
    assert_int_equal(sae_dtype_size(-1), 0);
    assert_int_equal(sae_dtype_size(15), 0);
    assert_string_equal(sae_dtype_name(SAE_DTYPE_BF16), "BF16");
    assert_string_equal(sae_dtype_name(SAE_DTYPE_F8_E4M3), "F8_E4M3");
    assert_null(sae_dtype_name(99));
}

static const uint16_t f16_bits[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00,
                                    0xc000, 0x3555, 0x7bff, 0x7c00, 0xfc00, 0x7e00};
static const float f16_want[] = {0.0f, -0.0f, 0x1p-24f, -0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f,
                                 1.0f, -2.0f, 0.333251953125f, 65504.0f, INFINITY, -INFINITY,
                                 NAN};
static const uint16_t bf16_bits[] = {0x3f80, 0xc040, 0x4049, 0x0001, 0x7f80, 0xff80, 0x7fc0};
static const float bf16_want[] = {1.0f, -3.0f, 3.140625f, 0x1p-133f, INFINITY, -INFINITY, NAN};
static const double f64_vals[] = {1.5, -1e-3, 3.141592653589793, 1e300, -1e300, 1e-50, NAN};
static const float f32_vals[] = {1.0f, -2.5f, 0x1p-149f, 3.4e38f, -0.0f, INFINITY};

static void check_converted(const sae_st_reader *r, const char *name, const float *want,
                            int64_t n)
{
    const sae_tensor_info *t = must_find(r, name);
    assert_int_equal(t->numel, n);
    float got[16];
    assert_sae_ok(sae_st_to_f32(t, got, 16));
    for (int64_t i = 0; i < n; i++)
        assert_same_float(got[i], want[i], i, name);
}

static void test_round_trip_float_dtypes(void **state)
{
    const char *path = tmp_path("float_dtypes.safetensors");
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    int64_t n16 = 13, nb16 = 7, n64 = 7, f32_shape[2] = {2, 3};
    assert_sae_ok(sae_st_writer_add(w, "half", SAE_DTYPE_F16, 1, &n16, f16_bits));
    assert_sae_ok(sae_st_writer_add(w, "brain", SAE_DTYPE_BF16, 1, &nb16, bf16_bits));
    assert_sae_ok(sae_st_writer_add(w, "double", SAE_DTYPE_F64, 1, &n64, f64_vals));
    assert_sae_ok(sae_st_writer_add(w, "single", SAE_DTYPE_F32, 2, f32_shape, f32_vals));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    assert_int_equal(sae_st_count(r), 4);
    const sae_tensor_info *half = must_find(r, "half");
    assert_int_equal(half->dtype, SAE_DTYPE_F16);
    assert_int_equal(half->nbytes, sizeof f16_bits);
    assert_memory_equal(half->data, f16_bits, sizeof f16_bits);
    const sae_tensor_info *single = must_find(r, "single");
    assert_int_equal(single->dtype, SAE_DTYPE_F32);
    assert_shape(single, 2, f32_shape);
    assert_memory_equal(single->data, f32_vals, sizeof f32_vals);
    assert_memory_equal(must_find(r, "double")->data, f64_vals, sizeof f64_vals);

    check_converted(r, "half", f16_want, n16);
    check_converted(r, "brain", bf16_want, nb16);
    check_converted(r, "single", f32_vals, 6);
    float f64_want[7];
    for (int i = 0; i < 7; i++)
        f64_want[i] = (float)f64_vals[i];
    assert_true(isinf(f64_want[3]) && f64_want[5] == 0.0f);
    check_converted(r, "double", f64_want, n64);
    sae_st_close(r);
}

static void test_to_f32_errors(void **state)
{
    const char *path = tmp_path("int_dtype.safetensors");
    int64_t ints[3] = {1, 2, 3}, n = 3;
    uint8_t fp8[3] = {0x38, 0x40, 0x48};
    float f[3] = {1, 2, 3};
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_add(w, "idx", SAE_DTYPE_I64, 1, &n, ints));
    assert_sae_ok(sae_st_writer_add(w, "fp8", SAE_DTYPE_F8_E4M3, 1, &n, fp8));
    assert_sae_ok(sae_st_writer_add(w, "f", SAE_DTYPE_F32, 1, &n, f));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    float out[3];
    assert_error(sae_st_to_f32(must_find(r, "idx"), out, 3), SAE_EFORMAT,
                 "dtype I64 is not a floating type");
    assert_error(sae_st_to_f32(must_find(r, "fp8"), out, 3), SAE_EFORMAT, "F8_E4M3");
    assert_error(sae_st_to_f32(must_find(r, "f"), out, 2), SAE_ESHAPE, "3 elements");
    assert_error(sae_st_to_f32(NULL, out, 3), SAE_EINVAL, "NULL");
    sae_st_close(r);
}

/* ---- writer ------------------------------------------------------------------------------ */

static void test_metadata_round_trip(void **state)
{
    const char *path = tmp_path("metadata.safetensors");
    const char *odd = "quote \" backslash \\ newline \n tab \t bell \x07 utf8 \xc3\xa9\xe2\x82\xac";
    float x = 42.0f;
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_set_metadata(w, "format", "pt"));
    assert_sae_ok(sae_st_writer_set_metadata(w, "odd", odd));
    assert_sae_ok(sae_st_writer_set_metadata(w, "empty", ""));
    assert_sae_ok(sae_st_writer_set_metadata(w, "format", "np")); /* set replaces */
    assert_sae_ok(sae_st_writer_add(w, odd, SAE_DTYPE_F32, 0, NULL, &x));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    size_t size;
    unsigned char *bytes = read_bytes(path, &size);
    assert_memory_equal(bytes + 8, "{\"__metadata__\":{", 17); /* metadata first */
    test_free(bytes);

    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    assert_string_equal(sae_st_metadata(r, "format"), "np");
    assert_string_equal(sae_st_metadata(r, "odd"), odd);
    assert_string_equal(sae_st_metadata(r, "empty"), "");
    assert_null(sae_st_metadata(r, "absent"));
    assert_null(sae_st_metadata(r, NULL));
    assert_int_equal(sae_st_count(r), 1);
    assert_string_equal(sae_st_tensor_at(r, 0)->name, odd);
    sae_st_close(r);
}

static void test_scalar_and_zero_sized(void **state)
{
    const char *path = tmp_path("scalar_empty.safetensors");
    float scalar = 2.5f, after[2] = {7, 8};
    int64_t empty_shape[2] = {0, 5}, two = 2;
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_add(w, "a_scalar", SAE_DTYPE_F32, 0, NULL, &scalar));
    assert_sae_ok(sae_st_writer_add(w, "b_empty", SAE_DTYPE_F16, 2, empty_shape, NULL));
    assert_sae_ok(sae_st_writer_add(w, "c_after", SAE_DTYPE_F32, 1, &two, after));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    const sae_tensor_info *s = must_find(r, "a_scalar");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    assert_int_equal(s->nbytes, 4);
    float v = 0;
    assert_sae_ok(sae_st_to_f32(s, &v, 1));
    assert_true(v == 2.5f);
    const sae_tensor_info *e = must_find(r, "b_empty");
    assert_shape(e, 2, empty_shape);
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->nbytes, 0);
    assert_sae_ok(sae_st_to_f32(e, NULL, 0));
    float got[2];
    assert_sae_ok(sae_st_to_f32(must_find(r, "c_after"), got, 2));
    assert_true(got[0] == 7 && got[1] == 8);
    sae_st_close(r);

    /* A file with no tensors at all. */
    expect_good_header("{}", 0);
    expect_good_header("{\"__metadata__\":{}}      ", 0);
}

static void test_header_padding(void **state)
{
    const char *path = tmp_path("padding.safetensors");
    char name[32];
    uint8_t byte = 1;
    int64_t one = 1;
    for (int len = 1; len <= 16; len++) {
        memset(name, 'n', (size_t)len);
        name[len] = '\0';
        sae_st_writer *w = NULL;
        assert_sae_ok(sae_st_writer_create(&w));
        assert_sae_ok(sae_st_writer_add(w, name, SAE_DTYPE_U8, 1, &one, &byte));
        assert_sae_ok(sae_st_writer_write(w, path));
        sae_st_writer_free(w);

        size_t size;
        unsigned char *bytes = read_bytes(path, &size);
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--)
            n = n << 8 | bytes[i];
        assert_int_equal((8 + n) % 8, 0);
        assert_int_equal(size, 8 + n + 1);
        size_t json_end = 8 + (size_t)n;
        while (bytes[json_end - 1] == ' ')
            json_end--;
        assert_int_equal(bytes[json_end - 1], '}');
        assert_true(8 + n - json_end < 8); /* at most 7 spaces of padding */
        test_free(bytes);

        sae_st_reader *r = NULL;
        assert_sae_ok(sae_st_open(&r, path));
        assert_int_equal(*(const uint8_t *)must_find(r, name)->data, 1);
        sae_st_close(r);
    }
}

static void test_sorted_order_and_find(void **state)
{
    const char *path = tmp_path("sorted.safetensors");
    const char *names[] = {"zeta", "Alpha", "beta", "alpha", "b"};
    const char *sorted[] = {"Alpha", "alpha", "b", "beta", "zeta"};
    float vals[5] = {0, 1, 2, 3, 4};
    int64_t one = 1;
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    for (int i = 0; i < 5; i++)
        assert_sae_ok(sae_st_writer_add(w, names[i], SAE_DTYPE_F32, 1, &one, &vals[i]));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    assert_int_equal(sae_st_count(r), 5);
    for (int i = 0; i < 5; i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        assert_string_equal(t->name, sorted[i]);
        assert_ptr_equal(sae_st_find(r, sorted[i]), t);
        if (i) /* data laid out in name order */
            assert_ptr_equal(t->data, (const char *)sae_st_tensor_at(r, i - 1)->data + 4);
    }
    float v;
    assert_sae_ok(sae_st_to_f32(sae_st_find(r, "beta"), &v, 1));
    assert_true(v == 2);
    assert_null(sae_st_tensor_at(r, 5));
    assert_null(sae_st_tensor_at(r, -1));
    assert_null(sae_st_find(r, "gamma"));
    assert_null(sae_st_find(r, ""));
    assert_null(sae_st_find(r, NULL));
    sae_st_close(r);
}

/* More tensors and keys than the writer's first allocation, added in reverse order. */
static void test_many_tensors(void **state)
{
    const char *path = tmp_path("many.safetensors");
    enum { N = 40 };
    int32_t vals[N];
    int64_t one = 1;
    char name[16];
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    for (int i = N - 1; i >= 0; i--) {
        vals[i] = i;
        snprintf(name, sizeof name, "t%02d", i);
        assert_sae_ok(sae_st_writer_add(w, name, SAE_DTYPE_I32, 1, &one, &vals[i]));
        snprintf(name, sizeof name, "k%02d", i);
        assert_sae_ok(sae_st_writer_set_metadata(w, name, name + 1));
    }
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    assert_int_equal(sae_st_count(r), N);
    for (int i = 0; i < N; i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        snprintf(name, sizeof name, "t%02d", i);
        assert_string_equal(t->name, name);
        int32_t v;
        memcpy(&v, t->data, sizeof v);
        assert_int_equal(v, i);
        snprintf(name, sizeof name, "k%02d", i);
        assert_string_equal(sae_st_metadata(r, name), name + 1);
    }
    sae_st_close(r);
}

static void test_writer_rejects(void **state)
{
    float x[4] = {0};
    int64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, neg = -1, two = 2;
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_add(w, "x", SAE_DTYPE_F32, 1, &two, x));
    assert_error(sae_st_writer_add(w, "x", SAE_DTYPE_F16, 1, &two, x), SAE_EINVAL, "x");
    assert_error(sae_st_writer_add(w, "y", 15, 1, &two, x), SAE_EINVAL, "dtype");
    assert_error(sae_st_writer_add(w, "y", SAE_DTYPE_F32, 9, shape, x), SAE_EINVAL, "ndim");
    assert_error(sae_st_writer_add(w, "y", SAE_DTYPE_F32, 1, &neg, x), SAE_EINVAL, "negative");
    assert_error(sae_st_writer_add(w, "y", SAE_DTYPE_F32, 1, &two, NULL), SAE_EINVAL, "NULL");
    assert_error(sae_st_writer_add(w, NULL, SAE_DTYPE_F32, 1, &two, x), SAE_EINVAL, "name");
    assert_error(sae_st_writer_add(w, "__metadata__", SAE_DTYPE_F32, 1, &two, x), SAE_EINVAL,
                 "__metadata__");
    assert_error(sae_st_writer_add(w, "bad \xff utf8", SAE_DTYPE_F32, 1, &two, x), SAE_EINVAL,
                 "UTF-8");
    assert_error(sae_st_writer_set_metadata(w, "k", NULL), SAE_EINVAL, "value");
    assert_error(sae_st_writer_add(NULL, "z", SAE_DTYPE_F32, 1, &two, x), SAE_EINVAL, "NULL");
    assert_error(sae_st_writer_write(w, NULL), SAE_EINVAL, "NULL");
    sae_st_writer_free(w);
    sae_st_writer_free(NULL);
    sae_st_close(NULL);
    assert_int_equal(sae_st_count(NULL), 0);
    assert_null(sae_st_tensor_at(NULL, 0));
    assert_null(sae_st_find(NULL, "x"));
    assert_null(sae_st_metadata(NULL, "x"));
}

static void test_write_into_missing_dir(void **state)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", tmp_path("no_such_dir/x.safetensors"));
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_error(sae_st_writer_write(w, path), SAE_EIO, "no_such_dir");
    assert_non_null(strstr(sae_last_error(), "No such file or directory"));
    sae_st_writer_free(w);
}

static void test_write_replaces_existing(void **state)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s", tmp_path("replace.safetensors"));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)gettid());
    static float big[4096];
    int64_t n_big = 4096, one = 1;
    float small = 3.0f;

    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_add(w, "big", SAE_DTYPE_F32, 1, &n_big, big));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_add(w, "small", SAE_DTYPE_F32, 1, &one, &small));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < 100); /* nothing of the old file left over */
    assert_int_not_equal(access(tmp, F_OK), 0);
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    assert_int_equal(sae_st_count(r), 1);
    assert_null(sae_st_find(r, "big"));
    float v;
    assert_sae_ok(sae_st_to_f32(must_find(r, "small"), &v, 1));
    assert_true(v == 3.0f);
    sae_st_close(r);
}

/* ---- streamed writing ------------------------------------------------------------------- */

/* Fill the streamed tensors "a" (3, 4) and "c" (5) in interleaved pieces, backwards: a row of
 * a, then an element of c, ... The last `short_by` elements of c are left out. */
typedef struct stream_job {
    const sae_st_writer *w;
    int short_by;
} stream_job;

static sae_status fill_backwards(FILE *f, const int64_t *start, void *user)
{
    const stream_job *job = user;
    const int64_t a = start[sae__st_writer_index(job->w, "a")];
    const int64_t c = start[sae__st_writer_index(job->w, "c")];
    for (int i = 4; i >= 0; i--) {
        if (i < 3) {
            float row[4] = {(float)(4 * i), (float)(4 * i + 1), (float)(4 * i + 2),
                            (float)(4 * i + 3)};
            assert_int_equal(fseeko(f, a + 16 * i, SEEK_SET), 0);
            assert_int_equal(fwrite(row, sizeof row, 1, f), 1);
        }
        if (i < 5 - job->short_by) {
            const float v = 100.0f + (float)i;
            assert_int_equal(fseeko(f, c + 4 * i, SEEK_SET), 0);
            assert_int_equal(fwrite(&v, sizeof v, 1, f), 1);
        }
    }
    return SAE_OK;
}

static void test_streamed_write(void **state)
{
    const char *path = tmp_path("streamed.safetensors");
    const int64_t shape_a[2] = {3, 4}, n_b = 2, n_c = 5;
    const int32_t b[2] = {7, -7};
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae__st_writer_add_streamed(w, "a", SAE_DTYPE_F32, 2, shape_a));
    assert_sae_ok(sae_st_writer_add(w, "b", SAE_DTYPE_I32, 1, &n_b, b)); /* between them */
    assert_sae_ok(sae__st_writer_add_streamed(w, "c", SAE_DTYPE_F32, 1, &n_c));
    assert_int_equal(sae__st_writer_index(w, "c"), 2);
    assert_int_equal(sae__st_writer_index(w, "d"), -1);
    assert_error(sae_st_writer_write(w, path), SAE_EINVAL, "tensor a is streamed");

    /* A fill that leaves the last tensor short: an error, and no file. */
    remove(path);
    stream_job job = {w, 1};
    assert_error(sae__st_writer_write_streamed(w, path, fill_backwards, &job), SAE_EIO,
                 "expected");
    assert_int_not_equal(access(path, F_OK), 0);

    job.short_by = 0;
    assert_sae_ok(sae__st_writer_write_streamed(w, path, fill_backwards, &job));
    sae_st_writer_free(w);
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    float a[12], c[5];
    assert_sae_ok(sae_st_to_f32(must_find(r, "a"), a, 12));
    assert_sae_ok(sae_st_to_f32(must_find(r, "c"), c, 5));
    for (int i = 0; i < 12; i++)
        assert_same_float(a[i], (float)i, i, "a");
    for (int i = 0; i < 5; i++)
        assert_same_float(c[i], 100.0f + (float)i, i, "c");
    assert_memory_equal(must_find(r, "b")->data, b, sizeof b);
    sae_st_close(r);
}

/* ---- atomic_file.c ----------------------------------------------------------------------- */

static sae_status write_then_fail(FILE *f, void *user)
{
    fputs("partial", f);
    return sae__fail(SAE_ECANCELED, "stopped by %s", (const char *)user);
}

static sae_status write_hello(FILE *f, void *user)
{
    return fputs("hello\n", f) < 0 ? SAE_EIO : SAE_OK;
}

static void test_atomic_write(void **state)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s", tmp_path("atomic.txt"));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)gettid());
    assert_sae_ok(sae__write_file_atomic(path, write_hello, NULL));

    /* A failing writer leaves the target as it was and no temporary file behind. */
    assert_error(sae__write_file_atomic(path, write_then_fail, "the test"), SAE_ECANCELED,
                 "stopped by the test");
    assert_int_not_equal(access(tmp, F_OK), 0);
    char *text = NULL;
    assert_sae_ok(sae__read_text_file(path, 100, &text));
    assert_string_equal(text, "hello\n");
    free(text);

    assert_error(sae__read_text_file(path, 5, &text), SAE_EFORMAT, "larger than 5 bytes");
    assert_null(text);
    assert_sae_ok(sae__read_text_file(path, 6, &text)); /* exactly at the limit */
    assert_string_equal(text, "hello\n");
    free(text);
    assert_error(sae__read_text_file(tmp_path("absent.txt"), 100, &text), SAE_ENOTFOUND,
                 "absent.txt");
}

static void test_read_text_file_grows(void **state)
{
    const char *path = tmp_path("long.txt");
    static char content[10000];
    for (size_t i = 0; i < sizeof content; i++)
        content[i] = (char)('a' + i % 26);
    write_bytes(path, content, sizeof content);
    char *text = NULL;
    assert_sae_ok(sae__read_text_file(path, 1 << 20, &text));
    assert_int_equal(strlen(text), sizeof content);
    assert_memory_equal(text, content, sizeof content);
    free(text);
    write_bytes(path, "", 0);
    assert_sae_ok(sae__read_text_file(path, 10, &text));
    assert_string_equal(text, "");
    free(text);
}

static void test_path_join(void **state)
{
    char buf[16];
    assert_true(sae__path_join(buf, sizeof buf, "dir", "f.json"));
    assert_string_equal(buf, "dir/f.json");
    assert_true(sae__path_join(buf, sizeof buf, "dir/", "f.json"));
    assert_string_equal(buf, "dir/f.json");
    assert_true(sae__path_join(buf, sizeof buf, "", "f.json"));
    assert_string_equal(buf, "f.json");
    assert_true(sae__path_join(buf, sizeof buf, "abcdefgh", "123456")); /* 15 chars fit */
    assert_false(sae__path_join(buf, sizeof buf, "abcdefgh", "1234567"));
}

/* ---- real files ------------------------------------------------------------------------- */

static void test_oracle_case_file(void **state)
{
    static const char *names[] = {
        "in.x", "out.feature_acts", "out.grad.W_dec", "out.grad.W_enc", "out.grad.b_dec",
        "out.grad.b_enc", "out.hidden_pre", "out.inference.feature_acts",
        "out.inference.forward", "out.inference.sae_out", "out.l1_loss", "out.loss",
        "out.mse_loss", "out.sae_out", "param.W_dec", "param.W_enc", "param.b_dec",
        "param.b_enc"};
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, shared_path("oracle/saelens_standard_d32_s128_b16.safetensors")));
    assert_int_equal(sae_st_count(r), 18);
    for (int i = 0; i < 18; i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        assert_string_equal(t->name, names[i]);
        assert_int_equal(t->dtype, SAE_DTYPE_F32);
    }
    assert_shape(must_find(r, "in.x"), 2, (const int64_t[]){16, 32});
    assert_shape(must_find(r, "param.W_enc"), 2, (const int64_t[]){32, 128});
    assert_shape(must_find(r, "param.b_enc"), 1, (const int64_t[]){128});
    const sae_tensor_info *loss = must_find(r, "out.loss");
    assert_shape(loss, 0, NULL);
    float v;
    assert_sae_ok(sae_st_to_f32(loss, &v, 1)); /* at an offset that is not 4-aligned */
    assert_float_equal(v, 372.8533020019531, 1e-4);
    assert_string_equal(sae_st_metadata(r, "case"), "saelens_standard_d32_s128_b16");
    sae_st_close(r);
}

static void test_oracle_native_weights(void **state)
{
    struct { const char *name; int ndim; int64_t shape[2]; } want[] = {
        {"W_dec", 2, {128, 32}}, {"W_enc", 2, {32, 128}}, {"b_dec", 1, {32}}, {"b_enc", 1, {128}}};
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(
        &r, shared_path("oracle/native/saelens_standard_d32_s128_b16/sae_weights.safetensors")));
    assert_int_equal(sae_st_count(r), 4);
    for (int i = 0; i < 4; i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        assert_string_equal(t->name, want[i].name);
        assert_shape(t, want[i].ndim, want[i].shape);
    }
    int64_t n;
    float *w_dec = load_tensor_f32(
        shared_path("oracle/native/saelens_standard_d32_s128_b16/sae_weights.safetensors"),
        "W_dec", &n, NULL, NULL);
    float *param = load_tensor_f32(shared_path("oracle/saelens_standard_d32_s128_b16.safetensors"),
                                   "param.W_dec", NULL, NULL, NULL);
    assert_int_equal(n, 128 * 32);
    assert_memory_equal(w_dec, param, sizeof(float) * (size_t)n);
    test_free(w_dec);
    test_free(param);
    sae_st_close(r);
}

/* ---- malformed files: one test per class of defect --------------------------------------- */

static void test_missing_file(void **state)
{
    sae_st_reader *r = NULL;
    assert_error(sae_st_open(&r, tmp_path("does_not_exist.safetensors")), SAE_EIO,
                 "does_not_exist.safetensors: cannot open: No such file or directory");
    assert_null(r);
    assert_error(sae_st_open(&r, tmp_path("")), SAE_EIO, "not a regular file");
}

static void test_truncated_file(void **state)
{
    const char *path = tmp_path("short.safetensors");
    sae_st_reader *r = NULL;
    write_bytes(path, "\x02\0\0\0\0", 5);
    assert_error(sae_st_open(&r, path), SAE_EFORMAT, "short.safetensors: file has 5 bytes");
    write_bytes(path, "", 0);
    assert_error(sae_st_open(&r, path), SAE_EFORMAT, "file has 0 bytes");
    assert_error(sae_st_open_memory(&r, NULL, 0), SAE_EFORMAT, "too short");

    /* A valid file cut in its data region. */
    size_t size;
    const char *weights =
        shared_path("oracle/native/saelens_standard_d32_s128_b16/sae_weights.safetensors");
    unsigned char *bytes = read_bytes(weights, &size);
    write_bytes(path, bytes, size - 100);
    test_free(bytes);
    assert_error(sae_st_open(&r, path), SAE_EFORMAT,
                 "tensor b_enc: data_offsets [32896, 33408] run past the end of the data buffer");
    assert_null(r);
}

static void test_header_length_past_end(void **state)
{
    const char *path = tmp_path("past_end.safetensors");
    size_t size;
    unsigned char *buf = make_raw(1000, "{}      ", 0, &size);
    write_bytes(path, buf, size);
    test_free(buf);
    sae_st_reader *r = NULL;
    assert_error(sae_st_open(&r, path), SAE_EFORMAT,
                 "header length 1000 runs past the end of the file (16 bytes)");
    assert_null(r);
}

static void test_header_too_large(void **state)
{
    size_t size;
    unsigned char *buf = make_raw(100000001, "{}", 0, &size);
    sae_st_reader *r = NULL;
    assert_error(sae_st_open_memory(&r, buf, size), SAE_EFORMAT,
                 "header length 100000001 exceeds the limit of 100000000 bytes");
    test_free(buf);
    buf = make_raw(UINT64_MAX, "{}", 0, &size);
    assert_error(sae_st_open_memory(&r, buf, size), SAE_EFORMAT, "exceeds the limit");
    test_free(buf);
}

static void test_invalid_json(void **state)
{
    expect_bad_header("{\"a\": ", 0, "header is not valid JSON");
    expect_bad_header("", 0, "header is not valid JSON");
    expect_bad_header("{} x", 0, "unexpected bytes after the object");
    expect_bad_header("{}{}", 0, "unexpected bytes after the object");
    expect_bad_header("{\"a\xff\": 1}", 0, "not valid UTF-8");
    expect_bad_header("{\"\xc0\xaf\": 1}", 0, "not valid UTF-8");      /* overlong '/' */
    expect_bad_header("{\"\xed\xa0\x80\": 1}", 0, "not valid UTF-8");  /* surrogate */
    expect_bad_header("{\"a\tb\": 1}", 0, "control character 0x09");
    expect_bad_header("\x01{}", 0, "control character 0x01");
    expect_bad_header("{\"a\\u0000b\": {}}", 0, "\\u0000");
    expect_good_header("\n{ \"__metadata__\" : { \"k\\\"\\\\u0000\" : \"v\" } }\r\n\t ", 0);
}

static void test_not_an_object(void **state)
{
    expect_bad_header("[1, 2]", 0, "header is not a JSON object");
    expect_bad_header("\"text\"", 0, "header is not a JSON object");
    expect_bad_header("{\"t\": [1]}", 0, "tensor t: entry is not an object");
}

static void test_duplicate_names(void **state)
{
    expect_bad_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                      2, "tensor name a appears twice");
    expect_bad_header("{\"__metadata__\":{},\"__metadata__\":{}}", 0,
                      "__metadata__ appears twice");
    expect_bad_header("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
                      "__metadata__ key \"k\" appears twice");
    expect_bad_header("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],"
                      "\"data_offsets\":[0,1]}}", 1, "field dtype appears twice");
}

static void test_unknown_dtype(void **state)
{
    expect_bad_header("{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "tensor w: unknown dtype \"F33\"");
    expect_bad_header("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "unknown dtype \"f32\"");
    expect_bad_header("{\"w\":{\"dtype\":11,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "tensor w: dtype is not a string");
}

static void test_bad_shape(void **state)
{
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
                      "tensor w: shape[0] is not a non-negative integer (-1)");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2, 2.5],\"data_offsets\":[0,20]}}",
                      20, "shape[1] is not a non-negative integer (2.5)");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                      "shape[0] is not a non-negative integer (not a number)");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8,
                      "shape[0] is not a non-negative integer");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                      "\"data_offsets\":[0,4]}}", 4, "shape has 9 dimensions, at most 8");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                      "shape is not an array");
    expect_good_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],"
                       "\"data_offsets\":[0,8]}}", 8);
}

static void test_shape_overflow(void **state)
{
    expect_bad_header("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,0]}}", 0,
                      "shape [4294967296, 4294967296] overflows (more than 2^63 elements)");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
                      "\"data_offsets\":[0,0]}}", 0,
                      "[2147483648, 2147483648] F32 overflows (more than 2^63 bytes)");
    /* A zero dimension makes the product 0 whatever the others are. */
    expect_good_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,0,4294967296],"
                       "\"data_offsets\":[0,0]}}", 0);
}

static void test_bad_offsets(void **state)
{
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                      "tensor w: data_offsets [0, 8] run past the end of the data buffer (4 bytes");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                      "data_offsets [8, 0] end before they begin");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
                      "data_offsets is not two non-negative integers");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
                      "data_offsets is not two non-negative integers");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]}}", 8,
                      "data_offsets is not two non-negative integers");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":\"0,8\"}}", 8,
                      "data_offsets is not two non-negative integers");
}

static void test_overlapping_regions(void **state)
{
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                      "tensors a [0, 8] and b [4, 12] overlap");
    /* Two tensors sharing the same bytes. */
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                      "overlap");
}

static void test_gap_between_regions(void **state)
{
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
                      "gap in the data buffer: bytes [4, 8) belong to no tensor (before b)");
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                      "bytes [0, 4) belong to no tensor");
    /* Bytes past the last tensor: the data buffer must end with the file. */
    expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                      "the tensors cover 4 bytes but the data buffer has 8");
    expect_bad_header("{}", 3, "the tensors cover 0 bytes but the data buffer has 3");
    /* Regions listed out of order still tile the buffer. */
    expect_good_header("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                       "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8);
}

static void test_size_mismatch(void **state)
{
    expect_bad_header("{\"W_dec\":{\"dtype\":\"F32\",\"shape\":[32,32],\"data_offsets\":[0,100]}}",
                      100, "tensor W_dec: data_offsets [0, 100] but [32, 32] F32 needs 4096 bytes");
    expect_bad_header("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                      "data_offsets [0, 4] but [] F64 needs 8 bytes");
}

static void test_bad_metadata(void **state)
{
    expect_bad_header("{\"__metadata__\":{\"step\":1}}", 0,
                      "__metadata__ value of \"step\" is not a string");
    expect_bad_header("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "is not a string");
    expect_bad_header("{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is not an object");
}

static void test_bad_fields(void **state)
{
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
                      "tensor w: field data_offsets is missing");
    expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
                      "\"extra\":1}}", 4, "tensor w: unknown field \"extra\"");
}

/* No input may crash the reader or make it read outside the buffer (valgrind checks the
 * latter): every truncation of a valid file and single-byte corruptions of every byte. */
static void test_corrupted_files_never_crash(void **state)
{
    const char *path = tmp_path("fuzz.safetensors");
    uint16_t h[3] = {0x3c00, 0x4000, 0x4200};
    int64_t three = 3, shape2[2] = {1, 3};
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_set_metadata(w, "k", "v"));
    assert_sae_ok(sae_st_writer_add(w, "h", SAE_DTYPE_F16, 1, &three, h));
    assert_sae_ok(sae_st_writer_add(w, "b", SAE_DTYPE_BF16, 2, shape2, h));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);
    size_t size;
    unsigned char *good = read_bytes(path, &size);

    for (size_t len = 0; len < size; len++) {
        unsigned char *cut = test_malloc(len + 1);
        memcpy(cut, good, len);
        sae_st_reader *r = NULL;
        assert_int_equal(sae_st_open_memory(&r, cut, len), SAE_EFORMAT);
        test_free(cut);
    }
    static const unsigned char flips[] = {0x01, 0x02, 0x20, 0x80, 0xff};
    int accepted = 0;
    for (size_t i = 0; i < size; i++)
        for (size_t f = 0; f < sizeof flips; f++) {
            unsigned char *bad = test_malloc(size);
            memcpy(bad, good, size);
            bad[i] ^= flips[f];
            sae_st_reader *r = NULL;
            sae_status s = sae_st_open_memory(&r, bad, size);
            assert_true(s == SAE_OK || s == SAE_EFORMAT);
            for (int64_t t = 0; s == SAE_OK && t < sae_st_count(r); t++) {
                float out[8];
                const sae_tensor_info *ti = sae_st_tensor_at(r, t);
                if (ti->numel <= 8)
                    sae_st_to_f32(ti, out, 8);
            }
            accepted += s == SAE_OK;
            sae_st_close(r);
            test_free(bad);
        }
    assert_true(accepted > 0); /* flips in the data region keep the file valid */
    test_free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_round_trip_float_dtypes),
        cmocka_unit_test(test_to_f32_errors),
        cmocka_unit_test(test_metadata_round_trip),
        cmocka_unit_test(test_scalar_and_zero_sized),
        cmocka_unit_test(test_header_padding),
        cmocka_unit_test(test_sorted_order_and_find),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_write_into_missing_dir),
        cmocka_unit_test(test_write_replaces_existing),
        cmocka_unit_test(test_streamed_write),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_read_text_file_grows),
        cmocka_unit_test(test_path_join),
        cmocka_unit_test(test_oracle_case_file),
        cmocka_unit_test(test_oracle_native_weights),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_header_length_past_end),
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_bad_shape),
        cmocka_unit_test(test_shape_overflow),
        cmocka_unit_test(test_bad_offsets),
        cmocka_unit_test(test_overlapping_regions),
        cmocka_unit_test(test_gap_between_regions),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_corrupted_files_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
