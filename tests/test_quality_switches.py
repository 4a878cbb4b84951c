"""The opt-in training switches of issue 11 against hand-made cases: EMA of G (train.ema_decay),
DiffAugment of D's pairs (loss.diffaugment), spectral norm in D (model.spectral_norm_d), TTUR
(optim.lr_d), R1 (loss.lambda_r1), pix2pix's perceptual loss (loss.lambda_perceptual) and its
input-balanced L1 (loss.l1_balance); each
off by default, and a run with them on resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import default_collate

from pix2pix.cli.main import main
from pix2pix.config import Config, validate
from pix2pix.errors import ConfigError
from pix2pix.losses import VGGLoss
from pix2pix.losses.augment import AugmentParams, PairAugment, parse_policy
from pix2pix.presets import get_preset
from pix2pix.report import image_grid, read_stats
from pix2pix.runtime import seed_everything
from pix2pix.training.ema import WeightAverage
from pix2pix.training.fast_step import rebuild_adams
from pix2pix.training.objectives import Pair, Pix2PixObjective, make_objective
from pix2pix.training.state import load_training_state
from pix2pix.training.trainer import build_trainer, load_run_config, train

CPU = torch.device("cpu")
ALL_AUG = "translation,cutout,color"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hd(world, tmp_path, **train):
    cfg = get_preset("tiny_hd")
    cfg.data.root, cfg.train.runs_dir, cfg.train.device = str(world), str(tmp_path / "runs"), "cpu"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def _losses(run_dir):
    return [r["losses"] for r in read_stats(run_dir / "stats.jsonl")]


def _trainer(cfg, seed=0):
    seed_everything(seed)
    return build_trainer(cfg, CPU)


def _batches(trainer, n, size=2):
    ds = trainer.objective.make_dataset("train", train=True)
    keys = [[((i * size + j) % len(ds), 1000 + i * size + j) for j in range(size)] for i in range(n)]  # seeded crops
    return [default_collate([ds[k] for k in ks]) for ks in keys]


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _resume(run_dir, max_steps, **changes):
    cfg = load_run_config(run_dir)
    cfg.train.max_steps = max_steps
    for key, value in changes.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return train(cfg, resume=run_dir)


# ----------------------------------------------------------------------------------------------- defaults


def test_every_switch_is_off_by_default(tiny_config):
    c = Config()
    assert (c.train.ema_decay, c.loss.diffaugment, c.model.spectral_norm_d, c.optim.lr_d, c.loss.lambda_r1,
            c.loss.lambda_perceptual, c.loss.l1_balance) == (0.0, "", False, 0.0, 0.0, 0.0, 0.0)
    t = _trainer(tiny_config)
    assert t.ema is None and not t.objective.augment and t.vgg is None
    assert t.inference_networks().g is t.net_g
    assert not any(parametrize.is_parametrized(m) for m in t.net_d.modules())
    assert t.opt_d.param_groups[0]["lr"] == t.opt_g.param_groups[0]["lr"] == tiny_config.optim.lr
    assert "ema" not in t.state_dict()


def test_empty_policy_and_zero_weights_give_the_default_step_bit_for_bit(tiny_config):
    """A policy of separators only is no augmentation: the default step's losses, weights and random
    stream (no draw is taken). (tests/test_benchmark_equivalence.py holds the default step to the plain one.)"""
    runs = []
    for policy in ("", " , ,"):
        tiny_config.loss.diffaugment = policy
        t = _trainer(tiny_config)
        losses = [t.train_step(b) for b in _batches(t, 2)]
        runs.append((losses, _state(t.net_g), _state(t.net_d), torch.get_rng_state()))
    (la, ga, da, ra), (lb, gb, db, rb) = runs
    assert all(torch.equal(x[k], y[k]) for x, y in zip(la, lb, strict=True) for k in x)
    assert all(torch.equal(ga[k], gb[k]) for k in ga) and all(torch.equal(da[k], db[k]) for k in da)
    assert torch.equal(ra, rb)


# ----------------------------------------------------------------------------------------------- EMA


def test_weight_average_is_the_closed_form_and_copies_buffers():
    """d_k = min(d, (k - 1) / k): the running mean of p_1..p_k while that is below d, then the EMA
    ema_k = d ema_{k-1} + (1 - d) p_k; the initial weights p_0 never count. Dyadic values, so exactly."""
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(2.0)
    d = 0.5
    avg = WeightAverage({"g": net}, d)
    values = [1.0, -2.0, 4.0, 0.5]
    expected = [1.0, (1.0 - 2.0) / 2]  # k = 1: the live weights; k = 2: their mean (d_2 = 1/2 = d)
    expected += [d * expected[-1] + (1 - d) * 4.0]
    expected += [d * expected[-1] + (1 - d) * 0.5]
    for k, v in enumerate(values, 1):
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(v)
        net[1].running_mean.fill_(10 * v)
        net[1].num_batches_tracked.fill_(k)
        avg.update({"g": net})
        for p in avg.averaged["g"].parameters():
            assert torch.equal(p, torch.full_like(p, expected[k - 1]))
        assert torch.equal(avg.averaged["g"][1].running_mean, torch.full((2,), 10 * v, dtype=torch.float64))
        assert int(avg.averaged["g"][1].num_batches_tracked) == k
    assert avg.state_dict()["updates"] == 4
    a = avg.averaged["g"]
    assert a is not net and not a.training and not any(p.requires_grad for p in a.parameters())
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in net.parameters())  # the live net untouched
    with pytest.raises(ValueError):
        WeightAverage({"g": net}, 1.0)


def test_weight_average_warm_up_is_the_plain_mean_until_it_reaches_the_decay():
    net = nn.Linear(1, 1, bias=False).double()
    avg = WeightAverage({"g": net}, 0.75)  # (k - 1) / k reaches 3/4 at k = 4
    for k, v in enumerate([8.0, 4.0, 0.0, 4.0, 8.0], 1):
        with torch.no_grad():
            net.weight.fill_(v)
        avg.update({"g": net})
        if k == 3:
            assert float(avg.averaged["g"].weight) == 4.0  # mean of 8, 4, 0
    # k = 4: d_4 = 3/4, so 3/4 * 4 + 1/4 * 4 = 4; k = 5: 3/4 * 4 + 1/4 * 8 = 5
    assert float(avg.averaged["g"].weight) == 5.0
    restored = WeightAverage({"g": net}, 0.75)
    restored.load_state_dict(avg.state_dict())
    assert restored.updates == 5  # a resumed average continues past its warm-up
    legacy = {k: v for k, v in avg.state_dict().items() if k != "updates"}  # written before the warm-up
    restored = WeightAverage({"g": net}, 0.75)
    restored.load_state_dict(legacy)
    with torch.no_grad():
        net.weight.fill_(9.0)
    restored.update({"g": net})
    assert float(restored.averaged["g"].weight) == 0.75 * 5.0 + 0.25 * 9.0  # the plain EMA, no restart


def test_trainer_averages_g_and_the_encoder_after_every_step(world, tmp_path):
    cfg = _hd(world, tmp_path)
    cfg.model.use_features, cfg.train.ema_decay = True, 0.5
    t = _trainer(cfg)
    side = t.generator_side()
    assert set(side) == {"net_g", "net_e"} and set(t.ema.averaged) == {"net_g", "net_e"}
    expected = {n: {k: p.detach().double().clone() for k, p in net.named_parameters()} for n, net in side.items()}
    for step, batch in enumerate(_batches(t, 3, size=1), 1):
        t.train_step(batch)
        d = min(0.5, (step - 1) / step)  # the warm-up: step 1 takes the live weights, then the decay
        for n, net in side.items():
            for k, p in net.named_parameters():
                expected[n][k] = d * expected[n][k] + (1 - d) * p.detach().double()
    for n, net in side.items():
        avg = dict(t.ema.averaged[n].named_parameters())
        assert all(torch.allclose(avg[k].double(), expected[n][k], rtol=1e-5, atol=1e-7) for k in expected[n])
        live = dict(net.named_parameters())
        assert any(not torch.equal(avg[k], live[k]) for k in live)  # it trained: the average lags
    nets = t.inference_networks()
    assert nets.g is t.ema.averaged["net_g"] and nets.e is t.ema.averaged["net_e"]


def test_samples_and_the_saved_model_are_the_average(tiny_config):
    tiny_config.train.ema_decay, tiny_config.train.max_steps = 0.5, 3
    run = train(tiny_config).run_dir
    state = load_training_state(run / "checkpoints" / "latest.pt")["trainer"]
    saved = load_file(str(run / "model" / "generator.safetensors"))
    assert set(saved) == set(state["ema"]["net_g"])
    assert all(torch.equal(saved[k], state["ema"]["net_g"][k]) for k in saved)
    assert any(not torch.equal(saved[k], state["net_g"][k]) for k in saved)
    # the step-3 sample grid is the average's output, not the live G's
    t = _trainer(tiny_config)
    t.load_state_dict(state)
    from pix2pix.training.trainer import _sample_dataset

    items = [_sample_dataset(t)[i] for i in range(tiny_config.train.num_samples)]
    grid = np.asarray(image_grid(t.sample_rows(items)).convert("RGB"))
    written = np.asarray(Image.open(run / "samples" / "step_00000003.png").convert("RGB"))
    assert np.array_equal(grid, written)
    t.ema = None  # now the live G serves
    assert not np.array_equal(np.asarray(image_grid(t.sample_rows(items)).convert("RGB")), written)


def test_resuming_with_another_ema_setting_is_an_error(tiny_config):
    """(train() resumes through Trainer.load_state_dict; the resume tests below go through train().)"""
    states = {}
    for decay in (0.0, 0.9, 0.5):
        tiny_config.train.ema_decay = decay
        states[decay] = _trainer(tiny_config)
    plain, averaged = states[0.0].state_dict(), states[0.9].state_dict()
    with pytest.raises(ConfigError, match="no 'ema'.*train.ema_decay"):
        states[0.9].load_state_dict(plain)
    with pytest.raises(ConfigError, match="has a weight average .*but this run has none"):
        states[0.0].load_state_dict(averaged)
    with pytest.raises(ConfigError, match=r"ema_decay=0\.9, this run 0\.5: resume with --set train.ema_decay=0\.9"):
        states[0.5].load_state_dict(averaged)
    states[0.9].load_state_dict(averaged)  # the same setting loads


# ----------------------------------------------------------------------------------------------- exact resume


def _all_switches(cfg):
    cfg.train.ema_decay = 0.9
    cfg.loss.diffaugment = ALL_AUG
    cfg.model.spectral_norm_d = True
    cfg.optim.lr_d = 4e-4
    cfg.loss.lambda_r1 = 1.0
    return cfg


def _check_resume_is_exact(cfg, total, cut, nets=()):
    cfg.train.sample_every = 1000  # grids only at the end
    full = train(cfg)
    cfg.train.max_steps, cfg.train.checkpoint_every = cut, cut
    part = train(cfg)
    assert part.step == cut
    resumed = _resume(part.run_dir, total)
    assert resumed.step == total
    assert _losses(resumed.run_dir) == _losses(full.run_dir)
    a = load_training_state(full.run_dir / "checkpoints" / "latest.pt")["trainer"]
    b = load_training_state(resumed.run_dir / "checkpoints" / "latest.pt")["trainer"]
    states = [(n, a[n], b[n]) for n in ("net_g", "net_d", *nets)]
    states += [(f"ema.{n}", a["ema"][n], b["ema"][n]) for n in a["ema"] if n not in ("decay", "updates")]
    for name, sa, sb in states:
        assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa), name
    assert any(not torch.equal(a["ema"]["net_g"][k], a["net_g"][k]) for k in a["net_g"])
    ma = load_file(str(full.run_dir / "model" / "generator.safetensors"))
    mb = load_file(str(resumed.run_dir / "model" / "generator.safetensors"))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    return _losses(full.run_dir)


def test_pix2pix_run_with_every_switch_resumes_exactly(tiny_config):
    cfg = _all_switches(tiny_config)
    cfg.train.max_steps = 5  # 3 steps per epoch: the break falls mid-epoch, before an lr step
    cfg.optim.n_epochs, cfg.optim.n_epochs_decay = 1, 2
    losses = _check_resume_is_exact(cfg, 5, 2)
    assert set(losses[0]) == {"D", "D_fake", "D_real", "D_r1", "G", "G_GAN", "G_L1"}
    assert all(torch.isfinite(torch.tensor(list(r.values()))).all() for r in losses)


def test_pix2pixhd_run_with_every_switch_and_the_encoder_resumes_exactly(world, tmp_path):
    cfg = _all_switches(_hd(world, tmp_path, max_steps=4))
    cfg.model.use_features = True
    losses = _check_resume_is_exact(cfg, 4, 2, ("net_e",))
    assert set(losses[0]) == {"D", "D_fake", "D_real", "D_r1", "G", "G_GAN", "G_GAN_Feat", "G_VGG"}
    b = load_training_state(next((tmp_path / "runs").iterdir()) / "checkpoints" / "latest.pt")["trainer"]
    assert set(b["ema"]) == {"decay", "updates", "net_g", "net_e"}


# ----------------------------------------------------------------------------------------------- DiffAugment


def test_translation_shifts_by_the_drawn_pixels_with_zeros_coming_in():
    x = torch.arange(1, 2 * 2 * 4 * 5 + 1, dtype=torch.float32).view(2, 2, 4, 5)
    p = AugmentParams(shift_x=torch.tensor([2, -1]), shift_y=torch.tensor([-1, 3]))
    out = PairAugment("translation")(x, p, image_channels=1)
    expected = torch.zeros_like(x)
    expected[0, :, 0:3, 2:5] = x[0, :, 1:4, 0:3]  # content moves 2 right, 1 up
    expected[1, :, 3:4, 0:4] = x[1, :, 0:1, 1:5]  # 1 left, 3 down
    assert torch.equal(out, expected)


def test_translation_and_cutout_draws_stay_in_the_paper_ranges():
    aug = PairAugment("translation,cutout")
    torch.manual_seed(0)
    p = aug.sample(4000, height=32, width=24, device=CPU)
    assert (int(p.shift_x.min()), int(p.shift_x.max())) == (-3, 3)  # int(24 / 8 + 0.5)
    assert (int(p.shift_y.min()), int(p.shift_y.max())) == (-4, 4)
    assert (int(p.cut_x.min()), int(p.cut_x.max())) == (0, 24) and (int(p.cut_y.max())) == 32  # even holes
    holes = (aug(torch.ones(4000, 1, 32, 24), AugmentParams(cut_x=p.cut_x, cut_y=p.cut_y), 1) == 0).sum((1, 2, 3))
    assert int(holes.min()) > 0 and int(holes.max()) == 16 * 12  # every hole meets the image


def test_cutout_zeroes_exactly_the_square():
    x = torch.rand(2, 3, 8, 6) + 1.0
    p = AugmentParams(cut_x=torch.tensor([1, 5]), cut_y=torch.tensor([6, 0]))  # hole 3 wide (of 6), 4 high (of 8)
    out = PairAugment("cutout")(x, p, image_channels=1)
    hole = torch.zeros(2, 1, 8, 6, dtype=torch.bool)
    hole[0, :, 4:8, 0:3] = True  # rows 6-2..6+2, columns 1-1..1+2
    hole[1, :, 0:2, 4:6] = True  # clipped at the borders
    assert torch.equal(out, torch.where(hole, torch.zeros_like(x), x))


def test_colour_changes_the_image_channels_only():
    cond = torch.rand(2, 2, 3, 4) * 2 - 1
    img = torch.rand(2, 3, 3, 4) * 2 - 1
    x = torch.cat([cond, img], 1)
    aug = PairAugment("color")
    # brightness only
    p = AugmentParams(brightness=torch.tensor([0.25, -0.5]), saturation=torch.ones(2), contrast=torch.ones(2))
    out = aug(x, p, image_channels=3)
    assert torch.equal(out[:, :2], cond)
    assert torch.allclose(out[:, 2:], img + torch.tensor([0.25, -0.5]).view(2, 1, 1, 1), atol=1e-6)
    # saturation 0: each pixel becomes its grey (channel mean); contrast 0: the image becomes its mean
    p = AugmentParams(brightness=torch.zeros(2), saturation=torch.tensor([0.0, 1.0]), contrast=torch.tensor([1.0, 0.0]))
    out = aug(x, p, image_channels=3)
    assert torch.equal(out[:, :2], cond)
    assert torch.allclose(out[0, 2:], img[0].mean(0, keepdim=True).expand(3, -1, -1), atol=1e-6)
    assert torch.allclose(out[1, 2:], torch.full_like(img[1], float(img[1].mean())), atol=1e-6)
    # two pixels by hand, (R, G, B) = (0, 0.3, 0.6) and (0.3, 0.3, 0.3): brightness 0.1, saturation 2, contrast 0.5
    one = torch.tensor([[0.0, 0.3], [0.3, 0.3], [0.6, 0.3]]).view(1, 3, 1, 2)
    p = AugmentParams(brightness=torch.tensor([0.1]), saturation=torch.tensor([2.0]), contrast=torch.tensor([0.5]))
    # + 0.1: (.1, .4, .7), (.4, .4, .4); greys .4, .4; saturation: (-.2, .4, 1), (.4, .4, .4); mean .4; contrast
    expected = torch.tensor([[0.1, 0.4], [0.4, 0.4], [0.7, 0.4]]).view(1, 3, 1, 2)
    assert torch.allclose(aug(one, p, image_channels=3), expected, atol=1e-6)


def test_brightness_is_diffaugment_s_offset_on_images_in_minus_one_one():
    """A constant image keeps its saturation and contrast, so the output is image + offset: within +-0.5."""
    torch.manual_seed(0)
    aug = PairAugment("color")
    p = aug.sample(2000, 4, 4, CPU)
    offset = aug(torch.zeros(2000, 3, 4, 4), p, image_channels=3)[:, 0, 0, 0]
    assert 0.45 < float(offset.abs().max()) <= 0.5
    assert 0.0 <= float(p.saturation.min()) < 0.05 and 1.95 < float(p.saturation.max()) < 2.0
    assert 0.5 <= float(p.contrast.min()) < 0.55 and 1.45 < float(p.contrast.max()) < 1.5


def test_one_draw_per_sample_for_the_condition_the_image_and_real_and_fake(tiny_config):
    tiny_config.loss.diffaugment = ALL_AUG
    obj = make_objective(tiny_config)
    torch.manual_seed(1)
    pair = Pair(cond=torch.ones(4, 3, 16, 16), real=torch.ones(4, 3, 16, 16))
    fake_in, real_in = obj.d_pairs(pair, 2 * torch.ones(4, 3, 16, 16), pair.real)
    zero = fake_in == 0
    assert torch.equal(zero, real_in == 0)  # the same geometry for real and fake
    assert all(torch.equal(zero[:, c], zero[:, 0]) for c in range(6))  # and for condition and image
    assert len({zero[b, 0].numpy().tobytes() for b in range(4)}) == 4  # each sample its own draw
    kept = ~zero
    assert torch.equal(fake_in[:, :3][kept[:, :3]], torch.ones(int(kept[:, :3].sum())))  # condition not recoloured
    diff = (fake_in - real_in)[:, 3:][kept[:, 3:]]  # one brightness for real and fake: a constant image stays +1
    assert torch.allclose(diff, torch.ones_like(diff), atol=1e-6)
    # D's loss draws once for both pairs; pix2pix's G loss (against the updated D) once more
    calls = []
    sample = obj.augment.sample
    obj.augment.sample = lambda *a, **k: calls.append(1) or sample(*a, **k)
    d = nn.Conv2d(6, 1, 1)
    obj.discriminator_losses(d, pair, torch.zeros(4, 3, 16, 16))
    assert len(calls) == 1
    obj.generator_losses(d, pair, torch.zeros(4, 3, 16, 16))
    assert len(calls) == 2


def test_gradients_go_through_the_augmentation():
    """Each transform is linear in its input: autograd gives its transpose. Translation's is the opposite
    shift; cutout's is the same hole; the whole policy passes a finite-difference check."""
    torch.manual_seed(0)
    x = torch.rand(2, 4, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 4, 6, 7, dtype=torch.float64)
    shift = AugmentParams(shift_x=torch.tensor([2, -3]), shift_y=torch.tensor([1, 0]))
    aug = PairAugment(ALL_AUG)
    (aug(x, shift, 2) * w).sum().backward()
    back = AugmentParams(shift_x=-shift.shift_x, shift_y=-shift.shift_y)
    assert torch.equal(x.grad, aug(w, back, 2))
    x.grad = None
    hole = AugmentParams(cut_x=torch.tensor([3, 0]), cut_y=torch.tensor([2, 5]))
    (aug(x, hole, 2) * w).sum().backward()
    assert torch.equal(x.grad, aug(w, hole, 2))
    every = aug.sample(2, 6, 7, CPU)
    assert torch.autograd.gradcheck(lambda t: aug(t, every, 2), (x.detach().requires_grad_(),))


