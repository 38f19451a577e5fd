/* select.c: top-k selection for large k (AuxK keeps k_aux = d_in/2 of the dead features,
 * BatchTopK k * n of a whole batch: sae__radix_kth takes 64-bit counts for it).
 *
 * Same result as sae__topk_select (kernels.h): the k largest of v[0..n), ties to the lower
 * index, ids ascending, val = v[id]. A heap costs O(n log k) with unpredictable branches once k
 * is in the hundreds; instead, a radix select finds the k-th largest value T exactly, and one
 * pass in index order keeps every value above T and the first ties at T:
 *   key(v): the float's bits made monotonic (sign flipped for positives, all bits for
 *           negatives; -0 counts as +0, as in float comparisons);
 *   three rounds over 11, 11 and 10 bits of the key: histogram of the digit among the keys
 *   that share the prefix found so far, then the digit where the count from the top reaches
 *   the number still wanted. Four passes over n in all, no data-dependent branches but the
 *   prefix test. NaN keys sort by their bits (no crash; which entries are kept is then
 *   unspecified, as for the heap). */
#include <string.h>

#include "trainer_internal.h"

uint32_t sae__select_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if (u == 0x80000000u) /* -0 == +0 */
        u = 0;
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

uint32_t sae__radix_kth(const uint32_t *keys, int64_t n, int64_t k, int64_t *ties)
{
    static const int shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
    uint32_t prefix = 0, mask = 0;
    int64_t wanted = k; /* among the keys with this prefix */
    for (int r = 0; r < 3; r++) {
        int64_t hist[2048] = {0};
        const uint32_t digit_mask = (1u << widths[r]) - 1;
        for (int64_t j = 0; j < n; j++)
            if ((keys[j] & mask) == prefix)
                hist[(keys[j] >> shifts[r]) & digit_mask]++;
        int64_t above = 0;
        uint32_t D = digit_mask;
        while (above + hist[D] < wanted) /* the digit of the k-th largest */
            above += hist[D--];
        wanted -= above;
        prefix |= D << shifts[r];
        mask |= digit_mask << shifts[r];
    }
    *ties = wanted;
    return prefix;
}

void sae__select_large(const float *v, int64_t n, int64_t k, uint32_t *keys, int32_t *idx,
                       float *val)
{
    for (int64_t j = 0; j < n; j++)
        keys[j] = sae__select_key(v[j]);
    int64_t wanted = 0;
    const uint32_t kth = sae__radix_kth(keys, n, k, &wanted);
    /* kth is the key of the k-th largest; `wanted` of its ties are kept. */
    int64_t c = 0;
    for (int64_t j = 0; j < n && c < k; j++)
        if (keys[j] > kth || (keys[j] == kth && wanted-- > 0))
            idx[c] = (int32_t)j, val[c++] = v[j];
}
