"""The segmentation-adversarial switch (`loss.lambda_seg`, OASIS-style): its label reading, class balancing and
cross-entropies against hand-made cases, the network's shapes, the training step it adds to, exact resume,
and its errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_leaves
from torch.utils.data import default_collate

from pix2pix.config import validate
from pix2pix.errors import ConfigError, DataError
from pix2pix.losses.semantic import IGNORE, class_balance_weights, palette_ids, segmentation_adversarial_loss
from pix2pix.models import create_discriminator
from pix2pix.models.patchgan import NLayerDiscriminator
from pix2pix.models.segmentation_d import SegmentationDiscriminator, WithSegmentationD
from pix2pix.presets import get_preset
from pix2pix.runtime import seed_everything
from pix2pix.training.objectives import make_objective
from pix2pix.training.state import load_training_state
from pix2pix.training.trainer import build_trainer, load_run_config, train

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rgb(colours):
    """[[(r, g, b), ...], ...] (0..255) -> [1, 3, H, W] in [-1, 1]."""
    return (torch.tensor(colours, dtype=torch.float32).permute(2, 0, 1)[None] / 127.5) - 1


def test_label_ids_are_the_nearest_palette_colour_and_void_is_ignored():
    palette = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    cond = _rgb([[(0, 0, 0), (250, 10, 3)], [(0, 5, 240), (30, 20, 10)]])  # JPEG-like noise around the colours
    assert palette_ids(cond, palette).tolist() == [[[0, 1], [2, 0]]]
    assert palette_ids(cond, palette, ignore_id=0).tolist() == [[[IGNORE, 1], [2, IGNORE]]]


def test_each_present_class_gets_the_same_total_weight():
    ids = torch.tensor([[[0, 0], [0, 1]], [[0, IGNORE], [0, 0]]])  # class 0: 6 pixels, class 1: 1, one ignored
    w = class_balance_weights(ids, n_classes=4)
    # 7 labelled pixels, 2 classes present: 7 / (2 * 6) per class-0 pixel, 7 / (2 * 1) for the class-1 pixel
    expected = torch.tensor([[[7 / 12, 7 / 12], [7 / 12, 3.5]], [[7 / 12, 0.0], [7 / 12, 7 / 12]]])
    assert torch.allclose(w, expected)
    assert float(w[ids == 0].sum()) == pytest.approx(float(w[ids == 1].sum())) == pytest.approx(3.5)
    assert torch.equal(class_balance_weights(torch.full((1, 2, 2), 2), 4), torch.ones(1, 2, 2))


def test_cross_entropies_by_hand():
    logits = torch.randn(2, 4, 3, 3)  # 3 classes + "generated"
    ids = torch.randint(0, 3, (2, 3, 3))
    ids[0, 0, 0] = IGNORE
    w = class_balance_weights(ids, 3)
    ce = F.cross_entropy(logits, ids.clamp(min=0), reduction="none")
    assert float(segmentation_adversarial_loss(logits, ids, w)) == pytest.approx(float((ce * w).sum() / w.sum()))
    fake = -torch.log_softmax(logits, 1)[:, 3].mean()
    assert float(segmentation_adversarial_loss(logits)) == pytest.approx(float(fake), rel=1e-6)


def test_the_segmentation_d_gives_class_and_generated_logits_at_any_size():
    d = WithSegmentationD(create_discriminator("patchgan", 6, ndf=4, n_layers=2), SegmentationDiscriminator(3, 5, 4))
    image = torch.randn(2, 3, 36, 44, requires_grad=True)  # not a multiple of 16: padded and cropped back
    out = d(image, segment=True)
    assert out.shape == (2, 6, 36, 44)
    out.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    x = torch.randn(1, 6, 32, 32)
    flat = [torch.cat([t.flatten() for t in tree_leaves(out)]) for out in (d(x), d.pair(x))]
    assert torch.equal(*flat)  # without `segment`, the pair D's output itself


@pytest.fixture
def seg_config(world, tmp_path):
    """The tiny preset on the synthetic world's label->photo pairs; its classes.json sits beside AB/."""
    cfg = get_preset("tiny")
    cfg.data.root, cfg.train.runs_dir, cfg.train.device = str(world / "AB"), str(tmp_path / "runs"), "cpu"
    cfg.loss.lambda_seg = 1.0
    return cfg


