/* test_util.c: shared helpers of the CMocka programs (see test_util.h). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* test_malloc has no alignment parameter: over-allocate and keep the original pointer just
 * below the aligned block. */
static void *test_alloc(size_t size, size_t alignment, void *user)
{
    (void)user;
    if (alignment < sizeof(void *))
        alignment = sizeof(void *);
    unsigned char *raw = test_malloc(size + alignment + sizeof(void *));
    if (!raw)
        return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + alignment - 1) & ~(uintptr_t)(alignment - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void test_free_aligned(void *ptr, void *user)
{
    (void)user;
    if (ptr)
        test_free(((void **)ptr)[-1]);
}

static const sae_allocator allocator = {test_alloc, test_free_aligned, NULL};

const sae_allocator *test_allocator(void) { return &allocator; }

const char *shared_path(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", SAE_SHARED_DIR, rel);
    return buf;
}

const char *tmp_path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", SAE_TEST_TMPDIR, name);
    return buf;
}

float *load_tensor_f32(const char *path, const char *name, int64_t *numel, int64_t *shape,
                       int *ndim)
{
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    const sae_tensor_info *t = sae_st_find(r, name);
    if (!t)
        fail_msg("%s has no tensor %s", path, name);
    float *out = test_malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    assert_sae_ok(sae_st_to_f32(t, out, t->numel));
    if (numel)
        *numel = t->numel;
    if (shape)
        memcpy(shape, t->shape, sizeof t->shape);
    if (ndim)
        *ndim = t->ndim;
    sae_st_close(r);
    return out;
}

int has_tensor(const char *path, const char *name)
{
    sae_st_reader *r = NULL;
    assert_sae_ok(sae_st_open(&r, path));
    int found = sae_st_find(r, name) != NULL;
    sae_st_close(r);
    return found;
}

void assert_close_f32(const float *got, const float *want, int64_t n, double atol, double rtol,
                      const char *what)
{
    int64_t worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)want[i]);
        double tol = atol + rtol * fabs((double)want[i]);
        if (!(err <= tol) && (worst < 0 || err - tol > worst_excess)) {
            worst = i;
            worst_excess = isnan(err) ? INFINITY : err - tol;
        }
    }
    if (worst >= 0)
        fail_msg("%s: element %lld is %.9g, expected %.9g (atol %g, rtol %g)", what,
                 (long long)worst, got[worst], want[worst], atol, rtol);
}

void fill_normal(float *x, int64_t n, uint64_t seed, float scale)
{
    sae_rng rng;
    sae_rng_init(&rng, seed, 0);
    for (int64_t i = 0; i < n; i++)
        x[i] = sae_rng_normal(&rng) * scale;
}

/* Each block carries its size in a header of COUNT_HEAD bytes (which keeps any alignment up to
 * that), so that the free can subtract it. */
enum { COUNT_HEAD = 64 };

static void *count_alloc(size_t size, size_t alignment, void *user)
{
    alloc_counter *c = user;
    const sae_allocator *t = test_allocator();
    unsigned char *p =
        t->alloc(size + COUNT_HEAD, alignment > COUNT_HEAD ? alignment : COUNT_HEAD, t->user);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    c->live += size, c->allocs++;
    c->peak = c->live > c->peak ? c->live : c->peak;
    return p + COUNT_HEAD;
}

static void count_free(void *ptr, void *user)
{
    if (!ptr)
        return;
    alloc_counter *c = user;
    unsigned char *p = (unsigned char *)ptr - COUNT_HEAD;
    size_t size;
    memcpy(&size, p, sizeof size);
    c->live -= size;
    test_allocator()->free(p, test_allocator()->user);
}

sae_allocator counting_allocator(alloc_counter *c)
{
    return (sae_allocator){count_alloc, count_free, c};
}

float *normal_rows(int64_t n, int64_t d, int64_t ld, uint64_t seed)
{
    float *W = test_malloc((size_t)(n * ld) * sizeof(float));
    fill_normal(W, n * ld, seed, 1.0f);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = d; k < ld; k++)
            W[i * ld + k] = NAN;
    return W;
}
