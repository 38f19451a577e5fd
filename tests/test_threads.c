/*
 * test_threads.c: one sae_dict shared by several threads that encode at once.
 *
 * A dictionary is immutable and shareable (dict.h); each thread makes its own encoder and
 * codes on it, and every result must be bit for bit the single-threaded one (each encoder uses
 * one thread, as the reference does, so the summation order is the same). The threads start
 * together (a barrier) and repeat the calls so that they overlap. scripts/test.sh also runs
 * this program in a ThreadSanitizer build (-DSAE_TSAN=ON), which fails on any data race in
 * what the threads share: the dictionary, the lazily initialised BLAS kernel context, the
 * per-thread error message.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum { D = 64, F = 256, ROWS = 37, THREADS = 4, REPEATS = 8, K = 12 };

/* One dictionary and its single-threaded results. */
typedef struct shared_case {
    const char *name;
    sae_dict *dict;
    float *f, *xh;           /* (ROWS, F), (ROWS, D) */
    int64_t nnz;
    int64_t offsets[ROWS + 1];
    int32_t *idx;
    float *val;
} shared_case;

static float x[ROWS * D];

static sae_dict *make_dict(int32_t arch, uint32_t flags, int32_t norm)
{
    float *W_enc = test_malloc(sizeof(float) * D * F), *W_dec = test_malloc(sizeof(float) * F * D);
    float b_enc[F], b_dec[D], th[F], b_mag[F];
    fill_normal(W_enc, D * F, 21, 0.2f);
    fill_normal(W_dec, F * D, 22, 0.2f);
    fill_normal(b_enc, F, 23, 0.1f);
    fill_normal(b_dec, D, 24, 0.1f);
    fill_normal(b_mag, F, 26, 0.1f);
    for (int j = 0; j < F; j++)
        th[j] = 0.1f + 0.001f * (float)j;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = arch, c.d_in = D, c.d_sae = F, c.flags = flags, c.input_norm = norm;
    c.k = arch == SAE_ARCH_TOPK || arch == SAE_ARCH_BATCHTOPK ? K : 0;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    if (arch == SAE_ARCH_GATED)
        w.b_gate = b_enc, w.b_mag = b_mag, w.r_mag = th;
    else
        w.b_enc = b_enc;
    if (arch == SAE_ARCH_JUMPRELU || arch == SAE_ARCH_BATCHTOPK)
        w.threshold = th;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
    test_free(W_enc);
    test_free(W_dec);
    return d;
}

static sae_encoder *make_encoder(const sae_dict *d)
{
    sae_encoder_options o = SAE_ENCODER_OPTIONS_INIT;
    o.n_threads = 1;
    sae_encoder *e = NULL;
    return sae_encoder_create(&e, d, &o) == SAE_OK ? e : NULL;
}

/* Dense encode, reconstruct and sparse encode of x; 0 when all ran and match `ref` (or fill
 * ref when `fill`). Runs inside the worker threads: no CMocka assertions here. */
static int run_case(shared_case *ref, bool fill)
{
    sae_encoder *e = make_encoder(ref->dict);
    sae_codes *codes = NULL;
    float *f = malloc(sizeof(float) * ROWS * F), *xh = malloc(sizeof(float) * ROWS * D);
    int bad = !e || !f || !xh || sae_codes_create(&codes, NULL) != SAE_OK;
    bad = bad || sae_encoder_encode(e, ROWS, x, D, f, F, NULL, 0) != SAE_OK;
    bad = bad || sae_encoder_reconstruct(e, ROWS, x, D, xh, D, NULL, 0) != SAE_OK;
    bad = bad || sae_encoder_encode_sparse(e, ROWS, x, D, codes) != SAE_OK;
    if (!bad && fill) {
        memcpy(ref->f, f, sizeof(float) * ROWS * F);
        memcpy(ref->xh, xh, sizeof(float) * ROWS * D);
        ref->nnz = sae_codes_nnz(codes);
        memcpy(ref->offsets, sae_codes_offsets(codes), sizeof ref->offsets);
        ref->idx = test_malloc(sizeof(int32_t) * (size_t)(ref->nnz + 1));
        ref->val = test_malloc(sizeof(float) * (size_t)(ref->nnz + 1));
        memcpy(ref->idx, sae_codes_indices(codes), sizeof(int32_t) * (size_t)ref->nnz);
        memcpy(ref->val, sae_codes_values(codes), sizeof(float) * (size_t)ref->nnz);
    } else if (!bad) {
        bad = memcmp(f, ref->f, sizeof(float) * ROWS * F) != 0 ||
              memcmp(xh, ref->xh, sizeof(float) * ROWS * D) != 0 ||
              sae_codes_nnz(codes) != ref->nnz ||
              memcmp(sae_codes_offsets(codes), ref->offsets, sizeof ref->offsets) != 0 ||
              memcmp(sae_codes_indices(codes), ref->idx, sizeof(int32_t) * (size_t)ref->nnz) ||
              memcmp(sae_codes_values(codes), ref->val, sizeof(float) * (size_t)ref->nnz);
    }
    sae_codes_free(codes);
    sae_encoder_free(e);
    free(f);
    free(xh);
    return bad;
}

