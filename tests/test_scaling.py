"""Distributed (torchrun, gloo), mixed precision, compile, activation checkpointing, gradient accumulation."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from pix2pix.errors import ConfigError
from pix2pix.presets import get_preset
from pix2pix.report import read_stats
from pix2pix.runtime import seed_everything
from pix2pix.training.sampling import EpochBatchSampler, EpochSampler
from pix2pix.training.scaling import enable_activation_checkpointing
from pix2pix.training.trainer import build_trainer, train

# Batch norm differs with the split by design (each process normalises its share), and dropout
# masks are per process: equivalence holds for instance norm without dropout.
EXACT = {"model.norm": "instance", "model.dropout": "false", "train.max_steps": "4"}


def _losses(run_dir):
    return [r["losses"] for r in read_stats(run_dir / "stats.jsonl")]


def _apply(cfg, overrides):
    from pix2pix.config import apply_overrides

    return apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])


def _close(a, b, rel):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert abs(x[k] - y[k]) <= rel * max(1.0, abs(x[k])), (k, x[k], y[k])


def _same_generator(run_a, run_b, rel, noisy_adam_steps=0, lr=2e-4):
    """Weights and outputs of two runs' generators agree.

    Adam divides each gradient element by its own magnitude, so an element whose gradient is
    at rounding level moves by up to lr per step, either way, in either run: biases just
    before instance norm (no effect, zero gradient up to rounding) are left to the output
    check, and `noisy_adam_steps` steps of 2 lr are allowed where that happens to weights.
    """
    from pix2pix.io.pretrained import from_pretrained

    a, b = (load_file(run / "model" / "generator.safetensors") for run in (run_a, run_b))
    for k in a:
        if not k.endswith("bias"):
            assert (a[k] - b[k]).abs().max() <= rel * a[k].abs().max() + 2 * lr * noisy_adam_steps, k
    nets = [from_pretrained(run / "model").eval() for run in (run_a, run_b)]
    in_channels = next(m for m in nets[0].modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    x = torch.rand(2, in_channels, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out_a, out_b = (net(x) for net in nets)
    assert (out_a - out_b).abs().max() <= rel * out_a.abs().max()


def _torchrun(args, cwd, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc_per_node", str(nproc), "-m", "pix2pix.cli.main", "train", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_batch_shards_cover_the_single_process_batches():
    for n, batch, world in [(10, 2, 2), (9, 1, 3), (7, 2, 2)]:
        single = EpochBatchSampler(n, 5, batch * world)
        shards = [EpochBatchSampler(n, 5, batch, rank, world) for rank in range(world)]
        for s in [single, *shards]:
            s.set_epoch(3)
        for step, whole in enumerate(single):
            parts = [list(shard)[step] for shard in shards]
            assert len({len(p) for p in parts}) == 1  # every process takes the same number of items
            joined = [item for part in parts for item in part]
            assert joined[:len(whole)] == whole  # the global batch, in order (a short one padded at the end)
    # resumable mid-epoch, and world size 1 is the plain epoch order
    s = EpochBatchSampler(10, 5, 3)
    s.set_epoch(2, start_step=1)
    assert [item for b in s for item in b] == list(EpochSampler(10, 5, 2))[3:]


@pytest.mark.slow
def test_two_processes_equal_one_process_and_resume(tiny_config, tmp_path):
    """torchrun, 2 processes x batch 2 (gloo, CPU) against 1 process x batch 4; then a resume under DDP."""
    single_cfg = _apply(tiny_config, {**EXACT, "train.batch_size": "4"})
    single = train(single_cfg).run_dir

    runs = tmp_path / "ddp_runs"
    base = ["--preset", "tiny", "--data", tiny_config.data.root, "--runs-dir", str(runs)]
    sets = [a for k, v in {**EXACT, "train.batch_size": "2"}.items() for a in ("--set", f"{k}={v}")]
    _torchrun([*base, *sets, "--set", "train.max_steps=2", "--set", "train.checkpoint_every=2"], tmp_path)
    (run_dir,) = runs.iterdir()  # rank 0 alone created a run directory
    assert [r["step"] for r in read_stats(run_dir / "stats.jsonl")] == [1, 2]
    _torchrun(["--resume", str(run_dir), "--set", "train.max_steps=4"], tmp_path)

    _close(_losses(single), _losses(run_dir), rel=1e-4)
    _same_generator(single, run_dir, rel=1e-4)


@pytest.mark.slow
def test_two_processes_equal_one_process_for_pix2pixhd(world, tmp_path):
    """The local enhancer under DDP: one D pass serving both losses, and the re-wrap when the global net unfreezes."""
    overrides = {"train.max_steps": "5", "train.batch_size": "2"}  # 8 scenes: epoch 1 (enhancer alone) is 4 steps
    cfg = _apply(get_preset("tiny_hd_local"), overrides)
    cfg.data.root, cfg.train.runs_dir = str(world), str(tmp_path / "single")
    single = train(cfg).run_dir

    runs = tmp_path / "ddp_runs"
    sets = [a for k, v in {**overrides, "train.batch_size": "1"}.items() for a in ("--set", f"{k}={v}")]
    _torchrun(["--preset", "tiny_hd_local", "--data", str(world), "--runs-dir", str(runs), *sets], tmp_path)
    (run_dir,) = runs.iterdir()
    _close(_losses(single), _losses(run_dir), rel=1e-4)
    _same_generator(single, run_dir, rel=1e-3, noisy_adam_steps=1)  # the global net's first Adam step


def _step_losses(cfg, steps=3):
    """Losses of `steps` training steps on the same batches, and the generator's final weights."""
    seed_everything(cfg.train.seed)
    trainer = build_trainer(cfg, torch.device("cpu"))
    dataset = trainer.objective.make_dataset("train", train=True)
    items = [dataset[(i, 1000 + i)] for i in range(4)]  # (index, augmentation seed), as the sampler gives
    batch = {"A": torch.stack([it["A"] for it in items]), "B": torch.stack([it["B"] for it in items])}
    out = [{k: float(v) for k, v in trainer.train_step(batch).items()} for _ in range(steps)]
    return out, {k: v.detach().clone() for k, v in trainer.net_g.state_dict().items()}


