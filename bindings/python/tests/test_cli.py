"""The `sae` command-line tool ($SAE_CLI): every native oracle case through `sae encode`, and a
one-line error with a non-zero exit (never a signal) for every class of bad input."""

import json
import shutil

import numpy as np
import pytest

import sae
from _shared import native_cases
from test_oracle_native import Case
from _cli import run



def k_args(case):
    return ["--k", case.load_k] if case.load_k else []


@pytest.fixture(params=native_cases())
def case(request, native_dir):
    return Case(request.param)


def test_encode_dense_matches_oracle(case, tmp_path):
    out = tmp_path / "out.safetensors"
    r = run("encode", case.load_path, "--input", case.dir / "input.safetensors", "--output", out,
            *k_args(case))
    assert r.returncode == 0, r.stderr
    got = sae.load_file(out)
    for name in ("features", "reconstruction", "pre_activation"):
        if name in case.expected:
            np.testing.assert_allclose(got[name], case.expected[name], atol=1e-5, rtol=1e-5,
                                       err_msg=name)


def test_encode_sparse_matches_oracle(case, tmp_path):
    out = tmp_path / "out.safetensors"
    r = run("encode", case.load_path, "--input", case.dir / "input.safetensors", "--output", out,
            "--sparse", "--batch", 5, *k_args(case))
    assert r.returncode == 0, r.stderr
    got = sae.load_file(out)
    want = case.expected["features"]
    dense = sae.SparseCodes(got["indices"], got["values"], got["offsets"]).to_dense(want.shape[1])
    np.testing.assert_allclose(dense, want, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got["reconstruction"], case.expected["reconstruction"],
                               atol=1e-5, rtol=1e-5)


def test_info_json_and_convert(native_dir, tmp_path):
    src = native_dir / "dl_gated_d32_s128_b16"
    r = run("info", src, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["architecture"] == "gated" and info["d_in"] == 32 and info["d_sae"] == 128
    dst = tmp_path / "as_saelens"
    r = run("convert", src, dst, "--format", "saelens")
    assert r.returncode == 0, r.stderr
    with sae.load(src) as a, sae.load(dst) as b:
        x = sae.load_file(src / "input.safetensors")["x"]
        np.testing.assert_allclose(b.encode(x), a.encode(x), atol=1e-6, rtol=1e-6)


def expect_error(args, needle):
    r = run(*args)
    assert r.returncode == 1, (r.returncode, r.stderr)  # an error, not a signal (negative)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sae: "), r.stderr
    assert needle in lines[0], lines[0]


def test_bad_inputs(native_dir, tmp_path):
    good = native_dir / "saelens_standard_d32_s128_b16"
    out = tmp_path / "o.safetensors"
    wide = tmp_path / "wide.safetensors"
    sae.save_file({"x": np.zeros((4, 31), np.float32)}, wide)
    expect_error(["encode", good, "--input", wide, "--output", out], "d_in = 32")
    ints = tmp_path / "int.safetensors"
    sae.save_file({"x": np.zeros((4, 32), np.int64)}, ints)
    expect_error(["encode", good, "--input", ints, "--output", out], "I64")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((good / "input.safetensors").read_bytes()[:900])
    expect_error(["encode", good, "--input", truncated, "--output", out], "truncated")
    expect_error(["encode", good, "--input", tmp_path / "missing.safetensors", "--output", out],
                 "missing.safetensors")
    expect_error(["info", tmp_path / "nonexistent"], "nonexistent")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(["info", empty], "no SAE weights")
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    data = (broken / "sae_weights.safetensors").read_bytes()
    (broken / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])
    expect_error(["info", broken], "sae_weights.safetensors")
    cfg = json.loads((broken / "cfg.json").read_text())
    shutil.copy(good / "sae_weights.safetensors", broken / "sae_weights.safetensors")
    cfg["d_in"] = 31
    (broken / "cfg.json").write_text(json.dumps(cfg))
    expect_error(["info", broken], "W_enc has shape [32, 128], expected [31, 128]")
    cfg["d_in"] = float("nan")
    (broken / "cfg.json").write_text(json.dumps(cfg).replace("NaN", "1e999"))
    expect_error(["info", broken], "d_in")
    icm = native_dir / "icm_topk_k8_d32_s128_b2x8" / "sae_state_23453.pt"
    expect_error(["info", icm], "--k")
    torn = tmp_path / "torn.pt"
    torn.write_bytes(icm.read_bytes()[:1000])
    expect_error(["info", torn, "--k", "8"], "torn.pt")


def test_usage_errors_exit_2():
    for args in ([], ["bogus"], ["encode"], ["info", "--k", "abc", "x"]):
        assert run(*args).returncode == 2, args
    assert run("encode", "--help").returncode == 0