def test_g_learns_through_the_augmented_d(tiny_config):
    """With the L1 term off, G's only gradient comes through D's augmented input: G must still move,
    and the fake's pixels shifted out of D's view (or cut out) get no gradient."""
    tiny_config.loss.diffaugment, tiny_config.loss.lambda_l1 = ALL_AUG, 0.0
    t = _trainer(tiny_config)
    before = _state(t.net_g)
    t.train_step(_batches(t, 1)[0])
    assert any(not torch.equal(before[k], v) for k, v in t.net_g.state_dict().items() if v.is_floating_point())
    obj = t.objective
    obj.augment.sample = lambda b, h, w, device: AugmentParams(shift_x=torch.tensor([3, 0]),
                                                               shift_y=torch.tensor([0, 0]),
                                                               cut_x=torch.tensor([32, 32]),
                                                               cut_y=torch.tensor([32, 0]))
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    obj.generator_losses(t.net_d, Pair(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)), fake)["G"].backward()
    g = fake.grad.abs().sum(1)
    assert (g[0, :, 29:] == 0).all() and (g[0, :24, :21] > 0).all()  # out of view; the hole at x >= 24, y >= 24
    assert (g[1, :8, 24:] == 0).all() and (g[1, 8:, 24:] > 0).all()


def test_policy_errors_name_the_value_and_the_choices(tiny_config, capsys):
    assert parse_policy(" translation, cutout ,") == ("translation", "cutout") and parse_policy("") == ()
    tiny_config.loss.diffaugment = "translation,flip"
    with pytest.raises(ConfigError, match=r"loss\.diffaugment='translation,flip': unknown augmentation 'flip'.*"
                                          r"translation, cutout, color"):
        validate(tiny_config)
    assert main(["train", "--preset", "tiny", "--data", tiny_config.data.root, "--set", "loss.diffaugment=zoom",
                 "--dry-run"]) == 2
    assert "unknown augmentation 'zoom'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- spectral norm


