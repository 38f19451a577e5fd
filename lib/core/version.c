/* version.c: the run-time version, to compare with the SAE_VERSION_* macros of the headers. */
#include "../internal.h"

#define STR2(x) #x
#define STR(x) STR2(x)

uint32_t sae_version_number(void) { return SAE_VERSION_NUMBER; }

const char *sae_version_string(void)
{
    return STR(SAE_VERSION_MAJOR) "." STR(SAE_VERSION_MINOR) "." STR(SAE_VERSION_PATCH);
}
