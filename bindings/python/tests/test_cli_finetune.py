"""`sae finetune` and `sae train --ortho` ($SAE_CLI): sae-icm's fine-tuning recipe on tiny SAEs.
The before/after report agrees with numpy on the saved SAEs and the rows kept aside; outputs
keep their format; bad arguments exit non-zero with a one-line message."""

import json

import numpy as np
import pytest

import sae
from test_cli_train import SYNTH, expect_error, ok

TOPK = ["--arch", "topk", "--k", 4, "--d-sae", 32]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A TopK SAE trained on 1024 rows of width 16 (a safetensors file), in SAELens and in
    sparsify layout."""
    rng = np.random.default_rng(3)
    dirs = rng.normal(size=(24, 16))
    codes = rng.random((1024, 24)) * (rng.random((1024, 24)) < 0.15)
    x = (codes @ dirs + 0.5).astype(np.float32)
    root = tmp_path_factory.mktemp("finetune")
    sae.save_file({"x": x}, root / "x.safetensors")
    common = ["--data", root / "x.safetensors", *TOPK, "--steps", 40, "--batch", 64,
              "--threads", 1]
    ok("train", *common, "--out", root / "saelens")
    ok("train", *common, "--preset", "sparsify", "--format", "sparsify", "--out",
       root / "sparsify")
    return x, root


def coherence(d):
    w = np.array(d.W_dec, np.float64)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    c = np.abs(w @ w.T)[np.tril_indices(w.shape[0], -1)]
    return c.max(), c.mean()


def fvu(d, x):
    x64 = x.astype(np.float64)
    err = ((x64 - d.decode(d.encode(x)).astype(np.float64)) ** 2).sum()
    return err / ((x64 - x64.mean(axis=0)) ** 2).sum()


def test_finetune_report_matches_numpy(tmp_path, base):
    x, root = base
    out = tmp_path / "tuned"
    r = ok("finetune", root / "saelens", "--data", root / "x.safetensors", "--ortho", 0.05,
           "--ortho-subset", 8, "--steps", 30, "--batch", 64, "--lr", "1e-3",
           "--eval-rows", 256, "--threads", 1, "--out", out, "--json")
    report = json.loads(r.stdout)
    assert (report["steps"], report["ortho_lambda"], report["ortho_subset"]) == (30, 0.05, 8)
    assert report["format"] == "saelens" and report["eval_rows"] == 256
    held = x[:256]  # the first rows are kept aside
    for key, path in (("before", root / "saelens"), ("after", out)):
        with sae.load(path, threads=1) as d:
            assert (d.arch, d.k, d.d_sae) == ("topk", 4, 32)
            max_cos, mean_cos = coherence(d)
            got = report[key]
            assert got["max_cos"] == pytest.approx(max_cos, rel=1e-5)
            assert got["mean_cos"] == pytest.approx(mean_cos, rel=1e-5)
            assert got["fvu"] == pytest.approx(fvu(d, held), rel=1e-5)
    assert report["last_step"]["ortho"] > 0
    with sae.load(root / "saelens") as a, sae.load(out) as b:
        assert not np.array_equal(np.array(a.W_dec), np.array(b.W_dec))
        assert b.relu_before_topk == a.relu_before_topk  # its conventions are kept
    # The same run again: the same bytes (seeded subsets). As text: a before/after table.
    again = tmp_path / "again"
    r = ok("finetune", root / "saelens", "--data", root / "x.safetensors", "--ortho", 0.05,
           "--ortho-subset", 8, "--steps", 30, "--batch", 64, "--lr", "1e-3",
           "--eval-rows", 256, "--threads", 1, "--out", again)
    assert ((again / "sae_weights.safetensors").read_bytes()
            == (out / "sae_weights.safetensors").read_bytes())
    assert "fine-tuned %s (topk, d_in 16, d_sae 32, k 4) for 30 steps" % (root / "saelens") \
        in r.stdout
    assert "max |cos|" in r.stdout and "FVU" in r.stdout and "wrote %s (saelens)" % again \
        in r.stdout


def test_finetune_keeps_the_format_and_trains_synthetic(tmp_path, base):
    _, root = base
    out = tmp_path / "tuned"
    r = ok("finetune", root / "sparsify", *SYNTH, "--steps", 20, "--batch", 32,
           "--eval-rows", 128, "--threads", 1, "--out", out)
    assert "wrote %s (sparsify)" % out in r.stdout
    assert "orthogonality penalty 0.0001 over subsets of 32 features" in r.stdout  # defaults
    assert (out / "sae.safetensors").exists()
    with sae.load(out) as d:
        assert d.arch == "topk" and d.relu_before_topk
    # --format overrides; --ortho 0 switches the penalty off
    r = ok("finetune", root / "sparsify", *SYNTH, "--steps", 5, "--batch", 32, "--ortho", 0,
           "--eval-rows", 128, "--threads", 1, "--format", "saelens", "--out", tmp_path / "s",
           "--json")
    report = json.loads(r.stdout)
    assert report["format"] == "saelens" and report["last_step"]["ortho"] == 0
    assert report["ortho_lambda"] == 0


def test_train_with_ortho(tmp_path, base):
    common = [*SYNTH, *TOPK, "--steps", 12, "--batch", 32, "--threads", 1, "--ortho", 0.1,
              "--ortho-subset", 8]
    r = ok("train", *common, "--out", tmp_path / "a")
    assert "ortho" in r.stdout.splitlines()[1]
    ok("train", *common, "--out", tmp_path / "b")
    assert ((tmp_path / "a" / "sae_weights.safetensors").read_bytes()
            == (tmp_path / "b" / "sae_weights.safetensors").read_bytes())
    plain = tmp_path / "plain"
    ok("train", *SYNTH, *TOPK, "--steps", 12, "--batch", 32, "--threads", 1, "--out", plain)
    assert ((tmp_path / "a" / "sae_weights.safetensors").read_bytes()
            != (plain / "sae_weights.safetensors").read_bytes())
    # A checkpoint remembers the penalty: resuming with another one is refused.
    ckpt = tmp_path / "run.ckpt"
    ok("train", *common, "--checkpoint", ckpt, "--out", tmp_path / "c")
    with sae.Trainer.load_checkpoint(ckpt) as t:
        assert t.options()["ortho_lambda"] == 0.1 and t.options()["ortho_subset"] == 8
    base_args = [*SYNTH, *TOPK, "--steps", 12, "--batch", 32, "--threads", 1,
                 "--checkpoint", ckpt, "--resume", "--out", tmp_path / "d"]
    expect_error(["train", *base_args, "--ortho", 0.2], "--ortho 0.10000000000000001")
    expect_error(["train", *base_args, "--ortho", 0.1, "--ortho-subset", 0],
                 "--ortho-subset 8, this command has --ortho-subset 0")


def test_bad_arguments(tmp_path, base):
    x, root = base
    data = ["--data", root / "x.safetensors"]
    expect_error(["finetune", root / "saelens", *data], "missing --out", 2)
    expect_error(["finetune", *data, "--out", tmp_path / "o"], "missing PATH", 2)
    expect_error(["finetune", root / "saelens", *data, "--ortho", -1, "--out", tmp_path / "o"],
                 "--ortho needs a number >= 0", 2)
    expect_error(["train", *SYNTH, *TOPK, "--steps", 4, "--ortho-subset", 8, "--out",
                  tmp_path / "o"], "--ortho-subset needs --ortho", 2)
    expect_error(["finetune", root / "saelens", *SYNTH[:2], "--out", tmp_path / "o"],
                 "rows have width 256; the SAE's d_in is 16")
    expect_error(["finetune", root / "saelens", *data, "--eval-rows", 4096, "--out",
                  tmp_path / "o"], "fewer than --eval-rows 4096")
    expect_error(["finetune", tmp_path / "missing", *data, "--out", tmp_path / "o"], "missing")
    assert not (tmp_path / "o").exists()


def test_finetune_unit_norm(tmp_path, base):
    """--unit-norm keeps every decoder row at norm 1 under a strong penalty, which without it
    shrinks the rows; the report says which."""
    _, root = base
    args = ["finetune", root / "saelens", "--data", root / "x.safetensors", "--ortho", 0.5,
            "--ortho-subset", 0, "--steps", 30, "--batch", 64, "--lr", "1e-2",
            "--eval-rows", 256, "--threads", 1, "--json"]
    norms = {}
    for flag in ([], ["--unit-norm"]):
        out = tmp_path / ("unit" if flag else "free")
        report = json.loads(ok(*args, *flag, "--out", out).stdout)
        assert report["unit_norm"] == bool(flag) and report["last_step"]["ortho"] > 0
        with sae.load(out) as d:
            norms[bool(flag)] = np.linalg.norm(np.array(d.W_dec, np.float64), axis=1)
    assert norms[True] == pytest.approx(1, abs=1e-5)
    assert norms[False].min() < 0.99
    r = ok(*args[:-1], "--unit-norm", "--out", tmp_path / "text")
    assert "over subsets of 32 features, unit-norm decoder rows" in r.stdout
