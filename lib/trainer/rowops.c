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
void sae__gather_axpy(int64_t m, const int32_t *idx, const float *c, const float *W, int64_t ldw,
                      float *restrict y, int64_t w)
{
    for (int64_t a = 0; a < m; a++) {
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
