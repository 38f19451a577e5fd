/* test_graph_llama2.c: feature circuits on stories260K (the llama2.c host), where the metric is
 * not linear in the activations: integrated gradients converge to the exact effect of patching
 * a hook point as the number of steps grows (with a bound), the three methods rank nodes alike,
 * and edges agree with finite differences of the forward pass with the other circuit hooks
 * frozen. Prompt pairs: "… a little girl named Lily." → " She" against the boy's version
 * "… a little boy named Tim." → " He", and the reverse (two pairs keep the test short).
 * SAEs: random ReLU dictionaries (the properties tested hold for any dictionary). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_util.h"
#include "llama2.h"
#include "test_util.h"

enum { NH = 2, F = 96, MAXTOK = 64, MAXP = 6 };

static const char *const TEXTS[][2] = {
    {"Once upon a time, there was a little girl named Lily.",
     "Once upon a time, there was a little boy named Tim."},
    {"Once upon a time, there was a little boy named Tim.",
     "Once upon a time, there was a little girl named Lily."},
};
#define N_PAIRS ((int64_t)(sizeof TEXTS / sizeof TEXTS[0]))

typedef struct {
    llama2_model *m;
    llama2_tokenizer *tok;
    sae_host host;
    int32_t hooks[NH];
    sae_dict *dicts[NH];
    int64_t offsets[N_PAIRS + 1];
    int32_t clean[N_PAIRS * MAXTOK], patch[N_PAIRS * MAXTOK], ca[N_PAIRS], pa[N_PAIRS];
    sae_prompt_pairs pairs;
} fixture;

/* The single token of " word" after a prompt (the answers " She", " He"). */
static int32_t answer_token(const llama2_tokenizer *t, const char *word)
{
    int32_t ids[8];
    int64_t n = 0;
    /* The tokenizer adds a dummy-prefix space: "She" encodes as " She". */
    assert_sae_ok(llama2_tokenizer_encode(t, word, 0, 0, ids, 8, &n));
    assert_int_equal(n, 1);
    return ids[0];
}

static void setup(fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    if (llama2_model_load(&fx->m, shared_path("data/stories260K.bin"), test_allocator()) ||
        llama2_tokenizer_load(&fx->tok, shared_path("data/tok512.bin"), 512, test_allocator()))
        fail_msg("loading stories260K: %s", llama2_last_error());
    llama2_model_host(fx->m, &fx->host);
    const int32_t she = answer_token(fx->tok, "She"), he = answer_token(fx->tok, "He");
    for (int64_t i = 0; i < N_PAIRS; i++) {
        int64_t nc = 0, np = 0, at = fx->offsets[i];
        assert_sae_ok(llama2_tokenizer_encode(fx->tok, TEXTS[i][0], 1, 0, fx->clean + at,
                                              MAXTOK, &nc));
        assert_sae_ok(llama2_tokenizer_encode(fx->tok, TEXTS[i][1], 1, 0, fx->patch + at,
                                              MAXTOK, &np));
        assert_int_equal(nc, np);
        fx->offsets[i + 1] = at + nc;
        const int girl = strstr(TEXTS[i][0], "girl") != NULL;
        fx->ca[i] = girl ? she : he, fx->pa[i] = girl ? he : she;
    }
    fx->pairs = (sae_prompt_pairs)SAE_PROMPT_PAIRS_INIT;
    fx->pairs.n_pairs = N_PAIRS, fx->pairs.offsets = fx->offsets;
    fx->pairs.clean_tokens = fx->clean, fx->pairs.patch_tokens = fx->patch;
    fx->pairs.clean_answers = fx->ca, fx->pairs.patch_answers = fx->pa;
    const char *names[NH] = {"resid_post.1", "resid_post.3"};
    for (int k = 0; k < NH; k++) {
        assert_sae_ok(sae_host_find_hook(&fx->hooks[k], &fx->host, names[k]));
        fx->dicts[k] = random_dict(SAE_ARCH_STANDARD, fx->host.d_model, F, 0, SAE_NORM_NONE, 1.0f,
                                   0.5f, 40 + k);
    }
}

