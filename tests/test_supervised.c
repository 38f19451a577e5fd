/* test_supervised.c: supervised dictionaries and the Makelov metrics on constructed data with
 * known answers: mean codes against conditional means computed here; the LAPACK least squares
 * against its naive twin (normal equations with a Jacobi pseudo-inverse) on rank-deficient
 * designs; least-squares codes satisfying the normal equations and equal to the mean codes on a
 * balanced factorial design; edits, weights and the decoder-only dict with steer patches; F1
 * tables, top features, feature weights and exchange edits on hand-made codes; the host runs
 * and approximation scores with a small linear host; bad inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "supervised/supervised_internal.h"
#include "test_util.h"

enum { D = 7, N = 90, NA = 3 };
static const int32_t NV[NA] = {4, 3, 2}; /* n_codes = 9 */

/* Labels: attribute 0 cycles with a skew (unbalanced), 1 pseudo-random, 2 a function of 0 (a
 * dependent attribute, as gender is of a name). */
static void make_labels(int32_t *labels, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t a0 = (int32_t)(i % 7);
        labels[i * NA] = a0 < 4 ? a0 : a0 - 4;
        labels[i * NA + 1] = (int32_t)((i * 5 + i / 3) % 3);
        labels[i * NA + 2] = labels[i * NA] < 2;
    }
}

/* Additive activations plus noise: x_i = c + Σ_A t_{A,v} + ε. */
static void make_acts(float *x, const int32_t *labels, int64_t n, uint64_t seed, float noise)
{
    float table[9 * D], bias[D], eps[N * D];
    fill_normal(table, 9 * D, seed, 1.0f);
    fill_normal(bias, D, seed + 1, 1.0f);
    fill_normal(eps, n * D, seed + 2, noise);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < D; j++) {
            float v = bias[j] + eps[i * D + j];
            for (int a = 0, c0 = 0; a < NA; c0 += NV[a], a++)
                v += table[(c0 + labels[i * NA + a]) * D + j];
            x[i * D + j] = v;
        }
}

static sae_supervised *build(const float *x, const int32_t *labels, int64_t n, int32_t method)
{
    sae_supervised_options o = SAE_SUPERVISED_OPTIONS_INIT;
    o.method = method;
    o.allocator = test_allocator();
    sae_supervised *sup = NULL;
    assert_sae_ok(sae_supervised_create(&sup, x, n, D, D, labels, NA, NA, NV, &o));
    return sup;
}

static void test_mean_codes_are_conditional_means(void **state)
{
    (void)state;
    int32_t labels[N * NA];
    float x[N * D];
    make_labels(labels, N);
    make_acts(x, labels, N, 11, 0.5f);
    sae_supervised *sup = build(x, labels, N, SAE_SUPERVISED_MEAN);
    assert_int_equal(sae_supervised_n_codes(sup), 9);
    assert_int_equal(sae_supervised_code_index(sup, 1, 2), 6);
    assert_int_equal(sae_supervised_code_index(sup, 3, 0), -1);
    double mean[D] = {0};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            mean[j] += x[i * D + j] / (double)N;
    float want_bias[D];
    for (int j = 0; j < D; j++)
        want_bias[j] = (float)mean[j];
    assert_close_f32(sae_supervised_bias(sup), want_bias, D, 1e-5, 1e-5, "bias = E[a]");
    for (int a = 0; a < NA; a++)
        for (int v = 0; v < NV[a]; v++) {
            double sum[D] = {0};
            int count = 0;
            for (int i = 0; i < N; i++)
                if (labels[i * NA + a] == v) {
                    count++;
                    for (int j = 0; j < D; j++)
                        sum[j] += x[i * D + j];
                }
            assert_true(count > 0);
            float want[D];
            for (int j = 0; j < D; j++)
                want[j] = (float)(sum[j] / count - mean[j]);
            int64_t c = sae_supervised_code_index(sup, a, v);
            assert_close_f32(sae_supervised_codes(sup) + c * D, want, D, 1e-5, 1e-5,
                             "u_{A,v} = E[a | A=v] - E[a]");
        }
    sae_supervised_free(sup);

    /* A value no row has gets the zero code. */
    int32_t few[4 * NA] = {0, 0, 0, 1, 1, 0, 0, 2, 1, 1, 0, 0};
    sae_supervised_options o = SAE_SUPERVISED_OPTIONS_INIT;
    o.allocator = test_allocator();
    assert_sae_ok(sae_supervised_create(&sup, x, 4, D, D, few, NA, NA, NV, &o));
    float zero[D] = {0};
    assert_close_f32(sae_supervised_codes(sup) + 2 * D, zero, D, 0, 0, "absent value 2");
    sae_supervised_free(sup);
}

