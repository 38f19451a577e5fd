/* loss_recovered.c: sae_dict_loss_recovered — next-token cross-entropy and KL of a host with a
 * dictionary's reconstruction spliced in at one hook point, against the clean model and zero /
 * mean ablation of the hook point (formulas in capture.h; MATH.md, "Evaluation").
 *
 * Passes: first one forward per batch (no logits) to sum the clean activations into the mean
 * mu; then per batch the clean forward, whose logits and log-partition per row are kept, and
 * one forward per intervention, each scored against the clean logits as it comes. Memory is
 * two batches of logits whatever the number of sequences. */
#include <math.h>
#include <string.h>

#include "capture_internal.h"

/* What the hook does in the pass in progress. */
typedef enum run_kind { RUN_SUM, RUN_CLEAN, RUN_SPLICE, RUN_ZERO, RUN_MEAN } run_kind;

#define N_SCORED 3 /* the interventions scored against the clean run: splice, zero, mean */
static const char *const run_names[] = {"mean", "clean", "spliced", "zero-ablated",
                                        "mean-ablated"};

typedef struct loss_job {
    sae_host host;          /* checked */
    int32_t hook_id;
    int64_t d, seq_len, batch;
    bool skip_bos;
    sae_patch *splice;
    run_kind run;
    int64_t cur_seqs;       /* sequences of the pass in progress */
    bool reached;
    double *sum;            /* (d) sum of the clean activations over the evaluated rows */
    float *mu;              /* (d) their mean */
    float *clean;           /* (batch seq_len, vocab) logits of the clean run */
    double *clean_lse;      /* (batch seq_len) logsumexp of each clean row */
    float *logits;          /* (batch seq_len, vocab) logits of an intervention */
    double ce[1 + N_SCORED];/* sums of the cross-entropy: clean, then the interventions */
    double kl[N_SCORED];    /* sums of KL(clean || intervention) */
} loss_job;

/* ---- the hook ---------------------------------------------------------------------------- */

/* The hook point's rows that the interventions touch: every row, or all but position 0. */
static sae_status intervene(loss_job *j, float *x, int64_t ld)
{
    const int64_t t0 = j->skip_bos ? 1 : 0, T = j->seq_len;
    for (int64_t s = 0; s < j->cur_seqs; s++) {
        float *xs = x + (s * T + t0) * ld;
        if (j->run == RUN_SPLICE) {
            sae_status st = sae_patch_apply(j->splice, xs, T - t0, ld);
            if (st != SAE_OK)
                return st;
            continue;
        }
        for (int64_t t = 0; t < T - t0; t++) {
            if (j->run == RUN_ZERO)
                memset(xs + t * ld, 0, (size_t)j->d * sizeof(float));
            else if (j->run == RUN_MEAN)
                memcpy(xs + t * ld, j->mu, (size_t)j->d * sizeof(float));
            else
                for (int64_t i = 0; i < j->d; i++)
                    j->sum[i] += xs[t * ld + i];
        }
    }
    return SAE_OK;
}

static sae_status hook(void *user, int32_t hook_id, float *x, int64_t n_tokens, int64_t ld)
{
    loss_job *j = user;
    if (hook_id != j->hook_id)
        return SAE_OK;
    sae_status s = sae__capture_check_call(&j->host, hook_id, n_tokens, ld, j->cur_seqs,
                                           j->seq_len, &j->reached);
    if (s != SAE_OK || j->run == RUN_CLEAN)
        return s;
    return intervene(j, x, ld);
}

static sae_status forward(loss_job *j, run_kind run, const int32_t *tokens, float *logits)
{
    j->run = run;
    j->reached = false;
    sae_status s = sae_host_forward(&j->host, tokens, j->cur_seqs, j->seq_len, logits, hook, j);
    if (s == SAE_OK && !j->reached)
        s = sae__capture_missed(&j->host, j->hook_id);
    return s;
}

/* ---- scoring ----------------------------------------------------------------------------- */

static sae_status not_finite(run_kind run, int64_t s, int64_t t)
{
    return sae__fail(SAE_ENUMERIC, "the logits of the %s run are not finite (sequence %lld of "
                     "the batch, position %lld)", run_names[run], (long long)s, (long long)t);
}

/* The clean run of a batch: keep each row's logsumexp, add its cross-entropy. */
static sae_status score_clean(loss_job *j, const int32_t *tokens)
{
    const int64_t V = j->host.vocab_size, T = j->seq_len;
    for (int64_t r = 0; r < j->cur_seqs * T; r++) {
        const double lse = sae__row_logsumexp(j->clean + r * V, V);
        if (!isfinite(lse))
            return not_finite(RUN_CLEAN, r / T, r % T);
        j->clean_lse[r] = lse;
        if (r % T < T - 1)
            j->ce[0] += lse - j->clean[r * V + tokens[r + 1]];
    }
    return SAE_OK;
}

