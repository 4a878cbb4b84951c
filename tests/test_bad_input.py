"""Bad input through the command line: every case exits with status 2 and one line that names the file or
value and the fix (no traceback), and leaves what was already written as it was.

A message may be followed by an indented list of the files concerned (unpaired files, mismatched keys); the
first line alone must then say what is wrong and how to fix it. Everything runs in-process through
`pix2pix.cli.main.main`, on the format 1 fixtures (trained models and runs that need no training here) and
a 32-pixel synthetic world.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.cli.main import main

FORMAT1 = Path(__file__).parent / "fixtures" / "format1"
P2P_MODEL = FORMAT1 / "pix2pix_run" / "model"
HD_RUN = FORMAT1 / "pix2pixhd_run"


# ----------------------------------------------------------------------------- helpers


def error_line(capsys, *needles: str, listing: bool = False) -> str:
    """The one error line on stderr, after checking there is nothing else but notes before it (and, with
    `listing`, an indented list after it); each of `needles` must be in it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, err
    after = lines[errors[0] + 1:]
    assert (all(line.startswith("  ") for line in after) if listing else not after), err
    line = lines[errors[0]]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256): compared before and after a failing command."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fails(capsys, argv: list[str], *needles: str, listing: bool = False) -> str:
    assert main(argv) == 2
    return error_line(capsys, *needles, listing=listing)


def png_bomb(path: Path, side: int = 60000) -> Path:
    """A valid PNG header claiming side x side pixels (far over Pillow's limit), with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The synthetic world at 32x32: AB/train (5 pairs), AB/test (1), pix2pixHD folders, classes.json."""
    out = tmp_path_factory.mktemp("world")
    assert main(["data", "synth", "-o", str(out), "--num", "6", "--image-size", "32", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, world) -> Path:
    """A truncated PNG, a text file named .png, a decompression bomb, a 16-bit label map with id 300."""
    folder = tmp_path_factory.mktemp("bad")
    good = next((world / "AB" / "train").glob("*.png")).read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "text.png").write_text("not an image")
    png_bomb(folder / "bomb.png")
    ids = np.zeros((32, 32), np.uint16)
    ids[:8] = 300
    Image.fromarray(ids).save(folder / "label16.png")
    assert Image.open(folder / "label16.png").mode == "I;16"
    return folder


# ----------------------------------------------------------------------------- train: config values


TRAIN_VALUES = [
    ("optim.lr=-1", "optim.lr=-1.0", "--set optim.lr=2e-4"),
    ("optim.lr=nan", "optim.lr=nan", "above 0"),
    ("optim.lr=inf", "optim.lr=inf", "above 0"),
    ("optim.lr_d=-0.1", "optim.lr_d=-0.1", "0 (the same as optim.lr)"),
    ("optim.beta1=1", "optim.beta1=1.0", "[0, 1)"),
    ("train.max_steps=-1", "train.max_steps=-1", "use 0 for the full schedule"),
    ("train.batch_size=0", "train.batch_size=0", "at least 1"),
    ("train.ema_decay=1", "train.ema_decay=1.0", "[0, 1)"),
    ("loss.lambda_l1=-5", "loss.lambda_l1=-5.0", "loss.lambda_l1=0 to turn the term off"),
    ("loss.lambda_gan=nan", "loss.lambda_gan=nan", "finite"),
    ("loss.diffaugment=flip", "loss.diffaugment='flip'", "translation, cutout, color"),
    ("data.num_workers=-2", "data.num_workers=-2", "use -1"),
    ("train.seed=-1", "train.seed=-1", "0..2**63-1"),
    ("train.log_every=0", "train.log_every=0", "at least 1"),
    ("optim.n_epochs=-3", "optim.n_epochs=-3", "0 or more"),
    ("train.batch_size=two", "train.batch_size='two'", "a whole number"),
    ("model.init=zeros", "model.init='zeros'", "normal, xavier"),
    ("train.load_global=/some/run/model", "train.load_global", "model.generator=local"),
]


