"""The training loop: D step, then G step with D frozen, epoch-based lr schedule, exact resume.

    result = train(get_preset("facades"), data="datasets/facades")

A numbered run directory `runs/NNNNN-name/` holds the resolved `config.json`,
`stats.jsonl` (one line per log interval), `samples/step_*.png` grids (input |
output | target) with an `index.html` and `loss.svg`, `checkpoints/latest.pt` (the
full training state) and `model/` (the generator as `from_pretrained` reads it).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config, config_from_dict, validate
from ..data.images import tensor_to_image
from ..data.paired import PairedDataset
from ..errors import DataError, TrainingDiverged
from ..io.atomic import write_json
from ..io.pretrained import save_pretrained
from ..models import run_padded
from ..nn import set_requires_grad
from ..registry import create_discriminator, create_generator
from ..report import image_grid, write_run_index
from ..runtime import resolve_num_workers, seed_everything
from .base import TrainerBase, add_weighted
from .objective import Pix2PixObjective
from .sampling import EpochBatchSampler
from .scaling import (
    DistContext,
    any_rank,
    broadcast_object,
    buffers_kept,
    gather_objects,
    gradient_sync,
    init_distributed,
    mean_over_ranks,
    shutdown_distributed,
)
from .schedules import make_scheduler
from .state import load_training_state, rng_state, save_training_state, set_rng_state


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool = False


def build_generator(cfg: Config) -> nn.Module:
    m = cfg.model
    return create_generator(m.generator, m.in_channels, m.out_channels, init=m.init, init_gain=m.init_gain,
                            ngf=m.ngf, norm=m.norm, dropout=m.dropout, upsample=m.upsample, **m.generator_kwargs)


def build_discriminator(cfg: Config) -> nn.Module:
    m = cfg.model
    d_in = m.in_channels + m.out_channels if m.conditional_d else m.out_channels
    return create_discriminator(m.discriminator, d_in, init=m.init, init_gain=m.init_gain, ndf=m.ndf,
                                n_layers=m.n_layers_d, norm=m.norm)


def model_data_config(cfg: Config) -> dict[str, Any]:
    """What inference needs to prepare inputs and read outputs, saved beside the weights."""
    d = cfg.data
    return {"direction": d.direction, "preprocess": d.preprocess, "load_size": d.load_size,
            "crop_size": d.crop_size, "color_space": d.color_space, "layout": d.layout,
            "in_channels": cfg.model.in_channels, "out_channels": cfg.model.out_channels}


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """runs_dir/NNNNN-name with NNNNN one more than the highest existing number."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.split("-")[0]) for p in runs_dir.iterdir() if p.name.split("-")[0].isdigit()]
    n = max(numbers, default=-1) + 1
    while True:
        path = runs_dir / f"{n:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


