/* test_graph.c: feature circuits (graph.h) on the linear test host (tests/support/linear_host.h),
 * where the metric is linear in every hook's activations: attribution patching and integrated
 * gradients equal the exact effects, the effects of a hook sum to the effect of patching it
 * whole, edges equal brute-force forward differences with the other circuit hooks frozen, mean
 * ablation of everything is the run on the mean patch activations, and zero-ablating a node
 * changes the metric by its zero-ablation effect. Also the model-space view of dictionaries
 * against the encoder, the effect kernel against its reference twin, JSON round trips, DOT,
 * pruning, top-n queries, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict_internal.h"
#include "graph/graph_internal.h"
#include "graph_util.h"
#include "linear_host.h"
#include "test_util.h"

enum { LH = 4, LD = 8, LV = 16, LT = 8, LF = 12, NP = 6 };

/* Six pairs of lengths 4 to 6 (two groups of equal length), tokens and answers drawn from a
 * fixed generator; clean and patch prompts differ in two tokens. */
typedef struct {
    int64_t offsets[NP + 1];
    int32_t clean[NP * 6], patch[NP * 6], ca[NP], pa[NP];
    sae_prompt_pairs p;
} pairs_fx;

static void make_pairs(pairs_fx *fx, int equal_lengths, int paired)
{
    static const int lens[NP] = {4, 5, 4, 6, 5, 4};
    sae_rng rng;
    sae_rng_init(&rng, 99, 0);
    fx->offsets[0] = 0;
    for (int i = 0; i < NP; i++) {
        const int len = equal_lengths ? 5 : lens[i];
        fx->offsets[i + 1] = fx->offsets[i] + len;
        for (int t = 0; t < len; t++) {
            int32_t tok = (int32_t)sae_rng_below(&rng, LV);
            fx->clean[fx->offsets[i] + t] = fx->patch[fx->offsets[i] + t] = tok;
        }
        fx->patch[fx->offsets[i] + 1] = (fx->clean[fx->offsets[i] + 1] + 3) % LV;
        fx->patch[fx->offsets[i] + len - 1] = (fx->clean[fx->offsets[i] + len - 1] + 5) % LV;
        fx->ca[i] = (int32_t)sae_rng_below(&rng, LV);
        fx->pa[i] = (fx->ca[i] + 1) % LV;
    }
    fx->p = (sae_prompt_pairs)SAE_PROMPT_PAIRS_INIT;
    fx->p.n_pairs = NP, fx->p.offsets = fx->offsets, fx->p.clean_tokens = fx->clean;
    fx->p.patch_tokens = paired ? fx->patch : NULL;
    fx->p.clean_answers = fx->ca, fx->p.patch_answers = paired ? fx->pa : NULL;
}

/* The linear host and standard dictionaries at every hook (ReLU: about half the codes fire). */
typedef struct {
    linear_host *lh;
    sae_host host;
    sae_dict *dicts[LH];
    int32_t hooks[LH];
} linear_fx;

static void linear_setup(linear_fx *fx)
{
    fx->lh = linear_host_create(LH, LD, LV, LT, 5);
    linear_host_table(fx->lh, &fx->host);
    for (int k = 0; k < LH; k++) {
        fx->dicts[k] = random_dict(SAE_ARCH_STANDARD, LD, LF, 0, SAE_NORM_NONE, 1.0f, 0.1f,
                                   100 + k);
        fx->hooks[k] = k;
    }
}

static void linear_teardown(linear_fx *fx)
{
    for (int k = 0; k < LH; k++)
        sae_dict_free(fx->dicts[k]);
    linear_host_free(fx->lh);
}

static sae_graph *attribute(linear_fx *fx, const sae_prompt_pairs *p, int method, int agg,
                            uint32_t flags, float node_thr, float edge_thr)
{
    sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
    o.method = method, o.aggregation = agg, o.flags = flags, o.ig_steps = 4;
    o.node_threshold = node_thr, o.edge_threshold = edge_thr, o.batch_size = 2;
    o.n_threads = 1, o.allocator = test_allocator();
    sae_graph *g = NULL;
    assert_sae_ok(sae_graph_attribute(&g, &fx->host, fx->hooks, (const sae_dict *const *)fx->dicts,
                                      LH, p, &o));
    return g;
}

static float max_abs_effect(const sae_graph *g)
{
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
    assert_sae_ok(sae_graph_get_arrays(g, &a));
    float m = 0.0f;
    for (int64_t i = 0; i < a.n_nodes; i++)
        m = fmaxf(m, fabsf(a.node_effects[i]));
    return m;
}

/* Every node of a has the effect of the same node in b (absent: 0) within tol, and back. */
static void assert_same_effects(const sae_graph *a, const sae_graph *b, float tol)
{
    const sae_graph *gs[2] = {a, b};
    for (int side = 0; side < 2; side++) {
        sae_graph_arrays x = SAE_GRAPH_ARRAYS_INIT, y = SAE_GRAPH_ARRAYS_INIT;
        assert_sae_ok(sae_graph_get_arrays(gs[side], &x));
        assert_sae_ok(sae_graph_get_arrays(gs[1 - side], &y));
        for (int64_t i = 0; i < x.n_nodes; i++) {
            int64_t j = -1;
            float other = 0.0f;
            if (sae_graph_find_node(&j, gs[1 - side], x.node_hooks[i], x.node_positions[i],
                                    x.node_features[i]) == SAE_OK)
                other = y.node_effects[j];
            if (fabsf(x.node_effects[i] - other) > tol)
                fail_msg("node (hook %d, position %d, feature %d): %g vs %g",
                         x.node_hooks[i], x.node_positions[i], x.node_features[i],
                         (double)x.node_effects[i], (double)other);
        }
    }
}

/* ---- the model-space view ------------------------------------------------------------------ */

/* x_hat = f D~ + b~ against the encoder's reconstruction, and e~_j against central differences
 * of the encoder's codes (where the code stays active), for each affine architecture. */
