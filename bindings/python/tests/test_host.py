"""sae.Host with a model written in numpy: its forward and backward reached from C through the
sae_host callback table (checked against the model run directly and by finite differences,
with stop-gradient), libsae patches installed at its hook points (against a float64 numpy
reference of each patch), Patch.apply on arrays, and errors raised in the callbacks coming back
as the original exception."""

import numpy as np
import pytest

import sae
from _reference import Reference

V, D, H, LAYERS, T = 13, 8, 16, 2, 6
NAMES = [kind + "." + str(layer) for layer in range(LAYERS)
         for kind in ("resid_pre", "mlp_out", "resid_post")]


class ToyHost(sae.Host):
    """embed (+ position) -> LAYERS x [resid_pre, x + tanh(x W1 + b1) W2 (mlp_out), resid_post]
    -> unembed, in float64 (activations arrive as float32 from the C hooks). The forward keeps
    what the backward needs."""

    def __init__(self, seed=0, with_backward=True):
        if not with_backward:
            self.backward = None
        super().__init__(NAMES, D, V, T, LAYERS)
        rng = np.random.default_rng(seed)
        self.E = rng.normal(size=(V, D))
        self.P = 0.3 * rng.normal(size=(T, D))
        self.W1 = rng.normal(size=(LAYERS, D, H)) / np.sqrt(D)
        self.b1 = 0.1 * rng.normal(size=(LAYERS, H))
        self.W2 = rng.normal(size=(LAYERS, H, D)) / np.sqrt(H)
        self.U = rng.normal(size=(D, V)) / np.sqrt(D)
        self.fail = None  # "forward" / "backward" / "shape": misbehave on purpose

    def forward(self, tokens, hook):
        if self.fail == "forward":
            raise RuntimeError("the toy forward failed")
        n_seq, seq_len = tokens.shape
        x = self.E[tokens] + self.P[:seq_len]
        self.saved = []
        for layer in range(LAYERS):
            x = hook("resid_pre.%d" % layer, x)
            a = np.tanh(x @ self.W1[layer] + self.b1[layer])
            self.saved.append((np.asarray(x, np.float64), a))
            m = hook("mlp_out.%d" % layer, a @ self.W2[layer])
            x = hook("resid_post.%d" % layer, x + m)
        logits = np.asarray(x) @ self.U
        return logits[:, :, :3] if self.fail == "shape" else logits

    def backward(self, d_logits, wanted, stop_grad):
        if self.fail == "backward":
            raise KeyError("the toy backward failed")
        grads = {}

        def arrive(name, g):  # the gradient reaching a hook point; a stopped one passes nothing
            if name in wanted:
                grads[name] = g.copy()
            return np.zeros_like(g) if name in stop_grad else g

        g = np.asarray(d_logits, np.float64) @ self.U.T
        for layer in reversed(range(LAYERS)):
            x, a = self.saved[layer]
            g = arrive("resid_post.%d" % layer, g)
            g_m = arrive("mlp_out.%d" % layer, g)
            g_z = (g_m @ self.W2[layer].T) * (1 - a * a)
            g = arrive("resid_pre.%d" % layer, g + g_z @ self.W1[layer].T)
        return grads


def identity(name, x):
    return x


def tokens_batch(seed=1, n_seq=3):
    return np.random.default_rng(seed).integers(0, V, size=(n_seq, T))


def ce64(logits, targets):
    """Mean cross-entropy in float64 (rows with a negative target left out)."""
    z = np.asarray(logits, np.float64)
    z = z.reshape(-1, z.shape[-1])
    t = np.asarray(targets).reshape(-1)
    keep = t >= 0
    z, t = z[keep], t[keep]
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(lse - z[np.arange(len(t)), t]))


def next_token_targets(tokens):
    targets = np.full(tokens.shape, -1)
    targets[:, :-1] = tokens[:, 1:]
    return targets


# ---- forward and backward through C ------------------------------------------------------------

