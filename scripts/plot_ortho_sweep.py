#!/usr/bin/env python3
"""Plot an orthogonality sweep (docs/orthogonality.md) without matplotlib.

usage: plot_ortho_sweep.py RUNS_DIR [--svg docs/ortho-sweep.svg]

RUNS_DIR holds one directory per fine-tuning run, each with finetune.json (`sae finetune
--json`) and eval.json (`sae eval --model ... --json`). Prints a Markdown table of
lambda, decoder variant, mean |cos|, max |cos|, FVU and CE loss recovered (zero-ablation
score) on the held-out text, and writes four panels against lambda as SVG: log-x axis, lambda = 0
drawn at the left edge past a break, one curve per decoder variant (free, unit-norm).
"""

import argparse
import json
import math
import pathlib
import sys

METRICS = [  # key, panel title, table header
    ("mean_cos", "mean |cos| (decoder pairs)", "mean \\|cos\\|"),
    ("max_cos", "max |cos| (decoder pairs)", "max \\|cos\\|"),
    ("fvu", "FVU (held-out text)", "FVU"),
    ("ce_rec", "CE loss recovered (held-out text)", "CE loss recovered"),
]
COLOURS = {False: "#1f77b4", True: "#d62728"}
NAMES = {False: "free decoder (sae-icm as-is)", True: "unit-norm decoder rows"}


def load_runs(root):
    runs = []
    for d in sorted(p for p in pathlib.Path(root).iterdir() if (p / "finetune.json").exists()):
        ft = json.loads((d / "finetune.json").read_text())
        ev = json.loads((d / "eval.json").read_text())
        lr = ev["loss_recovered"]
        runs.append({
            "lambda": ft["ortho_lambda"], "unit": bool(ft.get("unit_norm", False)),
            "mean_cos": ft["after"]["mean_cos"], "max_cos": ft["after"]["max_cos"],
            "welch": ft["after"]["welch_mean_norm"], "d_in": ft["d_in"],
            "fvu": ev["fvu"], "ce_rec": lr["ce_score_zero"], "ce_spliced": lr["ce_spliced"],
            "ce_clean": lr["ce_clean"], "l0": ev["l0"], "dead": ev["dead"],
            "base": ft["before"],
            "title": "%s, TopK k=%s, d_sae=%d, %d fine-tuning steps" % (
                lr["hook"], ev.get("k", "-"), ev["d_sae"], ft["steps"]),
        })
    if not runs:
        sys.exit("no run directories with finetune.json under %s" % root)
    return sorted(runs, key=lambda r: (r["unit"], r["lambda"]))


def table(runs):
    head = ["lambda", "decoder", *(m[2] for m in METRICS), "CE spliced", "L0", "dead",
            "mean cos^2 (Welch bound %.4f)" % (1 / runs[0]["d_in"])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    b = runs[0]["base"]
    lines.append("| base | (before fine-tuning) | %.4f | %.4f | %.4f | | | %.2f | | %.4f |"
                 % (b["mean_cos"], b["max_cos"], b["fvu"], b["l0"], b["welch_mean_norm"]))
    for r in runs:
        lines.append("| %s | %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.2f | %d | %.4f |" % (
            "0" if r["lambda"] == 0 else "%g" % r["lambda"],
            "unit-norm" if r["unit"] else "free", r["mean_cos"], r["max_cos"], r["fvu"],
            r["ce_rec"], r["ce_spliced"], r["l0"], r["dead"], r["welch"]))
    lines.append("")
    lines.append("CE clean on the held-out text: %.4f; FVU and CE on the held-out text, "
                 "base FVU on the rows kept aside by `sae finetune`." % runs[0]["ce_clean"])
    return "\n".join(lines)


def nice_range(lo, hi):
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * abs(lo or 1) * 0.1, hi + 0.5 * abs(hi or 1) * 0.1
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad


def svg(runs):
    lams = sorted({r["lambda"] for r in runs if r["lambda"] > 0})
    lx0, lx1 = math.floor(math.log10(lams[0])), math.ceil(math.log10(lams[-1]))
    W, H, pw, ph = 920, 640, 360, 210  # canvas, panel plot area
    ox = [90, 540]
    oy = [60, 350]
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="24" font-size="15" text-anchor="middle">Orthogonality fine-tuning '
           'sweep: %s</text>' % (W // 2, runs[0]["title"])]
    gap = 40  # pixels for lambda = 0, left of the axis break

    def xpos(x0, lam):
        if lam == 0:
            return x0 + 12
        return x0 + gap + (pw - gap) * (math.log10(lam) - lx0) / max(lx1 - lx0, 1)

    for i, (key, title, _) in enumerate(METRICS):
        x0, y0 = ox[i % 2], oy[i // 2]
        vals = [r[key] for r in runs]
        lo, hi = nice_range(min(vals), max(vals))

        def ypos(v):
            return y0 + ph - ph * (v - lo) / (hi - lo)
        out.append('<text x="%d" y="%d" text-anchor="middle" font-size="13">%s</text>'
                   % (x0 + pw // 2, y0 - 10, title))
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>'
                   % (x0, y0, pw, ph))
        # axis break between lambda = 0 and the log axis
        bx = x0 + gap - 14
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444" stroke-dasharray="3,3"/>'
                   % (bx, y0, bx, y0 + ph))
        for t in range(5):
            v = lo + (hi - lo) * t / 4
            y = ypos(v)
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                       % (x0, y, x0 + pw, y))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%.3g</text>' % (x0 - 5, y + 4, v))
        ticks = [(0, "0")] + [(10.0 ** e, "1e%d" % e) for e in range(lx0, lx1 + 1)]
        for lam, label in ticks:
            x = xpos(x0, lam)
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#444"/>'
                       % (x, y0 + ph, x, y0 + ph + 4))
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                       % (x, y0 + ph + 17, label))
        out.append('<text x="%d" y="%d" text-anchor="middle">λ (log scale; 0 at the left)</text>'
                   % (x0 + pw // 2, y0 + ph + 34))
        for unit in (False, True):
            pts = [(xpos(x0, r["lambda"]), ypos(r[key])) for r in runs if r["unit"] == unit]
            if not pts:
                continue
            c = COLOURS[unit]
            out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                       % (c, " ".join("%.1f,%.1f" % p for p in pts)))
            out.extend('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>' % (x, y, c)
                       for x, y in pts)
    ly = H - 22
    for j, unit in enumerate(u for u in (False, True) if any(r["unit"] == u for r in runs)):
        lx = 200 + 330 * j
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>'
                   % (lx, ly - 4, lx + 30, ly - 4, COLOURS[unit]))
        out.append('<text x="%d" y="%d">%s</text>' % (lx + 36, ly, NAMES[unit]))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs")
    ap.add_argument("--svg", default="docs/ortho-sweep.svg")
    a = ap.parse_args()
    runs = load_runs(a.runs)
    pathlib.Path(a.svg).write_text(svg(runs))
    print(table(runs))


if __name__ == "__main__":
    main()