static void test_model_space(void **state)
{
    const struct { int32_t arch; uint32_t flags; int32_t norm; } cases[] = {
        {SAE_ARCH_STANDARD, 0, SAE_NORM_NONE},
        {SAE_ARCH_TOPK, SAE_DICT_RESCALE_BY_DECODER_NORM, SAE_NORM_NONE},
        {SAE_ARCH_JUMPRELU, 0, SAE_NORM_SCALE},
        {SAE_ARCH_GATED, SAE_DICT_RESCALE_BY_DECODER_NORM, SAE_NORM_SCALE},
    };
    enum { D = 9, F = 20, N = 7 };
    float x[N * D], f[N * F], fp[F], fm[F], xh[N * D], dec[D], enc[D], bias[D], v[D], xv[D];
    fill_normal(x, N * D, 1, 1.0f);
    fill_normal(v, D, 2, 1.0f);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sae_dict *d = random_dict(cases[c].arch, D, F, cases[c].flags, cases[c].norm, 1.0f, 0.2f,
                                  7 + c);
        assert_true(sae__dict_is_affine(d));
        sae_encoder *e = NULL;
        assert_sae_ok(sae_encoder_create(&e, d, NULL));
        assert_sae_ok(sae_encoder_encode(e, N, x, D, f, F, NULL, 0));
        assert_sae_ok(sae_encoder_reconstruct(e, N, x, D, xh, D, NULL, 0));
        sae__dict_model_bias(d, bias);
        int active = 0;
        for (int r = 0; r < N; r++) {
            double want[D];
            for (int i = 0; i < D; i++)
                want[i] = bias[i];
            for (int j = 0; j < F; j++) {
                sae__dict_decoder_direction(d, j, dec);
                for (int i = 0; i < D; i++)
                    want[i] += (double)f[r * F + j] * dec[i];
            }
            for (int i = 0; i < D; i++)
                assert_true(fabs(want[i] - xh[r * D + i]) < 1e-4);
            const float h = 1e-3f;
            for (int i = 0; i < D; i++)
                xv[i] = x[r * D + i] + h * v[i];
            assert_sae_ok(sae_encoder_encode(e, 1, xv, D, fp, F, NULL, 0));
            for (int i = 0; i < D; i++)
                xv[i] = x[r * D + i] - h * v[i];
            assert_sae_ok(sae_encoder_encode(e, 1, xv, D, fm, F, NULL, 0));
            for (int j = 0; j < F; j++) {
                if (f[r * F + j] == 0.0f || fp[j] == 0.0f || fm[j] == 0.0f)
                    continue;
                sae__dict_encoder_direction(d, j, enc);
                double an = 0.0;
                for (int i = 0; i < D; i++)
                    an += (double)enc[i] * v[i];
                double fd = ((double)fp[j] - fm[j]) / (2.0 * h);
                assert_true(fabs(an - fd) < 2e-2 * (1.0 + fabs(an)));
                active++;
            }
        }
        assert_true(active > 5);
        sae_encoder_free(e);
        sae_dict_free(d);
    }
    sae_dict *ln = random_dict(SAE_ARCH_STANDARD, D, F, 0, SAE_NORM_LAYER_NORM, 1.0f, 0.2f, 3);
    assert_false(sae__dict_is_affine(ln));
    sae_dict_free(ln);
}

/* The effect kernel against its reference twin on odd shapes. */
static void test_contrib_kernel(void **state)
{
    const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 70, 24}, {130, 9, 65}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t n = shapes[c][0], F = shapes[c][1], D = shapes[c][2];
        float *G = test_malloc((size_t)(n * D) * sizeof(float));
        float *dec = test_malloc((size_t)(F * D) * sizeof(float));
        float *df = test_malloc((size_t)(n * F) * sizeof(float));
        float *de = test_malloc((size_t)(n * D) * sizeof(float));
        float *f1 = test_malloc((size_t)(n * F) * sizeof(float));
        float *f2 = test_malloc((size_t)(n * F) * sizeof(float));
        float *e1 = test_malloc((size_t)n * sizeof(float));
        float *e2 = test_malloc((size_t)n * sizeof(float));
        fill_normal(G, n * D, 11 + c, 1.0f);
        fill_normal(dec, F * D, 12 + c, 1.0f);
        fill_normal(df, n * F, 13 + c, 1.0f);
        fill_normal(de, n * D, 14 + c, 1.0f);
        for (int64_t i = 0; i < n * F; i += 3)
            df[i] = 0.0f; /* sparse deltas, as codes are */
        assert_sae_ok(sae__graph_contrib(f1, e1, G, dec, df, de, n, F, D, 2));
        sae__graph_contrib_ref(f2, e2, G, dec, df, de, n, F, D);
        assert_close_f32(f1, f2, n * F, 1e-4, 1e-4, "feature contributions");
        assert_close_f32(e1, e2, n, 1e-4, 1e-4, "error contributions");
        float *bufs[] = {G, dec, df, de, f1, f2, e1, e2};
        for (size_t i = 0; i < 8; i++)
            test_free(bufs[i]);
    }
}

/* ---- node effects on the linear host --------------------------------------------------------- */

/* ATP = IG = EXACT, summed and per position, with patch prompts and with zero ablation. */
static void test_atp_equals_exact(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    for (int variant = 0; variant < 3; variant++) {
        const int agg = variant == 1 ? SAE_GRAPH_PER_POSITION : SAE_GRAPH_SUM;
        pairs_fx p;
        make_pairs(&p, agg == SAE_GRAPH_PER_POSITION, variant != 2);
        sae_graph *atp = attribute(&fx, &p.p, SAE_GRAPH_ATP, agg, SAE_GRAPH_NO_EDGES, 0.1f, 0.0f);
        sae_graph *ig = attribute(&fx, &p.p, SAE_GRAPH_IG, agg, SAE_GRAPH_NO_EDGES, 0.1f, 0.0f);
        sae_graph *ex = attribute(&fx, &p.p, SAE_GRAPH_EXACT, agg, SAE_GRAPH_NO_EDGES, 0.1f, 0.0f);
        sae_graph_info info = SAE_GRAPH_INFO_INIT;
        assert_sae_ok(sae_graph_get_info(atp, &info));
        print_message("variant %d: %lld nodes, max |effect| %.3g\n", variant,
                      (long long)info.n_nodes, (double)max_abs_effect(atp));
        assert_true(info.n_nodes > 20);
        assert_int_equal(info.n_positions, agg == SAE_GRAPH_PER_POSITION ? 5 : 0);
        assert_int_equal(isnan(info.metric_patch), variant == 2);
        const float tol = 1e-4f * max_abs_effect(atp);
        assert_same_effects(atp, ex, tol);
        assert_same_effects(atp, ig, tol);
        sae_graph_free(atp);
        sae_graph_free(ig);
        sae_graph_free(ex);
    }
    linear_teardown(&fx);
}

/* What a hook does in the brute-force runs: set the activations of circuit hooks to frozen
 * values, add a delta at one. */
typedef struct {
    const float *set[LH]; /* (T, LD) or NULL */
    const float *add[LH];
    float *rec[LH];
} brute_io;

static sae_status brute_hook(void *user, int32_t id, float *x, int64_t n, int64_t ld)
{
    brute_io *b = user;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < LD; i++) {
            if (b->set[id])
                x[r * ld + i] = b->set[id][r * LD + i];
            if (b->add[id])
                x[r * ld + i] += b->add[id][r * LD + i];
            if (b->rec[id])
                b->rec[id][r * LD + i] = x[r * ld + i];
        }
    return SAE_OK;
}

