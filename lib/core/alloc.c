/* alloc.c: the default allocator and checked array allocation through a handle's allocator. */
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

static void *default_alloc(size_t size, size_t alignment, void *user)
{
    (void)user;
    if (alignment < sizeof(void *))
        alignment = sizeof(void *);
    size_t rounded = (size + alignment - 1) / alignment * alignment; /* aligned_alloc's rule */
    if (rounded < size)
        return NULL;
    return aligned_alloc(alignment, rounded ? rounded : alignment);
}

static void default_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

static const sae_allocator default_allocator = {default_alloc, default_free, NULL};

const sae_allocator *sae_default_allocator(void) { return &default_allocator; }

const sae_allocator *sae__allocator(const sae_allocator *a) { return a ? a : &default_allocator; }

void *sae__alloc_array(const sae_allocator *a, size_t count, size_t size)
{
    a = sae__allocator(a);
    if (size != 0 && count > SIZE_MAX / size) {
        sae__fail(SAE_ENOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = a->alloc(count * size, SAE_ALIGN, a->user);
    if (!p)
        sae__fail(SAE_ENOMEM, "out of memory allocating %zu bytes", count * size);
    return p;
}

void sae__free(const sae_allocator *a, void *ptr)
{
    if (ptr)
        sae__allocator(a)->free(ptr, sae__allocator(a)->user);
}

char *sae__strdup(const sae_allocator *a, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = sae__alloc_array(a, n, 1);
    if (d)
        memcpy(d, s, n);
    return d;
}
