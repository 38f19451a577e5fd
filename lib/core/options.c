/* options.c: reading versioned option structs (STYLE.md, "Options and parameters"). */
#include <string.h>

#include "../internal.h"

sae_status sae__read_options(void *dst, size_t dst_size, const void *src, const char *what)
{
    if (!src)
        return SAE_OK;
    uint32_t src_size;
    memcpy(&src_size, src, sizeof src_size);
    if (src_size < sizeof(uint32_t))
        return sae__fail(SAE_EINVAL, "%s.struct_size is %u: initialise it with the _INIT macro",
                         what, src_size);
    /* A newer caller may pass a longer struct; its extra fields must be zero ("default"),
     * or the caller asks for something this library cannot do. */
    const unsigned char *bytes = src;
    for (size_t i = dst_size; i < src_size; i++)
        if (bytes[i] != 0)
            return sae__fail(SAE_EINVAL,
                             "%s has non-zero fields past byte %zu that this libsae %s "
                             "does not know", what, dst_size, sae_version_string());
    size_t n = src_size < dst_size ? src_size : dst_size;
    memcpy(dst, src, n);
    memcpy(dst, &(uint32_t){(uint32_t)dst_size}, sizeof(uint32_t));
    return SAE_OK;
}

bool sae__write_options(void *dst, const void *src, size_t src_size)
{
    uint32_t dst_size;
    if (!dst)
        return false;
    memcpy(&dst_size, dst, sizeof dst_size);
    if (dst_size < sizeof(uint32_t))
        return false;
    size_t n = dst_size < src_size ? dst_size : src_size;
    memcpy(dst, src, n);
    memcpy(dst, &(uint32_t){(uint32_t)n}, sizeof(uint32_t));
    return true;
}
