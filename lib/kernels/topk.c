/* topk.c: the k largest entries of a row.
 *
 * Fast path: a min-heap of the best k seen so far; the rest of the row is scanned in blocks of
 * 16, and a block is only looked at element by element when one of its values beats the heap's
 * minimum. On long rows the heap starts from entries above a floor found in a first pass over
 * the maxima of 2k groups (below), which spares the element-by-element phase while the heap's
 * minimum is still low. For k << n almost every block is rejected by one vectorised compare,
 * so the cost is two streaming passes over the row. Order: a beats b when a.v > b.v, or
 * a.v == b.v and a's index is lower; since later entries only replace the minimum when
 * strictly greater, ties keep the lower index. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

typedef struct entry {
    float v;
    int32_t i;
} entry;

/* a is worse than b: lower value, or equal value and higher index. */
static inline bool worse(entry a, entry b) { return a.v < b.v || (a.v == b.v && a.i > b.i); }

static void sift_down(entry *h, int64_t k, int64_t at)
{
    for (;;) {
        int64_t l = 2 * at + 1, r = l + 1, m = at;
        if (l < k && worse(h[l], h[m]))
            m = l;
        if (r < k && worse(h[r], h[m]))
            m = r;
        if (m == at)
            return;
        entry t = h[at];
        h[at] = h[m];
        h[m] = t;
        at = m;
    }
}

static inline void offer(entry *h, int64_t k, const float *v, int64_t j)
{
    if (v[j] > h[0].v) {
        h[0] = (entry){v[j], (int32_t)j};
        sift_down(h, k, 0);
    }
}

static int by_index(const void *a, const void *b)
{
    int32_t x = ((const entry *)a)->i, y = ((const entry *)b)->i;
    return (x > y) - (x < y);
}

/* The helpers below are inlined into each clone of sae__topk_select, so that their loops are
 * vectorised for its instruction set. */
#define INLINE static inline __attribute__((always_inline))

/* Eight floats as one vector (GCC vector extension: AVX registers in the AVX clones, pairs of
 * SSE registers in the default one); the loops below would otherwise stay scalar, the
 * compiler does not vectorise a float max reduction without -ffast-math. */
typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

/* m = lane-wise max of m and b, NaN ignored (NaN only where both are NaN). A macro: a function
 * taking or returning 32-byte vectors would draw GCC's ABI note in the default clone. */
#define MAX_LANES(m, b)                                                                         \
    do {                                                                                        \
        const f32x8 b_ = (b);                                                                   \
        const i32x8 take_m_ = (m > b_) | (b_ != b_);                                            \
        m = (f32x8)(((i32x8)m & take_m_) | ((i32x8)b_ & ~take_m_));                            \
    } while (0)

/* Largest of the len values at v (len a multiple of 16), NaN ignored (NaN only when all are
 * NaN). */
INLINE float span_max(const float *v, int64_t len)
{
    f32x8 m, b;
    memcpy(&m, v, sizeof m);
    for (int64_t i = 8; i < len; i += 8) {
        memcpy(&b, v + i, sizeof b);
        MAX_LANES(m, b);
    }
    /* __builtin_shufflevector: GCC >= 12 and clang (the fuzz and TSan builds) both have it */
    MAX_LANES(m, __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3));
    MAX_LANES(m, __builtin_shufflevector(m, m, 2, 3, 0, 1, 6, 7, 4, 5));
    MAX_LANES(m, __builtin_shufflevector(m, m, 1, 0, 3, 2, 5, 4, 7, 6));
    return m[0];
}

INLINE void heapify(entry *h, int64_t k)
{
    for (int64_t a = k / 2 - 1; a >= 0; a--)
        sift_down(h, k, a);
}

/* A floor on the k-th largest value of the row (n >= 64 k): the k-th largest of the maxima
 * of 2k groups of consecutive entries (k groups hold a value at least that large), by a heap
 * over the 2k maxima. */
