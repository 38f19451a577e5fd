/* labels.c: checking attribute label matrices, shared by the supervised dictionary and the
 * F1 tables. */
#include "supervised_internal.h"

sae_status sae__check_labels(const int32_t *labels, int64_t ldl, int64_t n, int32_t n_attrs,
                             const int32_t *n_values, const char *what)
{
    if (!labels || !n_values || n_attrs < 1 || n < 0)
        return sae__fail(SAE_EINVAL, "%s: labels and n_values are required, with >= 1 attribute "
                         "(%d) and n >= 0 (%lld)", what, (int)n_attrs, (long long)n);
    if (ldl < n_attrs)
        return sae__fail(SAE_ESHAPE, "%s: labels have leading dimension %lld < %d attributes",
                         what, (long long)ldl, (int)n_attrs);
    for (int32_t a = 0; a < n_attrs; a++)
        if (n_values[a] < 1)
            return sae__fail(SAE_EINVAL, "%s: attribute %d has %d values (need >= 1)", what,
                             (int)a, (int)n_values[a]);
    for (int64_t i = 0; i < n; i++)
        for (int32_t a = 0; a < n_attrs; a++) {
            int32_t v = labels[i * ldl + a];
            if (v < 0 || v >= n_values[a])
                return sae__fail(SAE_ERANGE, "%s: row %lld has value %d for attribute %d, "
                                 "outside [0, %d)", what, (long long)i, (int)v, (int)a,
                                 (int)n_values[a]);
        }
    return SAE_OK;
}