@pytest.mark.parametrize(("override", "value", "fix"), TRAIN_VALUES, ids=[t[0] for t in TRAIN_VALUES])
def test_train_refuses_a_bad_value_before_writing_anything(world, tmp_path, capsys, override, value, fix):
    runs = tmp_path / "runs"
    fails(capsys, ["train", "--preset", "tiny", "--data", str(world / "AB"), "--runs-dir", str(runs),
                   "--set", override, "--no-progress"], value, fix)
    assert not runs.exists()  # no run directory for a run that cannot start


def test_crop_too_small_for_the_discriminator_and_the_unet(world, tmp_path, capsys):
    """tiny at 16 pixels: the 3-layer PatchGAN needs 24, the 5-level U-Net 32 (it used to fail inside conv2d)."""
    runs = tmp_path / "runs"
    line = fails(capsys, ["train", "--preset", "tiny", "--data", str(world / "AB"), "--runs-dir", str(runs),
                          "--set", "data.crop_size=16", "--set", "data.load_size=16"],
                 "data.crop_size=16", "'patchgan' with model.n_layers_d=3 needs 24", "'unet' needs 32",
                 "at least 32")
    assert "Kernel size" not in line and not runs.exists()


def test_crop_too_small_for_a_deep_discriminator(world, tmp_path, capsys):
    fails(capsys, ["train", "--preset", "tiny", "--data", str(world / "AB"), "--runs-dir", str(tmp_path / "r"),
                   "--set", "model.n_layers_d=5"], "data.crop_size=32", "needs 96", "lower model.n_layers_d")


@pytest.mark.parametrize(("override", "needles"), [
    ("data.ignore_index=10", ("data.ignore_index=10", "0..9")),
    ("data.label_set=coco_stuff", ("183 classes", "data.label_nc=10", "set data.label_nc=183")),
])
def test_train_refuses_label_settings_that_do_not_fit(world, tmp_path, capsys, override, needles):
    fails(capsys, ["train", "--preset", "tiny_hd", "--data", str(world), "--runs-dir", str(tmp_path / "r"),
                   "--set", override], *needles)


def test_train_on_label_ids_outside_label_nc_names_the_file(world, tmp_path, capsys):
    fails(capsys, ["train", "--preset", "tiny_hd", "--data", str(world), "--runs-dir", str(tmp_path / "r"),
                   "--set", "data.label_nc=5", "--no-progress"], "train_label", "outside 0..4 (label_nc=5)",
          "set label_nc to at least 10", "ignore_index")


@pytest.mark.parametrize(("text", "needles"), [
    ("{not json", ("is not valid JSON",)),
    ("[1, 2]", ("the top level must be a mapping",)),
    ('{"optim": {"lr": "fast"}}', ("optim.lr='fast' should be a float", "fix the value in the file")),
    ('{"optim": {"learning_rate": 1}}', ("unknown key 'optim.learning_rate'", "remove it or correct its name")),
    ('{"optim": 3}', ("section 'optim' must be a mapping",)),
])
def test_train_config_file_errors_name_the_file(world, tmp_path, capsys, text, needles):
    path = tmp_path / "cfg.json"
    path.write_text(text)
    fails(capsys, ["train", "--preset", "tiny", "--data", str(world / "AB"), "--config", str(path),
                   "--runs-dir", str(tmp_path / "r")], str(path), *needles)


# ----------------------------------------------------------------------------- --resume


@pytest.fixture
def run_copy(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FORMAT1 / "pix2pix_run", run)
    return run


@pytest.mark.parametrize(("text", "needles"), [
    ("{broken", ("is not a readable JSON config", "restore the file")),
    ('{"train": {"max_steps": "many"}}', ("train.max_steps='many' should be a int",)),
    ('{"train": {"max_stepz": 3}}', ("unknown key 'train.max_stepz'", "Did you mean 'max_steps'")),
    ('[{"train": {}}]', ("the top level must be a mapping",)),
    ("\x00\xff\xfe", ("is not a readable JSON config",)),
])
def test_resume_with_a_corrupt_run_config_names_the_file_and_keeps_the_run(run_copy, world, capsys, text, needles):
    (run_copy / "config.json").write_text(text, encoding="latin-1")
    before = snapshot(run_copy)
    fails(capsys, ["train", "--resume", str(run_copy), "--data", str(world / "AB")],
          str(run_copy / "config.json"), *needles)
    assert snapshot(run_copy) == before


