"""sae.capture, sae.Source.from_host and sae.loss_recovered (include/sae/capture.h) with the numpy
host of test_host.py and with sae.Llama2 on stories260K: the captured and streamed activations
against those recorded from a direct forward, the loss recovered against a float64 numpy
computation of its definition, exceptions of Python callbacks coming back, and bad inputs."""

import numpy as np
import pytest

import sae
from test_host import D, NAMES, T, V, ToyHost, ce64, dictionary, identity, recorded  # noqa: F401

N_SEQ = 5


def toy_tokens(seed=4):
    return np.random.default_rng(seed).integers(0, V, size=(N_SEQ, T)).astype(np.int32)


# ---- capture and streaming ---------------------------------------------------------------------

@pytest.mark.parametrize("skip_bos", [False, True])
def test_capture_equals_recorded(tmp_path, skip_bos):
    host, tokens = ToyHost(), toy_tokens()
    first = int(skip_bos)
    want = {name: recorded(host, tokens, name)[:, first:] for name in NAMES}
    path = tmp_path / "acts.safetensors"
    sae.capture(path, host, tokens, ["resid_post.0", "mlp_out.1"], skip_bos=skip_bos,
                seqs_per_batch=2)
    got = sae.load_file(path)
    assert sorted(got) == ["mlp_out.1", "resid_post.0"]
    for name, x in got.items():
        assert x.dtype == np.float32 and x.shape == (N_SEQ, T - first, D)
        np.testing.assert_allclose(x, want[name], rtol=1e-5, atol=1e-5)
    meta = sae.load_metadata(path)
    assert meta["hooks.resid_post.0"] == "resid_post.0" and meta["skip_bos"] == str(first)
    # Named tensors stacking hook points along a third axis (an id may stand for a name).
    sae.capture(path, host, tokens, {"resid": ["resid_pre.0", NAMES.index("resid_post.1")],
                                     "mlp": ["mlp_out.0", "mlp_out.1"]}, skip_bos=skip_bos)
    got = sae.load_file(path)
    assert got["resid"].shape == (N_SEQ, T - first, 2, D)
    np.testing.assert_allclose(got["resid"][:, :, 1], want["resid_post.1"], rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(got["mlp"][:, :, 0], want["mlp_out.0"], rtol=1e-5, atol=1e-5)


def test_source_from_host_streams_the_activations(dictionary):
    host, tokens = ToyHost(), toy_tokens()
    want = recorded(host, tokens, "mlp_out.1")[:, 1:].reshape(-1, D)
    with sae.Source.from_host(host, "mlp_out.1", tokens, seqs_per_batch=2,
                              skip_bos=True) as src:
        assert src.d == D and src.rows == N_SEQ * (T - 1)
        got = np.concatenate([src.next(7) for _ in range(5)])  # batches across sequences
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert src.next(3).shape == (0, D)
        src.reset()
        np.testing.assert_allclose(src.next(4), want[:4], rtol=1e-5, atol=1e-5)
    with sae.Source.from_host(host, "mlp_out.1", tokens, skip_bos=True, shuffle_rows=64,
                              seed=3) as src:  # a permutation of the same rows
        shuffled = src.next(1000)
        assert not np.allclose(shuffled, want)
        np.testing.assert_allclose(np.sort(shuffled, axis=0), np.sort(want, axis=0),
                                   rtol=1e-5, atol=1e-5)
    # Training and evaluation read it in C, running the host as they go.
    with sae.Source.from_host(host, "mlp_out.1", tokens, skip_bos=True) as src:
        result = sae.evaluate(dictionary, src)
    assert result.rows == len(want)
    assert result.fvu == pytest.approx(sae.evaluate(dictionary, want).fvu, rel=1e-5)


# ---- loss recovered ----------------------------------------------------------------------------

def numpy_loss_recovered(host, tokens, at, replace, skip_bos):
    """capture.h's definition in float64, the model run directly with x at hook `at` replaced
    by `replace(x)` (rows (n, D)) at the positions t >= skip_bos."""
    first = int(skip_bos)
    mu = recorded(host, tokens, at)[:, first:].reshape(-1, D).mean(axis=0)

    def run(fn):
        def hook(name, x):
            if name != at or fn is None:
                return x
            x = np.array(x, np.float64)
            x[:, first:] = fn(x[:, first:].reshape(-1, D)).reshape(x[:, first:].shape)
            return x
        z = np.asarray(host.forward(tokens, hook), np.float64)[:, :-1]
        return z - z.max(axis=-1, keepdims=True)

    targets = tokens[:, 1:]
    clean = run(None)
    log_p = clean - np.log(np.exp(clean).sum(axis=-1, keepdims=True))
    out = {"ce_clean": ce64(clean, targets)}
    for kind, fn in (("spliced", replace), ("zero", np.zeros_like),
                     ("mean", lambda x: np.broadcast_to(mu, x.shape))):
        z = run(fn)
        log_q = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        out["ce_" + kind] = ce64(z, targets)
        out["kl_" + kind] = float(np.mean((np.exp(log_p) * (log_p - log_q)).sum(axis=-1)))
    for base in ("zero", "mean"):
        out["score_" + base] = ((out["ce_" + base] - out["ce_spliced"])
                                / (out["ce_" + base] - out["ce_clean"]))
        out["kl_score_" + base] = (out["kl_" + base] - out["kl_spliced"]) / out["kl_" + base]
    return out


@pytest.mark.parametrize("skip_bos", [False, True])
def test_loss_recovered_matches_numpy(dictionary, skip_bos):
    host, tokens = ToyHost(), toy_tokens()
    got = sae.loss_recovered(dictionary, host, "resid_post.0", tokens, skip_bos=skip_bos,
                             seqs_per_batch=2)
    assert isinstance(got, sae.LossRecovered) and got.n_tokens == N_SEQ * (T - 1)
    want = numpy_loss_recovered(host, tokens, "resid_post.0",
                                lambda x: dictionary.ref.forward(x)[2], skip_bos)
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert got.kl_spliced > 0 and got.kl_zero > 0  # every run really changed the model


# ---- errors ------------------------------------------------------------------------------------

def test_callback_exceptions_come_back(dictionary, tmp_path):
    host, tokens = ToyHost(), toy_tokens()
    host.fail = "forward"
    path = tmp_path / "acts.safetensors"
    with pytest.raises(RuntimeError, match="toy forward failed"):
        sae.capture(path, host, tokens, "resid_post.0")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="toy forward failed"):
        sae.loss_recovered(dictionary, host, "resid_post.0", tokens)
    with sae.Source.from_host(host, "resid_post.0", tokens) as src:
        with pytest.raises(RuntimeError, match="toy forward failed"):
            src.next(4)
        src.reset()  # a failed source stays failed until reset
        with pytest.raises(RuntimeError, match="toy forward failed"):
            sae.evaluate(dictionary, src)
        src.reset()
        with sae.Trainer("topk", d_in=D, d_sae=16, k=2) as trainer:
            with pytest.raises(RuntimeError, match="toy forward failed"):
                trainer.fit(src, steps=2, batch_size=8)
        host.fail = None
        src.reset()
        assert src.next(4).shape == (4, D)  # still usable
    host.fail = "shape"  # logits of the wrong shape: only loss recovered asks for them
    with pytest.raises(ValueError, match="returned logits of shape"):
        sae.loss_recovered(dictionary, host, "resid_post.0", tokens)


