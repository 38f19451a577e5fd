/* test_source.c: sae_source — memory, files (safetensors of several dtypes and ranks, raw
 * shards) and callbacks: stored order, shuffling (a permutation per epoch), looping, reset,
 * independence from batch sizes, bounded memory, and one test per class of error. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sae/source.h"
#include "test_util.h"

/* ---- helpers --------------------------------------------------------------------------------- */

/* Every row of the source with batches of `batch` rows, until it ends or `cap` rows are read.
 * out: (cap, d) contiguous, written through a batch buffer with a padded leading dimension.
 * Returns the number of rows read. */
static int64_t read_rows(sae_source *src, int64_t batch, int64_t cap, float *out)
{
    int64_t d = sae_source_d(src), ld = d + 3, total = 0;
    float *buf = test_malloc((size_t)(batch * ld) * sizeof(float));
    while (total < cap) {
        int64_t want = cap - total < batch ? cap - total : batch, got = -1;
        assert_sae_ok(sae_source_next(src, want, buf, ld, &got));
        assert_true(got >= 0 && got <= want);
        for (int64_t i = 0; i < got; i++)
            memcpy(out + (total + i) * d, buf + i * ld, (size_t)d * sizeof(float));
        total += got;
        if (got < want) {
            assert_sae_ok(sae_source_next(src, want, buf, ld, &got)); /* the end stays the end */
            assert_int_equal(got, 0);
            break;
        }
    }
    test_free(buf);
    return total;
}

static int64_t sort_d; /* row width for compare_rows */

static int compare_rows(const void *a, const void *b)
{
    const float *x = a, *y = b;
    for (int64_t j = 0; j < sort_d; j++)
        if (x[j] != y[j])
            return x[j] < y[j] ? -1 : 1;
    return 0;
}

/* Fail unless the n rows of `got` are the n rows of `want` in some order. */
static void assert_permutation(const float *got, const float *want, int64_t n, int64_t d)
{
    size_t bytes = (size_t)(n * d) * sizeof(float);
    float *a = test_malloc(bytes), *b = test_malloc(bytes);
    memcpy(a, got, bytes);
    memcpy(b, want, bytes);
    sort_d = d;
    qsort(a, (size_t)n, (size_t)d * sizeof(float), compare_rows);
    qsort(b, (size_t)n, (size_t)d * sizeof(float), compare_rows);
    assert_memory_equal(a, b, bytes);
    test_free(a);
    test_free(b);
}

static void expect_error(sae_status got, sae_status want, const char *needle)
{
    if (got != want)
        fail_msg("status %d (%s), expected %d; message: %s", got, sae_status_str(got), want,
                 sae_last_error());
    if (needle && !strstr(sae_last_error(), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", sae_last_error(), needle);
}

static sae_source_options options(int64_t shuffle, uint64_t seed, int32_t loop)
{
    sae_source_options o = SAE_SOURCE_OPTIONS_INIT;
    o.shuffle_buffer_rows = shuffle, o.seed = seed, o.loop = loop;
    o.allocator = test_allocator();
    return o;
}

/* ---- memory sources -------------------------------------------------------------------------- */

enum { MN = 50, MD = 5, MLD = 7 };

/* (MN, MD) rows with leading dimension MLD; column 0 is the row id. */
static void memory_rows(float *x)
{
    fill_normal(x, MN * MLD, 11, 1.0f);
    for (int i = 0; i < MN; i++)
        x[i * MLD] = (float)i;
}

/* ids[i] = column 0 of row i; fail unless every id in [0, n) appears exactly once. */
static void assert_ids_once(const float *rows, int64_t n, int64_t d)
{
    char *seen = test_calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        int64_t id = (int64_t)rows[i * d];
        assert_true(id >= 0 && id < n);
        assert_int_equal(seen[id], 0);
        seen[id] = 1;
    }
    test_free(seen);
}

static bool in_stored_order(const float *rows, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++)
        if (rows[i * d] != (float)i)
            return false;
    return true;
}

