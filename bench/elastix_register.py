#!/usr/bin/env python3
"""Registers the cases exported by `comir eval --export-cases DIR` with elastix.

This is the reference side of the comir-vs-elastix benchmark. It follows MultiRegEval's
`mi_ms.py::register_mi_ms`: elastix's default rigid parameter map (Euler transform,
AdvancedMattesMutualInformation, AdaptiveStochasticGradientDescent), a multi-resolution pyramid,
1024 iterations per resolution, and a multi-start over initial rotations {-0.4, 0, +0.4} rad about
the image centre, keeping the start whose final metric value is lowest.

Conventions (the same as comir's `comir_transform::Rigid2` and ITK's Euler2DTransform): points are
(x, y) = (column, row), pixel centres at integers, spacing 1, origin 0. A transform maps FIXED
points to MOVING points, T(p) = R(θ)(p − c) + c + t with R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]].

Composition of the initial transform: elastix (HowToCombineTransforms = Compose) applies the
initial transform FIRST to a fixed point and the registered transform after it,
    T_total(p) = T_reg(T_init(p)),
which this script checks against elastix's own combination transform on every start, and which
`--selftest` verifies end to end against a known synthetic transform.

Usage:
    elastix_register.py --cases DIR --out elastix.csv [--resolutions 4] [--iterations 1024]
                        [--threads 2] [--limit N] [--seed 0]
    elastix_register.py --selftest [--iterations N]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import tempfile
import time

# Thread count must be fixed before ITK creates its global thread pool; main() also sets it again.
if "--threads" in sys.argv:
    try:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]
    except IndexError:
        pass
else:
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import numpy as np  # noqa: E402

CASES_HEADER = [
    "case", "pair", "level", "width", "height", "fixed", "moving",
    "truth_angle_rad", "truth_tx", "truth_ty", "truth_cx", "truth_cy", "initial_error_px",
]
RESULT_HEADER = [
    "pair", "level", "method", "error_px", "width", "success", "seconds", "initial_error_px",
    "true_angle_deg", "true_tx", "true_ty", "found_angle_deg", "metric_value", "status",
]
START_ANGLES = (-0.4, 0.0, 0.4)
SUCCESS_FRAC = 0.02  # success ⇔ error ≤ 0.02 · width (MultiRegEval)
METHOD = "elastix"


# ----------------------------------------------------------------------------------------------
# Rigid transforms (fixed → moving), the comir / ITK Euler2D convention.
# ----------------------------------------------------------------------------------------------
class Rigid2:
    """T(p) = R(θ)(p − c) + c + t."""

    def __init__(self, angle: float, t, c):
        self.angle = float(angle)
        self.t = np.asarray(t, dtype=np.float64).reshape(2)
        self.c = np.asarray(c, dtype=np.float64).reshape(2)

    def matrix(self) -> np.ndarray:
        s, co = math.sin(self.angle), math.cos(self.angle)
        return np.array([[co, -s], [s, co]])

    def apply(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        return (p - self.c) @ self.matrix().T + self.c + self.t

    def then(self, outer: "Rigid2") -> "Rigid2":
        """outer ∘ self (self applied first), expressed about self's centre."""
        ro = outer.matrix()
        t = ro @ (self.c + self.t - outer.c) + outer.c + outer.t - self.c
        return Rigid2(self.angle + outer.angle, t, self.c)

    def inverse(self) -> "Rigid2":
        ri = Rigid2(-self.angle, [0, 0], self.c).matrix()
        return Rigid2(-self.angle, -(ri @ self.t), self.c)

    def __repr__(self) -> str:
        return (f"Rigid2(angle={self.angle:.6f} rad, t=({self.t[0]:.4f}, {self.t[1]:.4f}), "
                f"c=({self.c[0]:.2f}, {self.c[1]:.2f}))")


def print_summary(method: str, rows: list, out: str) -> None:
    """One stderr line: cases, successes, median and total seconds of `rows`."""
    n = len(rows)
    succ = sum(r["success"] for r in rows)
    secs = [r["seconds"] for r in rows if not math.isnan(r["seconds"])]
    print(f"{method}: {n} cases, {succ} successes ({100.0 * succ / max(n, 1):.1f}%), "
          f"median {float(np.median(secs)) if secs else float('nan'):.2f} s/case, "
          f"total {sum(secs):.1f} s → {out}", file=sys.stderr)


