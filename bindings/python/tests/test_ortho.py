"""sae.Ortho (include/sae/ortho.h): the sae-icm oracle cases, the gradient against finite
differences, the statistics against numpy and their closed forms, Loewdin and the spectrum
against numpy's SVD, and bad input."""

import math

import numpy as np
import pytest

import sae
from _shared import SHARED_DIR


def oracle_files():
    files = sorted((SHARED_DIR / "oracle").glob("icm_orthogonality_*.safetensors"))
    return files or ["<no icm_orthogonality_* case in %s>" % (SHARED_DIR / "oracle")]


def rel(got, want, rtol, what):
    assert abs(got - want) <= rtol * abs(want), "%s: got %.9g, want %.9g" % (what, got, want)


@pytest.mark.parametrize("path", oracle_files(), ids=lambda p: getattr(p, "stem", p))
def test_icm_oracle(path, shared_dir):
    t = sae.load_file(path)
    W = np.ascontiguousarray(t["param.W_dec.weight"].T)  # sae-icm's columns are our rows
    S = t["in.sampled_indices"]
    o = sae.Ortho(W)
    p, g = o.penalty(S, grad=True)
    rel(p, float(t["out.orthogonality"]), 1e-5, "orthogonality")
    np.testing.assert_allclose(g, t["out.grad.W_dec.weight"].T, rtol=1e-4, atol=1e-3)
    c = o.coherence(S)
    rel(c["max_cos"], float(t["out.metrics.max_cos"]), 1e-5, "max_cos")
    rel(c["sum_cos"], float(t["out.orthogonality_py.sum_cos"]), 1e-5, "sum_cos")
    rel(c["mean_cos"], float(t["out.orthogonality_py.mean_cos"]), 1e-5, "mean_cos")
    rel(c["sum_cos"] / c["n"] ** 2, float(t["out.metrics.mean_cos_insert_sae"]), 1e-5,
        "insert_sae mean_cos (/ n^2)")
    for name in ("sum_norm", "mean_norm", "sum_raw", "normalizing_raw", "mean_raw"):
        rel(c["welch_" + name], float(t["out.welch." + name]), 1e-5, "welch " + name)
    assert c["welch_bound"] == pytest.approx(1 / W.shape[1], rel=1e-12)
    x = t["in.recon.x"].reshape(-1, W.shape[1])
    x_hat = t["in.recon.x_hat"].reshape(-1, W.shape[1])
    rel(sae.Ortho.relative_l2(x_hat, x), float(t["out.recon.reconstruction_loss"]), 1e-6,
        "reconstruction loss")


def penalty64(W, S):
    D = W[S].astype(np.float64)
    G = D @ D.T
    return float(np.sum(np.tril(G, -1) ** 2))


def test_gradient_finite_differences():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((15, 6)).astype(np.float32)
    S = sae.Ortho.subset(9, 15, seed=2)
    p, g = sae.Ortho(W).penalty(S, grad=True, scale=0.5)
    assert p == pytest.approx(penalty64(W, S), rel=1e-5)
    h = 1e-3
    for i in range(15):
        for k in range(6):
            up, down = W.astype(np.float64), W.astype(np.float64)
            up[i, k] += h
            down[i, k] -= h
            fd = 0.5 * (penalty64(up, S) - penalty64(down, S)) / (2 * h)
            assert abs(g[i, k] - fd) <= 1e-3 * (1 + abs(fd)), (i, k, g[i, k], fd)
    assert not g[np.setdiff1d(np.arange(15), S)].any()  # rows outside S get nothing
    # relative L2: its gradient too
    x, x_hat = rng.standard_normal((2, 4, 5))
    L, gl = sae.Ortho.relative_l2(x_hat, x, grad=True)
    for idx in np.ndindex(4, 5):
        up, down = x_hat.copy(), x_hat.copy()
        up[idx] += h
        down[idx] -= h
        fd = (sae.Ortho.relative_l2(up, x) - sae.Ortho.relative_l2(down, x)) / (2 * h)
        assert abs(gl[idx] - fd) <= 1e-4, (idx, gl[idx], fd)