def test_the_switch_is_off_by_default_and_adds_a_trained_segmenter(seg_config, world):
    from pix2pix.config import Config

    assert Config().loss.lambda_seg == 0.0
    tiny = get_preset("tiny")
    tiny.data.root = seg_config.data.root
    assert isinstance(make_objective(tiny).build_networks().d, NLayerDiscriminator)

    seed_everything(0)
    t = build_trainer(seg_config, CPU)
    n_classes = len(json.loads((world / "classes.json").read_text())["classes"])
    assert isinstance(t.net_d, WithSegmentationD) and t.net_d.segmenter.head.out_channels == 4 * (n_classes + 1)
    ds = t.objective.make_dataset("train", train=True)
    batch = default_collate([ds[0], ds[1]])
    before = {k: v.clone() for k, v in t.net_d.state_dict().items()}
    g_before = {k: v.clone() for k, v in t.net_g.state_dict().items()}
    losses = t.train_step(batch)
    assert {"D_seg", "G_seg"} <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    after = t.net_d.state_dict()
    for prefix in ("pair.", "segmenter."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    assert any(not torch.equal(g_before[k], v) for k, v in t.net_g.state_dict().items())
    # G's loss holds lambda_seg * G_seg: doubling the weight adds G_seg once more
    pair = t.objective.prepare(batch, t._to_device)
    fake = t.objective.generate(t.net_g, None, pair)
    one = t.objective.generator_losses(t.net_d, pair, fake)
    seg_config.loss.lambda_seg = 2.0
    two = t.objective.generator_losses(t.net_d, pair, fake)
    assert float((two["G"] - one["G"]).detach()) == pytest.approx(float(one["G_seg"].detach()), rel=1e-5)


def test_a_run_with_the_segmentation_d_resumes_exactly(seg_config):
    cfg = seg_config
    cfg.train.max_steps, cfg.train.sample_every = 4, 1000
    full = train(cfg)
    cfg.train.max_steps, cfg.train.checkpoint_every = 2, 2
    part = train(cfg)
    resumed_cfg = load_run_config(part.run_dir)
    resumed_cfg.train.max_steps = 4
    resumed = train(resumed_cfg, resume=part.run_dir)
    a = load_training_state(full.run_dir / "checkpoints" / "latest.pt")["trainer"]
    b = load_training_state(resumed.run_dir / "checkpoints" / "latest.pt")["trainer"]
    assert any(k.startswith("segmenter.") for k in a["net_d"])
    for name in ("net_g", "net_d"):
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name
    stats = [json.loads(line)["losses"] for line in (full.run_dir / "stats.jsonl").read_text().splitlines()]
    assert "G_seg" in stats[-1]


def test_where_it_cannot_apply_is_an_error(tiny_config, tmp_path):
    hd = get_preset("tiny_hd")
    hd.loss.lambda_seg = 1.0
    with pytest.raises(ConfigError, match="model.family=pix2pix"):
        validate(hd)
    tiny_config.loss.lambda_seg = -1.0
    with pytest.raises(ConfigError, match="loss.lambda_seg=-1.0"):
        validate(tiny_config)
    tiny_config.loss.lambda_seg = 1.0  # the test pairs have no classes.json and no data.label_set
    with pytest.raises(ConfigError, match="needs the classes of the input label maps: set data.label_set"):
        make_objective(tiny_config)
    # a label set whose colours the inputs (random blocks of colour, not a label map) do not use
    tiny_config.data.label_set = "synthetic"
    t = build_trainer(tiny_config, CPU)
    ds = t.objective.make_dataset("train", train=True)
    with pytest.raises(DataError, match=r"of the input's pixels are far from every colour of label set 'synthetic'"):
        t.train_step(default_collate([ds[0], ds[1]]))


def test_the_cli_gives_one_line_for_inputs_that_are_not_label_maps(tiny_config, capsys):
    from pix2pix.cli.main import main

    code = main(["train", "--preset", "tiny", "--data", tiny_config.data.root, "--runs-dir", tiny_config.train.runs_dir,
                 "--set", "loss.lambda_seg=1", "--set", "data.label_set=synthetic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "loss.lambda_seg needs colour-coded label maps" in err[0]


@pytest.mark.slow
def test_the_segmentation_d_trains_under_ddp(seg_config, tmp_path):
    """torchrun, 2 processes (gloo, CPU): the pair D and the segmenter are one DDP module whose passes each use
    part of it (each process's class weights are its own batch's)."""
    import os
    import subprocess
    import sys

    runs = tmp_path / "ddp_runs"
    sets = {"loss.lambda_seg": "1", "train.max_steps": "2", "train.batch_size": "2"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "-m", "pix2pix.cli.main", "train", "--preset", "tiny", "--data", seg_config.data.root, "--runs-dir",
           str(runs), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
    done = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = runs.iterdir()
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in stats] == [1, 2] and all({"D_seg", "G_seg"} <= set(r["losses"]) for r in stats)
    state = load_training_state(run_dir / "checkpoints" / "latest.pt")["trainer"]["net_d"]
    assert any(k.startswith("segmenter.") for k in state) and any(k.startswith("pair.") for k in state)
