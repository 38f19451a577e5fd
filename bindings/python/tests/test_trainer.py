"""sae.Trainer: the dictionary_learning 3-step oracle runs, step metrics against numpy,
options (presets, names, explicit zeros, round trip), the struct mirrors against the library,
export, and errors. Fitting: test_fit.py; checkpoints, resampling, scaling: test_checkpoint.py."""

import ctypes
import dataclasses
import json

import numpy as np
import pytest

import sae
from sae import _lib, _structs

# oracle/README.md: params after 1-3 optimiser steps |a-b| <= 1e-5 + 1e-4 |b|; losses relative 1e-5.
PARAM_ATOL, PARAM_RTOL, LOSS_RTOL = 1e-5, 1e-4, 1e-5
D_IN, D_SAE, K = 24, 80, 6


def assert_close(got, want, atol, rtol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.abs(got - want)
    bad = err > atol + rtol * np.abs(want)
    assert not bad.any(), "%s: %d entries off, worst |err| %.3g" % (what, bad.sum(), err.max())


def batch(n=64, d=D_IN, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def weights_of(d):
    return {name: np.array(getattr(d, name)) for name in ("W_enc", "b_enc", "W_dec", "b_dec")}


def same_weights(a, b):
    wa, wb = weights_of(a), weights_of(b)
    return all(np.array_equal(wa[name], wb[name]) for name in wa)


# ---- oracle: dictionary_learning training runs -------------------------------------------------

ORACLE_RUNS = {
    # case: (arch, k, name of b_dec, trainer options beyond the preset)
    "dl_train_standard_defaults_d16_s64_b16_3steps": ("standard", None, "bias", {}),
    # create_from keeps b_dec unless asked; dictionary_learning's TopK sets it at step 0.
    "dl_train_topk_k4_defaults_d16_s64_b16_3steps": ("topk", 4, "b_dec",
                                                     {"b_dec_init": "geometric_median"}),
}


@pytest.mark.parametrize("case", sorted(ORACLE_RUNS))
def test_oracle_dictionary_learning_training(case, shared_dir):
    arch, k, b_dec_name, extra = ORACLE_RUNS[case]
    tensors = sae.load_file(shared_dir / "oracle" / (case + ".safetensors"))
    params = json.loads((shared_dir / "oracle" / (case + ".json")).read_text())["params"]
    # nn.Linear layouts: encoder.weight (d_sae, d_in), decoder.weight (d_in, d_sae).
    init = sae.Dictionary.from_arrays(
        arch, W_enc=tensors["param.init.encoder.weight"].T,
        b_enc=tensors["param.init.encoder.bias"], W_dec=tensors["param.init.decoder.weight"].T,
        b_dec=tensors["param.init." + b_dec_name], k=k, relu_before_topk=arch == "topk")
    with init, sae.Trainer(dictionary=init, preset="dictionary_learning", threads=2,
                           total_steps=params.get("steps"), **extra) as t:
        assert t.arch == arch and t.d_in == params["activation_dim"]
        if "state.num_tokens_since_fired.init" in tensors:
            t.since_fired = tensors["state.num_tokens_since_fired.init"]
        for s, lr in enumerate(params["lr_used_per_step"]):
            m = t.step(tensors["in.x.step%d" % s])
            assert m.step == s and t.steps == s + 1 and t.metrics() == m
            assert abs(m.lr - lr) <= 1e-15, (s, m.lr, lr)
            want_loss = float(tensors["out.loss.step%d" % s])
            assert abs(m.loss - want_loss) <= LOSS_RTOL * abs(want_loss), (s, m.loss, want_loss)
            prefix = "out.param.after_step%d." % s
            with t.dictionary() as d:
                assert_close(d.W_enc, tensors[prefix + "encoder.weight"].T, PARAM_ATOL,
                             PARAM_RTOL, prefix + "encoder.weight")
                assert_close(d.b_enc, tensors[prefix + "encoder.bias"], PARAM_ATOL, PARAM_RTOL,
                             prefix + "encoder.bias")
                assert_close(d.W_dec, tensors[prefix + "decoder.weight"].T, PARAM_ATOL,
                             PARAM_RTOL, prefix + "decoder.weight")
                assert_close(d.b_dec, tensors[prefix + b_dec_name], PARAM_ATOL, PARAM_RTOL,
                             prefix + b_dec_name)
                threshold = tensors.get("out.threshold.after_step%d" % s)
                if threshold is not None:  # -1: the EMA has not started, so none is exported
                    assert (d.threshold is None) == (threshold < 0)
            since = tensors.get("out.num_tokens_since_fired.after_step%d" % s)
            if since is not None:
                np.testing.assert_array_equal(t.since_fired, since)


# ---- the struct mirrors against the library ----------------------------------------------------

def written_bytes(call, size=4096):
    """How many bytes a C call that fills ``min(struct_size, sizeof)`` of a struct writes: it is
    given a ``size``-byte buffer with struct_size = size, twice, prefilled with two different
    bytes; a written byte differs from at least one of them."""
    extent = 0
    for fill in (0xA5, 0x5A):
        buf = (ctypes.c_ubyte * size)(*([fill] * size))
        ctypes.c_uint32.from_buffer(buf).value = size
        call(ctypes.addressof(buf))
        changed = [i for i in range(size) if buf[i] != fill]
        extent = max(extent, changed[-1] + 1)
    return extent


def assert_no_holes(cls):
    end = 0
    for name, ctype in cls._fields_:
        assert getattr(cls, name).offset == end, (cls.__name__, name, "padding before it")
        end += ctypes.sizeof(ctype)
    assert ctypes.sizeof(cls) == end, (cls.__name__, "trailing padding")


def test_trainer_options_mirror_matches_library():
    assert_no_holes(_structs.TrainerOptions)
    with sae.Trainer("topk", d_in=8, d_sae=16, k=2) as t:
        pointer = ctypes.POINTER(_structs.TrainerOptions)
        size = written_bytes(lambda a: _lib.lib.sae_trainer_get_options(
            t._handle, ctypes.cast(a, pointer)))
    assert size == ctypes.sizeof(_structs.TrainerOptions), (
        "the library's sae_trainer_options has %d bytes, the mirror in sae/_structs.py %d: "
        "add the new fields to TRAINER_OPTIONS" % (size, ctypes.sizeof(_structs.TrainerOptions)))


def test_train_metrics_mirror_matches_library():
    assert_no_holes(_structs.TrainMetrics)
    x = batch(4, 8)
    with sae.Trainer("topk", d_in=8, d_sae=16, k=2) as t:
        pointer = ctypes.POINTER(_structs.TrainMetrics)
        size = written_bytes(lambda a: _lib.lib.sae_trainer_step(
            t._handle, 4, x.ctypes.data, 8, ctypes.cast(a, pointer)))
    assert size == ctypes.sizeof(_structs.TrainMetrics)
    assert [f.name for f in dataclasses.fields(sae.TrainMetrics)] == [
        name for name, _ in _structs.TrainMetrics._fields_[1:]]


# ---- step metrics --------------------------------------------------------------------------------

def fvu(x, x_hat):
    x = x.astype(np.float64)
    return ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()


@pytest.mark.parametrize("arch", ["standard", "topk"])
def test_step_metrics_match_numpy(arch):
    """The metrics of a step describe the forward pass of the weights before it, which the
    exported dictionary (with the training conventions as flags) reproduces."""
    k = K if arch == "topk" else None
    x = batch(48)
    with sae.Trainer(arch, d_in=D_IN, d_sae=D_SAE, k=k, seed=3, threads=2) as t:
        for s in range(3):
            with t.dictionary() as d:
                f = d.encode(x).astype(np.float64)
                x_hat, _ = d.reconstruct(x)
                norms = np.array(d.decoder_norms, np.float64)
            m = t.step(x)
            assert isinstance(m, sae.TrainMetrics) and m.step == s and not m.skipped
            r2 = ((x - x_hat.astype(np.float64)) ** 2).sum(1)
            assert m.mse == pytest.approx(r2.mean(), rel=1e-4)  # SAELens: sum over d, mean over b
            assert m.fvu == pytest.approx(fvu(x, x_hat), rel=1e-4)
            assert m.l0 == pytest.approx((f > 0).sum(1).mean(), abs=1e-9)
            assert m.lr == pytest.approx(3e-4)  # SAELens: no warm-up
            assert m.grad_norm > 0 and m.n_dead == 0
            if arch == "standard":
                assert m.l1 == pytest.approx((f * norms).sum(1).mean(), rel=1e-4)
                assert m.loss == pytest.approx(m.mse + m.l1_coefficient * m.l1, rel=1e-6)
            else:
                assert m.l1 == 0 and m.l0 <= k
                assert m.loss == pytest.approx(m.mse + m.aux, rel=1e-6)  # auxk_coefficient 1
        assert t.steps == 3 and t.metrics() == m
        assert dataclasses.asdict(m)["step"] == 2


def test_metrics_before_first_step():
    with sae.Trainer(d_in=8, d_sae=16) as t:
        assert t.metrics() is None and t.steps == 0
        assert t.arch == "standard" and t.k is None


# ---- options -------------------------------------------------------------------------------------

def test_preset_values_and_round_trip():
    with sae.Trainer("topk", d_in=D_IN, d_sae=D_SAE, k=K, preset="dictionary_learning",
                     seed=7) as t:
        o = t.options()
        assert o["preset"] == "dictionary_learning" and o["arch"] == "topk"
        assert (o["d_in"], o["d_sae"], o["k"], o["seed"]) == (D_IN, D_SAE, K, 7)
        assert o["decoder_constraint"] == "unit_eps" and o["b_dec_init"] == "geometric_median"
        assert o["warmup_steps"] == 1000 and o["auxk_coefficient"] == 1.0 / 32
        assert o["lr"] == pytest.approx(2e-4 / np.sqrt(D_SAE / 2 ** 14))
        assert o["rescale"] == "off" and o["topk_relu"] == "first"
        assert set(o) == {name for name, _, kind in _structs.TRAINER_OPTIONS
                          if kind != _structs.INTERNAL}
        with sae.Trainer(**o) as again:  # the resolved options recreate the same trainer
            assert again.options() == o
            x = batch(32)
            t.step(x), again.step(x)
            with t.dictionary() as a, again.dictionary() as b:
                assert same_weights(a, b)


def test_explicit_zero_is_off():
    with sae.Trainer(d_in=8, d_sae=16, preset="dictionary_learning") as t:
        assert t.options()["warmup_steps"] == 1000
        assert t.step(batch(8, 8)).lr == 0  # warm-up from zero
    with sae.Trainer(d_in=8, d_sae=16, preset="dictionary_learning", warmup_steps=0,
                     clip_norm=0, l1_coefficient=0) as t:
        o = t.options()
        assert (o["warmup_steps"], o["clip_norm"], o["l1_coefficient"]) == (0, 0, 0)
        m = t.step(batch(8, 8))
        assert m.lr == pytest.approx(1e-3) and m.l1_coefficient == 0
    with sae.Trainer(d_in=8, d_sae=16, warmup_steps=None) as t:  # None: the preset's
        assert t.options()["warmup_steps"] == 0  # SAELens: none


def test_enum_names_and_c_values_agree():
    common = dict(d_in=8, d_sae=16, k=2)
    with sae.Trainer("topk", preset="sparsify", mse="normalized",
                     decoder_constraint="UNIT_EXACT", rescale=False, **common) as a, \
            sae.Trainer(1, preset=2, mse=3, decoder_constraint=2, rescale=2, **common) as b:
        assert a.options() == b.options()
        assert a.options()["mse"] == "normalized"
        assert a.options()["decoder_constraint"] == "unit_exact"
        assert a.options()["rescale"] == "off"


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(learning_rate=1e-3), TypeError, "learning_rate"),
    (dict(allocator=1), TypeError, "allocator"),
    (dict(mse="l2"), ValueError, "'fvu'"),
    (dict(warmup_steps=-1), ValueError, "explicit zero"),
    (dict(lr=0), ValueError, "positive"),
    (dict(dead_window=1.5), TypeError, "integer"),
    (dict(n_threads=2 ** 31), ValueError, "out of range"),
    (dict(threads=1, n_threads=2), TypeError, "n_threads"),
])
def test_python_option_errors(kwargs, error, words):
    with pytest.raises(error, match=words):
        sae.Trainer(d_in=8, d_sae=16, **kwargs)