static void test_memory_order(void **state)
{
    (void)state;
    float x[MN * MLD], got[MN * MD + MD];
    memory_rows(x);
    x[3 * MLD + 1] = NAN, x[4 * MLD + 2] = INFINITY; /* passed through unchanged */
    sae_source_options o = options(0, 0, 0);
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_memory(&src, MN, MD, x, MLD, &o));
    assert_int_equal(sae_source_d(src), MD);
    assert_int_equal(sae_source_rows(src), MN);
    assert_int_equal(read_rows(src, 7, MN + 1, got), MN);
    for (int i = 0; i < MN; i++)
        assert_memory_equal(got + i * MD, x + i * MLD, MD * sizeof(float));
    assert_true(isnan(got[3 * MD + 1]) && isinf(got[4 * MD + 2]));
    assert_sae_ok(sae_source_reset(src));
    float again[MN * MD];
    assert_int_equal(read_rows(src, 1000, MN, again), MN);
    assert_memory_equal(again, got, sizeof again);
    sae_source_free(src);
    sae_source_free(NULL);
}

static void read_epoch(uint64_t seed, int64_t batch, float *out)
{
    float x[MN * MLD];
    memory_rows(x);
    sae_source_options o = options(1, seed, 0);
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_memory(&src, MN, MD, x, MLD, &o));
    assert_int_equal(read_rows(src, batch, MN + 1, out), MN);
    sae_source_free(src);
}

static void test_memory_shuffle(void **state)
{
    (void)state;
    float a[MN * MD], b[MN * MD], c[MN * MD];
    read_epoch(1, 7, a);
    assert_ids_once(a, MN, MD);
    assert_false(in_stored_order(a, MN, MD));
    read_epoch(1, 1, b); /* same seed, other batches: identical */
    assert_memory_equal(a, b, sizeof a);
    read_epoch(2, 1000, c);
    assert_ids_once(c, MN, MD);
    assert_memory_not_equal(a, c, sizeof a);
}

static void test_memory_loop_reset(void **state)
{
    (void)state;
    float x[MN * MLD], first[3 * MN * MD], again[3 * MN * MD];
    memory_rows(x);
    sae_source_options o = options(1, 5, 1);
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_memory(&src, MN, MD, x, MLD, &o));
    assert_int_equal(read_rows(src, 7, 3 * MN, first), 3 * MN); /* batches straddle epochs */
    assert_int_equal(sae_source_epoch(src), 2);
    for (int e = 0; e < 3; e++)
        assert_ids_once(first + e * MN * MD, MN, MD);
    assert_memory_not_equal(first, first + MN * MD, MN * MD * sizeof(float));
    assert_memory_not_equal(first + MN * MD, first + 2 * MN * MD, MN * MD * sizeof(float));
    assert_sae_ok(sae_source_reset(src));
    assert_int_equal(sae_source_epoch(src), 0);
    assert_int_equal(read_rows(src, 13, 3 * MN, again), 3 * MN);
    assert_memory_equal(first, again, sizeof first);
    sae_source_free(src);

    /* unshuffled looping repeats the stored order; an empty looping source ends */
    o = options(0, 0, 1);
    assert_sae_ok(sae_source_from_memory(&src, MN, MD, x, MLD, &o));
    assert_int_equal(read_rows(src, 7, 2 * MN, first), 2 * MN);
    assert_true(in_stored_order(first, MN, MD) && in_stored_order(first + MN * MD, MN, MD));
    sae_source_free(src);
    assert_sae_ok(sae_source_from_memory(&src, 0, MD, NULL, 0, &o));
    int64_t got = -1;
    assert_sae_ok(sae_source_next(src, 4, first, MD, &got));
    assert_int_equal(got, 0);
    sae_source_free(src);
}

/* ---- file shards ----------------------------------------------------------------------------- */

enum { FD = 6, FN = 37 + 20 + 15 + 50 + 0 + 11 };

static void write_st(const char *path, const char *name, int32_t dtype, int ndim,
                     const int64_t *shape, const void *data, const char *name2)
{
    static const int32_t tokens[16] = {0};
    static const int64_t token_shape[1] = {16};
    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_add(w, name, dtype, ndim, shape, data));
    if (name2)
        assert_sae_ok(sae_st_writer_add(w, name2, SAE_DTYPE_I32, 1, token_shape, tokens));
    assert_sae_ok(sae_st_writer_write(w, path));
    sae_st_writer_free(w);
}

static void write_raw(const char *path, const void *data, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, bytes, f), bytes);
    fclose(f);
}

