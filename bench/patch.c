/* patch.c: `bench_patch`, the cost of applying a splice patch (x <- decode(encode(x)) in place,
 * sae_patch_apply) against an encode followed by a decode of the same batch through the public
 * encoder API, as one JSON object; and the allocations made during the applies, counted by the
 * patch's allocator (patch.h promises none).
 *
 * Workload: d_in 768 with d_sae 16384 (a GPT-2-small residual SAE) and d_in 64 with d_sae 512
 * (stories260K), weights N(0, 1)/sqrt(d_in) (encoder) and N(0, 1)/sqrt(d_sae) (decoder), inputs
 * N(0, 1), batches of 1, 128 and 4096 tokens; two architectures that are sparse as trained SAEs
 * are: ReLU with b_enc = -2.65 (about 0.4% of the features fire) and TopK (k = min(32, d_sae/16)).
 * Timed, median of R calls after one warm-up (R = 200 for n = 1, 20 for n = 128, 3 for 4096,
 * times --reps-scale):
 *   splice        sae_patch_apply with the default workspace (max_tokens 256: larger batches run
 *                 in blocks of 256 rows)
 *   splice_full   the same with max_tokens = n (one block)
 *   dense         sae_encoder_encode (dense codes) + sae_encoder_decode
 *   sparse        sae_encoder_encode_sparse (CSR) + sae_encoder_decode_sparse
 * "ratio" is splice / min(dense, sparse): at most 1 means the splice costs no more than the
 * cheaper encode + decode. The input is restored before each splice, outside the timing.
 *
 * usage: bench_patch [--threads T] [--batches 1,128,4096] [--reps-scale S] [--small-only]
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sae/sae.h>

#include "bench_util.h"

#define MAX_BATCHES 8

/* ---- the counting allocator of the patches ------------------------------------------------- */

static long n_allocs;

static void *counting_alloc(size_t size, size_t align, void *user)
{
    (void)user;
    n_allocs++;
    void *p = NULL;
    return posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size) ? NULL : p;
}

static void counting_free(void *p, void *user)
{
    (void)user;
    free(p);
}

static const sae_allocator counting = {counting_alloc, counting_free, NULL};

/* ---- what is timed ------------------------------------------------------------------------- */

typedef enum { RUN_SPLICE, RUN_DENSE, RUN_SPARSE } run_kind;

typedef struct {
    run_kind kind;
    int64_t n, d_in, d_sae;
    const float *x;   /* (n, d_in) the input */
    float *work;      /* (n, d_in) splice: patched in place */
    float *f, *x_hat; /* (n, d_sae) dense codes, (n, d_in) reconstruction */
    sae_patch *patch;
    sae_encoder *enc;
    sae_codes *codes;
} run_ctx;

static void run_once(const run_ctx *c)
{
    sae_status s = SAE_OK;
    switch (c->kind) {
    case RUN_SPLICE:
        s = sae_patch_apply(c->patch, c->work, c->n, c->d_in);
        break;
    case RUN_DENSE:
        if ((s = sae_encoder_encode(c->enc, c->n, c->x, c->d_in, c->f, c->d_sae, NULL, 0)) ==
            SAE_OK)
            s = sae_encoder_decode(c->enc, c->n, c->f, c->d_sae, c->x_hat, c->d_in);
        break;
    case RUN_SPARSE:
        if ((s = sae_encoder_encode_sparse(c->enc, c->n, c->x, c->d_in, c->codes)) == SAE_OK)
            s = sae_encoder_decode_sparse(c->enc, c->n, sae_codes_offsets(c->codes),
                                          sae_codes_indices(c->codes), sae_codes_values(c->codes),
                                          c->x_hat, c->d_in);
        break;
    }
    if (s != SAE_OK)
        bench_die("run", s);
}