/* Pair i of p alone (off: room for its two offsets). */
static sae_prompt_pairs single_pair(const pairs_fx *p, int64_t i, int64_t off[2])
{
    sae_prompt_pairs one = p->p;
    off[0] = 0, off[1] = p->offsets[i + 1] - p->offsets[i];
    one.n_pairs = 1, one.offsets = off, one.clean_tokens = p->clean + p->offsets[i];
    one.patch_tokens = p->p.patch_tokens ? p->patch + p->offsets[i] : NULL;
    one.clean_answers = p->ca + i, one.patch_answers = p->p.patch_answers ? p->pa + i : NULL;
    return one;
}

/* The effects of each hook sum to the effect of patching it whole (per pair, then the mean). */
static void test_effects_sum_to_hook_patch(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    pairs_fx p;
    make_pairs(&p, 0, 1);
    sae_graph *g = attribute(&fx, &p.p, SAE_GRAPH_ATP, SAE_GRAPH_SUM, SAE_GRAPH_NO_EDGES, 0, 0);
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
    assert_sae_ok(sae_graph_get_arrays(g, &a));
    double clean[NP], patched[NP];
    pair_metrics(&fx.host, &p.p, NULL, NULL, clean);
    for (int k = 0; k < LH; k++) {
        double want = 0.0, got = 0.0;
        for (int64_t i = 0; i < NP; i++) {
            brute_io b = {{NULL}, {NULL}, {NULL}};
            float *xp = pair_activations(&fx.host, &p.p, i, 1, k);
            b.set[k] = xp;
            int64_t off[2];
            sae_prompt_pairs one = single_pair(&p, i, off);
            pair_metrics(&fx.host, &one, brute_hook, &b, &patched[i]);
            want += (patched[i] - clean[i]) / NP;
            test_free(xp);
        }
        for (int64_t i = 0; i < a.n_nodes; i++)
            if (a.node_hooks[i] == k)
                got += a.node_effects[i];
        print_message("hook %d: sum of node effects %.6g, patching the hook %.6g\n", k, got,
                      want);
        assert_true(fabs(got - want) < 1e-4 * (1.0 + fabs(want)));
    }
    sae_graph_free(g);
    linear_teardown(&fx);
}

/* ---- edges against brute force ------------------------------------------------------------ */

/* The states of one pair at one circuit hook, through the public encoder only. */
typedef struct {
    int64_t T;
    float xc[LT * LD], G[LT * LD];  /* clean activations, gradient of the metric */
    float fc[LT * LF], df[LT * LF]; /* clean codes, code deltas */
    float de[LT * LD];              /* error deltas */
} pair_state;

/* codes f (LF) and error (LD) of one row. */
static void row_state(sae_encoder *e, const float *x, float *f, float *err)
{
    float xh[LD];
    assert_sae_ok(sae_encoder_encode(e, 1, x, LD, f, LF, NULL, 0));
    assert_sae_ok(sae_encoder_reconstruct(e, 1, x, LD, xh, LD, NULL, 0));
    for (int i = 0; i < LD; i++)
        err[i] = x[i] - xh[i];
}

/* d~_j = decode(e_j) - decode(0) through the public API. */
static void direction(sae_encoder *e, int j, float *out)
{
    float unit[LF] = {0}, zero[LF] = {0}, x0[LD], x1[LD];
    unit[j] = 1.0f;
    assert_sae_ok(sae_encoder_decode(e, 1, unit, LF, x1, LD));
    assert_sae_ok(sae_encoder_decode(e, 1, zero, LF, x0, LD));
    for (int i = 0; i < LD; i++)
        out[i] = x1[i] - x0[i];
}

static void pair_states(linear_fx *fx, const int32_t *chooks, int nc, pairs_fx *p, int64_t i,
                        sae_encoder **enc, pair_state *st)
{
    const int64_t T = p->offsets[i + 1] - p->offsets[i];
    float logits[LT * LV], dlog[LT * LV] = {0}, *grads[LH] = {NULL}, gbuf[LH][LT * LD];
    assert_sae_ok(sae_host_forward(&fx->host, p->clean + p->offsets[i], 1, T, logits, NULL, NULL));
    dlog[(T - 1) * LV + p->ca[i]] += 1.0f;
    if (p->p.patch_answers)
        dlog[(T - 1) * LV + p->pa[i]] -= 1.0f;
    for (int c = 0; c < nc; c++)
        grads[chooks[c]] = gbuf[c];
    assert_sae_ok(sae_host_backward(&fx->host, 1, T, dlog, grads, NULL));
    for (int c = 0; c < nc; c++) {
        pair_state *s = &st[c];
        s->T = T;
        memcpy(s->G, gbuf[c], (size_t)(T * LD) * sizeof(float));
        float *xc = pair_activations(&fx->host, &p->p, i, 0, chooks[c]);
        float *xp = p->p.patch_tokens ? pair_activations(&fx->host, &p->p, i, 1, chooks[c]) : NULL;
        memcpy(s->xc, xc, (size_t)(T * LD) * sizeof(float));
        for (int64_t t = 0; t < T; t++) {
            float fp[LF] = {0}, ep[LD] = {0}, ec[LD];
            row_state(enc[c], xc + t * LD, s->fc + t * LF, ec);
            if (xp)
                row_state(enc[c], xp + t * LD, fp, ep);
            for (int j = 0; j < LF; j++)
                s->df[t * LF + j] = fp[j] - s->fc[t * LF + j];
            for (int d = 0; d < LD; d++)
                s->de[t * LD + d] = ep[d] - ec[d];
        }
        test_free(xc);
        test_free(xp);
    }
}

/* Edges of the circuit over host hooks chooks (nc of them) by forward differences: for each
 * pair, upstream node u at circuit hook a (and position tu, or all) and later circuit hook b,
 * one run with x_a += Δu and every other circuit hook frozen at its clean value gives Δx_b;
 * the downstream node's change along it is a central difference of the encoder, weighted by
 * the node's gradient. brute[(a, slot_u), (b, slot_d)] (slots as in the library, P positions)
 * accumulates the mean over pairs. */
