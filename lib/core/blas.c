/* blas.c: the one entry point to BLIS.
 *
 * - Threads per call through rntm_t, never a global setting.
 * - Kernel choice: Debian's BLIS 0.9 falls back to haswell/zen-class kernels on AVX-512 CPUs it
 *   does not recognise, ~1.5x slower than its skx kernels. libsae links BLIS statically, so it can
 *   build the skx context itself (bli_cntx_init_skx) and pass it to every call when the CPU has
 *   AVX-512 F/DQ/BW/VL. Otherwise BLIS's own choice stands. No environment variable involved. */
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <blis.h>

#include "../internal.h"

/* Internal BLIS symbols, present in libblis.a (not exported by libblis.so). */
void bli_cntx_init_skx(cntx_t *cntx);

static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;
static cntx_t skx_context;
static cntx_t *chosen_context; /* NULL: let BLIS choose */
static const char *kernel_name = "unknown";

static bool cpu_has_avx512_skx(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

static void choose_kernels(void)
{
    bli_init();
    arch_t id = bli_arch_query_id();
    kernel_name = bli_arch_string(id);
    if (id != BLIS_ARCH_SKX && id != BLIS_ARCH_KNL && cpu_has_avx512_skx()) {
        bli_cntx_init_skx(&skx_context);
        chosen_context = &skx_context;
        kernel_name = "skx";
    }
}

const char *sae_blas_kernels(void)
{
    pthread_once(&kernels_once, choose_kernels);
    return kernel_name;
}

sae_status sae__sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc, int n_threads)
{
    /* dim_t is 64-bit in Debian's BLIS; check anyway so a narrower build cannot wrap. */
    if (sizeof(dim_t) < sizeof(int64_t) &&
        (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX ||
         ldc > INT_MAX))
        return sae__fail(SAE_EUNSUPPORTED, "matrix of %lld x %lld x %lld exceeds BLIS dim_t",
                         (long long)m, (long long)n, (long long)k);
    if (m == 0 || n == 0)
        return SAE_OK;
    pthread_once(&kernels_once, choose_kernels);
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(sae__threads_for(n_threads, (double)m * (double)n * (double)k), &rntm);
    float a = alpha, b = beta;
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &a,
                 (float *)A, (inc_t)lda, 1, (float *)B, (inc_t)ldb, 1, &b, C, (inc_t)ldc, 1,
                 chosen_context, &rntm);
    return SAE_OK;
}

sae_status sae__ssyrk(bool trans_a, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                      float beta, float *C, int64_t ldc, int n_threads)
{
    if (sizeof(dim_t) < sizeof(int64_t) &&
        (n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldc > INT_MAX))
        return sae__fail(SAE_EUNSUPPORTED, "matrix of %lld x %lld exceeds BLIS dim_t",
                         (long long)n, (long long)k);
    if (n == 0)
        return SAE_OK;
    pthread_once(&kernels_once, choose_kernels);
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(n_threads > 0 ? n_threads : 1, &rntm);
    float a = alpha, b = beta;
    bli_ssyrk_ex(BLIS_LOWER, trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)n, (dim_t)k, &a,
                 (float *)A, (inc_t)lda, 1, &b, C, (inc_t)ldc, 1, chosen_context, &rntm);
    return SAE_OK;
}
