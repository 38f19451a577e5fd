/**
 * @file core.h
 * @brief Status codes, per-thread error messages, version, allocator, threads and the RNG.
 *
 * @defgroup core Core
 * @brief What every other module of libsae builds on.
 *
 * Thread safety: every function here may be called from any thread. The last-error message
 * is per thread. An @ref sae_rng is a plain value owned by its caller.
 * @{
 */
#ifndef SAE_CORE_H
#define SAE_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Marks a function exported from the shared library. */
#if defined(__GNUC__) && defined(SAE_BUILDING_LIBRARY)
#define SAE_API __attribute__((visibility("default")))
#else
#define SAE_API
#endif

/** @brief Major version of the headers. */
#define SAE_VERSION_MAJOR 0
/** @brief Minor version of the headers. */
#define SAE_VERSION_MINOR 1
/** @brief Patch version of the headers. */
#define SAE_VERSION_PATCH 0
/** @brief The header version as one number: major * 10000 + minor * 100 + patch. */
#define SAE_VERSION_NUMBER (SAE_VERSION_MAJOR * 10000 + SAE_VERSION_MINOR * 100 + SAE_VERSION_PATCH)

/**
 * @brief Result of every fallible call: ::SAE_OK or a negative error code.
 *
 * The values are part of the ABI and are never renumbered.
 */
typedef int32_t sae_status;

/** @brief Status codes. Errors are negative; new codes are only appended. */
enum sae_status_code {
    SAE_OK = 0,                /**< Success. */
    SAE_EINVAL = -1,           /**< An argument is invalid (NULL, negative size, bad enum). */
    SAE_ENOMEM = -2,           /**< An allocation failed. */
    SAE_ESHAPE = -3,           /**< Shapes or leading dimensions do not agree. */
    SAE_EIO = -4,              /**< A file could not be opened, read or written. */
    SAE_EFORMAT = -5,          /**< A file is malformed or not in the expected layout. */
    SAE_ENUMERIC = -6,         /**< A value is NaN, infinite or out of its numeric range. */
    SAE_EUNSUPPORTED = -7,     /**< Valid input that this build does not handle. */
    SAE_ECANCELED = -8,        /**< A callback asked to stop. */
    SAE_ERANGE = -9,           /**< An index or id is out of range. */
    SAE_ENOTFOUND = -10        /**< A named item (file, tensor, key) does not exist. */
};

/**
 * @brief Static English text for a status code ("invalid argument", ...).
 * @param[in] status Any value; unknown values give "unknown status".
 * @return A string with static storage duration.
 */
SAE_API const char *sae_status_str(sae_status status);

/**
 * @brief The detailed message of the last error on this thread.
 *
 * Set by every call that returns an error, including failed constructors; it names the
 * object and the problem ("W_dec has shape [64, 32], expected [256, 64]").
 * @return A per-thread string, valid until the next libsae call on this thread; "" if none.
 */
SAE_API const char *sae_last_error(void);

/** @brief Forget this thread's last error message. */
SAE_API void sae_clear_error(void);

/** @return Version of the library at run time, as ::SAE_VERSION_NUMBER. */
SAE_API uint32_t sae_version_number(void);

/** @return Version of the library at run time as text, e.g. "0.1.0". */
SAE_API const char *sae_version_string(void);

/**
 * @brief A memory allocator that handles use for everything they own.
 *
 * @c alloc returns memory aligned to @c alignment (a power of two) or NULL;
 * @c free accepts NULL. Both receive @c user unchanged.
 */
typedef struct sae_allocator {
    void *(*alloc)(size_t size, size_t alignment, void *user); /**< Allocate. */
    void (*free)(void *ptr, void *user);                         /**< Release. */
    void *user;                                                  /**< Passed through. */
} sae_allocator;

/** @return The default allocator: aligned_alloc/free with 64-byte alignment. */
SAE_API const sae_allocator *sae_default_allocator(void);

/**
 * @brief Number of threads a call uses when its options say 0 ("default").
 *
 * @return The number of CPUs this process may run on (sched_getaffinity), at least 1.
 */
SAE_API int32_t sae_default_threads(void);

/**
 * @brief Name of the BLAS kernel set libsae uses on this CPU ("skx", "zen3", "haswell", ...).
 *
 * libsae picks the fastest BLIS kernels the CPU supports without any environment variable:
 * Debian's BLIS selects its haswell-class kernels on AVX-512 CPUs, so libsae hands BLIS the
 * skx kernels itself when AVX-512 (F, DQ, BW, VL) is present.
 * @return A string with static storage duration.
 */
SAE_API const char *sae_blas_kernels(void);

/**
 * @brief A seedable counter-based random number generator (Philox-4x32-10).
 *
 * The n-th output depends only on (seed, stream, n), so streams can be split across threads and
 * replayed exactly. A plain value: copy it to fork it, no handle to free.
 */
typedef struct sae_rng {
    uint64_t seed;    /**< Key of the generator. */
    uint64_t stream;  /**< Independent sub-stream id (high half of the counter). */
    uint64_t counter; /**< Number of 4-word blocks drawn so far. */
    uint32_t buffer[4]; /**< Unused words of the current block. */
    uint32_t buffered;  /**< How many words of @c buffer are left (0..4). */
    uint32_t reserved;  /**< Zero. */
} sae_rng;

/**
 * @brief Initialise a generator.
 * @param[out] rng The generator.
 * @param[in] seed Any value.
 * @param[in] stream Sub-stream id; different ids give independent sequences.
 */
SAE_API void sae_rng_init(sae_rng *rng, uint64_t seed, uint64_t stream);

/** @return Next uniformly distributed 32-bit word. @param[in,out] rng The generator. */
SAE_API uint32_t sae_rng_u32(sae_rng *rng);

/** @return Uniform float in [0, 1) with 24 random bits. @param[in,out] rng The generator. */
SAE_API float sae_rng_uniform(sae_rng *rng);

/** @return Standard normal float (Box-Muller on two uniforms). @param[in,out] rng The generator. */
SAE_API float sae_rng_normal(sae_rng *rng);

/**
 * @brief Uniform integer in [0, n) without modulo bias.
 * @param[in,out] rng The generator.
 * @param[in] n Upper bound, n >= 1.
 * @return A value in [0, n) (0 when n <= 1).
 */
SAE_API uint64_t sae_rng_below(sae_rng *rng, uint64_t n);

#ifdef __cplusplus
}
#endif

/** @} */
#endif /* SAE_CORE_H */
