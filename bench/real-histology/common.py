"""Shared pieces of the real-histology benchmark: data loading, the point convention, affine
algebra, resampling and the error measures.

Everything here follows comir's convention, so that a matrix written by these scripts means the
same thing as one written by `comir register`:

* points are (x, y) = (column, row); pixel centres sit at integer coordinates; spacing 1, origin 0;
* a transform maps FIXED points to MOVING points.  In this benchmark the fixed frame is the SHG
  image `A/NAME.png`, which is also the frame of the expert-registered H&E `B/NAME.png`, and the
  moving image is the raw H&E `B_raw_rgb/NAME.png`;
* an affine transform is the homogeneous 3×3 matrix M with T(p) = M[:2, :2] · p + M[:2, 2]
  (the `fixed_to_moving` field of comir's JSON);
* the raw RGB image becomes gray as 0.299 R + 0.587 G + 0.114 B on 8-bit values divided by 255,
  exactly as comir reads an RGB image.

The error measures are those of the brief: the corner error is the mean distance between the
true and the recovered images of the four corners (0, 0), (w, 0), (w, h), (0, h) (w and h, not
w − 1: the MultiRegEval / comir corners); the dense error is the mean distance over a 32×32 grid of
cell centres ((i + 0.5)·w/32, (j + 0.5)·h/32); success is a dense error ≤ 2 % of the width.
"""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DATASET = os.path.join(REPO, "..", "shared", "datasets", "histology-shg-he")
DEFAULT_OUT = os.path.join(REPO, "target", "real-histology")

SUCCESS_FRAC = 0.02  # success ⇔ dense error ≤ 2 % of the image width
GRID_N = 32  # the dense grid is GRID_N × GRID_N points
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def require_dataset(dataset: str) -> None:
    """Exits with a clear message when the dataset folder is absent (it is never in the repo)."""
    need = [os.path.join(dataset, d) for d in ("A", "B", "B_raw_rgb")]
    missing = [d for d in need if not os.path.isdir(d)]
    if missing:
        raise SystemExit(f"dataset not found: {', '.join(missing)} missing; pass --dataset DIR "
                         f"(the histology-shg-he folder of the shared datasets)")


def pair_names(dataset: str) -> list[str]:
    """Names of the pairs that have all three images, sorted."""
    require_dataset(dataset)
    names = []
    for f in sorted(os.listdir(os.path.join(dataset, "A"))):
        if not f.endswith(".png"):
            continue
        name = f[:-4]
        if all(os.path.isfile(os.path.join(dataset, d, f)) for d in ("B", "B_raw_rgb")):
            names.append(name)
    return names


def load_gray(path: str) -> np.ndarray:
    """An image as float64 gray in [0, 1], (rows, cols); RGB with comir's weights."""
    from PIL import Image

    im = Image.open(path)
    if im.mode in ("L", "P", "I;16", "I"):
        arr = np.asarray(im.convert("L") if im.mode == "P" else im, dtype=np.float64)
        return arr / (65535.0 if im.mode.startswith("I") else 255.0)
    rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    return rgb @ np.array(GRAY_WEIGHTS)


def load_pair(dataset: str, name: str):
    """(A = SHG, B = registered H&E, raw = unregistered H&E), all gray float64 in [0, 1]."""
    return tuple(load_gray(os.path.join(dataset, d, name + ".png")) for d in ("A", "B", "B_raw_rgb"))


# ----------------------------------------------------------------------------------------------
# Points and affine algebra
# ----------------------------------------------------------------------------------------------
def corners(w: float, h: float) -> np.ndarray:
    return np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])


def dense_grid(w: float, h: float, n: int = GRID_N) -> np.ndarray:
    """n×n cell centres, row-major (y outer, x inner), as an (n², 2) array of (x, y)."""
    xs = (np.arange(n) + 0.5) * w / n
    ys = (np.arange(n) + 0.5) * h / n
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def evaluation_points(w: float, h: float) -> np.ndarray:
    """The points every score needs: the 4 corners, then the dense grid."""
    return np.concatenate([corners(w, h), dense_grid(w, h)])


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.asarray(pts, dtype=np.float64) @ m[:2, :2].T + m[:2, 2]


