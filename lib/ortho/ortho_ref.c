/* ortho_ref.c: naive reference twins of the tiled kernels (ortho_internal.h), for the tests:
 * every pair (i, j) of S in double, straight from the definitions in ortho.h. */
#include <math.h>

#include "ortho_internal.h"

static double dot(const sae__ortho_rows *r, int64_t a, int64_t b)
{
    const float *x = r->W + sae__ortho_id(r, a) * r->ld, *y = r->W + sae__ortho_id(r, b) * r->ld;
    double s = 0;
    for (int64_t k = 0; k < r->d; k++)
        s += (double)x[k] * y[k];
    return s;
}

sae_status sae__ortho_penalty_ref(const sae__ortho_rows *r, double *penalty, float *grad,
                                  int64_t ldg, float grad_scale)
{
    double *g = sae__alloc_array(NULL, (size_t)r->d, sizeof(double)); /* dP/dd_i in double */
    if (!g)
        return SAE_ENOMEM;
    double p = 0;
    for (int64_t a = 0; a < r->n; a++) {
        for (int64_t k = 0; k < r->d; k++)
            g[k] = 0;
        for (int64_t b = 0; b < r->n; b++) {
            if (b == a)
                continue;
            double gab = dot(r, a, b);
            if (b < a) /* P = sum_{i>j} (d_i . d_j)^2 */
                p += gab * gab;
            const float *db = r->W + sae__ortho_id(r, b) * r->ld;
            for (int64_t k = 0; k < r->d; k++) /* dP/dd_i = 2 sum_{j != i} (d_i . d_j) d_j */
                g[k] += 2 * gab * db[k];
        }
        if (grad)
            for (int64_t k = 0; k < r->d; k++)
                grad[sae__ortho_id(r, a) * ldg + k] += (float)(grad_scale * g[k]);
    }
    sae__free(NULL, g);
    *penalty = p;
    return SAE_OK;
}

void sae__ortho_coherence_ref(const sae__ortho_rows *r, sae_coherence *c, float *fmax)
{
    sae__coherence_sums s = {.n = r->n, .d = r->d, .max_cos = -1.0, .max_i = -1, .max_j = -1};
    for (int64_t a = 0; a < r->n; a++) {
        double sq = dot(r, a, a);
        s.n_zero += sq == 0;
        s.sum_sq += sq;
        s.sum_diag2 += sq * sq;
        fmax[a] = 0.0f;
    }
    for (int64_t a = 0; a < r->n; a++)
        for (int64_t b = 0; b < r->n; b++) {
            if (b == a)
                continue;
            double g = dot(r, a, b), na = sqrt(dot(r, a, a)), nb = sqrt(dot(r, b, b));
            double cs = na > 0 && nb > 0 ? fmin(fabs(g) / (na * nb), 1.0) : 0.0;
            fmax[a] = fmaxf(fmax[a], (float)cs);
            if (b > a)
                continue; /* pairs i > j once */
            s.sum_cos += cs, s.sum_cos2 += cs * cs, s.sum_raw2 += g * g;
            if (cs > s.max_cos)
                s.max_cos = cs, s.max_i = sae__ortho_id(r, a), s.max_j = sae__ortho_id(r, b);
        }
    sae__coherence_finish(c, &s, fmax);
}
