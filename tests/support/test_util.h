/*
 * test_util.h: what the CMocka programs share: a leak-checking allocator, paths to ../shared,
 * loading tensors, and tolerance checks.
 */
#ifndef SAE_TEST_UTIL_H
#define SAE_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sae/sae.h"

/* An allocator backed by CMocka's test_malloc/test_free: a leak fails the test. */
const sae_allocator *test_allocator(void);

/* Live and peak bytes and the number of allocations made through a counting allocator. */
typedef struct alloc_counter {
    size_t live, peak, allocs;
} alloc_counter;
/* An allocator over test_allocator() that counts into *c (zero it first). */
sae_allocator counting_allocator(alloc_counter *c);

/* SAE_SHARED_DIR "/" rel, in a static buffer (one at a time). */
const char *shared_path(const char *rel);

/* A scratch path under the build tree: SAE_TEST_TMPDIR "/" name (static buffer). */
const char *tmp_path(const char *name);

/* Load tensor `name` of a safetensors file as float32 (test_malloc'd; free with test_free).
 * Fails the test if the file or tensor is missing. Writes numel and, if shape is not NULL,
 * up to SAE_MAX_DIMS dims and ndim. */
float *load_tensor_f32(const char *path, const char *name, int64_t *numel, int64_t *shape,
                       int *ndim);

/* 1 if the safetensors file has a tensor `name`. */
int has_tensor(const char *path, const char *name);

/* Fail the test unless |got - want| <= atol + rtol * |want| everywhere; names `what` and the
 * worst index in the message. */
void assert_close_f32(const float *got, const float *want, int64_t n, double atol, double rtol,
                      const char *what);

/* Fill x[0..n) with N(0,1) * scale from a seeded generator. */
void fill_normal(float *x, int64_t n, uint64_t seed, float scale);

/* Rows (n, d) of N(0,1) entries with leading dimension ld >= d (test_malloc'd, free with
 * test_free); the padding past d is NaN, which a kernel must never read. */
float *normal_rows(int64_t n, int64_t d, int64_t ld, uint64_t seed);

/* Assert that a status is SAE_OK, printing sae_last_error() otherwise. */
#define assert_sae_ok(expr)                                                                    \
    do {                                                                                       \
        sae_status s_ = (expr);                                                                \
        if (s_ != SAE_OK)                                                                      \
            fail_msg("%s -> %d (%s): %s", #expr, s_, sae_status_str(s_), sae_last_error());   \
    } while (0)

#endif /* SAE_TEST_UTIL_H */