/* The LAPACK solve against the naive twin: a full-rank random matrix with k right-hand sides,
 * and the rank-deficient one-hot design of the labels (bias + 9 columns, rank 7). */
static void test_lstsq_matches_direct_solve(void **state)
{
    (void)state;
    enum { M = 40, P = 6, K = 3 };
    double A[M * P], B[M * K], X[P * K], Xr[P * K];
    float tmp[M * P + M * K];
    fill_normal(tmp, M * P + M * K, 5, 1.0f);
    for (int i = 0; i < M * P; i++)
        A[i] = tmp[i];
    for (int i = 0; i < M * K; i++)
        B[i] = tmp[M * P + i];
    int64_t rank = 0;
    assert_sae_ok(sae__lstsq_min_norm(X, K, A, P, B, K, M, P, K, test_allocator(), &rank));
    assert_int_equal(rank, P);
    assert_sae_ok(sae__lstsq_min_norm_ref(Xr, K, A, P, B, K, M, P, K, test_allocator()));
    for (int i = 0; i < P * K; i++)
        assert_true(fabs(X[i] - Xr[i]) < 1e-9 * (1 + fabs(Xr[i])));

    int32_t labels[N * NA];
    float x[N * D];
    make_labels(labels, N);
    make_acts(x, labels, N, 12, 0.3f);
    enum { PC = 10 };
    static double C[N * PC], Y[N * D], U[PC * D], Ur[PC * D];
    memset(C, 0, sizeof C);
    for (int i = 0; i < N; i++) {
        C[i * PC] = 1;
        for (int a = 0, c0 = 0; a < NA; c0 += NV[a], a++)
            C[i * PC + 1 + c0 + labels[i * NA + a]] = 1;
        for (int j = 0; j < D; j++)
            Y[i * D + j] = x[i * D + j];
    }
    assert_sae_ok(sae__lstsq_min_norm(U, D, C, PC, Y, D, N, PC, D, test_allocator(), &rank));
    /* Rank 6 of 10 columns: the bias is the sum of attribute 0's columns and of attribute 1's,
     * and attribute 2's two columns are sums of attribute 0's. */
    assert_int_equal(rank, 6);
    assert_sae_ok(sae__lstsq_min_norm_ref(Ur, D, C, PC, Y, D, N, PC, D, test_allocator()));
    for (int i = 0; i < PC * D; i++)
        assert_true(fabs(U[i] - Ur[i]) < 1e-8 * (1 + fabs(Ur[i])));
}

/* Least-squares codes: the residual is orthogonal to every design column (normal equations),
 * each attribute's codes have zero row-weighted mean, and they fit better than mean codes. */
static void test_lstsq_codes(void **state)
{
    (void)state;
    int32_t labels[N * NA];
    float x[N * D], rec[N * D], rec_mean[N * D];
    make_labels(labels, N);
    make_acts(x, labels, N, 13, 0.5f);
    sae_supervised *sup = build(x, labels, N, SAE_SUPERVISED_LSTSQ);
    sae_supervised *mean = build(x, labels, N, SAE_SUPERVISED_MEAN);
    assert_sae_ok(sae_supervised_reconstruct(sup, rec, D, labels, NA, N));
    assert_sae_ok(sae_supervised_reconstruct(mean, rec_mean, D, labels, NA, N));
    double err = 0, err_mean = 0;
    for (int j = 0; j < D; j++) {
        double total = 0;
        for (int i = 0; i < N; i++) {
            total += rec[i * D + j] - x[i * D + j];
            err += pow(rec[i * D + j] - x[i * D + j], 2);
            err_mean += pow(rec_mean[i * D + j] - x[i * D + j], 2);
        }
        assert_true(fabs(total) < 1e-3);
        for (int c = 0; c < 9; c++) {
            double col = 0;
            for (int i = 0; i < N; i++)
                for (int a = 0, c0 = 0; a < NA; c0 += NV[a], a++)
                    if (c0 + labels[i * NA + a] == c)
                        col += rec[i * D + j] - x[i * D + j];
            assert_true(fabs(col) < 1e-3);
        }
        for (int a = 0, c0 = 0; a < NA; c0 += NV[a], a++) {
            double w = 0;
            for (int i = 0; i < N; i++)
                w += sae_supervised_codes(sup)[(c0 + labels[i * NA + a]) * D + j];
            assert_true(fabs(w) < 1e-3);
        }
    }
    assert_true(err < err_mean); /* mean codes double-count the dependent attribute */
    sae_supervised_free(sup);
    sae_supervised_free(mean);
}

