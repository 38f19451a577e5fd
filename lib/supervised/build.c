/* build.c: sae_supervised life cycle and getters, and the two ways of computing its codes
 * (supervised.h): conditional means, and exact least squares over the one-hot design. Both
 * accumulate in double. */
#include <string.h>

#include "supervised_internal.h"

void sae_supervised_free(sae_supervised *sup)
{
    if (!sup)
        return;
    const sae_allocator *a = sup->allocator;
    sae__free(a, sup->n_values);
    sae__free(a, sup->first);
    sae__free(a, sup->bias);
    sae__free(a, sup->codes);
    sae__free(a, sup);
}

/* Mean codes: bias = E[a], u_{A,v} = E[a | A = v] − E[a] (0 for a value no row has).
 * sum: (n_codes, d) work, zeroed; count: (n_codes). */
static void mean_codes(sae_supervised *sup, const float *x, int64_t n, int64_t ldx,
                       const int32_t *labels, int64_t ldl, double *sum, int64_t *count)
{
    const int64_t d = sup->d;
    double *mean = sum + sup->n_codes * d; /* (d) after the (n_codes, d) sums */
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * ldx;
        for (int64_t j = 0; j < d; j++)
            mean[j] += row[j];
        for (int32_t a = 0; a < sup->n_attrs; a++) {
            int64_t c = sup->first[a] + labels[i * ldl + a];
            count[c]++;
            for (int64_t j = 0; j < d; j++)
                sum[c * d + j] += row[j];
        }
    }
    for (int64_t j = 0; j < d; j++) {
        mean[j] /= (double)n;
        sup->bias[j] = (float)mean[j];
    }
    for (int64_t c = 0; c < sup->n_codes; c++)
        for (int64_t j = 0; j < d; j++)
            sup->codes[c * d + j] =
                count[c] ? (float)(sum[c * d + j] / (double)count[c] - mean[j]) : 0.0f;
}

/* Least-squares codes: minimum-norm solution of min ||C U − X|| over the design
 * C = [1 | one-hot of every attribute] (n, 1 + n_codes), then each attribute's codes of the
 * values present shifted to zero row-weighted mean, the shift moved into the bias (same â). */
static sae_status lstsq_codes(sae_supervised *sup, const float *x, int64_t n, int64_t ldx,
                              const int32_t *labels, int64_t ldl, int64_t *count)
{
    const int64_t d = sup->d, p = 1 + sup->n_codes;
    const sae_allocator *al = sup->allocator;
    double *C = sae__alloc_array(al, (size_t)(n * p), sizeof(double));
    double *B = sae__alloc_array(al, (size_t)(n * d), sizeof(double));
    double *U = sae__alloc_array(al, (size_t)(p * d), sizeof(double));
    sae_status s = C && B && U ? SAE_OK : SAE_ENOMEM;
    if (s == SAE_OK) {
        memset(C, 0, (size_t)(n * p) * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            C[i * p] = 1.0;
            for (int32_t a = 0; a < sup->n_attrs; a++) {
                int64_t c = sup->first[a] + labels[i * ldl + a];
                C[i * p + 1 + c] = 1.0;
                count[c]++;
            }
            for (int64_t j = 0; j < d; j++)
                B[i * d + j] = x[i * ldx + j];
        }
        s = sae__lstsq_min_norm(U, d, C, p, B, d, n, p, d, al, NULL);
    }
    if (s == SAE_OK) {
        for (int32_t a = 0; a < sup->n_attrs; a++) {
            const int64_t c0 = 1 + sup->first[a];
            for (int64_t j = 0; j < d; j++) {
                double shift = 0.0;
                for (int32_t v = 0; v < sup->n_values[a]; v++)
                    shift += (double)count[c0 - 1 + v] * U[(c0 + v) * d + j];
                shift /= (double)n;
                for (int32_t v = 0; v < sup->n_values[a]; v++)
                    if (count[c0 - 1 + v])
                        U[(c0 + v) * d + j] -= shift;
                U[j] += shift;
            }
        }
        for (int64_t j = 0; j < d; j++)
            sup->bias[j] = (float)U[j];
        for (int64_t c = 0; c < sup->n_codes; c++)
            for (int64_t j = 0; j < d; j++)
                sup->codes[c * d + j] = count[c] ? (float)U[(1 + c) * d + j] : 0.0f;
    }
    sae__free(al, C);
    sae__free(al, B);
    sae__free(al, U);
    return s;
}

