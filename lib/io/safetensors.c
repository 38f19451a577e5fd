/*
 * safetensors.c: a strictly validating safetensors reader (memory-mapped) and a crash-safe
 * writer (FORMATS.md, "safetensors").
 *
 * The reader checks the whole header before handing out a tensor, so that every later use of
 * sae_tensor_info can trust numel, nbytes and data without checks of its own.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_internal.h"

/* Tensor bytes are handed out in place, so the host must share the file's byte order. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

/* Headers past this size are rejected (as the reference implementation does): a header is a
 * few KB for real files, and the limit bounds what a hostile file can make cJSON allocate. */
#define ST_MAX_HEADER 100000000ull

/* cJSON keeps numbers as doubles: integers above 2^53 would be silently rounded. */
#define ST_MAX_EXACT_INT 9007199254740992.0

/* Indexed by sae_dtype. */
static const char *const dtype_names[] = {"BOOL", "U8",  "I8",  "I16", "U16",     "I32",
                                          "U32",  "I64", "U64", "F16", "BF16",    "F32",
                                          "F64",  "F8_E4M3", "F8_E5M2"};
static const int32_t dtype_sizes[] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1};
#define ST_N_DTYPES ((int32_t)(sizeof dtype_sizes / sizeof dtype_sizes[0]))

int32_t sae_dtype_size(int32_t dtype)
{
    return dtype >= 0 && dtype < ST_N_DTYPES ? dtype_sizes[dtype] : 0;
}

const char *sae_dtype_name(int32_t dtype)
{
    return dtype >= 0 && dtype < ST_N_DTYPES ? dtype_names[dtype] : NULL;
}

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Length (1..4) of the valid UTF-8 sequence at s[0..n), n >= 1, or 0 when it is invalid:
 * overlong forms, surrogates and code points past U+10FFFF are invalid (RFC 3629). */
static size_t utf8_sequence_length(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : lo;
        hi = c == 0xED ? 0x9F : hi;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : lo;
        hi = c == 0xF4 ? 0x8F : hi;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

static bool utf8_valid(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0, len; i < n; i += len)
        if (!(len = utf8_sequence_length((const unsigned char *)s + i, n - i)))
            return false;
    return true;
}

/* ---- reader ------------------------------------------------------------------------------ */

typedef struct st_meta {
    const char *key;
    const char *value;
} st_meta;

struct sae_st_reader {
    sae_tensor_info *tensors; /* sorted by name */
    int64_t count;
    st_meta *meta;            /* sorted by key */
    int64_t n_meta;
    char *strings;            /* every name, key and value, back to back */
    void *map;                /* the file mapping; NULL when the bytes are borrowed */
    size_t map_size;
};

/* Where one tensor's bytes lie in the data buffer, for the tiling check. */
typedef struct st_span {
    int64_t begin, end;
    const char *name;
} st_span;

/* What the parse of one header needs. */
typedef struct st_ctx {
    const char *origin;         /* the file, in messages */
    const unsigned char *data;  /* the data buffer: the bytes after the header */
    int64_t data_size;
    char *next_string;          /* free room in the reader's string block */
} st_ctx;

static const char *copy_string(st_ctx *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = memcpy(c->next_string, s, n);
    c->next_string += n;
    return d;
}

/* The 8-byte header length N; 8 + N must lie within the file. */
static sae_status check_header_length(const char *origin, const unsigned char *bytes,
                                      size_t size, uint64_t *n)
{
    *n = 0;
    if (size < 8)
        return sae__fail(SAE_EFORMAT, "%s: file has %zu bytes, too short for the 8-byte header "
                         "length", origin, size);
    for (int i = 7; i >= 0; i--)
        *n = *n << 8 | bytes[i];
    if (*n > ST_MAX_HEADER)
        return sae__fail(SAE_EFORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                         origin, (unsigned long long)*n, ST_MAX_HEADER);
    if (*n > size - 8)
        return sae__fail(SAE_EFORMAT, "%s: header length %llu runs past the end of the file "
                         "(%zu bytes)", origin, (unsigned long long)*n, size);
    return SAE_OK;
}

/* What cJSON lets through but JSON forbids and this reader cannot represent: invalid UTF-8,
 * raw control characters, and \u0000 (cJSON would silently cut a name at it, so that
 * "a\u0000b" and "a" became the same tensor). h: the header, n bytes. */
static sae_status check_header_text(const char *origin, const unsigned char *h, size_t n)
{
    bool in_string = false;
    for (size_t i = 0; i < n;) {
        unsigned char c = h[i];
        if (c >= 0x80) {
            size_t len = utf8_sequence_length(h + i, n - i);
            if (!len)
                return sae__fail(SAE_EFORMAT, "%s: header is not valid UTF-8 (byte %zu of the "
                                 "header)", origin, i);
            i += len;
            continue;
        }
        if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r')))
            return sae__fail(SAE_EFORMAT, "%s: header has control character 0x%02x at byte %zu",
                             origin, c, i);
        if (in_string && c == '\\') {
            if (n - i >= 6 && memcmp(h + i + 1, "u0000", 5) == 0)
                return sae__fail(SAE_EFORMAT, "%s: header has a \\u0000 (NUL) in a string at "
                                 "byte %zu", origin, i);
            /* Skip the escaped character so that \" does not end the string. */
            i += (i + 1 < n && h[i + 1] < 0x80) ? 2 : 1;
            continue;
        }
        if (c == '"')
            in_string = !in_string;
        i++;
    }
    return SAE_OK;
}

