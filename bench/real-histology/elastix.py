#!/usr/bin/env python3
"""Registers the real histology task with elastix, the reference the comir results are compared with.

Each pair: the raw H&E (`B_raw_rgb/NAME.png`, gray by comir's weights, moving) onto the SHG
(`A/NAME.png`, fixed), both as float images in [0, 1] with spacing 1, origin 0.  Three pipelines,
each run from scratch on every pair and timed as a whole (wall clock around the registration):

* `rigid`:   elastix's default rigid parameter map (Euler transform, AdvancedMattesMutualInformation,
             AdaptiveStochasticGradientDescent, 256 iterations, 4 resolutions);
* `affine`:  the default rigid map, then the default affine map (AdvancedMattesMutualInformation,
             4 resolutions each);
* `bspline`: rigid, affine, then elastix's default B-spline map with a final control-point grid
             spacing of 64 px (--grid-spacing; MI plus a bending-energy penalty, 4 resolutions).

Only NumberOfResolutions, RandomSeed (fixed, for repeatability) and WriteResultImage (off) are
changed from the defaults: this is elastix as a user would first run it.

Conversion to the fixed→moving convention.  elastix maps fixed points to moving points, like comir,
and chains parameter maps by composition, the earlier map applied FIRST to a fixed point
(HowToCombineTransforms = Compose): T(p) = T_affine(T_rigid(p)), i.e. M = M_affine · M_rigid.  For
`rigid` and `affine` the 3×3 matrix is built from the parameter maps this way and checked on every
pair against elastix's own combination transform (it must agree within 1e-3 px); results are written
as comir-style `NAME.json`.  For `bspline` the combination transform itself is evaluated at the
scoring points (the 4 corners and the 32×32 grid) and written as `NAME.points.csv`, with a
`NAME.json` that carries the kind and the seconds.  `--selftest` checks all of this on a synthetic
pair with a known affine: the composed matrix must recover it, and elastix's own result image
(moving resampled by elastix) must equal the moving image resampled by our matrix / points.

Outputs under --out: `elastix-<pipeline>/NAME.json` (+ `.points.csv`), `elastix-<pipeline>/score.csv`
(score.py's columns) and `elastix-summary.csv`.

Usage:
    elastix.py [--dataset DIR] [--truth DIR] [--out DIR] [--pipelines rigid,affine,bspline]
               [--grid-spacing 64] [--threads 2] [--only NAME ...] [--score-only]
    elastix.py --selftest
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

# The thread count must be fixed before ITK creates its global thread pool.
if "--threads" in sys.argv:
    try:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]
    except IndexError:
        pass
else:
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as cm  # noqa: E402
import score as sc  # noqa: E402

PIPELINES = {"rigid": ("rigid",), "affine": ("rigid", "affine"),
             "bspline": ("rigid", "affine", "bspline")}
RESOLUTIONS = 4
SEED = 0
SUMMARY_HEADER = ["pipeline", "success", "pairs", "median_dense_px", "mean_seconds",
                  "mean_cpu_seconds", "threads", "grid_spacing_px"]


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


def parameter_object(stages: tuple, grid_spacing: float, write_result: bool):
    import itk

    po = itk.ParameterObject.New()
    for stage in stages:
        if stage == "bspline":
            m = po.GetDefaultParameterMap("bspline", RESOLUTIONS, float(grid_spacing))
        else:
            m = po.GetDefaultParameterMap(stage, RESOLUTIONS)
        m["RandomSeed"] = [str(SEED)]
        m["WriteResultImage"] = ["true" if write_result else "false"]
        po.AddParameterMap(m)
    return po


def map_matrix(pm) -> np.ndarray:
    """The 3×3 fixed→moving matrix of one elastix Euler or affine parameter map."""
    kind = pm["Transform"][0]
    p = [float(v) for v in pm["TransformParameters"]]
    c = np.array([float(v) for v in pm["CenterOfRotationPoint"]])
    if kind == "EulerTransform":  # (θ, tx, ty): T(p) = R(θ)(p − c) + c + t
        return cm.affine_about(cm.rotation(p[0]), c, p[1:3])
    if kind == "AffineTransform":  # (a11, a12, a21, a22, tx, ty): T(p) = A(p − c) + c + t
        return cm.affine_about(np.array(p[:4]).reshape(2, 2), c, p[4:6])
    raise ValueError(f"not a matrix transform: {kind}")


def composed_matrix(tpo) -> np.ndarray:
    """M = M_last · … · M_first (elastix's Compose: the first map is applied first)."""
    m = np.eye(3)
    for i in range(tpo.GetNumberOfParameterMaps()):
        pm = tpo.GetParameterMap(i)
        how = pm["HowToCombineTransforms"][0] if "HowToCombineTransforms" in pm.keys() else "Compose"
        if how != "Compose":
            raise RuntimeError(f"unexpected HowToCombineTransforms {how}")
        m = map_matrix(pm) @ m
    return m


def map_points(transform, pts: np.ndarray) -> np.ndarray:
    return np.array([list(transform.TransformPoint([float(x), float(y)])) for x, y in pts])


def register(fixed: np.ndarray, moving: np.ndarray, stages: tuple, grid_spacing: float,
             write_result: bool = False) -> dict:
    """One elastix run. Returns {"matrix" (None for bspline), "points" (evaluation points and
    their images), "seconds", "result_image" (if asked)}."""
    import itk

    h, w = fixed.shape
    f, mv = to_itk(fixed), to_itk(moving)
    with tempfile.TemporaryDirectory(prefix="elastix-") as out_dir:
        t0, c0 = time.perf_counter(), time.process_time()
        reg = itk.ElastixRegistrationMethod[type(f), type(mv)].New(f, mv)
        reg.SetParameterObject(parameter_object(stages, grid_spacing, write_result))
        # No reg.SetNumberOfThreads: with the multi-metric B-spline map it crashes elastix
        # (ITKElastix issue #160); main() caps ITK's global thread count instead, for all pipelines.
        reg.SetLogToConsole(False)
        reg.SetLogToFile(True)
        reg.SetOutputDirectory(out_dir)
        reg.SetLogFileName("elastix.log")
        reg.Update()
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0
    pts = cm.evaluation_points(w, h)
    comb = reg.GetCombinationTransform()
    theirs = map_points(comb, pts)
    out = {"seconds": seconds, "cpu_seconds": cpu_seconds, "points": pts, "mapped": theirs,
           "matrix": None}
    if "bspline" not in stages:
        m = composed_matrix(reg.GetTransformParameterObject())
        gap = float(np.max(np.linalg.norm(cm.apply_affine(m, pts) - theirs, axis=1)))
        if gap > 1e-3:
            raise RuntimeError(f"composed matrix disagrees with elastix's combination transform "
                               f"by {gap:.3g} px")
        out["matrix"] = m
    if write_result:
        out["result_image"] = np.asarray(reg.GetOutput(), dtype=np.float64)
        out["combination"] = comb
        out["elastix"] = reg  # the combination transform lives inside it: keep it alive
    return out


def write_result(folder: str, name: str, pipeline: str, r: dict) -> None:
    extra = {"method": f"elastix-{pipeline}", "seconds": r["seconds"],
             "cpu_seconds": r["cpu_seconds"]}
    if r["matrix"] is not None:
        cm.write_transform_json(os.path.join(folder, name + ".json"), r["matrix"],
                                kind=pipeline, **extra)
        return
    import json

    cm.write_text(os.path.join(folder, name + ".json"),
                  json.dumps({"kind": pipeline, **extra}, indent=2) + "\n")
    lines = ["x,y,mx,my"] + [f"{p[0]!r},{p[1]!r},{q[0]!r},{q[1]!r}"
                             for p, q in zip(r["points"].tolist(), r["mapped"].tolist())]
    cm.write_text(os.path.join(folder, name + ".points.csv"), "\n".join(lines) + "\n")


def warm_up() -> None:
    """Loads ITK's lazily imported modules and elastix's components outside the timed region."""
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float64)
    img = np.exp(-((xx - 60) ** 2 + (yy - 65) ** 2) / 300.0) + 0.3 * np.sin(xx / 7) * np.cos(yy / 9)
    register(img, img, PIPELINES["bspline"], 32.0)


