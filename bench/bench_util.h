/* bench_util.h: what every benchmark program needs besides the thing it times: a clock, CPU
 * time and peak RSS of the process, a median, checked allocation and argument parsing, and
 * random inputs. Errors print "<program>: ..." on stderr and exit (a benchmark has no caller to
 * hand them to). */
#ifndef SAE_BENCH_UTIL_H
#define SAE_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "sae/sae.h"

/* Monotonic wall clock, seconds. */
double bench_now(void);
/* CPU time of the process (user + system, all threads), seconds. */
double bench_cpu_seconds(void);
/* Peak resident set size of the process so far, MiB. */
double bench_peak_rss_mib(void);
/* Median of t[0..n) (n >= 1; t is left as it was). */
double bench_median(const double *t, int n);
/* Exit with status 1 after printing what failed and libsae's last error. */
void bench_die(const char *what, sae_status s);
/* malloc that exits on failure (n = 0 allocates one byte). */
void *bench_xmalloc(size_t n);
/* The integer value of command-line flag `flag`, or exit with status 2 if v is missing, not an
 * integer or below min. */
long bench_parse_long(const char *flag, const char *v, long min);
/* x[0..n) = scale * N(0, 1) draws from rng. */
void bench_fill_normal(float *x, int64_t n, float scale, sae_rng *rng);

#endif /* SAE_BENCH_UTIL_H */
