#!/usr/bin/env python3
"""Would a normalised-gradient-field refinement fix affine MI on CT and MR?

Mattes MI's optimum between a CT slice and its MR is a scale about 4 % off the truth (the CT's
bright skull pairs with the MR's bright scalp; docs/results.md). The normalised gradient field
(NGF) metric of Haber and Modersitzki (2006), the mean over the fixed image of
`((∇f·∇m)/(‖∇f‖_ε ‖∇m‖_ε))²` with `∇m` the gradient of the *warped* moving image (`Mᵀ ∇m(Mx+t)`)
and ε the mean gradient magnitude of each image, compares edge directions only, so intensities
cannot pair. This experiment measures, on aligned pairs displaced by a known random affine
transform (rotation ±5°, scales and shear drawn in ±[2.5(L−1), 2.5L) % for a level L in 1–4,
translation ±8 px), the mean corner error of

* `MI`: SimpleITK's Mattes MI affine registration (32 bins, every pixel, regular-step gradient
  descent, shrink 4-2-1), a stand-in for an MI affine result, and
* `MI+NGF`: the same result refined by maximising NGF over the six affine parameters (Powell, at
  half and then full resolution).

Success is a mean corner error within 2 % of the width. It is an experiment (derivative-free,
slow), not a registration method of comir.

    ngf_refinement.py DATASETS/NAME PAIRS [SEED]

Needs numpy, scipy, pillow and SimpleITK.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage, optimize


def gray(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def warp(img: np.ndarray, m: np.ndarray, t: np.ndarray) -> np.ndarray:
    """`out(x) = img(m x + t)`, points as (row, column), bilinear, zero outside."""
    return ndimage.affine_transform(img, m, offset=t, order=1, mode="constant", cval=0.0)


def corner_error(m1, t1, m2, t2, shape) -> float:
    h, w = shape
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], float)
    return float(np.linalg.norm((corners @ m1.T + t1) - (corners @ m2.T + t2), axis=1).mean())


def mi_affine(fixed: np.ndarray, moving: np.ndarray):
    """SimpleITK's Mattes MI affine registration; the fixed-to-moving map in (row, column)."""
    f = sitk.GetImageFromArray(fixed.astype(np.float32))
    m = sitk.GetImageFromArray(moving.astype(np.float32))
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(32)
    r.SetMetricSamplingStrategy(r.NONE)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 300, relaxationFactor=0.7)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([4, 2, 1])
    r.SetSmoothingSigmasPerLevel([2, 1, 0])
    init = sitk.CenteredTransformInitializer(
        f, m, sitk.AffineTransform(2), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    r.SetInitialTransform(init, inPlace=False)
    tx = r.Execute(f, m)
    if tx.GetName() == "CompositeTransform":
        tx = sitk.CompositeTransform(tx).GetNthTransform(0)
    a = np.array(tx.GetMatrix()).reshape(2, 2)
    c = np.array(tx.GetCenter())
    t = -a @ c + c + np.array(tx.GetTranslation())  # ITK points are (x, y) = (column, row)
    swap = np.array([[0, 1], [1, 0]])
    return swap @ a @ swap, swap @ t


def gradient(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return np.stack([
        ndimage.gaussian_filter(img, sigma, order=(1, 0)),
        ndimage.gaussian_filter(img, sigma, order=(0, 1)),
    ])


def ngf(gf, eps_f, gm, eps_m, m, t) -> float:
    """Mean NGF between the fixed gradient and that of the moving image warped by (m, t)."""
    g0, g1 = warp(gm[0], m, t), warp(gm[1], m, t)
    w0 = m[0, 0] * g0 + m[1, 0] * g1  # the warped image's gradient: mᵀ ∇moving(m x + t)
    w1 = m[0, 1] * g0 + m[1, 1] * g1
    dot = gf[0] * w0 + gf[1] * w1
    norm = (gf[0] ** 2 + gf[1] ** 2 + eps_f ** 2) * (w0 ** 2 + w1 ** 2 + eps_m ** 2)
    return float((dot ** 2 / norm).mean())


def ngf_refine(fixed, moving, m0, t0):
    """Maximises NGF over the affine parameters from (m0, t0): half, then full resolution."""
    m, t = m0, t0
    for shrink in (2, 1):
        if shrink > 1:
            f = ndimage.gaussian_filter(fixed, shrink / 2)[::shrink, ::shrink]
            mv = ndimage.gaussian_filter(moving, shrink / 2)[::shrink, ::shrink]
        else:
            f, mv = fixed, moving
        gf, gm = gradient(f), gradient(mv)
        eps_f, eps_m = np.hypot(*gf).mean(), np.hypot(*gm).mean()

        def unpack(p, m0=m, t0=t / shrink, side=f.shape[0]):
            # A unit of every parameter moves the corners by about a pixel.
            return m0 + p[:4].reshape(2, 2) / side, t0 + p[4:]

        res = optimize.minimize(
            lambda p: -ngf(gf, eps_f, gm, eps_m, *unpack(p)),
            np.zeros(6),
            method="Powell",
            options={"xtol": 1e-2, "ftol": 1e-6, "maxfev": 1500},
        )
        m, t = unpack(res.x)
        t = t * shrink
    return m, t


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    root, npairs = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    names = sorted(os.listdir(os.path.join(root, "A")))
    names = names[:: max(1, len(names) // npairs)][:npairs]
    errors = []
    for name in names:
        a = gray(os.path.join(root, "A", name))
        b = gray(os.path.join(root, "B", name))
        h, w = a.shape
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        level = rng.integers(1, 5)
        lo, hi = 0.025 * (level - 1), 0.025 * level
        angle = math.radians(rng.uniform(-5, 5))
        scales = 1 + rng.choice([-1, 1], 2) * rng.uniform(lo, hi, 2)
        shear = rng.choice([-1, 1]) * rng.uniform(lo, hi)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        m_true = rot @ np.array([[scales[0], shear], [0, scales[1]]])
        t_true = centre - m_true @ centre + rng.uniform(-8, 8, 2)
        inv = np.linalg.inv(m_true)
        moving = warp(b, inv, -inv @ t_true)  # the fixed-to-moving map is (m_true, t_true)
        m_mi, t_mi = mi_affine(a, moving)
        m_ngf, t_ngf = ngf_refine(a, moving, m_mi, t_mi)
        e = (corner_error(m_mi, t_mi, m_true, t_true, a.shape),
             corner_error(m_ngf, t_ngf, m_true, t_true, a.shape))
        errors.append(e)
        print(f"{name}  level {level}  MI {e[0]:.2f} px  MI+NGF {e[1]:.2f} px", flush=True)
    e = np.array(errors)
    limit = 0.02 * w
    print(
        f"success (<= {limit:.2f} px): MI {100 * (e[:, 0] <= limit).mean():.1f} %, "
        f"MI+NGF {100 * (e[:, 1] <= limit).mean():.1f} %; median MI {np.median(e[:, 0]):.2f} px, "
        f"MI+NGF {np.median(e[:, 1]):.2f} px"
    )


if __name__ == "__main__":
    main()
