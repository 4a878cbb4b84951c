"""The benchmark's plain reference steps and the library's train_step compute the same thing.

From the same seed (so the same initial weights and dropout draws) and the same batches,
three training steps of the plain step (benchmarks/benchmark.py) and of the library
step, plain and with each speed switch, must give the same losses and weights: exactly
for the library's default path, to float rounding for the switches that change the
kernels or the optimiser's arithmetic. pix2pix: PlainEagerStep vs Pix2PixTrainer;
pix2pixHD: PlainHDStep (NVIDIA's step: D on the fake twice, G's backward also filling D's
discarded gradients, G stepped before D's backward) vs Pix2PixHDTrainer (one D pass on the
fake, each network's gradients only).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from pix2pix.data.labels import boundary_map
from pix2pix.runtime import seed_everything
from pix2pix.training import fast_step
from pix2pix.training.trainer import Pix2PixTrainer, build_trainer

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
CPU = torch.device("cpu")


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("pix2pix_benchmark", ROOT / "benchmarks" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pix2pix_benchmark", module)
    spec.loader.exec_module(module)
    return module


bm = _load_benchmark()


@contextlib.contextmanager
def one_thread():
    """Both runs on one intra-op thread: the bits of a reduction depend on the thread count, and at
    this size one thread is as fast and stays fast when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _batches(cfg):
    return [bm.make_batch(cfg, CPU, seed=100 + i) for i in range(STEPS)]


def _snapshot(net_g, net_d):
    return {**{"G." + k: v.detach().clone() for k, v in net_g.state_dict().items()},
            **{"D." + k: v.detach().clone() for k, v in net_d.state_dict().items()}}


def _plain_run():
    cfg = bm.preset_config("tiny")
    with one_thread():
        seed_everything(0)
        step = bm.plain_step_from_config(cfg, CPU)
        init = _snapshot(step.net_g, step.net_d)
        losses = [step.step(b["A"], b["B"]) for b in _batches(cfg)]
        return init, losses, _snapshot(step.net_g, step.net_d)


@pytest.fixture(scope="module")
def plain_run():
    return _plain_run()


def _library_run(switch: str):
    cfg = bm.preset_config("tiny")
    cfg.train.channels_last = switch == "channels_last"
    if switch == "train.fast_step":
        cfg.train.fast_step = True  # the trainer applies fast_step.speed_up (allocator included) itself
    with one_thread():
        return _library_steps(cfg, switch)


def _library_steps(cfg, switch: str):
    seed_everything(0)
    trainer = Pix2PixTrainer(cfg, CPU)
    init = _snapshot(trainer.net_g, trainer.net_d)
    if switch == "fused_adam":
        fast_step.use_fused_adam(trainer)
    elif switch == "conv_autotune":
        # margin 10: every layer takes the native path, whatever the timings say
        for net in (trainer.net_g, trainer.net_d):
            fast_step.autotune_conv_backends(net, repeats=1, margin=10.0, max_columns_mib=float("inf"))
    elif switch == "fast":
        # the allocator tuning is process-wide and cannot change results; leave pytest's process alone
        fast_step.speed_up(trainer, allocator=False)
    losses = [trainer.train_step(b) for b in _batches(cfg)]
    return init, losses, _snapshot(trainer.net_g, trainer.net_d)


def _assert_same(plain, lib, loss_rtol: float, weight_atol: float, max_outlier_fraction: float = 0.0,
                 noise_driven: frozenset[str] = frozenset()) -> None:
    p_init, p_losses, p_final = plain
    l_init, l_losses, l_final = lib
    for k in p_init:  # same seed -> same initial weights
        assert torch.equal(p_init[k], l_init[k]), k
    for i, (pl, ll) in enumerate(zip(p_losses, l_losses, strict=True)):
        assert set(pl) == set(ll), (set(pl), set(ll))
        for k in pl:
            torch.testing.assert_close(ll[k], pl[k], rtol=loss_rtol, atol=loss_rtol * 1e-2,
                                       msg=lambda m, i=i, k=k: f"step {i + 1} loss {k}: {m}")
    for k in p_final:
        a, b = l_final[k].float(), p_final[k].float()
        if weight_atol == 0:
            assert torch.equal(a, b), k
            continue
        off = (a - b).abs() > weight_atol
        # Adam's first steps move every weight by about +-lr whatever the gradient's size, so a
        # gradient within rounding of zero can flip its step: allow a tiny fraction of such weights
        # (and any number in a tensor whose exact gradient is zero: there Adam steps on rounding noise)
        if k not in noise_driven:
            assert off.float().mean().item() <= max_outlier_fraction, (k, off.sum().item(), off.numel())
        assert (a - b).abs().max().item() <= 2 * STEPS * 2e-4 + weight_atol, k


def test_plain_step_matches_library_step_exactly(plain_run):
    _assert_same(plain_run, _library_run("default"), loss_rtol=0.0, weight_atol=0.0)


@pytest.mark.parametrize("switch", ["fused_adam", "conv_autotune", "channels_last", "fast", "train.fast_step"])
def test_speed_switches_keep_the_maths(plain_run, switch):
    _assert_same(plain_run, _library_run(switch), loss_rtol=1e-5, weight_atol=2e-5, max_outlier_fraction=1e-3)