/* Six shards of width FD: F32 [37, 6]; BF16 [20, 6] under another name; F32 [3, 5, 6] "x"
 * beside an I32 tensor; raw 50 rows; an empty raw file; F64 [11, 6]. Their concatenation as
 * float32 goes to want (FN, FD). */
static char shard_paths[6][4096];

static void write_shards(float *want)
{
    const char *names[6] = {"a.safetensors", "b.safetensors", "c.safetensors", "d.f32",
                            "e.bin", "f.safetensors"};
    for (int i = 0; i < 6; i++)
        snprintf(shard_paths[i], sizeof shard_paths[i], "%s", tmp_path(names[i]));
    fill_normal(want, FN * FD, 21, 1.0f);
    float *w = want;
    write_st(shard_paths[0], "x", SAE_DTYPE_F32, 2, (int64_t[]){37, FD}, w, NULL);
    w += 37 * FD;
    uint16_t bf[20 * FD];
    for (int i = 0; i < 20 * FD; i++) { /* bf16 = the top half of a float32 */
        uint32_t bits;
        memcpy(&bits, &w[i], 4);
        bf[i] = (uint16_t)(bits >> 16);
        bits = (uint32_t)bf[i] << 16;
        memcpy(&w[i], &bits, 4);
    }
    write_st(shard_paths[1], "acts", SAE_DTYPE_BF16, 2, (int64_t[]){20, FD}, bf, NULL);
    w += 20 * FD;
    write_st(shard_paths[2], "x", SAE_DTYPE_F32, 3, (int64_t[]){3, 5, FD}, w, "tokens");
    w += 15 * FD;
    write_raw(shard_paths[3], w, 50 * FD * sizeof(float));
    w += 50 * FD;
    write_raw(shard_paths[4], w, 0);
    double f64[11 * FD];
    for (int i = 0; i < 11 * FD; i++)
        f64[i] = w[i];
    write_st(shard_paths[5], "x", SAE_DTYPE_F64, 2, (int64_t[]){11, FD}, f64, NULL);
}

static sae_source *open_shards(sae_source_options *o)
{
    const char *paths[6];
    for (int i = 0; i < 6; i++)
        paths[i] = shard_paths[i];
    o->raw_d = FD;
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_files(&src, paths, 6, o));
    assert_int_equal(sae_source_d(src), FD);
    assert_int_equal(sae_source_rows(src), FN);
    return src;
}

/* One epoch of the shards with the given shuffle, chunk and batch sizes. */
static void read_shards(int64_t shuffle, uint64_t seed, int64_t chunk, int64_t batch, float *out)
{
    sae_source_options o = options(shuffle, seed, 0);
    o.read_chunk_rows = chunk;
    sae_source *src = open_shards(&o);
    assert_int_equal(read_rows(src, batch, FN + 1, out), FN);
    sae_source_free(src);
}

static void test_files_in_order(void **state)
{
    (void)state;
    float want[FN * FD], got[FN * FD];
    write_shards(want);
    const int64_t batches[] = {1, 7, 1000}, chunks[] = {0, 4, 1};
    for (int b = 0; b < 3; b++)
        for (int c = 0; c < 3; c++) {
            memset(got, 0, sizeof got);
            read_shards(0, 0, chunks[c], batches[b], got);
            assert_memory_equal(got, want, sizeof want);
        }
}

static void test_files_shuffled(void **state)
{
    (void)state;
    float want[FN * FD], first[FN * FD], got[FN * FD];
    write_shards(want);
    read_shards(16, 3, 0, 7, first);
    assert_permutation(first, want, FN, FD);
    assert_memory_not_equal(first, want, sizeof want);
    /* the same seed gives the same rows whatever the batch and chunk sizes */
    const int64_t batches[] = {1, 7, 1000}, chunks[] = {0, 4, 1};
    for (int b = 0; b < 3; b++)
        for (int c = 0; c < 3; c++) {
            read_shards(16, 3, chunks[c], batches[b], got);
            assert_memory_equal(got, first, sizeof got);
        }
    read_shards(16, 4, 0, 7, got);
    assert_permutation(got, want, FN, FD);
    assert_memory_not_equal(got, first, sizeof got);
    read_shards(1000, 3, 0, 7, got); /* a buffer larger than the data */
    assert_permutation(got, want, FN, FD);
    read_shards(1, 3, 0, 7, got); /* a buffer of one row is the stored order */
    assert_memory_equal(got, want, sizeof want);
}

