"""Shared fixtures: the bundled demo pairs, and the command-line tool of the same build."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import comir

REPO = Path(os.environ.get("COMIR_REPO", Path(__file__).resolve().parents[3]))
DEMO = REPO / "data" / "demo"


@pytest.fixture(scope="session")
def demo():
    """The bundled MR slices: (folder, names)."""
    names = sorted(p.name for p in (DEMO / "A").iterdir())
    assert len(names) >= 4, f"bundled demo data missing under {DEMO}"
    return DEMO, names


@pytest.fixture(scope="session")
def pair(demo):
    """One T1/T2 pair as float32 arrays, with their files."""
    folder, names = demo
    a, b = folder / "A" / names[1], folder / "B" / names[1]
    return comir.load_image(a), comir.load_image(b), a, b


@pytest.fixture(scope="session")
def cli():
    """Runs the `comir` executable; returns (exit code, stdout, stderr)."""
    binary = os.environ.get("COMIR_BIN")
    if not binary or not Path(binary).is_file():
        pytest.skip("the comir executable of this build is not there (COMIR_BIN)")

    def run(*args):
        p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    return run


def rigid_json(path, angle_deg, tx, ty, center):
    """Writes a rigid transform file by hand: T(p) = R(p - c) + c + t."""
    th = np.deg2rad(angle_deg)
    c, s = float(np.cos(th)), float(np.sin(th))
    cx, cy = center
    m = [
        [c, -s, cx + tx - (c * cx - s * cy)],
        [s, c, cy + ty - (s * cx + c * cy)],
        [0.0, 0.0, 1.0],
    ]
    text = json.dumps({
        "kind": "rigid", "fixed_to_moving": m, "angle_deg": angle_deg,
        "translation": [tx, ty], "center": [cx, cy], "method": "truth",
        "metric_value": 0.0, "seconds": 0.0,
    })
    Path(path).write_text(text)
    return np.array(m)
