#!/usr/bin/env python3
"""Compares registration results CSVs (comir's `eval --out` and elastix_register.py's).

Usage: compare.py RESULTS.csv [RESULTS.csv ...] [--reference elastix]

Every CSV has comir's result columns
    pair,level,method,error_px,width,success,seconds,initial_error_px,true_angle_deg,true_tx,
    true_ty,found_angle_deg,metric_value,status
and may hold several methods. For each method it prints the number of cases, the success rate
overall and per level, the median corner error (a failed case counts as +inf, as in comir), the
median and total seconds. Then, for every other method against the reference method (elastix):
    time ratio    = reference median s / method median s   (> 1: the method is faster)
    success delta = method success % − reference success % (percentage points; > 0: better)
both computed on the cases (pair, level) the two methods share. The last lines are
    time_ratio_vs_elastix[<method>]=R
    success_delta_vs_elastix[<method>]=D

Per image size (bench/register-vs-elastix --sizes):
    compare.py --size 256=comir.csv,elastix.csv --size 512=... [--reference elastix]
prints one table (size, comir method, cases, comir and reference median s, time ratio, comir and
reference success %, on the shared cases of each size), then
    success_delta_vs_elastix[<method>@<size>]=D   (all rows)
    time_ratio_vs_elastix[<method>@<size>]=R      (all rows; these are the last lines)
"""

from __future__ import annotations

import argparse
import csv
import math
import sys


def parse_float(s: str) -> float:
    s = (s or "").strip()
    if s == "":
        return math.nan
    try:
        return float(s)  # accepts NaN, nan, inf
    except ValueError:
        return math.nan


def parse_bool(s: str) -> bool:
    return (s or "").strip().lower() in ("true", "1", "yes")


def median(v: list[float]) -> float:
    v = sorted(v)
    n = len(v)
    if n == 0:
        return math.nan
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def load(paths: list[str]) -> dict[str, dict[tuple[str, int], dict]]:
    """method → {(pair, level): row}. A later duplicate of a case replaces an earlier one."""
    by_method: dict[str, dict[tuple[str, int], dict]] = {}
    for path in paths:
        with open(path, newline="") as f:
            r = csv.DictReader(f)
            need = {"pair", "level", "method", "error_px", "success", "seconds"}
            missing = need - set(r.fieldnames or [])
            if missing:
                raise SystemExit(f"{path}: missing columns {sorted(missing)}")
            for row in r:
                err = parse_float(row["error_px"])
                case = {
                    "pair": row["pair"],
                    "level": int(row["level"]),
                    "method": row["method"],
                    "error": math.inf if math.isnan(err) else err,
                    "success": parse_bool(row["success"]),
                    "seconds": parse_float(row["seconds"]),
                    "status": row.get("status", ""),
                }
                by_method.setdefault(row["method"], {})[(case["pair"], case["level"])] = case
    return by_method


def stats(rows: list[dict]) -> dict:
    n = len(rows)
    succ = sum(r["success"] for r in rows)
    secs = [r["seconds"] for r in rows if not math.isnan(r["seconds"])]
    return {
        "cases": n,
        "success": 100.0 * succ / n if n else math.nan,
        "median_error": median([r["error"] for r in rows]),
        "median_s": median(secs),
        "total_s": sum(secs),
        "failed": sum(r["status"] not in ("", "ok") for r in rows),
    }


def fnum(x: float, digits: int = 2) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def print_table(head: list[str], table: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(head))
    print(line(["-" * w for w in widths]))
    for r in table:
        print(line(r))


