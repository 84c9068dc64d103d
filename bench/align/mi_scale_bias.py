#!/usr/bin/env python3
"""Which scale does mutual information choose between two *aligned* images?

For each aligned pair of a dataset (A fixed, B moving; the truth is the identity), a similarity
transform (scale, angle, translation) is estimated from the identity four ways:

* `comir`: `comir register --method mi --transform similarity` (comir's Mattes MI);
* `comir reverse`: the same with the images swapped, reported as 1 / scale so that both
  directions read the same way (a bias that the data carries, not one direction, agrees);
* `itk`: SimpleITK's Mattes MI (32 bins, every pixel, regular-step gradient descent, shrink 4-2-1),
  an independent implementation of the same metric;
* `itk interior` (CT only, `--interior`): the same, restricted by a fixed-image mask to the inside
  of the skull (pixels within the bright bone ring of the CT, eroded by 6 px), so that the skull
  and the scalp do not take part;
* `itk gradient` (`--gradient`): SimpleITK's Mattes MI between the images' gradient magnitudes
  (Gaussian derivatives, σ 1.5 px), which pairs edges rather than intensities.

A scale far from 1 that every implementation finds is a property of the metric on these images;
if it disappears when the skull and scalp are masked out, the truth is right and the metric is
biased by those structures.

    mi_scale_bias.py --dataset DATASETS/aanlib-ct-mri --comir target/release/comir [--pairs 24] \
        [--interior] [--gradient] [--csv out.csv]

Needs numpy, scipy, pillow and SimpleITK.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage


def gray(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def comir_scale(comir: str, fixed: str, moving: str, tmp: str) -> float:
    out = os.path.join(tmp, "t.json")
    subprocess.run(
        [comir, "register", "--fixed", fixed, "--moving", moving, "--method", "mi",
         "--transform", "similarity", "--out", out],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    m = json.load(open(out))["fixed_to_moving"]
    return math.hypot(m[0][0], m[1][0])


def skull_interior(ct: np.ndarray) -> np.ndarray | None:
    """The inside of the CT's bright bone ring, eroded by 6 px; None where the ring is open."""
    bone = ndimage.binary_closing(ct >= 0.9 * ct.max(), iterations=3)
    labels, _ = ndimage.label(~bone)
    c = labels[ct.shape[0] // 2, ct.shape[1] // 2]
    inside = (labels == c) & (c != 0) & (c != labels[0, 0])
    if not 0.05 <= inside.mean() <= 0.45:
        return None
    return ndimage.binary_erosion(inside, iterations=6)


def itk_scale(fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray | None) -> float:
    f = sitk.GetImageFromArray(fixed)
    m = sitk.GetImageFromArray(moving)
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(32)
    r.SetMetricSamplingStrategy(r.NONE)
    if mask is not None:
        r.SetMetricFixedMask(sitk.GetImageFromArray(mask.astype(np.uint8)))
    r.SetInterpolator(sitk.sitkLinear)
    r.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 300, relaxationFactor=0.7)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([4, 2, 1])
    r.SetSmoothingSigmasPerLevel([2, 1, 0])
    t = sitk.Similarity2DTransform()
    t.SetCenter([(s - 1) / 2 for s in f.GetSize()])
    r.SetInitialTransform(t, inPlace=False)
    out = r.Execute(f, m)
    if out.GetNumberOfParameters() != 4:
        out = out.GetNthTransform(0)
    return out.GetParameters()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="folder with A/ and B/ (aligned pairs)")
    ap.add_argument("--comir", required=True, help="the comir binary")
    ap.add_argument("--pairs", type=int, default=24, help="pairs, evenly spaced in name order")
    ap.add_argument("--interior", action="store_true", help="also MI inside the CT's skull only")
    ap.add_argument("--gradient", action="store_true",
                    help="also MI between the gradient magnitudes")
    ap.add_argument("--csv")
    args = ap.parse_args()
    names = sorted(os.listdir(os.path.join(args.dataset, "A")))
    names = names[:: max(1, len(names) // args.pairs)][: args.pairs]
    cols = ["comir", "comir reverse", "itk"] + (["itk interior"] if args.interior else []) \
        + (["itk gradient"] if args.gradient else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            fa = os.path.join(args.dataset, "A", n)
            fb = os.path.join(args.dataset, "B", n)
            a, b = gray(fa), gray(fb)
            row = {
                "pair": n,
                "comir": comir_scale(args.comir, fa, fb, tmp),
                "comir reverse": 1.0 / comir_scale(args.comir, fb, fa, tmp),
                "itk": itk_scale(a, b, None),
            }
            if args.interior:
                mask = skull_interior(a)
                row["itk interior"] = itk_scale(a, b, mask) if mask is not None else float("nan")
            if args.gradient:
                row["itk gradient"] = itk_scale(ndimage.gaussian_gradient_magnitude(a, 1.5),
                                                ndimage.gaussian_gradient_magnitude(b, 1.5), None)
            rows.append(row)
            print(n, "  ".join(f"{c} {row[c]:.4f}" for c in cols), flush=True)
    print(f"\nscale that MI chooses on {len(rows)} aligned pairs of {args.dataset} (truth: 1)")
    print(f"{'estimate':<14} {'median':>8} {'q25':>8} {'q75':>8} {'n':>4}")
    for c in cols:
        v = np.array([r[c] for r in rows])
        v = v[np.isfinite(v)]
        q25, med, q75 = np.percentile(v, [25, 50, 75])
        print(f"{c:<14} {med:8.4f} {q25:8.4f} {q75:8.4f} {len(v):4d}")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["pair"] + cols)
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
