/* cmd_encode.c: `sae encode PATH --input X.safetensors --output OUT.safetensors [...]`:
 * run a dictionary on a tensor of activations, in batches, and write the codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: sae encode PATH --input X.safetensors --output OUT.safetensors [options]\n"
    "\n"
    "Encode the activations in X.safetensors (a [..., d_in] F32, BF16 or F16 tensor) with the\n"
    "SAE at PATH and write OUT.safetensors with, for input shape [..., d_in]:\n"
    "  dense (default): features [..., d_sae], pre_activation [..., d_sae],\n"
    "                   reconstruction [..., d_in]  (all F32)\n"
    "  --sparse:        indices I32 [nnz], values F32 [nnz], offsets I64 [rows + 1] (CSR over\n"
    "                   the rows = product of the leading dimensions), reconstruction [..., d_in]\n"
    "\n"
    "options:\n"
    "  --input FILE    safetensors file with the activations (required)\n"
    "  --tensor NAME   tensor to encode (default: the only tensor in the file, else 'x')\n"
    "  --output FILE   where to write the result (required; replaced atomically)\n"
    "  --sparse        write CSR codes instead of dense features\n"
    "  --k K           k for files that do not store it (sae-icm), or to override it\n"
    "  --threads T     threads per encoder call (default: every CPU this process may use)\n"
    "  --batch B       rows per encoder call (default 4096); bounds the working memory\n"
    "  --help          print this help\n";

/* The tensor to encode: --tensor NAME, else the only one, else "x". */
static const sae_tensor_info *pick_tensor(const sae_st_reader *r, const char *input,
                                          const char *name, int *rc)
{
    *rc = 0;
    if (name) {
        const sae_tensor_info *t = sae_st_find(r, name);
        if (!t)
            *rc = cli_fail(input, "no tensor named '%s'", name);
        return t;
    }
    int64_t n = sae_st_count(r);
    if (n == 1)
        return sae_st_tensor_at(r, 0);
    const sae_tensor_info *t = sae_st_find(r, "x");
    if (t)
        return t;
    if (n == 0) {
        *rc = cli_fail(input, "the file holds no tensor");
        return NULL;
    }
    char names[512];
    size_t used = 0;
    for (int64_t i = 0; i < n && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 sae_st_tensor_at(r, i)->name);
    *rc = cli_fail(input, "%lld tensors (%s) and none named 'x'; choose one with --tensor",
                   (long long)n, names);
    return NULL;
}