/* An intervention of a batch against the clean run, for each position with a next token:
 * CE = lse_q - q[y]; KL(p || q) = sum_v p_v ((z_v - lse_z) - (q_v - lse_q)), p = softmax(z). */
static sae_status score_run(loss_job *j, run_kind run, const int32_t *tokens)
{
    const int64_t V = j->host.vocab_size, T = j->seq_len;
    const int k = run - RUN_SPLICE;
    for (int64_t r = 0; r < j->cur_seqs * T; r++) {
        if (r % T == T - 1)
            continue;
        const float *z = j->clean + r * V, *q = j->logits + r * V;
        const double lse_z = j->clean_lse[r], lse_q = sae__row_logsumexp(q, V);
        if (!isfinite(lse_q))
            return not_finite(run, r / T, r % T);
        double kl = 0.0;
        for (int64_t v = 0; v < V; v++) {
            const double log_p = z[v] - lse_z;
            kl += exp(log_p) * (log_p - (q[v] - lse_q));
        }
        j->ce[1 + k] += lse_q - q[tokens[r + 1]];
        j->kl[k] += kl;
    }
    return SAE_OK;
}

/* ---- the passes -------------------------------------------------------------------------- */

/* mu = the mean of the clean activations at the hook point over the evaluated rows. */
static sae_status mean_pass(loss_job *j, const int32_t *tokens, int64_t n_seq)
{
    sae_status s = SAE_OK;
    for (int64_t s0 = 0; s == SAE_OK && s0 < n_seq; s0 += j->batch) {
        j->cur_seqs = n_seq - s0 < j->batch ? n_seq - s0 : j->batch;
        s = forward(j, RUN_SUM, tokens + s0 * j->seq_len, NULL);
    }
    const double rows = (double)(n_seq * (j->seq_len - (j->skip_bos ? 1 : 0)));
    for (int64_t i = 0; i < j->d; i++)
        j->mu[i] = (float)(j->sum[i] / rows);
    return s;
}

static sae_status score_pass(loss_job *j, const int32_t *tokens, int64_t n_seq)
{
    sae_status s = SAE_OK;
    for (int64_t s0 = 0; s == SAE_OK && s0 < n_seq; s0 += j->batch) {
        const int32_t *tb = tokens + s0 * j->seq_len;
        j->cur_seqs = n_seq - s0 < j->batch ? n_seq - s0 : j->batch;
        s = forward(j, RUN_CLEAN, tb, j->clean);
        if (s == SAE_OK)
            s = score_clean(j, tb);
        for (run_kind run = RUN_SPLICE; s == SAE_OK && run <= RUN_MEAN; run++) {
            s = forward(j, run, tb, j->logits);
            if (s == SAE_OK)
                s = score_run(j, run, tb);
        }
    }
    return s;
}

/* The averages and scores; NaN where a denominator is 0. */
static void finish(sae_loss_recovered *r, const loss_job *j, int64_t n)
{
    r->n_tokens = n;
    r->ce_clean = j->ce[0] / (double)n;
    r->ce_spliced = j->ce[1] / (double)n;
    r->ce_zero = j->ce[2] / (double)n;
    r->ce_mean = j->ce[3] / (double)n;
    r->kl_spliced = j->kl[0] / (double)n;
    r->kl_zero = j->kl[1] / (double)n;
    r->kl_mean = j->kl[2] / (double)n;
    r->score_zero = (r->ce_zero - r->ce_spliced) / (r->ce_zero - r->ce_clean);
    r->score_mean = (r->ce_mean - r->ce_spliced) / (r->ce_mean - r->ce_clean);
    r->kl_score_zero = (r->kl_zero - r->kl_spliced) / r->kl_zero;
    r->kl_score_mean = (r->kl_mean - r->kl_spliced) / r->kl_mean;
}

/* ---- entry point ------------------------------------------------------------------------- */

