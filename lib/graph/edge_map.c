/* edge_map.c: the edge accumulator of the attribution (graph_internal.h): a hash map from
 * (source node, target node) to a double sum. */
#include <string.h>

#include "graph_internal.h"

/* Allocate empty tables of `cap` slots. */
static sae_status tables(sae__edge_map *m, int64_t cap)
{
    m->src = sae__alloc_array(m->a, (size_t)cap, sizeof(int64_t));
    m->dst = sae__alloc_array(m->a, (size_t)cap, sizeof(int64_t));
    m->w = sae__alloc_array(m->a, (size_t)cap, sizeof(double));
    if (!m->src || !m->dst || !m->w)
        return SAE_ENOMEM;
    memset(m->src, 0xff, (size_t)cap * sizeof(int64_t)); /* -1: empty */
    m->cap = cap;
    m->count = 0;
    return SAE_OK;
}

sae_status sae__edge_map_init(sae__edge_map *m, const sae_allocator *a)
{
    memset(m, 0, sizeof *m);
    m->a = a;
    return tables(m, 1024);
}

void sae__edge_map_free(sae__edge_map *m)
{
    sae__free(m->a, m->src);
    sae__free(m->a, m->dst);
    sae__free(m->a, m->w);
    memset(m, 0, sizeof *m);
}

/* The slot of (src, dst): where it is, or the empty slot where it goes. */
static int64_t find(const sae__edge_map *m, int64_t src, int64_t dst)
{
    uint64_t h = (uint64_t)src * 0x9E3779B97F4A7C15ull ^ (uint64_t)dst * 0xC2B2AE3D27D4EB4Full;
    int64_t i = (int64_t)((h ^ (h >> 29)) & (uint64_t)(m->cap - 1));
    while (m->src[i] >= 0 && (m->src[i] != src || m->dst[i] != dst))
        i = (i + 1) & (m->cap - 1);
    return i;
}

sae_status sae__edge_map_add(sae__edge_map *m, int64_t src, int64_t dst, double v)
{
    int64_t i = find(m, src, dst);
    if (m->src[i] >= 0) {
        m->w[i] += v;
        return SAE_OK;
    }
    if (2 * (m->count + 1) > m->cap) { /* grow, then insert */
        sae__edge_map old = *m;
        sae_status s = tables(m, 2 * old.cap);
        if (s != SAE_OK) {
            sae__free(m->a, m->src);
            sae__free(m->a, m->dst);
            sae__free(m->a, m->w);
            *m = old;
            return s;
        }
        for (int64_t j = 0; j < old.cap; j++)
            if (old.src[j] >= 0) {
                int64_t at = find(m, old.src[j], old.dst[j]);
                m->src[at] = old.src[j], m->dst[at] = old.dst[j], m->w[at] = old.w[j];
                m->count++;
            }
        sae__free(m->a, old.src);
        sae__free(m->a, old.dst);
        sae__free(m->a, old.w);
        i = find(m, src, dst);
    }
    m->src[i] = src, m->dst[i] = dst, m->w[i] = v;
    m->count++;
    return SAE_OK;
}