def test_resume_with_a_bad_override_keeps_the_run(run_copy, world, capsys):
    before = snapshot(run_copy)
    fails(capsys, ["train", "--resume", str(run_copy), "--data", str(world / "AB"), "--set", "max_steps=-1"],
          "train.max_steps=-1")
    assert snapshot(run_copy) == before


def test_resume_with_a_truncated_checkpoint_names_it(run_copy, world, capsys):
    ckpt = run_copy / "checkpoints" / "latest.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    before = snapshot(run_copy)
    fails(capsys, ["train", "--resume", str(run_copy), "--data", str(world / "AB"), "--set", "max_steps=6"],
          str(ckpt), "corrupt")
    assert snapshot(run_copy) == before


# ----------------------------------------------------------------------------- translate


CARD_EDITS = {  # case -> (the config.json it becomes, what the message names)
    "no generator.name": (lambda c: (c["generator"].pop("name"), c)[1], "generator.name"),
    "a list": (lambda c: ["not", "a", "card"], "the top level"),
    "generator null": (lambda c: {**c, "generator": None}, "describes no network"),
    'format_version "1"': (lambda c: {**c, "format_version": "1"}, "format_version"),
    "no generator.kwargs": (lambda c: (c["generator"].pop("kwargs"), c)[1], "generator.kwargs"),
}


@pytest.mark.parametrize("case", list(CARD_EDITS))
def test_translate_with_a_broken_model_card(tmp_path, world, capsys, case):
    edit, needle = CARD_EDITS[case]
    model = tmp_path / "model"
    shutil.copytree(P2P_MODEL, model)
    (model / "config.json").write_text(json.dumps(edit(json.loads((model / "config.json").read_text()))))
    out = tmp_path / "out"
    fails(capsys, ["translate", str(world / "AB" / "test"), "--model", str(model), "-o", str(out)],
          str(model / "config.json"), needle)
    assert not out.exists()


@pytest.mark.parametrize("size", ["0", "-3"])
def test_translate_batch_size_must_be_positive(world, tmp_path, capsys, size):
    out = tmp_path / "out"
    fails(capsys, ["translate", str(world / "AB" / "test"), "--model", str(P2P_MODEL), "-o", str(out),
                   "--batch-size", size], f"--batch-size {size}", "at least 1")
    assert not out.exists()


@pytest.mark.parametrize(("name", "needles"), [
    ("truncated.png", ("truncated.png", "truncated or corrupt", "re-export")),
    ("text.png", ("text.png", "not an image PIL can read", "convert it")),
    ("bomb.png", ("bomb.png", "more pixels than Pillow opens", "MAX_IMAGE_PIXELS")),
])
def test_translate_a_broken_image_keeps_what_the_output_folder_held(bad_files, tmp_path, capsys, name, needles):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.png").write_bytes(b"earlier result")
    before = snapshot(out)
    fails(capsys, ["translate", str(bad_files / name), "--model", str(P2P_MODEL), "-o", str(out)], *needles)
    assert snapshot(out) == before


def test_translate_from_nothing(world, tmp_path, capsys):
    fails(capsys, ["translate", str(tmp_path / "none*.png"), "--model", str(P2P_MODEL), "-o", str(tmp_path / "o")],
          "none*.png", "no such file, folder or matching glob")


def test_translate_16bit_label_map_with_ids_out_of_range(bad_files, tmp_path, capsys):
    fails(capsys, ["translate", str(bad_files / "label16.png"), "--model", str(HD_RUN), "-o", str(tmp_path / "o"),
                   "--features", "zero"], "label16.png", "label ids 300", "0..9", "ignore_index")