static void teardown(fixture *fx)
{
    for (int k = 0; k < NH; k++)
        sae_dict_free(fx->dicts[k]);
    llama2_tokenizer_free(fx->tok);
    llama2_model_free(fx->m);
}

static sae_graph *attribute(fixture *fx, int method, int steps, uint32_t flags, float node_thr)
{
    sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
    o.method = method, o.ig_steps = steps, o.flags = flags, o.node_threshold = node_thr;
    o.edge_threshold = 0.0f, o.allocator = test_allocator();
    sae_graph *g = NULL;
    assert_sae_ok(sae_graph_attribute(&g, &fx->host, fx->hooks, (const sae_dict *const *)fx->dicts,
                                      NH, &fx->pairs, &o));
    return g;
}

/* Sets hook `hook` to `x` ((T, d) rows) in a forward. */
typedef struct {
    int32_t hook;
    const float *x;
    int64_t d;
} set_hook;

static sae_status set_fn(void *user, int32_t id, float *x, int64_t n, int64_t ld)
{
    const set_hook *s = user;
    if (id == s->hook)
        for (int64_t r = 0; r < n; r++)
            memcpy(x + r * ld, s->x + r * s->d, (size_t)s->d * sizeof(float));
    return SAE_OK;
}

/* Mean over pairs of m(patch activations at hook) − m(clean): the exact effect of patching the
 * whole hook point, which the effects of its nodes add up to as IG's steps grow. */
static double hook_patch_effect(fixture *fx, int32_t hook)
{
    double clean[N_PAIRS], total = 0.0;
    pair_metrics(&fx->host, &fx->pairs, NULL, NULL, clean);
    for (int64_t i = 0; i < N_PAIRS; i++) {
        float *xp = pair_activations(&fx->host, &fx->pairs, i, 1, hook);
        set_hook s = {hook, xp, fx->host.d_model};
        int64_t off[2] = {0, fx->offsets[i + 1] - fx->offsets[i]};
        sae_prompt_pairs one = fx->pairs;
        one.n_pairs = 1, one.offsets = off, one.clean_tokens = fx->clean + fx->offsets[i];
        one.patch_tokens = fx->patch + fx->offsets[i];
        one.clean_answers = fx->ca + i, one.patch_answers = fx->pa + i;
        double m = 0.0;
        pair_metrics(&fx->host, &one, set_fn, &s, &m);
        total += (m - clean[i]) / N_PAIRS;
        test_free(xp);
    }
    return total;
}

static double hook_sum(const sae_graph *g, int32_t k)
{
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
    assert_sae_ok(sae_graph_get_arrays(g, &a));
    double s = 0.0;
    for (int64_t i = 0; i < a.n_nodes; i++)
        if (a.node_hooks[i] == k)
            s += a.node_effects[i];
    return s;
}

/* IG's node effects at a hook add up to the exact effect of patching the hook whole, up to
 * the error of IG's Riemann sum, which must shrink at least like 1/N (measured: faster, about
 * 1/N², e.g. 1.48 at N = 1, 0.15 at 4, 0.0094 at 16 against an effect of -11.34), and be below
 * 0.2% of the effect at N = 16. N = 1 is attribution patching. */
static void test_ig_converges(void **state)
{
    fixture fx;
    setup(&fx);
    const int steps[] = {1, 4, 16};
    sae_graph *g[3];
    for (int s = 0; s < 3; s++)
        g[s] = attribute(&fx, steps[s] == 1 ? SAE_GRAPH_ATP : SAE_GRAPH_IG, steps[s],
                         SAE_GRAPH_NO_EDGES, 0.1f);
    for (int k = 0; k < NH; k++) {
        const double want = hook_patch_effect(&fx, fx.hooks[k]);
        double err[3];
        for (int s = 0; s < 3; s++) {
            err[s] = fabs(hook_sum(g[s], k) - want);
            print_message("%s, N = %2d: sum of node effects %.5f, patching the hook %.5f, "
                          "error %.5f\n", fx.host.hook_names[fx.hooks[k]], steps[s],
                          hook_sum(g[s], k), want, err[s]);
        }
        assert_true(err[2] <= err[1] / 4.0);
        assert_true(err[2] <= 2e-3 * fabs(want));
        assert_true(err[1] <= err[0]);
    }
    for (int s = 0; s < 3; s++)
        sae_graph_free(g[s]);
    teardown(&fx);
}