class Pix2PixTrainer(TrainerBase):
    """Networks, optimisers, schedulers and the training step of one pix2pix run."""

    def __init__(self, cfg: Config, device: torch.device, dist: DistContext | None = None) -> None:
        self.cfg, self.device = cfg, device
        self.objective = Pix2PixObjective(cfg.loss, conditional=cfg.model.conditional_d)
        self.net_g = build_generator(cfg).to(device)
        self.net_d = build_discriminator(cfg).to(device)
        if cfg.train.channels_last:
            self.net_g.to(memory_format=torch.channels_last)
            self.net_d.to(memory_format=torch.channels_last)
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
        self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
        self.sched_g = make_scheduler(self.opt_g, o)
        self.sched_d = make_scheduler(self.opt_d, o)
        if cfg.train.fast_step:
            from .fast_step import speed_up

            speed_up(self)
        self.setup_scaling(dist)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One D update then one G update (D frozen); returns the detached losses (no host synchronisation).

        With train.grad_accum > 1 each update accumulates the micro-batches' gradients. G's
        output for D's update is then computed without a graph and recomputed for G's update,
        replaying the same random state (dropout) and leaving batch-norm statistics alone, so
        both updates see the fakes one whole-batch pass would give (exactly so without batch norm).
        """
        parts = self.micro_batches(batch)
        last, replay = len(parts) - 1, len(parts) > 1
        losses: dict[str, torch.Tensor] = {}
        fakes: list[torch.Tensor | None] = [None] * len(parts)
        rng_before: list[dict[str, Any]] = []
        if self.objective.uses_discriminator:
            set_requires_grad(self.net_d, True)
            self.opt_d.zero_grad(set_to_none=True)
            for i, (weight, part) in enumerate(parts):
                real_a, real_b = self._to_device(part["A"]), self._to_device(part["B"])
                with gradient_sync(self.d, i == last):
                    with self.amp.autocast():
                        if replay:
                            rng_before.append(rng_state())
                            with torch.no_grad(), buffers_kept(self.net_g):
                                fake_b = run_padded(self.g, real_a)
                        else:
                            fake_b = fakes[i] = run_padded(self.g, real_a)  # the G update reuses it
                        d_losses = self.objective.discriminator_losses(self.d, real_a, real_b, fake_b)
                    self.amp.backward(d_losses["D"] * weight)
                add_weighted(losses, d_losses, weight)
            self.amp.step(self.opt_d)
            set_requires_grad(self.net_d, False)
        rng_after = rng_state() if rng_before else None
        self.opt_g.zero_grad(set_to_none=True)
        for i, (weight, part) in enumerate(parts):
            real_a, real_b = self._to_device(part["A"]), self._to_device(part["B"])
            with gradient_sync(self.g, i == last), gradient_sync(self.d, False):  # D is frozen: nothing to sync
                with self.amp.autocast():
                    fake_b = fakes[i]
                    if fake_b is None:
                        if rng_before:
                            set_rng_state(rng_before[i])
                        fake_b = run_padded(self.g, real_a)
                    g_losses = self.objective.generator_losses(self.d, real_a, real_b, fake_b)
                self.amp.backward(g_losses["G"] * weight)
            add_weighted(losses, g_losses, weight)
        if rng_after is not None:
            set_rng_state(rng_after)
        self.amp.step(self.opt_g)
        self.amp.update()
        return losses

    @torch.no_grad()
    def translate(self, real_a: torch.Tensor) -> torch.Tensor:
        was_training = self.net_g.training
        self.net_g.eval()
        out = run_padded(self.net_g, self._to_device(real_a))
        self.net_g.train(was_training)
        return out

    @staticmethod
    def make_dataset(cfg: Config, phase: str, train: bool) -> PairedDataset:
        return PairedDataset.from_config(cfg.data, cfg.model, phase, train=train)

    def sample_rows(self, items: list[dict[str, Any]]) -> list[list[Image.Image]]:
        """input | output | target for each item (Lab outputs recombined with their L input)."""
        rows = []
        for item in items:
            fake = self.translate(item["A"][None])[0]
            rows.append([_display(item["A"], self.cfg), _display(fake, self.cfg, item["A"]),
                         _display(item["B"], self.cfg, item["A"])])
        return rows

    def save_model(self, directory: Path, step: int) -> None:
        save_pretrained(self.net_g, directory, data=model_data_config(self.cfg), extra={"step": step})


def build_trainer(cfg: Config, device: torch.device, dist: DistContext | None = None) -> TrainerBase:
    """The trainer of the config's model family."""
    if cfg.model.family == "pix2pixhd":
        from .hd_trainer import Pix2PixHDTrainer

        return Pix2PixHDTrainer(cfg, device, dist)
    return Pix2PixTrainer(cfg, device, dist)


