/* progress.c: the one-line progress display (progress.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "progress.h"

#define TTY_INTERVAL 0.1    /* seconds between redraws on a terminal */
#define PLAIN_INTERVAL 60.0 /* longest silence in plain mode */
#define BAR_WIDTH 20

static int terminal_width(int fd)
{
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    int w = cols ? atoi(cols) : 0;
    return w > 0 ? w : 80;
}

void cli_progress_init(cli_progress *p, FILE *out, int64_t total, const char *unit)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = isatty(fileno(out)) == 1;
    p->total = total > 0 ? total : 1;
    p->unit = unit;
    p->last_draw = -1;
    p->width = p->tty ? terminal_width(fileno(out)) : 0;
}

bool cli_progress_due(const cli_progress *p, int64_t done, double elapsed)
{
    if (done >= p->total || p->last_draw < 0)
        return true;
    if (p->tty)
        return elapsed - p->last_draw >= TTY_INTERVAL;
    return done * 10 / p->total > p->last_tenth || elapsed - p->last_draw >= PLAIN_INTERVAL;
}

void cli_format_si(char *buf, size_t size, double v)
{
    static const char suffix[] = " kMGT";
    int i = 0;
    while (fabs(v) >= 999.5 && i < 4)
        v /= 1000, i++;
    if (i == 0)
        snprintf(buf, size, "%.3g", v);
    else
        snprintf(buf, size, "%.3g%c", v, suffix[i]);
}

void cli_format_duration(char *buf, size_t size, double seconds)
{
    if (!(seconds >= 0) || !isfinite(seconds) || seconds > 1e8) {
        snprintf(buf, size, "?");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

void cli_progress_draw(cli_progress *p, int64_t done, double elapsed, double rate,
                       const char *fields)
{
    const double frac = done >= p->total ? 1.0 : (double)done / (double)p->total;
    char rate_s[40] = "", eta_s[32], elapsed_s[32], line[512];
    if (rate > 0) { /* no rate (work not counted in tokens): no field */
        cli_format_si(rate_s, sizeof rate_s - 8, rate);
        strcat(rate_s, " tok/s  ");
    }
    cli_format_duration(eta_s, sizeof eta_s, done > 0 ? elapsed * (1 - frac) / frac : -1);
    cli_format_duration(elapsed_s, sizeof elapsed_s, elapsed);
    if (p->tty) {
        char bar[BAR_WIDTH + 1];
        const int filled = (int)(frac * BAR_WIDTH);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        snprintf(line, sizeof line, "[%s] %3d%%  %lld/%lld %s  %sETA %s  %s", bar,
                 (int)(100 * frac), (long long)done, (long long)p->total, p->unit, rate_s,
                 eta_s, fields);
        /* Cut to the terminal so that the line never wraps (a wrapped line cannot be redrawn
         * with a carriage return). */
        const size_t max = p->width > 1 ? (size_t)p->width - 1 : 1;
        if (strlen(line) > max)
            line[max] = '\0';
        fprintf(p->out, "\r%s\033[K", line);
        p->drawn = true;
    } else {
        fprintf(p->out, "%lld/%lld %s (%d%%)  %selapsed %s  ETA %s  %s\n",
                (long long)done, (long long)p->total, p->unit, (int)(100 * frac), rate_s,
                elapsed_s, eta_s, fields);
        p->last_tenth = done * 10 / p->total;
    }
    fflush(p->out);
    p->last_draw = elapsed;
}

void cli_progress_finish(cli_progress *p)
{
    if (p->tty && p->drawn)
        fputc('\n', p->out);
    p->drawn = false;
    fflush(p->out);
}
