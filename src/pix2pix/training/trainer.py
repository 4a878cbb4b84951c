"""The training loop, one for both families: the objective (`objectives.py`) says what differs.

    result = train(get_preset("facades"), data="datasets/facades")

A numbered run directory `runs/NNNNN-name/` holds the resolved `config.json`,
`stats.jsonl` (one line per log interval), `samples/step_*.png` grids (input |
output | target) with an `index.html` and `loss.svg`, `checkpoints/latest.pt` (the
full training state) and `model/` (the generator as `from_pretrained` reads it).
"""

from __future__ import annotations

import json
import math
import re
import signal
import sys
import threading
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config, config_from_dict, validate
from ..errors import ConfigError, DataError, TrainingDiverged
from ..io.atomic import write_json, write_text
from ..io.pretrained import save_model
from ..nn import set_requires_grad
from ..report import image_grid, write_run_index
from ..runtime import resolve_num_workers, seed_everything
from .ema import WeightAverage
from .fast_step import apply_process_defaults, fused_adam_supported, make_adam, speed_up
from .objectives import Networks, Objective, check_trainable, make_objective
from .sampling import EpochBatchSampler
from .scaling import (
    DistContext,
    MixedPrecision,
    any_rank,
    broadcast_object,
    buffers_kept,
    convert_sync_batchnorm,
    enable_activation_checkpointing,
    gather_objects,
    gradient_sync,
    init_distributed,
    mean_over_ranks,
    prepare_module,
    shutdown_distributed,
)
from .schedules import make_scheduler
from .state import load_training_state, rng_state, save_training_state, set_rng_state


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool = False


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


def add_weighted(total: dict[str, torch.Tensor], losses: dict[str, torch.Tensor], weight: float) -> None:
    """total[k] += weight * losses[k], detached (a micro-batch's share of the step's mean losses)."""
    for key, value in losses.items():
        value = value.detach() * weight if weight != 1.0 else value.detach()
        total[key] = total[key] + value if key in total else value


