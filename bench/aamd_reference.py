#!/usr/bin/env python3
"""Registers the cases exported by `comir eval --export-cases DIR` with the Python α-AMD reference.

This is the reference side of the comir-vs-Python α-AMD benchmark (bench/aamd-vs-python). It
imports MultiRegEval's `alpha_amd/` folder (MIDA-group/MultiRegEval at commit
af76fd45788b4eea22b98a9866b68718a7756450, MIT-licensed third-party code that is NOT part of this
repository) from `--reference DIR` or the environment variable AAMD_REFERENCE (DIR is the
`alpha_amd` folder itself, the one holding aamd.py), and calls its `aamd.register_aamd` exactly as
MultiRegEval's evaluate.py does for the Histological data:
    register_aamd(ref_im=<reference image>, flo_im=<transformed image>, iterations=1.0)
i.e. 7 α-levels, pyramid (4, σ 12), (2, σ 5), (1, σ 1), 3000/1000/200 iterations, 1 % sampling,
multi-start {0, −0.4, +0.4} rad, numpy seeded with 1000 (all inside register_aamd).
Here the reference image is comir's FIXED image and the transformed one its MOVING image.

Conventions. register_aamd returns a transform c acting on (row, col) pixel coordinates of the
reference (fixed) image and giving the floating (moving) image's coordinates: c is the
fixed → moving map, the same direction as comir's truth T (T(p) = R(θ)(p − c) + c + t on
(x, y) = (col, row)). Its rigid part has parameters (θ, t_row, t_col) with p ↦ p·M + t,
M = [[cos θ, sin θ], [−sin θ, cos θ]] on row vectors p = (row, col); in (x, y) that is a rotation
by −θ and a translation (t_col, t_row) about the image centre, which is also how MultiRegEval's
`aamd.transform_coords` reads it (rot = −θ, tx = t_col, ty = t_row). The corner error is computed
by applying c itself to the four corners (so no convention is assumed there) and comparing with
T's corners, as elastix_register.py does; the (x, y) Rigid2 built from the parameters is checked
against c on every case. `--selftest` verifies all of this on a synthetic known transform.

Compatibility shims (the reference is left byte-for-byte as published): `np.int` (removed in
NumPy 1.24) is aliased to `int`; the 1-element `cval` array it passes to
`scipy.ndimage.interpolation.map_coordinates` is turned into a scalar (as NumPy < 2 did; NumPy 2
raises); if OpenCV (cv2) or pandas are not installed, placeholder modules stand in for them
(aamd.py imports them at the top but only its example main() uses them).

Usage:
    aamd_reference.py --cases DIR --out aamd-python.csv [--reference DIR] [--iterations 1.0]
                      [--limit N] [--verbose]
    aamd_reference.py --selftest [--reference DIR] [--iterations 1.0]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import types
import warnings

import numpy as np

sys.dont_write_bytecode = True  # no bench/__pycache__ from the imports below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import elastix_register as er  # noqa: E402  (shared cases/CSV/corner-error helpers; no ITK import)

METHOD = "aamd-python"
ENV_VAR = "AAMD_REFERENCE"
REFERENCE_COMMIT = "af76fd45788b4eea22b98a9866b68718a7756450"


# ----------------------------------------------------------------------------------------------
# Loading the reference
# ----------------------------------------------------------------------------------------------
def load_reference(ref_dir: str | None):
    """Imports the reference's aamd module from ref_dir (the alpha_amd folder)."""
    ref_dir = ref_dir or os.environ.get(ENV_VAR)
    if not ref_dir:
        raise SystemExit(f"aamd_reference: no reference folder: pass --reference DIR or set "
                         f"{ENV_VAR}=DIR (MultiRegEval's alpha_amd/ at {REFERENCE_COMMIT[:12]})")
    ref_dir = os.path.abspath(ref_dir)
    if not os.path.isfile(os.path.join(ref_dir, "aamd.py")):
        # Also accept the MultiRegEval checkout root.
        if os.path.isfile(os.path.join(ref_dir, "alpha_amd", "aamd.py")):
            ref_dir = os.path.join(ref_dir, "alpha_amd")
        else:
            raise SystemExit(f"aamd_reference: {ref_dir} has no aamd.py (expected MultiRegEval's "
                             f"alpha_amd/ folder; set {ENV_VAR} or --reference)")
    if not hasattr(np, "int"):
        np.int = int  # removed in NumPy 1.24; the reference uses np.int(...) as a cast
    for name in ("cv2", "pandas"):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.__doc__ = "placeholder: only MultiRegEval's aamd.main() example uses this module"
            sys.modules[name] = stub
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # random_integers, scipy.misc
    # The reference passes cval=np.zeros((1,)) to map_coordinates; NumPy < 2 turned a 1-element
    # array into a scalar there, NumPy ≥ 2 raises. Convert it the way old NumPy did.
    import scipy.ndimage
    import scipy.ndimage.interpolation as ndi_interpolation

    map_coordinates = scipy.ndimage.map_coordinates

    def map_coordinates_scalar_cval(input, coordinates, output=None, order=3, mode="constant",
                                    cval=0.0, prefilter=True):
        if np.ndim(cval) and np.size(cval) == 1:
            cval = np.asarray(cval).reshape(()).item()
        return map_coordinates(input, coordinates, output=output, order=order, mode=mode,
                               cval=cval, prefilter=prefilter)

    ndi_interpolation.map_coordinates = map_coordinates_scalar_cval
    # The reference imports its packages (transforms, distances, ...) as top-level modules.
    sys.path.insert(0, ref_dir)
    import aamd  # noqa: E402

    # register_aamd does not return the winning start's value; record it by wrapping the helper
    # it calls (looked up in the module's globals at call time).
    original = aamd.find_best_transform

    def recording_find_best_transform(ts, scores):
        best_t, best_score = original(ts, scores)
        recording_find_best_transform.last = (best_score, list(scores))
        return best_t, best_score

    recording_find_best_transform.last = (math.nan, [])
    aamd.find_best_transform = recording_find_best_transform
    aamd._comir_recorder = recording_find_best_transform
    return aamd