def test_bad_inputs(dictionary, tmp_path):
    host, tokens = ToyHost(), toy_tokens()
    path = tmp_path / "acts.safetensors"
    with pytest.raises(sae.SaeError, match="resid_post.9") as err:
        sae.capture(path, host, tokens, "resid_post.9")
    assert err.value.code == -10
    with pytest.raises(sae.SaeError) as err:
        sae.capture(path, host, np.full((2, 3), V), "resid_post.0")  # a token out of range
    assert err.value.code == -9
    with pytest.raises(sae.SaeError) as err:
        sae.Source.from_host(host, "resid_post.0", np.zeros((2, T + 1), int))  # too long
    assert err.value.code == -3
    with pytest.raises(sae.SaeError) as err:
        sae.Source.from_host(host, len(NAMES), tokens)  # a hook id out of range
    assert err.value.code == -9
    with pytest.raises(sae.SaeError) as err:
        sae.Source.from_host(host, "resid_post.0", tokens[:, :1], skip_bos=True)
    assert err.value.code == -3
    with pytest.raises(sae.SaeError) as err:
        sae.loss_recovered(dictionary, host, "resid_post.0", tokens[:, :1])  # no next token
    assert err.value.code == -3
    wide = sae.Dictionary.from_arrays(W_enc=np.eye(D + 1, dtype=np.float32),
                                      W_dec=np.eye(D + 1, dtype=np.float32))
    with pytest.raises(sae.SaeError) as err:
        sae.loss_recovered(wide, host, "resid_post.0", tokens)
    assert err.value.code == -3
    with pytest.raises(ValueError, match="mixes"):
        sae.capture(path, host, tokens, {"a": "resid_post.0", "b": ["mlp_out.0"]})
    with pytest.raises(ValueError, match="same number"):
        sae.capture(path, host, tokens, {"a": ["resid_post.0"], "b": []})
    with pytest.raises(ValueError, match="empty"):
        sae.capture(path, host, tokens, [])
    with pytest.raises(ValueError, match="seqs_per_batch"):
        sae.Source.from_host(host, "resid_post.0", tokens, seqs_per_batch=0)
    with pytest.raises(ValueError, match="integer"):
        sae.loss_recovered(dictionary, host, "resid_post.0", tokens.astype(np.float32))
    with pytest.raises(TypeError):
        sae.capture(path, "not a host", tokens, "resid_post.0")
    with pytest.raises(TypeError):
        sae.loss_recovered(host, dictionary, "resid_post.0", tokens)
    assert list(tmp_path.iterdir()) == []