@pytest.mark.parametrize("family", ["pix2pix", "pix2pixhd"])
def test_spectral_norm_puts_every_d_convolution_at_singular_value_one(family, tiny_config, world, tmp_path):
    cfg = tiny_config if family == "pix2pix" else _hd(world, tmp_path)
    cfg.loss.lambda_vgg = 0.0  # (pix2pixHD: no VGG to build)

    def build_d():
        torch.manual_seed(0)
        return make_objective(cfg).build_networks().d

    plain = build_d()
    cfg.model.spectral_norm_d = True
    d = build_d()
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in plain.modules()) >= 5
    assert all(parametrize.is_parametrized(m, "weight") for m in convs)
    raw = [float(torch.linalg.matrix_norm(m.parametrizations.weight.original.detach().flatten(1), 2)) for m in convs]
    assert all(abs(s - 1) > 0.3 for s in raw), raw  # N(0, 0.02) init: far from 1, so the test can fail
    x = torch.rand(1, 14 if family == "pix2pixhd" else 6, 32, 32)
    with torch.no_grad():
        for _ in range(30):  # one power iteration per forward in training mode
            d(x)
    d.eval()
    sigmas = [float(torch.linalg.matrix_norm(m.weight.detach().flatten(1), 2)) for m in convs]
    assert all(abs(s - 1) < 0.02 for s in sigmas), sigmas
    # off, D's state_dict keys are the ones checkpoints have always had
    assert not any("parametrizations" in k for k in plain.state_dict())
    assert any(k.endswith("parametrizations.weight.original") for k in d.state_dict())


