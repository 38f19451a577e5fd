/*
 * test_crash_safety.c: a process killed while it writes a file never leaves a damaged file
 * behind: dictionaries (sae_dict_save, SAELens and sparsify layouts) and captured activations
 * (sae_host_capture); checkpoints have the same test in test_checkpoint.c. The fork / kill loop
 * is tests/support/kill_harness.h.
 *
 * Dictionaries: a child process (this program re-executed with --child) saves version 1, 2, 3,
 * ... of a 2 MB dictionary in both layouts, one after the other, while the parent SIGKILLs it:
 * at random times, and in odd rounds just after the child says a save begins (a byte on a
 * pipe), to land inside the writes. After every kill both directories load, and each file holds
 * one whole version: the weights of a version are derived from its number (b_dec[0] =
 * version), so the loaded arrays must equal those of the version they claim, bit for bit. Every
 * file is written to a temporary name, synced and renamed over the old one (lib/io/
 * atomic_file.c); the temporary files of killed writers are counted to show that kills did land
 * inside writes.
 *
 * The two files of a directory are replaced one after the other (weights, then cfg.json):
 * a kill between the two leaves new weights beside the old cfg.json. Here every version has
 * the same configuration, as when a training run saves the same SAE again; docs/hardening.md
 * says what that means when the configuration changes.
 *
 * Captures: the child captures two hook points of the linear test host (tests/support/
 * linear_host.h) into a 4 MB file, streamed over 8 forward batches, alternately from token
 * sequences A and B, over a file that holds the other one. After every kill the file loads and
 * is bit for bit the capture of A or of B that the parent made itself: the old file when the
 * kill came before the new one was complete.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kill_harness.h"
#include "linear_host.h"
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

/* The child: save versions first, first + 1, ... last in both layouts (until killed); it
 * announces each save on signal_fd. */