def corners(w: float, h: float) -> np.ndarray:
    # The MultiRegEval / comir corners: w and h, not w − 1 and h − 1.
    return np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])


def corner_error_pts(est_pts: np.ndarray, truth: Rigid2, w: float, h: float) -> float:
    return float(np.mean(np.linalg.norm(est_pts - truth.apply(corners(w, h)), axis=1)))


def corner_error(est: Rigid2, truth: Rigid2, w: float, h: float) -> float:
    return corner_error_pts(est.apply(corners(w, h)), truth, w, h)


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------
def read_float_image(path: str) -> np.ndarray:
    """Reads a single-channel image as a float32 (rows, cols) array; geometry is ignored."""
    import SimpleITK as sitk

    img = sitk.ReadImage(path)
    arr = sitk.GetArrayFromImage(img)
    if arr.ndim == 3:  # vector pixels (rows, cols, channels): take the first channel
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D single-channel image, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_itk(arr: np.ndarray):
    """A float ITK image with spacing 1, origin 0 and identity direction (set explicitly)."""
    import itk

    img = itk.image_from_array(np.ascontiguousarray(arr, dtype=np.float32))
    img.SetSpacing([1.0, 1.0])
    img.SetOrigin([0.0, 0.0])
    d = itk.Matrix[itk.D, 2, 2]()
    d.SetIdentity()
    img.SetDirection(d)
    return img


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------
_METRIC_RE = re.compile(r"Final metric value\s*=\s*(\S+)")


def parameter_object(resolutions: int, iterations: int, seed: int):
    import itk

    po = itk.ParameterObject.New()
    m = po.GetDefaultParameterMap("rigid", resolutions)
    m["NumberOfResolutions"] = [str(resolutions)]
    m["MaximumNumberOfIterations"] = [str(iterations)]
    m["RandomSeed"] = [str(seed)]  # honoured by elastix ≥ 5.0 (verified: same seed → same result)
    m["WriteResultImage"] = ["false"]
    po.AddParameterMap(m)
    return po


def register_one_start(fixed, moving, init_angle: float, center, resolutions: int,
                       iterations: int, threads: int, seed: int):
    """One elastix run from an initial rotation about `center`.

    Returns (composite fixed→moving Rigid2, final metric value, elastix's combination transform).
    """
    import itk

    init = Rigid2(init_angle, [0.0, 0.0], center)
    e = itk.Euler2DTransform[itk.D].New()
    e.SetCenter([float(center[0]), float(center[1])])
    e.SetAngle(float(init_angle))

    with tempfile.TemporaryDirectory(prefix="elastix-") as out_dir:
        reg = itk.ElastixRegistrationMethod[type(fixed), type(moving)].New(fixed, moving)
        reg.SetParameterObject(parameter_object(resolutions, iterations, seed))
        reg.SetInitialTransform(e)
        reg.SetNumberOfThreads(int(threads))
        reg.SetLogToConsole(False)
        reg.SetLogToFile(True)
        reg.SetOutputDirectory(out_dir)
        reg.SetLogFileName("elastix.log")
        reg.Update()
        with open(os.path.join(out_dir, "elastix.log"), errors="replace") as f:
            found = _METRIC_RE.findall(f.read())
    metric = float(found[-1]) if found else float("nan")

    tpo = reg.GetTransformParameterObject()
    pm = tpo.GetParameterMap(tpo.GetNumberOfParameterMaps() - 1)  # the registered Euler map
    if pm["Transform"][0] != "EulerTransform":
        raise RuntimeError(f"unexpected elastix transform {pm['Transform'][0]}")
    how = pm["HowToCombineTransforms"][0] if "HowToCombineTransforms" in pm.keys() else "Compose"
    if how != "Compose":
        raise RuntimeError(f"unexpected HowToCombineTransforms {how}")
    theta, tx, ty = (float(v) for v in pm["TransformParameters"])
    rc = [float(v) for v in pm["CenterOfRotationPoint"]]
    registered = Rigid2(theta, [tx, ty], rc)
    # elastix composes: T_total(p) = T_reg(T_init(p)) (initial transform applied first).
    composite = init.then(registered)
    return composite, metric, reg.GetCombinationTransform()


