#!/usr/bin/env python3
"""Synthetic unaligned collections for `comir align`, and their scoring.

`make` takes an aligned dataset (DIR/A, DIR/B, same names) and writes a collection whose B images
are displaced by a random affine each, drawn as `comir eval --displacement affine` draws them:
at level L a rotation |θ| in [5(L − 1), 5L)°, a translation per axis |t| in [s(L − 1), sL) with
s = 7/300 of the width, per-axis scales and a shear of magnitude in [2.5(L − 1), 2.5L) %, each
with a random sign, about the image centre. Levels 1-4 are mixed (pair i, sorted by name, gets
level 1 + i mod 4). The truth of each pair, the fixed-to-moving matrix G (a point p of A lies at
G p in the displaced B), goes to `truth/NAME.json` in comir's JSON layout.

    collection.py make --dataset DIR --out OUT [--names model.json|list.txt] [--seed S]
        -> OUT/pairs/A/NAME (links to the dataset's A), OUT/pairs/B/NAME, OUT/truth/NAME.json
    collection.py score --truth OUT/truth --results DIR|align-state.json [--round K] [--label TEXT] [--csv FILE]
        -> per-pair dense error (mean distance over a 32×32 grid of the fixed image), success
           ≤ 2 % of the width, and the area scale of the found map relative to the true one
           (sqrt |det(G⁻¹ R)|: 1 = the right size); prints a summary line

`--names model.json` keeps the pairs a comir model card lists as its test split: the pairs that
model never saw, so that the model can serve as the leave-pairs-out upper bound.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage


def draw(name: str, level: int, width: int, seed: int) -> dict:
    h = int.from_bytes(hashlib.sha256(f"{seed}:{name}:{level}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(h)

    def signed(step: float) -> float:
        mag = rng.uniform(step * (level - 1), step * level)
        return mag if rng.random() < 0.5 else -mag

    return {
        "level": level,
        "angle_deg": signed(5.0),
        "tx": signed(7.0 / 300.0 * width),
        "ty": signed(7.0 / 300.0 * width),
        "sx": 1.0 + signed(0.025),
        "sy": 1.0 + signed(0.025),
        "shear": signed(0.025),
    }


def matrix(d: dict, cx: float, cy: float) -> np.ndarray:
    """G = T(c + t) R U T(-c), in (x, y) pixel coordinates (centres at integers)."""
    th = math.radians(d["angle_deg"])
    r = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    u = np.array([[d["sx"], d["shear"]], [0.0, d["sy"]]])
    a = r @ u
    c = np.array([cx, cy])
    t = c + np.array([d["tx"], d["ty"]]) - a @ c
    g = np.eye(3)
    g[:2, :2] = a
    g[:2, 2] = t
    return g


def displaced(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """D(q) = B(G^-1 q): B's content moved by G, zero outside, bilinear."""
    inv = np.linalg.inv(g)
    # scipy works in (row, col): swap x and y.
    p = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    m = p @ inv @ p
    channels = [img] if img.ndim == 2 else [img[..., k] for k in range(img.shape[2])]
    out = [
        ndimage.affine_transform(ch.astype(np.float64), m[:2, :2], offset=m[:2, 2], order=1,
                                 mode="constant", cval=0.0)
        for ch in channels
    ]
    return out[0] if img.ndim == 2 else np.stack(out, axis=-1)


def names_from(path: str) -> list[str]:
    if path.endswith(".json"):
        card = json.load(open(path))
        return list(card["training"]["split"]["test"])
    return [line.strip() for line in open(path) if line.strip()]