/* A balanced full-factorial design (4 x 3 values, each cell 3 times): both methods agree. */
static void test_balanced_design_methods_agree(void **state)
{
    (void)state;
    enum { NB = 36, NAB = 2 };
    static const int32_t nvb[NAB] = {4, 3};
    int32_t labels[NB * NAB];
    float x[NB * D];
    for (int i = 0; i < NB; i++) {
        labels[i * NAB] = (i / 3) % 4;
        labels[i * NAB + 1] = i / 12;
    }
    fill_normal(x, NB * D, 21, 1.0f);
    sae_supervised_options o = SAE_SUPERVISED_OPTIONS_INIT;
    o.allocator = test_allocator();
    sae_supervised *m = NULL, *l = NULL;
    assert_sae_ok(sae_supervised_create(&m, x, NB, D, D, labels, NAB, NAB, nvb, &o));
    o.method = SAE_SUPERVISED_LSTSQ;
    assert_sae_ok(sae_supervised_create(&l, x, NB, D, D, labels, NAB, NAB, nvb, &o));
    assert_close_f32(sae_supervised_bias(l), sae_supervised_bias(m), D, 1e-5, 1e-4, "bias");
    assert_close_f32(sae_supervised_codes(l), sae_supervised_codes(m), 7 * D, 1e-5, 1e-4,
                     "codes");
    sae_supervised_free(m);
    sae_supervised_free(l);
}

/* Edit = the difference of reconstructions; weights sum to 1; the decoder-only dict's steer
 * patches perform the same edit. */
static void test_edit_weights_and_dict(void **state)
{
    (void)state;
    int32_t labels[N * NA];
    float x[N * D];
    make_labels(labels, N);
    make_acts(x, labels, N, 14, 0.5f);
    sae_supervised *sup = build(x, labels, N, SAE_SUPERVISED_MEAN);
    enum { R = 5 };
    int32_t lab2[R * NA], from[R], to[R];
    float rec[R * D], rec2[R * D], edited[R * D], w[R * NA];
    memcpy(lab2, labels, sizeof lab2);
    for (int i = 0; i < R; i++) {
        from[i] = labels[i * NA + 1];
        to[i] = lab2[i * NA + 1] = (from[i] + 1) % 3;
    }
    assert_sae_ok(sae_supervised_reconstruct(sup, rec, D, labels, NA, R));
    assert_sae_ok(sae_supervised_reconstruct(sup, rec2, D, lab2, NA, R));
    memcpy(edited, x, sizeof edited);
    assert_sae_ok(sae_supervised_edit(sup, edited, D, R, 1, from, to));
    for (int i = 0; i < R * D; i++)
        assert_true(fabsf(edited[i] - x[i] - (rec2[i] - rec[i])) < 1e-5f);
    assert_sae_ok(sae_supervised_weights(sup, w, NA, labels, NA, R));
    for (int i = 0; i < R; i++)
        assert_true(fabsf(w[i * NA] + w[i * NA + 1] + w[i * NA + 2] - 1.0f) < 1e-5f);

    sae_dict *dict = NULL;
    assert_sae_ok(sae_supervised_to_dict(sup, &dict, test_allocator()));
    assert_int_equal(sae_dict_d_sae(dict), 9);
    sae_patch_options po = SAE_PATCH_OPTIONS_INIT;
    po.allocator = test_allocator();
    for (int i = 0; i < R; i++) {
        sae_patch *p[2];
        assert_sae_ok(sae_patch_create_steer(
            &p[0], dict, (int32_t)sae_supervised_code_index(sup, 1, to[i]), 1.0f, 0, &po));
        assert_sae_ok(sae_patch_create_steer(
            &p[1], dict, (int32_t)sae_supervised_code_index(sup, 1, from[i]), -1.0f, 0, &po));
        float row[D];
        memcpy(row, x + i * D, sizeof row);
        assert_sae_ok(sae_patch_apply_list(p, 2, row, 1, D));
        assert_close_f32(row, edited + i * D, D, 1e-5, 1e-5, "steer = supervised edit");
        sae_patch_free(p[0]);
        sae_patch_free(p[1]);
    }
    /* A bad value leaves x unchanged. */
    int32_t bad[R] = {0, 0, 3, 0, 0};
    float copy[R * D];
    memcpy(copy, x, sizeof copy);
    assert_int_equal(sae_supervised_edit(sup, copy, D, R, 1, from, bad), SAE_ERANGE);
    assert_memory_equal(copy, x, sizeof copy);
    sae_dict_free(dict);
    sae_supervised_free(sup);
}

