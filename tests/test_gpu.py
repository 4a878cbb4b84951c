"""What only a CUDA device can check: both families' training steps there agree with the CPU's, and bf16
autocast, channels_last, torch.compile, the prefetcher, the optimisers, the loop and translation run there.

Every test is marked `cuda` and skipped without a GPU (tests/conftest.py); benchmarks/gpu_check.sh runs
them on one. TF32 is switched off in these tests so that CUDA's fp32 convolutions compare with the CPU's
to float rounding; dropout is off where the two devices are compared (their random streams differ).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pix2pix.runtime import seed_everything
from pix2pix.training import fast_step
from pix2pix.training.prefetch import Prefetcher
from pix2pix.training.trainer import build_trainer

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[1]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("pix2pix_benchmark", ROOT / "benchmarks" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pix2pix_benchmark", module)
    spec.loader.exec_module(module)
    return module


bm = _load_benchmark()


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _config(preset: str, device: torch.device, **train: object):
    cfg = bm.preset_config(preset, device.type)
    if cfg.model.family == "pix2pix":
        cfg.model.dropout = False  # CPU and CUDA draw different masks
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def _run(preset: str, device: torch.device, steps: int = 3, hooks=None, **train: object):
    """Losses of `steps` steps from seed 0 on fixed batches, and the trainer."""
    cfg = _config(preset, device, **train)
    seed_everything(0)
    trainer = build_trainer(cfg, device)
    if hooks:
        hooks(trainer)
    losses = []
    for i in range(steps):
        out = trainer.train_step(bm.make_batch(cfg, device, seed=300 + i))
        losses.append({k: float(v) for k, v in out.items()})
    return losses, trainer


def _close(a, b, rel):
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert np.isfinite(y[k]), k
            assert abs(x[k] - y[k]) <= rel * max(1.0, abs(x[k])), (k, x[k], y[k])


@pytest.mark.parametrize("preset", ["tiny", "tiny_hd"])
def test_training_steps_on_cuda_match_the_cpu(preset):
    cpu, _ = _run(preset, CPU)
    cuda, trainer = _run(preset, CUDA)
    assert next(trainer.net_g.parameters()).is_cuda
    _close(cpu, cuda, rel=1e-3)


def test_bf16_autocast_on_cuda_runs_convolutions_in_bf16_and_stays_close():
    dtypes = []

    def hook(trainer):
        conv = next(m for m in trainer.net_g.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))

    fp32, _ = _run("tiny", CUDA)
    bf16, _ = _run("tiny", CUDA, hooks=hook, precision="bf16")
    assert dtypes and set(dtypes) == {torch.bfloat16}
    _close(fp32, bf16, rel=0.05)


def test_channels_last_on_cuda():
    plain, _ = _run("tiny", CUDA)
    cl, trainer = _run("tiny", CUDA, channels_last=True)
    conv = next(m for m in trainer.net_g.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    _close(plain, cl, rel=1e-3)


def test_compiled_step_on_cuda_matches_eager():
    eager, _ = _run("tiny", CUDA, steps=2)
    compiled, trainer = _run("tiny", CUDA, steps=2, compile=True)
    assert trainer.g is not trainer.net_g  # the step ran the compiled module
    _close(eager, compiled, rel=1e-3)


def test_fast_step_on_cuda_uses_fused_adam():
    plain, _ = _run("tiny_hd", CUDA)
    fast, trainer = _run("tiny_hd", CUDA, fast_step=True)
    assert trainer.opt_g.defaults["fused"] and trainer.opt_d.defaults["fused"]
    _close(plain, fast, rel=1e-3)


def test_blocked_adam_on_cuda_is_torch_adam():
    """On CUDA the default optimiser is torch's own Adam step (foreach): no blocks, the same bits."""
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(300, 7, device=CUDA)), torch.nn.Parameter(torch.randn(5, device=CUDA))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ref, blk = torch.optim.Adam(a, lr=1e-3), fast_step.make_adam(b, lr=1e-3, betas=(0.9, 0.999))
    assert type(blk) is fast_step.BlockedAdam
    for _ in range(3):
        grads = [torch.randn_like(p) for p in a]
        for p, q, g in zip(a, b, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        assert not blk._blockable()
        ref.step()
        blk.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_prefetcher_copies_batches_to_the_gpu():
    batches = [{"A": torch.full((2, 3, 8, 8), float(i)).pin_memory(), "path": [f"{i}.png"]} for i in range(5)]
    got = list(Prefetcher(batches, CUDA))
    assert [b["path"] for b in got] == [b["path"] for b in batches]
    for a, b in zip(batches, got, strict=True):
        assert b["A"].is_cuda and torch.equal(b["A"].cpu(), a["A"])


def test_train_and_resume_on_cuda(tiny_config):
    """The loop on CUDA (pinned batches, non-blocking copies, checkpoints of CUDA tensors) and a resume there."""
    from pix2pix.report import read_stats
    from pix2pix.training.trainer import load_run_config, train

    tiny_config.train.device = "cuda"
    tiny_config.train.max_steps = tiny_config.train.checkpoint_every = 4
    part = train(tiny_config)
    cfg = load_run_config(part.run_dir)
    cfg.train.max_steps = 6
    resumed = train(cfg, resume=part.run_dir)
    stats = read_stats(resumed.run_dir / "stats.jsonl")
    assert resumed.step == 6 and [r["step"] for r in stats] == list(range(1, 7))
    assert all(np.isfinite(v) for r in stats for v in r["losses"].values())


def test_translate_on_cuda_matches_the_cpu(tmp_path):
    from pix2pix.inference import load_translator

    cfg = _config("tiny", CPU)
    seed_everything(0)
    build_trainer(cfg, CPU).save_model(tmp_path / "model", 0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    outs = {}
    for device in ("cpu", "cuda"):
        translator = load_translator(tmp_path / "model", device=device)
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
        outs[device] = translator.translate_tensor(x.to(device)).float().cpu()
    torch.testing.assert_close(outs["cuda"], outs["cpu"], rtol=1e-4, atol=1e-4)