static void test_files_loop_reset(void **state)
{
    (void)state;
    float want[FN * FD], first[3 * FN * FD], again[3 * FN * FD];
    write_shards(want);
    sae_source_options o = options(16, 9, 1);
    sae_source *src = open_shards(&o);
    assert_int_equal(read_rows(src, 7, 3 * FN, first), 3 * FN);
    for (int e = 0; e < 3; e++)
        assert_permutation(first + e * FN * FD, want, FN, FD);
    assert_memory_not_equal(first, first + FN * FD, FN * FD * sizeof(float));
    assert_memory_not_equal(first + FN * FD, first + 2 * FN * FD, FN * FD * sizeof(float));
    assert_sae_ok(sae_source_reset(src));
    assert_int_equal(read_rows(src, 1000, 3 * FN, again), 3 * FN);
    assert_memory_equal(first, again, sizeof first);
    sae_source_free(src);
}

/* A shard that changes after the source was made fails the stream, which stays failed until a
 * reset; with the file restored the reset source reads again. */
static void test_files_changed_while_streaming(void **state)
{
    (void)state;
    float want[FN * FD], got[FN * FD];
    write_shards(want);
    sae_source_options o = options(0, 0, 0);
    sae_source *src = open_shards(&o);
    write_raw(shard_paths[3], want, 49 * FD * sizeof(float));
    int64_t n = -1;
    expect_error(sae_source_next(src, FN, got, FD, &n), SAE_EFORMAT, "d.f32 changed");
    assert_int_equal(n, 0);
    expect_error(sae_source_next(src, 1, got, FD, &n), SAE_EFORMAT, "failed earlier");
    write_shards(want);
    assert_sae_ok(sae_source_reset(src));
    assert_int_equal(read_rows(src, 50, FN, got), FN);
    assert_memory_equal(got, want, sizeof want);
    sae_source_free(src);
}

/* ---- bounded memory -------------------------------------------------------------------------- */

enum { BD = 16, BS = 1024 };

/* Four shards (two F32 safetensors, two raw) of `rows` rows in all; column 0 is the row id.
 * Streams them shuffled through S = BS rows and returns the peak bytes allocated. */
static size_t stream_peak(int64_t rows)
{
    char paths[4][4096];
    const char *p[4];
    int64_t per = rows / 4;
    float *x = test_malloc((size_t)(per * BD) * sizeof(float));
    for (int s = 0; s < 4; s++) {
        fill_normal(x, per * BD, 100 + (uint64_t)s, 1.0f);
        for (int64_t i = 0; i < per; i++)
            x[i * BD] = (float)(s * per + i);
        char name[32];
        snprintf(name, sizeof name, "big%d.%s", s, s % 2 ? "f32" : "safetensors");
        snprintf(paths[s], sizeof paths[s], "%s", tmp_path(name));
        if (s % 2)
            write_raw(paths[s], x, (size_t)(per * BD) * sizeof(float));
        else
            write_st(paths[s], "x", SAE_DTYPE_F32, 2, (int64_t[]){per, BD}, x, NULL);
        p[s] = paths[s];
    }
    test_free(x);

    alloc_counter c = {0, 0, 0};
    sae_allocator counting = counting_allocator(&c);
    sae_source_options o = SAE_SOURCE_OPTIONS_INIT;
    o.shuffle_buffer_rows = BS, o.seed = 1, o.raw_d = BD, o.allocator = &counting;
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_files(&src, p, 4, &o));
    assert_int_equal(sae_source_rows(src), 4 * per);
    size_t allocs_made = c.allocs;
    enum { BATCH = 4096 };
    float *batch = test_malloc(BATCH * BD * sizeof(float));
    char *seen = test_calloc((size_t)(4 * per), 1);
    int64_t total = 0, got = 0;
    do {
        assert_sae_ok(sae_source_next(src, BATCH, batch, BD, &got));
        for (int64_t i = 0; i < got; i++) {
            int64_t id = (int64_t)batch[i * BD];
            assert_true(id >= 0 && id < 4 * per && !seen[id]);
            seen[id] = 1;
        }
        total += got;
    } while (got > 0);
    assert_int_equal(total, 4 * per);
    assert_int_equal(c.allocs, allocs_made); /* streaming allocates nothing */
    sae_source_free(src);
    assert_int_equal(c.live, 0);
    test_free(seen);
    test_free(batch);
    for (int s = 0; s < 4; s++)
        unlink(paths[s]);
    return c.peak;
}

