/* threads.c: how many threads a call uses by default. */
#include <sched.h>
#include <unistd.h>

#include "../internal.h"

int32_t sae_default_threads(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

int sae__threads(int32_t requested) { return requested > 0 ? requested : sae_default_threads(); }

int sae__threads_for(int threads, double work)
{
    const double useful = work / (double)SAE__WORK_PER_THREAD;
    if (threads <= 1 || useful < 2.0)
        return 1;
    return useful < (double)threads ? (int)useful : threads;
}
