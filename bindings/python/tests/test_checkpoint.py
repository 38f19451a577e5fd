"""sae.Trainer checkpoints (bit-identical continuation, errors), dead-feature resampling and
activation scaling."""

import json

import numpy as np
import pytest

import sae
from test_trainer import batch, same_weights

RUNS = {
    "topk_sparsify_scaled": dict(arch="topk", d_in=12, d_sae=40, k=3, preset="sparsify",
                                 activation_scaling="on", total_steps=12),
    "standard_dl_resampling": dict(arch="standard", d_in=12, d_sae=40,
                                   preset="dictionary_learning", resample_steps=4,
                                   warmup_steps=2),
}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_checkpoint_continues_bit_for_bit(run, tmp_path):
    x = batch(200, 12, seed=1) * 3 + 1
    path = tmp_path / "run.ckpt"
    with sae.Trainer(threads=1, seed=4, **RUNS[run]) as straight:
        straight.fit(x, steps=5, batch_size=20)
        straight.save_checkpoint(path)
        with sae.Trainer.load_checkpoint(path) as resumed:
            assert resumed.options() == straight.options() and resumed.steps == 5
            assert (resumed.arch, resumed.d_in, resumed.d_sae, resumed.k) == (
                straight.arch, straight.d_in, straight.d_sae, straight.k)
            assert resumed.activation_scale == straight.activation_scale
            np.testing.assert_array_equal(resumed.since_fired, straight.since_fired)
            for t in (straight, resumed):
                t.fit(x[100:], steps=7, batch_size=20)
            assert resumed.metrics() == straight.metrics()
            np.testing.assert_array_equal(resumed.since_fired, straight.since_fired)
            with straight.dictionary() as a, resumed.dictionary() as b:
                assert same_weights(a, b)
            resumed.save_checkpoint(path)  # replaces the file
        with sae.Trainer.load_checkpoint(path) as again:
            assert again.steps == 12


def test_loaded_trainer_finishes_its_run(tmp_path):
    with sae.Trainer("topk", d_in=8, d_sae=16, k=2, total_steps=6, threads=1) as t:
        t.fit(batch(8, 8), steps=2, batch_size=4)
        t.save_checkpoint(tmp_path / "c")
    with sae.Trainer.load_checkpoint(tmp_path / "c") as t:
        assert t.fit(batch(8, 8), steps=None, batch_size=4).step == 5 and t.steps == 6


def test_load_errors(tmp_path):
    def code_of(path):
        with pytest.raises(sae.SaeError) as info:
            sae.Trainer.load_checkpoint(path)
        return info.value.code, info.value.message

    assert code_of(tmp_path / "missing")[0] == -10
    sae.save_file({"x": np.zeros(3, np.float32)}, tmp_path / "plain.safetensors")
    code, message = code_of(tmp_path / "plain.safetensors")
    assert code == -5 and "not a libsae trainer checkpoint" in message
    (tmp_path / "text").write_text("hello")
    assert code_of(tmp_path / "text")[0] == -5
    with sae.Trainer(d_in=8, d_sae=16) as t:
        t.step(batch(4, 8))
        t.save_checkpoint(tmp_path / "good")
    data = (tmp_path / "good").read_bytes()
    (tmp_path / "short").write_bytes(data[:len(data) // 2])
    assert code_of(tmp_path / "short")[0] in (-4, -5)
    # A NaN in the weights: the checkpoint is refused, naming the tensor.
    header_len = int.from_bytes(data[:8], "little")
    begin = 8 + header_len + json.loads(data[8:8 + header_len])["param"]["data_offsets"][0]
    nan = bytearray(data)
    nan[begin + 12:begin + 16] = np.array([np.nan], np.float32).tobytes()
    (tmp_path / "nan").write_bytes(bytes(nan))
    code, message = code_of(tmp_path / "nan")
    assert code == -6 and "param" in message
    with pytest.raises(sae.SaeError) as info:
        with sae.Trainer(d_in=8, d_sae=16) as t:
            t.save_checkpoint(tmp_path / "no" / "such" / "dir" / "c")
    assert info.value.code == -4


# ---- resampling ----------------------------------------------------------------------------------

def test_resample_dead_features():
    d_in, d_sae = 10, 24
    x = batch(64, d_in, seed=2)
    with sae.Trainer(d_in=d_in, d_sae=d_sae, preset="dictionary_learning", seed=3,
                     resample_steps=1000) as t:
        t.step(x)
        assert t.resample(x) == 0  # nothing is dead yet
        dead = np.zeros(d_sae, np.int64)
        dead[[2, 5, 7]] = 10 ** 6
        t.since_fired = dead
        with t.dictionary() as before:
            W_dec = np.array(before.W_dec)
        assert t.resample(x) == 3
        with t.dictionary() as after:
            changed = np.flatnonzero(np.any(np.array(after.W_dec) != W_dec, axis=1))
            assert changed.tolist() == [2, 5, 7]
            # Each new decoder row is one of the rows of x, normalised.
            unit = x / np.linalg.norm(x, axis=1, keepdims=True)
            for j in changed:
                assert np.abs(unit @ after.W_dec[j] - 1).min() < 1e-5
            assert not np.any(after.b_enc[changed])
    with sae.Trainer("topk", d_in=d_in, d_sae=d_sae, k=2) as t, \
            pytest.raises(sae.SaeError) as info:
        t.resample(x)
    assert info.value.code == -7


# ---- activation scaling --------------------------------------------------------------------------

def test_activation_scale():
    x = batch(50, 16, seed=6) * 7
    mean_norm = np.linalg.norm(x.astype(np.float64), axis=1).mean()
    with sae.Trainer(d_in=16, d_sae=32, activation_scaling="on") as t:
        assert t.activation_scale == 1.0  # not known yet
        s = t.estimate_scale(x[:20])
        assert s == pytest.approx(4 / np.linalg.norm(x[:20].astype(np.float64), axis=1).mean(),
                                  rel=1e-6)
        assert t.estimate_scale(x[20:]) == pytest.approx(4 / mean_norm, rel=1e-6)
        t.step(x)
        assert t.activation_scale == pytest.approx(4 / mean_norm, rel=1e-6)
        with pytest.raises(sae.SaeError) as info:
            t.estimate_scale(x)
        assert info.value.code == -1
    with sae.Trainer(d_in=16, d_sae=32) as t:
        assert t.activation_scale == 1.0
        with pytest.raises(sae.SaeError, match="scal"):
            t.estimate_scale(x)