def coherence64(W):
    """The coherence statistics straight from their definitions, in float64."""
    D = W.astype(np.float64)
    norms = np.linalg.norm(D, axis=1)
    C = np.abs(D @ D.T) / np.outer(norms, norms)
    n, d = D.shape
    lower = C[np.tril_indices(n, -1)]
    off = C - np.diag(np.diag(C))
    fmax = off.max(axis=1)
    G = D @ D.T
    return {"max_cos": lower.max(), "mean_cos": lower.mean(), "sum_cos": lower.sum(),
            "mean_max_cos": fmax.mean(), "frame_potential": (off ** 2).sum(),
            "welch_mean_norm": (C ** 2).sum() / n ** 2,
            "welch_mean_raw": (G ** 2).sum() / (norms ** 2).sum() ** 2,
            "frame_potential_bound": max(0.0, n * n / d - n),
            "hist": np.bincount(np.minimum((fmax * 20).astype(int), 19), minlength=20),
            "fmax": fmax}


def test_coherence_matches_numpy():
    rng = np.random.default_rng(5)
    big = rng.standard_normal((300, 40)).astype(np.float32)
    W = big[:, :24]  # row-strided: borrowed with ld = 40
    o = sae.Ortho(W)
    assert np.shares_memory(o.W_dec, big)
    S = sae.Ortho.subset(120, 300, seed=9)
    for subset, rows in ((None, W), (S[::-1].copy(), W[S[::-1]])):
        stats, fmax = o.coherence(subset, per_feature=True)
        want = coherence64(rows)
        assert stats["n"] == rows.shape[0] and stats["d"] == 24 and stats["n_zero"] == 0
        for name in ("max_cos", "mean_cos", "sum_cos", "mean_max_cos", "frame_potential",
                     "welch_mean_norm", "welch_mean_raw", "frame_potential_bound"):
            rel(stats[name], want[name], 1e-5, name)
        np.testing.assert_allclose(fmax, want["fmax"], rtol=1e-5)
        np.testing.assert_array_equal(stats["max_cos_hist"], want["hist"])
        i, j = stats["max_i"], stats["max_j"]
        cos_ij = abs(W[i] @ W[j]) / np.linalg.norm(W[i]) / np.linalg.norm(W[j])
        assert cos_ij == pytest.approx(stats["max_cos"], rel=1e-5)


def test_random_unit_vectors_closed_form():
    """E|cos| of independent uniform directions in R^d: Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2));
    the pair mean has variance Var|cos| / C(n, 2) (pairwise independence), Var = 1/d - E^2."""
    n, d = 2000, 64
    W = np.random.default_rng(7).standard_normal((n, d)).astype(np.float32)
    c = sae.Ortho(W).coherence()
    e_abs = math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)
    se = math.sqrt((1 / d - e_abs ** 2) / (n * (n - 1) / 2))
    assert abs(c["mean_cos"] - e_abs) < 5 * se, (c["mean_cos"], e_abs, se)
    assert c["welch_mean_norm"] >= c["welch_bound"]