@pytest.mark.parametrize("kwargs, code, words", [
    (dict(arch="topk", k=17), -1, "k <= d_sae"),
    (dict(k=2), -1, "standard SAE"),
    (dict(beta1=1.5), -1, "betas"),
    (dict(lr_schedule="cosine"), -1, "total_steps"),
    (dict(mse=9), -1, "mse = 9"),
    (dict(preset="sparsify"), -7, "TopK"),
    (dict(arch="gated", preset="sparsify"), -7, "TopK"),
    (dict(lr=float("inf")), -6, "lr is inf"),
    (dict(beta2=float("inf")), -6, "beta2"),
])
def test_library_option_errors(kwargs, code, words):
    with pytest.raises(sae.SaeError) as info:
        sae.Trainer(**dict(dict(d_in=8, d_sae=16), **kwargs))
    assert info.value.code == code and words in info.value.message, info.value


def test_dead_window_accepts_integral_float():
    with sae.Trainer(d_in=8, d_sae=16, dead_window=1e7) as t:
        assert t.options()["dead_window"] == 10 ** 7


# ---- continuing from a dictionary, export --------------------------------------------------------

def test_create_from_dictionary_and_export():
    rng = np.random.default_rng(5)
    w = dict(W_enc=rng.normal(size=(D_IN, D_SAE)), b_enc=rng.normal(size=D_SAE),
             W_dec=rng.normal(size=(D_SAE, D_IN)), b_dec=rng.normal(size=D_IN))
    with sae.Dictionary.from_arrays("topk", k=K, **w) as init, \
            sae.Trainer(dictionary=init, preset="sparsify") as t:
        assert (t.arch, t.d_in, t.d_sae, t.k) == ("topk", D_IN, D_SAE, K)
        with t.dictionary() as d:  # before any step: the same weights
            assert same_weights(d, init)
            assert d.relu_before_topk and not d.rescale_acts_by_decoder_norm  # sparsify's
        x = batch(40)
        t.step(x)
        with t.dictionary() as d:
            assert not same_weights(d, init)
            f = d.encode(x)
            assert f.shape == (40, D_SAE) and ((f != 0).sum(1) <= K).all() and (f >= 0).all()
            assert d.k == K


