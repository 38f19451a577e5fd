/* checks.c: small validation helpers shared by the modules. */
#include <math.h>

#include "../internal.h"

int64_t sae__first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}
