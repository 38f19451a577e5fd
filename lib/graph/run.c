/* run.c: host forward passes with callbacks at the circuit's hook points — the dispatch from
 * host hook ids to circuit indices, and the common record / set / add hook. */
#include <string.h>

#include "graph_internal.h"

sae_status sae__dispatch_hook(void *user, int32_t hook_id, float *x, int64_t n, int64_t ld)
{
    const sae__dispatch *d = user;
    /* Circuits have a handful of hook points: a scan is as cheap as a table. */
    for (int32_t k = 0; k < d->n_hooks; k++)
        if (d->saes[k].id == hook_id)
            return d->fn(d->user, k, x, n, ld);
    return SAE_OK;
}

sae_status sae__hook_io_fn(void *user, int32_t k, float *x, int64_t n, int64_t ld)
{
    const sae__hook_io *io = user;
    const int64_t D = io->D;
    const size_t row = (size_t)D * sizeof(float);
    for (int64_t r = 0; r < n; r++) {
        float *xr = x + r * ld;
        if (io->rec && io->rec[k])
            memcpy(io->rec[k] + r * D, xr, row);
        if (io->set && io->set[k])
            memcpy(xr, io->set[k] + r * D, row);
        if (io->add && io->add[k])
            for (int64_t i = 0; i < D; i++)
                xr[i] += io->add[k][r * D + i];
    }
    return SAE_OK;
}

sae_status sae__run_io(const sae_host *host, sae__pair_batches *b, const sae__batch *batch,
                       const sae__circuit_sae *saes, int32_t n_hooks, bool patch,
                       const sae__hook_io *io, float *logits, float *metric, float *d_logits)
{
    sae__dispatch d = {saes, n_hooks, sae__hook_io_fn, (void *)io};
    sae_status s = sae_host_forward(host, patch ? b->patch : b->clean, batch->count, batch->T,
                                    logits, io ? sae__dispatch_hook : NULL, io ? &d : NULL);
    if (s == SAE_OK && metric)
        s = sae__pair_metric(b, logits, batch->count, batch->T, metric, d_logits);
    return s;
}
