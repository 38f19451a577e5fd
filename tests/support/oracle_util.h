/*
 * oracle_util.h: comparing results with the oracle cases of ../shared/oracle
 * (../shared/oracle/README.md: tolerances, layouts), printing the largest errors.
 */
#ifndef SAE_ORACLE_UTIL_H
#define SAE_ORACLE_UTIL_H

#include <stdbool.h>

#include "test_util.h"

/* Path of case `name`'s safetensors file (static buffer, one at a time). */
const char *oracle_case(const char *name);

/* Tensor `name` as float32, a 2-D (rows, cols) one transposed to (cols, rows) when asked;
 * test_malloc'd. *n: elements. */
float *oracle_load(const char *file, const char *name, bool transpose, int64_t *n);

/* assert_close_f32, printing the largest absolute error and relative error. */
void oracle_check(const float *got, const float *want, int64_t n, double atol, double rtol,
                  const char *what);

/* oracle_check against a tensor of the file (transposed when asked). */
void oracle_check_tensor(const float *got, const char *file, const char *name, bool transpose,
                         double atol, double rtol);

/* A scalar (0-d tensor) of the file within relative tolerance rtol. */
void oracle_check_scalar(double got, const char *file, const char *name, double rtol);

#endif /* SAE_ORACLE_UTIL_H */
