#!/usr/bin/env python3
"""comir against elastix on the real histology task, side by side in one invocation.

Runs, on the same 21 raw H&E → SHG pairs, on the same cores, one after the other:
  * elastix rigid → affine, and rigid → affine → B-spline (elastix.py, its default parameter maps,
    4 resolutions, final control-point spacing --grid-spacing);
  * comir `--method mi --transform similarity,affine`, and the same followed by `bspline` with the
    same grid spacing (comir.py),
scores every result against the truth (score.py; run truth.py first) and prints, per transform
model, both tools' success and median dense error, their mean seconds per pair and
`time_ratio_vs_elastix[affine|bspline]` = elastix seconds / comir seconds.

Usage:
    vs_elastix.py [--comir BIN] [--dataset DIR] [--truth DIR] [--out DIR] [--grid-spacing 64]
                  [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import comir as cr  # noqa: E402
import common as cm  # noqa: E402
import elastix as ex  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comir", default=os.path.join(cm.REPO, "target", "release", "comir"))
    ap.add_argument("--dataset", default=cm.DEFAULT_DATASET)
    ap.add_argument("--truth", default=cm.DEFAULT_OUT, help="the --out folder of truth.py")
    ap.add_argument("--out", default=os.path.join(cm.DEFAULT_OUT, "vs-elastix"))
    ap.add_argument("--grid-spacing", type=float, default=64.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    cm.require_dataset(args.dataset)
    import itk

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(args.threads)
    itk.MultiThreaderBase.SetGlobalMaximumNumberOfThreads(max(args.threads, 1))
    os.makedirs(args.out, exist_ok=True)
    g = f"{args.grid_spacing:g}"
    comir_pipelines = {
        "affine": "--method mi --transform similarity,affine",
        "bspline": f"--method mi --transform similarity,affine,bspline --grid-spacing {g}",
    }
    ex.run(args.dataset, args.truth, args.out, ["affine", "bspline"], args.grid_spacing,
           args.threads, None)
    with open(os.path.join(args.out, "elastix-summary.csv"), newline="") as f:
        elastix = {r["pipeline"]: r for r in csv.DictReader(f)}
    comir = {s["pipeline"]: s for s in cr.run(
        args.comir, args.dataset, args.truth, args.out,
        [f"{k}={v}" for k, v in comir_pipelines.items()], args.threads)}
    print(f"\n{'model':<8} {'tool':<8} {'success':>9} {'median dense px':>16} {'s/pair':>8}")
    rows = []
    for model in comir_pipelines:
        e, c = elastix[model], comir[model]
        ratio = float(e["mean_seconds"]) / c["mean_seconds"]
        print(f"{model:<8} {'elastix':<8} {e['success']:>4}/{e['pairs']:<4} "
              f"{float(e['median_dense_px']):>16.2f} {float(e['mean_seconds']):>8.2f}")
        print(f"{model:<8} {'comir':<8} {c['k']:>4}/{c['n']:<4} {c['median_dense_px']:>16.2f} "
              f"{c['mean_seconds']:>8.2f}")
        rows.append({"model": model, "elastix_success": e["success"],
                     "comir_success": c["k"], "pairs": c["n"],
                     "elastix_median_dense_px": e["median_dense_px"],
                     "comir_median_dense_px": c["median_dense_px"],
                     "elastix_seconds": e["mean_seconds"], "comir_seconds": c["mean_seconds"],
                     "time_ratio_vs_elastix": ratio})
    cm.write_csv(os.path.join(args.out, "vs-elastix.csv"), list(rows[0]), rows)
    print(f"({args.threads} threads, {cm.lscpu_model()}; grid spacing {g} px)")
    for r in rows:
        print(f"time_ratio_vs_elastix[{r['model']}]={r['time_ratio_vs_elastix']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