/* 8 rows, one binary attribute (rows 0-3 value 0), 4 features with known tables. */
static void test_f1_tables(void **state)
{
    (void)state;
    enum { R = 8, FF = 4 };
    static const int32_t nv[1] = {2};
    int32_t labels[R];
    float codes[R * FF] = {0};
    for (int i = 0; i < R; i++) {
        labels[i] = i >= 4;
        codes[i * FF + 0] = i < 4 ? 1.5f : 0.0f;  /* exactly value 0 */
        codes[i * FF + 1] = 0.25f;                 /* every row */
        codes[i * FF + 2] = i < 2 ? 2.0f : 0.0f;   /* half of value 0 */
        codes[i * FF + 3] = i == 5 ? -1.0f : 0.0f; /* never positive */
    }
    float p[2 * FF], r[2 * FF], f1[2 * FF];
    assert_sae_ok(sae_feature_f1(p, r, f1, FF, codes, FF, R, FF, labels, 1, 1, nv,
                                 test_allocator()));
    const float wp[2 * FF] = {1, 0.5f, 1, 0, 0, 0.5f, 0, 0};
    const float wr[2 * FF] = {1, 1, 0.5f, 0, 0, 1, 0, 0};
    const float wf[2 * FF] = {1, 2 / 3.0f, 2 / 3.0f, 0, 0, 2 / 3.0f, 0, 0};
    assert_close_f32(p, wp, 2 * FF, 1e-6, 0, "precision");
    assert_close_f32(r, wr, 2 * FF, 1e-6, 0, "recall");
    assert_close_f32(f1, wf, 2 * FF, 1e-6, 0, "F1");
    int32_t ids[2 * 3];
    float vals[2 * 3];
    assert_sae_ok(sae_feature_f1_top(ids, vals, 3, f1, FF, 2, FF, 3));
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1); /* tie at 2/3: lower id first */
    assert_int_equal(ids[2], 2);
    assert_int_equal(ids[3], 1);
    assert_true(fabsf(vals[3] - 2 / 3.0f) < 1e-6f);
    assert_int_equal(sae_feature_f1_top(ids, vals, 3, f1, FF, 2, FF, 5), SAE_EINVAL);
    labels[3] = 2;
    assert_int_equal(sae_feature_f1(p, r, f1, FF, codes, FF, R, FF, labels, 1, 1, nv, NULL),
                     SAE_ERANGE);
}

/* An SAE whose features are the axes (W_enc = W_dec = I, ReLU): codes are the positive parts. */
static sae_dict *axis_dict(void)
{
    enum { DD = 4 };
    float I[DD * DD] = {0};
    for (int i = 0; i < DD; i++)
        I[i * DD + i] = 1.0f;
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.d_in = DD;
    c.d_sae = DD;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = I;
    w.W_dec = I;
    sae_dict *d = NULL;
    assert_sae_ok(sae_dict_create(&d, &c, &w, test_allocator()));
    return d;
}

