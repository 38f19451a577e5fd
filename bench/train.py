#!/usr/bin/python3
"""Training-step throughput and peak memory, libsae against PyTorch, in one run; one JSON object.

For each configuration (d_in 768, d_sae 16384, batch 4096, 2 threads by default):
  topk      TopK k = 32
  standard  ReLU + L1 (decoder-norm weighted, coefficient 5)
  topk_auxk TopK k = 32 with half of the features dead (--auxk_dead 0.5): AuxK, k_aux = d_in/2
it runs bench_train (libsae) and ../shared/peers/torch_sae_train.py, each in its own process,
one after the other so both see the same machine load, and reads the median step time of each
(warm-up steps, then the median of the timed steps, as the peer does). Peak RSS is one
process's own peak: PyTorch's is the child's ru_maxrss (os.wait4); libsae's is bench_train's
getrusage taken after the steps, before it times the BLAS products (the child's ru_maxrss, which
includes those, is reported beside it as process_rss_mib). With --repeat R the pair runs R
times and the medians of the R medians are reported (the machine may be shared and noisy).

The share of the sgemm limit: the time the dense products a step cannot avoid take at the
measured sgemm rate, over the step time. bench_train times each product at its own shape right
after the steps, in the same process, both as one multi-threaded BLAS call and as the tiled
product the trainer runs, and the faster median counts. On a loaded machine wall times mostly
measure the load, so the same share is also given in CPU time (cpu_share_of_sgemm_limit: CPU
seconds of the products over CPU seconds of the step, all threads).
TopK (with or without AuxK) cannot avoid the encoder product x' W_enc (B x d_in x F); a standard
SAE whose codes are dense (L0 ~ F/2 at a random init) cannot avoid five: the encoder, the
decode f W_dec, G W_dec^T, f^T G and dL/dpre^T x'.

Thresholds (booleans in the output): topk >= 6x PyTorch tokens/s, standard >= 2x,
topk_auxk >= 8x, and each libsae peak RSS <= 0.6x PyTorch's.

usage: /usr/bin/python3 bench/train.py [--bin PATH/bench_train] [--torch-script PATH]
           [--threads 2] [--steps 5] [--warmup 2] [--repeat 1] [--configs topk,standard,...]
           [--d-in 768] [--d-sae 16384] [--batch 4096] [--skip-torch]
bench_train is looked for in $BENCH_TRAIN, then build*/bench/ under the repository and beside
it. Exit status: 0 when every run worked (whatever the thresholds say), 1 otherwise.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

from bench_util import PYTHON, REPO, ensure_torch, find_bench_binary, parse_json_object

# name: (bench_train args, torch script arch, --auxk_dead, tokens/s ratio required)
CONFIGS = {
    "topk": (["--arch", "topk"], "topk", 0.0, 6.0),
    "standard": (["--arch", "standard"], "std", 0.0, 2.0),
    "topk_auxk": (["--arch", "topk", "--auxk-dead", "0.5"], "topk", 0.5, 8.0),
}
RSS_RATIO = 0.6
# The dense products each configuration cannot avoid (names as bench_train prints them).
UNAVOIDABLE = {"topk": ("enc",), "topk_auxk": ("enc",),
               "standard": ("enc", "dec", "gpre", "gdec", "genc")}
NOTES = [
    "Same batch every step (randn, as the peer); libsae draws its own random numbers (sae_rng), "
    "so weights and data are equal in distribution, not bit for bit.",
    "Both sides: decoder rows N(0,1) normalised to unit norm, W_enc = W_dec^T, zero biases; "
    "Adam lr 1e-4 (betas 0.9/0.999, eps 1e-8), no clipping, no warm-up; decoder-gradient "
    "projection and row renormalisation (libsae SAE_DECODER_UNIT_EXACT = ConstrainedAdam).",
    "standard: MSE summed over d_in, mean over rows, plus 5 * mean_b sum_j f_bj ||d_j|| "
    "(SAE_L1_DECODER_NORM, coefficient 5).",
    "TopK: libsae selects on ReLU(pre) (SAE_TOPK_RELU_FIRST), the peer takes the top-k of pre "
    "then ReLU; at k = 32 of 16384 every kept pre-activation is positive, so both keep the "
    "same codes.",
    "AuxK: both take the top k_aux = d_in/2 of ReLU(pre) over the dead features, decode without "
    "b_dec, coefficient 1/32 (SAE_AUXK_DICTIONARY_LEARNING). The peer's term is "
    "mean_b ||e - e_aux||^2; libsae's divides it by the residual's total variance "
    "(dictionary_learning): one scalar, same work.",
    "Dead mask: the peer draws it once (rand < 0.5); libsae draws it once too and sets the dead "
    "counters before every step (sae_trainer_set_since_fired, counted in the step time, dead "
    "rule SAE_DEAD_STEPS) so that the mask stays fixed while features fire.",
    "libsae also computes what the peer does not: the dead counters, loss metrics "
    "(FVU, L0), the global gradient norm.",
    "Threads: libsae runs 2 threads in every stage. The peer sets torch.set_num_threads(2), but "
    "its step uses about one core (its process CPU time, process_cpu_s, is about its wall "
    "time): its matrix products run single-threaded in the system BLAS. So the ratios hold "
    "when libsae gets both cores; when other jobs hold one, libsae's wall time doubles and the "
    "peer's hardly changes (compare median_step_cpu_s).",
]


def run_with_rss(cmd):
    """Run cmd in its own process; (exit status, stdout, stderr, that child's peak RSS in MiB,
    its CPU seconds).
    The outputs go to temporary files, so the child never blocks on a full pipe while this
    process waits for it with os.wait4 (which returns the child's own rusage)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        fo.seek(0), fe.seek(0)
        return (p.returncode, fo.read(), fe.read(), ru.ru_maxrss / 1024.0,  # Linux: KiB
                ru.ru_utime + ru.ru_stime)


# "topk d_in=768 ... : step median 8700 ms (min 8600), 470 tok/s, peakRSS 2100 MiB, ..."
TORCH_LINE = re.compile(r"step median\s+([0-9.]+)\s*ms.*?([0-9.]+)\s*tok/s.*?peakRSS\s+([0-9.]+)"
                        r"\s*MiB")


def parse_torch(text):
    for line in text.splitlines():
        m = TORCH_LINE.search(line)
        if m:
            threads = re.search(r"threads=(\d+)", line)
            return {"median_s": float(m.group(1)) * 1e-3, "self_rss_mib": float(m.group(3)),
                    "threads": int(threads.group(1)) if threads else None}
    raise ValueError("no 'step median' line in the peer's output")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    simd = [s for s in ("avx512f", "avx2", "fma") if (" %s " % s) in flags + " "]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cpus": os.cpu_count(), "simd": simd, "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in load] if load else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="path of bench_train")
    ap.add_argument("--torch-script", default=os.path.join(os.path.dirname(REPO), "shared",
                                                           "peers", "torch_sae_train.py"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per run (libsae)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each pair (median of medians)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--skip-torch", action="store_true", help="only run libsae")
    args = ap.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit("train.py: unknown configuration(s) %s; known: %s" % (unknown, list(CONFIGS)))

    t0 = time.time()
    info = machine_info()
    errors = []
    binary = find_bench_binary("bench_train", args.bin, "BENCH_TRAIN")
    shape = ["--d-in", str(args.d_in), "--d-sae", str(args.d_sae), "--batch", str(args.batch),
             "--threads", str(args.threads)]
    timing = ["--steps", str(args.steps), "--warmup", str(args.warmup)]

    torch_version = None
    if not args.skip_torch:
        torch_version = ensure_torch(errors)
        if not torch_version:
            args.skip_torch = True

    raw = {c: {"libsae": [], "torch": []} for c in configs}
    blas = None
    last = {}
    for rep in range(args.repeat):
        for c in configs:
            bench_args, torch_arch, dead, _ = CONFIGS[c]
            code, out, err, rss, _ = run_with_rss([binary] + bench_args + shape + timing +
                                               ["--k", str(args.k)])
            try:
                j = parse_json_object(out)
                floor = sum(j["sgemm"][p]["best_s"] for p in UNAVOIDABLE[c])
                floor_cpu = sum(min(j["sgemm"][p]["blas_cpu_s"], j["sgemm"][p]["tiles_cpu_s"])
                                for p in UNAVOIDABLE[c])
                step_cpu = statistics.median(j["cpu_s"])
                raw[c]["libsae"].append({
                    "median_s": j["median_s"], "step_s": j["step_s"], "cpu_s": j["cpu_s"],
                    "rss_mib": j["peak_rss_mib"], "process_rss_mib": round(rss, 1),
                    "sgemm": j["sgemm"], "unavoidable_sgemm_s": round(floor, 4),
                    "share_of_sgemm_limit": round(floor / j["median_s"], 3),
                    "unavoidable_sgemm_cpu_s": round(floor_cpu, 4),
                    "cpu_share_of_sgemm_limit": round(floor_cpu / step_cpu, 3)})
                last[c] = j["last"]
                blas = j.get("blas_kernels")
            except (ValueError, KeyError) as e:
                errors.append("bench_train %s failed (exit %d): %s %s" %
                              (c, code, e, err.strip()[-300:]))
            if args.skip_torch:
                continue
            cmd = [PYTHON, args.torch_script, torch_arch, str(args.d_in), str(args.d_sae),
                   "--batch", str(args.batch), "--steps", str(args.steps), "--threads",
                   str(args.threads), "--k", str(args.k), "--auxk_dead", str(dead)]
            code, out, err, rss, cpu = run_with_rss(cmd)
            try:
                tj = parse_torch(out)
                tj["rss_mib"] = round(rss, 1)
                tj["process_cpu_s"] = round(cpu, 2)  # import, init, warm-up and timed steps
                raw[c]["torch"].append(tj)
            except ValueError as e:
                errors.append("torch %s failed (exit %d): %s %s" % (c, code, e, err.strip()[-300:]))

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    results, thresholds = {}, {}
    for c in configs:
        need = CONFIGS[c][3]
        mine = median([r["median_s"] for r in raw[c]["libsae"]])
        theirs = median([r["median_s"] for r in raw[c]["torch"]])
        rss_mine = median([r["rss_mib"] for r in raw[c]["libsae"]])
        rss_theirs = median([r["rss_mib"] for r in raw[c]["torch"]])
        floor = median([r["unavoidable_sgemm_s"] for r in raw[c]["libsae"]])
        results[c] = {
            "libsae": {"median_step_s": mine,
                       "tok_s": round(args.batch / mine, 1) if mine else None,
                       "median_step_cpu_s": median([statistics.median(r["cpu_s"])
                                                    for r in raw[c]["libsae"]]),
                       "peak_rss_mib": rss_mine, "runs": raw[c]["libsae"],
                       "last_step": last.get(c)},
            "torch": {"median_step_s": theirs,
                      "tok_s": round(args.batch / theirs, 1) if theirs else None,
                      "peak_rss_mib": rss_theirs, "runs": raw[c]["torch"]},
            "tok_s_ratio": ratio(theirs, mine),
            "rss_ratio": ratio(rss_mine, rss_theirs),
            "unavoidable_products": list(UNAVOIDABLE[c]),
            "unavoidable_sgemm_s": floor,
            "share_of_sgemm_limit": median([r["share_of_sgemm_limit"]
                                            for r in raw[c]["libsae"]]),
            "cpu_share_of_sgemm_limit": median([r["cpu_share_of_sgemm_limit"]
                                                for r in raw[c]["libsae"]]),
        }
        thresholds[c] = {
            "tok_s_ge_%gx_torch" % need: (results[c]["tok_s_ratio"] >= need)
            if results[c]["tok_s_ratio"] is not None else None,
            "rss_le_%gx_torch" % RSS_RATIO: (results[c]["rss_ratio"] <= RSS_RATIO)
            if results[c]["rss_ratio"] is not None else None,
        }
    verdicts = [v for t in thresholds.values() for v in t.values()]
    report = {
        "benchmark": "train",
        "d_in": args.d_in, "d_sae": args.d_sae, "batch": args.batch, "k": args.k,
        "threads": args.threads, "warmup_steps": args.warmup, "timed_steps": args.steps,
        "repeat": args.repeat,
        "statistic": "median step time per run (warm-up steps excluded), median over repeats; "
                     "tokens/s = batch / median; peak RSS = each process's own maxrss",
        "machine": info,
        "libsae": {"binary": binary, "blas_kernels": blas},
        "torch": {"version": torch_version,
                  "script": None if args.skip_torch else args.torch_script},
        "results": results,
        "thresholds": thresholds,
        "all_thresholds_met": (all(verdicts) if all(v is not None for v in verdicts)
                               else None) if verdicts else None,
        "notes": NOTES,
        "errors": errors,
        "wall_s": round(time.time() - t0, 1),
    }
    print(json.dumps(report, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