def _sample_dataset(trainer: TrainerBase) -> Any:
    """Fixed items for the sample grids: from val/, else test/, else train/."""
    for phase in ("val", "test", "train"):
        try:
            return trainer.make_dataset(trainer.cfg, phase, train=False)
        except DataError:
            if phase == "train":
                raise
    raise AssertionError("unreachable")


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop after the current step (a second one aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def describe(cfg: Config, trainer: TrainerBase, dataset: Any, total_steps: int, ctx: DistContext) -> str:
    t = cfg.train
    procs = f" x {ctx.world_size} processes" if ctx.enabled else ""
    return (f"dataset: {dataset.root} ({len(dataset)} items, family {cfg.model.family})\n"
            f"generator: {cfg.model.generator}, discriminator: {cfg.model.discriminator}\n{trainer.describe()}\n"
            f"steps: {total_steps} (batch {t.batch_size}{procs} in {t.grad_accum} micro-batch(es), "
            f"{math.ceil(len(dataset) / (t.batch_size * ctx.world_size))} per epoch) on {trainer.device}, "
            f"{t.precision}{', compiled' if t.compile else ''}")


def train(cfg: Config, *, resume: str | Path | None = None, dry_run: bool = False, progress: bool = False,
          log: Any = print) -> TrainResult:
    """Train with `cfg`, or continue the run in `resume` exactly where it stopped.

    Under torchrun every process calls this; rank 0 alone writes the run directory.
    """
    validate(cfg)
    ctx, device = init_distributed(cfg)
    try:
        return _train(cfg, ctx, device, resume=resume, dry_run=dry_run, progress=progress and ctx.is_main,
                      log=log if ctx.is_main else (lambda *a, **k: None))
    finally:
        if ctx.enabled:
            shutdown_distributed()


def _train(cfg: Config, ctx: DistContext, device: torch.device, *, resume: str | Path | None, dry_run: bool,
           progress: bool, log: Any) -> TrainResult:
    state: dict[str, Any] | None = None
    if resume is not None:
        run_dir = Path(resume)
        state = load_training_state(run_dir / "checkpoints" / "latest.pt")
    seed_everything(cfg.train.seed)  # the same initial weights in every process
    trainer = build_trainer(cfg, device, ctx)
    if ctx.rank:
        seed_everything(cfg.train.seed + 7919 * ctx.rank)  # but each its own dropout masks
    dataset = trainer.make_dataset(cfg, "train", train=True)
    batches = EpochBatchSampler(len(dataset), cfg.train.seed, cfg.train.batch_size, ctx.rank, ctx.world_size)
    steps_per_epoch = batches.steps_per_epoch
    total_steps = (cfg.optim.n_epochs + cfg.optim.n_epochs_decay) * steps_per_epoch
    if cfg.train.max_steps > 0:
        total_steps = min(total_steps, cfg.train.max_steps) if total_steps > 0 else cfg.train.max_steps
    if dry_run:
        log(json.dumps(cfg.to_dict(), indent=2))
        log(describe(cfg, trainer, dataset, total_steps, ctx))
        return TrainResult(Path(), 0)

    step = 0
    sums: dict[str, torch.Tensor] = {}
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        rng_ranks = state.get("rng_ranks") or [state["rng"]]
        if len(rng_ranks) == ctx.world_size:
            set_rng_state(rng_ranks[ctx.rank])
        else:  # resumed on another number of processes: the data order is kept, the random streams are not
            log(f"note: the checkpoint was written by {len(rng_ranks)} process(es), this run has {ctx.world_size}; "
                "random streams (dropout) restart from the seed")
        step, sums = int(state["step"]), dict(state["log_sums"])
        if ctx.is_main:
            _truncate_stats(run_dir / "stats.jsonl", step)
        log(f"resuming {run_dir} at step {step}")
    else:
        run_dir = None
        if ctx.is_main:
            run_dir = create_run_dir(cfg.train.runs_dir, cfg.train.name or cfg.preset or "run")
            write_json(run_dir / "config.json", cfg.to_dict())
        run_dir = Path(broadcast_object(str(run_dir) if run_dir else None, ctx))
    writer = None
    if ctx.is_main:
        sample_set = _sample_dataset(trainer)
        sample_batch = [sample_set[i] for i in range(min(cfg.train.num_samples, len(sample_set)))]
        (run_dir / "samples").mkdir(exist_ok=True)
        writer = _tensorboard_writer(run_dir) if cfg.train.tensorboard else None

    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    last_good_step = step

    def check_finite(at_step: int) -> None:  # collective: every process stops together
        if any_rank(nonfinite, ctx):
            raise TrainingDiverged(
                f"a loss became NaN or infinite between step {last_good_step} and step {at_step}; training "
                f"stopped. The last good checkpoint (step {last_good_step}) is kept in {run_dir}/checkpoints. "
                "Lower optim.lr, check the data for broken images, or resume with --resume after changing it."
            )

    def checkpoint(at_step: int) -> None:  # collective
        nonlocal last_good_step
        check_finite(at_step)
        rngs = gather_objects(rng_state(), ctx)
        if ctx.is_main:
            save_training_state(run_dir / "checkpoints" / "latest.pt", {
                "trainer": trainer.state_dict(), "rng": rngs[0], "rng_ranks": rngs, "step": at_step,
                "log_sums": sums, "config": json.dumps(cfg.to_dict())})
            trainer.save_model(run_dir / "model", at_step)
        last_good_step = at_step

    def write_samples(at_step: int) -> None:
        image_grid(trainer.sample_rows(sample_batch)).save(run_dir / "samples" / f"step_{at_step:08d}.png")
        write_run_index(run_dir)

    workers = resolve_num_workers(cfg.data.num_workers)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, generator=torch.Generator())  # keeps the global RNG untouched
    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="it", dynamic_ncols=True,
               file=sys.stderr, mininterval=0.5)
    interrupted = False
    window_start = time.perf_counter()
    window_steps = 0
    with _StopFlag() as stop:
        while step < total_steps and not interrupted:
            epoch, position = divmod(step, steps_per_epoch)
            batches.set_epoch(epoch, position)
            for batch in loader:
                losses = trainer.train_step(batch)
                step += 1
                window_steps += 1
                bar.update(1)
                for k, v in losses.items():
                    nonfinite |= ~torch.isfinite(v)
                    sums[k] = sums.get(k, 0.0) + v  # stays a device tensor until the log interval
                if step % steps_per_epoch == 0:
                    trainer.end_epoch(step // steps_per_epoch)
                at_log = step % cfg.train.log_every == 0 or step == total_steps
                if at_log:
                    check_finite(step)
                    n = step - (step - 1) // cfg.train.log_every * cfg.train.log_every
                    means = {k: float(v) / n for k, v in mean_over_ranks(sums, ctx).items()}
                    elapsed = time.perf_counter() - window_start
                    record = {"step": step, "epoch": step / steps_per_epoch, "lr": trainer.lr, "losses": means,
                              "it_per_s": window_steps / elapsed if elapsed > 0 else None}
                    if ctx.is_main:
                        _append_stats(run_dir / "stats.jsonl", record)
                        if writer is not None:
                            for k, v in means.items():
                                writer.add_scalar(f"loss/{k}", v, step)
                            writer.add_scalar("lr", trainer.lr, step)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()}, refresh=False)
                    sums, window_start, window_steps = {}, time.perf_counter(), 0
                if ctx.is_main and (step % cfg.train.sample_every == 0 or step == total_steps):
                    write_samples(step)
                if not ctx.enabled:
                    interrupted = stop.requested
                elif at_log:  # processes agree at log steps: Ctrl-C reaches them at different steps
                    interrupted = any_rank(torch.tensor(stop.requested, device=device), ctx)
                if step % cfg.train.checkpoint_every == 0 or step == total_steps or interrupted:
                    checkpoint(step)
                if step >= total_steps or interrupted:
                    break
    bar.close()
    if writer is not None:
        writer.close()
    if ctx.is_main:
        write_run_index(run_dir)
    if interrupted:
        log(f"interrupted at step {step}; state saved. Continue with: pix2pix train --resume {run_dir}")
    return TrainResult(run_dir, step, interrupted)


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config of an existing run (for --resume)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist: --resume needs a run directory made by `pix2pix train`.")
    return config_from_dict(json.loads(path.read_text()))


def _display(t: torch.Tensor, cfg: Config, source: torch.Tensor | None = None) -> Image.Image:
    """A tensor as an RGB image for the grids (Lab ab outputs are recombined with their L input)."""
    t = t.detach().float().cpu()
    if cfg.data.color_space == "lab" and t.shape[0] == 2 and source is not None:
        from ..data.color import lab_channels_to_rgb

        t = lab_channels_to_rgb(source.float().cpu(), t)
    return tensor_to_image(t[:3] if t.shape[0] >= 3 else t[:1])


def _append_stats(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def _truncate_stats(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint being resumed (they will be logged again)."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        from ..io.atomic import write_text

        write_text(path, "".join(ln + "\n" for ln in lines))


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: logging to stats.jsonl only
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
