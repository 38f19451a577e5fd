"""sae.Trainer.fit (sae_trainer_fit over a sae_source) against manual steps on the same rows,
for arrays, generators, files and sae.Source; the callback (progress, stop, exceptions,
Ctrl-C); and sae.Source itself."""

import ctypes
import os
import signal
import threading

import numpy as np
import pytest

import sae
from sae import _lib, _structs
from test_trainer import assert_no_holes, batch, same_weights, written_bytes


def topk(**kw):
    return sae.Trainer("topk", d_in=8, d_sae=16, k=2, seed=2, threads=1, **kw)


def test_fit_progress_mirror_matches_library():
    assert_no_holes(_structs.FitProgress)
    x = batch(8, 8)
    with topk() as t, sae.Source.from_array(x) as src:
        options = _structs.new(_structs.FitOptions, steps=1, batch_size=4)
        pointer = ctypes.POINTER(_structs.FitProgress)
        size = written_bytes(lambda a: _lib.lib.sae_trainer_fit(
            t._handle, src._handle, options, ctypes.cast(a, pointer), _structs.FitFn(), None))
    assert size == ctypes.sizeof(_structs.FitProgress)


# ---- fit equals the manual steps ---------------------------------------------------------------

def test_fit_on_array_reads_rows_in_order_and_loops():
    x = batch(10, 8)
    seen = []
    with topk() as a, topk() as b:
        last = a.fit(x, steps=4, batch_size=4, callback=lambda p, m: seen.append((p, m)))
        assert [m.step for _, m in seen] == [0, 1, 2, 3] and last == seen[-1][1] == a.metrics()
        progress = [p for p, _ in seen]
        assert [p.steps_done for p in progress] == [1, 2, 3, 4]
        assert all(p.steps_total == 4 and not p.source_ended for p in progress)
        assert [p.tokens for p in progress] == [4, 8, 12, 16]
        assert isinstance(progress[0], sae.FitProgress) and progress[-1].elapsed_seconds >= 0
        for rows in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]):
            b.step(x[rows])
        assert same_weights(a.dictionary(), b.dictionary())
        assert a.fit(x, steps=1, batch_size=4).step == 4  # every call starts at row 0
        b.step(x[:4])
        assert same_weights(a.dictionary(), b.dictionary())
    with topk() as a, topk() as b:  # batches larger than the data wrap more than once
        a.fit(x[:, :8].astype(np.float64), steps=1, batch_size=23)
        b.step(x[np.arange(23) % 10])
        assert same_weights(a.dictionary(), b.dictionary())


def test_fit_on_synthetic_takes_exactly_its_rows():
    with sae.Synthetic(d=16, n_features=32, seed=4) as s1, \
            sae.Synthetic(d=16, n_features=32, seed=4) as s2, \
            sae.Trainer("topk", d_in=16, d_sae=32, k=3, threads=1) as a, \
            sae.Trainer("topk", d_in=16, d_sae=32, k=3, threads=1) as b:
        a.fit(s1, steps=3, batch_size=50)
        a.fit(s1, steps=2, batch_size=30)  # continues with the generator's next rows
        for n in (50, 50, 50, 30, 30):
            b.step(s2.sample(n))
        assert same_weights(a.dictionary(), b.dictionary())
        np.testing.assert_array_equal(s1.sample(5), s2.sample(5))


def test_fit_on_files_in_order_and_looping(tmp_path):
    x = batch(30, 8, seed=3)
    sae.save_file({"x": x[:12].reshape(3, 4, 8)}, tmp_path / "a.safetensors")
    x[12:].tofile(tmp_path / "b.f32")
    first = tmp_path / "first.safetensors"
    sae.save_file({"acts": x[:12]}, first)
    with topk() as a, topk() as b, topk() as c:
        a.fit(first, steps=4, batch_size=5)  # one file, looping: rows 0..19 modulo 12
        for i in range(4):
            b.step(x[np.arange(5 * i, 5 * i + 5) % 12])
        assert same_weights(a.dictionary(), b.dictionary())
        with sae.Source.from_files([tmp_path / "a.safetensors", str(tmp_path / "b.f32")],
                                   raw_d=8) as src:
            assert (src.d, src.rows) == (8, 30)
            last = c.fit(src, steps=100, batch_size=7)  # finite: 4 full batches, then dry
        assert last.step == 3 and c.steps == 4
        with topk() as d:
            for i in range(4):
                d.step(x[7 * i:7 * i + 7])
            assert same_weights(c.dictionary(), d.dictionary())