def test_conv_autotune_times_native_only_on_small_maps():
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    assert fast_step.autotune_conv_backends(conv) == 1
    with torch.no_grad():
        conv(torch.randn(1, 64, 128, 128))  # im2col buffer 64 x 9 x 128 x 128 floats = 36 MiB: not timed
        conv(torch.randn(1, 64, 8, 8))  # 0.1 MiB: timed
    rows = {key[0]: (backend, t_onednn) for _, key, backend, t_onednn, _ in fast_step.conv_backend_report(conv)}
    assert rows[(1, 64, 128, 128)][0] == "onednn" and math.isnan(rows[(1, 64, 128, 128)][1])
    assert rows[(1, 64, 8, 8)][1] > 0


def test_native_convolution_matches_onednn():
    torch.manual_seed(0)
    for conv in (torch.nn.Conv2d(6, 8, 4, 2, 1, bias=False), torch.nn.ConvTranspose2d(16, 3, 4, 2, 1)):
        x = torch.randn(2, conv.in_channels, 8, 8, requires_grad=True)
        params = [x, *conv.parameters()]
        ref = conv(x)
        ref_grads = torch.autograd.grad(ref.square().sum(), params)
        out = fast_step._NativeConvolution.apply(x, conv.weight, conv.bias, fast_step._conv_args(conv, x))
        grads = torch.autograd.grad(out.square().sum(), params)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


# -- pix2pixHD ------------------------------------------------------------------------------------


def _hd_snapshot(nets):
    return {f"{name}.{k}": v.detach().clone() for name, net in nets.items() if net is not None
            for k, v in net.state_dict().items()}


def _biases_before_norm(prefix: str, net: torch.nn.Module) -> set[str]:
    """State-dict keys of conv biases that feed a normalisation layer directly.

    Instance norm subtracts each channel's mean, so such a bias has an exactly zero gradient: what
    autograd returns for it is rounding noise (~1e-9), and Adam turns noise into steps of about
    +-lr. Two correct implementations that round differently then move these biases differently,
    by up to lr per step, in every element. pix2pixHD keeps these biases (its convs all have one).
    """
    keys = set()
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module.named_children())
            for (child, a), (_, b) in zip(children, children[1:], strict=False):
                if (isinstance(a, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and a.bias is not None
                        and isinstance(b, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d))):
                    keys.add(f"{prefix}.{name + '.' if name else ''}{child}.bias")
    return keys


@pytest.fixture(scope="module")
def plain_hd_run():
    cfg = bm.preset_config("tiny_hd")  # loss.vgg_random: the VGG loss with random features
    with one_thread():
        seed_everything(0)
        step = bm.plain_step_from_config(cfg, CPU)
        assert isinstance(step, bm.PlainHDStep)
        nets = {"G": step.net_g, "D": step.net_d, "VGG": step.vgg}
        init = _hd_snapshot(nets)
        losses = [step.step(b) for b in _batches(cfg)]
        return init, losses, _hd_snapshot(nets)


def _library_hd_run(switch: str):
    cfg = bm.preset_config("tiny_hd")
    cfg.train.fast_step = switch == "train.fast_step"
    with one_thread():
        seed_everything(0)
        trainer = build_trainer(cfg, CPU)
        nets = {"G": trainer.net_g, "D": trainer.net_d, "VGG": trainer.vgg.vgg}
        init = _hd_snapshot(nets)
        if switch == "fast":
            fast_step.speed_up(trainer, allocator=False)
        losses = [trainer.train_step(b) for b in _batches(cfg)]
        return init, losses, _hd_snapshot(nets)


def test_hd_batches_have_blocky_labels_and_instances():
    cfg = bm.preset_config("hd_reference")
    assert bm.frame_size(cfg) == (512, 256)
    cfg.data.load_size = 256  # the same construction, smaller
    b = bm.make_batch(cfg, CPU)
    assert b["label"].shape == b["instance"].shape == (1, 1, 128, 256) and b["image"].shape == (1, 3, 128, 256)
    assert int(b["label"].max()) < cfg.data.label_nc and b["label"].dtype == torch.long
    assert torch.equal(b["instance"] // 1000, b["label"])
    edges = boundary_map(b["instance"])
    assert 0.05 < float(edges.mean()) < 0.5  # object edges, not noise and not nothing


def test_plain_hd_step_matches_library_step_exactly(plain_hd_run):
    _assert_same(plain_hd_run, _library_hd_run("default"), loss_rtol=0.0, weight_atol=0.0)


@pytest.mark.parametrize("switch", ["fast", "train.fast_step"])
def test_hd_fast_step_keeps_the_maths(plain_hd_run, switch):
    cfg = bm.preset_config("tiny_hd")
    seed_everything(0)
    step = bm.plain_step_from_config(cfg, CPU)
    noise = frozenset(_biases_before_norm("G", step.net_g) | _biases_before_norm("D", step.net_d))
    assert "G.model.1.bias" in noise and "D.scale0_layer1.0.bias" in noise
    _assert_same(plain_hd_run, _library_hd_run(switch), loss_rtol=1e-5, weight_atol=2e-5, max_outlier_fraction=1e-3,
                 noise_driven=noise)
