"""Every native-format oracle case (../shared/oracle/native): load the files as the upstream
library wrote them, encode its input and compare with the upstream outputs."""

import json

import numpy as np
import pytest

import sae
from _shared import NATIVE_DIR, native_cases

# Suggested fp32 tolerance for activations and reconstructions (oracle/README.md).
ATOL = RTOL = 1e-5

# case.json "library" -> the name sae.detect_format gives.
FORMAT_OF_LIBRARY = {
    "SAELens": "saelens",
    "sparsify": "sparsify",
    "dictionary_learning": "dictionary_learning",
    "openai/sparse_autoencoder": "openai",
    "sae-icm": "sae_icm",
}


def assert_close(got, expected, what):
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    err = np.abs(got.astype(np.float64) - expected)
    bound = ATOL + RTOL * np.abs(expected)
    bad = err > bound
    assert not bad.any(), "%s: %d entries off, worst |err| = %.3g at %s" % (
        what, bad.sum(), err.max(), np.unravel_index(np.argmax(err - bound), err.shape))


def assert_same_support(got, expected, what):
    mismatch = (got != 0) != (expected != 0)
    assert not mismatch.any(), "%s: support differs at %d entries, first %s" % (
        what, mismatch.sum(), np.argwhere(mismatch)[0].tolist())


class Case:
    """One case directory: its case.json, input, expected outputs and the path to load."""

    def __init__(self, name):
        self.dir = NATIVE_DIR / name
        assert (self.dir / "case.json").is_file(), "oracle case %s is missing" % self.dir
        self.meta = json.loads((self.dir / "case.json").read_text())
        self.x = sae.load_file(self.dir / "input.safetensors")["x"]
        self.expected = sae.load_file(self.dir / "expected.safetensors")

    @property
    def library(self):
        return self.meta["library"]

    @property
    def load_path(self):
        """The single .pt file for openai / sae-icm (no config beside it), else the directory."""
        pts = sorted(f for f in self.meta["files"] if f.endswith(".pt"))
        has_config = any(f in self.meta["files"] for f in ("config.json", "cfg.json"))
        if pts and not has_config:
            assert len(pts) == 1, pts
            return self.dir / pts[0]
        return self.dir

    @property
    def load_k(self):
        """k when the file does not store it (sae-icm: it comes from the run config)."""
        return self.meta["k"] if self.library == "sae-icm" else None

    def load(self):
        return sae.load(self.load_path, k=self.load_k)


@pytest.fixture(params=native_cases())
def case(request, native_dir):
    return Case(request.param)


def test_native_cases_present(native_dir):
    names = native_cases()
    assert len(names) >= 14, names
    assert {Case(n).library for n in names} == set(FORMAT_OF_LIBRARY)


def test_detect_format(case):
    assert sae.detect_format(case.load_path) == FORMAT_OF_LIBRARY[case.library]


def test_properties(case):
    with case.load() as d:
        assert d.d_in == case.meta["d_in"]
        assert d.d_sae == case.meta["d_sae"]
        if case.meta.get("k"):
            assert d.k == case.meta["k"]
        assert d.W_enc.shape == (d.d_in, d.d_sae)
        assert d.W_dec.shape == (d.d_sae, d.d_in)
        np.testing.assert_allclose(d.decoder_norms, np.linalg.norm(d.W_dec, axis=1), rtol=1e-5)


def test_dense_encode(case):
    exp = case.expected
    with case.load() as d:
        f, pre = d.encode(case.x, return_pre=True)
        assert f.dtype == np.float32 and f.shape == exp["features"].shape
        assert_close(f, exp["features"], "features")
        assert_same_support(f, exp["features"], "features")
        pre_name = "magnitude_pre_activation" if d.arch == "gated" else "pre_activation"
        if pre_name in exp:
            assert_close(pre, exp[pre_name], pre_name)
        assert_close(d.decode(f), exp["reconstruction"], "decode(encode(x))")


def test_reconstruct(case):
    exp = case.expected
    with case.load() as d:
        x_hat, error = d.reconstruct(case.x)
        assert_close(x_hat, exp["reconstruction"], "reconstruction")
        np.testing.assert_allclose(error, case.x - x_hat, atol=1e-6)


def test_sparse_encode(case):
    exp = case.expected
    with case.load() as d:
        dense = d.encode(case.x)
        codes = d.encode_sparse(case.x)
        assert codes.indices.dtype == np.int32 and codes.values.dtype == np.float32
        assert codes.offsets.dtype == np.int64 and codes.n_rows == len(case.x)
        assert np.all(codes.values != 0)
        for i in range(codes.n_rows):
            ids, _ = codes.row(i)
            assert np.all(np.diff(ids) > 0), "ids must ascend within row %d" % i
        as_dense = codes.to_dense(d.d_sae)
        assert_same_support(as_dense, dense, "encode_sparse vs encode")
        assert_close(as_dense, dense.astype(np.float64), "encode_sparse vs encode")
        assert_close(as_dense, exp["features"], "encode_sparse features")
        assert_close(d.decode(codes), exp["reconstruction"], "decode(encode_sparse(x))")


@pytest.mark.parametrize("name", native_cases(
    lambda meta: "features_threshold_mode" in meta["expected"]))
def test_threshold_mode(name, native_dir):
    """dictionary_learning TopK's encode(use_threshold=True) with the threshold of ae.pt.

    The file stores the scalar -1, which dictionary_learning uses as "not set yet"; libsae's
    loader then keeps no threshold (lib/io/dictionary_learning.c), so threshold mode is
    refused. The formula is still checked against upstream's numbers with the same -1 given
    explicitly through from_arrays.
    """
    case = Case(name)
    exp = case.expected["features_threshold_mode"]
    with case.load() as d:
        if d.threshold is None:
            with pytest.raises(sae.SaeError) as info:
                d.encode(case.x, use_threshold=True)
            assert info.value.code == -1
            d = sae.Dictionary.from_arrays(
                "topk", W_enc=d.W_enc, b_enc=d.b_enc, W_dec=d.W_dec, b_dec=d.b_dec, k=d.k,
                relu_before_topk=d.relu_before_topk, threshold=np.full(d.d_sae, -1.0))
        with d:
            f = d.encode(case.x, use_threshold=True)
        assert_close(f, exp, "features_threshold_mode")
        assert_same_support(f, exp, "features_threshold_mode")


@pytest.mark.parametrize("name", native_cases(
    lambda meta: meta["library"] == "dictionary_learning"))
def test_dictionary_learning_file_path(name, native_dir):
    """A dictionary_learning directory and its ae.pt file load the same dictionary."""
    case = Case(name)
    with case.load() as by_dir, sae.load(case.dir / "ae.pt") as by_file:
        assert by_file.arch == by_dir.arch
        np.testing.assert_array_equal(by_file.encode(case.x), by_dir.encode(case.x))
