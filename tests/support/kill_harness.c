/* kill_harness.c: the fork / kill loop of the kill tests (kill_harness.h). */
#include "kill_harness.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#define MAX_CHILD_ARGS 16

double kill_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool kill_is_child(int argc, char **argv, int n_args, int *fd)
{
    if (argc != n_args + 3 || strcmp(argv[1], "--child") != 0)
        return false;
    *fd = atoi(argv[argc - 1]);
    return true;
}

bool kill_announce(int fd) { return fd < 0 || write(fd, "w", 1) == 1; }

/* Start the child: this program with "--child", args and the signal fd. */
static pid_t spawn(const char *const *args, int signal_fd)
{
    char fd[16];
    const char *argv[MAX_CHILD_ARGS + 4] = {program_invocation_short_name, "--child"};
    int n = 2;
    for (; args[n - 2]; n++) {
        assert_true(n - 2 < MAX_CHILD_ARGS);
        argv[n] = args[n - 2];
    }
    snprintf(fd, sizeof fd, "%d", signal_fd);
    argv[n++] = fd;
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    return pid;
}

double kill_run_child(const char *const *args)
{
    const double t0 = kill_now();
    int status = 0;
    pid_t pid = spawn(args, -1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the child (%s ...) failed: status %d", args[0], status);
    return kill_now() - t0;
}

static void sleep_for(double seconds) { usleep((useconds_t)(seconds * 1e6)); }

void kill_round(const char *const *args, int round, const kill_timing *timing, sae_rng *rng)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    const pid_t pid = spawn(args, round % 2 ? fds[1] : -1);
    close(fds[1]);
    const double u = (double)sae_rng_below(rng, 1000) / 1000;
    if (round % 2) { /* inside a write, after the child says one begins */
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        char byte;
        if (poll(&p, 1, 60000) != 1 || read(fds[0], &byte, 1) != 1)
            fail_msg("round %d: the child never started a write", round);
        sleep_for(u * timing->write);
    } else { /* past the start-up, anywhere in the next two cycles */
        sleep_for(timing->startup + 2 * u * timing->cycle);
    }
    kill(pid, SIGKILL);
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("round %d: the child ended before the kill: status %d", round, status);
}

int kill_remove_temporaries(const char *path)
{
    char dir[1024], prefix[1024] = "";
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        char *slash = strrchr(dir, '/');
        assert_non_null(slash);
        *slash = '\0';
        snprintf(prefix, sizeof prefix, "%s.tmp.", slash + 1);
    }
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (prefix[0] ? strncmp(e->d_name, prefix, strlen(prefix)) != 0
                      : !strstr(e->d_name, ".tmp."))
            continue;
        char full[2048];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (unlink(full) != 0)
            fail_msg("cannot remove %s: %s", full, strerror(errno));
        count++;
    }
    closedir(d);
    return count;
}
