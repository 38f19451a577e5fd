/* bench_util.c: see bench_util.h. */
#include "bench_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

double bench_peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *t, int n)
{
    double *s = bench_xmalloc(sizeof(double) * (size_t)n);
    memcpy(s, t, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    const double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

void bench_die(const char *what, sae_status s)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", program_invocation_short_name, what, sae_last_error(),
            sae_status_str(s));
    exit(1);
}

void *bench_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "%s: out of memory (%zu bytes)\n", program_invocation_short_name, n);
        exit(1);
    }
    return p;
}

long bench_parse_long(const char *flag, const char *v, long min)
{
    char *end = NULL;
    errno = 0;
    const long r = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || r < min) {
        fprintf(stderr, "%s: %s needs an integer >= %ld\n", program_invocation_short_name, flag,
                min);
        exit(2);
    }
    return r;
}

void bench_fill_normal(float *x, int64_t n, float scale, sae_rng *rng)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * sae_rng_normal(rng);
}
