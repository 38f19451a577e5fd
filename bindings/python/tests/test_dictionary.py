"""Dictionary.from_arrays against the float64 reference of the header formulas; save/load round
trips; properties, shapes, lifetimes, threads and errors."""

import copy
import gc
import pickle
import shutil
import threading

import numpy as np
import pytest

import sae
from _reference import Reference

D_IN, D_SAE, N = 24, 56, 16
ATOL, RTOL = 2e-5, 1e-4

# id -> from_arrays keyword arguments (beyond the weights).
VARIANTS = {
    "standard": dict(arch="standard"),
    "standard_no_b_dec_input": dict(arch="standard", apply_b_dec_to_input=False),
    "standard_scale": dict(arch="standard", input_norm="scale", act_scale=2.5),
    "standard_constant_rescale": dict(arch="standard", input_norm="constant_rescale"),
    "standard_layer_norm": dict(arch="standard", input_norm="layer_norm"),
    "standard_rescale": dict(arch="standard", rescale_acts_by_decoder_norm=True),
    "topk_then_relu": dict(arch="topk", k=5),
    "topk_relu_first": dict(arch="topk", k=5, relu_before_topk=True),
    "topk_rescale": dict(arch="topk", k=5, rescale_acts_by_decoder_norm=True),
    "topk_layer_norm": dict(arch="topk", k=5, input_norm="layer_norm"),
    "jumprelu": dict(arch="jumprelu"),
    "jumprelu_rescale": dict(arch="jumprelu", rescale_acts_by_decoder_norm=True),
    "batchtopk": dict(arch="batchtopk", k=5),
    "gated": dict(arch="gated"),
    "gated_rescale": dict(arch="gated", rescale_acts_by_decoder_norm=True),
}


def weights(arch, seed, d_in=D_IN, d_sae=D_SAE):
    """Random weights for ``arch``: decoder rows deliberately not unit norm."""
    rng = np.random.default_rng(seed)
    w = dict(W_enc=rng.normal(size=(d_in, d_sae)) / np.sqrt(d_in),
             W_dec=rng.normal(size=(d_sae, d_in)) * rng.uniform(0.5, 2.0, size=(d_sae, 1))
             / np.sqrt(d_in),
             b_dec=0.1 * rng.normal(size=d_in))
    if arch == "gated":
        w.update(b_gate=0.1 * rng.normal(size=d_sae), b_mag=0.1 * rng.normal(size=d_sae),
                 r_mag=0.2 * rng.normal(size=d_sae))
    else:
        w["b_enc"] = 0.1 * rng.normal(size=d_sae)
    if arch in ("jumprelu", "batchtopk"):
        w["threshold"] = rng.uniform(0.0, 0.4, size=d_sae)
    return {name: a.astype(np.float32) for name, a in w.items()}


def robust_case(variant, n=N):
    """(kwargs, x, reference outputs) for the first seed whose discrete decisions are all at
    least 1e-4 from a tie, so that float32 rounding cannot flip the support."""
    for seed in range(200):
        kwargs = dict(VARIANTS[variant], **weights(VARIANTS[variant]["arch"], seed))
        x = np.random.default_rng(1000 + seed).normal(size=(n, D_IN)).astype(np.float32)
        f, pre, x_hat, margin = Reference(**kwargs).forward(x)
        if margin > 1e-4:
            return kwargs, x, (f, pre, x_hat)
    raise AssertionError("no robust seed for %s" % variant)


def assert_close(got, expected, what, atol=ATOL, rtol=RTOL):
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=rtol, err_msg=what)


def assert_same_support(got, expected, what):
    np.testing.assert_array_equal(got != 0, expected != 0, err_msg=what + " support")


@pytest.fixture(params=sorted(VARIANTS))
def variant(request):
    return request.param


# ---- formulas ------------------------------------------------------------------------------

def test_encode_decode_matches_reference(variant):
    kwargs, x, (f_ref, pre_ref, x_hat_ref) = robust_case(variant)
    with sae.Dictionary.from_arrays(**kwargs) as d:
        f, pre = d.encode(x, return_pre=True)
        assert f.dtype == np.float32 and pre.dtype == np.float32
        assert_close(f, f_ref, "features")
        assert_same_support(f, f_ref, "features")
        assert_close(pre, pre_ref, "pre-activations")
        assert_close(d.decode(f), x_hat_ref, "decode(encode(x))")
        x_hat, error = d.reconstruct(x)
        assert_close(x_hat, x_hat_ref, "reconstruct x_hat")
        assert_close(error, x - x_hat_ref, "reconstruct error")