def test_translate_options_of_the_other_family(world, tmp_path, capsys):
    fails(capsys, ["translate", str(world / "AB" / "test"), "--model", str(P2P_MODEL), "-o", str(tmp_path / "o"),
                   "--features", "zero"], "features", "pix2pix model")
    # pix2pix takes instance maps only when trained with data.instance_edges (tests/test_instance_edges.py)
    fails(capsys, ["translate", str(world / "AB" / "test"), "--model", str(P2P_MODEL), "-o", str(tmp_path / "o"),
                   "--instances", str(world / "test_inst")], "--instances", "trained without instance maps")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# ----------------------------------------------------------------------------- eval


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--batch-size", "-1"),
                                             ("--kid-subset-size", "0"), ("--kid-subsets", "-2")])
def test_eval_counts_must_be_positive(world, tmp_path, capsys, flag, value):
    out = tmp_path / "eval"
    fails(capsys, ["eval", "--real", str(world / "test_img"), "--fake", str(world / "test_img"), "-o", str(out),
                   "--no-lpips", flag, value], f"{flag} {value}", "at least 1")
    assert not out.exists()  # no report of NaNs


def test_eval_with_a_model_checks_the_batch_size_before_translating(tmp_path, world, capsys):
    out = tmp_path / "eval"
    fails(capsys, ["eval", "--model", str(P2P_MODEL), "--data", str(world / "AB"), "-o", str(out),
                   "--batch-size", "0"], "--batch-size 0")
    assert not out.exists()


def test_eval_unpaired_folders_list_the_files(world, tmp_path, capsys):
    fake = tmp_path / "fake"
    fake.mkdir()
    Image.new("RGB", (32, 32)).save(fake / "other.png")
    fails(capsys, ["eval", "--real", str(world / "test_img"), "--fake", str(fake), "-o", str(tmp_path / "e")],
          "unpaired files", "add or remove files", listing=True)


def test_eval_names_the_feature_extractor_flag(world, tmp_path, capsys):
    fails(capsys, ["eval", "--real", str(world / "test_img"), "--fake", str(world / "test_img"), "-o",
                   str(tmp_path / "e"), "--feature-extractor", "no_such_module:build"],
          "--feature-extractor 'no_such_module:build'", "PYTHONPATH")


# ----------------------------------------------------------------------------- import-reference


def test_import_reference_refuses_wrong_checkpoints(tmp_path, capsys):
    text = tmp_path / "latest_net_G.pth"
    text.write_text("not a checkpoint")
    out = tmp_path / "imported"
    fails(capsys, ["import-reference", str(text), "--arch", "unet_256", "-o", str(out)], str(text),
          "could not be loaded", "not a torch file", "re-save it with torch.save")
    fails(capsys, ["import-reference", str(FORMAT1 / "pix2pix_run" / "checkpoints" / "latest.pt"), "--arch",
                   "unet_256", "-o", str(out)], "latest.pt", "not a state_dict")
    from pix2pix.models import create_generator

    unet = tmp_path / "unet128.pth"
    torch.save(create_generator("unet_128", 3, 3, ngf=2).state_dict(), unet)
    fails(capsys, ["import-reference", str(unet), "--arch", "resnet_9blocks", "-o", str(out)], str(unet),
          "does not match the architecture", "check that the architecture options", listing=True)
    assert not out.exists()


# ----------------------------------------------------------------------------- data tools


def test_data_check_refuses_bad_settings(world, capsys):
    fails(capsys, ["data", "check", str(world), "--label-nc", "-1"], "data.label_nc=-1")
    fails(capsys, ["data", "check", str(world), "--crop-size", "0"], "--crop-size", "positive")
    fails(capsys, ["data", "check", str(world), "--preset", "tiny_hd", "--set", "data.ignore_index=12"],
          "data.ignore_index=12", "0..9")
    fails(capsys, ["data", "check", str(world), "--set", "data.label_set=no_such_set"], "no_such_set")


def test_data_combine_unpaired_and_mismatched_write_nothing(tmp_path, capsys):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    a.mkdir()
    b.mkdir()
    Image.new("RGB", (8, 8)).save(a / "x.png")
    Image.new("RGB", (8, 8)).save(a / "lonely.png")
    Image.new("RGB", (8, 8)).save(b / "x.png")
    fails(capsys, ["data", "combine", str(a), str(b), "-o", str(out)], "1 unpaired files", "add or remove",
          listing=True)
    (a / "lonely.png").unlink()
    Image.new("RGB", (9, 8)).save(b / "x.png")
    fails(capsys, ["data", "combine", str(a), str(b), "-o", str(out)], "sizes differ", "--resize", listing=True)
    assert not out.exists()