def test_spectral_norm_off_keeps_the_format_1_checkpoint_keys():
    from pathlib import Path

    from pix2pix.training.trainer import Trainer

    run = Path(__file__).parent / "fixtures" / "format1" / "pix2pix_run"
    state = load_training_state(run / "checkpoints" / "latest.pt")["trainer"]
    t = Trainer(load_run_config(run), CPU)
    assert set(state["net_d"]) == set(t.net_d.state_dict())


# ----------------------------------------------------------------------------------------------- TTUR


def test_d_and_g_step_with_their_own_learning_rates_and_schedules(tiny_config):
    tiny_config.optim.lr, tiny_config.optim.lr_d = 1e-4, 4e-4
    tiny_config.optim.n_epochs, tiny_config.optim.n_epochs_decay = 1, 3
    t = _trainer(tiny_config)
    g0, d0 = _state(t.net_g), _state(t.net_d)
    t.train_step(_batches(t, 1)[0])
    # Adam's first step moves each weight by lr * g / (|g| + eps): the largest move is the learning rate
    dg = max(float((p.detach() - g0[k]).abs().max()) for k, p in t.net_g.named_parameters())
    dd = max(float((p.detach() - d0[k]).abs().max()) for k, p in t.net_d.named_parameters())
    assert dg == pytest.approx(1e-4, rel=1e-3) and dd == pytest.approx(4e-4, rel=1e-3)
    for epoch, factor in ((1, 0.75), (2, 0.5), (3, 0.25)):  # 1 - (e + 1 - 1) / (3 + 1)
        t.end_epoch(epoch)
        assert t.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4 * factor)
        assert t.opt_d.param_groups[0]["lr"] == pytest.approx(4e-4 * factor)
    t = _trainer(tiny_config)
    rebuild_adams(t, "torch")  # what the speed switches do to a new trainer keeps each rate
    assert (t.opt_g.param_groups[0]["lr"], t.opt_d.param_groups[0]["lr"]) == (1e-4, 4e-4)
    tiny_config.optim.lr_d = 0.0
    t = _trainer(tiny_config)
    assert t.opt_d.param_groups[0]["lr"] == 1e-4