def affine_about(a: np.ndarray, c, t) -> np.ndarray:
    """The 3×3 matrix of T(p) = a (p − c) + c + t (ITK's centred affine / Euler form)."""
    a = np.asarray(a, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    m = np.eye(3)
    m[:2, :2] = a
    m[:2, 2] = c + np.asarray(t, dtype=np.float64) - a @ c
    return m


def rotation(theta: float) -> np.ndarray:
    """R(θ) = [[cos, −sin], [sin, cos]] in (x, y) with y pointing down (comir / ITK)."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def decompose(m: np.ndarray) -> dict:
    """Linear part A = R(θ) · [[sx, k·sy], [0, sy]] (a QR decomposition with positive diagonal).

    sx is the length of A's first column (how far one fixed pixel along x reaches in the moving
    image), sy the height of the second column perpendicular to the first, k the shear (the tangent
    of the angle by which the image of the y axis leans) and θ the rotation of the x axis.
    Also returns T(0) = (tx, ty), the matrix's translation column (the image of the origin).
    """
    a = np.asarray(m, dtype=np.float64)[:2, :2]
    sx = math.hypot(a[0, 0], a[1, 0])
    theta = math.atan2(a[1, 0], a[0, 0])
    u = rotation(-theta) @ a  # upper triangular
    sy = u[1, 1]
    return {"scale_x": sx, "scale_y": sy, "anisotropy": sx / sy - 1.0,
            "rotation_deg": math.degrees(theta), "shear": u[0, 1] / sy,
            "tx": float(m[0][2]), "ty": float(m[1][2])}


def best_rigid(m: np.ndarray, pts: np.ndarray, objective: str = "mean") -> tuple[np.ndarray, float]:
    """The rigid transform closest to the affine `m` on `pts`, and its error there.

    objective "mean" minimises the mean point distance (the corner / dense error itself); the
    least-squares (Procrustes) fit starts the search. Returns (3×3 matrix, mean distance).
    """
    from scipy.optimize import minimize

    target = apply_affine(m, pts)
    pc, tc = pts.mean(axis=0), target.mean(axis=0)
    h = (pts - pc).T @ (target - tc)
    theta0 = math.atan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1])

    def rigid(v):
        return affine_about(rotation(v[0]), pc, tc - pc + v[1:])

    def err(v):
        return float(np.mean(np.linalg.norm(apply_affine(rigid(v), pts) - target, axis=1)))

    v0 = np.array([theta0, 0.0, 0.0])
    if objective == "mean":
        res = minimize(err, v0, method="Nelder-Mead",
                       options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 20000})
        v0 = res.x if res.fun < err(v0) else v0
    return rigid(v0), err(v0)


def mean_distance(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(np.linalg.norm(np.asarray(p) - np.asarray(q), axis=1)))


# ----------------------------------------------------------------------------------------------
# Resampling and similarity
# ----------------------------------------------------------------------------------------------
def warp_affine(moving: np.ndarray, m: np.ndarray, shape=None, order: int = 1):
    """out(p) = moving(T(p)) on the fixed grid of `shape`, bilinear by default.

    Returns (out, valid) where valid marks the fixed pixels whose T(p) lies inside the moving
    image's pixel-centre hull [0, w − 1] × [0, h − 1] (elsewhere out is 0).
    """
    from scipy.ndimage import map_coordinates

    h, w = shape if shape is not None else moving.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    q = apply_affine(m, np.stack([xx.ravel(), yy.ravel()], axis=1))
    mh, mw = moving.shape
    valid = (q[:, 0] >= 0) & (q[:, 0] <= mw - 1) & (q[:, 1] >= 0) & (q[:, 1] <= mh - 1)
    out = map_coordinates(moving, [q[:, 1], q[:, 0]], order=order, mode="nearest")
    out = np.where(valid, out, 0.0)
    return out.reshape(h, w), valid.reshape(h, w)


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation (Pearson) of a and b over mask."""
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a - a.mean()
    b = b - b.mean()
    d = math.sqrt(float(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / d) if d > 0 else float("nan")


def sitk_image(arr: np.ndarray):
    """A SimpleITK float32 image with spacing 1, origin 0 and identity direction, set explicitly."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr, dtype=np.float32))
    img.SetSpacing((1.0, 1.0))
    img.SetOrigin((0.0, 0.0))
    img.SetDirection((1.0, 0.0, 0.0, 1.0))
    return img


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def write_transform_json(path: str, m: np.ndarray, kind: str = "affine", **extra) -> None:
    rows = [[float(v) for v in r] for r in np.asarray(m, dtype=np.float64)]
    rows[2] = [0.0, 0.0, 1.0]
    rec = {"kind": kind, "fixed_to_moving": rows, **extra}
    write_text(path, json.dumps(rec, indent=2) + "\n")


def write_text(path: str, text: str) -> None:
    """Writes atomically (temporary file, then rename), creating the folder."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_csv(path: str, header: list[str], rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(header)
    for r in rows:
        wr.writerow([fmt(r.get(k, "")) for k in header])
    write_text(path, buf.getvalue())


def fmt(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "NaN"
        return repr(x)
    return str(x)


def lscpu_model() -> str:
    try:
        import subprocess

        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