static void brute_edges(linear_fx *fx, const int32_t *chooks, const sae_dict *const *dicts,
                        int nc, pairs_fx *p, int64_t P, double *brute, int64_t nslot)
{
    sae_encoder *enc[LH];
    for (int c = 0; c < nc; c++)
        assert_sae_ok(sae_encoder_create(&enc[c], dicts[c], NULL));
    pair_state st[LH];
    for (int64_t i = 0; i < NP; i++) {
        pair_states(fx, chooks, nc, p, i, enc, st);
        const int64_t T = st[0].T;
        for (int a = 0; a < nc; a++)
            for (int64_t su = 0; su < P * (LF + 1); su++) {
                const int64_t tu = su / (LF + 1), ju = su % (LF + 1) - 1;
                float delta[LT * LD] = {0}, dir[LD];
                if (ju >= 0)
                    direction(enc[a], (int)ju, dir);
                int any = 0;
                for (int64_t t = 0; t < T; t++) {
                    if (P > 1 && t != tu)
                        continue;
                    for (int d = 0; d < LD; d++) {
                        float v = ju < 0 ? st[a].de[t * LD + d] : st[a].df[t * LF + ju] * dir[d];
                        delta[t * LD + d] = v;
                        any |= v != 0.0f;
                    }
                }
                if (!any)
                    continue;
                for (int b = a + 1; b < nc; b++) {
                    brute_io run = {{NULL}, {NULL}, {NULL}};
                    float xb[LT * LD];
                    for (int c = 0; c < nc; c++)
                        if (c != a && c != b)
                            run.set[chooks[c]] = st[c].xc;
                    run.add[chooks[a]] = delta;
                    run.rec[chooks[b]] = xb;
                    assert_sae_ok(sae_host_forward(&fx->host, p->clean + p->offsets[i], 1, T, NULL,
                                                   brute_hook, &run));
                    for (int64_t sd = 0; sd < P * (LF + 1); sd++) {
                        const int64_t td = sd / (LF + 1), jd = sd % (LF + 1) - 1;
                        double sum = 0.0;
                        for (int64_t t = 0; t < T; t++) {
                            if (P > 1 && t != td)
                                continue;
                            const float *x0 = st[b].xc + t * LD;
                            float dx[LD], xp[LD], xm[LD], fp[LF], fm[LF], ep[LD], em[LD];
                            double scale = 0.0;
                            for (int d = 0; d < LD; d++) {
                                dx[d] = xb[t * LD + d] - x0[d];
                                scale = fmax(scale, fabs(dx[d]));
                            }
                            if (scale == 0.0)
                                continue;
                            const float h = (float)(1e-3 / scale);
                            for (int d = 0; d < LD; d++)
                                xp[d] = x0[d] + h * dx[d], xm[d] = x0[d] - h * dx[d];
                            row_state(enc[b], xp, fp, ep);
                            row_state(enc[b], xm, fm, em);
                            const float *G = st[b].G + t * LD;
                            if (jd >= 0) {
                                float dk[LD];
                                direction(enc[b], (int)jd, dk);
                                double gk = 0.0;
                                for (int d = 0; d < LD; d++)
                                    gk += (double)G[d] * dk[d];
                                sum += gk * ((double)fp[jd] - fm[jd]) / (2.0 * h);
                            } else {
                                for (int d = 0; d < LD; d++)
                                    sum += (double)G[d] * ((double)ep[d] - em[d]) / (2.0 * h);
                            }
                        }
                        brute[(a * nslot + su) * (nc * nslot) + b * nslot + sd] += sum / NP;
                    }
                }
            }
    }
    for (int c = 0; c < nc; c++)
        sae_encoder_free(enc[c]);
}

/* Edges (ATP gradients) over the circuit hooks 0, 1, 3 of the linear host — host hook 2 is not
 * in the circuit, and hook 0 reaches hook 3 around hook 1 through the skip — summed and per
 * position, against brute_edges. Thresholds 0: every non-zero edge is kept. */
static void test_edges_brute_force(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    const int32_t chooks[3] = {0, 1, 3};
    const sae_dict *dicts[3] = {fx.dicts[0], fx.dicts[1], fx.dicts[3]};
    for (int agg = SAE_GRAPH_SUM; agg <= SAE_GRAPH_PER_POSITION; agg++) {
        pairs_fx p;
        make_pairs(&p, agg == SAE_GRAPH_PER_POSITION, 1);
        const int64_t P = agg == SAE_GRAPH_SUM ? 1 : 5, nslot = P * (LF + 1);
        sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
        o.method = SAE_GRAPH_ATP, o.aggregation = agg, o.node_threshold = 0.0f;
        o.edge_threshold = 0.0f, o.batch_size = 4, o.allocator = test_allocator();
        sae_graph *g = NULL;
        assert_sae_ok(sae_graph_attribute(&g, &fx.host, chooks, dicts, 3, &p.p, &o));
        double *brute = test_calloc((size_t)(9 * nslot * nslot), sizeof(double));
        brute_edges(&fx, chooks, dicts, 3, &p, P, brute, nslot);
        sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
        assert_sae_ok(sae_graph_get_arrays(g, &a));
        double scale = 0.0;
        for (int64_t e = 0; e < a.n_edges; e++)
            scale = fmax(scale, fabs(a.edge_weights[e]));
        /* Every brute-force edge between two nodes of the graph is there with its weight. */
        int64_t checked = 0, nonzero_skip = 0;
        for (int64_t u = 0; u < a.n_nodes; u++)
            for (int64_t d = 0; d < a.n_nodes; d++) {
                const int32_t ha = a.node_hooks[u], hb = a.node_hooks[d];
                if (hb <= ha)
                    continue;
                const int64_t su = (a.node_positions[u] < 0 ? 0 : a.node_positions[u]) * (LF + 1) +
                                   1 + a.node_features[u];
                const int64_t sd = (a.node_positions[d] < 0 ? 0 : a.node_positions[d]) * (LF + 1) +
                                   1 + a.node_features[d];
                const double want = brute[(ha * nslot + su) * (3 * nslot) + hb * nslot + sd];
                double got = 0.0;
                for (int64_t e = 0; e < a.n_edges; e++)
                    if (a.edge_sources[e] == u && a.edge_targets[e] == d)
                        got = a.edge_weights[e];
                if (fabs(got - want) > 2e-3 * scale)
                    fail_msg("edge (%d,%d,%d) -> (%d,%d,%d): graph %.6g, brute force %.6g", ha,
                             a.node_positions[u], a.node_features[u], hb, a.node_positions[d],
                             a.node_features[d], got, want);
                checked++;
                nonzero_skip += ha == 0 && hb == 2 && want != 0.0;
            }
        print_message("aggregation %d: %lld edges, %lld node pairs checked, %lld skip edges "
                      "0 -> 3, largest |w| %.3g\n", agg, (long long)a.n_edges,
                      (long long)checked, (long long)nonzero_skip, scale);
        assert_true(a.n_edges > 50);
        assert_true(nonzero_skip > 0);
        test_free(brute);
        sae_graph_free(g);
    }
    linear_teardown(&fx);
}

/* ---- evaluation ----------------------------------------------------------------------------- */

static sae_graph_eval_options eval_options(int ablation, int errors)
{
    sae_graph_eval_options o = SAE_GRAPH_EVAL_OPTIONS_INIT;
    o.ablation = ablation, o.errors = errors, o.batch_size = 2, o.allocator = test_allocator();
    return o;
}