# ----------------------------------------------------------------------------------------------- R1


def _linear_d(weights):
    d = nn.Conv2d(len(weights), 1, 1)
    with torch.no_grad():
        d.weight.copy_(torch.tensor(weights).view(1, -1, 1, 1))
        d.bias.fill_(0.1)
    return d


def test_r1_is_half_the_weight_times_the_squared_gradient_by_hand(tiny_config):
    """D(x) = sum_c w_c x_c + b per pixel; sum over the patches, the gradient on each real image pixel is
    w_c (image channels): R1 = gamma / 2 * H * W * sum_img w_c^2, and its own gradient on w_c is
    gamma * H * W * w_c (image channels), nothing on the condition's weights or the bias."""
    w = [0.5, -1.0, 0.25, 2.0, -0.5, 1.5]
    gamma, h, wd = 4.0, 5, 4
    torch.manual_seed(0)
    pair = Pair(torch.rand(2, 3, h, wd), torch.rand(2, 3, h, wd))
    fake = torch.rand(2, 3, h, wd)
    grads = {}
    for r1 in (0.0, gamma):
        tiny_config.loss.lambda_r1 = r1
        d = _linear_d(w)
        losses = Pix2PixObjective(tiny_config).discriminator_losses(d, pair, fake)
        losses["D"].backward()
        grads[r1] = (d.weight.grad.flatten().clone(), d.bias.grad.clone())
    assert "D_r1" in losses and "D_r1" not in Pix2PixObjective(Config()).discriminator_losses(d, pair, fake)
    expected = gamma / 2 * h * wd * (2.0**2 + 0.5**2 + 1.5**2)
    assert float(losses["D_r1"].detach()) == pytest.approx(expected, rel=1e-6)
    halves = float((losses["D_fake"] + losses["D_real"]).detach())
    assert float(losses["D"].detach()) == pytest.approx(0.5 * halves + expected, rel=1e-6)
    dw = grads[gamma][0] - grads[0.0][0]
    assert torch.allclose(dw, torch.tensor([0, 0, 0, gamma * h * wd * 2.0, gamma * h * wd * -0.5,
                                            gamma * h * wd * 1.5]), atol=1e-4)
    assert torch.allclose(grads[gamma][1], grads[0.0][1], atol=1e-7)