int cmd_encode(int argc, char **argv)
{
    const char *path = NULL, *input = NULL, *output = NULL, *tensor_name = NULL;
    int64_t k = 0, threads = 0, batch = 4096;
    bool sparse = false;

    cli_args a;
    cli_args_init(&a, argc, argv);
    bool is_opt;
    for (const char *arg; (arg = cli_args_next(&a, &is_opt));) {
        if (!is_opt) {
            if (path)
                return cli_usage_error(usage, "encode: unexpected argument '%s'", arg);
            path = arg;
        } else if (cli_opt_is(&a, arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_opt_is(&a, arg, "--sparse")) {
            sparse = true;
        } else if (cli_opt_is(&a, arg, "--input")) {
            if (!(input = cli_opt_value(&a)))
                return cli_usage_error(usage, "encode: --input needs a file");
        } else if (cli_opt_is(&a, arg, "--output")) {
            if (!(output = cli_opt_value(&a)))
                return cli_usage_error(usage, "encode: --output needs a file");
        } else if (cli_opt_is(&a, arg, "--tensor")) {
            if (!(tensor_name = cli_opt_value(&a)))
                return cli_usage_error(usage, "encode: --tensor needs a name");
        } else if (cli_opt_is(&a, arg, "--k")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_MAX, &k))
                return cli_usage_error(usage, "encode: --k needs a positive integer");
        } else if (cli_opt_is(&a, arg, "--threads")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, 4096, &threads))
                return cli_usage_error(usage, "encode: --threads needs an integer in 1..4096");
        } else if (cli_opt_is(&a, arg, "--batch")) {
            if (!cli_parse_i64(cli_opt_value(&a), 1, INT64_C(1) << 30, &batch))
                return cli_usage_error(usage, "encode: --batch needs a positive integer");
        } else {
            return cli_usage_error(usage, "encode: unknown option '%s'", arg);
        }
    }
    if (!path)
        return cli_usage_error(usage, "encode: missing PATH");
    if (!input)
        return cli_usage_error(usage, "encode: missing --input");
    if (!output)
        return cli_usage_error(usage, "encode: missing --output");

    int rc = CLI_EXIT_FAILURE;
    sae_status s;
    sae_dict *dict = NULL;
    sae_st_reader *reader = NULL;
    sae_encoder *enc = NULL;
    sae_codes *codes = NULL;
    sae_st_writer *writer = NULL;
    float *xbuf = NULL, *features = NULL, *pre = NULL, *recon = NULL, *values = NULL;
    int32_t *indices = NULL;
    int64_t *offsets = NULL;
    int64_t nnz = 0, cap = 0;
    const double t_start = cli_now_seconds();

    if (cli_load_dict(path, k, &dict, NULL))
        goto done;
    const int64_t d_in = sae_dict_d_in(dict), d_sae = sae_dict_d_sae(dict);

    if ((s = sae_st_open(&reader, input)) != SAE_OK) {
        rc = cli_fail_status(input, s);
        goto done;
    }
    const sae_tensor_info *x = pick_tensor(reader, input, tensor_name, &rc);
    if (!x)
        goto done;
    rc = CLI_EXIT_FAILURE;
    char shape_text[256];
    cli_format_shape(shape_text, sizeof shape_text, x->ndim, x->shape);
    if (x->dtype != SAE_DTYPE_F32 && x->dtype != SAE_DTYPE_BF16 && x->dtype != SAE_DTYPE_F16 &&
        x->dtype != SAE_DTYPE_F64) {
        const char *dn = sae_dtype_name(x->dtype);
        rc = cli_fail(input, "tensor '%s' has dtype %s; expected F32, BF16 or F16", x->name,
                      dn ? dn : "?");
        goto done;
    }
    if (x->ndim < 1 || x->shape[x->ndim - 1] != d_in) {
        rc = cli_fail(input,
                      "tensor '%s' has shape %s; its last dimension must be the SAE's d_in = %lld",
                      x->name, shape_text, (long long)d_in);
        goto done;
    }
    const int64_t rows = d_in ? x->numel / d_in : 0;
    const int esize = sae_dtype_size(x->dtype);

    /* Output shapes: the input's leading dimensions, then d_sae or d_in. */
    const int nd = x->ndim;
    int64_t fshape[SAE_MAX_DIMS], rshape[SAE_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        fshape[i] = rshape[i] = x->shape[i];
    fshape[nd - 1] = d_sae;

    if (d_sae > 0 && rows > INT64_MAX / 4 / d_sae && !sparse) {
        rc = cli_fail(output, "%lld x %lld features do not fit in memory", (long long)rows,
                      (long long)d_sae);
        goto done;
    }
    const int64_t nb_max = rows < batch ? (rows > 0 ? rows : 1) : batch;
    xbuf = cli_alloc_array(nb_max * d_in, sizeof(float));
    recon = cli_alloc_array(rows * d_in, sizeof(float));
    if (sparse) {
        offsets = cli_alloc_array(rows + 1, sizeof(int64_t));
        /* Room for k non-zeros per row (TopK), else a guess; grown on demand. */
        const int64_t per_row = sae_dict_k(dict) > 0 ? sae_dict_k(dict) : 16;
        cap = (rows < (INT64_C(1) << 26) / per_row ? rows * per_row : INT64_C(1) << 26) + 1;
        indices = cli_alloc_array(cap, sizeof(int32_t));
        values = cli_alloc_array(cap, sizeof(float));
    } else {
        features = cli_alloc_array(rows * d_sae, sizeof(float));
        pre = cli_alloc_array(rows * d_sae, sizeof(float));
    }
    if (!xbuf || !recon || (sparse ? !offsets || !indices || !values : !features || !pre)) {
        rc = cli_fail(output, "out of memory for %lld rows", (long long)rows);
        goto done;
    }

    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.n_threads = (int32_t)threads;
    eo.max_rows = nb_max;
    if ((s = sae_encoder_create(&enc, dict, &eo)) != SAE_OK ||
        (sparse && (s = sae_codes_create(&codes, NULL)) != SAE_OK)) {
        rc = cli_fail_status(path, s);
        goto done;
    }
    if (sparse)
        offsets[0] = 0;

    const double t_encode = cli_now_seconds();
    for (int64_t r0 = 0; r0 < rows; r0 += batch) {
        const int64_t nb = rows - r0 < batch ? rows - r0 : batch;
        /* A view of rows [r0, r0 + nb) of the input, converted to float32. */
        sae_tensor_info view = *x;
        memset(view.shape, 0, sizeof view.shape);
        view.ndim = 2;
        view.shape[0] = nb;
        view.shape[1] = d_in;
        view.numel = nb * d_in;
        view.data = (const char *)x->data + (size_t)(r0 * d_in) * (size_t)esize;
        view.nbytes = (uint64_t)view.numel * (uint64_t)esize;
        if ((s = sae_st_to_f32(&view, xbuf, nb * d_in)) != SAE_OK) {
            rc = cli_fail_status(input, s);
            goto done;
        }
        float *xh = recon + r0 * d_in;
        if (!sparse) {
            float *f = features + r0 * d_sae;
            s = sae_encoder_encode(enc, nb, xbuf, d_in, f, d_sae, pre + r0 * d_sae, d_sae);
            if (s == SAE_OK)
                s = sae_encoder_decode(enc, nb, f, d_sae, xh, d_in);
        } else {
            s = sae_encoder_encode_sparse(enc, nb, xbuf, d_in, codes);
            if (s == SAE_OK)
                s = sae_encoder_decode_sparse(enc, nb, sae_codes_offsets(codes),
                                              sae_codes_indices(codes), sae_codes_values(codes),
                                              xh, d_in);
            if (s == SAE_OK) {
                const int64_t bnnz = sae_codes_nnz(codes);
                if (nnz + bnnz > cap) {
                    int64_t ncap = cap * 2 > nnz + bnnz ? cap * 2 : nnz + bnnz;
                    int32_t *ni = (uint64_t)ncap <= SIZE_MAX / 4
                                      ? realloc(indices, (size_t)ncap * sizeof *indices)
                                      : NULL;
                    if (ni)
                        indices = ni;
                    float *nv = ni ? realloc(values, (size_t)ncap * sizeof *values) : NULL;
                    if (!ni || !nv) {
                        rc = cli_fail(output, "out of memory for %lld non-zeros",
                                      (long long)(nnz + bnnz));
                        goto done;
                    }
                    values = nv;
                    cap = ncap;
                }
                const int64_t *bo = sae_codes_offsets(codes);
                memcpy(indices + nnz, sae_codes_indices(codes), (size_t)bnnz * sizeof *indices);
                memcpy(values + nnz, sae_codes_values(codes), (size_t)bnnz * sizeof *values);
                for (int64_t i = 1; i <= nb; i++)
                    offsets[r0 + i] = nnz + bo[i];
                nnz += bnnz;
            }
        }
        if (s != SAE_OK) {
            rc = cli_fail_status(path, s);
            goto done;
        }
    }
    const double t_written = cli_now_seconds();

    char dims[64], leading[256], version[32];
    snprintf(dims, sizeof dims, "%lld", (long long)d_sae);
    cli_format_shape(leading, sizeof leading, nd - 1, x->shape);
    snprintf(version, sizeof version, "libsae %s", sae_version_string());
    int64_t nnz_shape[1] = {nnz}, off_shape[1] = {rows + 1};
    if ((s = sae_st_writer_create(&writer)) != SAE_OK ||
        (s = sae_st_writer_set_metadata(writer, "producer", version)) != SAE_OK ||
        (s = sae_st_writer_set_metadata(writer, "sae", path)) != SAE_OK ||
        (s = sae_st_writer_set_metadata(writer, "d_sae", dims)) != SAE_OK ||
        (s = sae_st_writer_set_metadata(writer, "leading_shape", leading)) != SAE_OK ||
        (s = sae_st_writer_add(writer, "reconstruction", SAE_DTYPE_F32, nd, rshape, recon)) !=
            SAE_OK) {
        rc = cli_fail_status(output, s);
        goto done;
    }
    if (sparse)
        s = sae_st_writer_add(writer, "indices", SAE_DTYPE_I32, 1, nnz_shape, indices);
    else
        s = sae_st_writer_add(writer, "features", SAE_DTYPE_F32, nd, fshape, features);
    if (s == SAE_OK)
        s = sparse ? sae_st_writer_add(writer, "values", SAE_DTYPE_F32, 1, nnz_shape, values)
                   : sae_st_writer_add(writer, "pre_activation", SAE_DTYPE_F32, nd, fshape, pre);
    if (s == SAE_OK && sparse)
        s = sae_st_writer_add(writer, "offsets", SAE_DTYPE_I64, 1, off_shape, offsets);
    if (s == SAE_OK)
        s = sae_st_writer_write(writer, output);
    if (s != SAE_OK) {
        rc = cli_fail_status(output, s);
        goto done;
    }

    char fs[256], rs[256];
    cli_format_shape(fs, sizeof fs, nd, fshape);
    cli_format_shape(rs, sizeof rs, nd, rshape);
    printf("encoded %lld rows of '%s' %s (d_in %lld -> d_sae %lld) in %.3f s, %.0f rows/s\n",
           (long long)rows, x->name, shape_text, (long long)d_in, (long long)d_sae,
           t_written - t_encode,
           t_written > t_encode ? (double)rows / (t_written - t_encode) : 0.0);
    if (sparse)
        printf("wrote %s: indices [%lld], values [%lld], offsets [%lld] (%.2f non-zeros per row), "
               "reconstruction %s\n",
               output, (long long)nnz, (long long)nnz, (long long)(rows + 1),
               rows ? (double)nnz / (double)rows : 0.0, rs);
    else
        printf("wrote %s: features %s, pre_activation %s, reconstruction %s (%.3f s in all)\n",
               output, fs, fs, rs, cli_now_seconds() - t_start);
    rc = fflush(stdout) == 0 ? 0 : cli_fail(NULL, "cannot write to standard output");

done:
    sae_st_writer_free(writer);
    sae_codes_free(codes);
    sae_encoder_free(enc);
    sae_st_close(reader);
    sae_dict_free(dict);
    free(xbuf);
    free(features);
    free(pre);
    free(recon);
    free(indices);
    free(values);
    free(offsets);
    return rc;
}
