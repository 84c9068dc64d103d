#!/usr/bin/env python3
"""Tables of a `comir experiment` study: success, effective ranks (dimensional collapse) and
modality-gap ratios, from each cell's cell.json and analysis CSVs.

  python3 docs/study-2023/summarize.py STUDY_DIR cells > cells.md      # one row per cell
  python3 docs/study-2023/summarize.py STUDY_DIR summary > summary.md  # mean ± std over seeds
  python3 docs/study-2023/summarize.py STUDY_DIR paired > paired.md    # each variant vs baseline

Standard deviations are over seeds (sample std, n − 1); a cell missing from a seed is left out
and the seed count says so.
"""
import csv
import json
import math
import os
import re
import statistics
import sys

DATASETS = ["histology", "mni152"]
VARIANTS = ["off", "flat", "pooled", "projection"]
CRITICS = ["mse", "cosine", "l1"]


def read_cell(path):
    r = json.load(open(os.path.join(path, "cell.json")))[0]
    s = {(x["layer"], x["modality"]): float(x["effective_rank"])
         for x in csv.DictReader(open(os.path.join(path, "analysis", "spectrum-summary.csv")))}
    g = {x["layer"]: float(x["ratio"])
         for x in csv.DictReader(open(os.path.join(path, "analysis", "modality-gap.csv")))}
    return r, s, g


def cells(base):
    """(dataset, variant, critic, seed, path) of every finished cell, in table order."""
    out = []
    for ds in DATASETS:
        d = os.path.join(base, ds)
        if not os.path.isdir(d):
            continue
        seeds = sorted({int(m.group(1)) for n in os.listdir(d)
                        if (m := re.search(r"-seed(\d+)$", n))})
        for v in VARIANTS:
            for c in CRITICS:
                for seed in seeds:
                    p = os.path.join(d, f"{v}-{c}-seed{seed}")
                    if os.path.isfile(os.path.join(p, "cell.json")):
                        out.append((ds, v, c, seed, p))
    return out


def mean_std(xs, digits=1, scale=1.0):
    xs = [x * scale for x in xs]
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def per_cell(base):
    print("| dataset | variant | critic | seed | steps | comir+aamd success | eff. rank repr. A / B "
          "| eff. rank bottleneck A / B | eff. rank pooled A / B | gap ratio repr. "
          "| gap ratio bottleneck |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for ds, v, c, seed, p in cells(base):
        r, s, g = read_cell(p)

        def ranks(layer):
            return f"{s[(layer, 'A')]:.1f} / {s[(layer, 'B')]:.1f}"
        print(f"| {ds} | {v} | {c} | {seed} | {r['steps']} | {r['successes']}/{r['cases']} "
              f"({100 * r['rate']:.1f} %) | {ranks('representation')} | {ranks('bottleneck')} "
              f"| {ranks('bottleneck-pooled')} | {g['representation']:.2f} "
              f"| {g['bottleneck']:.2f} |")


def summary(base):
    groups = {}
    for ds, v, c, seed, p in cells(base):
        groups.setdefault((ds, v, c), []).append(read_cell(p))
    for ds in DATASETS:
        rows = [(k, g) for k, g in groups.items() if k[0] == ds]
        if not rows:
            continue
        cases = rows[0][1][0][0]["cases"]
        print(f"\n**{ds}** ({cases} cases per seed)\n")
        print("| variant | critic | seeds | comir+aamd success % | eff. rank bottleneck A | "
              "eff. rank bottleneck B | gap ratio bottleneck | eff. rank repr. A |")
        print("|---|---|---|---|---|---|---|---|")
        for v in VARIANTS:
            for c in CRITICS:
                g = groups.get((ds, v, c))
                if not g:
                    continue
                rate = [r["rate"] for r, _, _ in g]
                ra = [s[("bottleneck", "A")] for _, s, _ in g]
                rb = [s[("bottleneck", "B")] for _, s, _ in g]
                gap = [gg["bottleneck"] for _, _, gg in g]
                rep = [s[("representation", "A")] for _, s, _ in g]
                print(f"| {v} | {c} | {len(g)} | {mean_std(rate, 1, 100.0)} | {mean_std(ra)} "
                      f"| {mean_std(rb)} | {mean_std(gap, 2)} | {mean_std(rep)} |")


def outcomes(path):
    """{(pair, level): success} of one cell's evaluation."""
    return {(x["pair"], x["level"]): x["success"] == "true"
            for x in csv.DictReader(open(os.path.join(path, "results.csv")))}


def sign_test(b, c):
    """Two-sided exact binomial (McNemar) p-value for b against c discordant cases."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(base):
    """Each variant against the baseline with the same critic and seed, case by case: the same
    held-out pairs and the same displacements (the split and the evaluation seed are fixed).

    The cases of one image pair (its four levels) succeed or fail together more often than not,
    so the honest unit is a (seed, pair): it counts as a win when the variant registers more of
    its four levels than the baseline, a loss when fewer. The case-level p-value is shown too; it
    treats the cases as independent and is optimistic."""
    found = {(ds, v, c, seed): p for ds, v, c, seed, p in cells(base)}
    print("| dataset | variant | critic | seeds | cases | success variant / baseline "
          "| cases won / lost | p (cases) | (seed, pair) units won / lost | p (units) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ds in DATASETS:
        for v in VARIANTS[1:]:
            for c in CRITICS:
                won = lost = n = sv = sb = seeds = 0
                units = {}
                for (d2, v2, c2, seed), p in sorted(found.items()):
                    if (d2, v2, c2) != (ds, v, c) or (ds, "off", c, seed) not in found:
                        continue
                    seeds += 1
                    var, ref = outcomes(p), outcomes(found[(ds, "off", c, seed)])
                    for k in var.keys() & ref.keys():
                        n += 1
                        sv += var[k]
                        sb += ref[k]
                        won += var[k] and not ref[k]
                        lost += ref[k] and not var[k]
                        u = units.setdefault((seed, k[0]), [0, 0])
                        u[0] += var[k]
                        u[1] += ref[k]
                uw = sum(a > b for a, b in units.values())
                ul = sum(a < b for a, b in units.values())
                if n:
                    print(f"| {ds} | {v} | {c} | {seeds} | {n} "
                          f"| {100 * sv / n:.1f} / {100 * sb / n:.1f} % | {won} / {lost} "
                          f"| {sign_test(won, lost):.3f} | {uw} / {ul} | {sign_test(uw, ul):.3f} |")


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "study-2023"
    what = sys.argv[2] if len(sys.argv) > 2 else "summary"
    if what == "cells":
        per_cell(base)
    elif what == "summary":
        summary(base)
    elif what == "paired":
        paired(base)
    else:
        sys.exit(f"summarize.py: unknown table {what!r} (cells, summary or paired)")