def test_run_through_c_matches_direct_forward():
    host = ToyHost()
    tokens = tokens_batch()
    got = host.run(tokens)
    want = host.forward(tokens.astype(np.int32), identity)
    assert got.dtype == np.float32 and got.shape == (3, T, V)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    one = host.run(tokens[1])  # a single sequence keeps its 1-D shape
    np.testing.assert_allclose(one, got[1], rtol=1e-6, atol=1e-6)
    assert host.run(tokens, logits=False) is None
    assert host.hook_id("mlp_out.1") == NAMES.index("mlp_out.1")
    assert host.has_backward and not ToyHost(with_backward=False).has_backward


def perturbed_ce(host, tokens, targets, at, index, eps, clamp=None):
    """CE with activation [index] at hook `at` moved by eps, the model run directly in float64;
    `clamp` = (name, values): that hook point set to fixed values (a stopped gradient)."""
    def hook(name, x):
        x = np.array(x, np.float64)
        if clamp and name == clamp[0]:
            x = clamp[1].reshape(x.shape).copy()
        if name == at:
            x.reshape(-1)[index] += eps
        return x
    return ce64(host.forward(tokens, hook), targets)


def recorded(host, tokens, name):
    """The activations at hook `name` of a clean direct forward."""
    seen = {}

    def hook(n, x):
        if n == name:
            seen[n] = np.array(x, np.float64)
        return x
    host.forward(tokens, hook)
    return seen[name]


@pytest.mark.parametrize("stop", [None, "mlp_out.1"])
def test_backward_finite_differences(stop):
    host = ToyHost()
    tokens = tokens_batch().astype(np.int32)
    targets = next_token_targets(tokens)
    ce, d_logits = sae.logits_ce(host.run(tokens), targets)
    assert abs(ce - ce64(host.forward(tokens, identity), targets)) < 1e-5
    wanted = ["resid_pre.0", "mlp_out.0", "resid_pre.1", "resid_post.1"]
    grads = host.grad(d_logits, wanted, stop_grad=[stop] if stop else [])
    clamp = (stop, recorded(host, tokens, stop)) if stop else None
    rng = np.random.default_rng(2)
    eps = 1e-4
    for name in wanted:
        assert grads[name].shape == (3, T, D)
        for index in rng.choice(3 * T * D, size=6, replace=False):
            fd = (perturbed_ce(host, tokens, targets, name, index, eps, clamp)
                  - perturbed_ce(host, tokens, targets, name, index, -eps, clamp)) / (2 * eps)
            got = grads[name].reshape(-1)[index]
            assert abs(got - fd) <= 1e-4 + 1e-3 * abs(fd), (name, index, got, fd)


def test_stop_gradient_cuts_everything_below():
    host = ToyHost()
    tokens = tokens_batch().astype(np.int32)
    _, d_logits = sae.logits_ce(host.run(tokens), next_token_targets(tokens))
    free = host.grad(d_logits, ["resid_pre.1", "resid_pre.0"])
    cut = host.grad(d_logits, ["resid_pre.1", "resid_pre.0"], stop_grad=["resid_pre.1"])
    np.testing.assert_array_equal(cut["resid_pre.1"], free["resid_pre.1"])
    assert np.abs(free["resid_pre.0"]).max() > 0
    assert not cut["resid_pre.0"].any()


# ---- patches through the host, against numpy ---------------------------------------------------

@pytest.fixture(scope="module")
def dictionary():
    rng = np.random.default_rng(3)
    params = dict(W_enc=rng.normal(size=(D, 24)).astype(np.float32) / np.sqrt(D),
                  b_enc=(0.1 * rng.normal(size=24) - 0.1).astype(np.float32),
                  W_dec=rng.normal(size=(24, D)).astype(np.float32) / np.sqrt(D),
                  b_dec=(0.1 * rng.normal(size=D)).astype(np.float32))
    d = sae.Dictionary.from_arrays("standard", **params)
    d.ref = Reference("standard", **params)
    return d


def codes_of(d, x):
    return d.ref.forward(np.asarray(x, np.float64).reshape(-1, D))[0]