/* Parse exactly the n header bytes as one JSON object; only whitespace may follow it. */
static sae_status parse_header_json(const char *origin, const unsigned char *h, size_t n,
                                    cJSON **root)
{
    const char *text = (const char *)h, *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, n, &end, false);
    if (!*root)
        return sae__fail(SAE_EFORMAT, "%s: header is not valid JSON (error near byte %zu of the "
                         "header)", origin, end ? (size_t)(end - text) : (size_t)0);
    for (const char *p = end; p < text + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return sae__fail(SAE_EFORMAT, "%s: header is not valid JSON: unexpected bytes after "
                             "the object (byte %zu of the header)", origin, (size_t)(p - text));
    if (!cJSON_IsObject(*root))
        return sae__fail(SAE_EFORMAT, "%s: header is not a JSON object", origin);
    return SAE_OK;
}

static bool is_metadata(const cJSON *entry) { return strcmp(entry->string, "__metadata__") == 0; }

/* __metadata__ must be an object of strings. Adds the room its keys and values need. */
static sae_status check_metadata(const char *origin, const cJSON *meta, size_t *string_bytes)
{
    if (!cJSON_IsObject(meta))
        return sae__fail(SAE_EFORMAT, "%s: __metadata__ is not an object", origin);
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return sae__fail(SAE_EFORMAT, "%s: __metadata__ value of \"%s\" is not a string",
                             origin, kv->string);
        *string_bytes += strlen(kv->string) + strlen(kv->valuestring) + 2;
    }
    return SAE_OK;
}

/* Count the tensors, find and check __metadata__, and size the string block. */
static sae_status survey_header(const char *origin, const cJSON *root, const cJSON **meta,
                                int64_t *n_tensors, size_t *string_bytes)
{
    *meta = NULL;
    *n_tensors = 0;
    *string_bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!is_metadata(e)) {
            (*n_tensors)++;
            *string_bytes += strlen(e->string) + 1;
            continue;
        }
        if (*meta)
            return sae__fail(SAE_EFORMAT, "%s: __metadata__ appears twice", origin);
        sae_status s = check_metadata(origin, e, string_bytes);
        if (s != SAE_OK)
            return s;
        *meta = e;
    }
    return SAE_OK;
}

/* A JSON integer in [0, 2^53]: floats, negatives and values too large to be exact are not. */
static bool json_count(const cJSON *j, int64_t *out)
{
    if (!cJSON_IsNumber(j))
        return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_EXACT_INT) || (double)(int64_t)d != d)
        return false;
    *out = (int64_t)d;
    return true;
}

/* The fields of a tensor entry; each must appear exactly once, and no other. */
static sae_status entry_fields(const st_ctx *c, const char *name, const cJSON *entry,
                               const cJSON **dtype, const cJSON **shape, const cJSON **offsets)
{
    if (!cJSON_IsObject(entry))
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: entry is not an object", c->origin, name);
    *dtype = *shape = *offsets = NULL;
    for (const cJSON *f = entry->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0          ? dtype
                             : strcmp(f->string, "shape") == 0        ? shape
                             : strcmp(f->string, "data_offsets") == 0 ? offsets
                                                                      : NULL;
        if (!slot)
            return sae__fail(SAE_EFORMAT, "%s: tensor %s: unknown field \"%s\"", c->origin, name,
                             f->string);
        if (*slot)
            return sae__fail(SAE_EFORMAT, "%s: tensor %s: field %s appears twice", c->origin,
                             name, f->string);
        *slot = f;
    }
    const char *missing = !*dtype ? "dtype" : !*shape ? "shape" : !*offsets ? "data_offsets" : NULL;
    if (missing)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: field %s is missing", c->origin, name,
                         missing);
    return SAE_OK;
}

static sae_status parse_dtype(const st_ctx *c, sae_tensor_info *t, const cJSON *j)
{
    if (!cJSON_IsString(j))
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: dtype is not a string", c->origin, t->name);
    for (int32_t d = 0; d < ST_N_DTYPES; d++)
        if (strcmp(j->valuestring, dtype_names[d]) == 0) {
            t->dtype = d;
            return SAE_OK;
        }
    return sae__fail(SAE_EFORMAT, "%s: tensor %s: unknown dtype \"%s\"", c->origin, t->name,
                     j->valuestring);
}

