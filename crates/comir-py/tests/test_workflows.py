"""comir.train, comir.evaluate and comir.align: the command line's results, progress reported."""

import csv
import json
import shutil

import numpy as np
import pytest

import comir

TINY = """
[network]
init_filters = 4
down_blocks = [1, 1]
up_blocks = [1, 1]
bottleneck_layers = 1
growth_rate = 4

[patches]
size = 16

[schedule]
batch = 2
checkpoint_every = 2
validate_every = 0
"""


def test_training_reports_progress_and_equals_the_command_line(demo, cli, tmp_path):
    folder, _ = demo
    (tmp_path / "tiny.toml").write_text(TINY)
    seen = []
    summary = comir.train(folder / "A", folder / "B", tmp_path / "py", config=tmp_path / "tiny.toml",
                          steps=6, seed=3, progress=lambda *a: seen.append(a))
    assert summary["steps"] == 6 and summary["steps_this_run"] == 6
    assert len(summary["train_pairs"]) + len(summary["validation_pairs"]) + len(summary["test_pairs"]) == 12
    assert seen and seen[-1][:3] == ("train", 6, 6)
    assert [s[1] for s in seen] == sorted(s[1] for s in seen)
    code, _, err = cli("train", "--a", folder / "A", "--b", folder / "B", "--out", tmp_path / "cli",
                       "--config", tmp_path / "tiny.toml", "--steps", 6, "--seed", 3)
    assert code == 0, err
    # Same settings, same seed: the same weights, byte for byte.
    assert (tmp_path / "py" / "weights.bpk").read_bytes() == (tmp_path / "cli" / "weights.bpk").read_bytes()
    model = comir.Model.load(tmp_path / "py")
    assert model.represent(np.zeros((20, 24), np.float32)).shape[:2] == (20, 24)
    # Resumed with more steps.
    more = comir.train(folder / "A", folder / "B", tmp_path / "py", steps=8, resume=True,
                       show_progress=False)
    assert more["steps"] == 8 and more["steps_this_run"] == 2


def test_training_settings_are_checked(demo, tmp_path):
    folder, _ = demo
    with pytest.raises(comir.ConfigError, match="unknown setting 'stepz'"):
        comir.train(folder / "A", folder / "B", tmp_path / "m", stepz=3)
    with pytest.raises(comir.ConfigError, match="critic"):
        comir.train(folder / "A", folder / "B", tmp_path / "m", critic="nope")
    with pytest.raises(comir.Error, match="nothing"):
        comir.train(tmp_path / "nothing", folder / "B", tmp_path / "m", steps=1)


def test_evaluation_rows_equal_the_command_lines_csv(demo, cli, tmp_path):
    folder, _ = demo
    calls = []
    rows = comir.evaluate(folder, ["mi", "aamd"], levels=[1, 3], limit=2, seed=5,
                          progress=lambda *a: calls.append(a))
    assert len(rows) == 2 * 2 * 2
    assert calls[-1][:3] == ("eval", 8, 8)
    assert {"pair", "level", "method", "error_px", "success", "confidence"} <= set(rows[0])
    code, _, err = cli("eval", "--pairs", folder, "--method", "mi,aamd", "--levels", "1,3",
                       "--limit", 2, "--seed", 5, "--out", tmp_path / "r.csv")
    assert code == 0, err
    with open(tmp_path / "r.csv") as f:
        from_cli = list(csv.DictReader(f))
    key = lambda r: (r["pair"], int(r["level"]), r["method"])
    mine = {key(r): r for r in rows}
    assert len(from_cli) == len(rows)
    for r in from_cli:
        assert abs(mine[key(r)]["error_px"] - float(r["error_px"])) < 1e-9


def test_alignment_recovers_known_affine_displacements(demo, cli, tmp_path):
    folder, names = demo
    pairs = tmp_path / "pairs"
    (pairs / "A").mkdir(parents=True)
    (pairs / "B").mkdir()
    truths = {}
    for k, name in enumerate(names[:4]):
        shutil.copy(folder / "A" / name, pairs / "A" / name)
        b = comir.load_image(folder / "B" / name)
        h, w = b.shape
        s, th = 1.0 + 0.03 * (k - 1.5), np.deg2rad(2.0 * k - 3.0)
        lin = s * np.array([[np.cos(th), -np.sin(th) + 0.02], [np.sin(th), np.cos(th)]])
        c = np.array([(w - 1) / 2, (h - 1) / 2])
        t = np.array([2.0 - k, 1.5 * k - 2.0])
        m = np.eye(3)
        m[:2, :2], m[:2, 2] = lin, c + t - lin @ c
        inv = np.linalg.inv(m)
        record = {"kind": "affine", "fixed_to_moving": inv.tolist(), "translation": [0.0, 0.0],
                  "center": [0.0, 0.0], "method": "truth", "metric_value": 0.0, "seconds": 0.0}
        (tmp_path / "inv.json").write_text(json.dumps(record))
        moving = comir.load_transform(tmp_path / "inv.json").warp(b, shape=(h, w))
        comir.save_image(pairs / "B" / name, moving)
        truths[name] = m
    summary = comir.align(pairs, tmp_path / "out", rounds=1, steps=24, show_progress=False)
    assert [r["round"] for r in summary["rounds"]] == [0, 1] and not summary["skipped"]
    for name, m in truths.items():
        stem = name.rsplit(".", 1)[0]
        found = comir.load_transform(tmp_path / "out" / "transforms" / f"{stem}.json")
        h, w = comir.load_image(pairs / "A" / name).shape
        grid = np.stack(np.meshgrid(np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 9)), -1).reshape(-1, 2)
        truth_pts = (np.c_[grid, np.ones(len(grid))] @ m.T)[:, :2]
        err = np.linalg.norm(found.transform_points(grid) - truth_pts, axis=1).mean()
        assert err < 0.02 * w, (name, err)
    # The command line on the same collection writes the same transforms.
    code, _, e = cli("align", "--pairs", pairs, "--out", tmp_path / "cli", "--rounds", 1, "--steps", 24)
    assert code == 0, e
    for name in truths:
        stem = name.rsplit(".", 1)[0]
        mine = comir.load_transform(tmp_path / "out" / "transforms" / f"{stem}.json")
        theirs = comir.load_transform(tmp_path / "cli" / "transforms" / f"{stem}.json")
        assert np.abs(mine.matrix - theirs.matrix).max() < 1e-9


def test_alignment_refuses_a_collection_of_one_pair(demo, tmp_path):
    folder, names = demo
    for d in "AB":
        (tmp_path / "one" / d).mkdir(parents=True)
        shutil.copy(folder / d / names[0], tmp_path / "one" / d / names[0])
    with pytest.raises(comir.Error, match="pair"):
        comir.align(tmp_path / "one", tmp_path / "out", show_progress=False)