def test_sparse_matches_dense(variant):
    kwargs, x, (f_ref, _, x_hat_ref) = robust_case(variant)
    with sae.Dictionary.from_arrays(**kwargs) as d:
        dense = d.encode(x)
        codes = d.encode_sparse(x)
        assert isinstance(codes, sae.SparseCodes) and codes.n_rows == N
        indices, values, offsets = codes  # unpacks like a namedtuple
        assert offsets[0] == 0 and offsets[-1] == len(indices) == len(values) == codes.nnz
        if VARIANTS[variant]["arch"] == "topk":
            np.testing.assert_array_equal(np.diff(offsets), (f_ref != 0).sum(axis=1))
        as_dense = codes.to_dense(D_SAE)
        assert_same_support(as_dense, dense, "encode_sparse")
        assert_close(as_dense, dense, "encode_sparse", atol=1e-6, rtol=1e-6)
        assert_close(d.decode(codes), x_hat_ref, "decode(sparse codes)")
        rebuilt = sae.SparseCodes.from_dense(dense)
        assert_close(d.decode(rebuilt), x_hat_ref, "decode(SparseCodes.from_dense)")


@pytest.mark.parametrize("arch", ["jumprelu", "batchtopk"])
def test_threshold_is_strict(arch):
    """pre == threshold gives 0; pre just above it keeps pre. Zero encoder columns make pre
    exactly b_enc, so the comparison is exact."""
    w = weights(arch, 0)
    w["W_enc"][:, :8] = 0.0
    w["b_enc"][:8] = np.float32(0.25)
    w["threshold"][:4] = np.float32(0.25)          # equal: strict > rejects
    w["threshold"][4:8] = np.float32(0.2499)       # below: kept
    x = np.random.default_rng(1).normal(size=(4, D_IN)).astype(np.float32)
    with sae.Dictionary.from_arrays(arch, k=5 if arch == "batchtopk" else None, **w) as d:
        f = d.encode(x)
        assert np.all(f[:, :4] == 0)
        assert np.all(f[:, 4:8] == np.float32(0.25))


def test_jumprelu_negative_threshold_still_relu():
    w = weights("jumprelu", 0)
    w["threshold"][:] = -10.0
    x = np.random.default_rng(2).normal(size=(8, D_IN)).astype(np.float32)
    with sae.Dictionary.from_arrays("jumprelu", **w) as d:
        f, pre = d.encode(x, return_pre=True)
        np.testing.assert_array_equal(f, np.maximum(pre, 0))


def test_topk_use_threshold():
    """TopK with a threshold and use_threshold=True: f = ReLU(pre) where ReLU(pre) > threshold."""
    w = weights("topk", 3)
    w["threshold"] = np.full(D_SAE, 0.3, np.float32)
    x = np.random.default_rng(3).normal(size=(N, D_IN)).astype(np.float32)
    with sae.Dictionary.from_arrays("topk", k=3, relu_before_topk=True, **w) as d:
        f, pre = d.encode(x, return_pre=True, use_threshold=True)
        relu = np.maximum(pre, 0)
        expected = np.where(relu > 0.3, relu, 0)
        assert_close(f, expected, "threshold mode")
        assert (f != 0).sum(axis=1).max() > 3  # really not top-k
        codes = d.encode_sparse(x, use_threshold=True)
        np.testing.assert_array_equal(codes.to_dense(D_SAE), f)
        assert (d.encode(x) != 0).sum(axis=1).max() <= 3  # the default encoder is still top-k


def test_layer_norm_decode_needs_matching_encode():
    kwargs, x, (_, _, x_hat_ref) = robust_case("standard_layer_norm")
    with sae.Dictionary.from_arrays(**kwargs) as d:
        f = d.encode(x)
        d.encode(x[:3])  # the statistics now belong to 3 rows
        with pytest.raises(sae.SaeError) as info:
            d.decode(f)
        assert info.value.code == -1
        d.encode(x)
        assert_close(d.decode(f), x_hat_ref, "decode after re-encode")