def test_r1_is_taken_on_the_real_image_before_augmentation(tiny_config):
    """A pixel translated out of D's view has no gradient: with a shift of 1 column in a 4-column
    image, 3 of the 4 columns count in the first sample, all in the second."""
    tiny_config.loss.lambda_r1, tiny_config.loss.diffaugment = 2.0, "translation"
    obj = Pix2PixObjective(tiny_config)
    obj.augment.sample = lambda b, h, w, device: AugmentParams(shift_x=torch.tensor([1, 0]),
                                                               shift_y=torch.tensor([0, 0]))
    pair = Pair(torch.rand(2, 3, 5, 4), torch.rand(2, 3, 5, 4))
    r1 = obj.discriminator_losses(_linear_d([1.0, 1.0, 1.0, 1.0, 2.0, 0.0]), pair, torch.rand(2, 3, 5, 4))["D_r1"]
    assert float(r1.detach()) == pytest.approx(2.0 / 2 * (5 * 3 + 5 * 4) / 2 * (1 + 4), rel=1e-6)


# ----------------------------------------------------------------------------------------------- perceptual


def test_perceptual_loss_is_added_to_g(tiny_config):
    tiny_config.loss.lambda_perceptual, tiny_config.loss.vgg_random = 2.0, True
    t = _trainer(tiny_config)
    assert t.vgg is not None and t.vgg.lambda_vgg == 2.0
    pair = t.objective.prepare(_batches(t, 1)[0], t._to_device)
    fake = t.objective.generate(t.net_g, None, pair)
    losses = t.objective.generator_losses(t.net_d, pair, fake)
    unweighted = float(VGGLoss(t.vgg.vgg, lambda_vgg=1.0)(fake, pair.real).detach())
    assert float(losses["G_VGG"].detach()) == pytest.approx(2.0 * unweighted, rel=1e-5) and unweighted > 0
    lc = tiny_config.loss
    value = {k: float(v.detach()) for k, v in losses.items()}
    assert value["G"] == pytest.approx(lc.lambda_gan * value["G_GAN"] + lc.lambda_l1 * value["G_L1"] + value["G_VGG"],
                                       rel=1e-6)
    losses["G_VGG"].backward()  # it trains G (the VGG stays frozen)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in t.net_g.parameters())
    assert all(p.grad is None for p in t.vgg.parameters())


