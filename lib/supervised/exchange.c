/* exchange.c: the control axis for SAEs (Makelov `sae_interventions.py`): edits that exchange
 * features, interpretation-aware (chosen by F1) or agnostic (greedy towards a' − a), and the
 * feature weights that measure how much of the reconstruction an edit removes. */
#include <string.h>

#include "../dict_internal.h"
#include "supervised_internal.h"

/* Model-space directions d~_j (dict_internal.h), (d_sae, d_in). */
static float *model_directions(const sae_dict *dict, const sae_allocator *al)
{
    const int64_t F = dict->config.d_sae, d = dict->config.d_in;
    float *dirs = sae__alloc_array(al, (size_t)(F * d), sizeof(float));
    for (int64_t j = 0; dirs && j < F; j++)
        sae__dict_decoder_direction(dict, j, dirs + j * d);
    return dirs;
}

/* w_j = g_j ⟨d~_j, y⟩ / ||y||², y = Σ g_j d~_j over the codes f of one row (d~ already holds the
 * scale, so g = f); y: (d_in) work. */
static void row_weights(float *w, const float *f, const float *dirs, int64_t F, int64_t d,
                        double *y)
{
    memset(y, 0, (size_t)d * sizeof(double));
    for (int64_t j = 0; j < F; j++)
        if (f[j] != 0.0f)
            for (int64_t i = 0; i < d; i++)
                y[i] += (double)f[j] * dirs[j * d + i];
    double yy = 0.0;
    for (int64_t i = 0; i < d; i++)
        yy += y[i] * y[i];
    for (int64_t j = 0; j < F; j++) {
        double dy = 0.0;
        if (f[j] != 0.0f && yy > 0.0)
            for (int64_t i = 0; i < d; i++)
                dy += dirs[j * d + i] * y[i];
        w[j] = f[j] != 0.0f && yy > 0.0 ? (float)(f[j] * dy / yy) : 0.0f;
    }
}

/* Per-row normalisations change the decoder per row: no fixed model-space directions. */
static sae_status check_dict_norm(const sae_dict *dict, const char *what)
{
    int32_t norm = dict->config.input_norm;
    if (norm == SAE_NORM_LAYER_NORM || norm == SAE_NORM_CONSTANT_RESCALE)
        return sae__fail(SAE_EUNSUPPORTED, "%s: the SAE normalises each row (input_norm %d); "
                         "its features have no fixed direction", what, (int)norm);
    return SAE_OK;
}

sae_status sae_feature_weights(float *w, int64_t ldw, const sae_dict *dict, const float *codes,
                               int64_t ldf, int64_t n)
{
    if (!w || !dict || !codes || n < 0)
        return sae__fail(SAE_EINVAL, "feature weights: w, dict and codes are required, n >= 0");
    const int64_t F = dict->config.d_sae, d = dict->config.d_in;
    if (ldw < F || ldf < F)
        return sae__fail(SAE_ESHAPE, "feature weights: leading dimensions %lld (w) and %lld "
                         "(codes) must be >= d_sae %lld", (long long)ldw, (long long)ldf,
                         (long long)F);
    sae_status s = check_dict_norm(dict, "feature weights");
    if (s)
        return s;
    float *dirs = model_directions(dict, dict->allocator);
    double *y = sae__alloc_array(dict->allocator, (size_t)d, sizeof(double));
    if (!dirs || !y)
        s = SAE_ENOMEM;
    for (int64_t r = 0; s == SAE_OK && r < n; r++)
        row_weights(w + r * ldw, codes + r * ldf, dirs, F, d, y);
    sae__free(dict->allocator, dirs);
    sae__free(dict->allocator, y);
    return s;
}

/* Mark with `mark` the n_exchange features of highest score among those with f_j > 0 not yet
 * marked with it, ties to the lower id. */
static void top_active(uint8_t *pick, uint8_t mark, const float *score, const float *f,
                       int64_t F, int32_t n_exchange)
{
    for (int32_t m = 0; m < n_exchange; m++) {
        int64_t best = -1;
        for (int64_t j = 0; j < F; j++)
            if (f[j] > 0.0f && pick[j] != mark && (best < 0 || score[j] > score[best]))
                best = j;
        if (best < 0)
            return;
        pick[best] = mark;
    }
}

/* Greedy: n_exchange steps of j* = argmin ||c + Δ_j d~_j − δ||² over unchosen j with Δ_j ≠ 0,
 * expanded as ||r||² + 2Δ_j⟨r, d~_j⟩ + Δ_j²||d~_j||² with r = c − δ (the ||r||² term is common).
 * r: (d) work holding c − δ on entry. Marks the chosen features in `pick`. */