# ---- save / load ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_saelens_round_trip(name, tmp_path):
    kwargs, x, _ = robust_case(name)
    kwargs = dict(kwargs, model_name="tiny-model", hook_name="blocks.1.hook_resid_post")
    with sae.Dictionary.from_arrays(**kwargs) as d:
        d.save(tmp_path / "out")
        assert sae.detect_format(tmp_path / "out") == "saelens"
        assert (tmp_path / "out" / "cfg.json").is_file()
        assert (tmp_path / "out" / "sae_weights.safetensors").is_file()
        with sae.load(tmp_path / "out") as e:
            expected_arch = "jumprelu" if d.arch == "batchtopk" else d.arch
            assert e.arch == expected_arch
            assert (e.d_in, e.d_sae) == (d.d_in, d.d_sae)
            if d.arch == "topk":
                assert e.k == d.k
            assert e.apply_b_dec_to_input == d.apply_b_dec_to_input
            # SAELens v6 configs hold no activation scale: libsae folds it into the weights.
            folded = d.input_norm == "scale"
            assert e.input_norm == ("none" if folded else d.input_norm)
            assert e.model_name == "tiny-model"
            assert e.hook_name == "blocks.1.hook_resid_post"
            if not (folded or d.rescale_acts_by_decoder_norm):
                for w in ("W_enc", "W_dec", "b_dec", "threshold", "b_gate", "b_mag", "r_mag"):
                    a, b = getattr(d, w), getattr(e, w)
                    if a is not None:
                        np.testing.assert_array_equal(b, a, err_msg=w)
            assert_close(e.encode(x), d.encode(x), "features after round trip", 1e-5, 1e-5)
            assert_close(e.reconstruct(x)[0], d.reconstruct(x)[0], "x_hat after round trip",
                         1e-5, 1e-5)


def test_sparsify_round_trip(tmp_path):
    kwargs, x, _ = robust_case("topk_relu_first")
    with sae.Dictionary.from_arrays(**kwargs) as d:
        d.save(tmp_path / "sp", format="sparsify")
        assert (tmp_path / "sp" / "cfg.json").is_file()
        assert (tmp_path / "sp" / "sae.safetensors").is_file()
        assert sae.detect_format(tmp_path / "sp") == "sparsify"
        with sae.load(tmp_path / "sp") as e:
            assert (e.arch, e.k, e.relu_before_topk) == ("topk", 5, True)
            assert (e.d_in, e.d_sae) == (D_IN, D_SAE)
            np.testing.assert_array_equal(e.W_enc, d.W_enc)
            np.testing.assert_array_equal(e.W_dec, d.W_dec)
            np.testing.assert_array_equal(e.b_enc, d.b_enc)
            np.testing.assert_array_equal(e.b_dec, d.b_dec)
            assert_close(e.encode(x), d.encode(x), "features after round trip", 1e-6, 1e-6)


@pytest.mark.parametrize("extra", [
    dict(rescale_acts_by_decoder_norm=True), dict(relu_before_topk=False),
    dict(input_norm="scale", act_scale=3.0)], ids=["rescale", "topk_then_relu", "scale"])
def test_sparsify_folds_what_it_can(extra, tmp_path):
    """Conventions sparsify lacks but that fold into its weights keep the outputs."""
    kwargs, x, _ = robust_case("topk_relu_first")
    kwargs.update(extra)
    with sae.Dictionary.from_arrays(**kwargs) as d:
        d.save(tmp_path / "sp", format="sparsify")
        with sae.load(tmp_path / "sp") as e:
            assert (e.relu_before_topk, e.rescale_acts_by_decoder_norm, e.input_norm) == (
                True, False, "none")
            assert_close(e.encode(x), d.encode(x), "features after round trip", 1e-5, 1e-5)
            assert_close(e.reconstruct(x)[0], d.reconstruct(x)[0], "x_hat after round trip",
                         1e-5, 1e-5)


@pytest.mark.parametrize("extra", [dict(input_norm="layer_norm"),
                                   dict(apply_b_dec_to_input=False)],
                         ids=["layer_norm", "no_b_dec_input"])
def test_sparsify_refuses_what_it_cannot_express(extra, tmp_path):
    kwargs, _, _ = robust_case("topk_relu_first")
    with sae.Dictionary.from_arrays(**dict(kwargs, **extra)) as d:
        with pytest.raises(sae.SaeError) as info:
            d.save(tmp_path / "sp", format="sparsify")
        assert info.value.code == -7


def test_sparsify_cannot_hold_standard(tmp_path):
    kwargs, _, _ = robust_case("standard")
    with sae.Dictionary.from_arrays(**kwargs) as d:
        with pytest.raises(sae.SaeError) as info:
            d.save(tmp_path / "sp", format="sparsify")
        assert info.value.code == -7


