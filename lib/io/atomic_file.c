/* atomic_file.c: crash-safe file replacement, small whole-file reads and path joining. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_internal.h"

/* Room for a path, plus ".tmp.<pid>.<tid>" for the temporary name: unique per thread, so that
 * two threads writing the same path at once cannot write into one temporary file. */
#define ATOMIC_PATH_MAX (PATH_MAX + 32)

/* The directory holding `path` ("." for a bare name, "/" for a file at the root), into buf. */
static void parent_dir(char *buf, size_t size, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, size, ".");
    else if (slash == path)
        snprintf(buf, size, "/");
    else
        snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

/* A rename is durable only once the directory entry is on disk. */
static sae_status sync_parent_dir(const char *path)
{
    char dir[ATOMIC_PATH_MAX];
    parent_dir(dir, sizeof dir, path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return sae__fail(SAE_EIO, "%s: cannot open directory %s to sync it: %s", path, dir,
                         strerror(errno));
    /* EINVAL: this file system cannot sync directories; the rename is done and nothing better
     * can be had there. */
    int rc = fsync(fd);
    int err = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc != 0 && err != EINVAL)
        return sae__fail(SAE_EIO, "%s: cannot sync directory %s: %s", path, dir, strerror(err));
    return SAE_OK;
}

/* Flush, fsync and close f (always closed); SAE_EIO naming `path` on the first failure. */
static sae_status finish_file(FILE *f, const char *path)
{
    const char *step = NULL;
    int err = 0;
    if (fflush(f) != 0)
        step = "flush", err = errno;
    else if (fsync(fileno(f)) != 0)
        step = "sync", err = errno;
    if (fclose(f) != 0 && !step)
        step = "close", err = errno;
    if (step)
        return sae__fail(SAE_EIO, "%s: cannot %s the temporary file: %s", path, step,
                         strerror(err));
    return SAE_OK;
}

sae_status sae__write_file_atomic(const char *path, sae_status (*fill)(FILE *f, void *user),
                                  void *user)
{
    char tmp[ATOMIC_PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)gettid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return sae__fail(SAE_EIO, "%s: path too long", path);
    FILE *f = fopen(tmp, "wbe");
    if (!f)
        return sae__fail(SAE_EIO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    sae_status s = fill(f, user);
    if (s != SAE_OK) {
        fclose(f);
        unlink(tmp);
        return s;
    }
    s = finish_file(f, path);
    if (s == SAE_OK && rename(tmp, path) != 0)
        s = sae__fail(SAE_EIO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (s != SAE_OK) {
        unlink(tmp);
        return s;
    }
    return sync_parent_dir(path);
}

sae_status sae__read_text_file(const char *path, size_t max_bytes, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rbe");
    if (!f)
        return sae__fail(errno == ENOENT ? SAE_ENOTFOUND : SAE_EIO, "%s: cannot open: %s",
                         path, strerror(errno));
    /* Read one byte past the limit, so that a file of exactly max_bytes is told apart from a
     * longer one. */
    size_t limit = max_bytes < SIZE_MAX - 1 ? max_bytes + 1 : SIZE_MAX - 1;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    sae_status s = SAE_OK;
    while (s == SAE_OK) {
        if (len == cap) {
            if (cap == limit) {
                s = sae__fail(SAE_EFORMAT, "%s: larger than %zu bytes", path, max_bytes);
                break;
            }
            size_t next = cap ? cap * 2 : 4096;
            if (next > limit || next < cap)
                next = limit;
            char *grown = realloc(buf, next + 1);
            if (!grown) {
                s = sae__fail(SAE_ENOMEM, "%s: out of memory reading %zu bytes", path, next);
                break;
            }
            buf = grown;
            cap = next;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0 && ferror(f))
            s = sae__fail(SAE_EIO, "%s: cannot read: %s", path, strerror(errno));
        else if (got == 0)
            break;
    }
    fclose(f);
    if (s != SAE_OK) {
        free(buf);
        return s;
    }
    buf[len] = '\0';
    *out = buf;
    return SAE_OK;
}

bool sae__path_join(char *buf, size_t size, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    const char *sep = n == 0 || dir[n - 1] == '/' ? "" : "/";
    int w = snprintf(buf, size, "%s%s%s", dir, sep, name);
    return w >= 0 && (size_t)w < size;
}
