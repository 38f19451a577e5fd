"""`sae demo` ($SAE_CLI): the table parses, its numbers are in range, the summary line comes
from them, a seed fixes the result, and bad options are usage errors."""

import re

import pytest
from _cli import run

COLUMNS = ["MMCS(true)", "MMCS(learned)", "MCC", "FVU", "L0", "dead", "tokens/s"]
FEATURES = 512


def demo(*args):
    return run("demo", *args, timeout=300)


def parse(stdout):
    """The table as {architecture: {column: value}} and the summary (the last line)."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("architecture"))
    assert lines[head].split()[1:] == COLUMNS, lines[head]
    table = {}
    i = head + 1
    while lines[i].strip():
        name, *values = lines[i].split()
        assert len(values) == len(COLUMNS), lines[i]
        table[name] = dict(zip(COLUMNS, map(float, values)))
        i += 1
    rest = [line for line in lines[i:] if line.strip()]
    assert len(rest) >= 2 and rest[0].startswith("MMCS(true): "), rest  # legend, then summary
    return table, rest[-1]


@pytest.fixture(scope="module")
def quick():
    r = demo("--quick", "--threads", 1)
    assert r.returncode == 0, r.stderr
    return r


def test_table_is_sane(quick):
    table, _ = parse(quick.stdout)
    assert set(table) >= {"standard", "topk"}
    for name, row in table.items():
        for col in ("MMCS(true)", "MMCS(learned)", "MCC"):
            assert 0.0 < row[col] <= 1.0, (name, col, row[col])
        # 200 steps learn something, but not everything: the metrics are measured, not constants
        assert 0.0 < row["FVU"] < 1.0, (name, row)
        assert 0.0 < row["L0"] < FEATURES, (name, row)
        assert 0 <= row["dead"] <= FEATURES and row["dead"] == int(row["dead"]), (name, row)
        assert row["tokens/s"] > 0, (name, row)
    assert table["topk"]["L0"] <= 5.0 + 1e-9  # k = 5


def test_summary_comes_from_the_table(quick):
    table, summary = parse(quick.stdout)
    ranked = sorted(table, key=lambda a: -table[a]["MMCS(true)"])
    listed = re.findall(r"([a-z]+) (\d\.\d{3})", summary)
    assert [name for name, _ in listed[:len(ranked)]] == ranked, summary
    for name, value in listed[:len(ranked)]:
        assert abs(float(value) - table[name]["MMCS(true)"]) <= 5e-4, (name, summary)
    recovered = table[ranked[0]]["MMCS(true)"] >= 0.95
    assert summary.startswith(ranked[0] if recovered else "No architecture"), summary


def test_progress_on_stderr(quick):
    steps = [line for line in quick.stderr.splitlines() if line.startswith("step")]
    assert steps and steps[-1].startswith("step 200/200"), quick.stderr
    assert all("standard: fvu" in line and "topk: fvu" in line for line in steps)


def test_seed_fixes_the_result():
    def columns(seed):
        r = demo("--quick", "--steps", 30, "--seed", seed, "--threads", 1)
        assert r.returncode == 0, r.stderr
        table, _ = parse(r.stdout)
        return {a: {c: v for c, v in row.items() if c != "tokens/s"} for a, row in table.items()}

    first = columns(7)
    assert columns(7) == first
    assert columns(8) != first


@pytest.mark.parametrize("args", [["--steps", "0"], ["--threads", "x"], ["--bogus"], ["extra"]])
def test_usage_errors(args):
    r = demo(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("sae: demo: "), r.stderr