def test_load_with_format_and_k(tmp_path):
    kwargs, x, _ = robust_case("topk_relu_first")
    with sae.Dictionary.from_arrays(**kwargs) as d:
        d.save(tmp_path / "sp", format="sparsify")
    with sae.load(tmp_path / "sp", format="sparsify", k=2) as e:
        assert e.k == 2
        assert (e.encode(x) != 0).sum(axis=1).max() <= 2
    with pytest.raises(ValueError):
        sae.load(tmp_path / "sp", format="onnx")


# ---- properties, views, lifetime ----------------------------------------------------------

def test_properties():
    w = weights("topk", 0)
    with sae.Dictionary.from_arrays("topk", k=7, relu_before_topk=True, input_norm="scale",
                                    act_scale=0.5, model_name="gpt2", hook_name="blocks.0",
                                    apply_b_dec_to_input=False, threads=1, **w) as d:
        assert d.arch == "topk"
        assert (d.d_in, d.d_sae, d.k) == (D_IN, D_SAE, 7)
        assert d.apply_b_dec_to_input is False
        assert d.relu_before_topk is True
        assert d.rescale_acts_by_decoder_norm is False
        assert d.input_norm == "scale" and d.act_scale == 0.5
        assert (d.model_name, d.hook_name) == ("gpt2", "blocks.0")
        assert d.threads == 1
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            view = getattr(d, name)
            assert view.dtype == np.float32 and not view.flags.writeable
            np.testing.assert_array_equal(view, w[name], err_msg=name)
        assert d.threshold is None and d.b_gate is None
        np.testing.assert_allclose(d.decoder_norms, np.linalg.norm(w["W_dec"], axis=1),
                                   rtol=1e-6)
        assert "topk" in repr(d)
    with sae.Dictionary.from_arrays("standard", **weights("standard", 0)) as d:
        assert d.k is None and d.input_norm == "none" and d.apply_b_dec_to_input
        assert d.model_name is None and d.hook_name is None


def test_optional_biases_default_to_zero():
    w = weights("standard", 0)
    x = np.random.default_rng(0).normal(size=(N, D_IN)).astype(np.float32)
    with sae.Dictionary.from_arrays("standard", W_enc=w["W_enc"], W_dec=w["W_dec"]) as d:
        f = d.encode(x)
        np.testing.assert_allclose(f, np.maximum(x.astype(np.float64) @ w["W_enc"], 0),
                                   atol=ATOL, rtol=RTOL)
        assert d.b_enc is None or not d.b_enc.any()


def test_inputs_are_copied():
    w = weights("standard", 0)
    original = w["W_enc"].copy()
    d = sae.Dictionary.from_arrays("standard", **w)
    w["W_enc"][:] = 0
    np.testing.assert_array_equal(d.W_enc, original)
    d.close()


def test_views_keep_dictionary_alive():
    w = weights("standard", 0)
    d = sae.Dictionary.from_arrays("standard", **w)
    W_dec = d.W_dec
    row = d.W_enc[3]  # a view of a view
    del d
    gc.collect()
    np.testing.assert_array_equal(W_dec, w["W_dec"])
    np.testing.assert_array_equal(row, w["W_enc"][3])
    with pytest.raises(ValueError):
        W_dec[0, 0] = 1.0


def test_close_with_live_views():
    w = weights("standard", 0)
    d = sae.Dictionary.from_arrays("standard", **w)
    W_enc = d.W_enc
    d.close()
    assert d.closed
    np.testing.assert_array_equal(W_enc, w["W_enc"])  # memory outlives close() while viewed
    with pytest.raises(ValueError):
        d.encode(np.zeros(D_IN, np.float32))
    with pytest.raises(ValueError):
        d.W_dec
    d.close()  # twice is fine
    del W_enc
    gc.collect()


def test_copy_shares_and_pickle_refuses():
    d = sae.Dictionary.from_arrays("standard", **weights("standard", 0))
    assert copy.copy(d) is d and copy.deepcopy(d) is d
    with pytest.raises(TypeError):
        pickle.dumps(d)
    d.close()


def test_context_manager_closes():
    with sae.Dictionary.from_arrays("standard", **weights("standard", 0)) as d:
        d.encode(np.zeros((2, D_IN), np.float32))
    assert d.closed


# ---- shapes and layouts --------------------------------------------------------------------

@pytest.fixture
def topk_dict():
    kwargs, x, refs = robust_case("topk_then_relu")
    with sae.Dictionary.from_arrays(**kwargs) as d:
        yield d, x, refs


