/* cmd_info.c: `sae info PATH [--k K] [--json]`: what a dictionary file holds. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char usage[] =
    "usage: sae info PATH [--k K] [--json]\n"
    "\n"
    "Describe the SAE at PATH (a SAELens or sparsify directory, a dictionary_learning ae.pt,\n"
    "an OpenAI or sae-icm .pt file): format, architecture, sizes, conventions, threshold and\n"
    "decoder-norm statistics, hook point, model, stored dtype and parameter counts.\n"
    "\n"
    "options:\n"
    "  --k K     k for files that do not store it (sae-icm), or to override it\n"
    "  --json    print one JSON object instead of text\n"
    "  --help    print this help\n";

typedef struct stats {
    double min, mean, max;
    bool present;
} stats;

static stats stats_of(const float *x, int64_t n)
{
    stats s = {0, 0, 0, false};
    if (!x || n <= 0)
        return s;
    double sum = 0, lo = x[0], hi = x[0];
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        sum += v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    s.min = lo, s.mean = sum / (double)n, s.max = hi, s.present = true;
    return s;
}

static const char *input_norm_name(int32_t norm)
{
    switch (norm) {
    case SAE_NORM_NONE: return "none";
    case SAE_NORM_SCALE: return "scale";
    case SAE_NORM_CONSTANT_RESCALE: return "constant_rescale";
    case SAE_NORM_LAYER_NORM: return "layer_norm";
    default: return "unknown";
    }
}

/* The dtype(s) of the stored weights, when the file is safetensors (SAELens, sparsify):
 * "F32", or "BF16+F32" when they differ. Empty when not cheap to know (.pt files). */
static void stored_dtype(const char *path, int32_t format, char *out, size_t size)
{
    out[0] = '\0';
    const char *name = format == SAE_FORMAT_SAELENS    ? "sae_weights.safetensors"
                       : format == SAE_FORMAT_SPARSIFY ? "sae.safetensors"
                                                       : NULL;
    if (!name)
        return;
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/%s", path, name);
    else
        snprintf(file, sizeof file, "%s", path);
    sae_st_reader *r = NULL;
    if (sae_st_open(&r, file) != SAE_OK) {
        sae_clear_error();
        return;
    }
    bool seen[32] = {false};
    for (int64_t i = 0; i < sae_st_count(r); i++) {
        const sae_tensor_info *t = sae_st_tensor_at(r, i);
        if (t && t->dtype >= 0 && t->dtype < 32)
            seen[t->dtype] = true;
    }
    sae_st_close(r);
    size_t used = 0;
    for (int d = 0; d < 32 && used < size; d++) {
        const char *dn = seen[d] ? sae_dtype_name(d) : NULL;
        if (dn)
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "+" : "", dn);
    }
}

static void human_bytes(char *buf, size_t size, double bytes)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4)
        bytes /= 1024, u++;
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