def run(dataset: str, truth: str, out: str, pipelines: list[str], grid_spacing: float,
        threads: int, only: list[str] | None, score_only: bool = False) -> int:
    names = cm.pair_names(dataset)
    if only:
        names = [n for n in names if n in only]
    if not score_only:
        warm_up()
    summaries = []
    for pipeline in pipelines:
        folder = os.path.join(out, f"elastix-{pipeline}")
        for i, name in enumerate(names if not score_only else []):
            a, _, raw = cm.load_pair(dataset, name)
            try:
                r = register(a, raw, PIPELINES[pipeline], grid_spacing)
                write_result(folder, name, pipeline, r)
                msg = f"{r['seconds']:.1f} s (cpu {r['cpu_seconds']:.1f} s)"
            except RuntimeError as e:  # a failed registration is a failed pair, as in comir
                msg = f"FAILED: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                for ext in (".json", ".points.csv"):
                    if os.path.exists(os.path.join(folder, name + ext)):
                        os.remove(os.path.join(folder, name + ext))
            print(f"[{pipeline} {i + 1}/{len(names)}] {name}: {msg}", file=sys.stderr)
        rows = sc.score(truth, folder)
        if only:
            rows = [r for r in rows if r["name"] in only]
        cm.write_csv(os.path.join(folder, "score.csv"), sc.HEADER, rows)
        sc.print_table(rows, f"elastix {pipeline}")
        s = sc.summary(rows)
        summaries.append({"pipeline": pipeline, "success": s["k"], "pairs": s["n"],
                          "median_dense_px": s["median_dense_px"],
                          "mean_seconds": s["mean_seconds"],
                          "mean_cpu_seconds": s["mean_cpu_seconds"],
                          "threads": threads,
                          "grid_spacing_px": grid_spacing if pipeline == "bspline" else ""})
        cm.write_csv(os.path.join(out, "elastix-summary.csv"), SUMMARY_HEADER, summaries)
    print(f"\n{'pipeline':<10} {'success':>9} {'median dense px':>16} {'mean s/pair':>12} "
          f"{'cpu s/pair':>11}")
    for s in summaries:
        print(f"{s['pipeline']:<10} {s['success']:>4}/{s['pairs']:<4} {s['median_dense_px']:>16.2f} "
              f"{s['mean_seconds']:>12.2f} {s['mean_cpu_seconds']:>11.2f}")
    print(f"({threads} threads, {cm.lscpu_model()})")
    return 0


