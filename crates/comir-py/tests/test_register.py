"""comir.register and Registration: inputs of every dtype and layout, known transforms
recovered, the same results as the command line, files, points, errors, the GIL."""

import json
import threading

import numpy as np
import pytest

import comir
from conftest import rigid_json


def test_a_known_rigid_displacement_is_recovered(pair, tmp_path):
    fixed, moving_source, *_ = pair
    h, w = fixed.shape
    rigid_json(tmp_path / "t.json", 4.0, 3.5, -2.25, ((w - 1) / 2, (h - 1) / 2))
    truth = comir.load_transform(tmp_path / "t.json")
    # The moving image whose fixed -> moving transform is `truth`: moving(q) = T2(T^-1(q)).
    grid = np.stack(np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float)), -1)
    grid = grid.reshape(-1, 2)
    back = truth.transform_points(grid, inverse=True)
    assert np.allclose(truth.transform_points(back), grid, atol=1e-9)
    moving = _sample(moving_source, back).reshape(h, w)
    found = comir.register(fixed, moving, method="mi")
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=float)
    err = np.linalg.norm(found.transform_points(corners) - truth.transform_points(corners), axis=1)
    assert err.mean() < 1.0, (err, found.matrix, truth.matrix)


def _sample(img, xy):
    """Bilinear sampling of `img` at points (x, y), 0 outside; written out in numpy."""
    h, w = img.shape
    x, y = xy[:, 0], xy[:, 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    out = np.zeros(len(x))
    for dx, dy, wgt in [(0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                        (0, 1, (1 - fx) * fy), (1, 1, fx * fy)]:
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out[ok] += wgt[ok] * img[yi[ok], xi[ok]]
    return out.astype(np.float32)


def test_every_dtype_and_layout_gives_the_same_registration(pair):
    fixed, moving, *_ = pair
    u8f, u8m = (np.round(fixed * 255)).astype(np.uint8), (np.round(moving * 255)).astype(np.uint8)
    ref = comir.register(u8f, u8m)
    # uint8 is scaled by 1/255 exactly as the command line scales 8-bit files.
    same = comir.register(u8f.astype(np.float32) / np.float32(255), u8m.astype(np.float32) / np.float32(255))
    assert np.array_equal(ref.matrix, same.matrix)
    u16 = comir.register(u8f.astype(np.uint16) * 257, u8m.astype(np.uint16) * 257)
    assert np.allclose(u16.matrix, ref.matrix, atol=1e-6)
    f64 = comir.register(u8f / 255.0, u8m / 255.0)
    assert np.allclose(f64.matrix, ref.matrix, atol=1e-6)
    # Strided (a transposed copy transposed back, a column slice) equals contiguous.
    strided = np.asfortranarray(u8f)
    assert not strided.flags.c_contiguous
    assert np.array_equal(comir.register(strided, u8m).matrix, ref.matrix)
    wide = np.zeros((u8m.shape[0], u8m.shape[1] * 2), np.uint8)
    wide[:, ::2] = u8m
    assert np.array_equal(comir.register(u8f, wide[:, ::2]).matrix, ref.matrix)
    # Colour (H x W x 3, and x 4 with alpha dropped) registers through its gray mean.
    rgb = np.repeat(u8m[:, :, None], 3, axis=2)
    # (The gray mean in float32 rounds differently from the gray input: a few thousandths of
    # a pixel.)
    assert np.allclose(comir.register(u8f, rgb).matrix, ref.matrix, atol=0.02)
    rgba = np.concatenate([rgb, np.full(u8m.shape + (1,), 7, np.uint8)], axis=2)
    assert np.array_equal(comir.register(u8f, rgba).matrix, comir.register(u8f, rgb).matrix)


@pytest.mark.parametrize("args", [
    ["--method", "mi"],
    ["--method", "mi", "--transform", "similarity,affine"],
    ["--method", "aamd", "--model", "mni152-t1t2"],
])
def test_the_same_transform_as_the_command_line(pair, cli, tmp_path, args):
    fixed, moving, a, b = pair
    out = tmp_path / "t.json"
    code, _, err = cli("register", "--fixed", a, "--moving", b, "--out", out, "--tfm",
                       tmp_path / "t.tfm", "--warped", tmp_path / "w.tif", *args)
    assert code == 0, err
    kw = dict(zip([k.lstrip("-") for k in args[::2]], args[1::2]))
    reg = comir.register(fixed, moving, **kw)
    from_cli = json.loads(out.read_text())
    assert np.abs(reg.matrix - np.array(from_cli["fixed_to_moving"])).max() < 1e-9
    assert reg.kind == from_cli["kind"] and reg.method == from_cli["method"]
    assert abs(reg.confidence - from_cli["confidence"]) < 1e-9 and reg.flag == from_cli["flag"]
    # The warped image and the ITK file are the command line's, to the bit and the byte.
    assert np.array_equal(reg.warp(moving), comir.load_image(tmp_path / "w.tif"))
    reg.save_tfm(tmp_path / "py.tfm")
    assert (tmp_path / "py.tfm").read_text() == (tmp_path / "t.tfm").read_text()


def test_files_points_and_the_json_round_trip(pair, tmp_path):
    fixed, moving, *_ = pair
    reg = comir.register(fixed, moving, transform="similarity,affine")
    assert reg.kind == "affine" and reg.matrix.shape == (3, 3)
    assert reg.transform["kind"] == "affine" and reg.transform == json.loads(reg.to_json())
    reg.save(tmp_path / "r.json")
    again = comir.load_transform(tmp_path / "r.json")
    assert np.abs(again.matrix - reg.matrix).max() < 1e-12
    reg.save_tfm(tmp_path / "r.tfm")
    from_tfm = comir.load_transform(tmp_path / "r.tfm")
    assert np.abs(from_tfm.matrix - reg.matrix).max() < 1e-12
    pts = np.array([[0.0, 0.0], [10.5, 3.25], [181.0, 217.0]])
    homogeneous = np.c_[pts, np.ones(len(pts))] @ reg.matrix.T
    assert np.allclose(reg.transform_points(pts), homogeneous[:, :2], atol=1e-12)
    assert np.allclose(reg.transform_points(reg.transform_points(pts), inverse=True), pts, atol=1e-9)
    warped = reg.warp(moving)
    assert warped.shape == fixed.shape and warped.dtype == np.float32
    assert warped.flags.c_contiguous and warped.flags.writeable
    assert reg.warp(moving, shape=(20, 30)).shape == (20, 30)
    assert reg.warp(np.dstack([moving] * 3)).shape == fixed.shape + (3,)


def test_a_bspline_chain_is_returned_whole(pair):
    fixed, moving, *_ = pair
    reg = comir.register(fixed, moving, transform="rigid,bspline", grid_spacing=48)
    assert reg.kind == "bspline" and "bspline" in json.dumps(reg.transform)
    pts = np.array([[50.0, 60.0], [120.0, 100.0]])
    assert np.allclose(reg.transform_points(reg.transform_points(pts), inverse=True), pts, atol=1e-3)


def test_init_and_config_are_taken(pair, tmp_path):
    fixed, moving, *_ = pair
    first = comir.register(fixed, moving, transform="affine")
    again = comir.register(fixed, moving, transform="affine", init=first)
    assert np.abs(again.matrix - first.matrix).max() < 0.25
    first.save(tmp_path / "start.json")
    from_file = comir.register(fixed, moving, transform="affine", init=tmp_path / "start.json")
    assert np.array_equal(from_file.matrix, again.matrix)
    coarse = comir.register(fixed, moving, config={"mi": {"bins": 8}})
    default = comir.register(fixed, moving)
    assert not np.array_equal(coarse.matrix, default.matrix)
    (tmp_path / "m.toml").write_text("[mi]\nbins = 8\n")
    assert np.array_equal(comir.register(fixed, moving, config=tmp_path / "m.toml").matrix, coarse.matrix)
    with pytest.raises(comir.ConfigError, match="unknown field"):
        comir.register(fixed, moving, config={"mi": {"binz": 8}})


def test_errors_are_typed_and_say_what_the_command_line_says(pair, cli, tmp_path):
    fixed, moving, a, b = pair
    assert issubclass(comir.ImageError, comir.Error) and issubclass(comir.Error, Exception)
    with pytest.raises(comir.ImageError, match="fixed: expected a 2-D gray image"):
        comir.register(np.zeros(5, np.float32), moving)
    with pytest.raises(comir.ImageError, match="moving: expected a numpy array of uint8"):
        comir.register(fixed, np.zeros((4, 4), np.int64))
    nan = fixed.copy()
    nan[3, 3] = np.nan
    with pytest.raises(comir.ImageError, match="NaN"):
        comir.register(nan, moving)
    with pytest.raises(comir.ConfigError, match="unknown method 'sift'"):
        comir.register(fixed, moving, method="sift")
    with pytest.raises(comir.ConfigError, match="transform"):
        comir.register(fixed, moving, transform="bspline,affine")
    with pytest.raises(comir.ModelError) as e:
        comir.register(fixed, moving, model=tmp_path / "nothing")
    code, _, err = cli("register", "--fixed", a, "--moving", b, "--out", tmp_path / "x.json",
                       "--method", "mi", "--model", tmp_path / "nothing")
    assert code == 2 and err.strip() == f"error: {e.value}"


def test_computation_runs_without_the_gil(pair):
    fixed, moving, *_ = pair
    ticks = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        before = ticks[0]
        comir.register(fixed, moving, method="aamd")
        during = ticks[0] - before
    finally:
        stop.set()
        t.join()
    # With the GIL held the whole call, the counting thread could not run at all meanwhile.
    assert during > 10_000, during
