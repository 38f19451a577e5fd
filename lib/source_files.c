/* source_files.c: the producer of sae_source_from_files — shards on disk (safetensors or raw
 * float32), streamed in order one chunk at a time.
 *
 * Memory: one chunk of (chunk.cap, d) floats plus the list of shards, whatever the size of the
 * files. Only the current shard is open. Raw shards are read with pread; safetensors shards are
 * memory-mapped by the reader and converted chunk by chunk with sae_st_to_f32, and the pages
 * already converted are given back to the kernel. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_internal.h"
#include "source_internal.h"

/* One open shard: a raw file descriptor, or a safetensors reader and its chosen tensor. */
typedef struct open_shard {
    const char *path;
    int fd;                        /* raw; -1 otherwise */
    sae_st_reader *reader;         /* safetensors; NULL otherwise */
    const sae_tensor_info *tensor;
    const char *released;          /* safetensors: mapping given back below this address */
    int64_t rows, d;
} open_shard;

typedef struct shard {
    char *path;
    int64_t rows;
} shard;

typedef struct file_rows {
    shard *shards;
    int64_t n_shards;
    int64_t d;
    int64_t raw_d;
    char *tensor_name; /* NULL: the file's only tensor, else "x" */
    sae__chunk chunk;
    int64_t cur;       /* index of the current shard; n_shards past the end */
    int64_t next_row;  /* first row of the current shard not yet read into the chunk */
    bool is_open;
    open_shard f;      /* the current shard while is_open */
} file_rows;

/* ---- one shard ------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_raw(const char *path) { return ends_with(path, ".f32") || ends_with(path, ".bin"); }

/* A missing file is SAE_ENOTFOUND, any other failure to reach it SAE_EIO. */
static sae_status open_error(const char *path, int err)
{
    if (err == ENOENT)
        return sae__fail(SAE_ENOTFOUND, "%s: no such file", path);
    return sae__fail(SAE_EIO, "%s: cannot open: %s", path, strerror(err));
}

static sae_status raw_open(open_shard *f, int64_t raw_d)
{
    if (raw_d < 1)
        return sae__fail(SAE_EINVAL, "%s is a raw float32 file: set sae_source_options.raw_d to "
                         "its row width", f->path);
    f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return open_error(f->path, errno);
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return sae__fail(SAE_EIO, "%s: cannot stat: %s", f->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sae__fail(SAE_EIO, "%s: not a regular file", f->path);
    int64_t row_bytes = raw_d * (int64_t)sizeof(float);
    if (st.st_size % row_bytes != 0)
        return sae__fail(SAE_EFORMAT, "%s: size %lld bytes is not a multiple of 4 * raw_d = %lld "
                         "(rows of %lld float32)", f->path, (long long)st.st_size,
                         (long long)row_bytes, (long long)raw_d);
    f->rows = st.st_size / row_bytes;
    f->d = raw_d;
    posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL); /* a hint: its failure changes nothing */
    return SAE_OK;
}

/* "a, b, c" (truncated with "...") for error messages. */
static void tensor_list(const sae_st_reader *r, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < sae_st_count(r) && used < size; i++) {
        const char *name = sae_st_tensor_at(r, i)->name;
        int k = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", name);
        used += k > 0 ? (size_t)k : 0;
    }
    if (used >= size)
        strcpy(buf + size - 4, "...");
}

/* The activation tensor: `name` if given, else the only tensor, else the one named "x". */
static sae_status pick_tensor(open_shard *f, const char *name)
{
    const sae_st_reader *r = f->reader;
    int64_t n = sae_st_count(r);
    f->tensor = name ? sae_st_find(r, name) : n == 1 ? sae_st_tensor_at(r, 0) : sae_st_find(r, "x");
    if (f->tensor)
        return SAE_OK;
    char list[256];
    tensor_list(r, list, sizeof list);
    if (n == 0)
        return sae__fail(SAE_EFORMAT, "%s holds no tensors", f->path);
    if (name)
        return sae__fail(SAE_ENOTFOUND, "%s has no tensor \"%s\" (it has: %s)", f->path, name,
                         list);
    return sae__fail(SAE_EINVAL, "%s holds %lld tensors (%s) and none is named \"x\": choose "
                     "one with sae_source_options.tensor_name", f->path, (long long)n, list);
}

/* Rows and width of an activation tensor [..., d]: d is the last dimension, the leading ones
 * are flattened into rows = numel / d. */
static sae_status tensor_shape(open_shard *f)
{
    const sae_tensor_info *t = f->tensor;
    int32_t dt = t->dtype;
    if (dt != SAE_DTYPE_F32 && dt != SAE_DTYPE_F16 && dt != SAE_DTYPE_BF16 && dt != SAE_DTYPE_F64)
        return sae__fail(SAE_EFORMAT, "%s: tensor %s has dtype %s; activations must be F32, F16, "
                         "BF16 or F64", f->path, t->name, sae_dtype_name(dt));
    if (t->ndim < 1 || t->shape[t->ndim - 1] < 1) {
        char shape[128];
        sae__format_shape(shape, sizeof shape, t->ndim, t->shape);
        return sae__fail(SAE_EFORMAT, "%s: tensor %s has shape %s; activations are [..., d] "
                         "with d >= 1", f->path, t->name, shape);
    }
    f->d = t->shape[t->ndim - 1];
    f->rows = t->numel / f->d;
    return SAE_OK;
}

