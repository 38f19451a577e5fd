/* cmd_convert.c: `sae convert SRC DST [--format saelens|sparsify] [--k K]`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: sae convert SRC DST [--format saelens|sparsify] [--k K]\n"
    "\n"
    "Load the SAE at SRC (any format `sae info` reads) and save it into directory DST\n"
    "(created if missing; files are replaced atomically).\n"
    "\n"
    "options:\n"
    "  --format F   saelens (default: cfg.json + sae_weights.safetensors, every architecture)\n"
    "               or sparsify (cfg.json + sae.safetensors, TopK with ReLU before top-k only)\n"
    "  --k K        k for files that do not store it (sae-icm), or to override it\n"
    "  --help       print this help\n";

int cmd_convert(int argc, char **argv)
{
    const char *src = NULL, *dst = NULL;
    int32_t format = SAE_FORMAT_SAELENS;
    int64_t k = 0;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            if (!src)
                src = arg;
            else if (!dst)
                dst = arg;
            else
                return cli_usage_error(usage, "convert: unexpected argument '%s'", arg);
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_opt_is(&a, arg, "--format")) {
            const char *v = cli_opt_value(&a);
            if (v && !strcmp(v, "saelens"))
                format = SAE_FORMAT_SAELENS;
            else if (v && !strcmp(v, "sparsify"))
                format = SAE_FORMAT_SPARSIFY;
            else
                return cli_usage_error(usage, "convert: --format must be saelens or sparsify");
        } else if (cli_opt_is(&a, arg, "--k")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &k))
                return cli_usage_error(usage, "convert: --k needs a positive integer");
        } else {
            return cli_usage_error(usage, "convert: unknown option '%s'", arg);
        }
    }
    if (!src || !dst)
        return cli_usage_error(usage, "convert: missing %s", src ? "DST" : "SRC and DST");

    int32_t src_format = SAE_FORMAT_AUTO;
    sae_dict *dict = NULL;
    int rc = cli_load_dict(src, k, &dict, &src_format);
    if (rc)
        return rc;
    sae_status s = sae_dict_save(dict, dst, format);
    if (s != SAE_OK) {
        sae_dict_free(dict);
        return cli_fail_status(dst, s);
    }
    printf("wrote %s (%s): %s SAE, d_in %lld, d_sae %lld", dst, sae_format_name(format),
           sae_arch_name(sae_dict_arch(dict)), (long long)sae_dict_d_in(dict),
           (long long)sae_dict_d_sae(dict));
    if (sae_dict_k(dict) > 0)
        printf(", k %lld", (long long)sae_dict_k(dict));
    printf(", from %s (%s)\n", src, sae_format_name(src_format));
    sae_dict_free(dict);
    return fflush(stdout) == 0 ? 0 : cli_fail(NULL, "cannot write to standard output");
}
