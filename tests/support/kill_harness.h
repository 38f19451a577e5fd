/*
 * kill_harness.h: what the kill tests share (test_crash_safety.c: dictionaries and captured
 * activations; test_checkpoint.c: checkpoints). A kill test proves that a process SIGKILLed
 * while it writes a file leaves the old file or a whole new one, never a damaged one.
 *
 * The writer is a child process: the test program re-executed as
 *     program --child ARGS... FD
 * which writes versions of the file in a loop and, just before each write begins, says so with
 * kill_announce(FD) (a byte on a pipe; FD is -1 when the parent does not listen). The parent
 * runs rounds of kill_round(): even rounds kill at a random moment of the child's first cycles,
 * odd rounds a random moment inside a write (after its announcement), so that both the quiet
 * times and the writes are hit. After each kill the test checks its files, and counts with
 * kill_remove_temporaries() the temporary files of killed writes (lib/io/atomic_file.c: they
 * show that the kills did land inside writes).
 */
#ifndef SAE_TEST_KILL_HARNESS_H
#define SAE_TEST_KILL_HARNESS_H

#include <stdbool.h>

#include "sae/sae.h"

/* Seconds on a monotonic clock. */
double kill_now(void);

/* Whether argv is a child's command line: argv[1] is "--child" and n_args arguments and the
 * signal FD follow (argv[2 .. 2 + n_args), argv[argc - 1]). *fd is set when it is. */
bool kill_is_child(int argc, char **argv, int n_args, int *fd);

/* In the child: a write begins. Returns false if the pipe is gone. */
bool kill_announce(int fd);

/* The child's times, measured by the test (the build and the machine's load change them). */
typedef struct kill_timing {
    double startup; /* from the start of the process to its first cycle */
    double cycle;   /* one cycle of the loop: its work and its write */
    double write;   /* one write: odd rounds kill this far, at most, into it */
} kill_timing;

/* Run a child with args (NULL-terminated, after "--child"; FD -1) to its end; it must exit 0.
 * Its wall time in seconds. */
double kill_run_child(const char *const *args);

/* One round: start a child with args, SIGKILL it — even rounds at startup + 2 u cycle, odd
 * rounds u write after it announces a write — with u uniform in [0, 1) from rng, and reap it
 * (it must have died of the SIGKILL). */
void kill_round(const char *const *args, int round, const kill_timing *timing, sae_rng *rng);

/* Remove the temporary files killed writers left: for a directory, every "*.tmp.*" in it; for
 * a file path (which need not exist), every "<name>.tmp.*" beside it. How many there were. */
int kill_remove_temporaries(const char *path);

#endif /* SAE_TEST_KILL_HARNESS_H */
