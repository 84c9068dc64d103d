#!/usr/bin/env python3
"""Which pairs of an "aligned" dataset the registration metrics dispute the alignment of.

Registers every pair's moving image (DIR/B) onto its fixed image (DIR/A) starting from the
dataset's own alignment, with no displacement, by each method (`comir register --transform
rigid`, default `mi` and `ngf`), and measures how far each result moves the fixed image's points
from that alignment: the mean distance over a 32 x 32 grid, as `comir eval` measures errors. A
pair is *disputed* when every method leaves the alignment by more than 2 % of the width and the
methods end within 2 % of each other: metrics that pair intensities (MI) and edge directions
(NGF) then agree on another alignment than the reference. An evaluation scores such a pair
against a reference the images contradict (docs/results.md, "Confidence of a result").

    python bench/reference_check.py --comir target/release/comir --pairs DATASETS/aanlib-ct-mri \
        [--methods mi,ngf] [--limit N] [--csv OUT.csv]

Prints one line per pair that any method leaves, then the disputed pairs and the counts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "align"))
from collection import grid  # noqa: E402  (comir's 32 x 32 grid of cell centres, homogeneous)

TOLERANCE = 0.02  # of the width, as the evaluation's success


def mean_distance(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    return float(np.linalg.norm((a @ points)[:2] - (b @ points)[:2], axis=0).mean())


def register(comir: str, fixed: str, moving: str, method: str, out: str) -> np.ndarray:
    cmd = [comir, "register", "--fixed", fixed, "--moving", moving, "--method", method,
           "--transform", "rigid", "--no-confidence", "--out", out]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"reference_check: {' '.join(cmd)} failed: {done.stderr.strip()}")
    with open(out) as f:
        return np.array(json.load(f)["fixed_to_moving"], dtype=float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comir", required=True, help="the comir binary")
    ap.add_argument("--pairs", required=True, help="dataset folder with A/ and B/")
    ap.add_argument("--methods", default="mi,ngf", help="comma list of `comir register` methods")
    ap.add_argument("--limit", type=int, default=0, help="the first N pairs by name (0: all)")
    ap.add_argument("--csv", help="write one row per pair here")
    a = ap.parse_args()
    methods = [m for m in a.methods.split(",") if m]
    if not methods:
        sys.exit("reference_check: --methods is empty")
    dir_a, dir_b = os.path.join(a.pairs, "A"), os.path.join(a.pairs, "B")
    if not (os.path.isdir(dir_a) and os.path.isdir(dir_b)):
        sys.exit(f"reference_check: {a.pairs} has no A/ and B/ folders")
    names = sorted(set(os.listdir(dir_a)) & set(os.listdir(dir_b)))
    if a.limit:
        names = names[: a.limit]
    if not names:
        sys.exit(f"reference_check: {a.pairs} has no pairs (the same name in A/ and B/)")

    rows = []
    with tempfile.TemporaryDirectory(prefix="comir-reference-") as tmp:
        for i, name in enumerate(names):
            fixed, moving = os.path.join(dir_a, name), os.path.join(dir_b, name)
            with Image.open(fixed) as im:
                width, height = im.size
            points = grid(width, height)
            found = {m: register(a.comir, fixed, moving, m, os.path.join(tmp, f"{m}.json")) for m in methods}
            shift = {m: mean_distance(t, np.eye(3), points) for m, t in found.items()}
            apart = max((mean_distance(found[p], found[q], points)
                         for p in methods for q in methods if p < q), default=0.0)
            tol = TOLERANCE * width
            disputed = all(s > tol for s in shift.values()) and apart <= tol
            rows.append({"pair": name, "width": width,
                         **{f"{m}_shift_px": round(s, 3) for m, s in shift.items()},
                         "methods_apart_px": round(apart, 3), "disputed": disputed})
            if any(s > tol for s in shift.values()):
                moved = ", ".join(f"{m} {s:.1f} px" for m, s in shift.items())
                print(f"{name}: {moved}; apart {apart:.1f} px{'  DISPUTED' if disputed else ''}")
            print(f"\r{i + 1}/{len(names)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    left = [r for r in rows if any(r[f"{m}_shift_px"] > TOLERANCE * r["width"] for m in methods)]
    disputed = [r["pair"] for r in rows if r["disputed"]]
    print(f"disputed: {' '.join(disputed) or 'none'}")
    print(f"{len(disputed)} of {len(rows)} pairs disputed (every method leaves the reference by more "
          f"than 2 % of the width and they agree within it); {len(left)} left by at least one method")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