def test_leading_dimensions(topk_dict):
    d, x, (f_ref, _, x_hat_ref) = topk_dict
    x3 = x.reshape(2, 8, D_IN)
    f3, pre3 = d.encode(x3, return_pre=True)
    assert f3.shape == pre3.shape == (2, 8, D_SAE)
    assert_close(f3.reshape(N, D_SAE), f_ref, "3-D encode")
    assert d.decode(f3).shape == (2, 8, D_IN)
    x_hat3, err3 = d.reconstruct(x3)
    assert x_hat3.shape == err3.shape == (2, 8, D_IN)
    assert_close(x_hat3.reshape(N, D_IN), x_hat_ref, "3-D reconstruct")
    codes = d.encode_sparse(x3)
    assert codes.n_rows == N
    f1 = d.encode(x[5])
    assert f1.shape == (D_SAE,)
    assert_close(f1, f_ref[5], "1-D encode")
    assert d.decode(f1).shape == (D_IN,)
    assert d.encode(np.zeros((0, D_IN), np.float32)).shape == (0, D_SAE)
    assert d.encode_sparse(np.zeros((0, D_IN))).n_rows == 0
    assert d.decode(np.zeros((0, D_SAE))).shape == (0, D_IN)


def test_layouts_and_dtypes(topk_dict):
    d, x, (f_ref, _, _) = topk_dict
    wide = np.zeros((N, D_IN + 9), np.float32)
    wide[:, 3:3 + D_IN] = x
    layouts = {
        "float64": x.astype(np.float64),
        "float16-safe list": x.tolist(),
        "fortran": np.asfortranarray(x),
        "row-strided view": wide[:, 3:3 + D_IN],
        "column-strided": np.repeat(x, 2, axis=1)[:, ::2],
        "reversed rows": x[::-1].copy()[::-1],
        "every other row": np.repeat(x, 2, axis=0)[::2],
    }
    for name, xv in layouts.items():
        assert_close(d.encode(xv), f_ref, name)
        assert_close(d.encode_sparse(xv).to_dense(D_SAE), f_ref, name + " (sparse)")
    # A row-strided float32 view is read in place: the result matches the contiguous copy.
    np.testing.assert_array_equal(d.encode(wide[:, 3:3 + D_IN]), d.encode(x))
    f_wide = np.zeros((N, D_SAE + 5), np.float32)
    f_wide[:, :D_SAE] = d.encode(x)
    np.testing.assert_array_equal(d.decode(f_wide[:, :D_SAE]), d.decode(d.encode(x)))


def test_thread_counts_and_python_threads(topk_dict):
    d, x, (f_ref, _, _) = topk_dict
    big = np.tile(x, (64, 1))
    one = d.encode(big, threads=1)
    two = d.encode(big, threads=2)
    assert_close(two, one, "threads=2 vs 1", 1e-6, 1e-6)
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = (d.encode(big), d.reconstruct(big)[0], d.encode_sparse(big))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors
    for f, x_hat, codes in results.values():
        assert_close(f, one, "encode from a Python thread", 1e-6, 1e-6)
        assert_close(codes.to_dense(D_SAE), one, "encode_sparse from a Python thread", 1e-6,
                     1e-6)
        assert x_hat.shape == big.shape


# ---- errors --------------------------------------------------------------------------------

def test_from_arrays_shape_errors():
    w = weights("standard", 0)
    for name, bad in (("W_dec", w["W_dec"].T), ("b_enc", w["b_enc"][:-1]),
                      ("b_dec", w["b_dec"][None]), ("W_enc", w["W_enc"][0])):
        with pytest.raises(ValueError, match=name):
            sae.Dictionary.from_arrays("standard", **dict(w, **{name: bad}))
    with pytest.raises(ValueError, match="architecture"):
        sae.Dictionary.from_arrays("relu", **w)
    with pytest.raises(ValueError, match="input_norm"):
        sae.Dictionary.from_arrays("standard", input_norm="rms", **w)
    with pytest.raises(TypeError):
        sae.Dictionary.from_arrays("standard", **dict(w, W_enc=w["W_enc"].astype(complex)))


@pytest.mark.parametrize("name", ["W_enc", "W_dec", "b_enc", "b_dec"])
def test_nan_weight_is_numeric_error(name):
    w = weights("standard", 0)
    w[name].flat[3] = np.nan
    with pytest.raises(sae.SaeError) as info:
        sae.Dictionary.from_arrays("standard", **w)
    err = info.value
    assert err.code == -6
    assert name in err.message and name in str(err)
    assert err.status and isinstance(err.status, str)


