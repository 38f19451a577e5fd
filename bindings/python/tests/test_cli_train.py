"""`sae train` and `sae eval` ($SAE_CLI): tiny SAEs trained on synthetic data and on shard files
load back; `eval --json` agrees with numpy on the same rows; bad arguments exit non-zero with a
one-line message. Every run is a fraction of a second (one thread, small sizes)."""

import json

import numpy as np
import pytest

import sae
from _cli import ok, run

SYNTH = ["--data", "synthetic", "--synth-d", "16", "--synth-features", "32"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """2048 rows of width 16 (sparse non-negative mixtures of 24 directions plus an offset), as a
    safetensors file and as a directory with a safetensors and a raw .f32 shard."""
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(24, 16))
    codes = rng.random((2048, 24)) * (rng.random((2048, 24)) < 0.15)
    x = (codes @ dirs + 0.5).astype(np.float32)
    base = tmp_path_factory.mktemp("rows")
    sae.save_file({"x": x}, base / "all.safetensors")
    shards = base / "shards"
    shards.mkdir()
    sae.save_file({"acts": x[:1024].reshape(32, 32, 16)}, shards / "a.safetensors")
    x[1024:].tofile(shards / "b.f32")
    return x, base / "all.safetensors", shards


def numpy_metrics(dict_dir, x):
    with sae.load(dict_dir, threads=1) as d:
        f = d.encode(x)
        x_hat = d.decode(f)
    x64, xh = x.astype(np.float64), x_hat.astype(np.float64)
    err = ((x64 - xh) ** 2).sum()
    fired = (f != 0).sum(axis=0)
    return {
        "mse": err / len(x),
        "fvu": err / ((x64 - x64.mean(axis=0)) ** 2).sum(),
        "l0": (f != 0).sum() / len(x),
        "relative_reconstruction_bias": (xh ** 2).sum() / (x64 * xh).sum(),
        "dead": int((fired == 0).sum()),
        "dense": int((fired / len(x) > 0.1).sum()),
    }


def test_train_synthetic_topk(tmp_path):
    out = tmp_path / "topk"
    r = ok("train", *SYNTH, "--arch", "topk", "--k", 4, "--d-sae", 32, "--steps", 60,
           "--batch", 64, "--threads", 1, "--out", out)
    assert "trained a topk SAE (d_in 16, d_sae 32, k 4) for 60 steps" in r.stdout
    # Not a terminal: plain progress lines on stderr, the last one at 100%.
    assert "60/60 steps (100%)" in r.stderr.splitlines()[-1]
    with sae.load(out) as d:
        assert (d.arch, d.d_in, d.d_sae, d.k) == ("topk", 16, 32, 4)
    # The same run again gives the same bytes (seeded data and weights).
    again = tmp_path / "again"
    ok("train", *SYNTH, "--arch", "topk", "--k", 4, "--d-sae", 32, "--steps", 60,
       "--batch", 64, "--threads", 1, "--out", again)
    a = sae.load_file(out / "sae_weights.safetensors")
    b = sae.load_file(again / "sae_weights.safetensors")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Eval on the generator's rows, as text.
    r = ok("eval", out, *SYNTH, "--rows", 3000, "--threads", 1)
    assert "3000 rows of synthetic data" in r.stdout and "FVU" in r.stdout
    assert "never fired" in r.stdout


