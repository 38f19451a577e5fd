/* rowops.c: dot products, norms and gathered axpys on rows of floats, written so that they
 * vectorise.
 *
 * A reduction into one accumulator is a dependency chain the compiler may not reorder (that
 * would change the rounding), so each reduction here keeps 8 or 16 independent partial sums,
 * one per vector lane, and adds them in a fixed order at the end: fast, and the same result
 * on every run and thread count. */
#include "trainer_internal.h"

#define LANES 16

__attribute__((target_clones("avx512f", "avx2", "default")))
double sae__dot_dbl(const float *restrict a, const float *restrict b, int64_t n)
{
    double acc[LANES / 2] = {0};
    int64_t i = 0;
    for (; i + LANES / 2 <= n; i += LANES / 2)
        for (int u = 0; u < LANES / 2; u++)
            acc[u] += (double)a[i + u] * b[i + u];
    double s = 0.0;
    for (; i < n; i++)
        s += (double)a[i] * b[i];
    for (int u = 0; u < LANES / 2; u++)
        s += acc[u];
    return s;
}

double sae__sumsq(const float *a, int64_t n) { return sae__dot_dbl(a, a, n); }

__attribute__((target_clones("avx512f", "avx2", "default")))
double sae__sum_dbl(const float *restrict a, int64_t n)
{
    double acc[LANES / 2] = {0};
    int64_t i = 0;
    for (; i + LANES / 2 <= n; i += LANES / 2)
        for (int u = 0; u < LANES / 2; u++)
            acc[u] += a[i + u];
    double s = 0.0;
    for (; i < n; i++)
        s += a[i];
    for (int u = 0; u < LANES / 2; u++)
        s += acc[u];
    return s;
}

/* Rows picked at random are each a short stream the hardware prefetchers only catch after a
 * few misses: the rows PREFETCH_AHEAD picks ahead are requested in full while this one is
 * used. */
#define PREFETCH_AHEAD 4

static inline void prefetch_piece(const float *p, int64_t w)
{
    for (int64_t i = 0; i < w; i += 16) /* one 64-byte line per 16 floats */
        __builtin_prefetch(p + i);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void sae__gather_axpy(int64_t m, const int32_t *idx, const float *c, const float *W, int64_t ldw,
                      float *restrict y, int64_t w)
{
    for (int64_t a = 0; a < m && a < PREFETCH_AHEAD; a++)
        prefetch_piece(W + (int64_t)idx[a] * ldw, w);
    for (int64_t a = 0; a < m; a++) {
        if (a + PREFETCH_AHEAD < m)
            prefetch_piece(W + (int64_t)idx[a + PREFETCH_AHEAD] * ldw, w);
        if (c[a] == 0.0f)
            continue;
        const float ca = c[a], *restrict src = W + (int64_t)idx[a] * ldw;
        for (int64_t i = 0; i < w; i++)
            y[i] += ca * src[i];
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void sae__gather_dots(int64_t m, const int32_t *idx, const float *mask, const float *W,
                      int64_t ldw, const float *restrict y, int64_t w, float *q)
{
    for (int64_t a = 0; a < m; a++) {
        if (mask[a] == 0.0f)
            continue;
        const float *restrict src = W + (int64_t)idx[a] * ldw;
        float acc[LANES] = {0}, s = 0.0f;
        int64_t i = 0;
        for (; i + LANES <= w; i += LANES)
            for (int u = 0; u < LANES; u++)
                acc[u] += y[i + u] * src[i + u];
        for (; i < w; i++)
            s += y[i] * src[i];
        for (int u = 0; u < LANES; u++)
            s += acc[u];
        q[a] += s;
    }
}

/* Columns per chunk of sae__decode_dots: the m decoder-row pieces of a chunk take about
 * 256 KiB, so they are still in L2 for the dot products (384 rows x 160 floats at k_aux 384,
 * the whole row for TopK's 32). */
#define DECODE_CHUNK_FLOATS (64 * 1024)

double sae__decode_dots(int64_t m, const int32_t *idx, const float *c, const float *mask,
                        const float *W, int64_t ldw, int64_t d, const float *add,
                        const float *sub, float *y, float *q)
{
    int64_t chunk = m > 0 ? DECODE_CHUNK_FLOATS / m / 16 * 16 : d;
    chunk = chunk < 64 ? 64 : chunk;
    double sq = 0;
    for (int64_t i0 = 0; i0 < d; i0 += chunk) {
        const int64_t w = d - i0 < chunk ? d - i0 : chunk;
        sae__gather_axpy(m, idx, c, W + i0, ldw, y + i0, w);
        for (int64_t i = i0; add && i < i0 + w; i++)
            y[i] += add[i];
        for (int64_t i = i0; sub && i < i0 + w; i++)
            y[i] -= sub[i];
        sq += sae__sumsq(y + i0, w);
        sae__gather_dots(m, idx, mask, W + i0, ldw, y + i0, w, q);
    }
    return sq;
}
