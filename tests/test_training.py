import json
import os
import signal
from pathlib import Path

import pytest
import torch

from pix2pix.errors import TrainingDiverged
from pix2pix.report import loss_plot_svg, read_stats
from pix2pix.training.sampling import EpochSampler
from pix2pix.training.schedules import epochs_for_steps, linear_decay_factor
from pix2pix.training.state import load_training_state
from pix2pix.training.trainer import Trainer, load_run_config, train


def _losses(run_dir):
    return [r["losses"] for r in read_stats(run_dir / "stats.jsonl")]


def test_tiny_run_writes_the_run_directory(tiny_config):
    result = train(tiny_config)
    run = result.run_dir
    assert result.step == 6 and run.name == "00000-tiny"
    assert json.loads((run / "config.json").read_text())["model"]["ngf"] == 8
    stats = read_stats(run / "stats.jsonl")
    assert [r["step"] for r in stats] == [1, 2, 3, 4, 5, 6]
    assert set(stats[0]["losses"]) == {"D", "D_fake", "D_real", "G", "G_GAN", "G_L1"}
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    assert "step_00000006.png" in (run / "index.html").read_text()
    assert "<polyline" in (run / "loss.svg").read_text()
    assert (run / "model" / "generator.safetensors").is_file()
    assert load_training_state(run / "checkpoints" / "latest.pt")["step"] == 6
    # a second run gets the next number
    assert train(tiny_config).run_dir.name == "00001-tiny"


def test_loss_plot_spans_the_plot_area_and_skips_non_finite_losses():
    import xml.etree.ElementTree as ET

    svg = "{http://www.w3.org/2000/svg}"
    records = [{"step": 10, "losses": {"G": 2.0, "D": 1.0}}, {"step": 20, "losses": {"G": float("nan"), "D": 0.5}},
               {"step": 30, "losses": {"G": 0.0, "D": 0.5}}]
    root = ET.fromstring(loss_plot_svg(records, width=640, height=320))  # plot area x 56..510, y 16..284
    d, g = ([tuple(map(float, pt.split(","))) for pt in line.get("points").split()]
            for line in root.findall(f"{svg}polyline"))  # keys in sorted order: D, G
    assert g == [(56.0, 16.0), (510.0, 284.0)]  # the NaN at step 20 is left out; G holds both y extremes
    assert d == [(56.0, 150.0), (283.0, 217.0), (510.0, 217.0)]
    assert [t.text for t in root.iter(f"{svg}text")][-2:] == ["D", "G"]  # the legend, one entry per key
    assert "no losses logged yet" in loss_plot_svg([])

def test_same_seed_same_losses(tiny_config):
    assert _losses(train(tiny_config).run_dir) == _losses(train(tiny_config).run_dir)


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tiny_config):
    tiny_config.train.max_steps = 8  # 3 steps per epoch: the break falls mid-epoch, across an lr step
    tiny_config.optim.n_epochs, tiny_config.optim.n_epochs_decay = 1, 2
    full = train(tiny_config)

    tiny_config.train.max_steps = 4
    tiny_config.train.checkpoint_every = 4
    part = train(tiny_config)
    assert part.step == 4
    from pix2pix.training.trainer import load_run_config

    cfg = load_run_config(part.run_dir)
    cfg.train.max_steps = 8
    resumed = train(cfg, resume=part.run_dir)
    assert resumed.step == 8
    assert _losses(resumed.run_dir) == _losses(full.run_dir)
    a = load_training_state(full.run_dir / "checkpoints" / "latest.pt")["trainer"]["net_g"]
    b = load_training_state(resumed.run_dir / "checkpoints" / "latest.pt")["trainer"]["net_g"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_linear_decay_matches_the_reference_rule():
    factors = [linear_decay_factor(e, 100, 100) for e in range(200)]
    assert factors[:100] == [1.0] * 100
    assert factors[100] == pytest.approx(1 - 1 / 101) and factors[199] == pytest.approx(1 / 101)


def test_scheduler_steps_once_per_epoch(tiny_config):
    tiny_config.optim.n_epochs, tiny_config.optim.n_epochs_decay = 1, 3
    tiny_config.train.max_steps = 9  # 3 epochs of 3 steps
    lrs = [r["lr"] for r in read_stats(train(tiny_config).run_dir / "stats.jsonl")]
    expected = [2e-4 * linear_decay_factor(e, 1, 3) for e in range(4)]
    assert lrs == pytest.approx([expected[0]] * 2 + [expected[1]] * 3 + [expected[2]] * 3 + [expected[3]])


def test_epoch_sampler_is_deterministic_and_resumable():
    full = list(EpochSampler(10, seed=3, epoch=2))
    assert sorted(i for i, _ in full) == list(range(10))
    assert list(EpochSampler(10, seed=3, epoch=2, start=4)) == full[4:]
    assert [i for i, _ in EpochSampler(10, seed=3, epoch=3)] != [i for i, _ in full]


def test_checkpoint_write_is_atomic(tiny_config, monkeypatch):
    tiny_config.train.max_steps = 3
    run = train(tiny_config).run_dir
    ckpt = run / "checkpoints" / "latest.pt"
    before = ckpt.read_bytes()

    def failing_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    from pix2pix.training.state import save_training_state

    with pytest.raises(OSError):
        save_training_state(ckpt, {"step": 99})
    assert ckpt.read_bytes() == before
    assert [p.name for p in ckpt.parent.iterdir()] == ["latest.pt"]  # no temp file left behind


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, monkeypatch):
    original = Trainer.train_step
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        losses = original(self, batch)
        if calls["n"] == 5:
            losses["G"] = torch.tensor(float("nan"))
        return losses

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    tiny_config.train.log_every = 2
    with pytest.raises(TrainingDiverged, match="last good checkpoint \\(step 3\\)"):
        train(tiny_config)
    (run,) = Path(tiny_config.train.runs_dir).iterdir()
    assert load_training_state(run / "checkpoints" / "latest.pt")["step"] == 3