/* m(∅) with mean ablation is the run with every circuit hook set to the mean patch activations
 * of the prompts of its length (the states compose linearly); the empty circuit has
 * faithfulness 0 and completeness 1 (its complement keeps everything); the curve at size 0 is
 * exactly 0; keeping or removing the errors changes m(∅). */
static void test_faithfulness(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    pairs_fx p;
    make_pairs(&p, 0, 1);
    sae_graph *g = attribute(&fx, &p.p, SAE_GRAPH_ATP, SAE_GRAPH_SUM, SAE_GRAPH_NO_EDGES, 0.2f, 0);
    sae_graph_info info = SAE_GRAPH_INFO_INIT;
    assert_sae_ok(sae_graph_get_info(g, &info));
    uint8_t *none = test_calloc((size_t)info.n_nodes, 1);
    sae_graph_eval_options o = eval_options(SAE_ABLATE_MEAN, SAE_GRAPH_ERRORS_AS_NODES);
    sae_graph_eval ev = SAE_GRAPH_EVAL_INIT;
    assert_sae_ok(sae_graph_evaluate(&ev, g, none, &fx.host, (const sae_dict *const *)fx.dicts,
                                     &p.p, &o));
    assert_int_equal(ev.n_nodes, 0);
    assert_true(ev.faithfulness == 0.0);
    assert_true(fabs(ev.completeness - 1.0) < 1e-4);
    assert_true(fabs(ev.metric_full - info.metric_clean) < 1e-4);
    /* m(∅) by hand: mean patch activations per length group and position at every hook. */
    double want = 0.0, m = 0.0;
    for (int64_t i = 0; i < NP; i++) {
        const int64_t T = p.offsets[i + 1] - p.offsets[i];
        float *mean[LH];
        int count = 0;
        for (int k = 0; k < LH; k++)
            mean[k] = test_calloc((size_t)(T * LD), sizeof(float));
        for (int64_t q = 0; q < NP; q++) {
            if (p.offsets[q + 1] - p.offsets[q] != T)
                continue;
            count++;
            for (int k = 0; k < LH; k++) {
                float *x = pair_activations(&fx.host, &p.p, q, 1, k);
                for (int64_t j = 0; j < T * LD; j++)
                    mean[k][j] += x[j];
                test_free(x);
            }
        }
        brute_io b = {{NULL}, {NULL}, {NULL}};
        for (int k = 0; k < LH; k++) {
            for (int64_t j = 0; j < T * LD; j++)
                mean[k][j] /= (float)count;
            b.set[k] = mean[k];
        }
        int64_t off[2];
        sae_prompt_pairs one = single_pair(&p, i, off);
        pair_metrics(&fx.host, &one, brute_hook, &b, &m);
        want += m / NP;
        for (int k = 0; k < LH; k++)
            test_free(mean[k]);
    }
    print_message("m(M) %.5g, m(empty) %.5g (by hand %.5g)\n", ev.metric_full, ev.metric_empty,
                  want);
    assert_true(fabs(ev.metric_empty - want) < 1e-4 * (1.0 + fabs(want)));
    /* The default circuit (|effect| > 0.2) and the curve. */
    sae_graph_eval def = SAE_GRAPH_EVAL_INIT;
    assert_sae_ok(sae_graph_evaluate(&def, g, NULL, &fx.host, (const sae_dict *const *)fx.dicts,
                                     &p.p, &o));
    assert_true(def.n_nodes > 0 && def.n_nodes < info.n_nodes);
    const int64_t sizes[3] = {0, def.n_nodes, 1000};
    double faith[3], comp[3];
    assert_sae_ok(sae_graph_faithfulness_curve(faith, comp, g, sizes, 3, &fx.host,
                                               (const sae_dict *const *)fx.dicts, &p.p, &o));
    print_message("circuit of %lld nodes: faithfulness %.4f, completeness %.4f; curve %.4f "
                  "%.4f %.4f\n", (long long)def.n_nodes, def.faithfulness, def.completeness,
                  faith[0], faith[1], faith[2]);
    assert_true(faith[0] == 0.0);
    assert_true(fabs(faith[1] - def.faithfulness) < 1e-9);
    assert_true(fabs(comp[1] - def.completeness) < 1e-9);
    /* Errors kept everywhere: m(∅) changes. */
    sae_graph_eval keep = SAE_GRAPH_EVAL_INIT;
    o = eval_options(SAE_ABLATE_MEAN, SAE_GRAPH_ERRORS_KEEP);
    assert_sae_ok(sae_graph_evaluate(&keep, g, none, &fx.host, (const sae_dict *const *)fx.dicts,
                                     &p.p, &o));
    assert_true(fabs(keep.metric_empty - ev.metric_empty) > 1e-3);
    test_free(none);
    sae_graph_free(g);
    linear_teardown(&fx);
}

/* SHIFT: zero-ablating one feature at one hook (errors kept) changes each pair's metric by
 * what zero-ablation attribution says, on the linear host exactly; nothing else changes. */
static void test_shift_ablate(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    pairs_fx p;
    make_pairs(&p, 0, 0);
    sae_graph *g = attribute(&fx, &p.p, SAE_GRAPH_ATP, SAE_GRAPH_SUM, SAE_GRAPH_NO_EDGES, 0.1f, 0);
    sae_graph_info info = SAE_GRAPH_INFO_INIT;
    assert_sae_ok(sae_graph_get_info(g, &info));
    int64_t top[3], n_top = 0;
    assert_sae_ok(sae_graph_top_nodes(top, &n_top, g, 3, 1));
    assert_int_equal(n_top, 3);
    sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
    assert_sae_ok(sae_graph_get_arrays(g, &a));
    uint8_t *flags = test_calloc((size_t)info.n_nodes, 1);
    float clean[NP], ablated[NP];
    sae_graph_eval_options o = eval_options(SAE_ABLATE_ZERO, SAE_GRAPH_ERRORS_AS_NODES);
    double expect = 0.0;
    for (int i = 0; i < 3; i++) {
        flags[top[i]] = 1;
        expect += a.node_effects[top[i]];
    }
    assert_sae_ok(sae_graph_ablate(clean, ablated, g, flags, &fx.host,
                                   (const sae_dict *const *)fx.dicts, &p.p, &o));
    double got = 0.0, m[NP];
    pair_metrics(&fx.host, &p.p, NULL, NULL, m);
    for (int i = 0; i < NP; i++) {
        assert_true(fabs(clean[i] - m[i]) < 1e-5);
        got += (ablated[i] - clean[i]) / NP;
    }
    print_message("ablating 3 nodes: metric change %.6g, their zero-ablation effects %.6g\n",
                  got, expect);
    assert_true(fabs(got - expect) < 1e-4 * (1.0 + fabs(expect)));
    /* Nothing flagged: nothing changes. */
    memset(flags, 0, (size_t)info.n_nodes);
    assert_sae_ok(sae_graph_ablate(clean, ablated, g, flags, &fx.host,
                                   (const sae_dict *const *)fx.dicts, &p.p, &o));
    for (int i = 0; i < NP; i++)
        assert_true(fabs(ablated[i] - clean[i]) < 1e-4);
    test_free(flags);
    sae_graph_free(g);
    linear_teardown(&fx);
}

