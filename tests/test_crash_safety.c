/*
 * test_crash_safety.c: a process killed while it saves a dictionary never leaves a damaged
 * file behind (sae_dict_save, SAELens and sparsify layouts; checkpoints have the same test in
 * test_checkpoint.c).
 *
 * A child process (this program re-executed with --child) saves version 1, 2, 3, ... of a
 * 2 MB dictionary in both layouts, one after the other, while the parent SIGKILLs it: at random
 * times, and in odd rounds just after the child says a save begins (a byte on a pipe), to land
 * inside the writes. After every kill both directories load, and each file holds one whole
 * version: the weights of a version are derived from its number (b_dec[0] = version), so the
 * loaded arrays must equal those of the version they claim, bit for bit. Every file is written
 * to a temporary name, synced and renamed over the old one (lib/io/atomic_file.c); the
 * temporary files of killed writers are counted to show that kills did land inside writes.
 *
 * The two files of a directory are replaced one after the other (weights, then cfg.json):
 * a kill between the two leaves new weights beside the old cfg.json. Here every version has
 * the same configuration, as when a training run saves the same SAE again; docs/hardening.md
 * says what that means when the configuration changes.
 */
#include <dirent.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

enum { D = 256, F = 1024, K = 16 };
#define KILL_ROUNDS 20

/* Version v of the dictionary: fixed random weights with b_dec[0] = v. */
typedef struct version_arrays {
    float *W_enc, *W_dec, *b_enc, *b_dec;
} version_arrays;

static version_arrays make_arrays(void)
{
    version_arrays a = {malloc(sizeof(float) * D * F), malloc(sizeof(float) * F * D),
                        malloc(sizeof(float) * F), malloc(sizeof(float) * D)};
    if (!a.W_enc || !a.W_dec || !a.b_enc || !a.b_dec)
        abort();
    fill_normal(a.W_enc, D * F, 41, 0.1f);
    fill_normal(a.W_dec, F * D, 42, 0.1f);
    fill_normal(a.b_enc, F, 43, 0.1f);
    fill_normal(a.b_dec, D, 44, 0.1f);
    return a;
}

static void free_arrays(version_arrays *a)
{
    free(a->W_enc), free(a->W_dec), free(a->b_enc), free(a->b_dec);
}

/* The version dictionary: TopK without input normalisation, which both layouts store as is. */
static sae_status make_version(sae_dict **out, version_arrays *a, int64_t v)
{
    a->b_dec[0] = (float)v;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = SAE_ARCH_TOPK, c.d_in = D, c.d_sae = F, c.k = K;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = a->W_enc, w.W_dec = a->W_dec, w.b_enc = a->b_enc, w.b_dec = a->b_dec;
    return sae_dict_create(out, &c, &w, NULL);
}

static void dirs(char *saelens, char *sparsify, size_t size)
{
    snprintf(saelens, size, "%s", tmp_path("kill_saelens"));
    snprintf(sparsify, size, "%s", tmp_path("kill_sparsify"));
}

/* The child: save versions first, first + 1, ... in both layouts until killed; before each
 * save it writes a byte to signal_fd (-1: none). */
static int child_main(int64_t first, int64_t last, int signal_fd)
{
    char saelens[1024], sparsify[1024];
    dirs(saelens, sparsify, sizeof saelens);
    version_arrays a = make_arrays();
    sae_status s = SAE_OK;
    for (int64_t v = first; s == SAE_OK && v <= last; v++) {
        sae_dict *d = NULL;
        s = make_version(&d, &a, v);
        if (s == SAE_OK && signal_fd >= 0 && write(signal_fd, "s", 1) != 1)
            s = SAE_EIO;
        if (s == SAE_OK)
            s = sae_dict_save(d, saelens, SAE_FORMAT_SAELENS);
        if (s == SAE_OK)
            s = sae_dict_save(d, sparsify, SAE_FORMAT_SPARSIFY);
        sae_dict_free(d);
    }
    if (s != SAE_OK)
        fprintf(stderr, "child: %d %s\n", s, sae_last_error());
    free_arrays(&a);
    return s == SAE_OK ? 0 : 4;
}

