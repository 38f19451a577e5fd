/* ortho_term.c: sae-icm's orthogonality penalty as a term of the training loss (trainer.h,
 * steps 3 and 4; MATH.md "Orthogonality"; REFERENCE.md 2.1).
 *
 *   L += lambda P(S),   P = sum_{i>j in S} (d_i . d_j)^2 on the raw decoder rows d_i,
 *   dL/dd_i += 2 lambda sum_{j in S, j != i} (d_i . d_j) d_j   for i in S (tiled sgemm,
 *   sae_ortho_penalty: no |S| x |S| matrix beyond one tile).
 * S has ortho_subset rows, drawn afresh at every step as sae-icm draws randperm(F)[:1024] in
 * every forward pass: step s draws sae_ortho_subset(seed, SAE__ORTHO_STREAM + s), a function
 * of the seed and the step only, so a resumed run draws what the uninterrupted one would with
 * no generator state to checkpoint. When S covers every feature there is no draw.
 * The gradient joins dW_dec before the decoder projection and the clipping (trainer.c): sae-icm
 * adds the penalty to its loss before backward, and its transformers Trainer clips the
 * gradient of that total. */
#include "../ortho/ortho_internal.h"
#include "trainer_internal.h"

sae_status sae__ortho_term(sae_trainer *t, sae__loss_terms *out)
{
    const sae__train_cfg *c = &t->cfg;
    if (!(c->ortho_lambda > 0))
        return SAE_OK;
    const int32_t *ids = t->ws.ortho_ids; /* NULL: every feature */
    sae_status s = SAE_OK;
    if (ids)
        s = sae_ortho_subset(t->ws.ortho_ids, NULL, c->ortho_subset, c->F, c->seed,
                             SAE__ORTHO_STREAM + (uint64_t)t->step);
    double P = 0;
    if (s == SAE_OK)
        s = sae__ortho_penalty(&P, t->gp.W_dec, c->d_in, (float)c->ortho_lambda, t->p.W_dec,
                               c->F, c->d_in, c->d_in, ids, ids ? c->ortho_subset : 0,
                               c->threads, t->allocator);
    if (s != SAE_OK)
        return s;
    out->ortho = P;
    out->loss += c->ortho_lambda * P;
    return SAE_OK;
}