def test_ctrl_c_saves_and_resumes(tiny_config, monkeypatch):
    original = Trainer.train_step
    calls = {"n": 0}

    def interrupting(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C mid-step
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupting)
    tiny_config.train.checkpoint_every = 100
    result = train(tiny_config)
    assert result.interrupted and result.step == 2
    assert load_training_state(result.run_dir / "checkpoints" / "latest.pt")["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", original)
    assert train(tiny_config, resume=result.run_dir).step == 6


def test_dry_run_prints_and_writes_nothing(tiny_config, tmp_path):
    lines = []
    result = train(tiny_config, dry_run=True, log=lines.append)
    assert result.step == 0 and not (tmp_path / "runs").exists()
    text = "\n".join(lines)
    assert "generator: unet" in text and "steps: 6" in text and '"crop_size": 32' in text


@pytest.mark.parametrize("override", [{"gan_mode": "lsgan"}, {"gan_mode": "hinge"}, {"gan_mode": "wgangp"},
                                      {"lambda_gan": 0.0}, {"lambda_l1": 0.0}])
def test_objective_variants_train(tiny_config, override):
    for k, v in override.items():
        setattr(tiny_config.loss, k, v)
    tiny_config.train.max_steps = 2
    stats = read_stats(train(tiny_config).run_dir / "stats.jsonl")
    losses = stats[-1]["losses"]
    assert all(v == v for v in losses.values())  # finite
    assert ("D" in losses) == (override.get("lambda_gan", 1.0) > 0)
    assert ("D_gp" in losses) == (override.get("gan_mode") == "wgangp")


def test_unconditional_discriminator_sees_only_the_output(tiny_config):
    tiny_config.model.conditional_d = False
    trainer = Trainer(tiny_config, torch.device("cpu"))
    assert trainer.net_d.model[0].in_channels == 3


def test_resnet_and_channels_last_presets_train(tiny_config):
    from pix2pix.presets import get_preset

    cfg = get_preset("tiny_resnet")
    cfg.data, cfg.train.runs_dir, cfg.train.max_steps, cfg.train.channels_last = tiny_config.data, \
        tiny_config.train.runs_dir, 2, True
    assert train(cfg).step == 2


def test_worker_processes_give_the_same_losses(tiny_config):
    tiny_config.train.max_steps = 3
    in_process = _losses(train(tiny_config).run_dir)
    tiny_config.data.num_workers = 2
    assert _losses(train(tiny_config).run_dir) == in_process


def test_fast_step_switch_keeps_the_losses_close(tiny_config):
    tiny_config.train.max_steps = 3
    exact = _losses(train(tiny_config).run_dir)
    tiny_config.train.fast_step = True
    fast = _losses(train(tiny_config).run_dir)
    for a, b in zip(exact, fast, strict=True):
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-3 * max(1.0, abs(a[k])) for k in a)


def test_max_seconds_stops_saved_and_resumes(tiny_config):
    tiny_config.train.max_steps = 50
    tiny_config.train.max_seconds = 1e-9  # the first step already takes longer
    first = train(tiny_config)
    assert first.step == 1 and not first.interrupted
    state = load_training_state(first.run_dir / "checkpoints" / "latest.pt")
    assert state["step"] == 1 and state["trained_seconds"] > 0
    assert (first.run_dir / "model" / "config.json").is_file()
    assert [r["step"] for r in read_stats(first.run_dir / "stats.jsonl")] == [1]
    cfg = load_run_config(first.run_dir)
    cfg.train.max_seconds = 0.0
    cfg.train.max_steps = 4
    assert train(cfg, resume=first.run_dir).step == 4


def test_epochs_for_steps_splits_a_step_budget_into_constant_and_decay_epochs():
    assert epochs_for_steps(600, 192, 4) == (6, 7)  # 48 steps per epoch, 13 epochs cover 600 steps
    assert epochs_for_steps(3, 6, 4) == (1, 1)  # at least one epoch of each
    assert epochs_for_steps(1000, 10, 1) == (50, 50)
    assert epochs_for_steps(10, 7, 2) == (1, 2)  # 4 steps per epoch (the last batch is short)
