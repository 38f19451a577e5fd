/* topk.c: the k largest entries of a row.
 *
 * Fast path: a min-heap of the best k seen so far; the rest of the row is scanned in blocks of
 * 16, and a block is only looked at element by element when one of its values beats the heap's
 * minimum. For k << n almost every block is rejected by one vectorised compare, so the cost is
 * one streaming pass over the row. Order: a beats b when a.v > b.v, or a.v == b.v and a's index
 * is lower; since later entries only replace the minimum when strictly greater, ties keep the
 * lower index. */
#include <stdlib.h>

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

__attribute__((target_clones("avx512f", "avx2", "default")))
void sae__topk_select(const float *v, int64_t n, int64_t k, int32_t *idx, float *val,
                      void *scratch)
{
    entry *h = scratch;
    for (int64_t a = 0; a < k; a++)
        h[a] = (entry){v[a], (int32_t)a};
    for (int64_t a = k / 2 - 1; a >= 0; a--)
        sift_down(h, k, a);

    int64_t j = k;
    for (; j < n && (j & 15); j++) /* scalar up to a multiple of 16 */
        offer(h, k, v, j);
    for (; j + 16 <= n; j += 16) {
        float thr = h[0].v;
        int any = 0;
        for (int u = 0; u < 16; u++) /* one vector compare rejects most blocks */
            any |= v[j + u] > thr;
        if (any)
            for (int u = 0; u < 16; u++)
                offer(h, k, v, j + u);
    }
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