def test_lowdin_matches_svd():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((40, 16)).astype(np.float32)
    W0 = W.copy()
    S = np.array([7, 3, 30, 12, 25, 1, 38, 19, 22, 5, 9, 14], dtype=np.int64)
    o = sae.Ortho(W)
    L, sigma = o.lowdin(S, return_singular_values=True)
    np.testing.assert_array_equal(W, W0)  # the input is not changed
    U, s, Vt = np.linalg.svd(W[S].astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(sigma, s, rtol=1e-5)
    np.testing.assert_allclose(L[S], U @ Vt, atol=2e-5)
    np.testing.assert_allclose(L[S] @ L[S].T, np.eye(len(S)), atol=1e-5)
    rest = np.setdiff1d(np.arange(40), S)
    np.testing.assert_array_equal(L[rest], W[rest])
    K = o.lowdin(S, keep_norms=True)
    np.testing.assert_allclose(np.linalg.norm(K[S], axis=1), np.linalg.norm(W[S], axis=1),
                               rtol=1e-5)
    np.testing.assert_allclose(K[S] / np.linalg.norm(K[S], axis=1, keepdims=True), L[S],
                               atol=1e-5)


def test_spectrum_matches_svd():
    rng = np.random.default_rng(13)
    for shape, subset in (((500, 20), None), ((500, 20), sae.Ortho.subset(300, 500, 1)),
                          ((10, 30), None), ((60, 30), sae.Ortho.subset(12, 60, 2))):
        W = (rng.standard_normal(shape) * np.linspace(1, 3, shape[1])).astype(np.float32)
        sp = sae.Ortho(W).spectrum(subset)
        s = np.linalg.svd(W if subset is None else W[subset], compute_uv=False)
        np.testing.assert_allclose(sp["singular_values"], s, atol=1e-5 * s[0])
        p = s / s.sum()
        assert sp["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-5)
        assert sp["participation_ratio"] == pytest.approx((s ** 2).sum() ** 2 / (s ** 4).sum(),
                                                          rel=1e-5)


def test_dictionary():
    rng = np.random.default_rng(17)
    d_in, d_sae = 16, 48
    W_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    W_enc = rng.standard_normal((d_in, d_sae)).astype(np.float32)
    S = sae.Ortho.subset(16, d_sae, seed=4)
    with sae.Dictionary.from_arrays("standard", W_enc=W_enc, W_dec=W_dec) as d:
        o = sae.Ortho(d)
        assert (o.n_features, o.d) == (d_sae, d_in)
        assert o.penalty(S) == pytest.approx(sae.Ortho(W_dec).penalty(S), rel=1e-12)
        with o.lowdin_dictionary(S) as orth:
            np.testing.assert_array_equal(orth.W_dec, o.lowdin(S))
            np.testing.assert_array_equal(orth.W_enc, d.W_enc)
            np.testing.assert_allclose(orth.decoder_norms[S], 1, rtol=1e-5)
    with pytest.raises(TypeError):
        sae.Ortho(W_dec).lowdin_dictionary(S)


def test_subset():
    a = sae.Ortho.subset(50, 1000, seed=42, counter=3)
    assert a.dtype == np.int32 and len(a) == 50 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, sae.Ortho.subset(50, 1000, seed=42, counter=3))
    assert not np.array_equal(a, sae.Ortho.subset(50, 1000, seed=42, counter=4))
    np.testing.assert_array_equal(sae.Ortho.subset(64, 20), np.arange(20))


def test_errors():
    W = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    o = sae.Ortho(W)
    with pytest.raises(sae.SaeError) as e:
        o.penalty([1, 4, 1])
    assert e.value.code == -1 and "repeated" in e.value.message
    with pytest.raises(ValueError, match="outside"):
        o.coherence([0, 6])
    with pytest.raises(ValueError, match="1-D"):
        o.spectrum([[0, 1]])
    with pytest.raises(sae.SaeError, match="at most d rows"):
        o.lowdin([0, 1, 2, 3, 4])
    with pytest.raises(sae.SaeError):
        o.lowdin()  # 6 rows in R^4
    with pytest.raises(sae.SaeError):
        o.coherence([2])  # one direction
    W[5, 2] = np.nan
    with pytest.raises(sae.SaeError, match=r"W_dec\[5, 2\]"):
        sae.Ortho(W).spectrum()
    assert sae.Ortho(W).penalty([0, 3]) >= 0  # the NaN row is not in S
    with pytest.raises(ValueError):
        sae.Ortho(np.zeros(5, dtype=np.float32))