INLINE float kth_group_max(const float *v, int64_t n, int64_t k, entry *h)
{
    const int64_t len = n / (2 * k) / 16 * 16;
    for (int64_t g = 0; g < 2 * k; g++) {
        const float m = span_max(v + g * len, len);
        if (g < k)
            h[g] = (entry){m == m ? m : -INFINITY, (int32_t)g};
        if (g == k - 1)
            heapify(h, k);
        if (g >= k && m > h[0].v) {
            h[0] = (entry){m, (int32_t)g};
            sift_down(h, k, 0);
        }
    }
    return h[0].v;
}

/* The first k entries of the row that are >= floor (all of them when floor is -inf, i.e.
 * the first k), from index 0, skipping blocks without one; returns the index after the last
 * one taken, or -1 when the row has fewer than k. */
INLINE int64_t take_first(const float *v, int64_t n, int64_t k, float floor, entry *h)
{
    const bool skip = floor != -INFINITY;
    int64_t j = 0, c = 0;
    while (c < k && j < n) {
        if (skip && (j & 15) == 0 && j + 16 <= n && !(span_max(v + j, 16) >= floor)) {
            j += 16;
            continue;
        }
        if (v[j] >= floor || floor == -INFINITY)
            h[c++] = (entry){v[j], (int32_t)j};
        j++;
    }
    return c == k ? j : -1;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void sae__topk_select(const float *v, int64_t n, int64_t k, int32_t *idx, float *val,
                      void *scratch)
{
    entry *h = scratch;
    /* Long rows: first a floor on the k-th largest value (kth_group_max). Then only entries
     * >= floor can be kept: the heap starts from the first k of them instead of the first k of
     * the row, so its minimum is high from the start and nearly every block is rejected by one
     * compare. Every entry equal to the k-th largest value is >= floor, so ties still go to the
     * lower index. */
    int64_t j = -1;
    if (n >= 64 * k)
        j = take_first(v, n, k, kth_group_max(v, n, k, h), h);
    if (j < 0) /* short row, or fewer than k entries >= floor (NaN) */
        j = take_first(v, n, k, -INFINITY, h);
    heapify(h, k);

    for (; j < n && (j & 15); j++) /* scalar up to a multiple of 16 */
        offer(h, k, v, j);
    for (; j + 16 <= n; j += 16)
        if (span_max(v + j, 16) > h[0].v) /* rejects most blocks */
            for (int u = 0; u < 16; u++)
                offer(h, k, v, j + u);
    for (; j < n; j++)
        offer(h, k, v, j);

    if (k > 32) {
        qsort(h, (size_t)k, sizeof *h, by_index);
    } else { /* insertion sort by index for the usual small k */
        for (int64_t a = 1; a < k; a++) {
            entry e = h[a];
            int64_t b = a;
            for (; b > 0 && h[b - 1].i > e.i; b--)
                h[b] = h[b - 1];
            h[b] = e;
        }
    }
    for (int64_t a = 0; a < k; a++)
        idx[a] = h[a].i, val[a] = h[a].v;
}

void sae__topk_select_ref(const float *v, int64_t n, int64_t k, int32_t *idx, float *val)
{
    int64_t count = 0;
    for (int64_t a = 0; a < k; a++) {
        int64_t best = -1;
        for (int64_t j = 0; j < n; j++) {
            bool taken = false;
            for (int64_t b = 0; b < count && !taken; b++)
                taken = idx[b] == j;
            if (!taken && (best < 0 || v[j] > v[best]))
                best = j;
        }
        idx[count++] = (int32_t)best;
    }
    for (int64_t a = 1; a < k; a++) /* ascending ids */
        for (int64_t b = a; b > 0 && idx[b - 1] > idx[b]; b--) {
            int32_t t = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = t;
        }
    for (int64_t a = 0; a < k; a++)
        val[a] = v[idx[a]];
}
