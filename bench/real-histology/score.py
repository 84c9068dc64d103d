#!/usr/bin/env python3
"""Scores registration results of the real histology task against the recovered truth.

A result says where each fixed (SHG) point lands in the raw H&E image.  It can come as

* a folder with one file per pair:
  - `NAME.json` in comir's format, {"kind": ..., "fixed_to_moving": [[a, b, c], [d, e, f],
    [0, 0, 1]], ...}: its `fixed_to_moving` is used ("rigid", "affine", ...), except for a
    record with a "bspline" field (comir's deformable kind, whose matrix is only its linear
    part), which is scored from its points file.  A JSON without a matrix needs a point-mapping
    function for its kind (MAPPERS / `register_mapper`) or a points file, else the pair is
    reported as unscorable;
  - `NAME.points.csv` with columns x, y, mx, my: the mapped position (mx, my) of each fixed point
    (x, y), for transforms that are not a matrix (a B-spline).  It must contain the points of
    `common.evaluation_points` (the 4 corners and the 32×32 grid); `elastix.py` and `comir.py`
    (for B-spline results, through `comir transform-points`) write these.
  When both exist, the JSON wins unless it has no usable matrix.
* a CSV with one row per pair: name, a11, a12, a21, a22, tx, ty (the layout of truth.csv),
  optionally kind, seconds and cpu_seconds.

Per pair it computes the corner error (mean distance of the true and the recovered images of the
corners (0, 0), (w, 0), (w, h), (0, h)), the dense error (mean distance over the 32×32 grid of cell
centres) and success ⇔ dense error ≤ 2 % of the width (10.24 px at 512).  Pairs whose truth was not
accepted by truth.py are shown but left out of the count; a missing result is a failure.

Usage:
    score.py [--truth DIR] --results DIR_OR_CSV [--out CSV] [--label NAME]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as cm  # noqa: E402

Mapping = Callable[[np.ndarray], np.ndarray]  # (n, 2) fixed points → (n, 2) moving points
HEADER = ["name", "truth_accepted", "kind", "corner_px", "dense_px", "dense_max_px", "success",
          "seconds", "cpu_seconds", "status"]
NO_TIMES = {"seconds": float("nan"), "cpu_seconds": float("nan")}


class Unscorable(Exception):
    """A result exists but cannot be turned into a point mapping."""


def matrix_mapping(m) -> Mapping:
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (3, 3) or not np.allclose(m[2], [0, 0, 1]):
        raise Unscorable(f"fixed_to_moving is not a 3×3 affine matrix: {m.tolist()}")
    return lambda pts: cm.apply_affine(m, pts)


# kind → function(record dict, json path) → Mapping, for JSONs without a `fixed_to_moving` matrix.
# A B-spline or composite reader plugs in here, e.g. register_mapper("bspline", read_bspline).
MAPPERS: dict[str, Callable[[dict, str], Mapping]] = {}


def register_mapper(kind: str, fn: Callable[[dict, str], Mapping]) -> None:
    MAPPERS[kind] = fn


def points_mapping(path: str) -> Mapping:
    """A mapping defined by a table of (x, y) → (mx, my); asking for another point is an error."""
    table = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            table[key(float(r["x"]), float(r["y"]))] = (float(r["mx"]), float(r["my"]))

    def apply(pts: np.ndarray) -> np.ndarray:
        try:
            return np.array([table[key(x, y)] for x, y in pts])
        except KeyError as e:
            raise Unscorable(f"{path}: no mapped position for point {e.args[0]}") from None

    return apply


def key(x: float, y: float) -> tuple[int, int]:
    return (round(x * 1e6), round(y * 1e6))


def times_of(rec: dict) -> dict:
    """The optional wall-clock and CPU seconds of a result record (NaN when absent)."""
    return {k: float(rec.get(k) or "nan") for k in NO_TIMES}


def json_mapping(path: str) -> tuple[Mapping, str, dict]:
    with open(path) as f:
        rec = json.load(f)
    kind = str(rec.get("kind", "?"))
    # A comir "bspline" record has the matrix of its linear part only: its points file decides.
    if "fixed_to_moving" in rec and "bspline" not in rec:
        return matrix_mapping(rec["fixed_to_moving"]), kind, times_of(rec)
    if kind in MAPPERS:
        return MAPPERS[kind](rec, path), kind, times_of(rec)
    raise Unscorable(f"kind {kind!r} has no fixed_to_moving matrix and no point mapper")


def load_results(results: str, names: list[str]) -> dict[str, tuple]:
    """name → (Mapping or None, kind, times, status) for every name."""
    out = {}
    if os.path.isdir(results):
        for n in names:
            j = os.path.join(results, n + ".json")
            p = os.path.join(results, n + ".points.csv")
            try:
                if os.path.isfile(j):
                    try:
                        out[n] = json_mapping(j) + ("ok",)
                        continue
                    except Unscorable:
                        if not os.path.isfile(p):
                            raise
                if os.path.isfile(p):
                    rec = {}
                    if os.path.isfile(j):  # kind and seconds, when a JSON comes with the points
                        with open(j) as f:
                            rec = json.load(f)
                    out[n] = (points_mapping(p), str(rec.get("kind", "points")), times_of(rec),
                              "ok")
                else:
                    out[n] = (None, "", NO_TIMES, "missing")
            except (Unscorable, ValueError, KeyError, OSError) as e:
                out[n] = (None, "", NO_TIMES, f"unscorable: {e}")
    else:
        with open(results, newline="") as f:
            rows = {r["name"]: r for r in csv.DictReader(f)}
        for n in names:
            r = rows.get(n)
            if r is None:
                out[n] = (None, "", NO_TIMES, "missing")
                continue
            m = [[float(r["a11"]), float(r["a12"]), float(r["tx"])],
                 [float(r["a21"]), float(r["a22"]), float(r["ty"])], [0.0, 0.0, 1.0]]
            out[n] = (matrix_mapping(m), r.get("kind") or "affine", times_of(r), "ok")
    return out


def load_truth(truth_dir: str) -> list[dict]:
    """Rows of truth.csv with the matrix read back from truth/NAME.json."""
    path = os.path.join(truth_dir, "truth.csv")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found: run truth.py --out {truth_dir} first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        with open(os.path.join(truth_dir, "truth", r["name"] + ".json")) as f:
            r["matrix"] = np.array(json.load(f)["fixed_to_moving"], dtype=np.float64)
        r["accepted"] = r["accepted"] == "true"
        r["width"], r["height"] = int(r["width"]), int(r["height"])
    return rows


def score(truth_dir: str, results: str) -> list[dict]:
    truth = load_truth(truth_dir)
    found = load_results(results, [t["name"] for t in truth])
    rows = []
    for t in truth:
        w, h = t["width"], t["height"]
        mapping, kind, times, status = found[t["name"]]
        row = {"name": t["name"], "truth_accepted": t["accepted"], "kind": kind, **times,
               "corner_px": float("nan"), "dense_px": float("nan"),
               "dense_max_px": float("nan"), "success": False, "status": status}
        if mapping is not None:
            try:
                c, g = cm.corners(w, h), cm.dense_grid(w, h)
                row["corner_px"] = cm.mean_distance(mapping(c), cm.apply_affine(t["matrix"], c))
                d = np.linalg.norm(mapping(g) - cm.apply_affine(t["matrix"], g), axis=1)
                row["dense_px"] = float(np.mean(d))
                row["dense_max_px"] = float(np.max(d))
                row["success"] = bool(row["dense_px"] <= cm.SUCCESS_FRAC * w)
            except Unscorable as e:
                row["status"] = f"unscorable: {e}"
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """success k/n, median dense error (failures to map count as +inf) and mean (CPU) seconds,
    over the pairs whose truth was accepted."""
    counted = [r for r in rows if r["truth_accepted"]]
    dense = [r["dense_px"] if not math.isnan(r["dense_px"]) else math.inf for r in counted]

    def mean(key):
        v = [r[key] for r in counted if not math.isnan(r[key])]
        return float(np.mean(v)) if v else float("nan")

    return {"k": sum(r["success"] for r in counted), "n": len(counted),
            "median_dense_px": float(np.median(dense)) if dense else float("nan"),
            "mean_seconds": mean("seconds"), "mean_cpu_seconds": mean("cpu_seconds")}


def print_table(rows: list[dict], label: str, file=sys.stdout) -> None:
    print(f"{label}:", file=file)
    print(f"  {'pair':<30} {'corner px':>10} {'dense px':>10} {'max px':>9} {'s':>7}  result",
          file=file)
    for r in rows:
        mark = "ok" if r["success"] else "FAIL"
        if not r["truth_accepted"]:
            mark += " (truth not accepted: not counted)"
        if r["status"] != "ok":
            mark += f" [{r['status']}]"
        print(f"  {r['name']:<30} {r['corner_px']:>10.2f} {r['dense_px']:>10.2f} "
              f"{r['dense_max_px']:>9.2f} {r['seconds']:>7.2f}  {mark}", file=file)
    s = summary(rows)
    print(f"  success {s['k']}/{s['n']}, median dense error {s['median_dense_px']:.2f} px, "
          f"mean {s['mean_seconds']:.2f} s/pair", file=file)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", default=cm.DEFAULT_OUT, help="the --out folder of truth.py")
    ap.add_argument("--results", required=True, help="a folder of NAME.json / NAME.points.csv, "
                    "or a CSV of matrices")
    ap.add_argument("--out", help="scores CSV (default: RESULTS/score.csv or RESULTS.score.csv)")
    ap.add_argument("--label", help="name printed above the table")
    args = ap.parse_args(argv)
    rows = score(args.truth, args.results)
    out = args.out or (os.path.join(args.results, "score.csv") if os.path.isdir(args.results)
                       else os.path.splitext(args.results)[0] + ".score.csv")
    cm.write_csv(out, HEADER, rows)
    print_table(rows, args.label or args.results)
    s = summary(rows)
    print(f"success {s['k']}/{s['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