def test_fit_on_a_source_continues_where_it_stands():
    x = batch(40, 8, seed=5)
    with topk() as a, topk() as b, \
            sae.Source.from_array(x, loop=True, shuffle=True, seed=9) as src, \
            sae.Source.from_array(x, loop=True, shuffle=True, seed=9) as twin:
        a.fit(src, steps=3, batch_size=16)
        a.fit(src, steps=2, batch_size=16)  # crosses into the second epoch
        for _ in range(5):
            b.step(twin.next(16))
        assert src.epoch == twin.epoch == 1 and not src.closed  # 80 rows: end of epoch 1
        assert same_weights(a.dictionary(), b.dictionary())


def test_fit_up_to_total_steps():
    with topk(total_steps=5) as t:
        t.fit(batch(8, 8), steps=2, batch_size=4)
        assert t.fit(batch(8, 8), steps=None, batch_size=4).step == 4 and t.steps == 5
        assert t.fit(batch(8, 8), steps=None) is None and t.steps == 5
    with topk() as t, pytest.raises(sae.SaeError, match="total_steps"):
        t.fit(batch(8, 8), steps=None)


# ---- the callback ------------------------------------------------------------------------------

@pytest.mark.parametrize("stop", [True, 1, "yes", [0]])
def test_callback_stops_on_a_true_value(stop):
    with topk() as t:
        assert t.fit(batch(8, 8), steps=0) is None and t.steps == 0
        m = t.fit(batch(8, 8), steps=10, batch_size=2,
                  callback=lambda p, m: stop if m.step == 2 else None)
        assert m.step == 2 and t.steps == 3 and t.metrics() == m


@pytest.mark.parametrize("go_on", [None, False, 0, ""])
def test_callback_false_values_go_on(go_on):
    with topk() as t:
        assert t.fit(batch(8, 8), steps=4, batch_size=2, callback=lambda p, m: go_on).step == 3


def test_callback_exception_stops_and_is_reraised():
    x = batch(12, 8)

    class Boom(Exception):
        pass

    def callback(p, m):
        if m.step == 1:
            raise Boom("at step 1")

    with topk() as a, topk() as b:
        with pytest.raises(Boom, match="at step 1") as info:
            a.fit(x, steps=6, batch_size=4, callback=callback)
        assert "callback" in "".join(str(f.name) for f in info.traceback)
        assert a.steps == 2 and a.metrics().step == 1  # the steps taken stay taken
        b.step(x[:4]), b.step(x[4:8])
        assert same_weights(a.dictionary(), b.dictionary())
        a.step(x[:4])  # still usable


def test_callback_may_use_the_trainer_but_not_close_it(tmp_path):
    with topk() as t:
        def callback(p, m):
            with t.dictionary() as d:
                assert d.d_sae == 16
            t.save_checkpoint(tmp_path / ("step%d.ckpt" % m.step))
            if m.step == 1:
                t.close()

        with pytest.raises(RuntimeError, match="fit callback"):
            t.fit(batch(8, 8), steps=4, batch_size=4, callback=callback)
        assert not t.closed and t.steps == 2
        assert sorted(os.listdir(tmp_path)) == ["step0.ckpt", "step1.ckpt"]


def test_generator_error_stops_the_fit():
    with sae.Synthetic(d=8, n_features=8, seed=1) as s, topk() as t:
        def callback(p, m):
            if m.step == 1:
                s.close()

        with pytest.raises(ValueError, match="generator is closed"):
            t.fit(s, steps=5, batch_size=4, callback=callback)
        assert t.steps == 2