def make(args: argparse.Namespace) -> None:
    a_dir, b_dir = os.path.join(args.dataset, "A"), os.path.join(args.dataset, "B")
    names = sorted(os.listdir(a_dir))
    if args.names:
        keep = set(names_from(args.names))
        names = [n for n in names if n in keep]
    out_a, out_b = os.path.join(args.out, "pairs", "A"), os.path.join(args.out, "pairs", "B")
    truth = os.path.join(args.out, "truth")
    for d in (out_a, out_b, truth):
        os.makedirs(d, exist_ok=True)
    for i, name in enumerate(names):
        src = Image.open(os.path.join(b_dir, name))
        mode = src.mode
        b = np.asarray(src)
        h, w = b.shape[:2]
        d = draw(name, 1 + i % 4, w, args.seed)
        g = matrix(d, (w - 1) / 2.0, (h - 1) / 2.0)
        out = displaced(b, g)
        if mode.startswith("I;16") or b.dtype == np.uint16:
            img = Image.fromarray(np.clip(np.rint(out), 0, 65535).astype(np.uint16))
        else:
            img = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
        img.save(os.path.join(out_b, name))
        link = os.path.join(out_a, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(a_dir, name)), link)
        stem = os.path.splitext(name)[0]
        with open(os.path.join(truth, stem + ".json"), "w") as f:
            json.dump({"kind": "affine", "fixed_to_moving": g.tolist(), "width": w, "height": h,
                       "draw": d}, f, indent=1)
    print(f"{len(names)} pairs -> {args.out}")


def grid(w: int, h: int) -> np.ndarray:
    xs = (np.arange(32) + 0.5) * w / 32 - 0.5
    ys = (np.arange(32) + 0.5) * h / 32 - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])


def recovered(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Stem -> fixed_to_moving: from a folder of comir JSON files, or from round K of an
    `align-state.json` (so that every round of one `comir align` run can be scored)."""
    out = {}
    if args.results.endswith(".json"):
        state = json.load(open(args.results))
        rounds = state["rounds"]
        k = len(rounds) - 1 if args.round is None else args.round
        for name, r in rounds[k]["results"].items():
            out[os.path.splitext(name)[0]] = np.array(r["record"]["fixed_to_moving"])
        return out
    for f in os.listdir(args.results):
        if f.endswith(".json"):
            out[f[:-5]] = np.array(json.load(open(os.path.join(args.results, f)))["fixed_to_moving"])
    return out


def score(args: argparse.Namespace) -> None:
    found = recovered(args)
    rows = []
    for f in sorted(os.listdir(args.truth)):
        if not f.endswith(".json"):
            continue
        t = json.load(open(os.path.join(args.truth, f)))
        g = np.array(t["fixed_to_moving"])
        w, h = t["width"], t["height"]
        r = found.get(f[:-5])
        if r is not None:
            p = grid(w, h)
            err = float(np.mean(np.linalg.norm((g @ p - r @ p)[:2], axis=0)))
            # Area scale of the found map relative to the true one (1 = the right size).
            scale = math.sqrt(abs(np.linalg.det((np.linalg.inv(g) @ r)[:2, :2])))
        else:
            err, scale = math.inf, math.nan
        rows.append((f[:-5], t["draw"]["level"], err, err <= 0.02 * w, scale))
    n = len(rows)
    ok = sum(r[3] for r in rows)
    errs = sorted(r[2] for r in rows)
    med = errs[n // 2] if n else math.nan
    per_level = {}
    for _, level, _, s, _ in rows:
        per_level.setdefault(level, []).append(s)
    levels = " ".join(f"L{k}:{sum(v)}/{len(v)}" for k, v in sorted(per_level.items()))
    scales = [r[4] for r in rows if math.isfinite(r[4])]
    med_scale = float(np.median(scales)) if scales else math.nan
    print(f"{args.label}: {ok}/{n} = {100.0 * ok / max(n, 1):.1f} % within 2 % of the width, "
          f"median {med:.2f} px ({levels}), median scale found/true {med_scale:.3f}")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("pair,level,dense_error_px,success,scale_found_over_true\n")
            for name, level, err, s, scale in rows:
                f.write(f"{name},{level},{err:.4f},{int(s)},{scale:.5f}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--dataset", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--names")
    m.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("--truth", required=True)
    s.add_argument("--results", required=True)
    s.add_argument("--label", default="result")
    s.add_argument("--round", type=int)
    s.add_argument("--csv")
    args = ap.parse_args()
    if not os.path.isdir(getattr(args, "dataset", None) or getattr(args, "truth")):
        sys.exit(f"error: {getattr(args, 'dataset', None) or args.truth}: not a folder")
    make(args) if args.cmd == "make" else score(args)


if __name__ == "__main__":
    main()