# ----------------------------------------------------------------------------------------------
# Registration and conventions
# ----------------------------------------------------------------------------------------------
def estimate_to_rigid(c, w: int, h: int) -> er.Rigid2:
    """The (x, y) fixed → moving Rigid2 of the reference's centred transform c (see module doc)."""
    theta, t_row, t_col = (float(v) for v in c.get_params())
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    return er.Rigid2(-theta, [t_col, t_row], centre)


def apply_reference(c, pts_xy: np.ndarray) -> np.ndarray:
    """Applies the reference transform c (on (row, col)) to (x, y) points."""
    rc = np.ascontiguousarray(np.asarray(pts_xy, dtype=np.float64)[:, ::-1])
    return np.asarray(c.transform(rc))[:, ::-1]


def register(aamd, fixed: np.ndarray, moving: np.ndarray, iterations: float):
    """Runs the reference. Returns (c, Rigid2 estimate, corner points of c, metric value)."""
    h, w = fixed.shape
    _, c = aamd.register_aamd(ref_im=fixed.astype(np.float64), flo_im=moving.astype(np.float64),
                              iterations=iterations)
    est = estimate_to_rigid(c, w, h)
    pts = apply_reference(c, er.corners(w, h))
    gap = float(np.max(np.linalg.norm(est.apply(er.corners(w, h)) - pts, axis=1)))
    if gap > 1e-6:
        raise RuntimeError(f"parameter conversion disagrees with the reference transform by {gap:.3g} px")
    metric = float(aamd._comir_recorder.last[0])
    return c, est, pts, metric


def run_cases(aamd, cases_dir: str, out: str, iterations: float, limit: int | None,
              verbose: bool) -> list[dict]:
    def one(fixed, moving):
        _, est, pts, metric = register(aamd, fixed, moving, iterations)
        if verbose:
            print(f"    values per start (0, -0.4, +0.4): {aamd._comir_recorder.last[1]}  {est}",
                  file=sys.stderr)
        return est, metric, pts

    return er.register_cases(cases_dir, out, METHOD, limit, one)


