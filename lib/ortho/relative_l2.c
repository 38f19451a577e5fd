/* relative_l2.c: sae-icm's reconstruction term (ortho.h, sae_ortho_relative_l2;
 * insert_sae.py SAEonGemma2._reconstruction_loss):
 *   L = (1/n) sum_t ||r_t|| / (||x_t|| + 1e-8),  r_t = x_hat_t - x_t,
 *   dL/dx_hat_t = r_t / (n ||r_t|| (||x_t|| + 1e-8))  (0 where r_t = 0). */
#include <math.h>

#include "ortho_internal.h"

sae_status sae_ortho_relative_l2(double *loss, float *grad, int64_t ldg, const float *x_hat,
                                 int64_t ldxh, const float *x, int64_t ldx, int64_t n,
                                 int64_t d)
{
    if (!loss || !x_hat || !x)
        return sae__fail(SAE_EINVAL, "loss, x_hat and x must not be NULL");
    if (n < 1 || d < 1)
        return sae__fail(SAE_EINVAL, "x has shape (%lld, %lld); both must be >= 1",
                         (long long)n, (long long)d);
    if (ldxh < d || ldx < d || (grad && ldg < d))
        return sae__fail(SAE_ESHAPE, "leading dimensions x_hat %lld, x %lld, grad %lld; each "
                         "needs >= %lld", (long long)ldxh, (long long)ldx,
                         grad ? (long long)ldg : (long long)d, (long long)d);
    double total = 0;
    for (int64_t t = 0; t < n; t++) {
        const float *xh = x_hat + t * ldxh, *xt = x + t * ldx;
        double rr = 0, xx = 0;
        for (int64_t k = 0; k < d; k++) {
            double r = (double)xh[k] - xt[k];
            rr += r * r, xx += (double)xt[k] * xt[k];
        }
        double den = sqrt(xx) + 1e-8, norm = sqrt(rr);
        total += norm / den;
        if (grad) {
            double f = norm > 0 ? 1.0 / (n * norm * den) : 0.0;
            for (int64_t k = 0; k < d; k++)
                grad[t * ldg + k] = (float)(((double)xh[k] - xt[k]) * f);
        }
    }
    *loss = total / (double)n;
    return SAE_OK;
}