typedef struct worker {
    shared_case *cases;
    int n_cases;
    pthread_barrier_t *start;
    atomic_int *mismatches;
    int id;
} worker;

static void *work(void *p)
{
    worker *w = p;
    pthread_barrier_wait(w->start);
    for (int r = 0; r < REPEATS; r++) {
        /* Each thread walks the dictionaries in its own order, so that different threads use
         * the same dictionary at the same time in different calls. */
        for (int i = 0; i < w->n_cases; i++) {
            shared_case *c = &w->cases[(i + w->id) % w->n_cases];
            if (run_case(c, false))
                atomic_fetch_add(w->mismatches, 1);
            (void)sae_dict_decoder_norms(c->dict);
        }
        /* The error message is per thread: a failing call here must not disturb another's. */
        float f[F];
        if (sae_encoder_encode(NULL, 1, x, D, f, F, NULL, 0) != SAE_EINVAL ||
            !sae_last_error()[0])
            atomic_fetch_add(w->mismatches, 1);
        sae_clear_error();
    }
    return NULL;
}

static void test_shared_dict(void **state)
{
    (void)state;
    fill_normal(x, ROWS * D, 25, 1.0f);
    shared_case cases[] = {
        {"standard", make_dict(SAE_ARCH_STANDARD, 0, SAE_NORM_NONE), 0, 0, 0, {0}, 0, 0},
        {"topk rescaled", make_dict(SAE_ARCH_TOPK, SAE_DICT_RESCALE_BY_DECODER_NORM,
                                    SAE_NORM_NONE), 0, 0, 0, {0}, 0, 0},
        {"topk relu first, layer norm", make_dict(SAE_ARCH_TOPK, SAE_DICT_RELU_BEFORE_TOPK,
                                                  SAE_NORM_LAYER_NORM), 0, 0, 0, {0}, 0, 0},
        {"batchtopk", make_dict(SAE_ARCH_BATCHTOPK, 0, SAE_NORM_NONE), 0, 0, 0, {0}, 0, 0},
        {"jumprelu", make_dict(SAE_ARCH_JUMPRELU, SAE_DICT_NO_B_DEC_INPUT,
                               SAE_NORM_CONSTANT_RESCALE), 0, 0, 0, {0}, 0, 0},
        {"gated", make_dict(SAE_ARCH_GATED, 0, SAE_NORM_NONE), 0, 0, 0, {0}, 0, 0},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        cases[i].f = test_malloc(sizeof(float) * ROWS * F);
        cases[i].xh = test_malloc(sizeof(float) * ROWS * D);
        if (run_case(&cases[i], true))
            fail_msg("%s: single-threaded run failed: %s", cases[i].name, sae_last_error());
        assert_true(cases[i].nnz > 0);
    }
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    atomic_int mismatches = 0;
    pthread_t tid[THREADS];
    worker w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){cases, n, &start, &mismatches, t};
        assert_int_equal(pthread_create(&tid[t], NULL, work, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(tid[t], NULL), 0);
    pthread_barrier_destroy(&start);
    assert_int_equal(atomic_load(&mismatches), 0);
    for (int i = 0; i < n; i++) {
        test_free(cases[i].f);
        test_free(cases[i].xh);
        test_free(cases[i].idx);
        test_free(cases[i].val);
        sae_dict_free(cases[i].dict);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_dict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
