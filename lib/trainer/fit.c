/* fit.c: sae_trainer_fit — the training loop over a source: read a full batch, take a step,
 * report. Nothing here touches the optimiser: a fit is the loop of sae_trainer_step() calls a
 * caller would write, plus timing and the progress callback. */
#include <time.h>

#include "trainer_internal.h"

#define FIT_DEFAULT_BATCH 4096

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Options with defaults filled in and checked; *steps resolved against total_steps. */
static sae_status read_fit_options(const sae_trainer *t, const sae_fit_options *given,
                                   sae_fit_options *o)
{
    const sae_fit_options defaults = SAE_FIT_OPTIONS_INIT;
    *o = defaults;
    sae_status s = sae__read_options(o, sizeof *o, given, "sae_fit_options");
    if (s != SAE_OK)
        return s;
    if (o->reserved != 0 || o->steps < 0 || o->batch_size < 0 || o->report_every < 0)
        return sae__fail(SAE_EINVAL, "sae_fit_options: steps, batch_size and report_every must "
                         "be >= 0 and reserved 0 (got %lld, %lld, %lld)", (long long)o->steps,
                         (long long)o->batch_size, (long long)o->report_every);
    if (o->steps == 0) {
        if (t->cfg.total_steps <= 0)
            return sae__fail(SAE_EINVAL, "sae_fit_options.steps is 0 and the trainer has no "
                             "total_steps: give the number of steps");
        o->steps = t->cfg.total_steps > t->step ? t->cfg.total_steps - t->step : 0;
    }
    if (o->batch_size == 0)
        o->batch_size = FIT_DEFAULT_BATCH;
    if (o->report_every == 0)
        o->report_every = 1;
    return SAE_OK;
}

sae_status sae_trainer_fit(sae_trainer *t, sae_source *src, const sae_fit_options *options,
                           sae_fit_progress *summary, sae_fit_fn fn, void *user)
{
    if (!t || !src)
        return sae__fail(SAE_EINVAL, "trainer and source are required");
    sae_fit_options o;
    sae_status s = read_fit_options(t, options, &o);
    if (s != SAE_OK)
        return s;
    const int64_t d = t->cfg.d_in, B = o.batch_size;
    if (sae_source_d(src) != d)
        return sae__fail(SAE_ESHAPE, "the source has rows of width %lld, the trainer d_in = %lld",
                         (long long)sae_source_d(src), (long long)d);
    if ((uint64_t)B > SIZE_MAX / sizeof(float) / (uint64_t)d)
        return sae__fail(SAE_EINVAL, "batch_size %lld is too large", (long long)B);
    sae_fit_progress p = SAE_FIT_PROGRESS_INIT;
    p.steps_total = o.steps;
    float *x = sae__alloc_array(t->allocator, (size_t)(B * d), sizeof(float));
    if (!x) {
        sae__write_options(summary, &p, sizeof p);
        return SAE_ENOMEM;
    }
    sae_train_metrics m = SAE_TRAIN_METRICS_INIT;
    const double t0 = now_seconds();
    bool reported = true; /* the latest step has been reported (or none was taken) */
    while (p.steps_done < o.steps) {
        int64_t rows = 0;
        if ((s = sae_source_next(src, B, x, d, &rows)) != SAE_OK)
            break;
        if (rows < B) { /* end of a finite source: a partial batch is left out */
            p.source_ended = 1;
            break;
        }
        if ((s = sae_trainer_step(t, B, x, d, &m)) != SAE_OK)
            break;
        p.steps_done++;
        p.tokens += B;
        reported = false;
        if (fn && (p.steps_done % o.report_every == 0 || p.steps_done == o.steps)) {
            p.elapsed_seconds = now_seconds() - t0;
            p.tokens_per_second = p.elapsed_seconds > 0 ? p.tokens / p.elapsed_seconds : 0;
            reported = true;
            if (fn(user, &p, &m) != 0) {
                s = sae__fail(SAE_ECANCELED, "training stopped by the progress callback after "
                              "%lld steps", (long long)p.steps_done);
                break;
            }
        }
    }
    p.elapsed_seconds = now_seconds() - t0;
    p.tokens_per_second = p.elapsed_seconds > 0 ? p.tokens / p.elapsed_seconds : 0;
    /* The last step is always reported, also when the source ran dry (the callback can no
     * longer cancel anything then). After an error the message is left alone instead. */
    if (fn && !reported && s == SAE_OK)
        fn(user, &p, &m);
    sae__free(t->allocator, x);
    sae__write_options(summary, &p, sizeof p);
    return s;
}