sae_status sae_supervised_create(sae_supervised **out, const float *x, int64_t n, int64_t d,
                                 int64_t ldx, const int32_t *labels, int64_t ldl,
                                 int32_t n_attrs, const int32_t *n_values,
                                 const sae_supervised_options *options)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "supervised dictionary: out is NULL");
    *out = NULL;
    sae_supervised_options o = SAE_SUPERVISED_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, options, "sae_supervised_options");
    if (s != SAE_OK)
        return s;
    if (o.method != SAE_SUPERVISED_MEAN && o.method != SAE_SUPERVISED_LSTSQ)
        return sae__fail(SAE_EINVAL, "supervised dictionary: unknown method %d", (int)o.method);
    if (!x || n < 1 || d < 1)
        return sae__fail(SAE_EINVAL, "supervised dictionary: need activations with n >= 1 rows "
                         "(%lld) of d >= 1 (%lld)", (long long)n, (long long)d);
    if (ldx < d)
        return sae__fail(SAE_ESHAPE, "supervised dictionary: ldx %lld < d %lld", (long long)ldx,
                         (long long)d);
    if ((s = sae__check_labels(labels, ldl, n, n_attrs, n_values, "supervised dictionary")))
        return s;
    for (int64_t i = 0; i < n; i++) {
        int64_t bad = sae__first_nonfinite(x + i * ldx, d);
        if (bad >= 0)
            return sae__fail(SAE_ENUMERIC, "supervised dictionary: activation [%lld, %lld] is "
                             "not finite", (long long)i, (long long)bad);
    }
    int64_t n_codes = 0;
    for (int32_t a = 0; a < n_attrs; a++)
        n_codes += n_values[a];
    const sae_allocator *al = sae__allocator(o.allocator);
    sae_supervised *sup = sae__alloc_array(al, 1, sizeof *sup);
    if (!sup)
        return SAE_ENOMEM;
    memset(sup, 0, sizeof *sup);
    sup->allocator = al;
    sup->d = d;
    sup->n_attrs = n_attrs;
    sup->n_codes = n_codes;
    double *sum = NULL;
    int64_t *count = sae__alloc_array(al, (size_t)n_codes, sizeof(int64_t));
    if (!count || !(sup->n_values = sae__alloc_array(al, (size_t)n_attrs, sizeof(int32_t))) ||
        !(sup->first = sae__alloc_array(al, (size_t)n_attrs, sizeof(int64_t))) ||
        !(sup->bias = sae__alloc_array(al, (size_t)d, sizeof(float))) ||
        !(sup->codes = sae__alloc_array(al, (size_t)(n_codes * d), sizeof(float))) ||
        (o.method == SAE_SUPERVISED_MEAN &&
         !(sum = sae__alloc_array(al, (size_t)((n_codes + 1) * d), sizeof(double))))) {
        s = SAE_ENOMEM;
        goto done;
    }
    memset(count, 0, (size_t)n_codes * sizeof(int64_t));
    for (int32_t a = 0, c = 0; a < n_attrs; c += n_values[a], a++) {
        sup->n_values[a] = n_values[a];
        sup->first[a] = c;
    }
    if (o.method == SAE_SUPERVISED_MEAN) {
        memset(sum, 0, (size_t)((n_codes + 1) * d) * sizeof(double));
        mean_codes(sup, x, n, ldx, labels, ldl, sum, count);
    } else {
        s = lstsq_codes(sup, x, n, ldx, labels, ldl, count);
    }
done:
    sae__free(al, count);
    sae__free(al, sum);
    if (s != SAE_OK) {
        sae_supervised_free(sup);
        return s;
    }
    *out = sup;
    return SAE_OK;
}

int64_t sae_supervised_d(const sae_supervised *sup)
{
    return sup ? sup->d : 0;
}

int32_t sae_supervised_n_attributes(const sae_supervised *sup)
{
    return sup ? sup->n_attrs : 0;
}

int32_t sae_supervised_n_values(const sae_supervised *sup, int32_t attr)
{
    return sup && attr >= 0 && attr < sup->n_attrs ? sup->n_values[attr] : 0;
}

int64_t sae_supervised_n_codes(const sae_supervised *sup)
{
    return sup ? sup->n_codes : 0;
}

int64_t sae_supervised_code_index(const sae_supervised *sup, int32_t attr, int32_t value)
{
    if (!sup || attr < 0 || attr >= sup->n_attrs || value < 0 || value >= sup->n_values[attr])
        return -1;
    return sup->first[attr] + value;
}

const float *sae_supervised_bias(const sae_supervised *sup)
{
    return sup ? sup->bias : NULL;
}

const float *sae_supervised_codes(const sae_supervised *sup)
{
    return sup ? sup->codes : NULL;
}