def test_perceptual_loss_where_it_cannot_apply_is_an_error(tiny_config, world, tmp_path):
    cfg = _hd(world, tmp_path)
    cfg.loss.lambda_perceptual = 1.0
    with pytest.raises(ConfigError, match="lambda_vgg"):
        make_objective(cfg)
    tiny_config.loss.lambda_perceptual, tiny_config.model.out_channels = 1.0, 2
    with pytest.raises(ConfigError, match="out_channels=2"):
        make_objective(tiny_config)


# ----------------------------------------------------------------------------------------------- balanced L1


def test_balanced_l1_weights_by_hand():
    from pix2pix.losses import balanced_l1_loss, input_rarity_weights

    cond = -torch.ones(1, 3, 2, 2)
    cond[0, :, 0, 0] = 1.0  # one pixel of one colour, three of another
    w = input_rarity_weights(cond, 1.0)  # f^-1: 4 and 4/3, scaled to mean 1 -> 2 and 2/3
    assert torch.allclose(w, torch.tensor([[[[2.0, 2 / 3], [2 / 3, 2 / 3]]]]))
    w = input_rarity_weights(cond, 0.5)  # 2 and sqrt(4/3), mean (2 + 3 sqrt(4/3)) / 4
    s = (4 / 3) ** 0.5
    assert torch.allclose(w.flatten(), torch.tensor([2, s, s, s]) / ((2 + 3 * s) / 4))
    fake, real = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    fake[0, :, 0, 0] = 0.3  # the error sits on the rare pixel only
    assert float(balanced_l1_loss(fake, real, cond, 1.0)) == pytest.approx(2.0 * 0.3 / 4)
    assert float(balanced_l1_loss(fake, real, cond, 0.0)) == pytest.approx(0.3 / 4)
    two = torch.cat([cond, torch.rand(1, 3, 2, 2) * 2 - 1])  # per image: the second one's colours are all unique
    assert torch.allclose(input_rarity_weights(two, 1.0)[1], torch.ones(1, 2, 2))


