"""The benchmark's plain reference steps and the library's train_step compute the same thing.

From the same seed (so the same initial weights and dropout draws) and the same batches,
three training steps of the plain step (benchmarks/benchmark.py) and of the library
step, plain and with each speed switch, must give the same losses and weights: exactly
for the library's default path (BlockedAdam included), to float rounding for the switches
that change the kernels or the optimiser's arithmetic. pix2pix: PlainEagerStep vs the trainer's alternating step;
pix2pixHD: PlainHDStep (NVIDIA's step: D on the fake twice, G's backward also filling D's
discarded gradients, G stepped before D's backward) vs the trainer's shared-pass step (one D pass
on the fake, each network's gradients only).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from pix2pix.data.labels import boundary_map
from pix2pix.runtime import seed_everything
from pix2pix.training import fast_step
from pix2pix.training.trainer import build_trainer

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


def _default_adam(trainer, fused: bool) -> None:
    """The trainer's optimisers: BlockedAdam by default, fused Adam with train.fast_step."""
    expected = torch.optim.Adam if fused else fast_step.BlockedAdam
    assert type(trainer.opt_g) is expected and type(trainer.opt_d) is expected


def _library_steps(cfg, switch: str):
    seed_everything(0)
    trainer = build_trainer(cfg, CPU)
    _default_adam(trainer, fused=switch == "train.fast_step")
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
        _default_adam(trainer, fused=switch == "train.fast_step")
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


# -- the default Adam: block by block, bit for bit ------------------------------------------------


def _adam_params(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(64, 32, 4, 4), (3000,), (7,), (17, 5, 3, 3), (1,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.05) for s in shapes]
    cl = torch.randn(8, 6, 5, 5, generator=g).contiguous(memory_format=torch.channels_last)
    params.append(torch.nn.Parameter(cl))  # channels_last: blocks in memory order
    return params


def _adam_grads(params, step: int):
    g = torch.Generator().manual_seed(1000 + step)
    grads = [torch.randn(p.shape, generator=g) * 10.0 ** -(i % 4) for i, p in enumerate(params)]
    grads[-1] = grads[-1].contiguous(memory_format=torch.channels_last)
    grads[1][::7] = 0.0  # exact zeros: the update then rests on eps
    return grads


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("beta1", [0.5, 0.9])
def test_blocked_adam_is_torch_adam_bit_for_bit(threads, beta1, monkeypatch):
    ref_params, blk_params = _adam_params(), _adam_params()
    ref = torch.optim.Adam(ref_params, lr=2e-4, betas=(beta1, 0.999))
    blk = fast_step.BlockedAdam(blk_params, lr=2e-4, betas=(beta1, 0.999))
    blk.block = 1000  # several blocks and a remainder in the tensors above (the real block is 256 Ki elements)

    def not_called(self, closure=None):
        raise AssertionError("BlockedAdam fell back to torch.optim.Adam.step")

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for step in range(4):
            grads = _adam_grads(ref_params, step)
            for p, q, g in zip(ref_params, blk_params, grads, strict=True):
                p.grad, q.grad = g.clone(), g.clone()
            ref.step()
            with monkeypatch.context() as m:
                m.setattr(torch.optim.Adam, "step", not_called)
                blk.step()
    finally:
        torch.set_num_threads(saved)
    for p, q in zip(ref_params, blk_params, strict=True):
        assert torch.equal(p, q)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(ref.state[p][key], blk.state[q][key]), key
    assert blk_params[-1].is_contiguous(memory_format=torch.channels_last)


def test_blocked_adam_state_dict_is_adams():
    """A torch.optim.Adam checkpoint continues bit for bit in BlockedAdam, and back (resume across versions)."""
    params = [_adam_params(), _adam_params(), _adam_params()]
    first = torch.optim.Adam(params[0], lr=1e-3, betas=(0.5, 0.999))
    for step in range(2):
        for p, g in zip(params[0], _adam_grads(params[0], step), strict=True):
            p.grad = g
        first.step()
    for other in params[1:]:
        with torch.no_grad():
            for p, q in zip(other, params[0], strict=True):
                p.copy_(q)
    torch_adam = torch.optim.Adam(params[1], lr=1e-3, betas=(0.5, 0.999))
    blocked = fast_step.BlockedAdam(params[2], lr=1e-3, betas=(0.5, 0.999))
    blocked.block = 500
    torch_adam.load_state_dict(copy.deepcopy(first.state_dict()))  # (load_state_dict keeps the tensors it is given)
    blocked.load_state_dict(copy.deepcopy(first.state_dict()))
    for step in range(2, 4):
        grads = _adam_grads(params[1], step)
        for opt, ps in ((torch_adam, params[1]), (blocked, params[2])):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(params[1], params[2], strict=True):
        assert torch.equal(p, q)
    back = torch.optim.Adam(params[2], lr=1e-3, betas=(0.5, 0.999))
    back.load_state_dict(blocked.state_dict())
    assert torch.equal(back.state[params[2][0]]["exp_avg"], blocked.state[params[2][0]]["exp_avg"])


def test_blocked_adam_falls_back_where_it_does_not_apply():
    params = _adam_params()
    for p, g in zip(params, _adam_grads(params, 0), strict=True):
        p.grad = g
    ref = [p.detach().clone().requires_grad_() for p in params]
    for p, q in zip(ref, params, strict=True):
        p.grad = q.grad.clone()
    blk = fast_step.BlockedAdam(params, lr=1e-3, weight_decay=0.1)  # weight decay: Adam's own step
    assert not blk._blockable()
    blk.step()
    torch.optim.Adam(ref, lr=1e-3, weight_decay=0.1).step()
    for p, q in zip(ref, params, strict=True):
        assert torch.equal(p, q)