/* ---- storage, queries, export ---------------------------------------------------------------- */

static void assert_same_graph(const sae_graph *a, const sae_graph *b)
{
    sae_graph_info x = SAE_GRAPH_INFO_INIT, y = SAE_GRAPH_INFO_INIT;
    assert_sae_ok(sae_graph_get_info(a, &x));
    assert_sae_ok(sae_graph_get_info(b, &y));
    assert_int_equal(x.method, y.method);
    assert_int_equal(x.aggregation, y.aggregation);
    assert_int_equal(x.ig_steps, y.ig_steps);
    assert_int_equal(x.n_pairs, y.n_pairs);
    assert_int_equal(x.n_positions, y.n_positions);
    assert_true(x.node_threshold == y.node_threshold && x.edge_threshold == y.edge_threshold);
    assert_true(x.metric_clean == y.metric_clean);
    assert_true(x.metric_patch == y.metric_patch ||
                (isnan(x.metric_patch) && isnan(y.metric_patch)));
    assert_int_equal(x.n_hooks, y.n_hooks);
    for (int32_t k = 0; k < x.n_hooks; k++) {
        assert_string_equal(sae_graph_hook_name(a, k), sae_graph_hook_name(b, k));
        assert_int_equal(sae_graph_hook_d_sae(a, k), sae_graph_hook_d_sae(b, k));
    }
    sae_graph_arrays p = SAE_GRAPH_ARRAYS_INIT, q = SAE_GRAPH_ARRAYS_INIT;
    assert_sae_ok(sae_graph_get_arrays(a, &p));
    assert_sae_ok(sae_graph_get_arrays(b, &q));
    assert_int_equal(p.n_nodes, q.n_nodes);
    assert_int_equal(p.n_edges, q.n_edges);
    assert_memory_equal(p.node_hooks, q.node_hooks, (size_t)p.n_nodes * sizeof(int32_t));
    assert_memory_equal(p.node_positions, q.node_positions, (size_t)p.n_nodes * sizeof(int32_t));
    assert_memory_equal(p.node_features, q.node_features, (size_t)p.n_nodes * sizeof(int32_t));
    assert_memory_equal(p.node_effects, q.node_effects, (size_t)p.n_nodes * sizeof(float));
    assert_memory_equal(p.edge_sources, q.edge_sources, (size_t)p.n_edges * sizeof(int64_t));
    assert_memory_equal(p.edge_targets, q.edge_targets, (size_t)p.n_edges * sizeof(int64_t));
    assert_memory_equal(p.edge_weights, q.edge_weights, (size_t)p.n_edges * sizeof(float));
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = test_malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* JSON round trip (with labels, metadata, per-position nodes and no patch metric), pruning,
 * top-n, and the DOT file. */
static void test_export_round_trip(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    for (int variant = 0; variant < 2; variant++) {
        pairs_fx p;
        make_pairs(&p, variant == 1, variant == 0);
        sae_graph *g = attribute(&fx, &p.p, SAE_GRAPH_IG,
                                 variant ? SAE_GRAPH_PER_POSITION : SAE_GRAPH_SUM, 0, 0.3f, 0.05f);
        assert_sae_ok(sae_graph_set_label(g, 1, 3, "quote \" and \\ and é"));
        assert_sae_ok(sae_graph_set_label(g, 2, SAE_GRAPH_ERROR, "the error"));
        assert_sae_ok(sae_graph_set_label(g, 2, 5, "temporary"));
        assert_sae_ok(sae_graph_set_label(g, 2, 5, ""));
        assert_null(sae_graph_label(g, 2, 5));
        assert_sae_ok(sae_graph_set_metadata(g, "model", "linear"));
        assert_sae_ok(sae_graph_set_metadata(g, "model", "linear host"));
        assert_string_equal(sae_graph_metadata(g, "model"), "linear host");
        const char *path = tmp_path("graph.json");
        assert_sae_ok(sae_graph_save_json(g, path));
        sae_graph *h = NULL;
        assert_sae_ok(sae_graph_load_json(&h, path, test_allocator()));
        assert_same_graph(g, h);
        assert_string_equal(sae_graph_label(h, 1, 3), "quote \" and \\ and é");
        assert_string_equal(sae_graph_label(h, 2, SAE_GRAPH_ERROR), "the error");
        assert_string_equal(sae_graph_metadata(h, "model"), "linear host");
        sae_graph_free(h);

        /* Top nodes: sorted by |effect|; per hook only that hook's. */
        sae_graph_arrays a = SAE_GRAPH_ARRAYS_INIT;
        assert_sae_ok(sae_graph_get_arrays(g, &a));
        int64_t *top = test_malloc((size_t)a.n_nodes * sizeof(int64_t)), n_top = 0;
        assert_sae_ok(sae_graph_top_nodes(top, &n_top, g, a.n_nodes + 5, -1));
        assert_int_equal(n_top, a.n_nodes);
        for (int64_t i = 1; i < n_top; i++)
            assert_true(fabsf(a.node_effects[top[i - 1]]) >= fabsf(a.node_effects[top[i]]));
        assert_sae_ok(sae_graph_top_nodes(top, &n_top, g, 4, 2));
        for (int64_t i = 0; i < n_top; i++)
            assert_int_equal(a.node_hooks[top[i]], 2);
        assert_sae_ok(sae_graph_top_edges(top, &n_top, g, 3));
        assert_int_equal(n_top, a.n_edges < 3 ? a.n_edges : 3);
        test_free(top);

        /* DOT: ranks, an error box, edge widths. */
        const char *dot = tmp_path("graph.dot");
        sae_graph_dot_options d = SAE_GRAPH_DOT_OPTIONS_INIT;
        d.node_threshold = 0.3f, d.max_nodes = 25;
        assert_sae_ok(sae_graph_save_dot(g, dot, &d));
        char *text = slurp(dot);
        assert_non_null(strstr(text, "digraph circuit"));
        assert_non_null(strstr(text, "rank=same"));
        assert_non_null(strstr(text, "shape=box"));
        assert_non_null(strstr(text, "penwidth="));
        assert_non_null(strstr(text, "layer.3"));
        int shown = 0;
        for (const char *q = text; (q = strstr(q, "fillcolor")); q++)
            shown++;
        assert_true(shown > 0 && shown <= 25);
        test_free(text);

        /* Prune: nodes and edges above the thresholds remain, renumbered. */
        int64_t want_nodes = 0;
        for (int64_t i = 0; i < a.n_nodes; i++)
            want_nodes += fabsf(a.node_effects[i]) > 0.5f;
        assert_sae_ok(sae_graph_prune(g, 0.5f, 0.1f));
        assert_sae_ok(sae_graph_get_arrays(g, &a));
        assert_int_equal(a.n_nodes, want_nodes);
        for (int64_t e = 0; e < a.n_edges; e++) {
            assert_true(fabsf(a.edge_weights[e]) > 0.1f);
            assert_true(a.edge_sources[e] < a.n_nodes && a.edge_targets[e] < a.n_nodes);
            assert_true(a.node_hooks[a.edge_sources[e]] < a.node_hooks[a.edge_targets[e]]);
        }
        sae_graph_info info = SAE_GRAPH_INFO_INIT;
        assert_sae_ok(sae_graph_get_info(g, &info));
        assert_true(info.node_threshold == 0.5f && info.edge_threshold == 0.1f);
        sae_graph_free(g);
    }
    linear_teardown(&fx);
}

/* A graph made by hand: add nodes and edges, duplicates and ranges refused atomically. */
static void test_graph_by_hand(void **state)
{
    const char *names[2] = {"a", "b"};
    const int64_t d_sae[2] = {4, 6};
    sae_graph *g = NULL;
    assert_sae_ok(sae_graph_create(&g, 2, names, d_sae, test_allocator()));
    const int32_t hooks[3] = {0, 1, 1}, pos[3] = {-1, -1, -1}, feat[3] = {2, SAE_GRAPH_ERROR, 5};
    const float eff[3] = {0.5f, -1.0f, 0.25f};
    assert_sae_ok(sae_graph_add_nodes(g, 3, hooks, pos, feat, eff));
    assert_int_equal(sae_graph_add_nodes(g, 1, hooks, pos, feat, eff), SAE_EINVAL); /* dup */
    const int32_t bad_feat[1] = {4};
    assert_int_equal(sae_graph_add_nodes(g, 1, hooks, pos, bad_feat, eff), SAE_ERANGE);
    const float nan_eff[1] = {NAN};
    const int32_t f3[1] = {3};
    assert_int_equal(sae_graph_add_nodes(g, 1, hooks, pos, f3, nan_eff), SAE_ENUMERIC);
    const int64_t src[2] = {0, 0}, dst[2] = {1, 2};
    const float w[2] = {0.3f, -0.2f};
    assert_sae_ok(sae_graph_add_edges(g, 2, src, dst, w));
    const int64_t far[1] = {3};
    assert_int_equal(sae_graph_add_edges(g, 1, src, far, w), SAE_ERANGE);
    sae_graph_info info = SAE_GRAPH_INFO_INIT;
    assert_sae_ok(sae_graph_get_info(g, &info));
    assert_int_equal(info.n_nodes, 3);
    assert_int_equal(info.n_edges, 2);
    assert_int_equal(info.method, -1);
    int64_t node = -2;
    assert_sae_ok(sae_graph_find_node(&node, g, 1, -1, SAE_GRAPH_ERROR));
    assert_int_equal(node, 1);
    assert_int_equal(sae_graph_find_node(&node, g, 1, 0, 5), SAE_ENOTFOUND);
    assert_int_equal(node, -1);
    const char *path = tmp_path("by_hand.json");
    assert_sae_ok(sae_graph_save_json(g, path));
    sae_graph *h = NULL;
    assert_sae_ok(sae_graph_load_json(&h, path, test_allocator()));
    assert_same_graph(g, h);
    sae_graph_free(h);
    assert_string_equal(sae_graph_method_name(SAE_GRAPH_EXACT), "exact");
    assert_string_equal(sae_graph_method_name(7), "unknown");
    const char *dup[2] = {"a", "a"};
    sae_graph *bad = NULL;
    assert_int_equal(sae_graph_create(&bad, 2, dup, d_sae, NULL), SAE_EINVAL);
    assert_null(bad);
    sae_graph_free(g);
    sae_graph_free(NULL);
}

/* Malformed JSON files name the problem. */
static void test_bad_json(void **state)
{
    const struct { const char *text; sae_status status; const char *message; } cases[] = {
        {"[1, 2]", SAE_EFORMAT, "not a JSON object"},
        {"{\"format\": \"other\"}", SAE_EFORMAT, "libsae-circuit"},
        {"{\"format\": \"libsae-circuit\", \"version\": 1, \"hooks\": []}", SAE_EFORMAT,
         "hooks is empty"},
        {"{\"format\": \"libsae-circuit\", \"version\": 2, \"hooks\": [{\"name\": \"a\", "
         "\"d_sae\": 4}], \"nodes\": [], \"edges\": []}", SAE_ENUMERIC, "version"},
        {"{\"format\": \"libsae-circuit\", \"version\": 1, \"hooks\": [{\"name\": \"a\", "
         "\"d_sae\": 4}], \"nodes\": [{\"hook\": 0, \"feature\": 9, \"effect\": 1}], "
         "\"edges\": []}", SAE_EFORMAT, "out of range"},
        {"{\"format\": \"libsae-circuit\", \"version\": 1, \"hooks\": [{\"name\": \"a\", "
         "\"d_sae\": 4}], \"nodes\": [{\"hook\": 0, \"feature\": \"err\", \"effect\": 1}], "
         "\"edges\": []}", SAE_EFORMAT, "nodes[0]"},
        {"{\"format\": \"libsae-circuit\", \"version\": 1, \"hooks\": [{\"name\": \"a\", "
         "\"d_sae\": 4}], \"nodes\": [{\"hook\": 0, \"feature\": 1, \"effect\": 1}], "
         "\"edges\": [{\"source\": 0, \"target\": 1, \"weight\": 1}]}", SAE_EFORMAT, "edge 0"},
        {"{\"format\": \"libsae-circuit\", \"version\": 1, \"method\": \"magic\", \"hooks\": "
         "[{\"name\": \"a\", \"d_sae\": 4}], \"nodes\": [], \"edges\": []}", SAE_EFORMAT,
         "magic"},
    };
    const char *path = tmp_path("bad_graph.json");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        write_text(path, cases[c].text);
        sae_graph *g = (sae_graph *)1;
        sae_status s = sae_graph_load_json(&g, path, test_allocator());
        if (s != cases[c].status || !strstr(sae_last_error(), cases[c].message))
            fail_msg("case %zu: %d \"%s\"", c, s, sae_last_error());
        assert_null(g);
    }
    sae_graph *g = NULL;
    assert_int_equal(sae_graph_load_json(&g, tmp_path("no_such_graph.json"), NULL),
                     SAE_ENOTFOUND);
}