def test_balanced_l1_trains_g_and_resumes_exactly(tiny_config):
    tiny_config.loss.l1_balance = 0.5
    t = _trainer(tiny_config)
    pair = t.objective.prepare(_batches(t, 1)[0], t._to_device)
    fake = t.objective.generate(t.net_g, None, pair)
    losses = t.objective.generator_losses(t.net_d, pair, fake)
    plain = float(torch.nn.functional.l1_loss(fake, pair.real).detach())
    assert float(losses["G_L1"].detach()) != pytest.approx(plain, rel=1e-3)  # the blocky inputs have uneven colours
    losses["G_L1"].backward()
    assert all(p.grad is not None for p in t.net_g.parameters())
    cfg = tiny_config
    cfg.train.max_steps, cfg.optim.n_epochs, cfg.optim.n_epochs_decay = 4, 1, 2
    _check_resume_is_exact(_all_switches(cfg), 4, 2)


def test_balanced_l1_where_it_cannot_apply_is_an_error(tiny_config, world, tmp_path):
    cfg = _hd(world, tmp_path)
    cfg.loss.l1_balance = 0.5
    with pytest.raises(ConfigError, match="model.family=pix2pix"):
        validate(cfg)
    tiny_config.loss.l1_balance = 2.0
    with pytest.raises(ConfigError, match=r"loss.l1_balance=2.0 must be in \[0, 1\]"):
        validate(tiny_config)