static void test_bounded_memory(void **state)
{
    (void)state;
    size_t small = stream_peak(20000), large = stream_peak(200000);
    /* shuffle buffer + one default chunk (2^18 floats) + bookkeeping */
    size_t bound = (size_t)BS * BD * sizeof(float) + (size_t)(1 << 18) * sizeof(float) + 16384;
    print_message("peak bytes allocated: %zu for 20k rows, %zu for 200k rows (bound %zu, data "
                  "%zu)\n", small, large, bound, (size_t)200000 * BD * sizeof(float));
    assert_int_equal(small, large);
    assert_true(large <= bound);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static sae_status open_files(const char *const *paths, int64_t n, int64_t raw_d,
                             const char *tensor_name)
{
    sae_source_options o = options(0, 0, 0);
    o.raw_d = raw_d, o.tensor_name = tensor_name;
    sae_source *src = NULL;
    sae_status s = sae_source_from_files(&src, paths, n, &o);
    if (s == SAE_OK) {
        assert_int_equal(sae_source_d(src), FD);
        sae_source_free(src);
    } else {
        assert_null(src);
    }
    return s;
}

static void test_file_errors(void **state)
{
    (void)state;
    float want[FN * FD];
    write_shards(want);
    const char *a = shard_paths[0];
    char missing[4096], wide[4096], ragged[4096], ints[4096], two[4096], junk[4096];
    snprintf(missing, sizeof missing, "%s", tmp_path("missing.safetensors"));
    snprintf(wide, sizeof wide, "%s", tmp_path("wide.safetensors"));
    snprintf(ragged, sizeof ragged, "%s", tmp_path("ragged.f32"));
    snprintf(ints, sizeof ints, "%s", tmp_path("ints.safetensors"));
    snprintf(two, sizeof two, "%s", tmp_path("two.safetensors"));
    snprintf(junk, sizeof junk, "%s", tmp_path("junk.safetensors"));
    unlink(missing);

    expect_error(open_files((const char *[]){a, missing}, 2, 0, NULL), SAE_ENOTFOUND,
                 "missing.safetensors");
    char missing_raw[4096];
    snprintf(missing_raw, sizeof missing_raw, "%s", tmp_path("missing.f32"));
    unlink(missing_raw);
    expect_error(open_files((const char *[]){missing_raw}, 1, FD, NULL), SAE_ENOTFOUND,
                 "missing.f32");

    float buf[7 * 4] = {0};
    write_st(wide, "x", SAE_DTYPE_F32, 2, (int64_t[]){4, 7}, buf, NULL);
    expect_error(open_files((const char *[]){a, wide}, 2, 0, NULL), SAE_ESHAPE,
                 "wide.safetensors has d = 7");
    assert_non_null(strstr(sae_last_error(), "d = 6"));
    expect_error(open_files((const char *[]){a}, 1, 5, NULL), SAE_ESHAPE, "raw_d");

    write_raw(ragged, want, 3 * FD * sizeof(float) + 4);
    expect_error(open_files((const char *[]){ragged}, 1, FD, NULL), SAE_EFORMAT, "ragged.f32");
    expect_error(open_files((const char *[]){shard_paths[3]}, 1, 0, NULL), SAE_EINVAL, "raw_d");

    int32_t ibuf[4 * FD] = {0};
    write_st(ints, "x", SAE_DTYPE_I32, 2, (int64_t[]){4, FD}, ibuf, NULL);
    expect_error(open_files((const char *[]){ints}, 1, 0, NULL), SAE_EFORMAT, "I32");

    sae_st_writer *w = NULL;
    assert_sae_ok(sae_st_writer_create(&w));
    assert_sae_ok(sae_st_writer_add(w, "resid_a", SAE_DTYPE_F32, 2, (int64_t[]){2, FD}, want));
    assert_sae_ok(sae_st_writer_add(w, "resid_b", SAE_DTYPE_F32, 2, (int64_t[]){3, FD}, want));
    assert_sae_ok(sae_st_writer_write(w, two));
    sae_st_writer_free(w);
    expect_error(open_files((const char *[]){two}, 1, 0, NULL), SAE_EINVAL, "resid_a, resid_b");
    assert_sae_ok(open_files((const char *[]){two}, 1, 0, "resid_b"));
    expect_error(open_files((const char *[]){two}, 1, 0, "resid_c"), SAE_ENOTFOUND, "resid_c");

    float scalar = 1.0f;
    write_st(ints, "x", SAE_DTYPE_F32, 0, NULL, &scalar, NULL);
    expect_error(open_files((const char *[]){ints}, 1, 0, NULL), SAE_EFORMAT, "shape []");

    write_raw(junk, "not a safetensors file", 22);
    expect_error(open_files((const char *[]){junk}, 1, 0, NULL), SAE_EFORMAT, "junk");
    expect_error(open_files(NULL, 0, 0, NULL), SAE_EINVAL, NULL);
    expect_error(open_files((const char *[]){a, NULL}, 2, 0, NULL), SAE_EINVAL, "paths[1]");
}

static void test_argument_errors(void **state)
{
    (void)state;
    float x[MN * MLD], out[MN * MD];
    memory_rows(x);
    sae_source *src = NULL;
    sae_source_options o = options(0, 0, 0);
    o.struct_size = 0;
    expect_error(sae_source_from_memory(&src, MN, MD, x, MLD, &o), SAE_EINVAL, "struct_size");
    o = options(-1, 0, 0);
    expect_error(sae_source_from_memory(&src, MN, MD, x, MLD, &o), SAE_EINVAL, "negative");
    o = options(0, 0, 2);
    expect_error(sae_source_from_memory(&src, MN, MD, x, MLD, &o), SAE_EINVAL, "loop");
    o = options(0, 0, 0);
    expect_error(sae_source_from_memory(&src, MN, MD, x, MD - 1, &o), SAE_ESHAPE, "leading");
    expect_error(sae_source_from_memory(&src, MN, 0, x, MLD, &o), SAE_EINVAL, "d >= 1");
    expect_error(sae_source_from_memory(&src, MN, MD, NULL, MLD, &o), SAE_EINVAL, "NULL");
    assert_null(src);
    assert_sae_ok(sae_source_from_memory(&src, MN, MD, x, MLD, NULL)); /* default options */
    int64_t got = -1;
    expect_error(sae_source_next(src, 4, out, MD - 1, &got), SAE_ESHAPE, "leading");
    expect_error(sae_source_next(src, 4, out, MD, NULL), SAE_EINVAL, NULL);
    expect_error(sae_source_next(src, -1, out, MD, &got), SAE_EINVAL, NULL);
    assert_sae_ok(sae_source_next(src, 0, NULL, 0, &got));
    assert_int_equal(got, 0);
    assert_sae_ok(sae_source_next(src, MN, out, MD, &got)); /* the argument errors broke nothing */
    assert_int_equal(got, MN);
    sae_source_free(src);
    expect_error(sae_source_reset(NULL), SAE_EINVAL, NULL);
    assert_int_equal(sae_source_rows(NULL), -1);
}

/* ---- callback sources ------------------------------------------------------------------------ */

enum { CN = 100, CD = 3, PER_CALL = 13 };

/* Rows id, id + 0.25, id + 0.5 for id = 0 .. CN - 1, at most PER_CALL rows per call; fails
 * with `fail` on call number `fail_at` (counting from 1), or writes too many rows when
 * `overflow` is set. */
typedef struct generator {
    int64_t next, calls, fail_at;
    sae_status fail;
    int overflow;
} generator;

static sae_status generate(void *user, int64_t max_rows, float *x, int64_t ldx, int64_t *rows)
{
    generator *g = user;
    assert_true(max_rows >= 1 && ldx >= CD);
    if (++g->calls == g->fail_at)
        return g->fail;
    if (g->overflow) {
        *rows = max_rows + 1;
        return SAE_OK;
    }
    int64_t n = CN - g->next;
    n = n < max_rows ? n : max_rows;
    n = n < PER_CALL ? n : PER_CALL;
    for (int64_t i = 0; i < n; i++, g->next++)
        for (int j = 0; j < CD; j++)
            x[i * ldx + j] = (float)g->next + 0.25f * (float)j;
    *rows = n;
    return SAE_OK;
}

/* A callback that fails inside libsae, leaving its own message. */
static sae_status failing_open(void *user, int64_t max_rows, float *x, int64_t ldx, int64_t *rows)
{
    sae_st_reader *r = NULL;
    return sae_st_open(&r, "/nonexistent/acts.safetensors");
}

static void read_generated(int64_t shuffle, int64_t chunk, int64_t batch, float *out)
{
    generator g = {0, 0, 0, SAE_OK, 0};
    sae_source_options o = options(shuffle, 8, 0);
    o.read_chunk_rows = chunk;
    sae_source *src = NULL;
    assert_sae_ok(sae_source_from_callback(&src, CD, generate, &g, &o));
    assert_int_equal(sae_source_rows(src), -1);
    assert_int_equal(read_rows(src, batch, CN + 1, out), CN);
    int64_t calls = g.calls;
    int64_t got = -1;
    assert_sae_ok(sae_source_next(src, 5, out, CD, &got)); /* ended: not called again */
    assert_int_equal(got, 0);
    assert_int_equal(g.calls, calls);
    expect_error(sae_source_reset(src), SAE_EUNSUPPORTED, "callback");
    sae_source_free(src);
}

static void test_callback(void **state)
{
    (void)state;
    float first[CN * CD], got[CN * CD];
    read_generated(0, 0, 7, first);
    for (int i = 0; i < CN; i++)
        assert_true(first[i * CD] == (float)i && first[i * CD + 2] == (float)i + 0.5f);
    read_generated(0, 5, 1, got);
    assert_memory_equal(got, first, sizeof got);
    float shuffled[CN * CD];
    read_generated(8, 0, 7, shuffled);
    assert_permutation(shuffled, first, CN, CD);
    assert_memory_not_equal(shuffled, first, sizeof got);
    const int64_t batches[] = {1, 7, 1000};
    for (int b = 0; b < 3; b++) {
        read_generated(8, 0, batches[b], got);
        assert_memory_equal(got, shuffled, sizeof got);
    }
}

static void test_callback_errors(void **state)
{
    (void)state;
    float out[CN * CD];
    int64_t got = -1;
    sae_source *src = NULL;
    sae_source_options o = options(0, 0, 0);
    o.read_chunk_rows = 10;
    generator g = {0, 0, 3, SAE_ECANCELED, 0};
    assert_sae_ok(sae_source_from_callback(&src, CD, generate, &g, &o));
    assert_sae_ok(sae_source_next(src, 15, out, CD, &got)); /* calls 1 and 2 */
    assert_int_equal(got, 15);
    expect_error(sae_source_next(src, 15, out, CD, &got), SAE_ECANCELED, "canceled");
    assert_int_equal(got, 0);
    expect_error(sae_source_next(src, 15, out, CD, &got), SAE_ECANCELED, "failed earlier");
    sae_source_free(src);

    g = (generator){0, 0, 0, SAE_OK, 1};
    assert_sae_ok(sae_source_from_callback(&src, CD, generate, &g, &o));
    expect_error(sae_source_next(src, 15, out, CD, &got), SAE_EINVAL, "wrote 11 rows");
    sae_source_free(src);

    assert_sae_ok(sae_source_from_callback(&src, CD, failing_open, NULL, &o));
    expect_error(sae_source_next(src, 15, out, CD, &got), SAE_EIO, "source callback: ");
    assert_non_null(strstr(sae_last_error(), "/nonexistent/acts.safetensors"));
    sae_source_free(src);

    o.loop = 1;
    expect_error(sae_source_from_callback(&src, CD, generate, &g, &o), SAE_EINVAL, "loop");
    o.loop = 0;
    expect_error(sae_source_from_callback(&src, CD, NULL, &g, &o), SAE_EINVAL, "callback");
    assert_null(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_order),
        cmocka_unit_test(test_memory_shuffle),
        cmocka_unit_test(test_memory_loop_reset),
        cmocka_unit_test(test_files_in_order),
        cmocka_unit_test(test_files_shuffled),
        cmocka_unit_test(test_files_loop_reset),
        cmocka_unit_test(test_files_changed_while_streaming),
        cmocka_unit_test(test_bounded_memory),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_argument_errors),
        cmocka_unit_test(test_callback),
        cmocka_unit_test(test_callback_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