static void test_weights_and_exchange(void **state)
{
    (void)state;
    sae_dict *dict = axis_dict();
    const float a[4] = {1, 0, 2, 0}, a_cf[4] = {0, 3, 0, 0};
    float w[4];
    assert_sae_ok(sae_feature_weights(w, 4, dict, a, 4, 1));
    const float ww[4] = {0.2f, 0, 0.8f, 0};
    assert_close_f32(w, ww, 4, 1e-6, 0, "w_j = f_j <d_j, y> / ||y||^2");

    /* F1: remove the active feature best for the old value (0), insert the one best for the
     * new value among those active in a' (1). */
    const float f1_from[4] = {0.9f, 0.1f, 0.5f, 0}, f1_to[4] = {0, 0.7f, 0, 0.9f};
    float out[4], removed;
    assert_sae_ok(sae_feature_exchange(out, 4, &removed, dict, a, 4, a_cf, 4, 1,
                                       SAE_EXCHANGE_F1, 1, f1_from, f1_to, 4));
    const float want_f1[4] = {0, 3, 2, 0};
    assert_close_f32(out, want_f1, 4, 1e-6, 0, "F1 exchange");
    assert_true(fabsf(removed - 0.2f) < 1e-6f);

    /* Greedy: one step takes the feature that moves furthest towards a' - a = (-1, 3, -2, 0);
     * enough steps reach a' exactly, and extra steps stop when nothing is left to change. */
    assert_sae_ok(sae_feature_exchange(out, 4, &removed, dict, a, 4, a_cf, 4, 1,
                                       SAE_EXCHANGE_GREEDY, 1, NULL, NULL, 0));
    const float want_g1[4] = {1, 3, 2, 0};
    assert_close_f32(out, want_g1, 4, 1e-6, 0, "greedy, 1 step");
    assert_true(fabsf(removed) < 1e-6f);
    assert_sae_ok(sae_feature_exchange(out, 4, &removed, dict, a, 4, a_cf, 4, 1,
                                       SAE_EXCHANGE_GREEDY, 10, NULL, NULL, 0));
    assert_close_f32(out, a_cf, 4, 1e-6, 0, "greedy, all steps");
    assert_true(fabsf(removed - 1.0f) < 1e-6f);
    assert_int_equal(sae_feature_exchange(out, 4, NULL, dict, a, 4, a_cf, 4, 1, SAE_EXCHANGE_F1,
                                          1, NULL, NULL, 4), SAE_EINVAL);
    sae_dict_free(dict);
}

/* ---- a small linear host: d_model 2, vocab 3, one hook point -------------------------------
 * x_t = E[token_t] (the hook "embed" sees the rows), logits_t = sum_{s <= t} x_s W (causal). */
static const float EMB[3 * 2] = {1, 0, 0, 1, 0.5f, -0.5f};
static const float WOUT[2 * 3] = {1, -1, 0, 2, 1, 0};

static sae_status lin_forward(void *user, const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                              float *logits, sae_hook_fn hook, void *hook_user)
{
    (void)user;
    float x[16 * 2];
    for (int64_t i = 0; i < n_seq * seq_len; i++)
        memcpy(x + 2 * i, EMB + 2 * tokens[i], sizeof(float) * 2);
    if (hook) {
        sae_status s = hook(hook_user, 0, x, n_seq * seq_len, 2);
        if (s)
            return s;
    }
    for (int64_t sq = 0; sq < n_seq; sq++) {
        float acc[2] = {0, 0};
        for (int64_t t = 0; t < seq_len; t++) {
            const float *r = x + 2 * (sq * seq_len + t);
            acc[0] += r[0];
            acc[1] += r[1];
            for (int v = 0; v < 3 && logits; v++)
                logits[(sq * seq_len + t) * 3 + v] = acc[0] * WOUT[v] + acc[1] * WOUT[3 + v];
        }
    }
    return SAE_OK;
}