static void greedy_pick(uint8_t *pick, const float *f, const float *fc, const float *dirs,
                        int64_t F, int64_t d, int32_t n_exchange, double *r)
{
    for (int32_t step = 0; step < n_exchange; step++) {
        int64_t best = -1;
        double best_gain = 0.0;
        for (int64_t j = 0; j < F; j++) {
            double delta = (double)fc[j] - f[j];
            if (pick[j] || delta == 0.0)
                continue;
            double rd = 0.0, dd = 0.0;
            for (int64_t i = 0; i < d; i++) {
                rd += r[i] * dirs[j * d + i];
                dd += (double)dirs[j * d + i] * dirs[j * d + i];
            }
            double gain = 2.0 * delta * rd + delta * delta * dd;
            if (best < 0 || gain < best_gain) {
                best = j;
                best_gain = gain;
            }
        }
        if (best < 0)
            return;
        pick[best] = 1;
        double delta = (double)fc[best] - f[best];
        for (int64_t i = 0; i < d; i++)
            r[i] += delta * dirs[best * d + i];
    }
}

sae_status sae_feature_exchange(float *out, int64_t ldo, float *removed, const sae_dict *dict,
                                const float *a, int64_t lda, const float *a_cf, int64_t ldcf,
                                int64_t n, int32_t method, int32_t n_exchange,
                                const float *f1_from, const float *f1_to, int64_t ld_f1)
{
    if (!out || !dict || !a || !a_cf || n < 0 || n_exchange < 0)
        return sae__fail(SAE_EINVAL, "feature exchange: out, dict, a and a_cf are required, "
                         "n >= 0 (%lld), n_exchange >= 0 (%d)", (long long)n, (int)n_exchange);
    if (method != SAE_EXCHANGE_F1 && method != SAE_EXCHANGE_GREEDY)
        return sae__fail(SAE_EINVAL, "feature exchange: unknown method %d", (int)method);
    if (method == SAE_EXCHANGE_F1 && (!f1_from || !f1_to))
        return sae__fail(SAE_EINVAL, "feature exchange by F1: f1_from and f1_to are required");
    const int64_t F = dict->config.d_sae, d = dict->config.d_in;
    if (ldo < d || lda < d || ldcf < d || (method == SAE_EXCHANGE_F1 && ld_f1 < F))
        return sae__fail(SAE_ESHAPE, "feature exchange: leading dimensions out %lld, a %lld, "
                         "a_cf %lld (>= d_in %lld), f1 %lld (>= d_sae %lld)", (long long)ldo,
                         (long long)lda, (long long)ldcf, (long long)d, (long long)ld_f1,
                         (long long)F);
    sae_status s = check_dict_norm(dict, "feature exchange");
    if (s || n == 0)
        return s;
    const sae_allocator *al = dict->allocator;
    sae_encoder *enc = NULL;
    float *f = sae__alloc_array(al, (size_t)(2 * F), sizeof(float));
    float *w = sae__alloc_array(al, (size_t)F, sizeof(float));
    float *dirs = model_directions(dict, al);
    uint8_t *pick = sae__alloc_array(al, (size_t)F, 1);
    double *r = sae__alloc_array(al, (size_t)d, sizeof(double));
    if (!f || !w || !dirs || !pick || !r) {
        s = SAE_ENOMEM;
        goto done;
    }
    sae_encoder_options eo = SAE_ENCODER_OPTIONS_INIT;
    eo.n_threads = 1;
    eo.allocator = al;
    if ((s = sae_encoder_create(&enc, dict, &eo)))
        goto done;
    float *fc = f + F;
    for (int64_t row = 0; row < n; row++) {
        const float *x = a + row * lda, *xc = a_cf + row * ldcf;
        if ((s = sae_encoder_encode(enc, 1, x, d, f, F, NULL, 0)) ||
            (s = sae_encoder_encode(enc, 1, xc, d, fc, F, NULL, 0)))
            goto done;
        memset(pick, 0, (size_t)F);
        if (method == SAE_EXCHANGE_F1) {
            /* Removed R: active in a, best for the current value (target 0); inserted I: active
             * in a', best for the new value (target f'_j). pick: 1 = R only, 2 = I. */
            top_active(pick, 1, f1_from + row * ld_f1, f, F, n_exchange);
            top_active(pick, 2, f1_to + row * ld_f1, fc, F, n_exchange);
        } else {
            for (int64_t i = 0; i < d; i++)
                r[i] = -((double)xc[i] - x[i]);
            greedy_pick(pick, f, fc, dirs, F, d, n_exchange, r);
        }
        /* out = a + Σ_{j∈S} (t_j − f_j) d~_j; t_j = 0 for removed-only features, f'_j else. */
        float *o = out + row * ldo;
        memcpy(o, x, (size_t)d * sizeof(float));
        for (int64_t j = 0; j < F; j++) {
            if (!pick[j])
                continue;
            double t = method == SAE_EXCHANGE_F1 && pick[j] == 1 ? 0.0 : (double)fc[j];
            double delta = t - f[j];
            for (int64_t i = 0; i < d; i++)
                o[i] += (float)(delta * dirs[j * d + i]);
        }
        if (removed) {
            row_weights(w, f, dirs, F, d, r);
            double sum = 0.0;
            for (int64_t j = 0; j < F; j++)
                sum += pick[j] ? w[j] : 0.0;
            removed[row] = (float)sum;
        }
    }
done:
    sae_encoder_free(enc);
    sae__free(al, f);
    sae__free(al, w);
    sae__free(al, dirs);
    sae__free(al, pick);
    sae__free(al, r);
    return s;
}
