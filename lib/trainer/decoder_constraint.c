/* decoder_constraint.c: unit-norm decoder rows (MATH.md, "Decoder constraint").
 *
 * Before the optimiser step each row's gradient g loses its component along the row w; after
 * it the row is renormalised. The libraries differ only in their epsilons:
 *   UNIT_EXACT  g -= (g . w/||w||) w/||w||           w /= ||w||            ConstrainedAdam
 *   UNIT_EPS    g -= (g . w/(||w||+1e-6)) w/(...)    w /= ||w|| + FLT_EPS  dictionary_learning TopK
 *   UNIT_RAW    g -= (g . w) w                       w /= ||w|| + FLT_EPS  sparsify
 * dictionary_learning stores the decoder as (d_in, F) and normalises its columns: those are
 * libsae's rows. Norms and dot products are accumulated in double. */
#include <float.h>
#include <math.h>

#include "trainer_internal.h"

float sae__row_norm(const float *w, int64_t d) { return (float)sqrt(sae__sumsq(w, d)); }

void sae__project_row(int32_t mode, const float *w, float *g, int64_t d)
{
    if (mode == SAE_DECODER_FREE)
        return;
    /* the unit direction is w / div; UNIT_RAW takes the raw row */
    const float div = mode == SAE_DECODER_UNIT_RAW
                          ? 1.0f
                          : sae__row_norm(w, d) + (mode == SAE_DECODER_UNIT_EPS ? 1e-6f : 0.0f);
    const float par = (float)(sae__dot_dbl(g, w, d) / div);
    for (int64_t i = 0; i < d; i++)
        g[i] -= par * (w[i] / div);
}

void sae__renorm_row(int32_t mode, float *w, int64_t d)
{
    if (mode == SAE_DECODER_FREE)
        return;
    const float div = sae__row_norm(w, d) + (mode == SAE_DECODER_UNIT_EXACT ? 0.0f : FLT_EPSILON);
    for (int64_t i = 0; i < d; i++)
        w[i] /= div;
}