# ---- sae.Llama2 on stories260K -----------------------------------------------------------------

@pytest.fixture(scope="module")
def model(shared_dir):
    with sae.Llama2(shared_dir / "data" / "stories260K.bin",
                    shared_dir / "data" / "tok512.bin") as m:
        yield m


def story_tokens(model):
    prompts = ["Once upon a time", "Lily had a red ball", "The cat sat", "Tom was sad"]
    return np.stack([model.generate_tokens(p, steps=24, temperature=1.0, seed=i + 1)[:24]
                     for i, p in enumerate(prompts)])


def test_llama2_capture_and_source(model, tmp_path):
    tokens = story_tokens(model)
    n_seq, seq_len = tokens.shape
    ident = sae.Dictionary.from_arrays(W_enc=np.eye(64, dtype=np.float32),
                                       W_dec=np.eye(64, dtype=np.float32))
    rec = sae.Patch.record(ident, tokens.size)
    model.run(tokens, patches={"resid_post.2": rec}, logits=False)
    want = rec.activations.reshape(n_seq, seq_len, 64)
    path = tmp_path / "acts.safetensors"
    sae.capture(path, model, tokens, ["resid_post.2"], skip_bos=True, seqs_per_batch=3)
    np.testing.assert_allclose(sae.load_file(path)["resid_post.2"], want[:, 1:], rtol=1e-5,
                               atol=1e-5)
    with sae.Source.from_host(model, "resid_post.2", tokens, seqs_per_batch=1) as src:
        np.testing.assert_allclose(src.next(tokens.size), want.reshape(-1, 64), rtol=1e-5,
                                   atol=1e-5)


def test_llama2_loss_recovered(model):
    tokens = story_tokens(model)
    rng = np.random.default_rng(0)
    W = (rng.normal(size=(64, 96)) / 8).astype(np.float32)
    d = sae.Dictionary.from_arrays(W_enc=W, W_dec=W.T.copy())
    got = sae.loss_recovered(d, model, "resid_post.2", tokens, seqs_per_batch=3)
    targets = tokens[:, 1:]
    clean = model.run(tokens)[:, :-1].astype(np.float64)
    spliced = model.run(tokens, patches={"resid_post.2": sae.Patch.splice(d)})[:, :-1]
    spliced = spliced.astype(np.float64)
    assert got.n_tokens == targets.size
    assert got.ce_clean == pytest.approx(ce64(clean, targets), rel=1e-5)
    assert got.ce_spliced == pytest.approx(ce64(spliced, targets), rel=1e-5)
    log_p = clean - np.logaddexp.reduce(clean, axis=-1, keepdims=True)
    log_q = spliced - np.logaddexp.reduce(spliced, axis=-1, keepdims=True)
    kl = np.mean((np.exp(log_p) * (log_p - log_q)).sum(axis=-1))
    assert got.kl_spliced == pytest.approx(kl, rel=1e-4, abs=1e-6)
    assert got.score_zero == pytest.approx((got.ce_zero - got.ce_spliced)
                                           / (got.ce_zero - got.ce_clean))
    assert got.ce_clean < got.ce_zero and got.ce_clean < got.ce_mean


def test_closed_host(shared_dir):
    host = sae.Llama2(shared_dir / "data" / "stories260K.bin")
    tokens = np.ones((2, 4), np.int32)
    with sae.Source.from_host(host, "resid_post.2", tokens) as src:
        assert src.next(2).shape == (2, 64)
        host.close()
        with pytest.raises(ValueError, match="closed"):
            src.next(2)  # the source refuses to run a host that is gone
    with pytest.raises(ValueError, match="closed"):
        sae.capture("unused.safetensors", host, tokens, "resid_post.2")
