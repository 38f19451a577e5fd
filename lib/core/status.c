/* status.c: status texts and the per-thread last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../internal.h"

/* One message buffer per thread: errors never race, and the message of a failed constructor
 * survives until the next failing call on the same thread. */
static _Thread_local char last_error[1024];

const char *sae_status_str(sae_status status)
{
    switch (status) {
    case SAE_OK: return "ok";
    case SAE_EINVAL: return "invalid argument";
    case SAE_ENOMEM: return "out of memory";
    case SAE_ESHAPE: return "shape mismatch";
    case SAE_EIO: return "input/output error";
    case SAE_EFORMAT: return "malformed file";
    case SAE_ENUMERIC: return "non-finite or out-of-range value";
    case SAE_EUNSUPPORTED: return "unsupported";
    case SAE_ECANCELED: return "canceled";
    case SAE_ERANGE: return "index out of range";
    case SAE_ENOTFOUND: return "not found";
    default: return "unknown status";
    }
}

const char *sae_last_error(void) { return last_error; }

void sae_clear_error(void) { last_error[0] = '\0'; }

sae_status sae__fail(sae_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

sae_status sae__fail_prefix(sae_status status, const char *prefix)
{
    /* Shift the message right and put "prefix: " in front, truncating at the buffer's end. */
    size_t plen = strlen(prefix) + 2, mlen = strlen(last_error);
    if (plen >= sizeof last_error)
        plen = sizeof last_error - 1;
    if (plen + mlen >= sizeof last_error)
        mlen = sizeof last_error - 1 - plen;
    memmove(last_error + plen, last_error, mlen);
    last_error[plen + mlen] = '\0';
    memcpy(last_error, prefix, plen - 2);
    memcpy(last_error + plen - 2, ": ", 2);
    return status;
}