def selftest(aamd, iterations: float) -> int:
    """Known transforms on a synthetic non-square pair, through the same code as a benchmark run.

    The two images are one smooth random image and an affine intensity remap of it. α-AMD
    quantises min-max-normalised intensities into equal-width levels, so only an affine remap
    leaves its level sets unchanged (a non-linear one, even monotonic, or elastix_register's
    non-monotonic one, would test the measure rather than our conventions). The image is
    200×160, so a row/column mix-up shows, and one rotation is 0.3 rad.
    """
    a, _ = er.synthetic_pair()
    b = (0.2 + 0.7 * a).astype(np.float32)  # affine: normalisation makes it identical to a
    h, w = a.shape
    c = ((w - 1) / 2, (h - 1) / 2)
    truths = {
        "rot+": er.Rigid2(0.30, [6.0, -4.0], c),
        "rot-": er.Rigid2(-0.12, [-7.5, 5.0], c),
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="aamd-selftest-") as d:
        with open(os.path.join(d, "cases.csv"), "w", newline="") as f:
            wr = csv.writer(f, lineterminator="\n")
            wr.writerow(er.CASES_HEADER)
            for i, (name, t) in enumerate(truths.items()):
                er.write_case(d, wr, f"case{i}", name, 1, a, b, t)
        out = os.path.join(d, "aamd-python.csv")
        run_cases(aamd, d, out, iterations, None, True)
        with open(out, newline="") as f:
            back = {r["pair"]: r for r in csv.DictReader(f)}
        for name, t in truths.items():
            r = back[name]
            e = float(r["error_px"])
            found = float(r["found_angle_deg"])
            # Contrast: the same estimate read with the angle's sign or the axes flipped.
            est = er.Rigid2(math.radians(found), [0, 0], c)
            wrong_sign = er.corner_error(er.Rigid2(-est.angle, t.t, c), t, w, h)
            print(f"selftest {name}: truth {t}; found angle {found:.3f}° (true displacement "
                  f"{float(r['true_angle_deg']):.3f}°), corner error {e:.4f} px, status "
                  f"{r['status']}; a sign-flipped angle would be {wrong_sign:.1f} px off",
                  file=sys.stderr)
            if not (r["status"] == "ok" and e < 1.0 and r["success"] == "true"):
                print(f"  FAIL: corner error {e:.4f} px ≥ 1 px (or not a success)", file=sys.stderr)
                ok = False
            if abs(found + float(r["true_angle_deg"])) > 0.5:
                print("  FAIL: found angle is not the negative of the displacement angle",
                      file=sys.stderr)
                ok = False
    # The parameter conversion on exact numbers, independent of any registration.
    import transforms  # the reference's package (on sys.path after load_reference)

    rig = transforms.Rigid2DTransform()
    rig.set_params(np.array([0.3, -4.0, 7.0]))
    cc = transforms.make_image_centered_transform(rig, np.zeros((h, w)), np.zeros((h, w)))
    pts = np.array([[13.0, 7.0], [150.0, 90.0], [0.0, 0.0]])
    assert np.allclose(apply_reference(cc, pts), estimate_to_rigid(cc, w, h).apply(pts))
    print("selftest " + ("PASSED" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", help="folder written by `comir eval --export-cases`")
    ap.add_argument("--out", default="aamd-python.csv", help="results CSV (comir's columns)")
    ap.add_argument("--reference", help=f"MultiRegEval's alpha_amd/ folder (default: ${ENV_VAR})")
    ap.add_argument("--iterations", type=float, default=1.0,
                    help="register_aamd's iteration factor (MultiRegEval: 1.0 Histological, "
                         "0.3 Zurich/Cytological)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N cases")
    ap.add_argument("--verbose", action="store_true", help="print every start's value")
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args(argv)

    aamd = load_reference(args.reference)
    if args.selftest:
        return selftest(aamd, args.iterations)
    if not args.cases:
        ap.error("--cases DIR is required (or --selftest)")
    if not os.path.isfile(os.path.join(args.cases, "cases.csv")):
        raise SystemExit(f"aamd_reference: {args.cases}/cases.csv not found (write it with "
                         f"`comir eval ... --export-cases DIR`)")
    rows = run_cases(aamd, args.cases, args.out, args.iterations, args.limit, args.verbose)
    er.print_summary(METHOD, rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