@pytest.mark.parametrize("precision,rel", [("bf16", 0.05), ("fp16", 0.05)])
def test_mixed_precision_stays_close_to_fp32(tiny_config, precision, rel):
    cfg = _apply(tiny_config, {**EXACT, "train.batch_size": "4"})
    exact, _ = _step_losses(cfg)
    mixed, _ = _step_losses(_apply(cfg.copy(), {"train.precision": precision}))
    _close(exact, mixed, rel)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_device_has_it(tiny_config, monkeypatch, native):
    from pix2pix.training import scaling

    monkeypatch.setattr(scaling, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert scaling.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert [scaling.resolve_precision(p, cpu) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    trainer = build_trainer(_apply(tiny_config, {"train.precision": "auto"}), cpu)
    assert trainer.amp.precision == ("bf16" if native else "fp32")
    with trainer.amp.autocast():
        y = torch.nn.functional.conv2d(torch.rand(1, 2, 4, 4), torch.rand(2, 2, 1, 1))
    assert y.dtype == (torch.bfloat16 if native else torch.float32)


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    from pix2pix.training.scaling import native_bf16

    for avx512_bf16, amx, expected in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert native_bf16(torch.device("cpu")) is expected
    assert native_bf16(torch.device("meta")) is False


def test_fp16_scaler_state_is_checkpointed_and_resumed(tiny_config):
    cfg = _apply(tiny_config, {"train.precision": "fp16"})
    trainer = build_trainer(cfg, torch.device("cpu"))
    state = trainer.state_dict()
    assert "grad_scaler" in state and state["grad_scaler"]["scale"] > 1
    run = train(cfg)
    from pix2pix.training.state import load_training_state

    assert "grad_scaler" in load_training_state(run.run_dir / "checkpoints" / "latest.pt")["trainer"]


def test_normalisation_statistics_are_accumulated_in_fp32():
    """Instance norm of a bf16 input under autocast: error of the order of bf16 output rounding only."""
    x = (torch.randn(1, 16, 64, 64) * 3 + 5).bfloat16()
    norm = torch.nn.InstanceNorm2d(16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x)
    exact = norm(x.float())
    rounding = (exact.bfloat16().float() - exact).abs().max()
    assert (y.float() - exact).abs().max() <= 3 * rounding


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from pix2pix.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("world")
    write_synthetic_dataset(root, num=10, size=32, seed=0)  # 8 train scenes, 2 test
    return root


@pytest.mark.parametrize("preset,overrides", [
    ("tiny", {**EXACT, "model.dropout": "true"}),  # dropout masks replayed for G's recomputation
    ("tiny_hd", {"train.max_steps": "4"}),
])
def test_gradient_accumulation_equals_the_whole_batch(tiny_config, world, preset, overrides):
    cfg = _apply(get_preset(preset), {**overrides, "train.batch_size": "4"})
    cfg.data.root = tiny_config.data.root if preset == "tiny" else str(world)
    cfg.train.runs_dir = tiny_config.train.runs_dir
    whole = train(cfg)
    accumulated = train(_apply(cfg.copy(), {"train.grad_accum": "2"}))
    _close(_losses(whole.run_dir), _losses(accumulated.run_dir), rel=1e-5)
    _same_generator(whole.run_dir, accumulated.run_dir, rel=1e-4)


def test_activation_checkpointing_gives_the_same_training(tiny_config, world):
    cfg = _apply(get_preset("tiny_hd_local"), {"train.max_steps": "3"})
    cfg.data.root, cfg.train.runs_dir = str(world), tiny_config.train.runs_dir
    plain = train(cfg)
    checkpointed = train(_apply(cfg.copy(), {"train.checkpoint_activations": "true"}))
    _close(_losses(plain.run_dir), _losses(checkpointed.run_dir), rel=1e-6)
    _same_generator(plain.run_dir, checkpointed.run_dir, rel=1e-5)


def test_checkpointing_flags_the_residual_blocks_and_enhancers():
    from pix2pix.models import create_generator

    local = create_generator("local", 3, 3, ngf=4, n_downsample_global=1, n_blocks_global=2, n_blocks_local=1)
    assert enable_activation_checkpointing(local) == 2 + 1 + 1  # global blocks, enhancer block, the enhancer
    assert enable_activation_checkpointing(create_generator("unet_128", 3, 3, ngf=4)) == 0  # no residual trunk


def test_compiled_step_matches_eager(tiny_config, monkeypatch):
    """train.compile captures G and D with dynamo; the test compiles with the aot_eager backend (the same
    graph capture and autograd, without Inductor's minutes of C++ code generation on 2 cores)."""
    compile_calls = []

    def compile_aot_eager(module, **kwargs):
        compile_calls.append(type(module).__name__)
        return real_compile(module, backend="aot_eager", **kwargs)

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    cfg = _apply(tiny_config, {**EXACT, "train.batch_size": "4"})
    eager, _ = _step_losses(cfg, steps=2)
    compiled, _ = _step_losses(_apply(cfg.copy(), {"train.compile": "true"}), steps=2)
    assert compile_calls == ["UnetGenerator", "NLayerDiscriminator"]
    _close(eager, compiled, rel=1e-4)


def test_compiled_pix2pixhd_training_matches_eager(tiny_config, world, monkeypatch):
    """pix2pixHD's step runs D's backward and then G's through the same compiled D graph."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: real_compile(module, backend="aot_eager", **kw))
    cfg = _apply(get_preset("tiny_hd"), {"train.max_steps": "2"})
    cfg.data.root, cfg.train.runs_dir = str(world), tiny_config.train.runs_dir
    eager = train(cfg)
    compiled = train(_apply(cfg.copy(), {"train.compile": "true"}))
    _close(_losses(eager.run_dir), _losses(compiled.run_dir), rel=1e-4)


def test_channels_last_matches_contiguous(tiny_config):
    cfg = _apply(tiny_config, {**EXACT, "train.batch_size": "4"})
    _close(_step_losses(cfg)[0], _step_losses(_apply(cfg.copy(), {"train.channels_last": "true"}))[0], rel=1e-4)


def test_bad_scaling_settings_are_clear_errors(tiny_config):
    with pytest.raises(ConfigError, match="train.precision"):
        train(_apply(tiny_config.copy(), {"train.precision": "fp8"}))
    with pytest.raises(ConfigError, match="grad_accum=3 must.*divide train.batch_size=2"):
        train(_apply(tiny_config.copy(), {"train.grad_accum": "3"}))
