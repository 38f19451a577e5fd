#!/usr/bin/python3
"""Encode throughput, libsae against PyTorch, in one run; prints one JSON object.

Runs bench_encode (libsae: ReLU dense encode, TopK k=32 sparse encode and the plain sgemm of the
same shape, 2 threads) and then ../shared/peers/torch_encode.py with 2 threads, and compares
tokens/s per batch size. Thresholds (booleans in the output):
  batch 4096: libsae >= 1.5x PyTorch, and >= 0.9 of the sgemm rate;
  batch 1:    libsae >= 3.5x PyTorch.

usage: /usr/bin/python3 bench/encode.py [--bin PATH/bench_encode] [--torch-script PATH]
                                        [--threads 2] [--skip-torch] [-- bench_encode args...]
bench_encode is looked for in $BENCH_ENCODE, then build*/bench/ under the repository and beside it.
Torch comes from Debian (python3-torch); when /usr/bin/python3 cannot import it, this script
installs it with apt-get (as root). Exit status: 0 when every run worked (whatever the
thresholds say), 1 otherwise.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

from bench_util import PYTHON, REPO, ensure_torch, find_bench_binary, parse_json_object

BATCHES = (1, 16, 64, 256, 4096)
# (name in the torch script, name in the report, field of bench_encode's JSON)
ARCHS = (("relu", "relu_dense", "relu_dense_tok_s"), ("topk", "topk_sparse", "topk_sparse_tok_s"))

# "B=   16 relu:    1.234 ms/call      12966 tok/s   39.1 GFLOP/s"
TORCH_LINE = re.compile(r"B\s*=\s*(\d+)\s+(\w+)\s*:\s*([0-9.eE+-]+)\s*ms/call"
                        r"(?:\s+([0-9.eE+-]+)\s*tok/s)?")


def parse_torch(text):
    """{(batch, arch): tokens/s} from the script's lines; the rest (comments, warnings) ignored."""
    rates, threads = {}, None
    for line in text.splitlines():
        m = re.search(r"torch threads\s*=\s*(\d+)", line)
        if m:
            threads = int(m.group(1))
            continue
        m = TORCH_LINE.search(line)
        if not m:
            continue
        batch, arch = int(m.group(1)), m.group(2).lower()
        try:
            ms = float(m.group(3))
            rate = batch / (ms * 1e-3) if ms > 0 else float(m.group(4))
        except (TypeError, ValueError):
            continue
        rates[(batch, arch)] = rate
    return rates, threads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="path of bench_encode")
    ap.add_argument("--torch-script", default=os.path.join(os.path.dirname(REPO), "shared",
                                                           "peers", "torch_encode.py"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-torch", action="store_true", help="only run libsae (for a quick check)")
    ap.add_argument("bench_args", nargs="*", help="extra arguments for bench_encode (after --)")
    args = ap.parse_args()

    t0 = time.time()
    errors = []
    binary = find_bench_binary("bench_encode", args.bin, "BENCH_ENCODE")
    r = subprocess.run([binary, "--threads", str(args.threads)] + args.bench_args,
                       capture_output=True, text=True)
    try:
        c = parse_json_object(r.stdout)
    except ValueError as e:
        c = {"results": []}
        errors.append("bench_encode failed (exit %d): %s %s" % (r.returncode, e,
                                                               r.stderr.strip()[-500:]))
    if r.returncode != 0 and not errors:
        errors.append("bench_encode exited %d: %s" % (r.returncode, r.stderr.strip()[-500:]))

    torch_rates, torch_threads, torch_version = {}, None, None
    if not args.skip_torch:
        torch_version = ensure_torch(errors)
        if torch_version:
            tr = subprocess.run([PYTHON, args.torch_script, str(args.threads)],
                                capture_output=True, text=True)
            torch_rates, torch_threads = parse_torch(tr.stdout)
            if tr.returncode != 0:
                errors.append("torch_encode.py exited %d: %s" % (tr.returncode,
                                                                tr.stderr.strip()[-500:]))
            missing = ["B=%d %s" % (b, a) for b in BATCHES for a, _, _ in ARCHS
                       if (b, a) not in torch_rates]
            if missing:
                errors.append("torch_encode.py printed no result for " + ", ".join(missing))

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    results = {name: {} for _, name, _ in ARCHS}
    sgemm = {}
    by_batch = {row["batch"]: row for row in c.get("results", [])}
    for batch, row in sorted(by_batch.items()):
        sgemm[str(batch)] = {"tok_s": round(row["sgemm_tok_s"], 1),
                             "gflop_s": row["sgemm_gflop_s"]}
        for arch, name, field in ARCHS:
            mine = row[field]
            theirs = torch_rates.get((batch, arch))
            results[name][str(batch)] = {
                "libsae_tok_s": round(mine, 1),
                "torch_tok_s": round(theirs, 1) if theirs else None,
                "ratio_vs_torch": ratio(mine, theirs),
                "share_of_sgemm": ratio(mine, row["sgemm_tok_s"]),
            }

    def check(batch, key, limit):
        out = {}
        for _, name, _ in ARCHS:
            v = results[name].get(str(batch), {}).get(key)
            out[name] = (v >= limit) if v is not None else None
        return out

    thresholds = {
        "batch4096_ge_1.5x_torch": check(4096, "ratio_vs_torch", 1.5),
        "batch4096_ge_0.9_of_sgemm": check(4096, "share_of_sgemm", 0.9),
        "batch1_ge_3.5x_torch": check(1, "ratio_vs_torch", 3.5),
    }
    verdicts = [v for t in thresholds.values() for v in t.values()]
    report = {
        "benchmark": "encode",
        "d_in": c.get("d_in"), "d_sae": c.get("d_sae"), "k": c.get("k"),
        "threads": args.threads,
        "libsae": {"version": c.get("libsae_version"), "blas_kernels": c.get("blas_kernels"),
                   "binary": binary},
        "torch": {"version": torch_version, "threads": torch_threads,
                  "script": None if args.skip_torch else args.torch_script},
        "statistic": "median time per call; tokens/s = batch / median",
        "results": results,
        "sgemm": sgemm,
        "thresholds": thresholds,
        "all_thresholds_met": all(v is True for v in verdicts) if verdicts else None,
        "errors": errors,
        "wall_s": round(time.time() - t0, 1),
    }
    print(json.dumps(report, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