def test_trainer_builds_blocked_adam_and_rebuilds_keep_the_state():
    cfg = bm.preset_config("tiny")
    seed_everything(0)
    trainer = build_trainer(cfg, CPU)
    assert type(trainer.opt_g) is fast_step.BlockedAdam and type(trainer.opt_d) is fast_step.BlockedAdam
    assert fast_step.use_blocked_adam(trainer) == 0
    with one_thread():
        trainer.train_step(bm.make_batch(cfg, CPU))
    exp_avg = {id(p): trainer.opt_g.state[p]["exp_avg"].clone() for p in trainer.net_g.parameters()}
    assert fast_step.rebuild_adams(trainer, "torch") == 2
    assert type(trainer.opt_g) is torch.optim.Adam and trainer.sched_g.optimizer is trainer.opt_g
    assert all(torch.equal(trainer.opt_g.state[p]["exp_avg"], exp_avg[id(p)]) for p in trainer.net_g.parameters())
    fast_step.use_fused_adam(trainer)
    assert trainer.opt_g.defaults["fused"] and fast_step.rebuild_adams(trainer, "fused") == 0
    with pytest.raises(ValueError, match="choose one of"):
        fast_step.rebuild_adams(trainer, "sgd")


_FAULTS_SCRIPT = """
import importlib.util, resource, statistics, sys, torch
spec = importlib.util.spec_from_file_location("fast_step", sys.argv[1])  # without the package: a quick start
fast_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fast_step)
applied = fast_step.apply_process_defaults("cpu")
faults = []
for _ in range(10):  # a step's pattern: the same large tensors (64 MiB, over glibc's mmap threshold) each time
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(64 * 2**18)
    y = x * 2
    del x
    z = y + 1
    del y, z
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied["allocator"], statistics.median(faults[4:]))
"""


@pytest.mark.slow  # two fresh processes (~5 s)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_process_defaults_keep_large_blocks_mapped():
    """With the allocator setting, freed 64 MiB blocks are reused without page faults; without, they fault in again."""
    import os
    import subprocess

    result = {}
    for mode, env in (("tuned", {}), ("default", {"PIX2PIX_CPU_ALLOCATOR": "default"})):
        done = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, fast_step.__file__], capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        applied, faults = done.stdout.split()[-2:]
        result[mode] = (applied, float(faults))
    pages = 64 * 2**20 // 4096
    assert result["default"][0] == "False" and result["default"][1] >= 3 * pages  # three new blocks a round
    assert result["tuned"][0] == "True" and result["tuned"][1] < pages / 100


# -- the fast step's convolution choices, saved and restored ----------------------------------------


def _fast_trainer(cfg, margin: float):
    """A pix2pix trainer with fused Adam and every conv tuned; margin 10: all native, margin 0: all oneDNN."""
    seed_everything(0)
    trainer = build_trainer(cfg, CPU)
    fast_step.use_fused_adam(trainer)
    nets = trainer.networks()
    for net in nets.values():
        fast_step.autotune_conv_backends(net, repeats=1, margin=margin, max_columns_mib=float("inf"))
    return trainer, fast_step.ConvPlan(nets)


def test_conv_plan_makes_a_resumed_fast_run_exact():
    import io

    from pix2pix.training.state import rng_state, set_rng_state

    cfg = bm.preset_config("tiny")
    batches = [bm.make_batch(cfg, CPU, seed=200 + i) for i in range(4)]
    with one_thread():
        run, plan = _fast_trainer(cfg, margin=10.0)
        for b in batches[:2]:
            run.train_step(b)
        buf = io.BytesIO()  # the checkpoint, with the plan
        torch.save({"trainer": run.state_dict(), "conv_plan": plan.state_dict(), "rng": rng_state()}, buf)
        buf.seek(0)
        saved = torch.load(buf, weights_only=True)
        rows = saved["conv_plan"]["net_g"]
        assert sum(row[-1] is True for mod in rows.values() for row in mod) > len(rows) // 2  # margin 10: native
        ref_losses = [run.train_step(b) for b in batches[2:]]  # the uninterrupted run goes on

        def resumed(load_plan: bool):
            trainer, plan = _fast_trainer(cfg, margin=0.0)  # left alone it would choose oneDNN everywhere
            trainer.load_state_dict(saved["trainer"])
            if load_plan:
                plan.load_state_dict(saved["conv_plan"])
            set_rng_state(saved["rng"])
            return trainer, [trainer.train_step(b) for b in batches[2:]]

        trainer, losses = resumed(load_plan=True)
        control, _ = resumed(load_plan=False)
    for ref, got in zip(ref_losses, losses, strict=True):
        assert {k: float(v) for k, v in ref.items()} == {k: float(v) for k, v in got.items()}
    ref_state, got_state = run.net_g.state_dict(), trainer.net_g.state_dict()
    assert all(torch.equal(ref_state[k], got_state[k]) for k in ref_state)
    control_state = control.net_g.state_dict()
    assert not all(torch.equal(ref_state[k], control_state[k]) for k in ref_state)  # the plan is what made it exact


def test_conv_plan_rejects_another_models_plan():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    fast_step.autotune_conv_backends(conv)
    plan = fast_step.ConvPlan({"net_g": conv})
    with pytest.raises(ValueError, match="net_g.1 is not a tuned convolution"):
        plan.load_state_dict({"net_g": {"1": [[[1, 3, 8, 8], True, True, False, True, True]]}})
