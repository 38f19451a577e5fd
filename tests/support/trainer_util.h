/*
 * trainer_util.h: helpers shared by the trainer tests (test_trainer.c, test_trainer_arch.c).
 */
#ifndef SAE_TRAINER_UTIL_H
#define SAE_TRAINER_UTIL_H

#include "sae/trainer.h"
#include "test_util.h"

/* |a - b| <= tol * (max |b| + |b|): gradients against a double-precision twin. */
void check_scaled(const float *got, const float *want, int64_t n, double tol, const char *what);

/* The trainer's loss and gradients of a batch x (n, d_in; row stride ldx) against the
 * double-precision twin sae__loss_grad_ref: every gradient block (the architecture's extra
 * blocks included) to 2e-5 of its largest value, the loss terms and FVU to 1e-5, the dead
 * count exactly; failures name `what`. Returns the trainer's metrics. */
sae_train_metrics check_against_reference(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                          const char *what);

/* `steps` steps on batches of n rows of width d, each row the sum of 3 of 24 fixed unit
 * directions with coefficients in [0.5, 1.5) drawn from (seed); losses (steps) receives each
 * step's mse when not NULL. */
void run_steps(sae_trainer *t, int steps, int64_t n, int64_t d, uint64_t seed, double *losses);

#endif /* SAE_TRAINER_UTIL_H */