def test_create_from_errors():
    with sae.Dictionary.from_arrays("standard", W_enc=np.zeros((8, 16)),
                                    W_dec=np.ones((16, 8))) as d:
        with pytest.raises(sae.SaeError) as info:
            sae.Trainer(dictionary=d, d_in=9)
        assert info.value.code == -3
    with pytest.raises(TypeError, match="Dictionary"):
        sae.Trainer(dictionary="ae.pt")


# ---- step inputs ---------------------------------------------------------------------------------

def test_layouts_dtypes_and_strides_train_identically():
    x = batch(32)
    wide = np.zeros((32, D_IN + 5), np.float32)
    wide[:, :D_IN] = x
    inputs = [x, x.astype(np.float64), np.asfortranarray(x), wide[:, :D_IN]]
    results = []
    for xi in inputs:
        with sae.Trainer("topk", d_in=D_IN, d_sae=D_SAE, k=K, seed=1, threads=2) as t:
            m = t.step(xi)
            results.append((m, t.dictionary()))
    for m, d in results[1:]:
        assert m == results[0][0] and same_weights(d, results[0][1])


def test_bad_batches():
    with sae.Trainer("topk", d_in=D_IN, d_sae=D_SAE, k=K) as t:
        before = t.dictionary()
        with pytest.raises(ValueError, match="expected"):
            t.step(batch(4, D_IN + 1))
        with pytest.raises(ValueError, match="expected"):
            t.step(batch(1)[0])
        with pytest.raises(TypeError):
            t.step(np.array([["a"] * D_IN]))
        with pytest.raises(sae.SaeError) as info:
            t.step(np.zeros((0, D_IN), np.float32))
        assert info.value.code == -1
        bad = batch(4)
        bad[2, 5] = np.nan
        with pytest.raises(sae.SaeError) as info:
            t.step(bad)
        assert info.value.code == -6 and "x[2, 5]" in info.value.message
        assert t.steps == 0 and t.metrics() is None
        with t.dictionary() as after:
            assert same_weights(before, after)