def test_infinite_weight_is_numeric_error():
    w = weights("jumprelu", 0)
    w["threshold"][0] = np.inf
    with pytest.raises(sae.SaeError) as info:
        sae.Dictionary.from_arrays("jumprelu", **w)
    assert info.value.code == -6 and "threshold" in info.value.message


@pytest.mark.parametrize("k", [0, D_SAE + 1])
def test_bad_k(k):
    w = weights("topk", 0)
    with pytest.raises(sae.SaeError) as info:
        sae.Dictionary.from_arrays("topk", k=k, **w)
    assert info.value.code == -1


@pytest.mark.parametrize("arch,extra,word", [
    ("standard", "b_gate", "b_gate"), ("gated", "b_enc", "b_enc"),
    ("standard", "threshold", "threshold"), ("standard", "k", "k")])
def test_arrays_an_architecture_does_not_use(arch, extra, word):
    kwargs = dict(weights(arch, 0), **{extra: 3 if extra == "k" else np.zeros(D_SAE)})
    with pytest.raises(sae.SaeError) as info:
        sae.Dictionary.from_arrays(arch, **kwargs)
    assert info.value.code == -1 and word in info.value.message


def test_jumprelu_needs_threshold():
    w = weights("standard", 0)
    with pytest.raises(sae.SaeError) as info:
        sae.Dictionary.from_arrays("jumprelu", **w)
    assert info.value.code == -1 and "threshold" in info.value.message


def test_input_shape_errors(topk_dict):
    d = topk_dict[0]
    with pytest.raises(ValueError, match="x"):
        d.encode(np.zeros((4, D_IN + 1), np.float32))
    with pytest.raises(ValueError):
        d.encode(np.float32(1.0))
    with pytest.raises(ValueError, match="f"):
        d.decode(np.zeros((4, D_IN), np.float32))


def test_sparse_codes_errors(topk_dict):
    d = topk_dict[0]
    bad_id = sae.SparseCodes(np.array([0, D_SAE], np.int32), np.ones(2, np.float32),
                             np.array([0, 2], np.int64))
    with pytest.raises(sae.SaeError) as info:
        d.decode(bad_id)
    assert info.value.code == -9
    with pytest.raises(ValueError):
        d.decode(sae.SparseCodes(np.zeros(2, np.int32), np.ones(2, np.float32),
                                 np.array([0, 3], np.int64)))
    with pytest.raises(ValueError):
        bad_id.to_dense(D_SAE)


def test_load_missing_path(tmp_path):
    missing = tmp_path / "no_such_sae"
    with pytest.raises(sae.SaeError) as info:
        sae.load(missing)
    assert info.value.code in (-10, -4)
    assert str(missing) in info.value.message


def test_load_directory_without_weights(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(sae.SaeError) as info:
        sae.load(empty)
    assert info.value.code in (-10, -5)
    assert str(empty) in info.value.message


def test_load_truncated_safetensors(tmp_path, native_dir):
    src = native_dir / "saelens_standard_d32_s128_b16"
    dst = tmp_path / "truncated"
    shutil.copytree(src, dst)
    weights_file = dst / "sae_weights.safetensors"
    weights_file.chmod(0o644)
    data = weights_file.read_bytes()
    weights_file.write_bytes(data[:len(data) // 2])
    with pytest.raises(sae.SaeError) as info:
        sae.load(dst)
    assert info.value.code == -5
    assert "sae_weights.safetensors" in info.value.message


def test_load_cfg_shape_mismatch(tmp_path, native_dir):
    """cfg.json says d_sae 64 but the tensors are (32, 128): a shape error naming the tensor."""
    src = native_dir / "saelens_standard_d32_s128_b16"
    dst = tmp_path / "mismatch"
    shutil.copytree(src, dst)
    cfg = dst / "cfg.json"
    cfg.chmod(0o644)
    cfg.write_text(cfg.read_text().replace('"d_sae": 128', '"d_sae": 64'))
    assert '"d_sae": 64' in cfg.read_text()
    with pytest.raises(sae.SaeError) as info:
        sae.load(dst)
    assert info.value.code in (-3, -5)


# ---- module --------------------------------------------------------------------------------

def test_module_functions():
    assert sae.version().startswith("0.1.")
    assert isinstance(sae.blas_kernels(), str) and sae.blas_kernels()
    assert sae.default_threads() >= 1
    err = sae.SaeError(-3, "W_dec has shape [1, 2], expected [2, 1]")
    assert err.code == -3 and err.status and "W_dec" in str(err)