class Trainer:
    """Networks, optimisers, schedulers, the weight average and the training step of one run, any family.

    `net_g`, `net_d`, `net_e` are the plain networks (saved, sampled); the step runs `g`, `d`, `e`,
    the same networks wrapped for DDP / torch.compile. With `train.ema_decay` the averaged
    generator (and encoder) serve samples and the saved model.
    """

    def __init__(self, cfg: Config, device: torch.device, dist: DistContext | None = None) -> None:
        self.cfg, self.device = cfg, device
        t, o = cfg.train, cfg.optim
        self.objective: Objective = make_objective(cfg)
        nets = self.objective.build_networks()
        self.net_g, self.net_d, self.net_e = (None if n is None else n.to(device) for n in (nets.g, nets.d, nets.e))
        for module in self.objective.loss_modules():
            module.to(device)
        if t.channels_last:
            for net in self.networks().values():
                net.to(memory_format=torch.channels_last)
        self.fused_adam = t.fast_step and fused_adam_supported(device)  # kept when the optimiser is rebuilt
        if self.net_d is not None:
            self.opt_d = make_adam(self.net_d.parameters(), lr=o.lr_d or o.lr, betas=(o.beta1, o.beta2),
                                   fused=self.fused_adam)
            self.sched_d = make_scheduler(self.opt_d, o)
        self.g_phase = self.objective.generator_phase(0)
        self._build_g_optimizer(epochs_done=0)
        self.ema = WeightAverage(self.generator_side(), t.ema_decay) if t.ema_decay > 0 else None
        if t.fast_step:
            speed_up(self)
        # -- scaling: sync batch norm, activation checkpointing, precision, the wrapped modules
        self.dist = dist or DistContext()
        self.amp = MixedPrecision(device, t.precision)
        if t.sync_bn:
            for name, net in self.networks().items():
                setattr(self, name, convert_sync_batchnorm(net, self.dist, device))
        if t.checkpoint_activations:
            enable_activation_checkpointing(self.net_g)
        self.wrap_networks()

    # -- parts ------------------------------------------------------------------------------------
    @property
    def vgg(self) -> nn.Module | None:
        return getattr(self.objective, "vgg", None)

    def generator_side(self) -> dict[str, nn.Module]:
        """The networks G's optimiser trains (and the weight average follows): G and the encoder."""
        return {name: net for name, net in (("net_g", self.net_g), ("net_e", self.net_e)) if net is not None}

    def inference_networks(self) -> Networks:
        """G and E as samples and the saved model use them: the weight average when there is one."""
        side = self.ema.averaged if self.ema is not None else self.generator_side()
        return Networks(side["net_g"], None, side.get("net_e"))

    def components(self) -> dict[str, Any]:
        """Everything with a state_dict that a checkpoint must hold, by name."""
        names = ("net_g", "net_d", "net_e", "opt_g", "opt_d", "sched_g", "sched_d", "ema", "conv_plan")
        parts = {n: getattr(self, n) for n in names if getattr(self, n, None) is not None}
        if getattr(self, "amp", None) is not None and self.amp.scaler.is_enabled():
            parts["grad_scaler"] = self.amp.scaler
        return parts

    def networks(self) -> dict[str, nn.Module]:
        return {n: m for n, m in self.components().items() if isinstance(m, nn.Module)}

    def wrap_networks(self) -> None:
        """(Re)build `g`, `d`, `e` from `net_g`, `net_d`, `net_e` (again after parameters are (un)frozen)."""
        for name in ("net_g", "net_d", "net_e"):
            net = getattr(self, name, None)
            setattr(self, name[4:], None if net is None else
                    prepare_module(net, self.dist, self.device, self.cfg.train.compile))

    def describe(self) -> str:
        return "\n".join(f"{name}: {type(net).__name__} ({sum(p.numel() for p in net.parameters()):,} parameters)"
                         for name, net in self.networks().items())

    # -- optimisation -----------------------------------------------------------------------------
    def _build_g_optimizer(self, epochs_done: int) -> None:
        """Adam over the parameters of the current generator phase; frozen ones get no gradients."""
        o = self.cfg.optim
        nets = Networks(self.net_g, self.net_d, self.net_e)
        params = self.objective.generator_parameters(nets, self.g_phase)
        trained = {id(p) for p in params}
        for p in self.net_g.parameters():  # frozen parameters get no gradients (and DDP does not wait for them)
            p.requires_grad_(id(p) in trained)
        self.opt_g = make_adam(params, lr=o.lr, betas=(o.beta1, o.beta2), fused=self.fused_adam)
        self.sched_g = make_scheduler(self.opt_g, o)
        with warnings.catch_warnings():  # stepping a fresh schedule forward, before any optimiser step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epochs_done):
                self.sched_g.step()

    def end_epoch(self, epochs_done: int) -> None:
        """Called after each full epoch: steps the learning-rate schedules (the reference's rhythm), and
        moves to the objective's next generator phase (Adam starts afresh there, as in pix2pixHD)."""
        with warnings.catch_warnings():  # fp16: the GradScaler may have skipped every optimiser step so far
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
            for sched in (self.sched_g, getattr(self, "sched_d", None)):
                if sched is not None:
                    sched.step()
        phase = self.objective.generator_phase(epochs_done)
        if phase != self.g_phase:
            self.g_phase = phase
            self._build_g_optimizer(epochs_done)
            self.wrap_networks()

    @property
    def lr(self) -> float:
        return self.opt_g.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {**{name: part.state_dict() for name, part in self.components().items()}, "g_phase": self.g_phase,
                "epochs_done": int(self.sched_g.last_epoch)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        phase = state.get("g_phase")
        if phase is None and "global_frozen" in state:  # checkpoints of the first layout
            phase = "enhancer" if state["global_frozen"] else "all"
        if phase is not None and phase != self.g_phase:
            self.g_phase = phase
            self._build_g_optimizer(int(state["epochs_done"]))
            self.wrap_networks()
        if "ema" in state and self.ema is None:  # else the average would be dropped without a word
            raise ConfigError("the checkpoint has a weight average (train.ema_decay > 0) but this run has none: resume "
                              "with the run's train.ema_decay.")
        for name, part in self.components().items():
            if name == "conv_plan" and name not in state:  # a fast-step checkpoint from before plans were saved
                continue  # the layers are timed again
            if name not in state:
                raise ConfigError(f"the checkpoint has no {name!r}: it was written with other settings (e.g. "
                                  "train.ema_decay or train.precision=fp16 changed); resume with the run's settings.")
            part.load_state_dict(state[name])

    # -- the step -----------------------------------------------------------------------------------
    def micro_batches(self, batch: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
        """(weight, part) for the batch split into train.grad_accum micro-batches along the batch axis.

        The weight is the part's share of the batch, so that the weighted sum of the parts' mean
        losses is the whole batch's mean loss: accumulated gradients equal the whole batch's.
        """
        n = next(len(v) for v in batch.values() if isinstance(v, torch.Tensor))
        size = -(-n // min(self.cfg.train.grad_accum, n))
        return [(min(size, n - start) / n, {key: value[start:start + size] for key, value in batch.items()})
                for start in range(0, n, size)]

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.cfg.train.channels_last and x.dim() == 4 else torch.contiguous_format
        return x.to(self.device, non_blocking=True, memory_format=fmt)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One update of D and of G (the objective's rule); returns the detached losses (no host synchronisation)."""
        parts = self.micro_batches(batch)
        losses = self._shared_pass_step(parts) if self.objective.shares_d_pass else self._alternating_step(parts)
        if self.ema is not None:
            self.ema.update(self.generator_side())
        return losses

    def _alternating_step(self, parts: list[tuple[float, dict[str, Any]]]) -> dict[str, torch.Tensor]:
        """D's update, then G's against the updated D with D frozen (pix2pix).

        With train.grad_accum > 1 each update accumulates the micro-batches' gradients. G's
        output for D's update is then computed without a graph and recomputed for G's update,
        replaying the same random state (dropout) and leaving batch-norm statistics alone, so
        both updates see the fakes one whole-batch pass would give (exactly so without batch norm).
        """
        obj = self.objective
        last, replay = len(parts) - 1, len(parts) > 1
        losses: dict[str, torch.Tensor] = {}
        fakes: list[torch.Tensor | None] = [None] * len(parts)
        rng_before: list[dict[str, Any]] = []
        if self.net_d is not None and obj.uses_discriminator:
            set_requires_grad(self.net_d, True)
            self.opt_d.zero_grad(set_to_none=True)
            for i, (weight, part) in enumerate(parts):
                pair = obj.prepare(part, self._to_device)
                with gradient_sync(self.d, i == last):
                    with self.amp.autocast():
                        if replay:
                            rng_before.append(rng_state())
                            with torch.no_grad(), buffers_kept(self.net_g):
                                fake = obj.generate(self.g, self.e, pair)
                        else:
                            fake = fakes[i] = obj.generate(self.g, self.e, pair)  # the G update reuses it
                        d_losses = obj.discriminator_losses(self.d, pair, fake)
                    self.amp.backward(d_losses["D"] * weight)
                add_weighted(losses, d_losses, weight)
            self.amp.step(self.opt_d)
            set_requires_grad(self.net_d, False)
        rng_after = rng_state() if rng_before else None
        self.opt_g.zero_grad(set_to_none=True)
        for i, (weight, part) in enumerate(parts):
            pair = obj.prepare(part, self._to_device)
            with ExitStack() as stack:
                stack.enter_context(gradient_sync(self.g, i == last))
                if self.d is not None:
                    stack.enter_context(gradient_sync(self.d, False))  # D is frozen: nothing to sync
                with self.amp.autocast():
                    fake = fakes[i]
                    if fake is None:
                        if rng_before:
                            set_rng_state(rng_before[i])
                        fake = obj.generate(self.g, self.e, pair)
                    g_losses = obj.generator_losses(self.d, pair, fake)
                self.amp.backward(g_losses["G"] * weight)
            add_weighted(losses, g_losses, weight)
        if rng_after is not None:
            set_rng_state(rng_after)
        self.amp.step(self.opt_g)
        self.amp.update()
        return losses

    def _shared_pass_step(self, parts: list[tuple[float, dict[str, Any]]]) -> dict[str, torch.Tensor]:
        """G's and D's gradients from one forward pass, both taken before either steps (pix2pixHD).

        G's gradients are computed for G (and E) only, D's for D only, so the update is the
        reference's exactly (D sees the same fake values, G sees D before its update). With
        train.grad_accum > 1 both gradients accumulate over the micro-batches before the steps.
        """
        obj = self.objective
        g_params = [p for group in self.opt_g.param_groups for p in group["params"]]
        d_params = list(self.net_d.parameters()) if self.net_d is not None else []
        self.opt_g.zero_grad(set_to_none=True)
        if self.net_d is not None:
            self.opt_d.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        for i, (weight, part) in enumerate(parts):
            sync = i == len(parts) - 1
            with ExitStack() as stack:
                for net in (self.g, self.e, self.d):
                    if net is not None:
                        stack.enter_context(gradient_sync(net, sync))
                with self.amp.autocast():
                    pair = obj.prepare(part, self._to_device)
                    fake = obj.generate(self.g, self.e, pair)
                    part_losses = obj.discriminator_losses(self.d, pair, fake) if self.d is not None else {}
                    part_losses.update(obj.generator_losses(self.d, pair, fake))
                # D's backward first, keeping the graph; G's backward then frees it layer by layer. The other
                # order keeps G's and the VGG's activations alive through D's backward: same gradients, but
                # a higher peak and ~3x the page faults per step on CPU (measured 1.25x slower at 512x256).
                if self.net_d is not None:
                    self.amp.backward(part_losses["D"] * weight, inputs=d_params, retain_graph=True)
                self.amp.backward(part_losses["G"] * weight, inputs=g_params)
            add_weighted(losses, part_losses, weight)
        if self.net_d is not None:
            self.amp.step(self.opt_d)
        self.amp.step(self.opt_g)
        self.amp.update()
        return losses

    # -- samples and the saved model ------------------------------------------------------------------
    @torch.no_grad()
    def sample_rows(self, items: list[dict[str, Any]]) -> list[list[Any]]:
        """One row of images per item (the objective's layout), from the inference networks in eval mode."""
        nets = self.inference_networks()
        live = [n for n in (nets.g, nets.e) if n is not None]
        modes = [n.training for n in live]
        for n in live:
            n.eval()
        try:
            rows = [self.objective.sample_row(nets.g, nets.e, item, self._to_device) for item in items]
        finally:
            for n, mode in zip(live, modes, strict=True):
                n.train(mode)
        return [row for row in rows if row]

    def save_model(self, directory: Path, step: int) -> None:
        nets = self.inference_networks()
        networks = {"generator": nets.g, **({"encoder": nets.e} if nets.e is not None else {})}
        save_model(directory, self.objective.card(step), networks)


def build_trainer(cfg: Config, device: torch.device, dist: DistContext | None = None) -> Trainer:
    """The trainer of a config (any family)."""
    return Trainer(cfg, device, dist)


def _sample_dataset(trainer: Trainer) -> Any:
    """Fixed items for the sample grids: from val/, else test/, else train/."""
    for phase in ("val", "test", "train"):
        try:
            return trainer.objective.make_dataset(phase, train=False)
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


def describe(cfg: Config, trainer: Trainer, dataset: Any, total_steps: int, ctx: DistContext) -> str:
    t = cfg.train
    procs = f" x {ctx.world_size} processes" if ctx.enabled else ""
    return (f"dataset: {dataset.root} ({len(dataset)} items, family {cfg.model.family})\n"
            f"generator: {cfg.model.generator}, discriminator: {cfg.model.discriminator}\n{trainer.describe()}\n"
            f"steps: {total_steps} (batch {t.batch_size}{procs} in {t.grad_accum} micro-batch(es), "
            f"{math.ceil(len(dataset) / (t.batch_size * ctx.world_size))} per epoch) on {trainer.device}, "
            f"{trainer.amp.precision}{' (train.precision=auto)' if t.precision == 'auto' else ''}"
            f"{', compiled' if t.compile else ''}")


def train(cfg: Config, *, resume: str | Path | None = None, dry_run: bool = False, progress: bool = False,
          log: Any = print) -> TrainResult:
    """Train with `cfg`, or continue the run in `resume` exactly where it stopped.

    Under torchrun every process calls this; rank 0 alone writes the run directory.
    """
    check_trainable(validate(cfg))
    ctx, device = init_distributed(cfg)
    apply_process_defaults(device)
    finished = False
    try:
        result = _train(cfg, ctx, device, resume=resume, dry_run=dry_run, progress=progress and ctx.is_main,
                        log=log if ctx.is_main else (lambda *a, **k: None))
        finished = True
        return result
    finally:
        if ctx.enabled:
            shutdown_distributed(finished=finished)


def _train(cfg: Config, ctx: DistContext, device: torch.device, *, resume: str | Path | None, dry_run: bool,
           progress: bool, log: Any) -> TrainResult:
    # Resume training state.
    state: dict[str, Any] | None = None
    if resume is not None:
        run_dir = Path(resume)
        state = load_training_state(run_dir / "checkpoints" / "latest.pt")
    # Construct networks, optimisers and data.
    seed_everything(cfg.train.seed)  # the same initial weights in every process
    trainer = build_trainer(cfg, device, ctx)
    if ctx.rank:
        seed_everything(cfg.train.seed + 7919 * ctx.rank)  # but each its own dropout masks
    dataset = trainer.objective.make_dataset("train", train=True)
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
    trained_seconds = 0.0  # time inside train_step, for train.max_seconds
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
        trained_seconds = float(state.get("trained_seconds", 0.0))
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
                "log_sums": sums, "trained_seconds": trained_seconds, "config": json.dumps(cfg.to_dict())})
            trainer.save_model(run_dir / "model", at_step)
        last_good_step = at_step

    def report(at_step: int | None) -> None:
        """Sample grid (at `at_step`) and index.html. Nothing trained depends on them: a failure here is a
        warning, after the checkpoint and the model are on disk."""
        try:
            if at_step is not None:
                rows = trainer.sample_rows(sample_batch)
                image_grid(rows).save(run_dir / "samples" / f"step_{at_step:08d}.png")
            write_run_index(run_dir)
        except Exception as exc:  # any reporting error: the run goes on, or ends saved
            message = f"warning: the run report of step {at_step} could not be written ({type(exc).__name__}: " \
                      f"{exc}); training continues, checkpoints and the model are not affected"
            log(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    # Train.
    workers = resolve_num_workers(cfg.data.num_workers)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, generator=torch.Generator())  # keeps the global RNG untouched
    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="it", dynamic_ncols=True,
               file=sys.stderr, mininterval=0.5)
    interrupted = time_up = False
    window_start = time.perf_counter()
    window_steps = 0
    with _StopFlag() as stop:
        while step < total_steps and not interrupted and not time_up:
            epoch, position = divmod(step, steps_per_epoch)
            batches.set_epoch(epoch, position)
            for batch in loader:
                started = time.perf_counter()
                losses = trainer.train_step(batch)
                trained_seconds += time.perf_counter() - started
                step += 1
                window_steps += 1
                bar.update(1)
                for k, v in losses.items():
                    nonfinite |= ~torch.isfinite(v)
                    sums[k] = sums.get(k, 0.0) + v  # stays a device tensor until the log interval
                if step % steps_per_epoch == 0:
                    trainer.end_epoch(step // steps_per_epoch)
                at_log = step % cfg.train.log_every == 0 or step == total_steps
                if cfg.train.max_seconds > 0:  # (step times without a device sync: an estimate on GPUs)
                    time_up = cfg.train.max_seconds <= trained_seconds
                    if ctx.enabled:  # processes agree at log steps, so that they all stop at the same step
                        time_up = at_log and any_rank(torch.tensor(time_up, device=device), ctx)
                    at_log = at_log or time_up
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
                if not ctx.enabled:
                    interrupted = stop.requested
                elif at_log:  # processes agree at log steps: Ctrl-C reaches them at different steps
                    interrupted = any_rank(torch.tensor(stop.requested, device=device), ctx)
                end = step >= total_steps or interrupted or time_up
                if step % cfg.train.checkpoint_every == 0 or end:
                    checkpoint(step)  # before the report, so that a reporting error cannot cost the run
                if ctx.is_main and (step % cfg.train.sample_every == 0 or end):
                    report(step)
                if end:
                    break
    bar.close()
    if time_up:
        log(f"stopped at step {step}: train.max_seconds={cfg.train.max_seconds:g} reached; state saved")
    if writer is not None:
        writer.close()
    if ctx.is_main:
        report(None)
    if interrupted:
        log(f"interrupted at step {step}; state saved. Continue with: pix2pix train --resume {run_dir}")
    return TrainResult(run_dir, step, interrupted)


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config of an existing run (for --resume)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist: --resume needs a run directory made by `pix2pix train`.")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # unreadable, or not JSON
        raise ConfigError(f"{path} is not a readable JSON config ({exc}): restore the file `pix2pix train` wrote "
                          "there, or start a new run.") from None
    return config_from_dict(values, source=str(path))


def _append_stats(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def _truncate_stats(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint being resumed (they will be logged again)."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        write_text(path, "".join(ln + "\n" for ln in lines))


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: logging to stats.jsonl only
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
