"""The Python package against the command line on the same pairs, in one invocation.

For each case, the median of --runs runs of
  * cli:     `comir register --fixed F --moving M --out t.json ...` (a process: start, load,
             register, write),
  * python:  comir.load_image x 2, comir.register, Registration.save (the same work in-process),
  * compute: the registration's own seconds (the `seconds` of the result),
and the binding's overhead: (python call - compute) / python call, where "python call" is
comir.register on arrays already in memory, without the confidence (not part of `seconds`). Also the cost of taking a numpy
array in (one pass over it, converting to float32) and of handing one out (none: the Rust buffer
becomes the array's memory). Prints a table and `python_overhead_percent[CASE]=` lines.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import comir


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--comir", required=True, help="the comir executable (release)")
    p.add_argument("--datasets", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args()
    repo = Path(__file__).resolve().parents[1]
    demo = repo / "data" / "demo"
    cases = [("mr-182x218 mi rigid", demo / "A" / "axial_080.png", demo / "B" / "axial_080.png", ["--method", "mi"]),
             ("mr-182x218 aamd model", demo / "A" / "axial_080.png", demo / "B" / "axial_080.png",
              ["--method", "aamd", "--model", "mni152-t1t2"])]
    hist = Path(args.datasets) / "histology-shg-he"
    if (hist / "B_raw_rgb").is_dir():
        name = "X06Y06.png"
        cases += [("he-512 mi similarity,affine", hist / "A" / name, hist / "B_raw_rgb" / name,
                   ["--method", "mi", "--transform", "similarity,affine"])]
    else:
        print(f"(no {hist}: the histology case is left out)", file=sys.stderr)
    print(f"comir {comir.__version__}, kernels {comir.isa}; {args.runs} runs each, medians")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "t.json"
        for label, f, m, flags in cases:
            kw = dict(zip([k.lstrip("-") for k in flags[::2]], flags[1::2]))
            cmd = [args.comir, "register", "--fixed", str(f), "--moving", str(m), "--out", str(out), *flags]
            subprocess.run(cmd, check=True, capture_output=True)  # warm the file cache
            cli = median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), args.runs)

            def whole():
                a, b = comir.load_image(f), comir.load_image(m)
                comir.register(a, b, **kw).save(out)

            whole()
            py = median_time(whole, args.runs)
            a, b = comir.load_image(f), comir.load_image(m)
            load = median_time(lambda: (comir.load_image(f), comir.load_image(m)), args.runs)
            calls, computes = [], []
            for _ in range(args.runs):
                # Without the confidence (whose milliseconds are not in `seconds`): the call
                # minus the registration is what the binding adds.
                t0 = time.perf_counter()
                r = comir.register(a, b, confidence=False, **kw)
                calls.append(time.perf_counter() - t0)
                computes.append(r.seconds)
            call, compute = statistics.median(calls), statistics.median(computes)
            overhead = 100 * (call - compute) / call
            rows.append((label, cli, py, call, compute, overhead))
    # Many pairs through one model: a loaded comir.Model is not read again per call.
    loaded = comir.Model.load("mni152-t1t2")
    a, b = comir.load_image(demo / "A" / "axial_080.png"), comir.load_image(demo / "B" / "axial_080.png")
    calls, computes = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        r = comir.register(a, b, method="aamd", model=loaded, confidence=False)
        calls.append(time.perf_counter() - t0)
        computes.append(r.seconds)
    call, compute = statistics.median(calls), statistics.median(computes)
    rows.append(("mr-182x218 aamd loaded Model", float("nan"), float("nan"), call, compute,
                 100 * (call - compute) / call))
    print(f"{'case':30} {'cli s':>8} {'python s':>9} {'ratio':>6} {'call s':>8} {'compute s':>10} {'overhead':>9}")
    for label, cli, py, call, compute, overhead in rows:
        print(f"{label:30} {cli:8.3f} {py:9.3f} {py / cli:6.2f} {call:8.3f} {compute:10.3f} {overhead:8.1f}%")
    # Arrays in and out.
    img = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    reg = comir.register(img[:256, :256], img[:256, :256], confidence=False)
    t_in = median_time(lambda: reg.warp(img, shape=(1, 1)), args.runs)
    out = reg.warp(img)
    owner = type(out.base).__name__ if out.base is not None else "itself"
    print(f"\n2048² float32 in: {1000 * t_in:.2f} ms (one pass, {img.nbytes / t_in / 1e9:.1f} GB/s); "
          f"out: no copy (the array's memory is owned by a {owner}, comir's buffer)")
    for label, *_, overhead in rows:
        print(f"python_overhead_percent[{label}]={overhead:.2f}")


if __name__ == "__main__":
    main()
