/* gradients.c: the gradient of the metric at the circuit's hook points for the node effects —
 * at the clean run (attribution patching), or averaged over the integrated-gradients path
 * x_α = (1 − α) x_clean + α x_patch, α = s/N, s = 0..N−1, one hook point at a time with the
 * others running clean (feature-circuits' _pe_ig). Step s = 0 is the clean run itself, whose
 * gradient the first backward already gives. */
#include <string.h>

#include "graph_internal.h"

/* One backward of the last forward from c->d_logits into the hooks whose buffers are set in
 * c->d_hooks. */
static sae_status backward(sae__attrib *c, const sae__batch *bt)
{
    sae_status s = sae_host_backward(&c->host, bt->count, bt->T, c->d_logits, c->d_hooks, NULL);
    return s == SAE_OK ? sae__attrib_step(c, 1) : s;
}

sae_status sae__attrib_gradients(sae__attrib *c, const sae__batch *bt)
{
    const int64_t n = bt->count * bt->T, D = c->host.d_model, N = c->o.ig_steps;
    memset(c->d_hooks, 0, (size_t)c->host.n_hooks * sizeof(float *));
    for (int32_t k = 0; k < c->H; k++)
        c->d_hooks[c->saes[k].id] = c->grad[k];
    sae_status s = backward(c, bt);
    if (s != SAE_OK || c->o.method != SAE_GRAPH_IG)
        return s;
    memset(c->d_hooks, 0, (size_t)c->host.n_hooks * sizeof(float *));
    /* xa (free until the effects are computed): the activations set at hook k; tmp receives
     * the gradient there. */
    float *xa = c->ep;
    sae__hook_io io = {D, NULL, c->one, NULL};
    for (int32_t k = 0; k < c->H && s == SAE_OK; k++) {
        c->one[k] = xa;
        c->d_hooks[c->saes[k].id] = c->tmp;
        for (int64_t step = 1; step < N && s == SAE_OK; step++) {
            const float alpha = (float)step / (float)N;
            for (int64_t i = 0; i < n * D; i++)
                xa[i] = (1.0f - alpha) * c->xc[k][i] + alpha * c->xp[k][i];
            if ((s = sae__run_io(&c->host, &c->b, bt, c->saes, c->H, false, &io, c->logits,
                                 c->m_run, c->d_logits)) != SAE_OK ||
                (s = sae__attrib_step(c, 1)) != SAE_OK || (s = backward(c, bt)) != SAE_OK)
                break;
            for (int64_t i = 0; i < n * D; i++)
                c->grad[k][i] += c->tmp[i];
        }
        for (int64_t i = 0; i < n * D; i++)
            c->grad[k][i] /= (float)N;
        c->one[k] = NULL;
        c->d_hooks[c->saes[k].id] = NULL;
    }
    return s;
}