/* Median seconds of reps calls after a warm-up; *allocs: allocations counted during them. */
static double time_median(const run_ctx *c, int reps, long *allocs)
{
    double *t = bench_xmalloc((size_t)reps * sizeof *t);
    const size_t bytes = (size_t)(c->n * c->d_in) * sizeof(float);
    memcpy(c->work, c->x, bytes);
    run_once(c);
    long before = n_allocs;
    for (int r = 0; r < reps; r++) {
        memcpy(c->work, c->x, bytes);
        double t0 = bench_now();
        run_once(c);
        t[r] = bench_now() - t0;
    }
    if (allocs)
        *allocs = n_allocs - before;
    const double m = bench_median(t, reps);
    free(t);
    return m;
}

/* A dictionary of the workload (arch ReLU with b_enc -2.65, or TopK k). */
static sae_dict *make_dict(int64_t d_in, int64_t d_sae, int32_t arch, int64_t k)
{
    sae_rng rng;
    sae_rng_init(&rng, 1234, 0);
    float *W_enc = bench_xmalloc((size_t)(d_in * d_sae) * sizeof(float));
    float *W_dec = bench_xmalloc((size_t)(d_in * d_sae) * sizeof(float));
    float *b_enc = bench_xmalloc((size_t)d_sae * sizeof(float));
    float *b_dec = calloc((size_t)d_in, sizeof(float));
    for (int64_t i = 0; i < d_in * d_sae; i++) {
        W_enc[i] = sae_rng_normal(&rng) / sqrtf((float)d_in);
        W_dec[i] = sae_rng_normal(&rng) / sqrtf((float)d_sae);
    }
    for (int64_t j = 0; j < d_sae; j++)
        b_enc[j] = arch == SAE_ARCH_STANDARD ? -2.65f : 0.0f;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.b_enc = b_enc, w.W_dec = W_dec, w.b_dec = b_dec;
    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    cfg.arch = arch, cfg.d_in = d_in, cfg.d_sae = d_sae, cfg.k = arch == SAE_ARCH_TOPK ? k : 0;
    sae_dict *d = NULL;
    sae_status s = sae_dict_create(&d, &cfg, &w, NULL);
    if (s != SAE_OK)
        bench_die("sae_dict_create", s);
    free(W_enc), free(W_dec), free(b_enc), free(b_dec);
    return d;
}

