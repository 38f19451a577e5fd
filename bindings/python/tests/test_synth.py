"""sae.Synthetic (determinism, the generator's structure, statistics) and the ground-truth
metrics sae.mmcs, sae.mcc and sae.shrinkage against numpy."""

import itertools
import pickle

import numpy as np
import pytest

import sae


def unit_rows(a):
    a = np.asarray(a, np.float64)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


def cosines(A, B):
    return unit_rows(A) @ unit_rows(B).T


# ---- Synthetic ----------------------------------------------------------------------------------

def test_deterministic_whatever_the_split_and_threads():
    with sae.Synthetic(d=24, n_features=40, seed=3, threads=1) as a, \
            sae.Synthetic(d=24, n_features=40, seed=3, threads=2) as b, \
            sae.Synthetic(d=24, n_features=40, seed=4) as c:
        whole = a.sample(100)
        parts = np.concatenate([b.sample(25) for _ in range(4)])
        assert whole.shape == (100, 24) and whole.dtype == np.float32
        np.testing.assert_array_equal(whole, parts)
        np.testing.assert_array_equal(a.directions, b.directions)
        assert not np.array_equal(c.sample(100), whole)
        assert not np.array_equal(a.sample(100), whole)  # the next rows


def test_rows_are_codes_times_directions():
    with sae.Synthetic(d=20, n_features=30, n_active=4, seed=1) as s:
        x, codes = s.sample(500, return_codes=True)
        T = s.directions
        assert T.shape == (30, 20) and codes.shape == (500, 30)
        np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1, atol=1e-6)
        np.testing.assert_allclose(x, codes.astype(np.float64) @ T, atol=1e-5)
        assert (codes >= 0).all() and (codes <= 1).all()
        assert ((codes > 0).sum(1) >= 1).all()  # a row where nothing fired gets one feature


def test_probabilities_and_firing_rate():
    n_active, G = 5.0, 64
    with sae.Synthetic(d=16, n_features=G, n_active=n_active, decay=0.97, seed=2) as s:
        p = s.probabilities
        assert p.shape == (G,) and p.dtype == np.float32
        assert p.sum() == pytest.approx(n_active, rel=1e-5)
        assert np.all(np.diff(p) <= 0) and p[-1] == pytest.approx(p[0] * 0.97 ** (G - 1),
                                                                 rel=1e-4)
        _, codes = s.sample(20000, return_codes=True)
        fired = (codes > 0).mean(0)
        # Each frequency is p_g plus the rare rows where nothing fired; 5 sigma of a binomial.
        sigma = np.sqrt(p * (1 - p) / 20000)
        assert np.all(np.abs(fired - p) <= 5 * sigma + 1e-3), np.abs(fired - p).max()


def test_noise():
    with sae.Synthetic(d=32, n_features=16, noise_std=0.25, seed=5) as s:
        x, codes = s.sample(4000, return_codes=True)
        noise = x - codes.astype(np.float64) @ s.directions
        assert noise.mean() == pytest.approx(0, abs=0.01)
        assert noise.std() == pytest.approx(0.25, rel=0.02)


def test_correlated():
    with sae.Synthetic(d=16, n_features=32, n_active=3, correlated=True, copula_batch=64,
                       seed=6) as a, \
            sae.Synthetic(d=16, n_features=32, n_active=3, correlated=True, copula_batch=64,
                          seed=6) as b:
        first = a.probabilities
        assert first.sum() == pytest.approx(3, rel=1e-4)
        np.testing.assert_array_equal(a.sample(130), np.concatenate([b.sample(64),
                                                                     b.sample(66)]))
        assert not np.array_equal(a.probabilities, first)  # batch 2's copula draw


def test_sample_into_out():
    with sae.Synthetic(d=8, n_features=16, seed=7) as a, \
            sae.Synthetic(d=8, n_features=16, seed=7) as b:
        out = np.full((10, 8), np.nan, np.float32)
        assert a.sample(10, out=out) is out
        np.testing.assert_array_equal(out, b.sample(10))
        for bad in (np.zeros((10, 8)), np.zeros((9, 8), np.float32),
                    np.zeros((10, 16), np.float32)[:, ::2]):
            with pytest.raises(ValueError, match="out must be"):
                a.sample(10, out=bad)
        assert a.sample(0).shape == (0, 8)
        with pytest.raises(sae.SaeError):
            a.sample(-1)


