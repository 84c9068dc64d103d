"""comir.Model: bundled and folder models, representations equal to the command line's."""

import numpy as np
import pytest

import comir


def test_the_bundled_model_is_listed_and_loads_by_name(cli):
    names = [n for n, _ in comir.models()]
    assert "mni152-t1t2" in names
    code, out, _ = cli("models")
    assert code == 0 and all(n in out for n in names)
    model = comir.Model.load("mni152-t1t2")
    assert model.out_channels == 1 and (model.path / "model.json").is_file()
    # The same model from its folder.
    again = comir.Model.load(model.path)
    assert again.path == model.path


@pytest.mark.parametrize("modality", ["a", "b"])
def test_representations_equal_the_command_lines_bit_for_bit(pair, cli, tmp_path, modality):
    fixed, moving, a, b = pair
    src, image = (a, fixed) if modality == "a" else (b, moving)
    model = comir.Model.load("mni152-t1t2")
    rep = model.represent(image, modality=modality)
    assert rep.dtype == np.float32 and rep.shape == image.shape
    out = tmp_path / "rep.tif"
    code, _, err = cli("represent", "--model", "mni152-t1t2", "--modality", modality,
                       "--input", src, "--out", out)
    assert code == 0, err
    assert np.array_equal(rep, comir.load_image(out))


def test_rotation_average_and_uint8_input(pair):
    fixed, *_ = pair
    model = comir.Model.load("mni152-t1t2")
    plain = model.represent(fixed)
    averaged = model.represent(fixed, rotation_average=True)
    assert averaged.shape == plain.shape and not np.array_equal(averaged, plain)
    # An average of four turns is equivariant: turning the input turns the output.
    turned = model.represent(np.rot90(fixed).copy(), rotation_average=True)
    assert np.abs(np.rot90(averaged) - turned).max() < 1e-4
    u8 = np.round(fixed * 255).astype(np.uint8)
    assert np.array_equal(model.represent(u8), model.represent(u8.astype(np.float32) / np.float32(255)))


def test_registration_through_a_loaded_model_equals_through_its_name(pair):
    fixed, moving, *_ = pair
    model = comir.Model.load("mni152-t1t2")
    by_object = comir.register(fixed, moving, method="aamd", model=model)
    by_name = comir.register(fixed, moving, method="aamd", model="mni152-t1t2")
    assert by_object.method == "comir+aamd"
    assert np.array_equal(by_object.matrix, by_name.matrix)


def test_a_loaded_model_is_not_read_again(pair, tmp_path):
    fixed, moving, *_ = pair
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(comir.Model.load("mni152-t1t2").path, folder)
    model = comir.Model.load(folder)
    before = comir.register(fixed, moving, method="aamd", model=model)
    shutil.rmtree(folder)
    # The folder is gone: the registration runs on the networks in memory.
    after = comir.register(fixed, moving, method="aamd", model=model)
    assert np.array_equal(before.matrix, after.matrix)
    with pytest.raises(comir.ModelError):
        comir.register(fixed, moving, method="aamd", model=folder)


def test_model_errors(pair, tmp_path):
    fixed, *_ = pair
    with pytest.raises(comir.ModelError, match="no such model folder"):
        comir.Model.load(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{ not json")
    with pytest.raises(comir.ModelError, match="model.json"):
        comir.Model.load(tmp_path / "broken")
    model = comir.Model.load("mni152-t1t2")
    with pytest.raises(comir.ConfigError, match="modality"):
        model.represent(fixed, modality="c")
    with pytest.raises(comir.ImageError):
        model.represent(np.zeros((0, 5), np.float32))


def test_images_save_and_load_as_the_command_line_does(pair, tmp_path):
    fixed, *_ = pair
    comir.save_image(tmp_path / "f.tif", fixed)
    assert np.array_equal(comir.load_image(tmp_path / "f.tif"), fixed)
    comir.save_image(tmp_path / "f.png", fixed)
    assert np.abs(comir.load_image(tmp_path / "f.png") - fixed).max() <= 0.5 / 255 + 1e-7
    rgb = np.dstack([fixed, fixed * 0.5, 1 - fixed])
    comir.save_image(tmp_path / "c.tif", rgb)
    assert np.array_equal(comir.load_image(tmp_path / "c.tif"), rgb)
    with pytest.raises(comir.ImageError, match="must end in"):
        comir.save_image(tmp_path / "f.bmp", fixed)
    with pytest.raises(comir.ImageError, match="nothing.png"):
        comir.load_image(tmp_path / "nothing.png")