/* One (size, architecture) configuration: a JSON object with a result per batch. */
static void bench_config(int64_t d_in, int64_t d_sae, int32_t arch, const int64_t *batches,
                         int n_batches, int threads, double reps_scale, bool first)
{
    const int64_t k = d_sae / 16 < 32 ? d_sae / 16 : 32;
    sae_dict *dict = make_dict(d_in, d_sae, arch, k);
    int64_t max_n = 1;
    for (int b = 0; b < n_batches; b++)
        max_n = batches[b] > max_n ? batches[b] : max_n;
    float *x = bench_xmalloc((size_t)(max_n * d_in) * sizeof(float));
    float *work = bench_xmalloc((size_t)(max_n * d_in) * sizeof(float));
    float *x_hat = bench_xmalloc((size_t)(max_n * d_in) * sizeof(float));
    float *f = bench_xmalloc((size_t)(max_n * d_sae) * sizeof(float));
    sae_rng rng;
    sae_rng_init(&rng, 99, 0);
    for (int64_t i = 0; i < max_n * d_in; i++)
        x[i] = sae_rng_normal(&rng);

    printf("%s\n  {\"d_in\": %lld, \"d_sae\": %lld, \"arch\": \"%s\", \"k\": %lld, "
           "\"results\": [", first ? "" : ",", (long long)d_in, (long long)d_sae,
           sae_arch_name(arch), (long long)(arch == SAE_ARCH_TOPK ? k : 0));
    for (int b = 0; b < n_batches; b++) {
        const int64_t n = batches[b];
        int reps = (int)((n <= 1 ? 200 : n <= 128 ? 20 : 3) * reps_scale + 0.5);
        reps = reps < 1 ? 1 : reps;
        sae_patch_options po = SAE_PATCH_OPTIONS_INIT;
        po.n_threads = threads, po.allocator = &counting;
        sae_patch *splice = NULL, *splice_full = NULL;
        sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
        eo.n_threads = threads, eo.max_rows = n;
        sae_encoder *enc = NULL;
        sae_codes *codes = NULL;
        sae_status s;
        if ((s = sae_patch_create_splice(&splice, dict, 0, &po)) != SAE_OK)
            bench_die("sae_patch_create_splice", s);
        po.max_tokens = n;
        if ((s = sae_patch_create_splice(&splice_full, dict, 0, &po)) != SAE_OK ||
            (s = sae_encoder_create(&enc, dict, &eo)) != SAE_OK ||
            (s = sae_codes_create(&codes, NULL)) != SAE_OK ||
            (s = sae_codes_reserve(codes, n, n * k)) != SAE_OK)
            bench_die("making the patches and the encoder", s);

        run_ctx c = {RUN_SPLICE, n, d_in, d_sae, x, work, f, x_hat, splice, enc, codes};
        long allocs, allocs_full;
        double t_splice = time_median(&c, reps, &allocs);
        c.patch = splice_full;
        double t_full = time_median(&c, reps, &allocs_full);
        c.kind = RUN_DENSE;
        double t_dense = time_median(&c, reps, NULL);
        c.kind = RUN_SPARSE;
        double t_sparse = time_median(&c, reps, NULL);
        double l0 = (double)sae_codes_nnz(codes) / (double)n;
        double best = t_dense < t_sparse ? t_dense : t_sparse;
        printf("%s\n    {\"n_tokens\": %lld, \"reps\": %d, \"l0\": %.1f, \"splice_s\": %.4e, "
               "\"splice_full_s\": %.4e, \"dense_s\": %.4e, \"sparse_s\": %.4e, "
               "\"ratio\": %.3f, \"ratio_full\": %.3f, \"ratio_dense\": %.3f, "
               "\"apply_allocations\": %ld}",
               b ? "," : "", (long long)n, reps, l0, t_splice, t_full, t_dense, t_sparse,
               t_splice / best, t_full / best, t_splice / t_dense, allocs + allocs_full);
        fflush(stdout);
        sae_codes_free(codes);
        sae_encoder_free(enc);
        sae_patch_free(splice);
        sae_patch_free(splice_full);
    }
    printf("\n  ]}");
    sae_dict_free(dict);
    free(x), free(work), free(x_hat), free(f);
}

int main(int argc, char **argv)
{
    int threads = 0;
    double reps_scale = 1.0;
    int64_t batches[MAX_BATCHES] = {1, 128, 4096};
    int n_batches = 3;
    bool small_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads")) {
            threads = (int)bench_parse_long(a, v, 1), i++;
        } else if (!strcmp(a, "--small-only")) {
            small_only = true;
        } else if (!strcmp(a, "--reps-scale")) {
            reps_scale = v ? atof(v) : 0, i++;
            if (!(reps_scale > 0)) {
                fprintf(stderr, "bench_patch: --reps-scale needs a positive number\n");
                return 2;
            }
        } else if (!strcmp(a, "--batches") && v) {
            n_batches = 0;
            char *copy = strdup(v), *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok && n_batches < MAX_BATCHES;
                 tok = strtok_r(NULL, ",", &save))
                batches[n_batches++] = bench_parse_long("--batches", tok, 1);
            free(copy);
            i++;
        } else {
            fprintf(stderr, "usage: bench_patch [--threads T] [--batches 1,128,4096] "
                            "[--reps-scale S] [--small-only]\n");
            return !strcmp(a, "--help") ? 0 : 2;
        }
    }
    printf("{\"libsae_version\": \"%s\", \"blas_kernels\": \"%s\", \"threads\": %d, "
           "\"configs\": [", sae_version_string(), sae_blas_kernels(),
           threads ? threads : sae_default_threads());
    const int64_t sizes[2][2] = {{64, 512}, {768, 16384}};
    const int32_t archs[2] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK};
    bool first = true;
    for (int z = 0; z < (small_only ? 1 : 2); z++)
        for (int a = 0; a < 2; a++, first = false)
            bench_config(sizes[z][0], sizes[z][1], archs[a], batches, n_batches, threads,
                         reps_scale, first);
    printf("\n]}\n");
    return 0;
}
