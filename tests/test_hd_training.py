"""pix2pixHD training on the synthetic world: losses, the three coarse-to-fine stages, resume, CRN."""

import pytest
import torch
from conftest import SHARED_DATA

from pix2pix.errors import DataError, Pix2PixError
from pix2pix.presets import get_preset
from pix2pix.report import read_stats
from pix2pix.training.stages import coarse_to_fine, global_stage_config
from pix2pix.training.state import load_training_state
from pix2pix.training.trainer import build_trainer, load_run_config, train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from pix2pix.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("world")
    write_synthetic_dataset(root, num=6, size=64, seed=2)  # 5 train, 1 test
    return root


def _cfg(name, world, tmp_path, **train):
    cfg = get_preset(name)
    cfg.data.root, cfg.train.runs_dir, cfg.train.device = str(world), str(tmp_path / "runs"), "cpu"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def _losses(run_dir):
    return [r["losses"] for r in read_stats(run_dir / "stats.jsonl")]


def test_global_run_logs_the_pix2pixhd_losses(world, tmp_path):
    run = train(_cfg("tiny_hd", world, tmp_path)).run_dir
    assert set(_losses(run)[-1]) == {"D", "D_fake", "D_real", "G", "G_GAN", "G_GAN_Feat", "G_VGG"}
    cfg = load_run_config(run)
    assert (cfg.model.family, cfg.data.label_nc) == ("pix2pixhd", 10)


def test_input_channels_follow_the_reference(world, tmp_path):
    cfg = _cfg("tiny_hd", world, tmp_path)
    cfg.model.use_features = True
    trainer = build_trainer(cfg, torch.device("cpu"))
    # G: 10 labels + 1 boundary + 3 features; D: 10 labels + 1 boundary + 3 image channels
    assert trainer.net_g.model[1].in_channels == 14
    assert trainer.net_d.scale_layers(0)[0][0].in_channels == 14
    assert trainer.net_e is not None and len(trainer.opt_g.param_groups[0]["params"]) == \
        len(list(trainer.net_g.parameters())) + len(list(trainer.net_e.parameters()))


def test_local_stage_trains_only_the_enhancer_then_everything(world, tmp_path):
    cfg = _cfg("tiny_hd_local", world, tmp_path, max_steps=5)  # one epoch of 5 steps
    trainer = build_trainer(cfg, torch.device("cpu"))
    enhancer = {id(p) for p in trainer.net_g.enhancer_parameters()}
    assert {id(p) for p in trainer.opt_g.param_groups[0]["params"]} == enhancer
    before = {k: v.clone() for k, v in trainer.net_g.state_dict().items()}
    dataset = trainer.objective.make_dataset("train", train=True)
    for i in range(5):
        batch = {k: (v[None] if isinstance(v, torch.Tensor) else [v]) for k, v in dataset[(i, i)].items()}
        trainer.train_step(batch)
    after = trainer.net_g.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model1_") for k in changed)  # the global part stayed frozen
    trainer.end_epoch(1)
    assert len(trainer.opt_g.param_groups[0]["params"]) == len(list(trainer.net_g.parameters()))
    assert trainer.opt_g.state == {}  # Adam rebuilt, as the reference does at the unfreeze


def test_resume_across_the_unfreeze_is_exact(world, tmp_path):
    full = train(_cfg("tiny_hd_local", world, tmp_path, max_steps=7))
    part = train(_cfg("tiny_hd_local", world, tmp_path, max_steps=3, checkpoint_every=3))
    cfg = load_run_config(part.run_dir)
    cfg.train.max_steps = 7
    resumed = train(cfg, resume=part.run_dir)
    assert _losses(resumed.run_dir) == _losses(full.run_dir)
    assert load_training_state(resumed.run_dir / "checkpoints" / "latest.pt")["trainer"]["g_phase"] == "all"


def test_coarse_to_fine_runs_the_stages(world, tmp_path):
    cfg = _cfg("tiny_hd_local", world, tmp_path, max_steps=2)
    stage1 = global_stage_config(cfg)
    assert (stage1.model.generator, stage1.model.ngf, stage1.data.load_size, stage1.data.crop_size) == \
        ("global", 8, 18, 16)
    first, second = coarse_to_fine(cfg, log=lambda *_: None)
    from safetensors.torch import load_file

    g = load_file(str(first.run_dir / "model" / "generator.safetensors"))
    loaded = build_trainer(load_run_config(second.run_dir), torch.device("cpu")).net_g.state_dict()
    # the local run started from the global weights (its own saved copy moved on, the initial one matches)
    assert all(torch.equal(loaded[k], g[k]) for k in loaded if k.startswith("model.") and k in g)
    assert load_run_config(second.run_dir).train.load_global == str(first.run_dir / "model")