def test_train_on_shard_and_eval_matches_numpy(tmp_path, rows):
    x, file, _ = rows
    out = tmp_path / "std"
    ok("train", "--data", file, "--arch", "standard", "--d-sae", 48, "--steps", 40,
       "--batch", 128, "--lr", "1e-3", "--l1", "0.5", "--warmup", 0, "--threads", 1,
       "--shuffle", 512, "--out", out)
    with sae.load(out) as d:
        assert (d.arch, d.d_in, d.d_sae) == ("standard", 16, 48)
    r = ok("eval", out, "--data", file, "--json", "--batch", 300, "--threads", 1)
    got = json.loads(r.stdout)
    want = numpy_metrics(out, x)
    assert got["rows"] == len(x) and got["d_sae"] == 48
    for key in ("mse", "fvu", "relative_reconstruction_bias"):
        assert got[key] == pytest.approx(want[key], rel=1e-4), key
    assert got["explained_variance"] == pytest.approx(1 - want["fvu"], rel=1e-4, abs=1e-6)
    assert got["l0"] == pytest.approx(want["l0"], abs=1e-9)
    assert (got["dead"], got["dense"]) == (want["dead"], want["dense"])
    hist = got["density_histogram"]
    assert len(hist["counts"]) == 20 and hist["log10_min"] == -10 and hist["bin_width"] == 0.5
    assert sum(hist["counts"]) == 48 - got["dead"] and hist["never_fired"] == got["dead"]
    # --rows evaluates the first rows only.
    got = json.loads(ok("eval", out, "--data", file, "--json", "--rows", 500).stdout)
    assert got["rows"] == 500
    assert got["fvu"] == pytest.approx(numpy_metrics(out, x[:500])["fvu"], rel=1e-4)


@pytest.mark.parametrize("arch, extra, saved_as", [
    ("batchtopk", ("--k", 4), "jumprelu"),
    ("jumprelu", (), "jumprelu"),
    ("gated", ("--l1", "0.1"), "gated"),
])
def test_train_every_architecture(tmp_path, rows, arch, extra, saved_as):
    x, file, _ = rows
    out = tmp_path / arch
    ok("train", "--data", file, "--arch", arch, *extra, "--d-sae", 32, "--steps", 30,
       "--batch", 128, "--warmup", 0, "--threads", 1, "--out", out)
    with sae.load(out) as d:
        assert (d.arch, d.d_in, d.d_sae) == (saved_as, 16, 32)
    got = json.loads(ok("eval", out, "--data", file, "--json", "--threads", 1).stdout)
    assert got["fvu"] == pytest.approx(numpy_metrics(out, x)["fvu"], rel=1e-4)


def test_train_directory_no_repeat_and_sparsify(tmp_path, rows):
    x, _, shards = rows
    out = tmp_path / "sp"
    # 2048 rows in two shards (safetensors [32, 32, 16] + raw .f32), batches of 100: 20 full
    # steps, then the data runs out.
    r = ok("train", "--data", shards, "--raw-d", 16, "--arch", "topk", "--k", 3, "--d-sae", 40,
           "--preset", "sparsify", "--format", "sparsify", "--steps", 1000, "--batch", 100,
           "--threads", 1, "--no-repeat", "--out", out)
    assert "the data ran out after 20 of 1000 steps" in r.stdout, r.stdout
    assert (out / "sae.safetensors").exists()
    with sae.load(out) as d:
        assert (d.arch, d.k, d.relu_before_topk) == ("topk", 3, True)
    # Eval reads raw files with the SAE's d_in when --raw-d is not given.
    got = json.loads(ok("eval", out, "--data", shards, "--json").stdout)
    assert got["rows"] == 2048 and got["format"] == "sparsify"
    assert got["fvu"] == pytest.approx(numpy_metrics(out, x)["fvu"], rel=1e-4)


def expect_error(args, needle, code=1):
    r = run(*args)
    assert r.returncode == code, (args, r.returncode, r.stderr)
    assert r.stderr.startswith("sae: "), r.stderr
    if code == 1:  # a failure is one line; a usage error adds the synopsis
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr.splitlines()[0], r.stderr


