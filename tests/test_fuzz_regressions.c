/*
 * test_fuzz_regressions.c: inputs that broke a reader, replayed through the public API.
 *
 * Each case is a file of the fuzz seed corpus (fuzz/corpus/<target>/, where libFuzzer replays
 * it too) named after the bug, with the behaviour the fix gives. docs/hardening.md says how a
 * fuzzer's finding becomes such a case.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* The seed fuzz/corpus/<target>/<name> without its first `skip` bytes (the target's own
 * prefix), written to tmp/<file>; returns that path (static buffer). */
static const char *seed_file(const char *target, const char *name, size_t skip, const char *file)
{
    char src[4096];
    snprintf(src, sizeof src, "%s/fuzz/corpus/%s/%s", SAE_SOURCE_DIR, target, name);
    FILE *in = fopen(src, "rb");
    if (!in)
        fail_msg("cannot open %s", src);
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    assert_true(n > skip && n < sizeof buf);
    const char *path = tmp_path(file);
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf + skip, 1, n - skip, out), n - skip);
    assert_int_equal(fclose(out), 0);
    return path;
}

/* A .pt whose central directory lists storages 1..3 at the bytes of storage 0 (deflated
 * zeros): every entry inflated the same ~300 bytes into a new 256 KB storage, so that a file
 * of a few KB could make any number of them (a zip bomb). The storages' compressed sizes must
 * now fit in the archive. */
static void test_pt_overlapping_entries(void **state)
{
    (void)state;
    const char *path = seed_file("fuzz_torch_pt", "bad_overlapping_entries", 1, "overlap.pt");
    sae_dict *d = NULL;
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    o.allocator = test_allocator();
    assert_int_equal(sae_dict_load(&d, path, &o), SAE_EFORMAT);
    assert_null(d);
    if (!strstr(sae_last_error(), "share their data"))
        fail_msg("unexpected message: %s", sae_last_error());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pt_overlapping_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