/* One "label:   value" line of the text output. */
static void field(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void field(const char *label, const char *fmt, ...)
{
    printf("%s:%*s", label, (int)(22 - strlen(label)), "");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void json_number(double v)
{
    if (isfinite(v))
        printf("%.9g", v);
    else
        fputs("null", stdout);
}

static void json_stats(const stats *s)
{
    if (!s->present) {
        fputs("null", stdout);
        return;
    }
    fputs("{\"min\": ", stdout);
    json_number(s->min);
    fputs(", \"mean\": ", stdout);
    json_number(s->mean);
    fputs(", \"max\": ", stdout);
    json_number(s->max);
    fputs("}", stdout);
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int64_t k = 0;
    bool json = false;
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            if (path)
                return cli_usage_error(usage, "info: unexpected argument '%s'", arg);
            path = arg;
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_opt_is(&a, arg, "--json")) {
            json = true;
        } else if (cli_opt_is(&a, arg, "--k")) {
            const char *v = cli_opt_value(&a);
            if (!cli_parse_i64(v, 1, INT64_MAX, &k))
                return cli_usage_error(usage, "info: --k needs a positive integer");
        } else {
            return cli_usage_error(usage, "info: unknown option '%s'", arg);
        }
    }
    if (!path)
        return cli_usage_error(usage, "info: missing PATH");

    int32_t format = SAE_FORMAT_AUTO;
    sae_dict *dict = NULL;
    int rc = cli_load_dict(path, k, &dict, &format);
    if (rc)
        return rc;
    sae_status s;

    sae_dict_config cfg = SAE_DICT_CONFIG_INIT;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    if ((s = sae_dict_get_config(dict, &cfg)) != SAE_OK ||
        (s = sae_dict_get_weights(dict, &w)) != SAE_OK) {
        sae_dict_free(dict);
        return cli_fail_status(path, s);
    }
    const int64_t d_in = cfg.d_in, d_sae = cfg.d_sae;
    const bool b_dec_in = !(cfg.flags & SAE_DICT_NO_B_DEC_INPUT);
    const bool is_topk = cfg.arch == SAE_ARCH_TOPK;
    const bool relu_first = (cfg.flags & SAE_DICT_RELU_BEFORE_TOPK) != 0;
    const bool rescale = (cfg.flags & SAE_DICT_RESCALE_BY_DECODER_NORM) != 0;
    const double act_scale = cfg.act_scale != 0.0f ? cfg.act_scale : 1.0;
    stats thr = stats_of(w.threshold, d_sae);
    stats norms = stats_of(sae_dict_decoder_norms(dict), d_sae);
    char dtype[64];
    stored_dtype(path, format, dtype, sizeof dtype);

    /* Parameters as held in memory (float32): the encoder side is W_enc and every per-feature
     * vector the activation uses; the decoder side is W_dec and b_dec. */
    int64_t enc = d_in * d_sae, dec = d_sae * d_in;
    const float *enc_vectors[] = {w.b_enc, w.threshold, w.b_gate, w.b_mag, w.r_mag};
    for (size_t i = 0; i < sizeof enc_vectors / sizeof enc_vectors[0]; i++)
        enc += enc_vectors[i] ? d_sae : 0;
    dec += w.b_dec ? d_in : 0;

    if (json) {
        fputs("{\"path\": ", stdout);
        cli_json_string(path);
        fputs(", \"format\": ", stdout);
        cli_json_string(sae_format_name(format));
        fputs(", \"architecture\": ", stdout);
        cli_json_string(sae_arch_name(cfg.arch));
        printf(", \"d_in\": %lld, \"d_sae\": %lld, \"k\": ", (long long)d_in, (long long)d_sae);
        if (cfg.k > 0)
            printf("%lld", (long long)cfg.k);
        else
            fputs("null", stdout);
        printf(", \"conventions\": {\"apply_b_dec_to_input\": %s, \"relu_before_topk\": %s, "
               "\"rescale_by_decoder_norm\": %s, \"input_norm\": ",
               b_dec_in ? "true" : "false", is_topk ? (relu_first ? "true" : "false") : "null",
               rescale ? "true" : "false");
        cli_json_string(input_norm_name(cfg.input_norm));
        fputs(", \"act_scale\": ", stdout);
        json_number(act_scale);
        fputs("}, \"threshold\": ", stdout);
        json_stats(&thr);
        fputs(", \"hook_name\": ", stdout);
        cli_json_string(cfg.hook_name);
        fputs(", \"model_name\": ", stdout);
        cli_json_string(cfg.model_name);
        if (dtype[0]) {
            fputs(", \"dtype\": ", stdout);
            cli_json_string(dtype);
        }
        fputs(", \"decoder_norms\": ", stdout);
        json_stats(&norms);
        printf(", \"encoder\": {\"parameters\": %lld, \"bytes\": %lld}"
               ", \"decoder\": {\"parameters\": %lld, \"bytes\": %lld}}\n",
               (long long)enc, (long long)enc * 4, (long long)dec, (long long)dec * 4);
    } else {
        char hb[32], conv[64] = "";
        field("path", "%s", path);
        field("format", "%s", sae_format_name(format));
        field("architecture", "%s", sae_arch_name(cfg.arch));
        field("d_in", "%lld", (long long)d_in);
        field("d_sae", "%lld", (long long)d_sae);
        if (cfg.k > 0)
            field("k", "%lld", (long long)cfg.k);
        field("b_dec on input", "%s", b_dec_in ? "yes (encodes x - b_dec)" : "no");
        if (is_topk)
            field("activation", "%s", relu_first ? "ReLU, then top-k" : "top-k, then ReLU");
        field("decoder-norm rescale", "%s", rescale ? "yes" : "no");
        if (cfg.input_norm == SAE_NORM_SCALE)
            snprintf(conv, sizeof conv, " (act_scale %.9g)", act_scale);
        field("input norm", "%s%s", input_norm_name(cfg.input_norm), conv);
        if (thr.present)
            field("threshold", "min %.6g  mean %.6g  max %.6g", thr.min, thr.mean, thr.max);
        field("hook", "%s", cfg.hook_name ? cfg.hook_name : "(not stored)");
        field("model", "%s", cfg.model_name ? cfg.model_name : "(not stored)");
        if (dtype[0])
            field("stored dtype", "%s", dtype);
        if (norms.present)
            field("decoder norms", "min %.6g  mean %.6g  max %.6g", norms.min, norms.mean,
                  norms.max);
        human_bytes(hb, sizeof hb, (double)enc * 4);
        field("encoder", "%lld parameters, %lld bytes as float32 (%s)", (long long)enc,
              (long long)enc * 4, hb);
        human_bytes(hb, sizeof hb, (double)dec * 4);
        field("decoder", "%lld parameters, %lld bytes as float32 (%s)", (long long)dec,
              (long long)dec * 4, hb);
    }
    sae_dict_free(dict);
    if (fflush(stdout) != 0)
        return cli_fail(NULL, "cannot write to standard output");
    return 0;
}
