"""`sae generate` ($SAE_CLI): run.c's texts of stories260K.md, prompts, SAE patches at a hook
point (a zero steer changes nothing, a strong one changes the text, --compare prints both),
and one-line errors with a non-zero exit for bad hooks, features and dictionaries."""

import numpy as np
import pytest

import sae
from _cli import run
from test_cli import expect_error
from test_llama2 import md_text


@pytest.fixture(scope="module")
def model_args(shared_dir):
    return ["--model", shared_dir / "data" / "stories260K.bin",
            "--tokenizer", shared_dir / "data" / "tok512.bin"]


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    """A random ReLU SAE on the model's width (64) that names its hook point resid_post.2."""
    rng = np.random.default_rng(0)
    W = (rng.normal(size=(64, 96)) / 8).astype(np.float32)
    path = tmp_path_factory.mktemp("generate") / "sae"
    with sae.Dictionary.from_arrays(W_enc=W, W_dec=W.T.copy(), hook_name="resid_post.2") as d:
        d.save(path)
    return path


def generate(*args):
    r = run("generate", *args, "--threads", "1")  # one thread: tiny single-token patches
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n")
    return r.stdout[:-1]


def test_run_c_texts(model_args, shared_dir):
    assert generate(*model_args) == md_text(shared_dir, "-z stories260K/tok512.bin -t 0.0")
    assert generate(*model_args, "--temperature", "1", "--seed", "133742") == md_text(
        shared_dir, "-z stories260K/tok512.bin -t 1.0 -p 0.9 -s 133742")
    text = generate(*model_args, "--prompt", "Tom had a red ball", "--steps", "30")
    assert text.startswith("Tom had a red ball") and len(text) > len("Tom had a red ball") + 20
    with sae.Llama2(*model_args[1::2]) as m:
        assert text == m.generate("Tom had a red ball", steps=30)


def test_patches(model_args, sae_dir):
    clean = generate(*model_args, "--steps", "60")
    assert generate(*model_args, "--steps", "60", "--dict", sae_dir, "--steer", "5:0") == clean
    steered = generate(*model_args, "--steps", "60", "--dict", sae_dir, "--hook", "resid_post.2",
                       "--steer", "5:8")
    assert steered != clean
    both = generate(*model_args, "--steps", "60", "--dict", sae_dir, "--steer", "5:8",
                    "--compare")
    assert both == "[without patches]\n%s\n[with patches at resid_post.2]\n%s" % (clean, steered)
    with sae.load(sae_dir) as d, sae.Llama2(*model_args[1::2]) as m:
        patches = [sae.Patch.steer(d, 3, 2.0, normalize=True),
                   sae.Patch.clamp(d, 7, 1.5, threads=1),
                   sae.Patch.ablate(d, [1, 2, 9], threads=1), sae.Patch.splice(d, threads=1)]
        want = m.generate(steps=60, patches={"mlp_out.1": patches})
    got = generate(*model_args, "--steps", "60", "--dict", sae_dir, "--hook", "mlp_out.1",
                   "--steer", "3:2", "--normalize", "--clamp", "7:1.5", "--ablate", "1,2,9",
                   "--splice")
    assert got == want and got != clean


def test_errors(model_args, sae_dir, native_dir):
    expect_error(["generate", *model_args, "--dict", sae_dir, "--hook", "resid_post.9",
                  "--splice"], 'no hook point "resid_post.9"')
    expect_error(["generate", *model_args, "--dict", sae_dir, "--steer", "96:1"],
                 "--steer 96:1: steering direction: feature id 96 is outside [0, 96)")
    expect_error(["generate", *model_args, "--dict", sae_dir, "--ablate", "3,200"],
                 "--ablate 3,200")
    expect_error(["generate", *model_args, "--dict", native_dir / "saelens_standard_d32_s128_b16",
                  "--hook", "resid_post.1", "--splice"], "d_in is 32 but the model's dim is 64")
    expect_error(["generate", *model_args, "--steps", "513"], "context length 512")
    expect_error(["generate", *model_args, "--prompt", "x" * 40, "--steps", "8"], "--steps 8")
    expect_error(["generate", "--model", model_args[3], "--tokenizer", model_args[3]],
                 "tok512.bin")
    for args in (["--steer", "1:2"], ["--dict", sae_dir], ["--dict", sae_dir, "--ablate", "1,,2"],
                 ["--dict", sae_dir, "--clamp", "4"], ["--temperature", "-1"], ["--seed", "0"],
                 ["--compare"], ["--hook", "resid_post.1"],
                 []):
        assert run("generate", *(model_args if args else []), *args).returncode == 2, args
    assert run("generate", "--help").returncode == 0
