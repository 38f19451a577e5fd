/*
 * config_json.h: reading the small JSON configs of SAE files (cfg.json, config.json) with cJSON,
 * with every value checked: integers must be finite whole numbers in range, booleans booleans.
 * Messages name the file and the key.
 */
#ifndef SAE_CONFIG_JSON_H
#define SAE_CONFIG_JSON_H

#include <cjson/cJSON.h>

#include "io_internal.h"

/* The size limit of a configuration file for sae__json_load. */
#define SAE__MAX_CONFIG_BYTES ((size_t)16 << 20)

/* Parse `path` (at most max_bytes) into *out (free with cJSON_Delete). SAE_ENOTFOUND when
 * missing, SAE_EFORMAT when not a JSON object. */
sae_status sae__json_load(const char *path, size_t max_bytes, cJSON **out);

/* Integer value of obj[key] into *out. Missing: SAE_EFORMAT if `required`, else *out keeps
 * its value and SAE_OK. Present but not a finite whole number in [lo, hi]: SAE_ENUMERIC for
 * non-finite or out-of-range numbers, SAE_EFORMAT for other types. null counts as missing. */
sae_status sae__json_int(const cJSON *obj, const char *key, bool required, int64_t lo, int64_t hi,
                         const char *origin, int64_t *out);

/* Boolean obj[key] (missing/null: *out unchanged). */
sae_status sae__json_bool(const cJSON *obj, const char *key, const char *origin, bool *out);

/* Finite number obj[key] (missing/null: *out unchanged). */
sae_status sae__json_number(const cJSON *obj, const char *key, const char *origin, double *out);

/* String obj[key], or NULL when missing/null; a non-string is SAE_EFORMAT. Borrowed. */
sae_status sae__json_string(const cJSON *obj, const char *key, const char *origin,
                            const char **out);

#endif