static sae_status check_args(loss_job *j, const sae_host *host, const sae_dict *dict,
                             const int32_t *tokens, int64_t n_seq,
                             const sae_loss_recovered_options *o)
{
    if (!dict)
        return sae__fail(SAE_EINVAL, "sae_dict_loss_recovered: dict is NULL");
    if (o->n_threads < 0)
        return sae__fail(SAE_EINVAL, "sae_dict_loss_recovered: n_threads is %d", (int)o->n_threads);
    sae_status s = sae__capture_check(&j->host, host, tokens, n_seq, j->seq_len, o->skip_bos,
                                      "sae_dict_loss_recovered");
    if (s != SAE_OK || (s = sae__capture_check_hook(&j->host, j->hook_id)) != SAE_OK)
        return s;
    if (j->seq_len < 2)
        return sae__fail(SAE_ESHAPE, "sae_dict_loss_recovered: sequences of 1 token have no "
                         "next token to predict");
    if (sae_dict_d_in(dict) != j->host.d_model)
        return sae__fail(SAE_ESHAPE, "sae_dict_loss_recovered: the dictionary's d_in is %lld, "
                         "the host's d_model at hook point %s is %lld",
                         (long long)sae_dict_d_in(dict), j->host.hook_names[j->hook_id],
                         (long long)j->host.d_model);
    /* At most 2048 tokens and 2^22 logits per batch by default. */
    int64_t max_tokens = (INT64_C(1) << 22) / j->host.vocab_size;
    max_tokens = max_tokens < SAE_CAPTURE_BATCH_TOKENS ? max_tokens : SAE_CAPTURE_BATCH_TOKENS;
    if ((s = sae__capture_batch_seqs(&j->batch, o->seqs_per_batch, n_seq, j->seq_len,
                                     max_tokens)) != SAE_OK)
        return s;
    j->d = j->host.d_model;
    j->skip_bos = o->skip_bos == 1;
    return SAE_OK;
}

static sae_status run(sae_loss_recovered *out, loss_job *j, const sae_dict *dict,
                      const int32_t *tokens, int64_t n_seq, const sae_loss_recovered_options *o,
                      const sae_allocator *a)
{
    const int64_t rows = j->batch * j->seq_len, V = j->host.vocab_size;
    if (!(j->sum = sae__alloc_array(a, (size_t)j->d, sizeof *j->sum)) ||
        !(j->mu = sae__alloc_array(a, (size_t)j->d, sizeof *j->mu)) ||
        !(j->clean = sae__alloc_array(a, (size_t)rows, (size_t)V * sizeof(float))) ||
        !(j->logits = sae__alloc_array(a, (size_t)rows, (size_t)V * sizeof(float))) ||
        !(j->clean_lse = sae__alloc_array(a, (size_t)rows, sizeof *j->clean_lse)))
        return SAE_ENOMEM;
    memset(j->sum, 0, (size_t)j->d * sizeof *j->sum);
    sae_patch_options po = SAE_PATCH_OPTIONS_INIT;
    po.n_threads = o->n_threads;
    po.max_tokens = rows < 1024 ? rows : 1024; /* its workspace: max_tokens d_sae floats */
    po.allocator = a;
    sae_status s = sae_patch_create_splice(&j->splice, dict, 0, &po);
    if (s == SAE_OK)
        s = mean_pass(j, tokens, n_seq);
    if (s == SAE_OK)
        s = score_pass(j, tokens, n_seq);
    if (s == SAE_OK) {
        sae_loss_recovered r = SAE_LOSS_RECOVERED_INIT;
        finish(&r, j, n_seq * (j->seq_len - 1));
        sae__write_options(out, &r, sizeof r);
    }
    return s;
}

sae_status sae_dict_loss_recovered(sae_loss_recovered *out, const sae_host *host,
                                   int32_t hook_id, const sae_dict *dict, const int32_t *tokens,
                                   int64_t n_seq, int64_t seq_len,
                                   const sae_loss_recovered_options *options)
{
    if (!out || out->struct_size < 4)
        return sae__fail(SAE_EINVAL, "sae_dict_loss_recovered: out is NULL or its struct_size "
                         "is not set (initialise it with SAE_LOSS_RECOVERED_INIT)");
    sae_loss_recovered_options o = SAE_LOSS_RECOVERED_OPTIONS_INIT;
    sae_status s = sae__read_options(&o, sizeof o, options, "sae_loss_recovered_options");
    if (s != SAE_OK)
        return s;
    loss_job j = {.hook_id = hook_id, .seq_len = seq_len};
    if ((s = check_args(&j, host, dict, tokens, n_seq, &o)) != SAE_OK)
        return s;
    const sae_allocator *a = sae__allocator(o.allocator);
    s = run(out, &j, dict, tokens, n_seq, &o, a);
    sae_patch_free(j.splice);
    void *owned[] = {j.sum, j.mu, j.clean, j.logits, j.clean_lse};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        sae__free(a, owned[i]);
    return s;
}