/* Load `dir`; its weights must be exactly those of one version, which is returned. */
static int64_t check_dir(const char *dir, version_arrays *a, int round)
{
    sae_dict *d = NULL;
    if (sae_dict_load(&d, dir, NULL) != SAE_OK)
        fail_msg("round %d: %s does not load: %s", round, dir, sae_last_error());
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(d, &w));
    assert_int_equal(sae_dict_d_in(d), D);
    assert_int_equal(sae_dict_d_sae(d), F);
    assert_int_equal(sae_dict_k(d), K);
    const int64_t v = (int64_t)w.b_dec[0];
    assert_true(v >= 1 && (float)v == w.b_dec[0]);
    a->b_dec[0] = (float)v;
    if (memcmp(w.W_enc, a->W_enc, sizeof(float) * D * F) ||
        memcmp(w.W_dec, a->W_dec, sizeof(float) * F * D) ||
        memcmp(w.b_enc, a->b_enc, sizeof(float) * F) || memcmp(w.b_dec, a->b_dec, sizeof(float) * D))
        fail_msg("round %d: %s holds weights of no single version (b_dec[0] says %lld)", round,
                 dir, (long long)v);
    sae_dict_free(d);
    return v;
}

/* Remove the temporary files killed writers left in `dir`; how many there were. */
static int remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strstr(e->d_name, ".tmp."))
            continue;
        char full[2048];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(full), 0);
        count++;
    }
    closedir(d);
    return count;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pid_t spawn(int64_t first, int64_t last, int signal_fd)
{
    char a[32], b[32], fd[16];
    snprintf(a, sizeof a, "%lld", (long long)first);
    snprintf(b, sizeof b, "%lld", (long long)last);
    snprintf(fd, sizeof fd, "%d", signal_fd);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_crash_safety", "--child", a, b, fd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Run the child to its end; its wall time. */
static double run_child(int64_t first, int64_t last)
{
    const double t0 = now();
    int status = 0;
    pid_t pid = spawn(first, last, -1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return now() - t0;
}

static void test_kill_during_dict_save(void **state)
{
    (void)state;
    char saelens[1024], sparsify[1024];
    dirs(saelens, sparsify, sizeof saelens);
    const double start = now();
    /* Calibration: a child's start-up with one save of both layouts, and one more save. */
    const double one = run_child(1, 1);
    const double cycle = fmax(run_child(1, 3) - one, 1e-3) / 2;
    const double startup = fmax(one - cycle, 0);
    version_arrays a = make_arrays();
    sae_rng rng;
    sae_rng_init(&rng, 2025, 0);
    int64_t next = 4, last_saelens = 3, last_sparsify = 3;
    int leftovers = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        const pid_t pid = spawn(next, INT64_MAX, round % 2 ? fds[1] : -1);
        close(fds[1]);
        const double u = (double)sae_rng_below(&rng, 1000) / 1000;
        if (round % 2) { /* just after a save begins */
            struct pollfd p = {.fd = fds[0], .events = POLLIN};
            char byte;
            if (poll(&p, 1, 60000) != 1 || read(fds[0], &byte, 1) != 1)
                fail_msg("the child never started a save");
            usleep((useconds_t)(u * cycle * 1e6));
        } else {
            usleep((useconds_t)((startup + 2 * u * cycle) * 1e6));
        }
        kill(pid, SIGKILL);
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        const int64_t v1 = check_dir(saelens, &a, round), v2 = check_dir(sparsify, &a, round);
        /* Versions only move forward, and the layouts are saved in turn (SAELens first). */
        assert_true(v1 >= last_saelens && v2 >= last_sparsify && v2 <= v1);
        last_saelens = v1, last_sparsify = v2;
        leftovers += remove_leftovers(saelens) + remove_leftovers(sparsify);
        next = v1 + 1; /* new versions only, so that an old file cannot pass for a new one */
    }
    printf("    start-up %.0f ms, save of both layouts %.0f ms: %d kills, %d temporary files "
           "of killed writes; %.1f s\n", 1e3 * startup, 1e3 * cycle, KILL_ROUNDS, leftovers,
           now() - start);
    assert_true(leftovers >= 1); /* some kills landed inside a write */
    free_arrays(&a);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--child") == 0)
        return child_main(strtoll(argv[2], NULL, 10), strtoll(argv[3], NULL, 10),
                          atoi(argv[4]));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_dict_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