def edit_rows(d, x, features, new_codes):
    """x + sum_j (new_j - f_j) W_dec[j] over `features` (error kept), new_codes (n, |S|)."""
    x = np.asarray(x, np.float64).reshape(-1, D)
    f = codes_of(d, x)[:, features]
    return x + (new_codes - f) @ d.ref.W_dec[features]


def references(d, features, mean, source):
    """name -> (patch, numpy function of the (n, D) rows)."""
    S = np.array(features)
    return {
        "splice": (sae.Patch.splice(d), lambda x: d.ref.forward(x)[2]),
        "splice_keep_error": (sae.Patch.splice(d, keep_error=True), lambda x: x),
        "steer": (sae.Patch.steer(d, 5, 1.5), lambda x: x + 1.5 * d.ref.W_dec[5]),
        "steer_normalized": (sae.Patch.steer(d, 5, 1.5, normalize=True),
                             lambda x: x + 1.5 * d.ref.W_dec[5] / d.ref.norms[5]),
        "clamp": (sae.Patch.clamp(d, 7, 2.0), lambda x: edit_rows(d, x, [7], 2.0)),
        "ablate_zero": (sae.Patch.ablate(d, features), lambda x: edit_rows(d, x, S, 0.0)),
        "ablate_mean": (sae.Patch.ablate(d, features, "mean", mean=mean),
                        lambda x: edit_rows(d, x, S, mean[S])),
        "edit": (sae.Patch.edit(d, features, source), lambda x: edit_rows(d, x, S, source[S])),
    }


def patched_forward(host, tokens, hooks):
    """Direct float64 forward with numpy functions applied at hook points (name -> fn)."""
    def hook(name, x):
        x = np.asarray(x, np.float64)
        return hooks[name](x.reshape(-1, D)).reshape(x.shape) if name in hooks else x
    return host.forward(tokens, hook)


def test_patches_through_host_match_numpy(dictionary):
    host = ToyHost()
    tokens = tokens_batch().astype(np.int32)
    rng = np.random.default_rng(4)
    mean = np.abs(rng.normal(size=24)).astype(np.float32)
    source = np.abs(rng.normal(size=24)).astype(np.float32)
    for name, (patch, fn) in references(dictionary, [1, 4, 9, 20], mean, source).items():
        for at in ("resid_post.0", "mlp_out.1"):
            got = host.run(tokens, {at: patch})
            want = patched_forward(host, tokens, {at: fn})
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name + at)
        patch.close()


