/* load.c: sae_dict_load / sae_dict_save — format detection and dispatch to the format layers. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

#include "../dict_internal.h"
#include "io_internal.h"

static const char *const format_names[] = {"auto", "saelens", "sparsify", "dictionary_learning",
                                           "openai", "sae_icm"};

const char *sae_format_name(int32_t format)
{
    return format >= 0 && format <= SAE_FORMAT_SAE_ICM ? format_names[format] : "unknown";
}

static bool exists_in(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    return sae__path_join(path, sizeof path, dir, name) && stat(path, &st) == 0 &&
           S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* The directory holding `file`, into buf. */
static void parent_dir(const char *file, char *buf, size_t size)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", file);
    snprintf(buf, size, "%s", dirname(tmp));
}

/* The only *.pt file of a directory (openai and sae-icm folders hold one), into buf. */
static bool single_pt_file(const char *dir, char *buf, size_t size)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    int found = 0;
    struct dirent *ent;
    while ((ent = readdir(d)))
        if (ends_with(ent->d_name, ".pt") && found++ == 0)
            sae__path_join(buf, size, dir, ent->d_name);
    closedir(d);
    return found == 1;
}

/* Format of `path` and the path the format layer wants (directory, or .pt file). */
static sae_status detect(const char *path, int32_t *format, char *target, size_t size)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sae__fail(errno == ENOENT ? SAE_ENOTFOUND : SAE_EIO, "%s: %s", path,
                         strerror(errno));
    snprintf(target, size, "%s", path);
    if (S_ISDIR(st.st_mode)) {
        if (exists_in(path, "sae_weights.safetensors"))
            return *format = SAE_FORMAT_SAELENS, SAE_OK;
        if (exists_in(path, "sae.safetensors"))
            return *format = SAE_FORMAT_SPARSIFY, SAE_OK;
        if (exists_in(path, "ae.pt"))
            return *format = SAE_FORMAT_DICTIONARY_LEARNING, SAE_OK;
        if (single_pt_file(path, target, size))
            return sae__detect_torch_format(target, format);
        return sae__fail(SAE_EFORMAT, "%s: no SAE weights here (looked for sae_weights.safetensors, "
                                      "sae.safetensors, ae.pt or a single .pt file)", path);
    }
    char dir[4096];
    parent_dir(path, dir, sizeof dir);
    const char *base = path + strlen(dir) + (strcmp(dir, "/") ? 1 : 0);
    if (ends_with(path, ".safetensors")) {
        snprintf(target, size, "%s", dir);
        if (!strcmp(base, "sae_weights.safetensors"))
            return *format = SAE_FORMAT_SAELENS, SAE_OK;
        if (!strcmp(base, "sae.safetensors"))
            return *format = SAE_FORMAT_SPARSIFY, SAE_OK;
        return sae__fail(SAE_EFORMAT, "%s: a weights file must be sae_weights.safetensors "
                                      "(SAELens) or sae.safetensors (sparsify) beside its "
                                      "cfg.json", path);
    }
    if (ends_with(path, ".pt")) {
        if (exists_in(dir, "config.json"))
            return *format = SAE_FORMAT_DICTIONARY_LEARNING, SAE_OK;
        return sae__detect_torch_format(path, format);
    }
    return sae__fail(SAE_EFORMAT, "%s: not a directory, .safetensors or .pt file", path);
}

sae_status sae_detect_format(const char *path, int32_t *format)
{
    char target[4096];
    if (!path || !format)
        return sae__fail(SAE_EINVAL, "path and format are required");
    return detect(path, format, target, sizeof target);
}

sae_status sae_dict_load(sae_dict **out, const char *path, const sae_load_options *options)
{
    if (!out || !path)
        return sae__fail(SAE_EINVAL, "out and path are required");
    *out = NULL;
    sae_load_options o = SAE_LOAD_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, options, "sae_load_options");
    if (s != SAE_OK)
        return s;
    if (o.k < 0 || o.format < SAE_FORMAT_AUTO || o.format > SAE_FORMAT_SAE_ICM)
        return sae__fail(SAE_EINVAL, "load options: negative k or unknown format %d", o.format);
    char target[4096];
    int32_t format = SAE_FORMAT_AUTO;
    if ((s = detect(path, &format, target, sizeof target)))
        return s;
    if (o.format != SAE_FORMAT_AUTO) {
        /* An explicit format takes the path as given (a directory, or the .pt file). */
        bool torch = o.format == SAE_FORMAT_OPENAI || o.format == SAE_FORMAT_SAE_ICM;
        if (!torch || ends_with(path, ".pt"))
            snprintf(target, sizeof target, "%s", path);
        format = o.format;
    }
    switch (format) {
    case SAE_FORMAT_SAELENS: return sae__load_saelens(out, target, &o);
    case SAE_FORMAT_SPARSIFY: return sae__load_sparsify(out, target, &o);
    case SAE_FORMAT_DICTIONARY_LEARNING: return sae__load_dictionary_learning(out, target, &o);
    default: return sae__load_torch_state_dict(out, target, format, &o);
    }
}

sae_status sae_dict_save(const sae_dict *dict, const char *dir, int32_t format)
{
    if (!dict || !dir)
        return sae__fail(SAE_EINVAL, "dict and dir are required");
    switch (format) {
    case SAE_FORMAT_SAELENS: return sae__save_saelens(dict, dir);
    case SAE_FORMAT_SPARSIFY: return sae__save_sparsify(dict, dir);
    default:
        return sae__fail(SAE_EUNSUPPORTED, "saving as %s is not supported (saelens or sparsify)",
                         sae_format_name(format));
    }
}
