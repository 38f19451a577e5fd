/* effects.c: the kernel shared by node effects and edge weights, its reference twin, and the
 * aggregation of contributions into node slots (graph_internal.h).
 *
 *   feat (n, F) = (G D~ᵀ) ⊙ df      G (n, D), D~ (F, D), df (n, F)
 *   err  (n)    = rowwise <G, derr>  derr (n, D)
 *
 * G D~ᵀ is the gradient with respect to the codes (the error term detached: x = f D~ + b~ + ε
 * is linear in f); its product with the change of the codes is the first-order effect. */
#include <string.h>

#include "graph_internal.h"

sae_status sae__graph_contrib(float *feat, float *err, const float *G, const float *dec,
                              const float *df, const float *derr, int64_t n, int64_t F,
                              int64_t D, int n_threads)
{
    sae_status s = sae__sgemm(false, true, n, F, D, 1.0f, G, D, dec, D, 0.0f, feat, F, n_threads);
    if (s != SAE_OK)
        return s;
    for (int64_t i = 0; i < n * F; i++)
        feat[i] *= df[i];
    for (int64_t r = 0; r < n; r++) {
        float v = 0.0f;
        for (int64_t i = 0; i < D; i++)
            v += G[r * D + i] * derr[r * D + i];
        err[r] = v;
    }
    return SAE_OK;
}

void sae__graph_contrib_ref(float *feat, float *err, const float *G, const float *dec,
                            const float *df, const float *derr, int64_t n, int64_t F,
                            int64_t D)
{
    for (int64_t r = 0; r < n; r++) {
        for (int64_t j = 0; j < F; j++) {
            double g = 0.0;
            for (int64_t i = 0; i < D; i++)
                g += (double)G[r * D + i] * dec[j * D + i];
            feat[r * F + j] = (float)(g * df[r * F + j]);
        }
        double e = 0.0;
        for (int64_t i = 0; i < D; i++)
            e += (double)G[r * D + i] * derr[r * D + i];
        err[r] = (float)e;
    }
}

void sae__graph_accumulate(double *slots, const float *feat, const float *err, int64_t count,
                           int64_t T, int64_t F, int32_t aggregation)
{
    for (int64_t e = 0; e < count; e++)
        for (int64_t t = 0; t < T; t++) {
            const int64_t r = e * T + t;
            double *slot = slots + (aggregation == SAE_GRAPH_SUM ? 0 : t) * (F + 1);
            slot[0] += err[r];
            for (int64_t j = 0; j < F; j++)
                slot[1 + j] += feat[r * F + j];
        }
}
