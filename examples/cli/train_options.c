/* train_options.c: the options `sae train` and `sae finetune` share (train_options.h). */
#include <string.h>

#include "train_options.h"

void cli_train_options_init(cli_train_options *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 4096, o->warmup = -1;
}

bool cli_train_option(cli_train_options *o, cli_args *a, const char *arg, const char *usage,
                      const char *cmd, int *rc)
{
    *rc = 0;
    int64_t n = 0;
    const char *v;
    if (cli_opt_is(a, arg, "--steps")) {
        if (!cli_parse_i64(cli_opt_value(a), 1, INT64_MAX / 2, &o->steps))
            *rc = cli_usage_error(usage, "%s: --steps needs a positive integer", cmd);
    } else if (cli_opt_is(a, arg, "--batch")) {
        if (!cli_parse_i64(cli_opt_value(a), 1, INT64_C(1) << 24, &o->batch))
            *rc = cli_usage_error(usage, "%s: --batch needs a positive integer", cmd);
    } else if (cli_opt_is(a, arg, "--warmup")) {
        if (!cli_parse_i64(cli_opt_value(a), 0, INT64_MAX / 2, &o->warmup))
            *rc = cli_usage_error(usage, "%s: --warmup needs an integer >= 0", cmd);
    } else if (cli_opt_is(a, arg, "--threads")) {
        if (!cli_parse_i64(cli_opt_value(a), 1, 4096, &o->threads))
            *rc = cli_usage_error(usage, "%s: --threads needs an integer in 1..4096", cmd);
    } else if (cli_opt_is(a, arg, "--k")) {
        if (!cli_parse_i64(cli_opt_value(a), 1, INT32_MAX, &o->k))
            *rc = cli_usage_error(usage, "%s: --k needs a positive integer", cmd);
    } else if (cli_opt_is(a, arg, "--seed")) {
        if (!cli_parse_i64(cli_opt_value(a), 0, INT64_MAX, &n))
            *rc = cli_usage_error(usage, "%s: --seed needs an integer >= 0", cmd);
        o->seed = (uint64_t)n;
    } else if (cli_opt_is(a, arg, "--lr")) {
        if (!cli_parse_f64(cli_opt_value(a), &o->lr) || !(o->lr > 0))
            *rc = cli_usage_error(usage, "%s: --lr needs a positive number", cmd);
    } else if (cli_opt_is(a, arg, "--ortho")) {
        if (!cli_parse_f64(cli_opt_value(a), &o->ortho) || !(o->ortho >= 0))
            *rc = cli_usage_error(usage, "%s: --ortho needs a number >= 0", cmd);
        o->ortho_given = true;
    } else if (cli_opt_is(a, arg, "--ortho-subset")) {
        if (!cli_parse_i64(cli_opt_value(a), 0, INT32_MAX, &o->ortho_subset))
            *rc = cli_usage_error(usage, "%s: --ortho-subset needs an integer >= 0", cmd);
        o->ortho_subset_given = true;
    } else if (cli_opt_is(a, arg, "--out")) {
        if (!(o->out = cli_opt_value(a)) || !*o->out)
            *rc = cli_usage_error(usage, "%s: --out needs a directory", cmd);
    } else if (cli_opt_is(a, arg, "--format")) {
        v = cli_opt_value(a);
        if (v && !strcmp(v, "saelens"))
            o->format = SAE_FORMAT_SAELENS;
        else if (v && !strcmp(v, "sparsify"))
            o->format = SAE_FORMAT_SPARSIFY;
        else
            *rc = cli_usage_error(usage, "%s: --format must be saelens or sparsify", cmd);
    } else {
        return false;
    }
    return true;
}

void cli_train_options_apply(const cli_train_options *o, sae_trainer_options *to)
{
    to->lr = o->lr, to->seed = o->seed, to->n_threads = (int32_t)o->threads;
    if (o->warmup >= 0)
        to->warmup_steps = o->warmup > 0 ? o->warmup : SAE_TRAIN_OFF;
    if (o->ortho_given)
        to->ortho_lambda = o->ortho > 0 ? o->ortho : SAE_TRAIN_OFF;
    if (o->ortho_subset_given)
        to->ortho_subset = o->ortho_subset > 0 ? o->ortho_subset : SAE_TRAIN_OFF;
}