def test_skip_nonfinite():
    with sae.Trainer(d_in=8, d_sae=16, flags=sae.TRAIN_SKIP_NONFINITE) as t:
        x = batch(4, 8)
        x[0, 0] = np.inf
        m = t.step(x)
        assert m.skipped == 1 and t.steps == 0


# ---- since_fired ---------------------------------------------------------------------------------

def test_since_fired():
    with sae.Trainer("topk", d_in=D_IN, d_sae=D_SAE, k=K, preset="sparsify") as t:
        counts = t.since_fired
        assert counts.dtype == np.int64 and counts.shape == (D_SAE,) and not counts.any()
        counts[:] = 7  # a copy
        assert not t.since_fired.any()
        t.since_fired = np.arange(D_SAE, dtype=np.int32)
        np.testing.assert_array_equal(t.since_fired, np.arange(D_SAE))
        t.step(batch(10))  # sparsify counts tokens: +10, or 0 for features that fired
        after = t.since_fired
        assert np.all((after == 0) | (after == np.arange(D_SAE) + 10)) and (after == 0).any()
        with pytest.raises(ValueError, match="integers"):
            t.since_fired = np.zeros(D_SAE - 1, np.int64)
        with pytest.raises(ValueError, match="integers"):
            t.since_fired = np.zeros(D_SAE)
        with pytest.raises(sae.SaeError, match="negative"):
            t.since_fired = -np.ones(D_SAE, np.int64)


# ---- lifetime ------------------------------------------------------------------------------------

def test_close_and_context_manager():
    t = sae.Trainer(d_in=8, d_sae=16)
    assert "steps=0" in repr(t)
    t.close()
    t.close()
    assert t.closed and "closed" in repr(t)
    for call in (lambda: t.step(batch(2, 8)), t.options, t.dictionary, lambda: t.steps,
                 lambda: t.since_fired):
        with pytest.raises(ValueError, match="closed"):
            call()
    with sae.Trainer(d_in=8, d_sae=16) as t:
        pass
    assert t.closed
    with pytest.raises(TypeError):
        import copy
        copy.copy(sae.Trainer(d_in=8, d_sae=16))