static void test_prompts_and_approximation(void **state)
{
    (void)state;
    static const char *names[1] = {"embed"};
    sae_host host = SAE_HOST_INIT;
    host.n_hooks = 1;
    host.d_model = 2;
    host.vocab_size = 3;
    host.n_layers = 1;
    host.max_seq_len = 16;
    host.hook_names = names;
    host.forward = lin_forward;
    const int32_t tokens[] = {0, 1, 2, 1, 0};
    const int64_t offsets[] = {0, 2, 3, 5};
    const int32_t answer[] = {0, 1, 0}, wrong[] = {1, 0, 2};
    sae_prompts p = SAE_PROMPTS_INIT;
    p.n_prompts = 3;
    p.tokens = tokens;
    p.offsets = offsets;
    p.answer = answer;
    p.wrong = wrong;
    float diffs[3], acts[3 * 2];
    assert_sae_ok(sae_prompts_run(diffs, acts, 2, &host, &p, NULL, 0));
    /* Prompt 0: x = E0 + E1 = (1, 1): logits (3, 0, 0), diff 3 - 0. Node = E1. */
    assert_true(fabsf(diffs[0] - 3.0f) < 1e-6f);
    const float want_acts[6] = {0, 1, 0.5f, -0.5f, 1, 0};
    assert_close_f32(acts, want_acts, 6, 0, 0, "the node (last position)");
    /* Replacing prompt 2's node by E2 changes its sum to (0.5, 0.5) + ... */
    float repl[3 * 2] = {0, 1, 0.5f, -0.5f, 0.5f, -0.5f}, d2[3];
    assert_sae_ok(sae_prompts_run(d2, NULL, 0, &host, &p, repl, 2));
    assert_true(fabsf(d2[0] - diffs[0]) < 1e-6f && fabsf(d2[1] - diffs[1]) < 1e-6f);
    /* sum = E1 + E2 = (0.5, 0.5): logits (1.5, 0, 0): answer 0 - wrong 2 = 1.5 */
    assert_true(fabsf(d2[2] - 1.5f) < 1e-6f);

    /* A perfect reconstruction: sufficiency 1, necessity 0 (a - a + E[a] is mean ablation). */
    sae_approximation ap = SAE_APPROXIMATION_INIT;
    assert_sae_ok(sae_prompts_approximation(&ap, &host, &p, acts, 2, acts, 2, test_allocator()));
    assert_true(fabs(ap.sufficiency - 1.0) < 1e-6 && fabs(ap.necessity) < 1e-6);
    assert_true(fabs(ap.clean - (diffs[0] + diffs[1] + diffs[2]) / 3.0) < 1e-6);
    /* The mean as reconstruction: sufficiency 0, necessity 1. */
    float mean_rows[6];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            mean_rows[i * 2 + j] = (acts[j] + acts[2 + j] + acts[4 + j]) / 3.0f;
    assert_sae_ok(sae_prompts_approximation(&ap, &host, &p, acts, 2, mean_rows, 2, NULL));
    assert_true(fabs(ap.sufficiency) < 1e-5 && fabs(ap.necessity - 1.0) < 1e-5);

    const int64_t bad_offsets[] = {0, 2, 2, 5};
    p.offsets = bad_offsets;
    assert_int_equal(sae_prompts_run(diffs, NULL, 0, &host, &p, NULL, 0), SAE_ESHAPE);
    p.offsets = offsets;
    p.hook_id = 1;
    assert_int_equal(sae_prompts_run(diffs, NULL, 0, &host, &p, NULL, 0), SAE_ERANGE);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    int32_t labels[N * NA];
    float x[N * D];
    make_labels(labels, N);
    make_acts(x, labels, N, 15, 0.5f);
    sae_supervised *sup = (sae_supervised *)1;
    sae_supervised_options o = SAE_SUPERVISED_OPTIONS_INIT;
    o.method = 7;
    assert_int_equal(sae_supervised_create(&sup, x, N, D, D, labels, NA, NA, NV, &o),
                     SAE_EINVAL);
    assert_null(sup);
    labels[5 * NA + 1] = 3;
    assert_int_equal(sae_supervised_create(&sup, x, N, D, D, labels, NA, NA, NV, NULL),
                     SAE_ERANGE);
    assert_true(strstr(sae_last_error(), "row 5") != NULL);
    labels[5 * NA + 1] = 0;
    x[3] = NAN;
    assert_int_equal(sae_supervised_create(&sup, x, N, D, D, labels, NA, NA, NV, NULL),
                     SAE_ENUMERIC);
    assert_int_equal(sae_supervised_create(&sup, x, N, D, D - 1, labels, NA, NA, NV, NULL),
                     SAE_ESHAPE);
    sae_supervised_free(NULL);
    assert_int_equal(sae_supervised_n_codes(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mean_codes_are_conditional_means),
        cmocka_unit_test(test_lstsq_matches_direct_solve),
        cmocka_unit_test(test_lstsq_codes),
        cmocka_unit_test(test_balanced_design_methods_agree),
        cmocka_unit_test(test_edit_weights_and_dict),
        cmocka_unit_test(test_f1_tables),
        cmocka_unit_test(test_weights_and_exchange),
        cmocka_unit_test(test_prompts_and_approximation),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
