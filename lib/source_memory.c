/* source_memory.c: the producer of sae_source_from_memory — rows of a borrowed (n, d) array,
 * in stored order or in a fresh random permutation per epoch. */
#include <string.h>

#include "source_internal.h"

typedef struct memory_rows {
    const float *x; /* (n, d), row stride ldx; borrowed */
    int64_t n, d, ldx;
    int64_t pos;    /* rows delivered in this epoch */
    int64_t *perm;  /* (n) row order of this epoch; NULL when unshuffled */
    uint64_t seed;
} memory_rows;

static sae_status memory_read(void *impl, int64_t max_rows, float *x, int64_t ldx,
                              int64_t *rows)
{
    memory_rows *m = impl;
    int64_t k = m->n - m->pos < max_rows ? m->n - m->pos : max_rows;
    for (int64_t i = 0; i < k; i++) {
        int64_t r = m->perm ? m->perm[m->pos + i] : m->pos + i;
        memcpy(x + i * ldx, m->x + r * m->ldx, (size_t)m->d * sizeof(float));
    }
    m->pos += k;
    *rows = k;
    return SAE_OK;
}

/* Fisher-Yates over 0..n-1 with sae_rng_init(seed, epoch): each of the n! orders is equally
 * likely, and epoch e's order depends only on (seed, e). */
static void memory_rewind(void *impl, uint64_t epoch)
{
    memory_rows *m = impl;
    m->pos = 0;
    if (!m->perm)
        return;
    sae_rng rng;
    sae_rng_init(&rng, m->seed, epoch);
    for (int64_t i = 0; i < m->n; i++)
        m->perm[i] = i;
    for (int64_t i = m->n - 1; i > 0; i--) {
        int64_t j = (int64_t)sae_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = m->perm[i];
        m->perm[i] = m->perm[j];
        m->perm[j] = t;
    }
}

static void memory_free(void *impl, const sae_allocator *a)
{
    memory_rows *m = impl;
    sae__free(a, m->perm);
    sae__free(a, m);
}

static const sae__source_ops memory_ops = {memory_read, memory_rewind, memory_free, true};

sae_status sae_source_from_memory(sae_source **out, int64_t n, int64_t d, const float *x,
                                  int64_t ldx, const sae_source_options *options)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "sae_source_from_memory: out is NULL");
    *out = NULL;
    sae_source_options o;
    sae_status s = sae__source_read_options(&o, options);
    if (s != SAE_OK)
        return s;
    if (n < 0 || d < 1)
        return sae__fail(SAE_EINVAL, "sae_source_from_memory: needs n >= 0 and d >= 1, got "
                         "n = %lld, d = %lld", (long long)n, (long long)d);
    if (n > 0 && !x)
        return sae__fail(SAE_EINVAL, "sae_source_from_memory: x is NULL");
    if (n > 0 && ldx < d)
        return sae__fail(SAE_ESHAPE, "sae_source_from_memory: leading dimension of x is %lld, "
                         "needs >= d = %lld", (long long)ldx, (long long)d);
    const sae_allocator *a = sae__allocator(o.allocator);
    memory_rows *m = sae__alloc_array(a, 1, sizeof *m);
    if (!m)
        return SAE_ENOMEM;
    *m = (memory_rows){.x = x, .n = n, .d = d, .ldx = ldx, .seed = o.seed};
    if (o.shuffle_buffer_rows > 0 && n > 0) {
        m->perm = sae__alloc_array(a, (size_t)n, sizeof *m->perm);
        if (!m->perm) {
            memory_free(m, a);
            return SAE_ENOMEM;
        }
    }
    return sae__source_make(out, &o, d, n, &memory_ops, m);
}