static int dict_child(int64_t first, int64_t last, int signal_fd)
{
    char saelens[1024], sparsify[1024];
    dirs(saelens, sparsify, sizeof saelens);
    version_arrays a = make_arrays();
    sae_status s = SAE_OK;
    for (int64_t v = first; s == SAE_OK && v <= last; v++) {
        sae_dict *d = NULL;
        s = make_version(&d, &a, v);
        if (s == SAE_OK && !kill_announce(signal_fd))
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

/* Run a dictionary child saving versions first .. last to its end; its wall time. */
static double run_dict_child(int64_t first, int64_t last)
{
    char a[32], b[32];
    snprintf(a, sizeof a, "%lld", (long long)first);
    snprintf(b, sizeof b, "%lld", (long long)last);
    return kill_run_child((const char *[]){"dict", a, b, NULL});
}

static void test_kill_during_dict_save(void **state)
{
    (void)state;
    char saelens[1024], sparsify[1024];
    dirs(saelens, sparsify, sizeof saelens);
    const double start = kill_now();
    /* Calibration: a child's start-up with one save of both layouts, and one more save. */
    const double one = run_dict_child(1, 1);
    const double cycle = fmax(run_dict_child(1, 3) - one, 1e-3) / 2;
    const kill_timing timing = {fmax(one - cycle, 0), cycle, cycle};
    version_arrays a = make_arrays();
    sae_rng rng;
    sae_rng_init(&rng, 2025, 0);
    int64_t next = 4, last_saelens = 3, last_sparsify = 3;
    int leftovers = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        char first[32];
        snprintf(first, sizeof first, "%lld", (long long)next);
        kill_round((const char *[]){"dict", first, "9223372036854775807", NULL}, round, &timing,
                   &rng);
        const int64_t v1 = check_dir(saelens, &a, round), v2 = check_dir(sparsify, &a, round);
        /* Versions only move forward, and the layouts are saved in turn (SAELens first). */
        assert_true(v1 >= last_saelens && v2 >= last_sparsify && v2 <= v1);
        last_saelens = v1, last_sparsify = v2;
        leftovers += kill_remove_temporaries(saelens) + kill_remove_temporaries(sparsify);
        next = v1 + 1; /* new versions only, so that an old file cannot pass for a new one */
    }
    printf("    start-up %.0f ms, save of both layouts %.0f ms: %d kills, %d temporary files "
           "of killed writes; %.1f s\n", 1e3 * timing.startup, 1e3 * cycle, KILL_ROUNDS,
           leftovers, kill_now() - start);
    assert_true(leftovers >= 1); /* some kills landed inside a write */
    free_arrays(&a);
}

/* ---- captures ------------------------------------------------------------------------------ */

/* 64 sequences of 64 tokens, width 64; two tensors stacking both hook points (in both orders):
 * 2 x 64 x 64 x 2 x 64 floats = 4 MB, in batches of 8 sequences. */
enum { CAP_SEQS = 64, CAP_LEN = 64, CAP_D = 64, CAP_VOCAB = 97, CAP_BATCH = 8 };

/* The host and the two token sets, A (0) and B (1). */
typedef struct capture_fixture {
    linear_host *lh;
    sae_host host;
    int32_t tokens[2][CAP_SEQS * CAP_LEN];
} capture_fixture;

static void capture_setup(capture_fixture *fx)
{
    fx->lh = linear_host_create(2, CAP_D, CAP_VOCAB, CAP_LEN, 17);
    linear_host_table(fx->lh, &fx->host);
    for (int v = 0; v < 2; v++) {
        sae_rng rng;
        sae_rng_init(&rng, 100 + (uint64_t)v, 0);
        for (int i = 0; i < CAP_SEQS * CAP_LEN; i++)
            fx->tokens[v][i] = (int32_t)sae_rng_below(&rng, CAP_VOCAB);
    }
}

static sae_status capture(const capture_fixture *fx, const char *path, int v)
{
    static const char *const names[] = {"up", "down"};
    static const int32_t hooks[] = {0, 1, 1, 0};
    sae_capture_options o = SAE_CAPTURE_OPTIONS_INIT;
    o.seqs_per_batch = CAP_BATCH;
    return sae_host_capture(path, &fx->host, fx->tokens[v], CAP_SEQS, CAP_LEN, 2, names, 2,
                            hooks, &o);
}

static const char *capture_file(void) { return tmp_path("kill_capture.safetensors"); }

/* The child: capture token set first, then the other, alternately, count times (until
 * killed); it announces each capture on signal_fd. */
static int capture_child(int first, int64_t count, int signal_fd)
{
    capture_fixture fx;
    capture_setup(&fx);
    char path[1024];
    snprintf(path, sizeof path, "%s", capture_file());
    sae_status s = SAE_OK;
    for (int64_t i = 0; s == SAE_OK && i < count; i++) {
        s = kill_announce(signal_fd) ? SAE_OK : SAE_EIO;
        if (s == SAE_OK)
            s = capture(&fx, path, (int)((first + i) % 2));
    }
    if (s != SAE_OK)
        fprintf(stderr, "child: %d %s\n", s, sae_last_error());
    linear_host_free(fx.lh);
    return s == SAE_OK ? 0 : 4;
}

/* The bytes of a file (test_malloc'd). */
static uint8_t *read_bytes(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    *size = (size_t)ftell(f);
    uint8_t *b = test_malloc(*size);
    rewind(f);
    assert_int_equal(fread(b, 1, *size, f), *size);
    fclose(f);
    return b;
}

/* The file loads, as a capture: two F32 tensors [64, 64, 2, 64] and their metadata. */
static void check_capture_loads(const char *path, int round)
{
    sae_st_reader *r = NULL;
    if (sae_st_open(&r, path) != SAE_OK)
        fail_msg("round %d: the capture does not load: %s", round, sae_last_error());
    assert_int_equal(sae_st_count(r), 2);
    for (int64_t i = 0; i < 2; i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        assert_int_equal(t->dtype, SAE_DTYPE_F32);
        assert_int_equal(t->ndim, 4);
        assert_int_equal(t->numel, (int64_t)CAP_SEQS * CAP_LEN * 2 * CAP_D);
    }
    assert_string_equal(sae_st_metadata(r, "hooks.up"), "layer.0,layer.1");
    sae_st_close(r);
}

/* Which whole capture the file is (0: A, 1: B), or -1. */
static int which_capture(uint8_t *const want[2], const size_t size[2])
{
    size_t n = 0;
    uint8_t *got = read_bytes(capture_file(), &n);
    int v = -1;
    for (int k = 0; k < 2 && v < 0; k++)
        if (n == size[k] && !memcmp(got, want[k], n))
            v = k;
    test_free(got);
    return v;
}

static double run_capture_child(int first, int64_t count)
{
    char a[8], b[32];
    snprintf(a, sizeof a, "%d", first);
    snprintf(b, sizeof b, "%lld", (long long)count);
    return kill_run_child((const char *[]){"capture", a, b, NULL});
}

static void test_kill_during_capture(void **state)
{
    (void)state;
    const double start = kill_now();
    /* The two possible files, captured here. */
    capture_fixture fx;
    capture_setup(&fx);
    uint8_t *want[2];
    size_t size[2];
    for (int v = 0; v < 2; v++) {
        char ref[32];
        snprintf(ref, sizeof ref, "kill_capture_ref%d.safetensors", v);
        assert_sae_ok(capture(&fx, tmp_path(ref), v));
        want[v] = read_bytes(tmp_path(ref), &size[v]);
        unlink(tmp_path(ref));
    }
    linear_host_free(fx.lh);
    assert_true(size[0] == size[1] && size[0] > 4000000);
    assert_true(memcmp(want[0], want[1], size[0]) != 0);
    /* Calibration: a child's start-up with one capture (B), and two more (A, B). */
    const double one = run_capture_child(1, 1);
    const double cycle = fmax(run_capture_child(0, 2) - one, 1e-3) / 2;
    const kill_timing timing = {fmax(one - cycle, 0), cycle, cycle};
    int held = which_capture(want, size), kept = 0, leftovers = 0;
    assert_int_equal(held, 1);
    sae_rng rng;
    sae_rng_init(&rng, 2026, 0);
    for (int round = 0; round < KILL_ROUNDS; round++) {
        /* Capture the other token set over the file, then alternate. */
        kill_round((const char *[]){"capture", held ? "0" : "1", "9223372036854775807", NULL},
                   round, &timing, &rng);
        check_capture_loads(capture_file(), round);
        const int now = which_capture(want, size);
        if (now < 0)
            fail_msg("round %d: the capture file is neither whole capture", round);
        kept += now == held; /* killed inside the first capture: the old file, intact */
        held = now;
        leftovers += kill_remove_temporaries(capture_file());
    }
    printf("    start-up %.0f ms, capture of %.1f MB %.0f ms: %d kills, %d left the old file, "
           "%d temporary files of killed writes; %.1f s\n", 1e3 * timing.startup,
           (double)size[0] / 1e6, 1e3 * cycle, KILL_ROUNDS, kept, leftovers,
           kill_now() - start);
    assert_true(leftovers >= 1); /* some kills landed inside a write */
    assert_true(kept >= 1);
    test_free(want[0]), test_free(want[1]);
    unlink(capture_file());
}

int main(int argc, char **argv)
{
    int fd = -1;
    if (kill_is_child(argc, argv, 3, &fd) && !strcmp(argv[2], "dict"))
        return dict_child(strtoll(argv[3], NULL, 10), strtoll(argv[4], NULL, 10), fd);
    if (kill_is_child(argc, argv, 3, &fd) && !strcmp(argv[2], "capture"))
        return capture_child(atoi(argv[3]), strtoll(argv[4], NULL, 10), fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_dict_save),
        cmocka_unit_test(test_kill_during_capture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