def test_record_and_composition(dictionary):
    host = ToyHost()
    tokens = tokens_batch().astype(np.int32)
    before = sae.Patch.record(dictionary, 100, codes=True)
    after = sae.Patch.record(dictionary, 100, activations=False, codes=True)
    steer = sae.Patch.steer(dictionary, 2, -0.7)
    splice = sae.Patch.splice(dictionary)
    got = host.run(tokens, [("resid_post.0", before), ("resid_post.0", steer),
                            ("resid_post.0", after), ("mlp_out.1", splice)])
    shift = -0.7 * dictionary.ref.W_dec[2]
    want = patched_forward(host, tokens, {"resid_post.0": lambda x: x + shift,
                                          "mlp_out.1": lambda x: dictionary.ref.forward(x)[2]})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    clean = recorded(host, tokens, "resid_post.0").reshape(-1, D)
    assert before.n_recorded == 3 * T and after.n_recorded == 3 * T
    np.testing.assert_allclose(before.activations, clean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(before.codes.to_dense(24), codes_of(dictionary, clean),
                               rtol=1e-4, atol=1e-5)
    assert after.activations is None
    np.testing.assert_allclose(after.codes.to_dense(24), codes_of(dictionary, clean + shift),
                               rtol=1e-4, atol=1e-5)
    # A second run appends; clear() empties; a full buffer fails the run with libsae's message.
    host.run(tokens, {"resid_pre.1": before})
    assert before.n_recorded == 6 * T
    before.clear()
    assert before.n_recorded == 0 and before.activations.shape == (0, D)
    small = sae.Patch.record(dictionary, 2 * T)
    with pytest.raises(sae.SaeError, match="record buffer full") as err:
        host.run(tokens, {"resid_pre.0": small})
    assert err.value.code == -9 and small.n_recorded == 0


def test_resample_draws_rows_of_the_pool(dictionary):
    host = ToyHost()
    tokens = tokens_batch().astype(np.int32)
    S = np.array([0, 3, 11])
    pool = np.abs(np.random.default_rng(5).normal(size=(4, 24))).astype(np.float32)
    seen = sae.Patch.record(dictionary, 100)
    out = sae.Patch.record(dictionary, 100)
    resample = sae.Patch.ablate(dictionary, S, "resample", pool=pool, seed=9)
    host.run(tokens, {"mlp_out.0": [seen, resample, out]})
    x, y = seen.activations, out.activations
    candidates = np.stack([edit_rows(dictionary, x, S, np.broadcast_to(pool[p, S], (len(x), 3)))
                           for p in range(4)])  # (4, n, D): each row must be one of these
    err = np.abs(candidates - y[None]).max(axis=2).min(axis=0)
    assert err.max() < 1e-4
    again = sae.Patch.ablate(dictionary, S, "resample", pool=pool, seed=9)
    np.testing.assert_array_equal(host.run(tokens, {"mlp_out.0": again}),
                                  host.run(tokens, {"mlp_out.0": sae.Patch.ablate(
                                      dictionary, S, "resample", pool=pool, seed=9)}))


def test_patch_apply_on_arrays(dictionary):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, D)).astype(np.float32)
    mean = np.abs(rng.normal(size=24)).astype(np.float32)
    for name, (patch, fn) in references(dictionary, [2, 6], mean, 2 * mean).items():
        y = x.copy()
        assert patch.apply(y) is y
        np.testing.assert_allclose(y, fn(x.astype(np.float64)), rtol=1e-5, atol=1e-5,
                                   err_msg=name)
        # Rows of a wider buffer are patched in place, the other columns left alone.
        big = np.zeros((5, D + 3), np.float32)
        big[:, :D] = x
        patch.apply(big[:, :D])
        np.testing.assert_allclose(big[:, :D], y, rtol=1e-6, atol=1e-6)
        assert not big[:, D:].any()
    p = sae.Patch.steer(dictionary, 0, 1.0)
    with pytest.raises(ValueError, match="in place"):
        p.apply(x.astype(np.float64))
    with pytest.raises(ValueError, match="expected"):
        p.apply(np.zeros((2, D + 1), np.float32))
    assert p.kind == "steer" and p.d_in == D and "steer" in repr(p)
    np.testing.assert_allclose(sae.steering_direction(dictionary, 3, 2.0),
                               2 * dictionary.ref.W_dec[3], rtol=1e-6)
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.apply(x)


def test_control_vector_export(dictionary, tmp_path):
    dirs = np.stack([sae.steering_direction(dictionary, j, 3.0, normalize=True) for j in (1, 2)])
    path = tmp_path / "steer.gguf"
    sae.export_control_vector(path, dirs, [2, 5])
    data = path.read_bytes()
    assert data[:4] == b"GGUF" and b"controlvector" in data and b"direction.5" in data
    # The two F32 tensors are stored in order, each one's data aligned to 32 bytes.
    at = data.index(dirs.tobytes())
    assert at % 32 == 0 and at + dirs.nbytes <= len(data)
    with pytest.raises(sae.SaeError, match="layer"):
        sae.export_control_vector(path, dirs, [0, 5])
    with pytest.raises(ValueError, match="one layer per direction"):
        sae.export_control_vector(path, dirs, [1])