def test_nonfinite_batch_fails_after_the_good_steps():
    x = batch(12, 8)
    x[9, 2] = np.nan
    with topk() as t:
        with pytest.raises(sae.SaeError) as info:
            t.fit(x, steps=5, batch_size=4)
        assert info.value.code == -6 and t.steps == 2 and t.metrics().step == 1


def test_ctrl_c_stops_a_running_fit():
    """SIGINT arriving while C trains is turned into KeyboardInterrupt after the current step
    (a plain ctypes callback would lose it), and the default handler is back afterwards."""
    steps = 10 ** 6
    with topk() as t:
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                t.fit(batch(16, 8), steps=steps, batch_size=4)
        finally:
            timer.cancel()
        assert 0 < t.steps < steps and t.metrics().step == t.steps - 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_fit_errors():
    with topk() as t, sae.Synthetic(d=9, n_features=8) as s:
        with pytest.raises(ValueError, match="width 9, expected 8"):
            t.fit(s, steps=1)
        with pytest.raises(TypeError, match="numpy array"):
            t.fit([[0.0] * 8], steps=1)
        with pytest.raises(ValueError, match="expected"):
            t.fit(np.zeros((0, 8), np.float32), steps=1)
        with pytest.raises(ValueError, match="batch_size"):
            t.fit(batch(4, 8), steps=1, batch_size=0)
        with pytest.raises(ValueError, match="steps"):
            t.fit(batch(4, 8), steps=-1)
        with pytest.raises(sae.SaeError) as info:
            t.fit("missing.safetensors", steps=1)
        assert info.value.code == -10
        assert t.steps == 0


# ---- sae.Source --------------------------------------------------------------------------------

def test_source_from_array():
    x = batch(10, 3)
    with sae.Source.from_array(x) as src:
        assert (src.d, src.rows, src.epoch) == (3, 10, 0) and "rows=10" in repr(src)
        np.testing.assert_array_equal(src.next(4), x[:4])
        np.testing.assert_array_equal(src.next(100), x[4:])  # a finite source ends
        assert src.next(5).shape == (0, 3)
        src.reset()
        np.testing.assert_array_equal(src.next(10), x)
    with sae.Source.from_array(x, loop=True, shuffle=True, seed=1) as src:
        first, second = src.next(10), src.next(10)
        assert src.epoch == 1
        for epoch in (first, second):  # a permutation of the rows each epoch
            assert sorted(map(tuple, epoch)) == sorted(map(tuple, x))
        assert not np.array_equal(first, second)
    assert src.closed and "closed" in repr(src)
    with pytest.raises(ValueError, match="closed"):
        src.next(1)
    with pytest.raises(TypeError, match="from_array"):
        sae.Source()
    with pytest.raises(ValueError, match="expected"):
        sae.Source.from_array(np.zeros(4))


def test_source_from_synthetic():
    with sae.Synthetic(d=6, n_features=10, seed=2) as s, \
            sae.Synthetic(d=6, n_features=10, seed=2) as twin:
        with sae.Source.from_synthetic(s, rows=25, read_chunk_rows=10) as src:
            assert src.rows is None and src.d == 6 and not src.endless
            np.testing.assert_array_equal(src.next(30), twin.sample(25))
            assert src.next(1).shape == (0, 6)
            with pytest.raises(sae.SaeError) as info:
                src.reset()
            assert info.value.code == -7
        with sae.Source.from_synthetic(s) as src:
            assert src.endless


def test_source_from_files_errors(tmp_path):
    sae.save_file({"x": np.zeros((4, 8), np.float32)}, tmp_path / "a.safetensors")
    sae.save_file({"x": np.zeros((4, 5), np.float32)}, tmp_path / "b.safetensors")
    with pytest.raises(sae.SaeError) as info:
        sae.Source.from_files([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    assert info.value.code == -3 and "b.safetensors" in info.value.message
    with pytest.raises(sae.SaeError, match="raw"):
        np.zeros((2, 8), np.float32).tofile(tmp_path / "c.f32")
        sae.Source.from_files(tmp_path / "c.f32")