def check_against_combination(composite: Rigid2, combination, w: float, h: float) -> float:
    """Largest corner distance between our composite and elastix's own combination transform."""
    pts = corners(w, h)
    theirs = np.array([list(combination.TransformPoint([float(x), float(y)])) for x, y in pts])
    return float(np.max(np.linalg.norm(composite.apply(pts) - theirs, axis=1)))


def register_multistart(fixed_arr: np.ndarray, moving_arr: np.ndarray, resolutions: int,
                        iterations: int, threads: int, seed: int, verbose=False):
    """Multi-start elastix registration. Returns (best composite Rigid2, metric, starts)."""
    h, w = fixed_arr.shape
    center = ((w - 1) / 2.0, (h - 1) / 2.0)  # the image centre, as comir's Image::center
    fixed, moving = to_itk(fixed_arr), to_itk(moving_arr)
    best = None
    starts = []
    for a in START_ANGLES:
        composite, metric, comb = register_one_start(
            fixed, moving, a, center, resolutions, iterations, threads, seed)
        gap = check_against_combination(composite, comb, w, h)
        if gap > 1e-3:
            raise RuntimeError(
                f"composite transform disagrees with elastix's combination transform by {gap:.3g} px")
        starts.append((a, composite, metric))
        if verbose:
            print(f"    start {a:+.1f} rad: metric {metric:.5f}  {composite}", file=sys.stderr)
        if not math.isnan(metric) and (best is None or metric < best[1]):
            best = (composite, metric)
    if best is None:
        raise RuntimeError("elastix reported no final metric value for any start")
    return best[0], best[1], starts


# ----------------------------------------------------------------------------------------------
# Cases → results
# ----------------------------------------------------------------------------------------------
def fmt(x) -> str:
    """Floats as comir's CSV writer does (NaN, inf, shortest round-trip repr)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return repr(x)
    return str(x)


def read_cases(cases_dir: str):
    path = os.path.join(cases_dir, "cases.csv")
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        missing = [c for c in CASES_HEADER if c not in (r.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: missing columns {missing}")
        return list(r)


def warm_up(threads: int) -> None:
    """Loads ITK's lazily imported modules and elastix's components outside the timed region."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    img = to_itk(np.exp(-((xx - 14) ** 2 + (yy - 17) ** 2) / 50.0))
    register_one_start(img, img, 0.0, (15.5, 15.5), 1, 2, threads, 0)


def run_cases(cases_dir: str, out: str, resolutions: int, iterations: int, threads: int,
              limit: int | None, seed: int, verbose: bool) -> list[dict]:
    warm_up(threads)

    def register(fixed, moving):
        est, metric, _ = register_multistart(fixed, moving, resolutions, iterations, threads,
                                             seed, verbose)
        return est, metric, None

    return register_cases(cases_dir, out, METHOD, limit, register)


def register_cases(cases_dir: str, out: str, method: str, limit: int | None, register) -> list[dict]:
    """Registers every exported case with `register(fixed, moving) -> (Rigid2, metric value,
    the estimate's corner points or None)` and writes comir-format rows to `out` after each case.
    Corner points, when given, are scored directly (a method whose map is not a Rigid2)."""
    cases = read_cases(cases_dir)
    if limit is not None:
        cases = cases[:limit]
    rows = []
    for i, c in enumerate(cases):
        w, h = int(c["width"]), int(c["height"])
        truth = Rigid2(float(c["truth_angle_rad"]), [float(c["truth_tx"]), float(c["truth_ty"])],
                       [float(c["truth_cx"]), float(c["truth_cy"])])
        # comir reports the displacement G = truth⁻¹ = R(φ)(p − c) + c + R(φ)t_d with φ = −θ and
        # t_d = −t (both about the same centre c).
        row = {
            "pair": c["pair"], "level": int(c["level"]), "method": method, "width": w,
            "initial_error_px": float(c["initial_error_px"]),
            "true_angle_deg": math.degrees(-truth.angle),
            "true_tx": -float(c["truth_tx"]), "true_ty": -float(c["truth_ty"]),
        }
        try:
            fixed = read_float_image(os.path.join(cases_dir, c["fixed"]))
            moving = read_float_image(os.path.join(cases_dir, c["moving"]))
            if fixed.shape != (h, w):
                raise ValueError(f"fixed image is {fixed.shape[1]}x{fixed.shape[0]}, "
                                 f"cases.csv says {w}x{h}")
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                est, metric, pts = register(fixed, moving)
            finally:
                row["seconds"] = time.perf_counter() - t0
                row["cpu_seconds"] = time.process_time() - c0  # log only; not a results column
            err = (corner_error(est, truth, w, h) if pts is None
                   else corner_error_pts(pts, truth, w, h))
            row.update(error_px=err, success=bool(err <= SUCCESS_FRAC * w),
                       found_angle_deg=math.degrees(est.angle), metric_value=metric, status="ok")
        except Exception as e:  # a failed case becomes a failed row, like comir's
            msg = f"{type(e).__name__}: {e}".replace("\n", " ").strip()
            row.setdefault("seconds", float("nan"))
            row.update(error_px=float("nan"), success=False, found_angle_deg=float("nan"),
                       metric_value=float("nan"), status=msg)
        rows.append(row)
        print(f"[{i + 1}/{len(cases)}] {c['case']} {row['pair']} L{row['level']}: "
              f"error {row['error_px']:.3f} px (initial {row['initial_error_px']:.1f}), "
              f"{'ok' if row['success'] else 'FAIL'}, {row['seconds']:.2f} s "
              f"(cpu {row.get('cpu_seconds', float('nan')):.2f} s)"
              + ("" if row["status"] == "ok" else f"  [{row['status']}]"), file=sys.stderr)
        write_results(out, rows)  # keep partial results if interrupted
    return rows


