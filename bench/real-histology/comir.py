#!/usr/bin/env python3
"""Runs comir's pipelines on the real histology task and scores them against the truth.

Each pipeline is one `comir register` command per pair, raw H&E (`B_raw_rgb/NAME.png`, moving)
onto SHG (`A/NAME.png`, fixed), written to OUT/comir-LABEL/NAME.json and scored with score.py;
the seconds reported are the JSON's own, the registration alone (image loading not included).

Pipelines are given as LABEL=ARGS, e.g. `mi-affine=--method mi --transform rigid,affine`; the
defaults are the raw-image pipelines of docs/results.md (MI rigid, similarity, affine,
rigid → affine, similarity → affine).

Usage:
    comir.py [--comir BIN] [--dataset DIR] [--truth DIR] [--out DIR] [--pipeline LABEL=ARGS ...]
             [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as cm  # noqa: E402
import score as sc  # noqa: E402

DEFAULT_PIPELINES = [
    "mi-rigid=--method mi --transform rigid",
    "mi-similarity=--method mi --transform similarity",
    "mi-affine=--method mi --transform affine",
    "mi-rigid-affine=--method mi --transform rigid,affine",
    "mi-similarity-affine=--method mi --transform similarity,affine",
]


def write_points(comir: str, dataset: str, name: str, result: str) -> None:
    """NAME.points.csv (x, y, mx, my on the evaluation points) of a deformable result, mapped by
    `comir transform-points` itself, so that score.py scores the deformation and not only its
    linear part."""
    h, w = cm.load_gray(os.path.join(dataset, "A", f"{name}.png")).shape[:2]
    pts = cm.evaluation_points(w, h)
    src = result[:-len(".json")] + ".fixed-points.csv"
    dst = result[:-len(".json")] + ".mapped-points.csv"
    with open(src, "w") as f:
        f.write("fx,fy,x,y\n")
        for x, y in pts:
            x, y = float(x), float(y)
            f.write(f"{x!r},{y!r},{x!r},{y!r}\n")
    subprocess.run([comir, "transform-points", "--transform", result, "--points", src,
                    "--out", dst], check=True, capture_output=True)
    with open(dst) as f, open(result[:-len(".json")] + ".points.csv", "w") as out:
        out.write("x,y,mx,my\n")
        for row in list(f)[1:]:
            out.write(row)
    os.remove(src)
    os.remove(dst)


def run(comir: str, dataset: str, truth: str, out: str, pipelines: list[str],
        threads: int) -> list[dict]:
    names = cm.pair_names(dataset)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    summaries = []
    for spec in pipelines:
        label, _, args = spec.partition("=")
        folder = os.path.join(out, f"comir-{label}")
        os.makedirs(folder, exist_ok=True)
        for name in names:
            result = os.path.join(folder, f"{name}.json")
            cmd = [comir, "register", "--fixed", os.path.join(dataset, "A", f"{name}.png"),
                   "--moving", os.path.join(dataset, "B_raw_rgb", f"{name}.png"),
                   "--out", result, *shlex.split(args)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{label} {name}: {done.stderr.strip()}", file=sys.stderr)
            elif "bspline" in args:
                write_points(comir, dataset, name, result)
        rows = sc.score(truth, folder)
        cm.write_csv(os.path.join(folder, "score.csv"), sc.HEADER, rows)
        sc.print_table(rows, f"comir {label} ({args})")
        summaries.append({"pipeline": label, "args": args, **sc.summary(rows)})
    return summaries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comir", default=os.path.join(cm.REPO, "target", "release", "comir"))
    ap.add_argument("--dataset", default=cm.DEFAULT_DATASET)
    ap.add_argument("--truth", default=cm.DEFAULT_OUT, help="the --out folder of truth.py")
    ap.add_argument("--out", default=cm.DEFAULT_OUT)
    ap.add_argument("--pipeline", action="append", help="LABEL=ARGS of comir register "
                    "(repeatable; default: the MI pipelines on the raw images)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    cm.require_dataset(args.dataset)
    summaries = run(args.comir, args.dataset, args.truth, args.out,
                    args.pipeline or DEFAULT_PIPELINES, args.threads)
    print(f"\n{'pipeline':<24} {'success':>9} {'median px':>10} {'s/pair':>8}")
    for s in summaries:
        print(f"{s['pipeline']:<24} {s['k']:>4}/{s['n']:<4} {s['median_dense_px']:>10.2f} "
              f"{s['mean_seconds']:>8.3f}")
    cm.write_csv(os.path.join(args.out, "comir-summary.csv"),
                 ["pipeline", "args", "k", "n", "median_dense_px", "mean_seconds",
                  "mean_cpu_seconds"], summaries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
