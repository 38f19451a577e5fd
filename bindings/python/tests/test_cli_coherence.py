"""`sae coherence`: its JSON equals sae.Ortho's statistics (all features and a seeded subset),
the text output carries the same numbers, and bad input is a one-line error."""

import json

import numpy as np
import pytest

import sae
from test_cli import expect_error, run


@pytest.fixture
def case_dir(native_dir):
    return native_dir / "saelens_standard_d32_s128_b16"


def check_against_ortho(got, W, subset):
    o = sae.Ortho(W)
    stats, sp = o.coherence(subset), o.spectrum(subset)
    assert got["n"] == stats["n"] and got["d_in"] == W.shape[1] and got["d_sae"] == W.shape[0]
    for name in ("max_cos", "mean_cos", "sum_cos", "mean_max_cos", "frame_potential",
                 "frame_potential_bound", "welch_mean_norm", "welch_bound", "welch_mean_raw"):
        assert got[name] == pytest.approx(stats[name], rel=1e-12), name
    assert (got["max_pair_i"], got["max_pair_j"]) == (stats["max_i"], stats["max_j"])
    assert got["max_cos_histogram"]["counts"] == stats["max_cos_hist"].tolist()
    assert got["max_cos_histogram"]["bin_width"] == 0.05
    spec = got["spectrum"]
    np.testing.assert_array_equal(np.float32(spec["singular_values"]), sp["singular_values"])
    assert spec["effective_rank"] == pytest.approx(sp["effective_rank"], rel=1e-12)
    assert spec["participation_ratio"] == pytest.approx(sp["participation_ratio"], rel=1e-12)


def test_json_all_features(case_dir):
    r = run("coherence", case_dir, "--json", "--threads", 1)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    with sae.load(case_dir) as d:
        check_against_ortho(got, np.array(d.W_dec), None)
    assert "seed" not in got and got["n"] == 128


def test_json_subset(case_dir):
    r = run("coherence", case_dir, "--subset", 40, "--seed", 5, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["seed"] == 5
    with sae.load(case_dir) as d:
        check_against_ortho(got, np.array(d.W_dec), sae.Ortho.subset(40, d.d_sae, seed=5))


def test_text(case_dir):
    r = run("coherence", case_dir, "--subset", 1000)  # more than F: all of them
    assert r.returncode == 0, r.stderr
    with sae.load(case_dir) as d:
        stats = sae.Ortho(d).coherence()
    assert "128 decoder directions of length 32" in r.stdout
    assert "max |cos|                    %.6f" % stats["max_cos"] in r.stdout
    assert "mean |cos|                   %.6f  (over 8128 pairs)" % stats["mean_cos"] in r.stdout
    assert "effective rank" in r.stdout and "[0.95, 1.00]" in r.stdout


def test_errors(case_dir, tmp_path):
    expect_error(["coherence", tmp_path / "missing"], "missing")
    for args in (["--subset", 1], ["--subset", "x"], ["--seed", -1], ["--bogus"]):
        r = run("coherence", case_dir, *args)
        assert r.returncode == 2 and r.stderr.startswith("sae: coherence: "), (args, r.stderr)
    r = run("coherence")
    assert r.returncode == 2 and "missing PATH" in r.stderr
    r = run("coherence", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: sae coherence PATH")