def size_table(specs: list[str], ref: str) -> int:
    """One row per (size, method ≠ ref): the --size mode (see the module doc)."""
    table, final = [], []
    for spec in specs:
        label, _, files = spec.partition("=")
        paths = [p for p in files.split(",") if p]
        if not label or not paths:
            raise SystemExit(f"--size {spec!r}: expected SIZE=RESULTS.csv[,RESULTS.csv ...]")
        data = load(paths)
        if ref not in data:
            raise SystemExit(f"--size {label}: no '{ref}' rows in {', '.join(paths)}")
        for m in data:
            if m == ref:
                continue
            shared = sorted(set(data[m]) & set(data[ref]))
            if not shared:
                table.append([label, m, "0", "nan", "nan", "nan", "nan", "nan"])
                final.append((m, label, math.nan, math.nan))
                continue
            sm = stats([data[m][k] for k in shared])
            sr = stats([data[ref][k] for k in shared])
            ratio = sr["median_s"] / sm["median_s"] if sm["median_s"] > 0 else math.nan
            delta = sm["success"] - sr["success"]
            table.append([label, m, str(len(shared)), fnum(sm["median_s"], 3), fnum(sr["median_s"], 3),
                          fnum(ratio, 2), fnum(sm["success"], 1), fnum(sr["success"], 1)])
            final.append((m, label, ratio, delta))
    if not table:
        raise SystemExit("--size: no method besides the reference")
    print_table(["size", "comir_method", "cases", "comir_median_s", f"{ref}_median_s",
                 "time_ratio", "comir_success%", f"{ref}_success%"], table)
    print(f"(time_ratio = {ref} median s / comir median s, > 1: comir is faster; "
          "both on the shared cases of that size)")
    for m, label, _, delta in final:
        print(f"success_delta_vs_{ref}[{m}@{label}]={fnum(delta, 1)}")
    for m, label, ratio, _ in final:
        print(f"time_ratio_vs_{ref}[{m}@{label}]={fnum(ratio, 3)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="*", help="results CSVs")
    ap.add_argument("--reference", default="elastix", help="reference method (default elastix)")
    ap.add_argument("--size", action="append", default=[], metavar="SIZE=CSV,CSV",
                    help="per-size summary mode (repeat per size); replaces the positional CSVs")
    args = ap.parse_args(argv)

    if args.size:
        if args.csv:
            ap.error("give either RESULTS.csv files or --size SIZE=CSV,CSV, not both")
        return size_table(args.size, args.reference)
    if not args.csv:
        ap.error("no results CSVs given")
    data = load(args.csv)
    if not data:
        raise SystemExit("no results rows")
    methods = list(data)
    levels = sorted({lvl for rows in data.values() for (_, lvl) in rows})

    # ---- per-method table --------------------------------------------------------------------
    head = ["method", "cases", "success%"] + [f"L{lvl}%" for lvl in levels] + [
        "median_err_px", "median_s", "total_s", "errors"]
    table = []
    for m in methods:
        rows = list(data[m].values())
        s = stats(rows)
        per_level = []
        for lvl in levels:
            lr = [r for r in rows if r["level"] == lvl]
            per_level.append(f"{fnum(stats(lr)['success'], 1)} ({len(lr)})" if lr else "-")
        table.append([m, str(s["cases"]), fnum(s["success"], 1)] + per_level + [
            fnum(s["median_error"], 3), fnum(s["median_s"], 3), fnum(s["total_s"], 1),
            str(s["failed"])])
    print_table(head, table)
    print("(L<n>%: success rate at level n (cases); median error counts failures as inf; "
          "errors: cases whose status is not ok)")

    # ---- each method vs the reference, on shared cases ----------------------------------------
    ref = args.reference
    if ref not in data:
        print(f"\nno '{ref}' rows: nothing to compare against", file=sys.stderr)
        return 1
    final = []
    print()
    for m in methods:
        if m == ref:
            continue
        shared = sorted(set(data[m]) & set(data[ref]))
        if not shared:
            print(f"{m} vs {ref}: no shared cases (pair, level)")
            final.append((m, math.nan, math.nan))
            continue
        sm = stats([data[m][k] for k in shared])
        sr = stats([data[ref][k] for k in shared])
        ratio = sr["median_s"] / sm["median_s"] if sm["median_s"] > 0 else math.nan
        delta = sm["success"] - sr["success"]
        note = "" if len(shared) == len(data[m]) == len(data[ref]) else (
            f" (on {len(shared)} shared cases of {len(data[m])} / {len(data[ref])})")
        print(f"{m} vs {ref}{note}: median {fnum(sm['median_s'], 3)} s vs {fnum(sr['median_s'], 3)} s "
              f"→ {ref} takes {fnum(ratio, 2)}× as long; success {fnum(sm['success'], 1)}% vs "
              f"{fnum(sr['success'], 1)}% → {delta:+.1f} points")
        final.append((m, ratio, delta))
    for m, ratio, _ in final:
        print(f"time_ratio_vs_{ref}[{m}]={fnum(ratio, 3)}")
    for m, _, delta in final:
        print(f"success_delta_vs_{ref}[{m}]={fnum(delta, 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
