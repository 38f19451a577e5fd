/*
 * trainer_util.h: helpers shared by the trainer tests (test_trainer.c, test_trainer_arch.c).
 */
#ifndef SAE_TRAINER_UTIL_H
#define SAE_TRAINER_UTIL_H

#include "sae/trainer.h"
#include "test_util.h"

/* |a - b| <= tol * (max |b| + |b|): gradients against a double-precision twin. */
void check_scaled(const float *got, const float *want, int64_t n, double tol, const char *what);

/* `steps` steps on batches of n rows of width d, each row the sum of 3 of 24 fixed unit
 * directions with coefficients in [0.5, 1.5) drawn from (seed); losses (steps) receives each
 * step's mse when not NULL. */
void run_steps(sae_trainer *t, int steps, int64_t n, int64_t d, uint64_t seed, double *losses);

#endif /* SAE_TRAINER_UTIL_H */