/* Shape, numel and nbytes (dtype already set); products must fit in int64. */
static sae_status parse_shape(const st_ctx *c, sae_tensor_info *t, const cJSON *j)
{
    if (!cJSON_IsArray(j))
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: shape is not an array", c->origin, t->name);
    int n = cJSON_GetArraySize(j);
    if (n > SAE_MAX_DIMS)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: shape has %d dimensions, at most %d are "
                         "supported", c->origin, t->name, n, SAE_MAX_DIMS);
    t->ndim = n;
    int i = 0;
    for (const cJSON *d = j->child; d; d = d->next, i++) {
        if (json_count(d, &t->shape[i]))
            continue;
        char value[32] = "not a number";
        if (cJSON_IsNumber(d))
            snprintf(value, sizeof value, "%.17g", d->valuedouble);
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: shape[%d] is not a non-negative integer "
                         "(%s)", c->origin, t->name, i, value);
    }
    char dims[SAE_MAX_DIMS * 21 + 8];
    sae__format_shape(dims, sizeof dims, t->ndim, t->shape);
    t->numel = 1;
    for (i = 0; i < n; i++)
        if (__builtin_mul_overflow(t->numel, t->shape[i], &t->numel))
            return sae__fail(SAE_EFORMAT, "%s: tensor %s: shape %s overflows (more than 2^63 "
                             "elements)", c->origin, t->name, dims);
    int64_t nbytes;
    if (__builtin_mul_overflow(t->numel, (int64_t)sae_dtype_size(t->dtype), &nbytes))
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: %s %s overflows (more than 2^63 bytes)",
                         c->origin, t->name, dims, dtype_names[t->dtype]);
    t->nbytes = (uint64_t)nbytes;
    return SAE_OK;
}

/* data_offsets [begin, end): numel * sizeof(dtype) bytes inside the data buffer. Sets data. */
static sae_status parse_offsets(const st_ctx *c, sae_tensor_info *t, const cJSON *j,
                                st_span *span)
{
    int64_t b, e;
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2 || !json_count(j->child, &b) ||
        !json_count(j->child->next, &e))
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: data_offsets is not two non-negative "
                         "integers", c->origin, t->name);
    if (b > e)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: data_offsets [%lld, %lld] end before they "
                         "begin", c->origin, t->name, (long long)b, (long long)e);
    if ((uint64_t)(e - b) != t->nbytes) {
        char dims[SAE_MAX_DIMS * 21 + 8];
        sae__format_shape(dims, sizeof dims, t->ndim, t->shape);
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: data_offsets [%lld, %lld] but %s %s needs "
                         "%llu bytes", c->origin, t->name, (long long)b, (long long)e, dims,
                         dtype_names[t->dtype], (unsigned long long)t->nbytes);
    }
    if (e > c->data_size)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s: data_offsets [%lld, %lld] run past the end "
                         "of the data buffer (%lld bytes; is the file truncated?)", c->origin,
                         t->name, (long long)b, (long long)e, (long long)c->data_size);
    t->data = c->data + b;
    *span = (st_span){b, e, t->name};
    return SAE_OK;
}

static sae_status parse_tensor(st_ctx *c, const cJSON *entry, sae_tensor_info *t, st_span *span)
{
    memset(t, 0, sizeof *t);
    t->name = copy_string(c, entry->string);
    const cJSON *dtype, *shape, *offsets;
    sae_status s = entry_fields(c, t->name, entry, &dtype, &shape, &offsets);
    if (s == SAE_OK)
        s = parse_dtype(c, t, dtype);
    if (s == SAE_OK)
        s = parse_shape(c, t, shape);
    if (s == SAE_OK)
        s = parse_offsets(c, t, offsets, span);
    return s;
}

static int compare_tensor_names(const void *a, const void *b)
{
    return strcmp(((const sae_tensor_info *)a)->name, ((const sae_tensor_info *)b)->name);
}

/* Sort by name (the order of sae_st_tensor_at) and reject duplicates, which cJSON keeps. */
static sae_status sort_tensors(const char *origin, sae_tensor_info *t, int64_t n)
{
    if (n > 1)
        qsort(t, (size_t)n, sizeof *t, compare_tensor_names);
    for (int64_t i = 1; i < n; i++)
        if (strcmp(t[i - 1].name, t[i].name) == 0)
            return sae__fail(SAE_EFORMAT, "%s: tensor name %s appears twice", origin, t[i].name);
    return SAE_OK;
}

