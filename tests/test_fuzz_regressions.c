/*
 * test_fuzz_regressions.c: inputs that broke a reader, replayed through the public API.
 *
 * Each case is a file of the fuzz seed corpus (fuzz/corpus/<target>/, where libFuzzer replays
 * it too) named after the bug, with the behaviour the fix gives. docs/hardening.md says how a
 * fuzzer's finding becomes such a case. The readers of the `sae` tool (examples/cli) are
 * linked in (sae_cli_readers) and tokenize with tok512 of ../shared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "circuit.h"
#include "llama2.h"
#include "task.h"
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

/* Replace the first `from` in the file at `path` by `to`. */
static void edit_file(const char *path, const char *from, const char *to)
{
    char text[1 << 14], out[1 << 14];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    const size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *at = strstr(text, from);
    assert_non_null(at);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(out, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A task pair whose prompt index is not an integer ("base": 0.5) was read as the truncated
 * index (0): found by review while writing fuzz_task. Indices must now be integers; the same
 * file with "base": 0 loads. */
static void test_task_fractional_pair_index(void **state)
{
    (void)state;
    llama2_tokenizer *tok = NULL;
    assert_sae_ok(llama2_tokenizer_load(&tok, shared_path("data/tok512.bin"), 512,
                                        test_allocator()));
    const char *path = seed_file("fuzz_task", "bad_pair_fraction", 0, "task_fraction.json");
    cli_task t;
    assert_int_equal(cli_task_load(&t, path, tok), CLI_EXIT_FAILURE);
    cli_task_free(&t);
    edit_file(path, "\"base\":0.5", "\"base\":0");
    assert_int_equal(cli_task_load(&t, path, tok), 0);
    assert_int_equal(t.n_pairs, 2);
    assert_int_equal(t.pair_base[0], 0);
    cli_task_free(&t);
    llama2_tokenizer_free(tok);
}

/* `sae circuit pairs` with tok512 on a template of one prompt per class, 1 KB that merges 500
 * times (" a a a ..."); patch_noun "boy" makes pairs, "tall boy" (one token more) none. The
 * exit code and the processor time. */
static int pairs_from_template(const char *patch_noun, double *seconds)
{
    char tmpl[1400] = "{\"templates\": [\"{noun}";
    for (int i = 0; i < 500; i++)
        strcat(tmpl, " a");
    snprintf(tmpl + strlen(tmpl), sizeof tmpl - strlen(tmpl),
             "\"], \"classes\": [{\"answer\": \" She\", \"slots\": {\"noun\": [\"girl\"]}}, "
             "{\"answer\": \" He\", \"slots\": {\"noun\": [\"%s\"]}}]}", patch_noun);
    char path[1024], out[1024], tok[1024];
    snprintf(path, sizeof path, "%s", tmp_path("slow_template.json"));
    snprintf(out, sizeof out, "%s", tmp_path("slow_template_pairs.jsonl"));
    snprintf(tok, sizeof tok, "%s", shared_path("data/tok512.bin"));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_true(fputs(tmpl, f) >= 0);
    assert_int_equal(fclose(f), 0);
    char *argv[] = {"pairs", "--template", path, "--tokenizer", tok, "--n", "2", "--out", out,
                    NULL};
    const clock_t t0 = clock();
    const int rc = cmd_circuit_pairs(9, argv);
    *seconds = (double)(clock() - t0) / CLOCKS_PER_SEC;
    return rc;
}

/* A template whose draws never make a pair is given up after 200 draws per pair, and each draw
 * tokenizes four prompts. With run.c's merge loop (O(n m) lookups for n pieces and m merges,
 * examples/llama2/tokenizer.c) 1 KB prompts that merge a lot made that 38 s of processor time
 * in Release, and a longer run or task prompt hours; the fuzzer's first timeout
 * (fuzz_pair_templates/bad_template_timeout) was a smaller case. The merges now take
 * O((n + m) log n): well under a second in Release (the time is printed; ctest's TIMEOUT
 * catches a regression to hours). */
static void test_template_slow_merges(void **state)
{
    (void)state;
    double with_pairs = 0, without = 0;
    assert_int_equal(pairs_from_template("boy", &with_pairs), 0);
    assert_int_equal(pairs_from_template("tall boy", &without), CLI_EXIT_FAILURE);
    printf("    template of 1 KB prompts: pairs in %.2f s, none after 400 draws in %.2f s\n",
           with_pairs, without);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pt_overlapping_entries),
        cmocka_unit_test(test_task_fractional_pair_index),
        cmocka_unit_test(test_template_slow_merges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
