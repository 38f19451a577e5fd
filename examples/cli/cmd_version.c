/* cmd_version.c: `sae version`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] = "usage: sae version\n"
                            "\n"
                            "Print the version of libsae, the BLAS kernels it uses on this CPU\n"
                            "and the default number of threads.\n";

int cmd_version(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        return cli_usage_error(usage, "version: unexpected argument '%s'", argv[i]);
    }
    printf("libsae %s (BLAS kernels: %s, default threads: %d)\n", sae_version_string(),
           sae_blas_kernels(), sae_default_threads());
    return 0;
}
