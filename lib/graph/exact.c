/* exact.c: exact node effects (feature-circuits' _pe_exact) — one forward per node: the clean
 * prompts with x <- x + Δf_j d~_j at one position (a feature) or x <- x + Δε (an error), at one
 * hook point, and the change of each pair's metric. All pairs of a batch are patched in the same
 * forward, each at its own rows, since sequences do not interact; a pair whose code does not
 * change is not touched and contributes exactly 0. */
#include <string.h>

#include "graph_internal.h"

/* One patched forward with `add` at hook k; out[r] for the rows of position t of each pair:
 * the metric change. */
static sae_status patched_run(sae__attrib *c, const sae__batch *bt, int32_t k, const float *add,
                              float *out, int64_t t, int64_t stride)
{
    sae__hook_io io = {c->host.d_model, NULL, NULL, c->one};
    c->one[k] = add;
    sae_status s = sae__run_io(&c->host, &c->b, bt, c->saes, c->H, false, &io, c->logits,
                               c->m_run, NULL);
    c->one[k] = NULL;
    if (s != SAE_OK || (s = sae__attrib_step(c, 1)) != SAE_OK)
        return s;
    for (int64_t e = 0; e < bt->count; e++)
        out[(e * bt->T + t) * stride] = c->m_run[e] - c->m_clean[e];
    return SAE_OK;
}

sae_status sae__attrib_exact(sae__attrib *c, const sae__batch *bt, int32_t k, const float *df,
                             const float *de)
{
    const sae__circuit_sae *sa = &c->saes[k];
    const int64_t T = bt->T, n = bt->count * T, F = sa->F, D = sa->D;
    float *add = c->tmp;
    memset(c->feat, 0, (size_t)(n * F) * sizeof(float));
    memset(add, 0, (size_t)(n * D) * sizeof(float));
    /* The runs of this hook, for the progress: the (position, feature) with a change in some
     * pair, and one error node per position. */
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = -1; j < F; j++) {
            bool any = j < 0;
            for (int64_t e = 0; e < bt->count && !any; e++)
                any = df[(e * T + t) * F + j] != 0.0f;
            c->total += any;
        }
    sae_status s = SAE_OK;
    for (int64_t t = 0; t < T && s == SAE_OK; t++) {
        for (int64_t j = 0; j < F && s == SAE_OK; j++) {
            bool any = false;
            for (int64_t e = 0; e < bt->count; e++) {
                const int64_t r = e * T + t;
                const float v = df[r * F + j];
                any |= v != 0.0f;
                for (int64_t i = 0; i < D; i++)
                    add[r * D + i] = v * sa->dec[j * D + i];
            }
            if (any)
                s = patched_run(c, bt, k, add, c->feat + j, t, F);
        }
        for (int64_t e = 0; e < bt->count; e++)
            memcpy(add + (e * T + t) * D, de + (e * T + t) * D, (size_t)D * sizeof(float));
        if (s == SAE_OK)
            s = patched_run(c, bt, k, add, c->err, t, 1);
        for (int64_t e = 0; e < bt->count; e++)
            memset(add + (e * T + t) * D, 0, (size_t)D * sizeof(float));
    }
    return s;
}