def write_results(path: str, rows: list[dict]) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".elastix-", suffix=".csv")
    with os.fdopen(fd, "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(RESULT_HEADER)
        for r in rows:
            wr.writerow([fmt(r[k]) for k in RESULT_HEADER])
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Case generation (for the self-test and for testing without comir)
# ----------------------------------------------------------------------------------------------
def warp_moving(b: np.ndarray, truth: Rigid2) -> np.ndarray:
    """moving(q) = B(T⁻¹(q)), bilinear, reflecting borders (like comir's Border::Reflect)."""
    import SimpleITK as sitk

    h, w = b.shape
    pad = int(math.ceil(math.hypot(w, h)))
    padded = np.pad(b.astype(np.float32), pad, mode="symmetric")
    src = sitk.GetImageFromArray(padded)
    src.SetOrigin((-float(pad), -float(pad)))
    src.SetSpacing((1.0, 1.0))
    ref = sitk.Image(w, h, sitk.sitkFloat32)
    ref.SetOrigin((0.0, 0.0))
    ref.SetSpacing((1.0, 1.0))
    tinv = truth.inverse()
    e = sitk.Euler2DTransform()
    e.SetCenter(tuple(float(v) for v in tinv.c))
    e.SetAngle(tinv.angle)
    e.SetTranslation(tuple(float(v) for v in tinv.t))
    # sitk.Resample: out(q) = src(transform(q)) = B(T⁻¹(q)).
    out = sitk.Resample(src, ref, e, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out).astype(np.float32)


def write_case(cases_dir: str, writer, case: str, pair: str, level: int, a: np.ndarray,
               b: np.ndarray, truth: Rigid2) -> None:
    """Writes a case the way `comir eval --export-cases` does (float32 TIFFs + a cases.csv row)."""
    import SimpleITK as sitk

    h, w = a.shape
    moving = warp_moving(b, truth)
    fixed_name, moving_name = f"{case}_fixed.tif", f"{case}_moving.tif"
    sitk.WriteImage(sitk.GetImageFromArray(a.astype(np.float32)), os.path.join(cases_dir, fixed_name))
    sitk.WriteImage(sitk.GetImageFromArray(moving), os.path.join(cases_dir, moving_name))
    init_err = corner_error(Rigid2(0.0, [0, 0], truth.c), truth, w, h)
    writer.writerow([case, pair, level, w, h, fixed_name, moving_name, repr(truth.angle),
                     repr(float(truth.t[0])), repr(float(truth.t[1])), repr(float(truth.c[0])),
                     repr(float(truth.c[1])), repr(init_err)])


def synthetic_pair(w=200, h=160, seed=1):
    """A smooth random image and a second 'modality' (a non-monotonic intensity remap of it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for _ in range(14):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(8, 30)
        img += rng.uniform(-1, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    a = (img - img.min()) / (img.max() - img.min())
    b = 1.0 - 4.0 * (a - 0.55) ** 2  # non-monotonic: only MI-like metrics can match it
    return a.astype(np.float32), b.astype(np.float32)


def selftest(iterations: int, threads: int, resolutions: int) -> int:
    a, b = synthetic_pair()
    h, w = a.shape
    c = ((w - 1) / 2, (h - 1) / 2)
    truths = {
        # a rotation that the +0.4 start is needed for (composition of the initial transform matters)
        "plus": Rigid2(0.42, [6.0, -4.0], c),
        "minus": Rigid2(-0.30, [-7.5, 5.0], c),
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="elastix-selftest-") as d:
        with open(os.path.join(d, "cases.csv"), "w", newline="") as f:
            wr = csv.writer(f, lineterminator="\n")
            wr.writerow(CASES_HEADER)
            for i, (name, t) in enumerate(truths.items()):
                write_case(d, wr, f"case{i}", name, 1, a, b, t)
        # 1. direct: every start's composite against the truth, and the wrong order for contrast.
        for name, t in truths.items():
            moving = warp_moving(b, t)
            est, metric, starts = register_multistart(a, moving, resolutions, iterations, threads,
                                                      0, verbose=True)
            err = corner_error(est, t, w, h)
            print(f"selftest {name}: truth {t}\n  found {est}  metric {metric:.5f}  "
                  f"corner error {err:.4f} px", file=sys.stderr)
            if not err < 0.5:
                print(f"  FAIL: corner error {err:.4f} px ≥ 0.5 px", file=sys.stderr)
                ok = False
            # The start on the truth's side of 0 (±0.4 rad) must also land on the truth: this checks
            # the composition with a non-zero initial rotation directly, whichever start won.
            side = math.copysign(0.4, t.angle)
            for a0, comp, _ in starts:
                if a0 == side:
                    e0 = corner_error(comp, t, w, h)
                    print(f"  start {a0:+.1f} rad composite: corner error {e0:.4f} px", file=sys.stderr)
                    if not e0 < 0.5:
                        print(f"  FAIL: start {a0:+.1f} composite is {e0:.4f} px off", file=sys.stderr)
                        ok = False
        # 2. through the files, as in a benchmark run.
        out = os.path.join(d, "elastix.csv")
        rows = run_cases(d, out, resolutions, iterations, threads, None, 0, False)
        with open(out, newline="") as f:
            back = list(csv.DictReader(f))
        assert [r["pair"] for r in back] == list(truths), back
        for r in back:
            e = float(r["error_px"])
            print(f"selftest csv {r['pair']}: error {e:.4f} px, success {r['success']}, "
                  f"found {float(r['found_angle_deg']):.3f}° (true displacement "
                  f"{float(r['true_angle_deg']):.3f}°), {float(r['seconds']):.2f} s", file=sys.stderr)
            if not (e < 0.5 and r["success"] == "true"):
                ok = False
            if abs(float(r["found_angle_deg"]) + float(r["true_angle_deg"])) > 0.5:
                ok = False
        del rows
    # 3. the composition rule itself, on exact numbers: R_b∘R_a about different centres.
    t_init = Rigid2(0.4, [0, 0], c)
    t_reg = Rigid2(-0.1, [3.0, -2.0], (10.0, 20.0))
    p = np.array([[13.0, 7.0], [150.0, 90.0]])
    assert np.allclose(t_init.then(t_reg).apply(p), t_reg.apply(t_init.apply(p)))
    assert np.allclose(t_reg.inverse().apply(t_reg.apply(p)), p)
    print("selftest " + ("PASSED" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", help="folder written by `comir eval --export-cases`")
    ap.add_argument("--out", default="elastix.csv", help="results CSV (comir's columns)")
    ap.add_argument("--resolutions", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N cases")
    ap.add_argument("--seed", type=int, default=0, help="elastix RandomSeed")
    ap.add_argument("--verbose", action="store_true", help="print every start")
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args(argv)

    import itk

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(args.threads)
    itk.MultiThreaderBase.SetGlobalMaximumNumberOfThreads(max(args.threads, 1))

    if args.selftest:
        return selftest(args.iterations, args.threads, args.resolutions)
    if not args.cases:
        ap.error("--cases DIR is required (or --selftest)")
    rows = run_cases(args.cases, args.out, args.resolutions, args.iterations, args.threads,
                     args.limit, args.seed, args.verbose)
    print_summary("elastix", rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