def test_patch_constructor_errors(dictionary):
    with pytest.raises(sae.SaeError, match="outside"):
        sae.Patch.clamp(dictionary, 24, 1.0)
    with pytest.raises(sae.SaeError, match="twice"):
        sae.Patch.ablate(dictionary, [1, 1])
    with pytest.raises(ValueError, match="mean"):
        sae.Patch.ablate(dictionary, [1], "mean")
    with pytest.raises(ValueError, match="mode"):
        sae.Patch.ablate(dictionary, [1], "sideways")
    with pytest.raises(ValueError, match="out of range"):
        sae.Patch.steer(dictionary, 2 ** 40, 1.0)
    with pytest.raises(sae.SaeError):
        sae.Patch.steer(dictionary, 1, float("nan"))
    with pytest.raises(ValueError, match="shape"):
        sae.Patch.edit(dictionary, [1], np.zeros(5))
    host = ToyHost()
    wide = sae.Dictionary.from_arrays(W_enc=np.zeros((D + 1, 4)), W_dec=np.zeros((4, D + 1)))
    with pytest.raises(ValueError, match="d_model"):
        host.run(tokens_batch(), {"resid_pre.0": sae.Patch.steer(wide, 0, 1.0)})
    with pytest.raises(sae.SaeError, match="no hook point"):
        host.run(tokens_batch(), {"resid_mid.0": sae.Patch.steer(dictionary, 0, 1.0)})


def test_patch_keeps_its_dictionary_alive():
    d = sae.Dictionary.from_arrays(W_enc=np.eye(D, 4), W_dec=np.eye(4, D))
    p = sae.Patch.steer(d, 1, 2.0)
    d.close()
    x = np.zeros((1, D), np.float32)
    p.apply(x)
    assert x[0, 1] == 2.0


# ---- errors in the callbacks -------------------------------------------------------------------

def test_callback_exceptions_come_back():
    host = ToyHost()
    tokens = tokens_batch()
    host.fail = "forward"
    with pytest.raises(RuntimeError, match="toy forward failed"):
        host.run(tokens)
    host.fail = "shape"
    with pytest.raises(ValueError, match="returned logits of shape"):
        host.run(tokens)
    host.fail = None
    _, d_logits = sae.logits_ce(host.run(tokens), next_token_targets(tokens))
    host.fail = "backward"
    with pytest.raises(KeyError, match="toy backward failed"):
        host.grad(d_logits, ["resid_pre.0"])
    host.fail = None
    assert host.grad(d_logits, ["resid_pre.0"])["resid_pre.0"].any()  # still usable
    with pytest.raises(sae.SaeError) as err:
        ToyHost(with_backward=False).grad(d_logits, ["resid_pre.0"])
    assert "no backward" in str(err.value)
    with pytest.raises(sae.SaeError, match="outside"):
        host.run(np.full((1, 3), V))
    with pytest.raises(sae.SaeError, match="sequence"):
        host.run(np.zeros((1, T + 1), int))


def test_bad_host_tables():
    class Dup(sae.Host):
        def forward(self, tokens, hook):
            return np.zeros(tokens.shape + (4,))
    with pytest.raises(sae.SaeError, match="both"):
        Dup(["a", "a"], 4, 4, 8)
    with pytest.raises(sae.SaeError, match="impossible dimensions"):
        Dup(["a"], 0, 4, 8)
    host = Dup(["a", "b"], 4, 4, 8)
    np.testing.assert_array_equal(host.run([1, 2]), np.zeros((2, 4)))


def test_logit_metrics():
    z = np.random.default_rng(7).normal(size=(2, 3, 5)).astype(np.float32)
    diff, d = sae.logits_diff(z, 4, 1)
    assert abs(diff - np.mean(z[:, -1, 4] - z[:, -1, 1])) < 1e-6
    assert d[:, -1, 4].tolist() == [0.5, 0.5] and d[:, -1, 1].tolist() == [-0.5, -0.5]
    targets = np.array([[1, 2, -1], [0, -1, 4]])
    ce, g = sae.logits_ce(z, targets)
    assert abs(ce - ce64(z, targets)) < 1e-5
    assert not g[0, 2].any() and g.shape == z.shape
