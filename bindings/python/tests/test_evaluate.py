"""sae.evaluate (sae_dict_evaluate) against numpy on the same rows, from arrays, files, a
Synthetic generator and a sae.Source; the result mirror; errors."""

import ctypes
import dataclasses

import numpy as np
import pytest

import sae
from sae import _lib, _structs
from test_trainer import assert_no_holes, written_bytes

D_IN, D_SAE = 12, 30


@pytest.fixture(scope="module")
def dictionary():
    """A TopK dictionary with some features that never fire and one that always does."""
    rng = np.random.default_rng(7)
    W_enc = rng.normal(size=(D_IN, D_SAE)).astype(np.float32)
    b_enc = rng.normal(size=D_SAE).astype(np.float32)
    W_enc[:, :4] = 0
    b_enc[:4] = -1  # features 0..3: never positive
    W_enc[:, 4] = 0
    b_enc[4] = 30  # feature 4: always among the top k
    with sae.Dictionary.from_arrays("topk", k=4, W_enc=W_enc, b_enc=b_enc,
                                    W_dec=rng.normal(size=(D_SAE, D_IN)) * 0.3,
                                    b_dec=rng.normal(size=D_IN) * 0.1, threads=1) as d:
        yield d


def rows(n, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, D_IN)) + 0.5).astype(np.float32)


def numpy_eval(d, x, dense_threshold=0.1):
    f = d.encode(x).astype(np.float64)
    x_hat = d.decode(d.encode(x)).astype(np.float64)
    x = x.astype(np.float64)
    err = ((x - x_hat) ** 2).sum()
    counts = (f != 0).sum(0)
    p = counts[counts > 0] / len(x)
    bins = np.clip(np.floor((np.log10(p) + 10) / 0.5).astype(int), 0, 19)
    norms = np.linalg.norm(x, axis=1)
    fvu = err / ((x - x.mean(0)) ** 2).sum()
    return dict(rows=len(x), d_sae=d.d_sae, mse=err / len(x), fvu=fvu, explained_variance=1 - fvu,
                l0=(f != 0).sum() / len(x),
                relative_reconstruction_bias=(x_hat ** 2).sum() / (x * x_hat).sum(),
                shrinkage=(np.linalg.norm(x_hat, axis=1) / norms)[norms > 0].mean(),
                dense_threshold=dense_threshold, n_dead=int((counts == 0).sum()),
                n_dense=int((counts / len(x) > dense_threshold).sum()),
                density_histogram=np.bincount(bins, minlength=20), fire_counts=counts)


def assert_matches(got, want):
    assert isinstance(got, sae.EvalResult)
    for name, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(got, name), value, err_msg=name)
        elif isinstance(value, int):
            assert getattr(got, name) == value, name
        else:
            assert getattr(got, name) == pytest.approx(value, rel=1e-5, abs=1e-9), name


def test_eval_result_mirror_matches_library(dictionary):
    assert_no_holes(_structs.EvalResult)
    x = rows(8)
    with sae.Source.from_array(x) as src:
        pointer = ctypes.POINTER(_structs.EvalResult)

        def call(address):
            src.reset()
            _lib.lib.sae_dict_evaluate(ctypes.cast(address, pointer), None,
                                       dictionary._handle, src._handle, None)

        assert written_bytes(call) == ctypes.sizeof(_structs.EvalResult)
    assert [f.name for f in dataclasses.fields(sae.EvalResult)] == [
        name for name, _ in _structs.EvalResult._fields_[2:]] + ["fire_counts"]


def test_array_matches_numpy(dictionary):
    x = rows(1000)
    got = sae.evaluate(dictionary, x, block_rows=64)
    assert_matches(got, numpy_eval(dictionary, x))
    assert not got.fire_counts[:4].any() and got.fire_counts[4] == 1000
    assert got.n_dead >= 4 and got.n_dense >= 1 and got.l0 == 4
    assert got.density_histogram.sum() == D_SAE - got.n_dead
    # The first rows only, another density cutoff, any block size.
    assert_matches(sae.evaluate(dictionary, x, max_rows=300, dense_threshold=0.5),
                   numpy_eval(dictionary, x[:300], dense_threshold=0.5))


def test_files_and_source(dictionary, tmp_path):
    x = rows(500, seed=1)
    sae.save_file({"x": x[:200]}, tmp_path / "a.safetensors")
    x[200:].tofile(tmp_path / "b.f32")
    want = numpy_eval(dictionary, x)
    with sae.Source.from_files([tmp_path / "a.safetensors", tmp_path / "b.f32"],
                               raw_d=D_IN) as src:
        assert_matches(sae.evaluate(dictionary, src), want)
    with sae.Source.from_array(x) as src:  # read from where it stands
        assert_matches(sae.evaluate(dictionary, src, max_rows=100),
                       numpy_eval(dictionary, x[:100]))
        assert_matches(sae.evaluate(dictionary, src), numpy_eval(dictionary, x[100:]))


def test_synthetic_takes_exactly_max_rows(dictionary):
    with sae.Synthetic(d=D_IN, n_features=20, seed=3) as s, \
            sae.Synthetic(d=D_IN, n_features=20, seed=3) as twin:
        got = sae.evaluate(dictionary, s, max_rows=700, block_rows=256)
        assert_matches(got, numpy_eval(dictionary, twin.sample(700)))
        np.testing.assert_array_equal(s.sample(3), twin.sample(3))
        with pytest.raises(ValueError, match="max_rows"):
            sae.evaluate(dictionary, s)
        with sae.Source.from_synthetic(s) as endless, pytest.raises(ValueError, match="never"):
            sae.evaluate(dictionary, endless)


def test_errors(dictionary):
    with pytest.raises(TypeError, match="Dictionary"):
        sae.evaluate("sae_dir", rows(4))
    with pytest.raises(ValueError, match="width 5, expected 12"):
        sae.evaluate(dictionary, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="max_rows"):
        sae.evaluate(dictionary, rows(4), max_rows=0)
    with pytest.raises(ValueError, match="dense_threshold"):
        sae.evaluate(dictionary, rows(4), dense_threshold=0)
    bad = rows(10)
    bad[6, 2] = np.inf
    with pytest.raises(sae.SaeError) as info:
        sae.evaluate(dictionary, bad)
    assert info.value.code == -6 and "row 6, column 2" in info.value.message