@pytest.mark.parametrize("kwargs, error", [
    (dict(d=0), ValueError),
    (dict(n_features=0), ValueError),
    (dict(decay=0), ValueError),
    (dict(n_active=40, n_features=32), sae.SaeError),
    (dict(decay=1.5), sae.SaeError),
    (dict(noise_std=-1), sae.SaeError),
    (dict(n_active=float("nan")), ValueError),
])
def test_bad_options(kwargs, error):
    with pytest.raises(error):
        sae.Synthetic(**kwargs)


def test_lifetime():
    s = sae.Synthetic(d=8, n_features=8)
    assert (s.d, s.n_features) == (8, 8) and "d=8" in repr(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    s.close()
    s.close()
    assert s.closed
    for call in (lambda: s.sample(1), lambda: s.directions, lambda: s.probabilities):
        with pytest.raises(ValueError, match="closed"):
            call()


# ---- metrics -------------------------------------------------------------------------------------

def test_mmcs_matches_numpy():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(30, 12)), rng.normal(size=(45, 12))
    A[3] = 0  # a zero row has cosine 0 with everything
    C = cosines(A, B)
    a_to_b, b_to_a = sae.mmcs(A, B)
    assert a_to_b == pytest.approx(C.max(1).mean(), abs=1e-6)
    assert b_to_a == pytest.approx(C.max(0).mean(), abs=1e-6)
    wide = np.zeros((45, 20), np.float32)
    wide[:, :12] = B
    assert sae.mmcs(A.astype(np.float32), wide[:, :12]) == pytest.approx((a_to_b, b_to_a),
                                                                         abs=1e-6)
    assert sae.mmcs(B, B) == pytest.approx((1, 1), abs=1e-6)


def brute_force_mcc(A, B):
    C = np.abs(cosines(A, B))
    na, nb = C.shape
    best = -1.0
    if na <= nb:
        for cols in itertools.permutations(range(nb), na):
            best = max(best, C[np.arange(na), cols].sum())
    else:
        for rows in itertools.permutations(range(na), nb):
            best = max(best, C[rows, np.arange(nb)].sum())
    return best / min(na, nb)


@pytest.mark.parametrize("na, nb", [(5, 5), (4, 6), (6, 4)])
def test_mcc_matches_brute_force(na, nb):
    rng = np.random.default_rng(na * 10 + nb)
    A, B = rng.normal(size=(na, 7)), rng.normal(size=(nb, 7))
    value, match = sae.mcc(A, B, return_match=True)
    assert value == pytest.approx(brute_force_mcc(A, B), abs=1e-6)
    assert match.shape == (na,) and match.dtype == np.int32
    matched = match[match >= 0]
    assert len(matched) == min(na, nb) and len(set(matched)) == len(matched)
    C = np.abs(cosines(A, B))
    assert C[match >= 0, matched].mean() == pytest.approx(value, abs=1e-6)
    assert sae.mcc(A, B) == value


def test_mcc_recovers_a_signed_permutation():
    rng = np.random.default_rng(1)
    B = rng.normal(size=(20, 9))
    perm = rng.permutation(20)
    A = B[perm] * np.where(rng.random(20) < 0.5, -2.0, 3.0)[:, None]
    value, match = sae.mcc(A, B, return_match=True)
    assert value == pytest.approx(1, abs=1e-6)
    np.testing.assert_array_equal(match, perm)


def test_shrinkage_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 10))
    x[7] = 0  # rows with ||x|| = 0 are left out
    x_hat = 0.8 * x + 0.01 * rng.normal(size=x.shape)
    norms = np.linalg.norm(x, axis=1)
    keep = norms > 0
    want = (np.linalg.norm(x_hat, axis=1)[keep] / norms[keep]).mean()
    assert sae.shrinkage(x, x_hat) == pytest.approx(want, rel=1e-5)
    assert sae.shrinkage(x, x) == pytest.approx(1, rel=1e-6)


def test_metric_errors():
    A = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="expected"):
        sae.mmcs(A, np.ones((4, 5)))
    with pytest.raises(ValueError, match="expected"):
        sae.mcc(A[0], A)
    with pytest.raises(ValueError, match="rows"):
        sae.shrinkage(A, A[:3])
    bad = A.copy()
    bad[1, 2] = np.nan
    for call in (lambda: sae.mmcs(A, bad), lambda: sae.mcc(bad, A),
                 lambda: sae.shrinkage(A, bad)):
        with pytest.raises(sae.SaeError) as info:
            call()
        assert info.value.code == -6
    with pytest.raises(sae.SaeError):
        sae.shrinkage(np.zeros((3, 6)), A[:3])  # every row of x is zero