def test_data_edges_checks_parameters_and_files_before_writing(world, bad_files, tmp_path, capsys):
    out = tmp_path / "edges"
    fails(capsys, ["data", "edges", str(world / "test_img"), "-o", str(out), "--low", "0.5", "--high", "0.1"],
          "low=0.5", "high=0.1", "--low")
    photos = tmp_path / "photos"
    shutil.copytree(world / "train_img", photos)
    shutil.copy(bad_files / "truncated.png", photos / "zzz.png")
    shutil.copy(bad_files / "text.png", photos / "aaa.png")
    fails(capsys, ["data", "edges", str(photos), "-o", str(out)], "aaa.png", "remove it or convert it")
    fails(capsys, ["data", "colorize", str(photos), "-o", str(out)], "aaa.png", "remove it or convert it")
    assert not out.exists()


def test_data_synth_sizes(tmp_path, capsys):
    fails(capsys, ["data", "synth", "-o", str(tmp_path / "s"), "--image-size", "big"], "'big'", "WIDTHxHEIGHT")
    fails(capsys, ["data", "synth", "-o", str(tmp_path / "s"), "--num", "0"], "--num", "positive")
    assert not (tmp_path / "s").exists()


def test_data_check_reports_a_decompression_bomb(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    png_bomb(tmp_path / "train" / "b.png")
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "b.png: claims more pixels than Pillow opens" in out


def _output_file_cases(world: Path) -> dict[str, list[str]]:
    return {
        "translate": ["translate", str(world / "AB" / "test"), "--model", str(P2P_MODEL)],
        "eval": ["eval", "--real", str(world / "test_img"), "--fake", str(world / "test_img"), "--no-lpips"],
        "segmenter train": ["segmenter", "train", "--data", str(world / "AB"), "--steps", "1"],
        "data synth": ["data", "synth", "--num", "2"],
        "data combine": ["data", "combine", str(world / "test_img"), str(world / "test_img")],
        "data edges": ["data", "edges", str(world / "test_img")],
        "data colorize": ["data", "colorize", str(world / "test_img")],
        "import-reference": ["import-reference", str(HD_RUN / "model" / "generator.safetensors"), "--arch", "unet"],
        "demo": ["demo", "--num", "2"],
    }


@pytest.mark.parametrize("verb", list(_output_file_cases(Path("."))))
def test_output_that_is_a_file_is_refused_before_any_work(world, tmp_path, capsys, verb):
    target = tmp_path / "results.png"
    target.write_bytes(b"keep me")
    fails(capsys, [*_output_file_cases(world)[verb], "-o", str(target)], str(target), "is a file")
    assert target.read_bytes() == b"keep me"
    nested = target / "inside"  # a file where a parent folder should be
    fails(capsys, [*_output_file_cases(world)[verb], "-o", str(nested)], str(target), "is a file, not a folder")


@pytest.mark.parametrize(("flag", "value"), [("--ngf", "0"), ("--crop-size", "-1"), ("--in-channels", "0")])
def test_import_reference_option_ranges(tmp_path, capsys, flag, value):
    out = tmp_path / "imported"
    fails(capsys, ["import-reference", str(HD_RUN / "model" / "generator.safetensors"), "--arch", "unet_128",
                   "-o", str(out), flag, value], f"{flag} {value}", "or more")
    assert not out.exists()


# ----------------------------------------------------------------------------- other verbs


def test_usage_errors_are_one_line(capsys):
    fails(capsys, ["no-such-verb"], "invalid choice: 'no-such-verb'", "pix2pix --help")
    fails(capsys, ["translate", "x.png"], "-o/--output", "pix2pix translate --help")
    fails(capsys, ["eval", "--batch-size", "many"], "--batch-size", "invalid int value")


def test_segmenter_train_settings(world, tmp_path, capsys):
    out = tmp_path / "seg"
    fails(capsys, ["segmenter", "train", "--data", str(world / "AB"), "--steps", "0", "-o", str(out)], "--steps 0")
    fails(capsys, ["segmenter", "train", "--data", str(world / "AB"), "--lr", "nan", "-o", str(out)], "--lr nan",
          "finite")
    fails(capsys, ["segmenter", "train", "--data", str(world / "AB"), "--batch-size", "0", "-o", str(out)],
          "--batch-size 0")
    assert not out.exists()


def test_study_serve_bad_port_and_port_in_use(tmp_path, capsys):
    studies = tmp_path / "studies"
    studies.mkdir()
    fails(capsys, ["study", "serve", "--studies", str(studies), "--port", "99999"], "--port 99999", "0..65535")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        codes: list[int] = []
        worker = threading.Thread(target=lambda: codes.append(main(["study", "serve", "--studies", str(studies),
                                                                    "--port", str(port)])), daemon=True)
        worker.start()
        worker.join(30)
        assert codes == [2], "the server started on a port in use"
    error_line(capsys, f"127.0.0.1:{port}", "pick another --port")


def test_edit_bad_port(capsys):
    fails(capsys, ["edit", "--model", str(HD_RUN), "--port", "99999"], "--port 99999", "0..65535")


def test_features_needs_at_least_one_cluster(world, capsys):
    fails(capsys, ["features", "--model", str(HD_RUN), "--data", str(world), "--k", "0"], "--k 0", "at least 1")


# ----------------------------------------------------------------------------- nothing trained is lost


def test_a_reporting_failure_costs_nothing_trained(world, tmp_path, monkeypatch, capsys):
    """The sample grid writer raises at every step: training finishes, the checkpoint and the model are
    written, and the failure is a warning."""
    import pix2pix.training.trainer as trainer

    def broken_grid(rows):
        raise OSError("disk full")

    monkeypatch.setattr(trainer, "image_grid", broken_grid)
    runs = tmp_path / "runs"
    with pytest.warns(RuntimeWarning, match="disk full"):
        assert main(["train", "--preset", "tiny", "--data", str(world / "AB"), "--runs-dir", str(runs),
                     "--set", "max_steps=1", "--set", "num_samples=1", "--no-progress"]) == 0
    run = runs / "00000-tiny"
    assert (run / "checkpoints" / "latest.pt").is_file() and (run / "model" / "generator.safetensors").is_file()
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == 1
    assert "could not be written (OSError: disk full)" in capsys.readouterr().out
    assert not list((run / "samples").glob("*.png"))


def test_ignore_index_applies_to_translate_and_the_editor(bad_files, tmp_path, capsys):
    """A model trained with ignore_index 0 reads id 300 as class 0 in translate and in the editor; one
    trained without refuses it there, naming the ids."""
    from pix2pix.editor.session import EditorModel
    from pix2pix.errors import DataError

    model = tmp_path / "model"
    shutil.copytree(HD_RUN / "model", model)
    card = json.loads((model / "config.json").read_text())
    card["data"]["ignore_index"] = 0  # format 1 keeps the label settings in "data"
    (model / "config.json").write_text(json.dumps(card))
    mapped = tmp_path / "mapped.png"
    ids = np.asarray(Image.open(bad_files / "label16.png")).astype(np.uint8)
    Image.fromarray(np.where(ids == 300, 0, ids).astype(np.uint8)).save(mapped)
    out = tmp_path / "out"
    for path in (bad_files / "label16.png", mapped):
        assert main(["translate", str(path), "--model", str(model), "-o", str(out), "--features", "zero"]) == 0
    capsys.readouterr()
    assert np.array_equal(np.asarray(Image.open(out / "label16.png")), np.asarray(Image.open(out / "mapped.png")))

    label = Image.open(bad_files / "label16.png")
    editor = EditorModel.load(model, device="cpu")
    read, _ = editor.read_maps(label, None)
    assert read.max() == 0 and read.shape == (32, 32)
    with pytest.raises(DataError, match=r"ids \[300\], outside this model's classes 0..9"):
        EditorModel.load(HD_RUN, device="cpu").read_maps(label, None)


def _coco_like(root: Path) -> Path:
    """COCO-Stuff-style maps: ids of labels.txt (person 1, ... stuff 150) and 255 for unlabeled pixels."""
    rng = np.random.default_rng(0)
    for phase, n in (("train", 2), ("test", 1)):
        for kind in ("label", "inst", "img"):
            (root / f"{phase}_{kind}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            ids = np.full((32, 32), 255, np.uint8)
            ids[:16] = 1 + i
            ids[16:, :16] = 150
            Image.fromarray(ids).save(root / f"{phase}_label" / f"c{i}.png")
            Image.fromarray(ids).save(root / f"{phase}_inst" / f"c{i}.png")
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"{phase}_img" / f"c{i}.png")
    return root


def test_coco_stuff_255_trains_samples_checks_and_translates(tmp_path, capsys):
    """The finding: COCO-Stuff maps with 255 trained for the whole schedule, then the final sample grid raised
    "label ids [255] are outside the palette" before anything was saved, and `data check` saw no problem."""
    data = _coco_like(tmp_path / "coco")
    coco = ["--set", "data.label_nc=183", "--set", "data.label_set=coco_stuff"]
    # data check as training reads the maps: 255 is out of range without the label set or an ignore_index ...
    assert main(["data", "check", str(data), "--preset", "tiny_hd", "--set", "data.label_nc=183"]) == 1
    report = capsys.readouterr().out
    assert "3 ids" in report and "holds ids 255, outside 0..182" in report and "data.ignore_index" in report
    # ... and mapped (a note, exit 0) with either
    assert main(["data", "check", str(data), "--preset", "tiny_hd", *coco]) == 0
    assert "unlabeled value 255 is read as id 0 ('unlabeled')" in capsys.readouterr().out
    assert main(["data", "check", str(data), "--preset", "tiny_hd", "--set", "data.label_nc=183",
                 "--set", "data.ignore_index=0"]) == 0
    assert "mapped to data.ignore_index=0" in capsys.readouterr().out

    runs = tmp_path / "runs"
    assert main(["train", "--preset", "tiny_hd", "--data", str(data), "--runs-dir", str(runs), *coco,
                 "--set", "data.ignore_index=0", "--set", "max_steps=1", "--set", "num_samples=1",
                 "--no-progress"]) == 0
    run = runs / "00000-tiny_hd"
    grid = np.asarray(Image.open(run / "samples" / "step_00000001.png").convert("RGB"))
    from pix2pix.data.label_sets import get_label_set

    palette = get_label_set("coco_stuff").palette_array
    # the label tile (top left, after the 2-pixel margin): class 1 above, 150 bottom left, 255 as 'unlabeled'
    tile = grid[2:34, 2:34]
    assert tile[4, 16].tolist() == palette[1].tolist() and tile[28, 4].tolist() == palette[150].tolist()
    assert tile[28, 28].tolist() == palette[0].tolist()
    assert (run / "model" / "generator.safetensors").is_file()
    assert "warning" not in capsys.readouterr().out

    out = tmp_path / "out"
    assert main(["translate", "--model", str(run), str(data / "test_label"), "-o", str(out)]) == 0
    assert Image.open(out / "c0.png").size == (32, 32)
    evaluated = tmp_path / "eval"  # the label pictures of the test split show 255 as 'unlabeled' too
    assert main(["eval", "--model", str(run), "--data", str(data), "-o", str(evaluated), "--no-fid",
                 "--no-lpips"]) == 0
    assert json.loads((evaluated / "metrics.json").read_text())["images"] == 1


def test_coco_stuff_label_set_alone_maps_255(tmp_path, capsys):
    """Without data.ignore_index the label set's own convention applies: 255 is 'unlabeled' (id 0)."""
    data = _coco_like(tmp_path / "coco")
    runs = tmp_path / "runs"
    assert main(["train", "--preset", "tiny_hd", "--data", str(data), "--runs-dir", str(runs),
                 "--set", "data.label_nc=183", "--set", "data.label_set=coco_stuff", "--set", "max_steps=1",
                 "--set", "num_samples=1", "--no-progress"]) == 0
    assert (runs / "00000-tiny_hd" / "samples" / "step_00000001.png").is_file()
