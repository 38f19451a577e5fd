/* progress.h: the progress display of long commands (`sae train`, `sae demo`).
 *
 * On a terminal, one line redrawn in place at most ten times a second:
 *   [#########...........]  45%  4500/10000 steps  1.2M tok/s  ETA 0:07  loss 0.41  L0 32.0
 * Otherwise (a log file, a pipe) a plain line at every tenth of the run and at least every
 * minute, so logs stay short and readable. Everything goes to the stream given (stderr in the
 * commands), leaving stdout to the results. */
#ifndef SAE_CLI_PROGRESS_H
#define SAE_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cli_progress {
    FILE *out;
    bool tty;          /* redraw in place */
    int64_t total;     /* units of work in the run (steps) */
    const char *unit;  /* "steps" */
    double last_draw;  /* elapsed seconds at the last line drawn, -1 before the first */
    int64_t last_tenth; /* plain mode: last tenth of the run reported */
    int width;         /* terminal columns */
    bool drawn;        /* a line is on screen that finish must end */
} cli_progress;

/* Start a display of `total` units named `unit` on `out`; tty: whether out is a terminal. */
void cli_progress_init(cli_progress *p, FILE *out, int64_t total, const char *unit);

/* Whether a line is due for `done` units after `elapsed` seconds (the last unit always is).
 * Callers may gather statistics between due lines and show their mean. */
bool cli_progress_due(const cli_progress *p, int64_t done, double elapsed);

/* Draw the line for `done` units, `rate` tokens per second (0: not shown), and the caller's
 * `fields` ("loss 0.41  L0 32.0  FVU 0.12"). */
void cli_progress_draw(cli_progress *p, int64_t done, double elapsed, double rate,
                       const char *fields);

/* End the display (terminal: move past the redrawn line). */
void cli_progress_finish(cli_progress *p);

/* "1.23M" style: v with a k/M/G suffix and 3 significant digits, into buf. */
void cli_format_si(char *buf, size_t size, double v);

/* "1:02:03" or "2:03" into buf; "?" for a negative or non-finite time. */
void cli_format_duration(char *buf, size_t size, double seconds);

#endif