/* Bad arguments of the attribution and evaluation. */
static void test_bad_input(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    pairs_fx p;
    make_pairs(&p, 0, 1);
    sae_graph *g = (sae_graph *)1;
    const sae_dict *const *dicts = (const sae_dict *const *)fx.dicts;
    sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
    o.allocator = test_allocator();
#define EXPECT(status, call)                                                                      \
    do {                                                                                          \
        sae_status s_ = (call);                                                                   \
        if (s_ != (status))                                                                       \
            fail_msg("%s -> %d, expected %d: %s", #call, s_, (status), sae_last_error());        \
    } while (0)
    EXPECT(SAE_EINVAL, sae_graph_attribute(NULL, &fx.host, fx.hooks, dicts, LH, &p.p, &o));
    EXPECT(SAE_EINVAL, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, 0, &p.p, &o));
    assert_null(g);
    EXPECT(SAE_EINVAL, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, LH, NULL, &o));
    int32_t dup[LH] = {0, 1, 1, 3}, far[LH] = {0, 1, 2, 9};
    EXPECT(SAE_EINVAL, sae_graph_attribute(&g, &fx.host, dup, dicts, LH, &p.p, &o));
    EXPECT(SAE_ERANGE, sae_graph_attribute(&g, &fx.host, far, dicts, LH, &p.p, &o));
    sae_dict *wide = random_dict(SAE_ARCH_STANDARD, LD + 1, LF, 0, SAE_NORM_NONE, 1, 0.1f, 1);
    sae_dict *ln = random_dict(SAE_ARCH_STANDARD, LD, LF, 0, SAE_NORM_LAYER_NORM, 1, 0.1f, 1);
    const sae_dict *bad[LH] = {fx.dicts[0], wide, fx.dicts[2], fx.dicts[3]};
    EXPECT(SAE_ESHAPE, sae_graph_attribute(&g, &fx.host, fx.hooks, bad, LH, &p.p, &o));
    bad[1] = ln;
    EXPECT(SAE_EUNSUPPORTED, sae_graph_attribute(&g, &fx.host, fx.hooks, bad, LH, &p.p, &o));
    sae_graph_options bo = o;
    bo.method = 5;
    EXPECT(SAE_EINVAL, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, LH, &p.p, &bo));
    bo = o, bo.node_threshold = -1.0f;
    EXPECT(SAE_EINVAL, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, LH, &p.p, &bo));
    bo = o, bo.aggregation = SAE_GRAPH_PER_POSITION; /* lengths differ */
    EXPECT(SAE_ESHAPE, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, LH, &p.p, &bo));
    /* Tokens, answers, lengths. */
    pairs_fx q = p;
    q.p.clean_tokens = q.clean, q.p.patch_tokens = q.patch, q.p.offsets = q.offsets;
    q.p.clean_answers = q.ca, q.p.patch_answers = q.pa;
    q.clean[3] = LV;
    EXPECT(SAE_ERANGE, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, LH, &q.p, &o));
    q.clean[3] = 0, q.pa[2] = -1;
    EXPECT(SAE_ERANGE, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, LH, &q.p, &o));
    q.pa[2] = 0, q.offsets[2] = q.offsets[1];
    EXPECT(SAE_ESHAPE, sae_graph_attribute(&g, &fx.host, fx.hooks, dicts, LH, &q.p, &o));
    /* A host without the passes the method or the edges need. */
    sae_host h = fx.host;
    h.backward_from = NULL;
    EXPECT(SAE_EUNSUPPORTED, sae_graph_attribute(&g, &h, fx.hooks, dicts, LH, &p.p, &o));
    bo = o, bo.flags = SAE_GRAPH_NO_EDGES;
    h.backward = NULL;
    EXPECT(SAE_EUNSUPPORTED, sae_graph_attribute(&g, &h, fx.hooks, dicts, LH, &p.p, &bo));
    bo.method = SAE_GRAPH_EXACT;
    assert_sae_ok(sae_graph_attribute(&g, &h, fx.hooks, dicts, LH, &p.p, &bo));
    assert_null(NULL);
    /* Evaluation: hook names the host lacks, per-position graphs on other lengths. */
    sae_graph_eval ev = SAE_GRAPH_EVAL_INIT;
    sae_graph_eval_options eo = eval_options(SAE_ABLATE_MEAN, SAE_GRAPH_ERRORS_AS_NODES);
    const char *names[1] = {"nowhere"};
    const int64_t d_sae[1] = {LF};
    sae_graph *lost = NULL;
    assert_sae_ok(sae_graph_create(&lost, 1, names, d_sae, test_allocator()));
    EXPECT(SAE_ENOTFOUND, sae_graph_evaluate(&ev, lost, NULL, &fx.host, dicts, &p.p, &eo));
    eo.ablation = 9;
    EXPECT(SAE_EINVAL, sae_graph_evaluate(&ev, g, NULL, &fx.host, dicts, &p.p, &eo));
    sae_graph_eval unset = {0};
    EXPECT(SAE_EINVAL, sae_graph_evaluate(&unset, g, NULL, &fx.host, dicts, &p.p, NULL));
    EXPECT(SAE_EINVAL, sae_graph_prune(g, -1.0f, 0.0f));
    EXPECT(SAE_ERANGE, sae_graph_set_label(g, 0, LF, "x"));
    EXPECT(SAE_EINVAL, sae_graph_set_metadata(g, "", "x"));
