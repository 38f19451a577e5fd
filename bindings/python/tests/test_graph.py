"""sae.Graph through a host written in Python (numpy): a model whose logits are linear in every
hook's activations, so attribution patching equals exact patching; edges, JSON round trips,
views, pruning, evaluation, SHIFT ablation, errors raised in callbacks. And `sae circuit`
(pairs, discovery, eval, compare) on stories260K with random SAEs."""

import json

import numpy as np
import pytest

import sae
from _cli import run

D, V, H, F = 6, 11, 3, 10


HOOKS = ["h%d" % i for i in range(H)]


class LinearModel(sae.Host):
    """x_0 = E[tok]; x_h = x_{h-1} + A_h x_{h-1} + B_h mean_{s<=t} x_{h-1}[s] at hook point
    "h<h>"; logits = W x_{H-1}."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.E = rng.normal(size=(V, D)).astype(np.float32)
        self.W = (rng.normal(size=(V, D)) / np.sqrt(D)).astype(np.float32)
        self.A = (0.3 * rng.normal(size=(H, D, D)) / np.sqrt(D)).astype(np.float32)
        self.B = (0.3 * rng.normal(size=(H, D, D)) / np.sqrt(D)).astype(np.float32)
        super().__init__(HOOKS, D, V, 32)

    @staticmethod
    def mix(x, transpose=False):
        """Causal mean over positions of x (n_seq, T, D), or its transpose."""
        w = 1.0 / np.arange(1, x.shape[1] + 1)[None, :, None]
        if not transpose:
            return np.cumsum(x, axis=1) * w
        return np.flip(np.cumsum(np.flip(x * w, axis=1), axis=1), axis=1)

    def forward(self, tokens, hook):
        x = hook("h0", self.E[tokens])
        for h in range(1, H):
            x = hook("h%d" % h, (x + x @ self.A[h].T + self.mix(x) @ self.B[h].T)
                     .astype(np.float32))
        return x @ self.W.T

    def _down(self, g, wanted, stop_grad, seed_hook=None, seed=None):
        """Gradients at the hook points, from g arriving at the last one (and seed added at
        seed_hook)."""
        out = {}
        for h in range(H - 1, -1, -1):
            name = "h%d" % h
            if name == seed_hook:
                g = g + seed
            if name in wanted:
                out[name] = g.copy()
            if name in stop_grad:
                g = np.zeros_like(g)
            if h > 0:
                g = g + g @ self.A[h] + self.mix(g @ self.B[h], transpose=True)
        return out

    def backward(self, d_logits, wanted, stop_grad):
        return self._down(d_logits @ self.W, wanted, stop_grad)

    def backward_from(self, seed_hook, seed, wanted, stop_grad):
        return self._down(np.zeros_like(seed), wanted, stop_grad, seed_hook, seed)


def dicts():
    rng = np.random.default_rng(3)
    out = []
    for k in range(H):
        out.append(sae.Dictionary.from_arrays(
            "standard", W_enc=rng.normal(size=(D, F)).astype(np.float32) / np.sqrt(D),
            b_enc=np.full(F, -0.1, np.float32),
            W_dec=rng.normal(size=(F, D)).astype(np.float32) / np.sqrt(D),
            b_dec=0.05 * rng.normal(size=D).astype(np.float32)))
    return out


def pairs(paired=True):
    rng = np.random.default_rng(5)
    clean, patch = [], []
    for i in range(5):
        t = rng.integers(0, V, size=4 + i % 2)
        p = t.copy()
        p[1] = (p[1] + 3) % V
        clean.append(t)
        patch.append(p)
    ca = rng.integers(0, V, size=5)
    return sae.PromptPairs(clean, ca, patch if paired else None, (ca + 1) % V)


def test_grad_from_matches_finite_differences():
    """Host.grad_from through C (sae_host_backward_from) against central differences of
    <seed, x_h2> in the activations at h0 and h1 (exact: the model is linear), and
    stop-gradient at h1."""
    m = LinearModel()
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, V, size=(2, 5))
    seed = rng.normal(size=(2, 5, D)).astype(np.float32)
    m.run(tokens)
    grads = m.grad_from("h2", seed, ["h0", "h1", "h2"])
    stopped = m.grad_from("h2", seed, ["h0", "h1"], stop_grad=["h1"])
    assert np.array_equal(grads["h2"], seed)
    assert np.array_equal(stopped["h1"], grads["h1"]) and not stopped["h0"].any()

    def objective(at, index, eps):
        def hook(name, x):
            x = np.array(x, dtype=np.float64)
            if name == at:
                x[index] += eps
            if name == "h2":
                values.append(float((seed * x).sum()))
            return x
        values = []
        m.forward(tokens, hook)
        return values[0]

    for at in ("h0", "h1"):
        for index in [(0, 0, 1), (1, 3, 4), (1, 4, 0)]:
            fd = (objective(at, index, 0.5) - objective(at, index, -0.5)) / 1.0  # linear: exact
            assert abs(grads[at][index] - fd) <= 1e-3 * (1 + abs(fd)), (at, index)


def test_atp_equals_exact_and_json_round_trip(tmp_path):
    m, ds, p = LinearModel(), dicts(), pairs()
    atp = sae.Graph.attribute(m, HOOKS, ds, p, method="atp",
                              node_threshold=0.0, edge_threshold=0.0)
    exact = sae.Graph.attribute(m, HOOKS, ds, p, method="exact", edges=False)
    assert len(atp) > 10 and atp.n_edges > 10
    scale = np.abs(atp.node_effects).max()
    for i in range(len(atp)):
        j = exact.find_node(int(atp.node_hooks[i]), int(atp.node_features[i]))
        want = exact.node_effects[j] if j is not None else 0.0
        assert abs(atp.node_effects[i] - want) <= 1e-4 * scale
    atp.set_label("h1", 2, "two")
    atp.set_metadata("model", "numpy")
    atp.save(tmp_path / "g.json")
    back = sae.Graph.load(tmp_path / "g.json")
    for name in ("node_hooks", "node_positions", "node_features", "node_effects",
                 "edge_sources", "edge_targets", "edge_weights"):
        assert np.array_equal(getattr(atp, name), getattr(back, name)), name
    assert back.label(1, 2) == "two" and back.metadata("model") == "numpy"
    assert back.hook_names == ["h0", "h1", "h2"] and back.d_sae == [F, F, F]
    assert back.info["method"] == "atp" and back.info["n_pairs"] == 5
    assert json.loads((tmp_path / "g.json").read_text())["format"] == "libsae-circuit"
    atp.save_dot(tmp_path / "g.dot", node_threshold=0.05, max_nodes=10)
    assert "digraph" in (tmp_path / "g.dot").read_text()


def test_views_block_changes_and_prune():
    m, ds, p = LinearModel(), dicts(), pairs()
    g = sae.Graph.attribute(m, HOOKS, ds, p, method="ig", steps=3)
    effects = g.node_effects
    assert not effects.flags.writeable
    with pytest.raises(RuntimeError):
        g.prune(0.1)
    keep = int((np.abs(effects) > 0.1).sum())
    top = g.top_nodes(3)
    assert np.all(np.abs(effects[top][:-1]) >= np.abs(effects[top][1:]))
    del effects
    g.prune(0.1, 0.01)
    assert len(g) == keep
    assert np.all(np.abs(g.edge_weights) > 0.01)


def test_evaluate_curve_and_ablate():
    m, ds = LinearModel(), dicts()
    p = pairs()
    g = sae.Graph.attribute(m, HOOKS, ds, p, method="atp", edges=False)
    ev = g.evaluate(m, ds, p, circuit=np.zeros(len(g), bool))
    assert ev.faithfulness == 0.0 and abs(ev.completeness - 1.0) < 1e-4
    faith, comp = g.faithfulness_curve(m, ds, p, [0, 5, 1000])
    assert faith[0] == 0.0 and len(comp) == 3
    # SHIFT on the zero-ablation graph: ablating nodes of one hook moves the metric by their
    # effects (linear model; across hooks the later SAE re-encodes the changed activations).
    z = pairs(paired=False)
    gz = sae.Graph.attribute(m, HOOKS, ds, z, method="atp", edges=False)
    top = gz.top_nodes(2, hook="h1")
    clean, ablated = gz.ablate(m, ds, z, top)
    assert abs(np.mean(ablated - clean) - gz.node_effects[top].sum()) < 1e-4


def test_callback_errors_propagate():
    m, ds, p = LinearModel(), dicts(), pairs()

    def broken(*args):
        raise KeyError("model failure")

    m.backward = broken
    with pytest.raises(KeyError):
        sae.Graph.attribute(m, HOOKS, ds, p, method="atp")
    with pytest.raises(sae.SaeError, match="nowhere"):
        sae.Graph.attribute(m, ["nowhere"], ds[:1], p)
    with pytest.raises(sae.SaeError):
        sae.Graph.attribute(m, ["h0", "h0"], ds[:2], p)
    with pytest.raises(KeyboardInterrupt):
        sae.Graph.attribute(m, HOOKS, ds, p, method="exact", edges=False,
                            progress=lambda done, total: (_ for _ in ()).throw(
                                KeyboardInterrupt()))


# ---- the command-line tool on stories260K ----------------------------------------------------

def test_cli_circuit(tmp_path, shared_dir):
    model, tok = shared_dir / "data" / "stories260K.bin", shared_dir / "data" / "tok512.bin"
    template = {"templates": ["Once upon a time, there was a {size} {noun} named {name}."],
                "shared": {"size": ["little", "small", "kind"]},
                "classes": [{"answer": " She", "slots": {"noun": ["girl"],
                                                          "name": ["Lily", "Sue", "Mia"]}},
                            {"answer": " He", "slots": {"noun": ["boy"],
                                                         "name": ["Tim", "Tom", "Ben"]}}]}
    (tmp_path / "t.json").write_text(json.dumps(template))
    r = run("circuit", "pairs", "--template", tmp_path / "t.json", "--tokenizer", tok, "--n", 6,
            "--out", tmp_path / "p.jsonl")
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 6
    rng = np.random.default_rng(0)
    specs = []
    for hook in ("resid_post.1", "resid_post.3"):
        d = sae.Dictionary.from_arrays("topk", k=8,
                                       W_enc=rng.normal(size=(64, 96)).astype(np.float32) / 8,
                                       W_dec=rng.normal(size=(96, 64)).astype(np.float32) / 8)
        d.save(tmp_path / hook)
        specs.append("%s=%s" % (hook, tmp_path / hook))
    common = ["--model", model, "--tokenizer", tok, "--pairs", tmp_path / "p.jsonl", "--dicts",
              *specs]
    for method in ("atp", "ig"):
        r = run("circuit", *common, "--method", method, "--steps", 3, "--out",
                tmp_path / ("%s.json" % method), "--dot", tmp_path / ("%s.dot" % method))
        assert r.returncode == 0, r.stderr
        assert "clean model accuracy" in r.stdout and "top nodes" in r.stdout
        g = sae.Graph.load(tmp_path / ("%s.json" % method))
        assert g.hook_names == ["resid_post.1", "resid_post.3"] and len(g) > 0
    r = run("circuit", "compare", tmp_path / "atp.json", tmp_path / "ig.json", "--json")
    assert r.returncode == 0, r.stderr
    assert -1.0 <= json.loads(r.stdout)["spearman"] <= 1.0
    r = run("circuit", "eval", *common, "--circuit", tmp_path / "ig.json", "--sizes", "0,3",
            "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["curve"][0]["faithfulness"] == 0.0
    # Bad input: one line each, non-zero exit.
    (tmp_path / "bad.jsonl").write_text('{"clean_prefix": "Once upon", "clean_answer": " a b"}\n')
    r = run("circuit", "--model", model, "--tokenizer", tok, "--pairs", tmp_path / "bad.jsonl",
            "--dicts", specs[0], "--out", tmp_path / "x.json")
    assert r.returncode == 1 and "bad.jsonl:1" in r.stderr and "one token" in r.stderr
    r = run("circuit", "--model", model, "--tokenizer", tok, "--pairs", tmp_path / "p.jsonl",
            "--dicts", "nowhere.9=" + str(tmp_path / "resid_post.1"), "--out", tmp_path / "x.json")
    assert r.returncode == 1 and "HOOK=PATH" in r.stderr


def test_graph_on_llama2(shared_dir):
    """sae.Graph on the llama2.c host (a C host reached through sae.Llama2): AtP node effects
    match exact patching on the top nodes, edges come from its backward pass from a hook point,
    and the circuit of every node is fully faithful."""
    with sae.Llama2(shared_dir / "data" / "stories260K.bin",
                    shared_dir / "data" / "tok512.bin") as host:
        girl = host.encode("Once upon a time, there was a little girl named Lily.")
        boy = host.encode("Once upon a time, there was a little boy named Tim.")
        she, he = host.encode(" She", bos=False)[-1], host.encode(" He", bos=False)[-1]
        p = sae.PromptPairs([girl, boy], [she, he], [boy, girl], [he, she])
        rng = np.random.default_rng(2)
        ds = [sae.Dictionary.from_arrays(
            "topk", k=8, W_enc=rng.normal(size=(64, 96)).astype(np.float32) / 8,
            W_dec=rng.normal(size=(96, 64)).astype(np.float32) / 8) for _ in range(2)]
        hooks = ["resid_post.1", "resid_post.3"]
        atp = sae.Graph.attribute(host, hooks, ds, p, method="atp", node_threshold=0.05)
        exact = sae.Graph.attribute(host, hooks, ds, p, method="exact", edges=False)
        assert atp.n_edges > 0
        for name in ("node_hooks", "node_positions", "node_features"):  # the same nodes
            assert np.array_equal(getattr(atp, name), getattr(exact, name)), name
        assert len(set(atp.top_nodes(5)) & set(exact.top_nodes(5))) >= 4
        assert np.corrcoef(atp.node_effects, exact.node_effects)[0, 1] > 0.95  # measured 0.997
        assert abs(exact.evaluate(host, ds, p, circuit=np.ones(len(exact), bool))
                   .faithfulness - 1.0) < 1e-4