def test_crn_trains_with_the_perceptual_loss_alone(world, tmp_path):
    run = train(_cfg("tiny_crn", world, tmp_path, max_steps=2)).run_dir
    assert set(_losses(run)[-1]) == {"G", "G_VGG"}


def test_missing_vgg_weights_stop_with_a_clear_message(world, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cfg = _cfg("tiny_hd", world, tmp_path)
    cfg.loss.vgg_random = False
    with pytest.raises(Pix2PixError, match="lambda_vgg=0"):
        train(cfg)


def test_label_ids_beyond_label_nc_name_the_file(world, tmp_path):
    cfg = _cfg("tiny_hd", world, tmp_path)
    cfg.data.label_nc = 5
    with pytest.raises(DataError, match="world_0000"):
        train(cfg)
    cfg.data.ignore_index = 0  # the user maps unknown ids to class 0 instead
    assert train(cfg).step == 6


@pytest.mark.skipif(not (SHARED_DATA / "cityscapes_samples" / "train_label").is_dir(),
                    reason="../shared/data/cityscapes_samples is absent")
def test_trains_on_real_cityscapes_samples(tmp_path):
    cfg = _cfg("tiny_hd", SHARED_DATA / "cityscapes_samples", tmp_path, max_steps=2)
    cfg.data.label_nc, cfg.data.label_set = 35, "cityscapes"
    cfg.data.preprocess, cfg.data.load_size, cfg.data.crop_size = "scale_width_and_crop", 64, 32
    run = train(cfg).run_dir
    assert len(_losses(run)) == 2
    assert (run / "samples" / "step_00000002.png").is_file()  # test split has no photos: label | output


def test_class_label_condition_trains_with_the_same_networks(tmp_path):
    from PIL import Image

    for phase in ("train", "test"):
        for name, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
            folder = tmp_path / "classes" / phase / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 40), colour).save(folder / f"{i}.png")
    cfg = _cfg("tiny_hd", tmp_path / "classes", tmp_path, max_steps=2)
    cfg.data.class_from_folder, cfg.data.label_nc = True, 2
    trainer = build_trainer(cfg, torch.device("cpu"))
    assert trainer.net_g.model[1].in_channels == 2  # one-hot class map, no instance channel
    assert train(cfg).step == 2


def _reference_step(trainer, batch):
    """NVIDIA pix2pixHD's step written plainly: D on fake twice, G step, then D step."""
    cfg, lc = trainer.cfg, trainer.cfg.loss
    from pix2pix.losses import feature_matching_loss

    obj = trainer.objective
    pair = obj.prepare(batch, lambda x: x)
    cond, real = pair.cond, pair.real
    fake = obj.generate(trainer.net_g, trainer.net_e, pair)
    d = trainer.net_d
    pred_fake_pool = d(torch.cat([cond, fake.detach()], 1))
    loss_d_fake = obj.gan(pred_fake_pool, False)
    pred_real = d(torch.cat([cond, real.detach()], 1))
    loss_d_real = obj.gan(pred_real, True)
    pred_fake = d(torch.cat([cond, fake], 1))
    loss_g = obj.gan(pred_fake, True, for_discriminator=False) + \
        feature_matching_loss(pred_fake, pred_real, cfg.model.n_layers_d, lc.lambda_feat) + trainer.vgg(fake, real)
    trainer.opt_g.zero_grad()
    loss_g.backward()
    trainer.opt_g.step()
    trainer.opt_d.zero_grad()
    (0.5 * (loss_d_fake + loss_d_real)).backward()
    trainer.opt_d.step()
    return float(loss_g.detach())


def test_one_discriminator_pass_gives_the_reference_update(world, tmp_path):
    cfg = _cfg("tiny_hd", world, tmp_path)
    cfg.model.use_features = True
    torch.manual_seed(0)
    ours = build_trainer(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    ref = build_trainer(cfg, torch.device("cpu"))
    dataset = ours.objective.make_dataset("train", train=True)
    for i in range(2):
        batch = {k: (v[None] if isinstance(v, torch.Tensor) else [v]) for k, v in dataset[(i, i)].items()}
        g_ours = float(ours.train_step(batch)["G"])
        g_ref = _reference_step(ref, batch)
        assert g_ours == pytest.approx(g_ref, rel=1e-5)
    for name in ("net_g", "net_d", "net_e"):
        a, b = getattr(ours, name).state_dict(), getattr(ref, name).state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name