def test_bad_arguments(tmp_path, rows):
    x, file, shards = rows
    out = tmp_path / "o"
    base = ["--arch", "standard", "--d-sae", 8, "--steps", 5, "--out", out]
    expect_error(["train", *base], "missing --data", 2)
    expect_error(["train", "--data", file, "--arch", "relu", "--d-sae", 8, "--steps", 5,
                  "--out", out], "--arch must be standard, topk, batchtopk, jumprelu or gated", 2)
    expect_error(["train", "--data", file, "--arch", "topk", "--d-sae", 8, "--steps", 5,
                  "--out", out], "needs --k", 2)
    expect_error(["train", "--data", file, "--arch", "topk", "--k", 2, "--l1", 1, "--d-sae", 8,
                  "--steps", 5, "--out", out], "--l1 is not for --arch topk", 2)
    expect_error(["train", "--data", file, *base, "--format", "sparsify"], "--format sparsify", 2)
    expect_error(["train", "--data", file, *base, "--synth-d", 8], "need --data synthetic", 2)
    expect_error(["train", "--data", file, *base, "--steps", "many"], "--steps needs", 2)
    expect_error(["train", "--data", file, *base, "--bogus"], "unknown option '--bogus'", 2)
    expect_error(["train", "--data", tmp_path / "missing.safetensors", *base],
                 "missing.safetensors")
    raw = tmp_path / "r.f32"
    x[:10].tofile(raw)
    expect_error(["train", "--data", raw, *base], "--raw-d")
    expect_error(["train", "--data", file, *base, "--batch", 4096, "--no-repeat"],
                 "fewer rows than one batch of 4096")
    (tmp_path / "afile").write_text("")
    expect_error(["train", "--data", file, *base[:-1], tmp_path / "afile"], "not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(["train", "--data", empty, *base], "no .safetensors, .f32 or .bin files")
    assert not out.exists()  # nothing was written by any failed run

    ok("train", "--data", file, *base, "--batch", 64, "--threads", 1)
    expect_error(["eval", "--data", file], "missing PATH", 2)
    expect_error(["eval", out, "--data", file, "--rows", 0], "--rows needs", 2)
    expect_error(["eval", out, "--data", file, "--dense", 2], "--dense needs", 2)
    expect_error(["eval", out, "--data", "synthetic", "--synth-d", 8], "d_in is 16")
    narrow = tmp_path / "narrow.safetensors"
    sae.save_file({"x": np.zeros((4, 8), np.float32)}, narrow)
    expect_error(["eval", out, "--data", narrow], "d_in is 16")
    nan = tmp_path / "nan.safetensors"
    bad = x[:20].copy()
    bad[7, 3] = np.nan
    sae.save_file({"x": bad}, nan)
    expect_error(["eval", out, "--data", nan], "row 7, column 3")
    assert run("train", "--help").returncode == 0
    assert run("eval", "--help").returncode == 0


# ---- checkpoints and --resume ------------------------------------------------------------------

def saved_bytes(out):
    return (out / "sae_weights.safetensors").read_bytes()


@pytest.mark.parametrize("data", ["synthetic", "shuffled_files"])
def test_resume_equals_an_uninterrupted_run(tmp_path, rows, data):
    x, _, shards = rows
    if data == "synthetic":
        common = [*SYNTH, "--arch", "topk", "--k", 4, "--d-sae", 32, "--batch", 64]
    else:  # the rows already trained on are read past through the seeded shuffle buffer
        common = ["--data", shards, "--raw-d", 16, "--shuffle", 300, "--seed", 5, "--arch",
                  "standard", "--d-sae", 24, "--preset", "dictionary_learning", "--warmup", 4,
                  "--l1", "0.3", "--batch", 100]
    common += ["--threads", 1]
    ok("train", *common, "--steps", 20, "--out", tmp_path / "straight")
    ckpt = tmp_path / "run.ckpt"
    r = ok("train", *common, "--steps", 8, "--checkpoint", ckpt, "--checkpoint-every", 3,
           "--out", tmp_path / "first")
    assert "wrote the checkpoint %s (step 8)" % ckpt in r.stdout
    with sae.Trainer.load_checkpoint(ckpt) as t:  # the CLI's checkpoints load in Python
        assert t.steps == 8 and t.d_in == 16
    r = ok("train", *common, "--steps", 20, "--checkpoint", ckpt, "--resume",
           "--out", tmp_path / "resumed")
    assert "resumed from %s at step 8" % ckpt in r.stdout and "for 12 steps" in r.stdout
    assert saved_bytes(tmp_path / "resumed") == saved_bytes(tmp_path / "straight")
    assert saved_bytes(tmp_path / "first") != saved_bytes(tmp_path / "straight")
    # Resuming a finished run trains nothing and saves the same SAE again.
    r = ok("train", *common, "--steps", 20, "--checkpoint", ckpt, "--resume",
           "--out", tmp_path / "again")
    assert "nothing to train" in r.stdout
    assert saved_bytes(tmp_path / "again") == saved_bytes(tmp_path / "straight")


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    common = [*SYNTH, "--arch", "topk", "--k", 4, "--d-sae", 32, "--batch", 64, "--threads", 1,
              "--steps", 6]
    ok("train", *common, "--out", tmp_path / "plain")
    r = ok("train", *common, "--checkpoint", tmp_path / "new.ckpt", "--resume",
           "--out", tmp_path / "fresh")
    assert "resumed" not in r.stdout and (tmp_path / "new.ckpt").exists()
    assert saved_bytes(tmp_path / "fresh") == saved_bytes(tmp_path / "plain")


def test_checkpoint_errors(tmp_path, rows):
    _, file, _ = rows
    ckpt = tmp_path / "run.ckpt"
    base = [*SYNTH, "--batch", 32, "--threads", 1, "--out", tmp_path / "o"]
    topk = ["--arch", "topk", "--k", 4, "--d-sae", 32]
    ok("train", *base, *topk, "--steps", 4, "--checkpoint", ckpt)
    resume = ["--checkpoint", ckpt, "--resume"]
    expect_error(["train", *base, *topk, "--steps", 8, "--checkpoint", ckpt],
                 "exists: give --resume")
    expect_error(["train", *base, "--arch", "topk", "--k", 4, "--d-sae", 64, "--steps", 8,
                  *resume], "made with --d-sae 32, this command has --d-sae 64")
    expect_error(["train", *base, "--arch", "topk", "--k", 3, "--d-sae", 32, "--steps", 8,
                  *resume], "--k 4, this command has --k 3")
    expect_error(["train", *base, "--arch", "standard", "--d-sae", 32, "--steps", 8, *resume],
                 "--arch topk, this command has --arch standard")
    expect_error(["train", *base, *topk, "--steps", 8, "--seed", 1, *resume], "--seed 0")
    expect_error(["train", *base, *topk, "--steps", 8, "--lr", "1e-3", *resume], "--lr")
    narrow = tmp_path / "narrow.safetensors"
    sae.save_file({"x": np.zeros((64, 8), np.float32)}, narrow)
    expect_error(["train", "--data", narrow, "--batch", 32, "--out", tmp_path / "o", *topk,
                  "--steps", 8, *resume], "rows of width 16, this command has rows of width 8")
    # sparsify decays the learning rate to 0 at --steps: its runs cannot change length.
    sparsify = tmp_path / "sparsify.ckpt"
    ok("train", *base, *topk, "--preset", "sparsify", "--warmup", 0, "--steps", 4,
       "--checkpoint", sparsify)
    expect_error(["train", *base, *topk, "--preset", "sparsify", "--warmup", 0, "--steps", 8,
                  "--checkpoint", sparsify, "--resume"], "resume it with --steps 4")
    # Corrupt or foreign files: a clear error and no output.
    data = ckpt.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[:len(data) // 3])
    expect_error(["train", *base, *topk, "--steps", 8, "--checkpoint", tmp_path / "cut.ckpt",
                  "--resume", "--out", tmp_path / "none"], "cannot resume from this checkpoint")
    expect_error(["train", *base, *topk, "--steps", 8, "--checkpoint", file, "--resume",
                  "--out", tmp_path / "none"], "not a libsae trainer checkpoint")
    assert not (tmp_path / "none").exists()
    expect_error(["train", *base, *topk, "--steps", 8, "--resume"], "--resume needs --checkpoint",
                 2)
    expect_error(["train", *base, *topk, "--steps", 8, "--checkpoint-every", 2],
                 "--checkpoint-every needs --checkpoint", 2)
    expect_error(["train", *base, *topk, "--steps", 8, "--checkpoint", ckpt,
                  "--checkpoint-every", 0], "--checkpoint-every needs a positive integer", 2)
    expect_error(["train", *base, *topk, "--steps", 8, "--checkpoint",
                  tmp_path / "no" / "dir" / "c"], "cannot write the checkpoint into")
