"""sae.Llama2: the llama2.c host from Python — run.c's greedy and sampled texts of
stories260K.md, the tokenizer, patches during generation (prompt prefill and single-token
steps) against the batched forward, the backward pass against finite differences through a
steering patch, and errors."""

import numpy as np
import pytest

import sae


def md_text(shared_dir, command_tail):
    """The text stories260K.md shows after the command line ending in `command_tail`."""
    md = (shared_dir / "data" / "stories260K.md").read_text()
    start = md.index(command_tail + "\n") + len(command_tail) + 1
    return md[start:md.index("\n```", start)]


@pytest.fixture(scope="module")
def model(shared_dir):
    with sae.Llama2(shared_dir / "data" / "stories260K.bin",
                    shared_dir / "data" / "tok512.bin") as m:
        yield m


@pytest.fixture(scope="module")
def dictionary():
    rng = np.random.default_rng(0)
    W = (rng.normal(size=(64, 96)) / 8).astype(np.float32)
    return sae.Dictionary.from_arrays(W_enc=W, W_dec=W.T.copy())


def test_generate_reproduces_run_c(model, shared_dir):
    assert model.generate() == md_text(shared_dir, "-z stories260K/tok512.bin -t 0.0")
    assert model.generate(temperature=1.0, top_p=0.9, seed=133742) == md_text(
        shared_dir, "-z stories260K/tok512.bin -t 1.0 -p 0.9 -s 133742")


def test_model_and_tokenizer(model):
    assert model.config["dim"] == model.d_model == 64 and model.vocab_size == 512
    assert len(model.hook_names) == 20 and model.hook_names[3] == "resid_post.0"
    tokens = model.encode("Lily saw a big dog.")
    assert tokens[0] == 1 and tokens.dtype == np.int32
    assert model.decode(tokens) == "Lily saw a big dog."
    assert model.encode("hi", bos=False, eos=True)[-1] == 2
    # The greedy continuation is the argmax of the last logits of a forward over the prompt.
    out = model.generate_tokens(tokens, steps=len(tokens) + 3)
    assert len(out) == len(tokens) + 4 and (out[:len(tokens)] == tokens).all()
    logits = model.run(out)
    np.testing.assert_array_equal(logits[len(tokens) - 1:-1].argmax(axis=1), out[len(tokens):])
    batch = model.run(np.stack([out, out[::-1]]))
    np.testing.assert_allclose(batch[0], logits, rtol=1e-5, atol=1e-5)


def test_patches_during_generation(model, dictionary):
    prompt = model.encode("Tom and his dog")
    clean = model.generate_tokens(prompt, steps=40)
    zero = sae.Patch.steer(dictionary, 5, 0.0)
    np.testing.assert_array_equal(model.generate_tokens(prompt, steps=40,
                                                        patches={"resid_post.2": zero}), clean)
    strong = sae.Patch.steer(dictionary, 5, 8.0)
    steered = model.generate_tokens(prompt, steps=40, patches={"resid_post.2": strong})
    assert (steered[:len(prompt)] == prompt).all() and not np.array_equal(steered, clean)
    # A recording during generation (the prompt in one pass, then one token per step) sees
    # what a batched forward over the whole text sees at the same hook point.
    during = sae.Patch.record(dictionary, 64, codes=True, threads=1)
    text = model.generate_tokens(prompt, steps=40, patches={"mlp_out.1": during})
    assert during.n_recorded == 40 and len(text) == 41
    batched = sae.Patch.record(dictionary, 64, codes=True, threads=1)
    model.run(text[:40], patches={"mlp_out.1": batched}, logits=False)
    np.testing.assert_allclose(during.activations, batched.activations, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(during.codes.to_dense(96), batched.codes.to_dense(96),
                               rtol=1e-4, atol=1e-5)


def test_backward_through_a_steering_patch(model, dictionary):
    """d CE / d alpha of a steer by alpha W_dec[j] at a hook is sum over tokens of the gradient
    there times W_dec[j]: the host's backward against central differences of real runs."""
    tokens = model.encode("Once upon a time, there was a cat who liked milk.")
    targets = np.append(tokens[1:], -1)
    direction = dictionary.W_dec[11].astype(np.float64)
    for hook in ("resid_pre.1", "mlp_out.3"):
        _, d_logits = sae.logits_ce(model.run(tokens), targets)
        grad = model.grad(d_logits, [hook])[hook]
        eps = 0.05
        ce = [sae.logits_ce(model.run(tokens, {hook: sae.Patch.steer(dictionary, 11, a)}),
                            targets)[0] for a in (eps, -eps)]
        fd = (ce[0] - ce[1]) / (2 * eps)
        got = float((grad.astype(np.float64) @ direction).sum())
        assert abs(got - fd) <= 5e-4 + 1e-2 * abs(fd), (hook, got, fd)


def test_errors(model, dictionary, shared_dir, tmp_path):
    with pytest.raises(sae.SaeError, match="context length"):
        model.generate(steps=1000)
    with pytest.raises(sae.SaeError, match="seed"):
        model.generate(temperature=0.5, seed=0)
    full = sae.Patch.record(dictionary, 3)
    with pytest.raises(sae.SaeError, match="record buffer full"):
        model.generate(steps=10, patches={"resid_pre.0": full})
    with pytest.raises(sae.SaeError, match="no hook point"):
        model.generate(steps=10, patches={"resid_post.7": full})
    with pytest.raises(sae.SaeError, match="outside"):
        model.run([1, 512])
    missing = tmp_path / "missing.bin"
    with pytest.raises(sae.SaeError, match="missing.bin"):
        sae.Llama2(missing)
    with sae.Llama2(shared_dir / "data" / "stories260K.bin") as bare:
        with pytest.raises(ValueError, match="tokenizer"):
            bare.encode("hi")
        assert len(bare.generate_tokens([1], steps=5)) == 6
    with pytest.raises(ValueError, match="closed"):
        bare.run([1, 2])
