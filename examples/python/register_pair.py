"""Register a multimodal pair from Python and look at the result.

    python examples/python/register_pair.py                     # the bundled T1/T2 slices
    python examples/python/register_pair.py shg.png he.png --transform similarity,affine

Prints the transform and its confidence, and saves a figure (fixed, moving, and the moving image
warped onto the fixed one as a green/magenta overlay) to register_pair.png; needs matplotlib.
"""

import argparse
from pathlib import Path

import numpy as np

import comir

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent.parent / "data" / "demo"


def gray(img):
    """Colour images as their channel mean, for display."""
    return img.mean(axis=2) if img.ndim == 3 else img


def stretch(img):
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def structure(img):
    """For the overlay: bright-field images (light background) inverted, so that tissue is
    bright in both colours."""
    img = stretch(img)
    return 1 - img if np.median(img) > 0.5 else img


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("fixed", nargs="?", default=DEMO / "A" / "axial_080.png")
    p.add_argument("moving", nargs="?", default=DEMO / "B" / "axial_080.png")
    p.add_argument("--method", default="mi")
    p.add_argument("--transform", default="rigid")
    p.add_argument("--model", default=None, help="a model folder or a bundled name")
    p.add_argument("--out", default="register_pair.png")
    args = p.parse_args()

    fixed, moving = comir.load_image(args.fixed), comir.load_image(args.moving)
    reg = comir.register(fixed, moving, method=args.method, transform=args.transform,
                         model=args.model)
    print(reg)
    print("fixed -> moving:\n", np.array2string(reg.matrix, precision=4, suppress_small=True))
    print(f"confidence {reg.confidence:.3f} ({reg.flag}), {reg.seconds:.2f} s")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warped = gray(reg.warp(moving))
    f = stretch(gray(fixed))
    before = np.zeros(f.shape + (3,))
    after = np.zeros(f.shape + (3,))
    m_before = structure(on_grid(gray(moving), f.shape))
    before[..., 1], before[..., 0], before[..., 2] = f, m_before, m_before
    m_after = structure(warped) * (reg.warp(np.ones(moving.shape[:2], np.float32)) > 0.5)
    after[..., 1], after[..., 0], after[..., 2] = f, m_after, m_after
    fig, ax = plt.subplots(1, 4, figsize=(16, 4.4))
    for a, img, title in zip(
        ax,
        [f, stretch(gray(moving)), before, after],
        ["fixed", "moving", "before (green fixed, magenta moving)",
         f"after: {reg.kind}, confidence {reg.confidence:.2f}"],
    ):
        a.imshow(img, cmap="gray")
        a.set_title(title, fontsize=10)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=60)
    print("figure:", args.out)


def on_grid(img, shape):
    """`img` cropped or padded to `shape` (the pair as it is, before registration)."""
    out = np.zeros(shape, np.float32)
    h, w = min(shape[0], img.shape[0]), min(shape[1], img.shape[1])
    out[:h, :w] = img[:h, :w]
    return out


if __name__ == "__main__":
    main()