/* Records hook `hook` into rec and adds delta · eps at hook `at`. */
typedef struct {
    int32_t at, hook;
    const float *delta;
    float eps;
    float *rec;
    int64_t d;
} probe;

static sae_status probe_fn(void *user, int32_t id, float *x, int64_t n, int64_t ld)
{
    const probe *p = user;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < p->d; i++) {
            if (id == p->at)
                x[r * ld + i] += p->eps * p->delta[r * p->d + i];
            if (id == p->hook)
                p->rec[r * p->d + i] = x[r * ld + i];
        }
    return SAE_OK;
}

/* Σ_r fg[r] f_k(x_b[r]) (feature k) or Σ_r <G[r], ε(x_b[r])> (k < 0) after a forward with
 * eps · delta added at hook a: the downstream node weighted by its gradient. */
static double node_value(fixture *fx, sae_encoder *enc, int64_t i, probe *p, float eps, int k,
                         const float *fg, const float *G)
{
    const int64_t T = fx->offsets[i + 1] - fx->offsets[i], D = fx->host.d_model;
    float f[F], xh[64];
    p->eps = eps;
    assert_sae_ok(sae_host_forward(&fx->host, fx->clean + fx->offsets[i], 1, T, NULL, probe_fn,
                                   p));
    double v = 0.0;
    for (int64_t t = 0; t < T; t++) {
        const float *x = p->rec + t * D;
        if (k >= 0) {
            assert_sae_ok(sae_encoder_encode(enc, 1, x, D, f, F, NULL, 0));
            v += (double)fg[t] * f[k];
        } else {
            assert_sae_ok(sae_encoder_reconstruct(enc, 1, x, D, xh, D, NULL, 0));
            for (int64_t j = 0; j < D; j++)
                v += (double)G[t * D + j] * (x[j] - xh[j]);
        }
    }
    return v;
}

/* The largest edges of an attribution-patching circuit from resid_post.1 to resid_post.3 (two
 * layers of direct path) against Richardson-extrapolated central differences of the forward:
 * w(u -> d) = d/de [node d after x_1 += e Δu] at e = 0, the node weighted by the gradient of
 * the metric at it, averaged over the pairs. The step is small (0.002 Δu) so that no ReLU of
 * the SAEs changes state within it: at 0.02 Δu one edge was off by 7%. Measured worst error:
 * 7e-5 of the largest edge. */
