/* rng.c: Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011).
 *
 * Block n of stream s under key `seed` is philox(counter = (n_lo, n_hi, s_lo, s_hi), key = seed):
 * 4 words that depend on (seed, stream, n) only, so any position can be recomputed and streams
 * handed to threads never overlap. */
#include <math.h>

#include "../internal.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_block(const uint32_t ctr_in[4], uint64_t key, uint32_t out[4])
{
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

void sae_rng_init(sae_rng *rng, uint64_t seed, uint64_t stream)
{
    *rng = (sae_rng){.seed = seed, .stream = stream};
}

uint32_t sae_rng_u32(sae_rng *rng)
{
    if (rng->buffered == 0) {
        uint32_t ctr[4] = {(uint32_t)rng->counter, (uint32_t)(rng->counter >> 32),
                           (uint32_t)rng->stream, (uint32_t)(rng->stream >> 32)};
        philox_block(ctr, rng->seed, rng->buffer);
        rng->counter++;
        rng->buffered = 4;
    }
    return rng->buffer[4 - rng->buffered--];
}

float sae_rng_uniform(sae_rng *rng) { return (float)(sae_rng_u32(rng) >> 8) * 0x1.0p-24f; }

float sae_rng_normal(sae_rng *rng)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    double u1 = ((double)(sae_rng_u32(rng) >> 8) + 1.0) * 0x1.0p-24;
    double u2 = (double)(sae_rng_u32(rng) >> 8) * 0x1.0p-24;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t sae_rng_below(sae_rng *rng, uint64_t n)
{
    if (n <= 1)
        return 0;
    /* Rejection sampling on 64-bit draws: accept below the largest multiple of n. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t hi = sae_rng_u32(rng), lo = sae_rng_u32(rng);
        uint64_t r = hi << 32 | lo;
        if (r < limit)
            return r % n;
    }
}