static sae_status st_open(open_shard *f, const char *tensor_name)
{
    struct stat st;
    if (stat(f->path, &st) != 0)
        return open_error(f->path, errno); /* sae_st_open would say EIO for a missing file */
    sae_status s = sae_st_open(&f->reader, f->path);
    if (s == SAE_OK)
        s = pick_tensor(f, tensor_name);
    if (s == SAE_OK)
        s = tensor_shape(f);
    if (s == SAE_OK)
        f->released = f->tensor->data;
    return s;
}

static void shard_close(open_shard *f)
{
    if (f->fd >= 0)
        close(f->fd);
    sae_st_close(f->reader);
    *f = (open_shard){.fd = -1};
}

/* Open `path` and learn its rows and width; on failure nothing stays open. */
static sae_status shard_open(open_shard *f, const char *path, const file_rows *fr)
{
    *f = (open_shard){.path = path, .fd = -1};
    sae_status s = is_raw(path) ? raw_open(f, fr->raw_d) : st_open(f, fr->tensor_name);
    if (s != SAE_OK)
        shard_close(f);
    return s;
}

static sae_status raw_read(const open_shard *f, int64_t row, int64_t n, float *out)
{
    char *p = (char *)out;
    size_t want = (size_t)(n * f->d) * sizeof(float);
    off_t at = (off_t)(row * f->d * (int64_t)sizeof(float));
    while (want > 0) {
        ssize_t got = pread(f->fd, p, want, at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return sae__fail(SAE_EIO, "%s: read failed at byte %lld: %s", f->path,
                             (long long)at, strerror(errno));
        if (got == 0)
            return sae__fail(SAE_EIO, "%s: ends at byte %lld, before its %lld rows (truncated "
                             "while streaming?)", f->path, (long long)at, (long long)f->rows);
        p += got, at += got, want -= (size_t)got;
    }
    return SAE_OK;
}

/* Converted pages of the read-only mapping are clean: dropping them loses nothing (touching
 * them again rereads the file) and keeps the resident size at about one chunk instead of
 * letting it grow to the size of the shard. */
static void release_mapping(open_shard *f, const char *upto)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = (uintptr_t)f->released & ~(page - 1), to = (uintptr_t)upto & ~(page - 1);
    if (to > from) {
        madvise((void *)from, to - from, MADV_DONTNEED); /* advice: failure changes nothing */
        f->released = (const char *)to;
    }
}

/* Rows [row, row + n) of the tensor: a 1-D view of n * d elements converted to float32. */
static sae_status st_read(open_shard *f, int64_t row, int64_t n, float *out)
{
    const sae_tensor_info *t = f->tensor;
    int64_t esize = sae_dtype_size(t->dtype);
    sae_tensor_info view = *t;
    memset(view.shape, 0, sizeof view.shape);
    view.ndim = 1;
    view.shape[0] = view.numel = n * f->d;
    view.data = (const char *)t->data + row * f->d * esize;
    view.nbytes = (uint64_t)(view.numel * esize);
    sae_status s = sae_st_to_f32(&view, out, view.numel);
    if (s == SAE_OK)
        release_mapping(f, (const char *)view.data + view.nbytes);
    return s;
}

/* Rows [row, row + n) of the shard as float32 into out: (n, d), contiguous. */
static sae_status shard_read(open_shard *f, int64_t row, int64_t n, float *out)
{
    return f->reader ? st_read(f, row, n, out) : raw_read(f, row, n, out);
}

/* ---- the stream over all shards -------------------------------------------------------------- */

/* Reopen the current shard; it must still be what it was when the source was made. */
static sae_status open_current(file_rows *fr)
{
    const shard *sh = &fr->shards[fr->cur];
    sae_status s = shard_open(&fr->f, sh->path, fr);
    if (s == SAE_OK && (fr->f.rows != sh->rows || fr->f.d != fr->d)) {
        s = sae__fail(SAE_EFORMAT, "%s changed since the source was made: %lld rows of width "
                      "%lld, was %lld of %lld", sh->path, (long long)fr->f.rows,
                      (long long)fr->f.d, (long long)sh->rows, (long long)fr->d);
        shard_close(&fr->f);
    }
    fr->is_open = s == SAE_OK;
    return s;
}

/* The next chunk of the current shard into fr->chunk, or, at its end, move to the next shard
 * (leaving the chunk empty). */