static int compare_spans(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The regions must tile the data buffer [0, data_size) exactly: no overlap, no gap, nothing
 * left over at the end. */
static sae_status check_tiling(const char *origin, st_span *spans, int64_t n, int64_t data_size)
{
    if (n > 1)
        qsort(spans, (size_t)n, sizeof *spans, compare_spans);
    int64_t covered = 0;
    for (int64_t i = 0; i < n; i++) {
        const st_span *s = &spans[i];
        if (s->begin < covered)
            return sae__fail(SAE_EFORMAT, "%s: tensors %s [%lld, %lld] and %s [%lld, %lld] "
                             "overlap", origin, spans[i - 1].name, (long long)spans[i - 1].begin,
                             (long long)spans[i - 1].end, s->name, (long long)s->begin,
                             (long long)s->end);
        if (s->begin > covered)
            return sae__fail(SAE_EFORMAT, "%s: gap in the data buffer: bytes [%lld, %lld) belong "
                             "to no tensor (before %s)", origin, (long long)covered,
                             (long long)s->begin, s->name);
        covered = s->end;
    }
    if (covered != data_size)
        return sae__fail(SAE_EFORMAT, "%s: the tensors cover %lld bytes but the data buffer has "
                         "%lld (bytes [%lld, %lld) belong to no tensor)", origin,
                         (long long)covered, (long long)data_size, (long long)covered,
                         (long long)data_size);
    return SAE_OK;
}

static int compare_meta_keys(const void *a, const void *b)
{
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

/* Copy the (already checked) metadata, sorted by key; reject duplicate keys. */
static sae_status copy_metadata(st_ctx *c, const cJSON *meta, st_meta *out, int64_t n)
{
    int64_t i = 0;
    for (const cJSON *kv = meta->child; kv; kv = kv->next, i++) {
        out[i].key = copy_string(c, kv->string);
        out[i].value = copy_string(c, kv->valuestring);
    }
    if (n > 1)
        qsort(out, (size_t)n, sizeof *out, compare_meta_keys);
    for (i = 1; i < n; i++)
        if (strcmp(out[i - 1].key, out[i].key) == 0)
            return sae__fail(SAE_EFORMAT, "%s: __metadata__ key \"%s\" appears twice", c->origin,
                             out[i].key);
    return SAE_OK;
}

void sae_st_close(sae_st_reader *reader)
{
    if (!reader)
        return;
    if (reader->map)
        munmap(reader->map, reader->map_size);
    sae__free(NULL, reader->tensors);
    sae__free(NULL, reader->meta);
    sae__free(NULL, reader->strings);
    sae__free(NULL, reader);
}

/* An empty reader with room for n_tensors, n_meta and string_bytes. */
static sae_status reader_alloc(sae_st_reader **out, int64_t n_tensors, int64_t n_meta,
                               size_t string_bytes)
{
    sae_st_reader *r = sae__alloc_array(NULL, 1, sizeof *r);
    if (!r)
        return SAE_ENOMEM;
    memset(r, 0, sizeof *r);
    /* + 1: an empty file still gets real (non-zero-sized) blocks. */
    r->tensors = sae__alloc_array(NULL, (size_t)n_tensors + 1, sizeof *r->tensors);
    r->meta = sae__alloc_array(NULL, (size_t)n_meta + 1, sizeof *r->meta);
    r->strings = sae__alloc_array(NULL, string_bytes + 1, 1);
    if (!r->tensors || !r->meta || !r->strings) {
        sae_st_close(r);
        return SAE_ENOMEM;
    }
    r->count = n_tensors;
    r->n_meta = n_meta;
    *out = r;
    return SAE_OK;
}

/* Build the reader from a parsed header. data: the data buffer, data_size bytes. */
static sae_status reader_from_header(sae_st_reader **out, const cJSON *root,
                                     const unsigned char *data, int64_t data_size,
                                     const char *origin)
{
    const cJSON *meta;
    int64_t n_tensors;
    size_t string_bytes;
    sae_status s = survey_header(origin, root, &meta, &n_tensors, &string_bytes);
    if (s != SAE_OK)
        return s;
    sae_st_reader *r;
    s = reader_alloc(&r, n_tensors, meta ? cJSON_GetArraySize(meta) : 0, string_bytes);
    if (s != SAE_OK)
        return s;
    st_span *spans = sae__alloc_array(NULL, (size_t)n_tensors + 1, sizeof *spans);
    if (!spans) {
        sae_st_close(r);
        return SAE_ENOMEM;
    }
    st_ctx c = {origin, data, data_size, r->strings};
    int64_t i = 0;
    for (const cJSON *e = root->child; e && s == SAE_OK; e = e->next)
        if (!is_metadata(e)) {
            s = parse_tensor(&c, e, &r->tensors[i], &spans[i]);
            i++;
        }
    if (s == SAE_OK)
        s = sort_tensors(origin, r->tensors, n_tensors);
    if (s == SAE_OK)
        s = check_tiling(origin, spans, n_tensors, data_size);
    if (s == SAE_OK && meta)
        s = copy_metadata(&c, meta, r->meta, r->n_meta);
    sae__free(NULL, spans);
    if (s != SAE_OK) {
        sae_st_close(r);
        return s;
    }
    *out = r;
    return SAE_OK;
}

/* Validate the bytes of a whole file and build the reader; `origin` names it in messages. */
static sae_status open_bytes(sae_st_reader **out, const unsigned char *bytes, size_t size,
                             const char *origin)
{
    uint64_t n;
    sae_status s = check_header_length(origin, bytes, size, &n);
    if (s != SAE_OK)
        return s;
    const unsigned char *header = bytes + 8;
    s = check_header_text(origin, header, (size_t)n);
    if (s != SAE_OK)
        return s;
    cJSON *root;
    s = parse_header_json(origin, header, (size_t)n, &root);
    if (s == SAE_OK)
        s = reader_from_header(out, root, header + n, (int64_t)(size - 8 - n), origin);
    cJSON_Delete(root);
    return s;
}

sae_status sae_st_open_memory(sae_st_reader **out, const void *data, size_t size)
{
    if (!out || (!data && size > 0))
        return sae__fail(SAE_EINVAL, "sae_st_open_memory: out and data must not be NULL");
    *out = NULL;
    return open_bytes(out, data, size, "<memory>");
}

sae_status sae_st_open(sae_st_reader **out, const char *path)
{
    if (!out || !path)
        return sae__fail(SAE_EINVAL, "sae_st_open: out and path must not be NULL");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sae__fail(SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return sae__fail(SAE_EIO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return sae__fail(SAE_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return open_bytes(out, NULL, size, path); /* the length check reports it */
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return sae__fail(SAE_EIO, "%s: cannot map %zu bytes: %s", path, size, strerror(err));
    sae_status s = open_bytes(out, map, size, path);
    if (s != SAE_OK) {
        munmap(map, size);
        return s;
    }
    (*out)->map = map;
    (*out)->map_size = size;
    return SAE_OK;
}

int64_t sae_st_count(const sae_st_reader *reader) { return reader ? reader->count : 0; }

const sae_tensor_info *sae_st_tensor_at(const sae_st_reader *reader, int64_t index)
{
    if (!reader || index < 0 || index >= reader->count)
        return NULL;
    return &reader->tensors[index];
}

static int compare_name_to_tensor(const void *name, const void *t)
{
    return strcmp(name, ((const sae_tensor_info *)t)->name);
}

const sae_tensor_info *sae_st_find(const sae_st_reader *reader, const char *name)
{
    if (!reader || !name || reader->count == 0)
        return NULL;
    return bsearch(name, reader->tensors, (size_t)reader->count, sizeof *reader->tensors,
                   compare_name_to_tensor);
}

static int compare_key_to_meta(const void *key, const void *m)
{
    return strcmp(key, ((const st_meta *)m)->key);
}

const char *sae_st_metadata(const sae_st_reader *reader, const char *key)
{
    if (!reader || !key || reader->n_meta == 0)
        return NULL;
    const st_meta *m = bsearch(key, reader->meta, (size_t)reader->n_meta, sizeof *reader->meta,
                               compare_key_to_meta);
    return m ? m->value : NULL;
}

sae__tensor_set sae__st_tensor_set(const sae_st_reader *reader, const char *origin)
{
    sae__tensor_set set = {reader ? reader->tensors : NULL, sae_st_count(reader), origin};
    return set;
}

/* ---- conversion to float32 ----------------------------------------------------------------- */

static float bits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE 754 binary16 -> binary32, exact for every value (subnormals, infinities, NaN payloads). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_to_float(sign | 0x7F800000u | mant << 13);
    return bits_to_float(sign | (exp + 112) << 23 | mant << 13); /* rebias 15 -> 127 */
}

/* out: (n) floats from n elements of `size` bytes at src, each converted by dtype. */
static void convert_to_f32(int32_t dtype, const unsigned char *src, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        if (dtype == SAE_DTYPE_F16) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = half_to_float(h);
        } else if (dtype == SAE_DTYPE_BF16) { /* bfloat16 is the high half of a float32 */
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = bits_to_float((uint32_t)h << 16);
        } else {
            double d;
            memcpy(&d, src + 8 * i, 8);
            out[i] = (float)d; /* rounds to nearest; beyond FLT_MAX becomes infinity */
        }
    }
}

sae_status sae_st_to_f32(const sae_tensor_info *tensor, float *out, int64_t capacity)
{
    if (!tensor || (!out && tensor->numel > 0))
        return sae__fail(SAE_EINVAL, "sae_st_to_f32: tensor and out must not be NULL");
    int32_t dt = tensor->dtype;
    if (dt != SAE_DTYPE_F32 && dt != SAE_DTYPE_F16 && dt != SAE_DTYPE_BF16 && dt != SAE_DTYPE_F64) {
        const char *name = sae_dtype_name(dt);
        if (dt == SAE_DTYPE_F8_E4M3 || dt == SAE_DTYPE_F8_E5M2)
            return sae__fail(SAE_EFORMAT, "dtype %s cannot be converted to float32 (F32, F16, "
                             "BF16 and F64 can)", name);
        if (name)
            return sae__fail(SAE_EFORMAT, "dtype %s is not a floating type", name);
        return sae__fail(SAE_EFORMAT, "dtype %d is unknown", (int)dt);
    }
    if (capacity < tensor->numel)
        return sae__fail(SAE_ESHAPE, "output holds %lld floats but the tensor has %lld elements",
                         (long long)capacity, (long long)tensor->numel);
    if (tensor->numel == 0)
        return SAE_OK;
    if (dt == SAE_DTYPE_F32)
        memcpy(out, tensor->data, (size_t)tensor->numel * sizeof(float));
    else
        convert_to_f32(dt, tensor->data, tensor->numel, out);
    return SAE_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct st_item {
    char *name;
    int32_t dtype;
    int32_t ndim;
    int64_t shape[SAE_MAX_DIMS];
    uint64_t nbytes;
    const void *data; /* borrowed; NULL for a streamed tensor */
    bool streamed;    /* bytes written by the fill callback of sae__st_writer_write_streamed */
} st_item;

typedef struct st_kv {
    char *key;
    char *value;
} st_kv;

struct sae_st_writer {
    st_item *items; /* sorted by name: the order of the header and of the data */
    int64_t count, cap;
    st_kv *meta;    /* sorted by key */
    int64_t n_meta, meta_cap;
};

sae_status sae_st_writer_create(sae_st_writer **out)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "sae_st_writer_create: out must not be NULL");
    *out = sae__alloc_array(NULL, 1, sizeof **out);
    if (!*out)
        return SAE_ENOMEM;
    memset(*out, 0, sizeof **out);
    return SAE_OK;
}

void sae_st_writer_free(sae_st_writer *writer)
{
    if (!writer)
        return;
    for (int64_t i = 0; i < writer->count; i++)
        sae__free(NULL, writer->items[i].name);
    for (int64_t i = 0; i < writer->n_meta; i++) {
        sae__free(NULL, writer->meta[i].key);
        sae__free(NULL, writer->meta[i].value);
    }
    sae__free(NULL, writer->items);
    sae__free(NULL, writer->meta);
    sae__free(NULL, writer);
}

/* A block for `cap` elements of `size` bytes holding the first `count` of `old`, which is
 * freed; NULL (and `old` kept) when out of memory. */
static void *regrow(void *old, int64_t count, int64_t cap, size_t size)
{
    void *grown = sae__alloc_array(NULL, (size_t)cap, size);
    if (!grown)
        return NULL;
    if (count)
        memcpy(grown, old, (size_t)count * size);
    sae__free(NULL, old);
    return grown;
}

static int64_t next_cap(int64_t cap) { return cap ? 2 * cap : 8; }

/* Index of the first item whose name is >= name; *found tells whether it is equal. */
static int64_t find_item(const sae_st_writer *w, const char *name, bool *found)
{
    int64_t lo = 0, hi = w->count;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (strcmp(w->items[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < w->count && strcmp(w->items[lo].name, name) == 0;
    return lo;
}

static int64_t find_key(const sae_st_writer *w, const char *key, bool *found)
{
    int64_t lo = 0, hi = w->n_meta;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (strcmp(w->meta[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < w->n_meta && strcmp(w->meta[lo].key, key) == 0;
    return lo;
}

/* Check a tensor for the writer and fill `item` (name not set). shape: (ndim). A streamed
 * tensor has no data yet. */
static sae_status check_item(const char *name, int32_t dtype, int32_t ndim, const int64_t *shape,
                             const void *data, bool streamed, st_item *item)
{
    if (!name || !utf8_valid(name) || strcmp(name, "__metadata__") == 0)
        return sae__fail(SAE_EINVAL, "safetensors writer: tensor name must be valid UTF-8 and "
                         "not __metadata__");
    if (!sae_dtype_name(dtype))
        return sae__fail(SAE_EINVAL, "safetensors writer: tensor %s: unknown dtype %d", name,
                         (int)dtype);
    if (ndim < 0 || ndim > SAE_MAX_DIMS || (ndim > 0 && !shape))
        return sae__fail(SAE_EINVAL, "safetensors writer: tensor %s: ndim %d (0..%d, with a "
                         "shape)", name, (int)ndim, SAE_MAX_DIMS);
    memset(item, 0, sizeof *item);
    int64_t numel = 1, nbytes;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(numel, shape[i], &numel))
            return sae__fail(SAE_EINVAL, "safetensors writer: tensor %s: shape[%d] = %lld is "
                             "negative or overflows", name, (int)i, (long long)shape[i]);
        item->shape[i] = shape[i];
    }
    if (__builtin_mul_overflow(numel, (int64_t)sae_dtype_size(dtype), &nbytes))
        return sae__fail(SAE_EINVAL, "safetensors writer: tensor %s: more than 2^63 bytes", name);
    if (nbytes > 0 && !data && !streamed)
        return sae__fail(SAE_EINVAL, "safetensors writer: tensor %s: data is NULL", name);
    item->dtype = dtype;
    item->ndim = ndim;
    item->nbytes = (uint64_t)nbytes;
    item->data = streamed ? NULL : data;
    item->streamed = streamed;
    return SAE_OK;
}

static sae_status add_item(sae_st_writer *writer, const char *name, int32_t dtype, int32_t ndim,
                           const int64_t *shape, const void *data, bool streamed)
{
    if (!writer)
        return sae__fail(SAE_EINVAL, "sae_st_writer_add: writer must not be NULL");
    st_item item;
    sae_status s = check_item(name, dtype, ndim, shape, data, streamed, &item);
    if (s != SAE_OK)
        return s;
    bool found;
    int64_t at = find_item(writer, name, &found);
    if (found)
        return sae__fail(SAE_EINVAL, "safetensors writer: tensor name %s is already taken", name);
    if (writer->count == writer->cap) {
        st_item *grown = regrow(writer->items, writer->count, next_cap(writer->cap), sizeof item);
        if (!grown)
            return SAE_ENOMEM;
        writer->items = grown;
        writer->cap = next_cap(writer->cap);
    }
    if (!(item.name = sae__strdup(NULL, name)))
        return SAE_ENOMEM;
    memmove(&writer->items[at + 1], &writer->items[at],
            (size_t)(writer->count - at) * sizeof item);
    writer->items[at] = item;
    writer->count++;
    return SAE_OK;
}

sae_status sae_st_writer_add(sae_st_writer *writer, const char *name, int32_t dtype,
                             int32_t ndim, const int64_t *shape, const void *data)
{
    return add_item(writer, name, dtype, ndim, shape, data, false);
}

sae_status sae__st_writer_add_streamed(sae_st_writer *writer, const char *name, int32_t dtype,
                                       int32_t ndim, const int64_t *shape)
{
    return add_item(writer, name, dtype, ndim, shape, NULL, true);
}

int64_t sae__st_writer_index(const sae_st_writer *writer, const char *name)
{
    bool found;
    int64_t at = find_item(writer, name, &found);
    return found ? at : -1;
}

sae_status sae_st_writer_set_metadata(sae_st_writer *writer, const char *key, const char *value)
{
    if (!writer || !key || !value || !utf8_valid(key) || !utf8_valid(value))
        return sae__fail(SAE_EINVAL, "sae_st_writer_set_metadata: writer, key and value must be "
                         "given, key and value valid UTF-8");
    char *v = sae__strdup(NULL, value);
    if (!v)
        return SAE_ENOMEM;
    bool found;
    int64_t at = find_key(writer, key, &found);
    if (found) { /* set: a later value replaces an earlier one */
        sae__free(NULL, writer->meta[at].value);
        writer->meta[at].value = v;
        return SAE_OK;
    }
    if (writer->n_meta == writer->meta_cap) {
        st_kv *grown = regrow(writer->meta, writer->n_meta, next_cap(writer->meta_cap),
                              sizeof *grown);
        if (!grown) {
            sae__free(NULL, v);
            return SAE_ENOMEM;
        }
        writer->meta = grown;
        writer->meta_cap = next_cap(writer->meta_cap);
    }
    char *k = sae__strdup(NULL, key);
    if (!k) {
        sae__free(NULL, v);
        return SAE_ENOMEM;
    }
    memmove(&writer->meta[at + 1], &writer->meta[at],
            (size_t)(writer->n_meta - at) * sizeof *writer->meta);
    writer->meta[at] = (st_kv){k, v};
    writer->n_meta++;
    return SAE_OK;
}

/* A growing text buffer whose first allocation failure sticks, so that building the header
 * needs one check at the end. */
typedef struct st_text {
    char *p;
    size_t len, cap;
    bool failed;
} st_text;

static void text_put(st_text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n > t->cap) {
        size_t next = t->cap ? t->cap : 256;
        while (next < t->len + n)
            next *= 2;
        char *grown = sae__alloc_array(NULL, next, 1);
        if (!grown) {
            t->failed = true;
            return;
        }
        if (t->len)
            memcpy(grown, t->p, t->len);
        sae__free(NULL, t->p);
        t->p = grown;
        t->cap = next;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static void text_puts(st_text *t, const char *s) { text_put(t, s, strlen(s)); }

static void text_int(st_text *t, long long v)
{
    char buf[24];
    text_put(t, buf, (size_t)snprintf(buf, sizeof buf, "%lld", v));
}

/* s as a JSON string: quotes, backslashes and control characters escaped; UTF-8 kept. */
static void text_json_string(st_text *t, const char *s)
{
    text_puts(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            text_put(t, esc, 2);
        } else if (*p < 0x20) {
            text_put(t, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p));
        } else {
            text_put(t, (const char *)p, 1);
        }
    }
    text_puts(t, "\"");
}

static void text_metadata(st_text *t, const sae_st_writer *w)
{
    text_puts(t, "\"__metadata__\":{");
    for (int64_t i = 0; i < w->n_meta; i++) {
        if (i)
            text_puts(t, ",");
        text_json_string(t, w->meta[i].key);
        text_puts(t, ":");
        text_json_string(t, w->meta[i].value);
    }
    text_puts(t, "}");
}

static void text_tensor(st_text *t, const st_item *it, uint64_t begin)
{
    text_json_string(t, it->name);
    text_puts(t, ":{\"dtype\":\"");
    text_puts(t, dtype_names[it->dtype]);
    text_puts(t, "\",\"shape\":[");
    for (int32_t d = 0; d < it->ndim; d++) {
        if (d)
            text_puts(t, ",");
        text_int(t, it->shape[d]);
    }
    text_puts(t, "],\"data_offsets\":[");
    text_int(t, (long long)begin);
    text_puts(t, ",");
    text_int(t, (long long)(begin + it->nbytes));
    text_puts(t, "]}");
}

/* The JSON header: __metadata__ first, then the tensors by name with contiguous offsets,
 * space-padded so that 8 + length is a multiple of 8 (the data then starts 8-aligned). */
static sae_status build_header(const sae_st_writer *w, st_text *t)
{
    text_puts(t, "{");
    if (w->n_meta)
        text_metadata(t, w);
    int64_t offset = 0;
    for (int64_t i = 0; i < w->count; i++) {
        if (i || w->n_meta)
            text_puts(t, ",");
        text_tensor(t, &w->items[i], (uint64_t)offset);
        if (__builtin_add_overflow(offset, (int64_t)w->items[i].nbytes, &offset))
            return sae__fail(SAE_EINVAL, "safetensors writer: the tensors hold more than 2^63 "
                             "bytes");
    }
    text_puts(t, "}");
    while (!t->failed && (8 + t->len) % 8)
        text_puts(t, " ");
    if (t->failed)
        return SAE_ENOMEM;
    if (t->len > ST_MAX_HEADER)
        return sae__fail(SAE_EINVAL, "safetensors writer: header of %zu bytes exceeds the limit "
                         "of %llu bytes readers accept", t->len, ST_MAX_HEADER);
    return SAE_OK;
}

typedef struct st_write_job {
    const sae_st_writer *writer;
    const st_text *header;
    const char *path;
    sae__st_fill_fn fill; /* streamed tensors; NULL when there are none */
    void *user;
} st_write_job;

static sae_status write_bytes(FILE *f, const void *p, size_t n, const char *path)
{
    if (n && fwrite(p, 1, n, f) != n)
        return sae__fail(SAE_EIO, "%s: cannot write: %s", path, strerror(errno));
    return SAE_OK;
}

static sae_status seek_to(FILE *f, int64_t offset, const char *path)
{
    if (fseeko(f, (off_t)offset, SEEK_SET) != 0)
        return sae__fail(SAE_EIO, "%s: cannot seek to byte %lld: %s", path, (long long)offset,
                         strerror(errno));
    return SAE_OK;
}

/* The streamed tensors: the fill callback writes them at data_start[i] (the file offset of
 * item i), then the file must end where the last tensor does (a short write would leave a
 * file that readers reject). */
static sae_status write_streamed(FILE *f, const st_write_job *job)
{
    const sae_st_writer *w = job->writer;
    int64_t *start = sae__alloc_array(NULL, (size_t)(w->count ? w->count : 1), sizeof *start);
    if (!start)
        return SAE_ENOMEM;
    int64_t end = 8 + (int64_t)job->header->len;
    for (int64_t i = 0; i < w->count; i++) {
        start[i] = end;
        end += (int64_t)w->items[i].nbytes;
    }
    sae_status s = job->fill(f, start, job->user);
    sae__free(NULL, start);
    if (s == SAE_OK && (fflush(f) != 0 || fseeko(f, 0, SEEK_END) != 0))
        s = sae__fail(SAE_EIO, "%s: cannot write: %s", job->path, strerror(errno));
    if (s == SAE_OK && ftello(f) != (off_t)end)
        s = sae__fail(SAE_EIO, "%s: the streamed tensors end at byte %lld, expected %lld",
                      job->path, (long long)ftello(f), (long long)end);
    return s;
}

/* The file: 8-byte little-endian header length, the header, the tensors' bytes in order
 * (streamed tensors: skipped over here, written by the fill callback). */
static sae_status write_contents(FILE *f, void *user)
{
    const st_write_job *job = user;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)job->header->len >> (8 * i));
    sae_status s = write_bytes(f, len, sizeof len, job->path);
    if (s == SAE_OK)
        s = write_bytes(f, job->header->p, job->header->len, job->path);
    int64_t at = 8 + (int64_t)job->header->len;
    for (int64_t i = 0; s == SAE_OK && i < job->writer->count; i++) {
        const st_item *it = &job->writer->items[i];
        if (it->streamed)
            s = seek_to(f, at + (int64_t)it->nbytes, job->path);
        else
            s = write_bytes(f, it->data, (size_t)it->nbytes, job->path);
        at += (int64_t)it->nbytes;
    }
    if (s == SAE_OK && job->fill)
        s = write_streamed(f, job);
    return s;
}

static sae_status write_file(const sae_st_writer *writer, const char *path, sae__st_fill_fn fill,
                             void *user)
{
    if (!writer || !path)
        return sae__fail(SAE_EINVAL, "sae_st_writer_write: writer and path must not be NULL");
    for (int64_t i = 0; !fill && i < writer->count; i++)
        if (writer->items[i].streamed)
            return sae__fail(SAE_EINVAL, "safetensors writer: tensor %s is streamed: it needs a "
                             "fill callback", writer->items[i].name);
    st_text header = {0};
    sae_status s = build_header(writer, &header);
    if (s == SAE_OK) {
        st_write_job job = {writer, &header, path, fill, user};
        s = sae__write_file_atomic(path, write_contents, &job);
    }
    sae__free(NULL, header.p);
    return s;
}

sae_status sae_st_writer_write(const sae_st_writer *writer, const char *path)
{
    return write_file(writer, path, NULL, NULL);
}

sae_status sae__st_writer_write_streamed(const sae_st_writer *writer, const char *path,
                                         sae__st_fill_fn fill, void *user)
{
    if (!fill)
        return sae__fail(SAE_EINVAL, "sae__st_writer_write_streamed: fill is NULL");
    return write_file(writer, path, fill, user);
}