static void test_edges_finite_differences(void **state)
{
    fixture fx;
    setup(&fx);
    sae_graph *g = attribute(&fx, SAE_GRAPH_ATP, 0, 0, 0.3f);
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
    assert_sae_ok(sae_graph_get_arrays(g, &a));
    int64_t top[4], n_top = 0;
    assert_sae_ok(sae_graph_top_edges(top, &n_top, g, 4));
    assert_int_equal(n_top, 4);
    const int64_t D = fx.host.d_model;
    sae_encoder *enc[NH];
    for (int k = 0; k < NH; k++)
        assert_sae_ok(sae_encoder_create(&enc[k], fx.dicts[k], NULL));
    sae_dict_weights w1 = SAE_DICT_WEIGHTS_INIT, w3 = SAE_DICT_WEIGHTS_INIT;
    assert_sae_ok(sae_dict_get_weights(fx.dicts[0], &w1));
    assert_sae_ok(sae_dict_get_weights(fx.dicts[1], &w3));
    double worst = 0.0;
    for (int64_t e = 0; e < n_top; e++) {
        const int64_t u = a.edge_sources[top[e]], d = a.edge_targets[top[e]];
        const int ju = a.node_features[u], kd = a.node_features[d];
        double want = 0.0;
        for (int64_t i = 0; i < N_PAIRS; i++) {
            const int64_t T = fx.offsets[i + 1] - fx.offsets[i];
            float *xc = pair_activations(&fx.host, &fx.pairs, i, 0, fx.hooks[0]);
            float *xp = pair_activations(&fx.host, &fx.pairs, i, 1, fx.hooks[0]);
            float *delta = test_malloc((size_t)(T * D) * sizeof(float));
            float *rec = test_malloc((size_t)(T * D) * sizeof(float));
            float *G = test_malloc((size_t)(T * D) * sizeof(float));
            float fg[MAXTOK], fc[F], fp[F], xh[64], xph[64];
            /* Δu: the change of the upstream node, row by row (no rescaling: d~_j = W_dec[j]). */
            for (int64_t t = 0; t < T; t++) {
                float *dr = delta + t * D;
                if (ju >= 0) {
                    assert_sae_ok(sae_encoder_encode(enc[0], 1, xc + t * D, D, fc, F, NULL, 0));
                    assert_sae_ok(sae_encoder_encode(enc[0], 1, xp + t * D, D, fp, F, NULL, 0));
                    for (int64_t j = 0; j < D; j++)
                        dr[j] = (fp[ju] - fc[ju]) * w1.W_dec[ju * D + j];
                } else {
                    assert_sae_ok(
                        sae_encoder_reconstruct(enc[0], 1, xc + t * D, D, xh, D, NULL, 0));
                    assert_sae_ok(
                        sae_encoder_reconstruct(enc[0], 1, xp + t * D, D, xph, D, NULL, 0));
                    for (int64_t j = 0; j < D; j++)
                        dr[j] = (xp[t * D + j] - xph[j]) - (xc[t * D + j] - xh[j]);
                }
            }
            /* The gradient of the metric at resid_post.3 on the clean run. */
            float *logits = test_malloc((size_t)(T * 512) * sizeof(float));
            float *dlog = test_calloc((size_t)(T * 512), sizeof(float));
            float *grads[20] = {NULL};
            grads[fx.hooks[1]] = G;
            assert_sae_ok(sae_host_forward(&fx.host, fx.clean + fx.offsets[i], 1, T, logits, NULL,
                                           NULL));
            dlog[(T - 1) * 512 + fx.ca[i]] = 1.0f, dlog[(T - 1) * 512 + fx.pa[i]] = -1.0f;
            assert_sae_ok(sae_host_backward(&fx.host, 1, T, dlog, grads, NULL));
            for (int64_t t = 0; t < T && kd >= 0; t++) {
                double s = 0.0;
                for (int64_t j = 0; j < D; j++)
                    s += (double)G[t * D + j] * w3.W_dec[kd * D + j];
                fg[t] = (float)s;
            }
            probe p = {fx.hooks[0], fx.hooks[1], delta, 0.0f, rec, D};
            const float h = 0.002f;
            double d1 = (node_value(&fx, enc[1], i, &p, h, kd, fg, G) -
                         node_value(&fx, enc[1], i, &p, -h, kd, fg, G)) / (2.0 * h);
            double d2 = (node_value(&fx, enc[1], i, &p, 2 * h, kd, fg, G) -
                         node_value(&fx, enc[1], i, &p, -2 * h, kd, fg, G)) / (4.0 * h);
            want += (4.0 * d1 - d2) / 3.0 / N_PAIRS;
            float *bufs[] = {xc, xp, delta, rec, G, logits, dlog};
            for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
                test_free(bufs[b]);
        }
        const double got = a.edge_weights[top[e]];
        const double err = fabs(got - want) / fabs(a.edge_weights[top[0]]);
        print_message("edge %d -> %d: graph %.5f, finite differences %.5f\n", ju, kd, got, want);
        worst = fmax(worst, err);
    }
    print_message("worst error relative to the largest edge: %.3g\n", worst);
    assert_true(worst < 1e-3);
    for (int k = 0; k < NH; k++)
        sae_encoder_free(enc[k]);
    sae_graph_free(g);
    teardown(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ig_converges),
        cmocka_unit_test(test_edges_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
