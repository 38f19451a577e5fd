/* config_json.c: checked access to JSON config values (see config_json.h). */
#include <math.h>
#include <stdlib.h>

#include "config_json.h"

sae_status sae__json_load(const char *path, size_t max_bytes, cJSON **out)
{
    *out = NULL;
    char *text = NULL;
    sae_status s = sae__read_text_file(path, max_bytes, &text);
    if (s != SAE_OK)
        return s;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sae__fail(SAE_EFORMAT, "%s: not a JSON object", path);
    }
    *out = root;
    return SAE_OK;
}

static const cJSON *item(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

sae_status sae__json_number(const cJSON *obj, const char *key, const char *origin, double *out)
{
    const cJSON *v = item(obj, key);
    if (!v)
        return SAE_OK;
    if (!cJSON_IsNumber(v))
        return sae__fail(SAE_EFORMAT, "%s: %s is not a number", origin, key);
    if (!isfinite(v->valuedouble))
        return sae__fail(SAE_ENUMERIC, "%s: %s is not finite", origin, key);
    *out = v->valuedouble;
    return SAE_OK;
}

sae_status sae__json_int(const cJSON *obj, const char *key, bool required, int64_t lo, int64_t hi,
                         const char *origin, int64_t *out)
{
    const cJSON *v = item(obj, key);
    if (!v)
        return required ? sae__fail(SAE_EFORMAT, "%s: %s is missing", origin, key) : SAE_OK;
    double d = 0;
    sae_status s = sae__json_number(obj, key, origin, &d);
    if (s != SAE_OK)
        return s;
    if (d != floor(d) || d < (double)lo || d > (double)hi)
        return sae__fail(SAE_ENUMERIC, "%s: %s = %g is not a whole number in [%lld, %lld]",
                         origin, key, d, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return SAE_OK;
}

sae_status sae__json_bool(const cJSON *obj, const char *key, const char *origin, bool *out)
{
    const cJSON *v = item(obj, key);
    if (!v)
        return SAE_OK;
    if (!cJSON_IsBool(v))
        return sae__fail(SAE_EFORMAT, "%s: %s is not true or false", origin, key);
    *out = cJSON_IsTrue(v);
    return SAE_OK;
}

sae_status sae__json_string(const cJSON *obj, const char *key, const char *origin,
                            const char **out)
{
    const cJSON *v = item(obj, key);
    *out = NULL;
    if (!v)
        return SAE_OK;
    if (!cJSON_IsString(v))
        return sae__fail(SAE_EFORMAT, "%s: %s is not a string", origin, key);
    *out = v->valuestring;
    return SAE_OK;
}
