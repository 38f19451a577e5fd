/* util.c: what the commands of the `sae` tool share: error lines, argument scanning, JSON,
 * memory and time. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"

/* ---- errors ------------------------------------------------------------------------------ */

/* Print `msg` on stderr with newlines and tabs turned into spaces, so an error stays one line. */
static void put_one_line(const char *msg)
{
    for (const char *p = msg; *p; p++)
        fputc(*p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p, stderr);
}

int cli_fail(const char *file, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fputs("sae: ", stderr);
    if (file) {
        put_one_line(file);
        fputs(": ", stderr);
    }
    put_one_line(msg);
    fputc('\n', stderr);
    return CLI_EXIT_FAILURE;
}

int cli_fail_status(const char *file, sae_status status)
{
    const char *msg = sae_last_error();
    if (!msg || !*msg)
        msg = sae_status_str(status);
    /* Library messages usually start with the file they are about (which may be a file inside
     * the directory the user named); do not name it twice. */
    if (file && strncmp(msg, file, strlen(file)) == 0)
        file = NULL;
    return cli_fail(file, "%s", msg);
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The synopsis (the text before the first blank line), not the whole help. */
    const char *end = strstr(usage, "\n\n");
    int len = end ? (int)(end - usage) + 1 : (int)strlen(usage);
    fprintf(stderr, "sae: %s\n%.*s", msg, len, usage);
    return CLI_EXIT_USAGE;
}

/* ---- loading ----------------------------------------------------------------------------- */

int cli_load_dict(const char *path, int64_t k, sae_dict **out, int32_t *format)
{
    *out = NULL;
    int32_t fmt = SAE_FORMAT_AUTO;
    sae_status s = sae_detect_format(path, &fmt);
    if (s != SAE_OK)
        return cli_fail_status(path, s);
    if (format)
        *format = fmt;
    sae_load_options lo = SAE_LOAD_OPTIONS_INIT;
    lo.format = fmt;
    lo.k = k;
    s = sae_dict_load(out, path, &lo);
    if (s == SAE_OK)
        return 0;
    if (fmt == SAE_FORMAT_SAE_ICM && k == 0)
        return cli_fail(path, "sae-icm files do not store k (the run's top_k): give it with --k K");
    return cli_fail_status(path, s);
}

/* ---- arguments --------------------------------------------------------------------------- */

void cli_args_init(cli_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
}

const char *cli_args_next(cli_args *a, bool *is_option)
{
    a->inline_value = NULL;
    while (a->i < a->argc) {
        const char *arg = a->argv[a->i++];
        if (!a->options_done && strcmp(arg, "--") == 0) {
            a->options_done = true;
            continue;
        }
        *is_option = !a->options_done && arg[0] == '-' && arg[1] != '\0';
        if (*is_option) {
            const char *eq = strchr(arg, '=');
            if (eq)
                a->inline_value = eq + 1;
        }
        return arg;
    }
    return NULL;
}

bool cli_opt_is(const cli_args *a, const char *arg, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return false;
    return arg[n] == '\0' || (arg[n] == '=' && a->inline_value == arg + n + 1);
}

const char *cli_opt_value(cli_args *a)
{
    if (a->inline_value) {
        a->value = a->inline_value;
        a->inline_value = NULL;
        return a->value;
    }
    if (a->i >= a->argc)
        return NULL;
    a->value = a->argv[a->i++];
    return a->value;
}

bool cli_parse_i64(const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (!text || !*text)
        return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return false;
    *out = (int64_t)v;
    return true;
}

bool cli_parse_f64(const char *text, double *out)
{
    if (!text || !*text)
        return false;
    errno = 0;
    char *end = NULL;
    double v = strtod(text, &end);
    if (errno || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* ---- output ------------------------------------------------------------------------------ */

void cli_json_string(const char *s)
{
    if (!s) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
    }
    putchar('"');
}

void cli_format_shape(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld",
                                 (long long)shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* ---- memory and time --------------------------------------------------------------------- */

void *cli_alloc_array(int64_t count, size_t size)
{
    if (count < 0 || (uint64_t)count > SIZE_MAX / size)
        return NULL;
    return malloc(count ? (size_t)count * size : 1);
}

double cli_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_print_bar(const char *label, int64_t count, int64_t max)
{
    const int width = 40;
    int len = max > 0 ? (int)((count * width + max - 1) / max) : 0;
    printf("  %-14s %7lld  ", label, (long long)count);
    for (int i = 0; i < len; i++)
        putchar('#');
    putchar('\n');
}

int cli_print_json(cJSON *value)
{
    char *text = cJSON_Print(value);
    cJSON_Delete(value);
    if (!text)
        return cli_fail(NULL, "out of memory");
    puts(text);
    cJSON_free(text);
    return 0;
}