# ----------------------------------------------------------------------------------------------
# Self-test
# ----------------------------------------------------------------------------------------------
def selftest(grid_spacing: float) -> int:
    """A synthetic pair with a known affine: does the converted elastix result recover it?

    Fixed = a smooth random image; moving(q) = g(fixed(T⁻¹ q)) for a known affine T (shear,
    anisotropy, rotation, shift) and a monotonic intensity remap g (so MI is needed but easy).
    Checks, per pipeline: the composed matrix / mapped points against T (affine and B-spline must
    recover it; rigid must land near the best rigid fit), the composed matrix against elastix's
    combination transform (inside register()), and elastix's own result image against the moving
    image resampled by our matrix — which would fail if the matrix were the inverse.
    """
    rng = np.random.default_rng(3)
    h = w = 192
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for _ in range(40):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 16)
        img += rng.uniform(-1, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    fixed = (img - img.min()) / (img.max() - img.min())
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    a = cm.rotation(math.radians(4.0)) @ np.array([[0.93, 0.04], [0.0, 1.02]])
    truth = cm.affine_about(a, c, [6.0, -4.0])
    moving, _ = cm.warp_affine(fixed, np.linalg.inv(truth), fixed.shape, order=3)
    moving = np.sqrt(np.clip(moving, 0, 1))  # a different "modality"
    g = cm.dense_grid(w, h)
    warm_up()
    _, rigid_floor = cm.best_rigid(truth, g)
    ok = True
    for pipeline, stages in PIPELINES.items():
        r = register(fixed, moving, stages, grid_spacing / 512 * w, write_result=True)
        pts, mapped = r["points"], r["mapped"]
        err = cm.mean_distance(mapped[4:], cm.apply_affine(truth, pts[4:]))
        # elastix's result image is moving(T(p)) where T(p) is inside moving; compare inside.
        if r["matrix"] is not None:
            ours, valid = cm.warp_affine(moving, r["matrix"], fixed.shape, order=3)
        else:
            comb = r["combination"]
            full = map_points(comb, np.stack([xx.ravel(), yy.ravel()], axis=1))
            from scipy.ndimage import map_coordinates

            ours = map_coordinates(moving, [full[:, 1], full[:, 0]], order=3, mode="nearest")
            ours = ours.reshape(h, w)
            valid = ((full[:, 0] >= 1) & (full[:, 0] <= w - 2) & (full[:, 1] >= 1)
                     & (full[:, 1] <= h - 2)).reshape(h, w)
        from scipy.ndimage import binary_erosion

        valid = binary_erosion(valid, iterations=3)
        img_gap = float(np.mean(np.abs(ours - r["result_image"])[valid]))
        # elastix's stochastic optimiser stops a fraction of a pixel short, and the B-spline's
        # freedom adds ~1 px of local wobble on this small image; the inverse matrix (the wrong
        # convention) would be ~16 px off, and the result-image check is exact either way.
        limit = {"rigid": rigid_floor + 0.5, "affine": 1.0, "bspline": 2.0}[pipeline]
        good = err < limit and img_gap < 2e-3
        ok &= good
        print(f"selftest {pipeline}: dense error vs the known affine {err:.3f} px (limit "
              f"{limit:.2f}; best rigid possible {rigid_floor:.2f}), |result image − ours| "
              f"{img_gap:.2e}, {r['seconds']:.1f} s  {'ok' if good else 'FAIL'}", file=sys.stderr)
        if r["matrix"] is not None:
            inv_err = cm.mean_distance(cm.apply_affine(np.linalg.inv(r["matrix"]), pts[4:]),
                                       cm.apply_affine(truth, pts[4:]))
            print(f"    (the inverse matrix would be {inv_err:.2f} px off)", file=sys.stderr)
    # The composition order on exact numbers: M_affine · M_rigid applies the rigid map first.
    r1 = cm.affine_about(cm.rotation(0.2), (10.0, 20.0), (3.0, -1.0))
    a1 = cm.affine_about(np.array([[1.1, 0.1], [0.0, 0.9]]), (50.0, 40.0), (2.0, 5.0))
    p = np.array([[13.0, 7.0], [150.0, 90.0]])
    assert np.allclose(cm.apply_affine(a1 @ r1, p), cm.apply_affine(a1, cm.apply_affine(r1, p)))
    print("selftest " + ("PASSED" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=cm.DEFAULT_DATASET, help="the histology-shg-he folder")
    ap.add_argument("--truth", default=cm.DEFAULT_OUT, help="the --out folder of truth.py")
    ap.add_argument("--out", default=cm.DEFAULT_OUT, help="output folder")
    ap.add_argument("--pipelines", default="rigid,affine,bspline")
    ap.add_argument("--grid-spacing", type=float, default=64.0,
                    help="final B-spline control-point spacing in px")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="only these pair names")
    ap.add_argument("--score-only", action="store_true",
                    help="do not register: score the results already under --out again")
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args(argv)

    import itk

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(args.threads)
    itk.MultiThreaderBase.SetGlobalMaximumNumberOfThreads(max(args.threads, 1))
    if args.selftest:
        return selftest(args.grid_spacing)
    pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    bad = [p for p in pipelines if p not in PIPELINES]
    if bad:
        ap.error(f"unknown pipelines {bad}; choose from {list(PIPELINES)}")
    return run(args.dataset, args.truth, args.out, pipelines, args.grid_spacing, args.threads,
               args.only, args.score_only)


if __name__ == "__main__":
    sys.exit(main())
