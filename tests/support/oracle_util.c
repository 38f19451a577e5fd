/* oracle_util.c: see oracle_util.h. */
#include "oracle_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *oracle_case(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s.safetensors", shared_path("oracle"), name);
    return buf;
}

float *oracle_load(const char *file, const char *name, bool transpose, int64_t *n)
{
    int64_t shape[SAE_MAX_DIMS], numel = 0;
    int nd = 0;
    float *a = load_tensor_f32(file, name, &numel, shape, &nd);
    if (n)
        *n = numel;
    if (!transpose)
        return a;
    if (nd != 2)
        fail_msg("%s: %s is not 2-D", file, name);
    float *t = test_malloc(sizeof(float) * (size_t)numel);
    for (int64_t i = 0; i < shape[0]; i++)
        for (int64_t j = 0; j < shape[1]; j++)
            t[j * shape[0] + i] = a[i * shape[1] + j];
    test_free(a);
    return t;
}

void oracle_check(const float *got, const float *want, int64_t n, double atol, double rtol,
                  const char *what)
{
    double worst = 0, worst_rel = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        worst = e > worst ? e : worst;
        double rel = e / (fabs((double)want[i]) + 1e-30);
        worst_rel = fabs(want[i]) > 1e-6 && rel > worst_rel ? rel : worst_rel;
    }
    printf("    %-48s max |a-b| %.2e  max rel %.2e\n", what, worst, worst_rel);
    assert_close_f32(got, want, n, atol, rtol, what);
}

void oracle_check_tensor(const float *got, const char *file, const char *name, bool transpose,
                         double atol, double rtol)
{
    int64_t n = 0;
    float *want = oracle_load(file, name, transpose, &n);
    oracle_check(got, want, n, atol, rtol, name);
    test_free(want);
}

void oracle_check_scalar(double got, const char *file, const char *name, double rtol)
{
    float *t = load_tensor_f32(file, name, NULL, NULL, NULL);
    const double want = t[0];
    test_free(t);
    const double rel = fabs(got - want) / fabs(want);
    printf("    %-48s %.9g vs %.9g  rel %.2e\n", name, got, want, rel);
    if (!(rel <= rtol))
        fail_msg("%s: %.9g, expected %.9g (relative error %.3g > %g)", name, got, want, rel,
                 rtol);
}