static sae_status refill(file_rows *fr)
{
    sae_status s = fr->is_open ? SAE_OK : open_current(fr);
    if (s != SAE_OK)
        return s;
    int64_t left = fr->f.rows - fr->next_row;
    int64_t n = left < fr->chunk.cap ? left : fr->chunk.cap;
    if (n == 0) {
        shard_close(&fr->f);
        fr->is_open = false;
        fr->cur++;
        fr->next_row = 0;
        return SAE_OK;
    }
    s = shard_read(&fr->f, fr->next_row, n, fr->chunk.rows);
    if (s == SAE_OK) {
        fr->chunk.pos = 0;
        fr->chunk.len = n;
        fr->next_row += n;
    }
    return s;
}

static sae_status files_read(void *impl, int64_t max_rows, float *x, int64_t ldx, int64_t *rows)
{
    file_rows *fr = impl;
    sae_status s = SAE_OK;
    while (s == SAE_OK && fr->chunk.pos == fr->chunk.len && fr->cur < fr->n_shards)
        s = refill(fr);
    *rows = s == SAE_OK ? sae__chunk_take(&fr->chunk, max_rows, x, ldx) : 0;
    return s;
}

static void files_rewind(void *impl, uint64_t epoch)
{
    (void)epoch; /* the order of the files never changes; the shuffle buffer mixes them */
    file_rows *fr = impl;
    if (fr->is_open)
        shard_close(&fr->f);
    fr->is_open = false;
    fr->cur = fr->next_row = 0;
    fr->chunk.pos = fr->chunk.len = 0;
}

static void files_free(void *impl, const sae_allocator *a)
{
    file_rows *fr = impl;
    if (fr->is_open)
        shard_close(&fr->f);
    for (int64_t i = 0; i < fr->n_shards; i++)
        sae__free(a, fr->shards[i].path);
    sae__free(a, fr->shards);
    sae__free(a, fr->tensor_name);
    sae__chunk_free(&fr->chunk, a);
    sae__free(a, fr);
}

static const sae__source_ops files_ops = {files_read, files_rewind, files_free, false};

/* Open every shard once: check it, learn its rows, and hold all to one width (raw_d when given,
 * else the first shard's). */
static sae_status probe_shards(file_rows *fr, int64_t *total)
{
    const char *width_from = "sae_source_options.raw_d";
    fr->d = fr->raw_d;
    *total = 0;
    for (int64_t i = 0; i < fr->n_shards; i++) {
        open_shard f;
        sae_status s = shard_open(&f, fr->shards[i].path, fr);
        if (s != SAE_OK)
            return s;
        if (fr->d == 0)
            fr->d = f.d, width_from = fr->shards[i].path;
        if (f.d != fr->d)
            s = sae__fail(SAE_ESHAPE, "shards differ in width: %s has d = %lld, expected "
                          "d = %lld (from %s)", f.path, (long long)f.d, (long long)fr->d,
                          width_from);
        fr->shards[i].rows = f.rows;
        *total += f.rows;
        shard_close(&f);
        if (s != SAE_OK)
            return s;
    }
    return SAE_OK;
}

/* Copy the paths and the tensor name, probe the shards, allocate the chunk. */
static sae_status files_init(file_rows *fr, const sae_allocator *a, const char *const *paths,
                             int64_t n_paths, const sae_source_options *o, int64_t *total)
{
    fr->raw_d = o->raw_d;
    if (o->tensor_name && !(fr->tensor_name = sae__strdup(a, o->tensor_name)))
        return SAE_ENOMEM;
    fr->shards = sae__alloc_array(a, (size_t)n_paths, sizeof *fr->shards);
    if (!fr->shards)
        return SAE_ENOMEM;
    memset(fr->shards, 0, (size_t)n_paths * sizeof *fr->shards);
    fr->n_shards = n_paths;
    for (int64_t i = 0; i < n_paths; i++)
        if (!(fr->shards[i].path = sae__strdup(a, paths[i])))
            return SAE_ENOMEM;
    sae_status s = probe_shards(fr, total);
    if (s == SAE_OK)
        s = sae__chunk_init(&fr->chunk, a, sae__source_chunk_rows(o, fr->d), fr->d);
    return s;
}

sae_status sae_source_from_files(sae_source **out, const char *const *paths, int64_t n_paths,
                                 const sae_source_options *options)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "sae_source_from_files: out is NULL");
    *out = NULL;
    sae_source_options o;
    sae_status s = sae__source_read_options(&o, options);
    if (s != SAE_OK)
        return s;
    if (!paths || n_paths < 1)
        return sae__fail(SAE_EINVAL, "sae_source_from_files: needs at least one path");
    for (int64_t i = 0; i < n_paths; i++)
        if (!paths[i])
            return sae__fail(SAE_EINVAL, "sae_source_from_files: paths[%lld] is NULL",
                             (long long)i);
    const sae_allocator *a = sae__allocator(o.allocator);
    file_rows *fr = sae__alloc_array(a, 1, sizeof *fr);
    if (!fr)
        return SAE_ENOMEM;
    *fr = (file_rows){.f = {.fd = -1}};
    int64_t total = 0;
    s = files_init(fr, a, paths, n_paths, &o, &total);
    if (s != SAE_OK) {
        files_free(fr, a);
        return s;
    }
    return sae__source_make(out, &o, fr->d, total, &files_ops, fr);
}