#undef EXPECT
    sae_graph_free(lost);
    sae_graph_free(g);
    sae_dict_free(wide);
    sae_dict_free(ln);
    linear_teardown(&fx);
}

/* Progress: every pass reported, and a non-zero return cancels. */
static int count_progress(void *user, int64_t done, int64_t total)
{
    int64_t *calls = user;
    assert_true(done <= total);
    return ++*calls == 5;
}

static void test_progress_cancel(void **state)
{
    linear_fx fx;
    linear_setup(&fx);
    pairs_fx p;
    make_pairs(&p, 0, 1);
    int64_t calls = 0;
    sae_graph_options o = SAE_GRAPH_OPTIONS_INIT;
    o.progress = count_progress, o.progress_user = &calls, o.allocator = test_allocator();
    sae_graph *g = NULL;
    assert_int_equal(sae_graph_attribute(&g, &fx.host, fx.hooks,
                                         (const sae_dict *const *)fx.dicts, LH, &p.p, &o),
                     SAE_ECANCELED);
    assert_null(g);
    assert_int_equal(calls, 5);
    linear_teardown(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_space),
        cmocka_unit_test(test_contrib_kernel),
        cmocka_unit_test(test_atp_equals_exact),
        cmocka_unit_test(test_effects_sum_to_hook_patch),
        cmocka_unit_test(test_edges_brute_force),
        cmocka_unit_test(test_faithfulness),
        cmocka_unit_test(test_shift_ablate),
        cmocka_unit_test(test_export_round_trip),
        cmocka_unit_test(test_graph_by_hand),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_progress_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
