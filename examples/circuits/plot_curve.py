#!/usr/bin/env python3
"""Faithfulness and completeness against circuit size, from the JSON of `sae circuit eval
--json`, as a small SVG line chart (standard library only).

usage: plot_curve.py OUT.svg NAME=CURVE.json [NAME=CURVE.json ...]
"""

import json
import math
import sys

W, H, LEFT, RIGHT, TOP, BOTTOM = 560, 320, 60, 150, 20, 45
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def main(out, specs):
    curves = []
    for spec in specs:
        name, path = spec.split("=", 1)
        with open(path) as f:
            curves.append((name, json.load(f)["curve"]))
    sizes = [p["nodes"] for _, c in curves for p in c if p["nodes"] > 0]
    ys = [p[k] for _, c in curves for p in c for k in ("faithfulness", "completeness") if k in p]
    x_lo, x_hi = math.log10(min(sizes)), math.log10(max(sizes))
    y_lo, y_hi = min(0.0, min(ys)), max(1.0, max(ys))

    def px(n):
        return LEFT + (math.log10(n) - x_lo) / (x_hi - x_lo) * (W - LEFT - RIGHT)

    def py(v):
        return TOP + (y_hi - v) / (y_hi - y_lo) * (H - TOP - BOTTOM)

    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="Helvetica" font-size="11">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>']
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        svg.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>'
                   % (LEFT, W - RIGHT, py(v), py(v)))
        svg.append('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>'
                   % (LEFT - 5, py(v) + 4, v))
    for n in sorted(set(sizes)):
        svg.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>'
                   % (px(n), H - BOTTOM + 15, n))
    svg.append('<text x="%d" y="%d" text-anchor="middle">nodes in the circuit (largest |effect| '
               'first)</text>' % ((LEFT + W - RIGHT) // 2, H - 8))
    legend_y = TOP + 10
    for i, (name, curve) in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        for key, dash in (("faithfulness", ""), ("completeness", ' stroke-dasharray="4 3"')):
            pts = [(px(p["nodes"]), py(p[key])) for p in curve if p["nodes"] > 0 and key in p]
            if not pts:
                continue
            svg.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>'
                       % (colour, dash, " ".join("%.1f,%.1f" % q for q in pts)))
            svg.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'
                       % (W - RIGHT + 10, W - RIGHT + 30, legend_y, legend_y, colour, dash))
            svg.append('<text x="%d" y="%d">%s %s</text>' % (W - RIGHT + 35, legend_y + 4, name,
                                                            key))
            legend_y += 16
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
