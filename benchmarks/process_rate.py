"""Whole-process training rate: the real `pix2pix train` loop against the in-memory step, in the same run.

    python benchmarks/process_rate.py --datasets facades,cityscapes --out benchmarks/results_process.md
        [--loader loop|prefetch] [--workers N] [--steps 40] [--hd-steps 10] [--inmem 6] [--hd-inmem 3]

facades: the `facades` preset (unet_256 + 70x70 PatchGAN, 256x256, batch 1, labels -> photo, BtoA)
on ../shared/data/facades (400 JPEG A|B pairs, jitter 286 -> 256 and flips). cityscapes: the
`pix2pixhd_cityscapes_512` preset scaled to 512x256 (load_size 512, crop_size 256: global G, 2-scale
D, feature matching, VGG19 loss with random weights, `loss.vgg_random=true`) on
../shared/data/cityscapes_samples (8 full-resolution label / instance / photo triples).

`pix2pix.training.trainer.train` runs as `pix2pix train` runs it (run directory, stats.jsonl, sample
grids, checkpoints, the model folder), with the trainer's `train_step` wrapped to take the time at
each call. One loop iteration is the time from one `train_step` call to the next: the step, the
loader handing over the next batch, and whatever the loop did between (logging, samples,
checkpoints). In the same process, before every `--inmem-every`-th timed iteration (default: every
other one), the wrapper also runs `--inmem` extra steps on the batch it was given (the in-memory
rate: no loading, no logging) before the loop goes on: the two alternate, so that both are measured
on the same machine state (a shared machine's load drifts by more than the difference looked for).

The log, sample and checkpoint intervals are scaled down (stated in the report) so that each event
happens a few times in a short run: the event's cost is the extra time of the iterations it falls
in over the median plain iteration. The report gives (a) the rate at these scaled intervals as
measured, (b) the steady-state rate (median iteration, events aside) and (c) the rate projected to
the default intervals (log 100, samples 1000, checkpoints 2000): the median iteration plus each
event's cost divided by its default interval. Iterations during which other processes used over 5 %
of a CPU (from /proc/stat; the loop's own threads and worker processes count as its own) are left out
of the medians, as in benchmark.py.

--loader loop runs the loop exactly as the library has it; --loader prefetch wraps its DataLoader in
`pix2pix.training.prefetch.Prefetcher` (to measure it where the loop does not prefetch itself).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as bm  # noqa: E402  (the machine description and the quiet-step meter)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PIX2PIX_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_INTERVALS = {"log_every": 100, "sample_every": 1000, "checkpoint_every": 2000}
EVENTS = (("log", "log_every"), ("samples", "sample_every"), ("checkpoint", "checkpoint_every"))


def dataset_config(name: str, runs_dir: Path, steps: int, warmup: int, device: str) -> tuple[Any, dict[str, int]]:
    """(config, scaled intervals) for one dataset; the run is warmup + steps + 1 train_step calls."""
    from pix2pix.config import validate
    from pix2pix.presets import get_preset

    if name == "facades":
        cfg = get_preset("facades")
        cfg.data.root = str(SHARED / "facades")
        intervals = {"log_every": 5, "sample_every": 15, "checkpoint_every": 20}
    elif name == "cityscapes":
        cfg = get_preset("pix2pixhd_cityscapes_512")
        cfg.data.root = str(SHARED / "cityscapes_samples")
        cfg.data.load_size, cfg.data.crop_size = 512, 256  # 512x256 frames
        cfg.loss.vgg_random = True  # no ImageNet VGG19 file here: random features, the same work
        intervals = {"log_every": 2, "sample_every": 5, "checkpoint_every": 7}
    else:
        raise SystemExit(f"unknown dataset '{name}': facades or cityscapes")
    if not Path(cfg.data.root).is_dir():
        raise SystemExit(f"{cfg.data.root} not found: the shared data folder (../shared/data or PIX2PIX_SHARED_DATA)")
    for key, value in intervals.items():
        setattr(cfg.train, key, value)
    cfg.train.max_steps = warmup + steps + 1
    cfg.train.runs_dir = str(runs_dir)
    cfg.train.name = f"process-rate-{name}"
    cfg.train.device = device
    cfg.train.tensorboard = False
    validate(cfg)
    return cfg, intervals


class Probe:
    """Wraps a trainer's train_step: loop-iteration times, and in-memory step blocks at chosen calls."""

    def __init__(self, device: torch.device, warmup: int, steps: int, inmem: int, every: int = 2) -> None:
        self.device, self.warmup, self.steps, self.inmem = device, warmup, steps, inmem
        self.blocks_at = set(range(warmup, warmup + steps + 1, every))  # in-memory steps between loop iterations
        self.calls = 0
        self.iterations: list[dict[str, float]] = []  # call index, seconds, others' CPU seconds
        self.inmem_times: list[float] = []
        self.inmem_others: list[float] = []
        self.step_times: list[float] = []  # the train_step calls of the loop themselves
        self._start: tuple[float, float, float] | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def attach(self, trainer: Any) -> None:
        step = trainer.train_step

        def timed_step(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
            c = self.calls
            self._sync()
            if self._start is not None:
                t0, busy0, own0 = self._start
                t1, busy1, own1 = time.perf_counter(), bm._machine_busy_s(), bm._own_cpu_s()
                others = max(0.0, (busy1 - busy0) - (own1 - own0)) if busy0 >= 0 else 0.0
                self.iterations.append({"call": c - 1, "s": t1 - t0, "others": others})
                self._start = None
            if c in self.blocks_at:
                for _ in range(self.inmem):
                    with bm.OthersMeter() as meter:
                        t0 = time.perf_counter()
                        step(batch)
                        self._sync()
                        self.inmem_times.append(time.perf_counter() - t0)
                    self.inmem_others.append(meter.others_s)
            if self.warmup <= c < self.warmup + self.steps:
                self._start = (time.perf_counter(), bm._machine_busy_s(), bm._own_cpu_s())
            t0 = time.perf_counter()
            out = step(batch)
            if self.warmup <= c < self.warmup + self.steps:
                self.step_times.append(time.perf_counter() - t0)
            self.calls += 1
            return out

        trainer.train_step = timed_step


def run_one(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from pix2pix.runtime import resolve_device
    from pix2pix.training import trainer as trainer_mod

    hd = name == "cityscapes"
    steps, inmem = (args.hd_steps, args.hd_inmem) if hd else (args.steps, args.inmem)
    warmup = args.hd_warmup if hd else args.warmup
    cfg, intervals = dataset_config(name, work / "runs", steps, warmup, args.device)
    if args.workers >= 0:
        cfg.data.num_workers = args.workers
    device = resolve_device(cfg.train.device)
    probe = Probe(device, warmup, steps, inmem, args.inmem_every)
    build, loader_cls = trainer_mod.build_trainer, trainer_mod.DataLoader

    def build_and_probe(*a: Any, **k: Any) -> Any:
        trainer = build(*a, **k)
        probe.attach(trainer)
        return trainer

    def prefetching_loader(*a: Any, **k: Any) -> Any:
        from pix2pix.training.prefetch import Prefetcher

        return Prefetcher(loader_cls(*a, **k), device)

    trainer_mod.build_trainer = build_and_probe
    if args.loader == "prefetch":
        trainer_mod.DataLoader = prefetching_loader
    t0 = time.perf_counter()
    try:
        result = trainer_mod.train(cfg, progress=False, log=lambda *a, **k: None)
    finally:
        trainer_mod.build_trainer, trainer_mod.DataLoader = build, loader_cls
    wall = time.perf_counter() - t0
    return summarise(name, cfg, intervals, probe, args, wall, result.run_dir)


def _quiet(times: list[float], others: list[float]) -> tuple[list[float], int]:
    return bm.quiet_times(times, others)


def summarise(name: str, cfg: Any, intervals: dict[str, int], probe: Probe, args: argparse.Namespace, wall: float,
              run_dir: Path) -> dict[str, Any]:
    its = probe.iterations
    steps_done = [it["call"] + 1 for it in its]  # the loop's step counter after that iteration's train_step
    kinds = []
    for s in steps_done:
        kinds.append(tuple(event for event, key in EVENTS if s % intervals[key] == 0))
    times = [it["s"] for it in its]
    others = [it["others"] for it in its]
    quiet = [o <= 0.05 * t + 1.0 / bm._CLK_TCK for t, o in zip(times, others, strict=True)]
    plain = [t for t, k, q in zip(times, kinds, quiet, strict=True) if not k and q] or \
        [t for t, k in zip(times, kinds, strict=True) if not k]
    plain_median = statistics.median(plain)
    inmem, n_inmem_quiet = _quiet(probe.inmem_times, probe.inmem_others)
    inmem_median = statistics.median(inmem)
    # each event's cost: its iterations over the median of those with one event fewer
    costs: dict[str, float] = {}
    by_kind: dict[tuple[str, ...], list[float]] = {}
    for t, k in zip(times, kinds, strict=True):
        by_kind.setdefault(k, []).append(t)
    log_only = by_kind.get(("log",), [])
    log_cost = statistics.median(log_only) - plain_median if log_only else 0.0
    costs["log"] = max(0.0, log_cost)
    for event in ("samples", "checkpoint"):
        with_event = [t - (costs["log"] if "log" in k else 0.0) - sum(costs.get(e, 0.0) for e in k
                                                                        if e not in ("log", event))
                      for t, k in zip(times, kinds, strict=True) if event in k]
        costs[event] = max(0.0, statistics.mean(with_event) - plain_median) if with_event else float("nan")
    projected = plain_median + sum(costs[event] / DEFAULT_INTERVALS[key] for event, key in EVENTS
                                   if costs[event] == costs[event])
    w, h = bm.frame_size(cfg) if cfg.model.family == "pix2pixhd" else (cfg.data.crop_size, cfg.data.crop_size)
    from pix2pix.runtime import resolve_num_workers

    return {
        "dataset": name, "preset": cfg.preset, "size": f"{w}x{h}", "batch": cfg.train.batch_size,
        "workers": resolve_num_workers(cfg.data.num_workers), "loader": args.loader, "intervals": intervals,
        "iterations": len(its), "quiet_iterations": sum(quiet), "plain_iterations": len(plain),
        "inmem_steps": len(probe.inmem_times), "inmem_quiet": n_inmem_quiet,
        "inmem_median_s": inmem_median, "loop_step_median_s": statistics.median(probe.step_times),
        "iteration_median_s": plain_median, "iteration_mean_s": statistics.mean(times),
        "event_cost_s": costs, "projected_default_s": projected,
        "ratio_scaled": inmem_median / statistics.mean(times), "ratio_steady": inmem_median / plain_median,
        "ratio_default": inmem_median / projected, "wall_s": wall, "run_dir": str(run_dir),
        "raw": {"iterations": its, "kinds": kinds, "inmem": probe.inmem_times, "inmem_others": probe.inmem_others},
    }


def format_report(rows: list[dict[str, Any]], info: dict[str, str], argv: list[str], started: str) -> str:
    lines = [
        "# Whole-process training rate", "",
        f"- command: `python benchmarks/process_rate.py {' '.join(argv)}`",
        f"- date: {started}",
        f"- machine: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info.get('cpu_flags', '?')}), "
        f"{info.get('memory_gib', '?')} GiB, torch threads {info['torch_threads']}"
        + (f", GPU {info['gpu']}" if "gpu" in info else ""),
        f"- torch {info['torch']}, Python {info['python']}; load average at start "
        f"{info.get('load_average_at_start', '?')}", "",
        "| dataset | preset, size x batch | loader | in-memory step (median, quiet/all) | loop iteration median "
        "(quiet plain / all) | loop mean at the scaled intervals | rate vs in-memory: scaled / steady / default "
        "intervals | log / samples / checkpoint cost | scaled intervals (log, samples, ckpt) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["event_cost_s"]
        iv = r["intervals"]
        loader = f"{r['loader']}, {r['workers']} worker process(es)"
        lines.append(
            f"| {r['dataset']} | {r['preset']}, {r['size']} x {r['batch']} | {loader} | "
            f"{r['inmem_median_s']:.3f} s ({r['inmem_quiet']}/{r['inmem_steps']}) | "
            f"{r['iteration_median_s']:.3f} s ({r['plain_iterations']} / {r['iterations']}) | "
            f"{r['iteration_mean_s']:.3f} s | {r['ratio_scaled']:.3f} / **{r['ratio_steady']:.3f}** / "
            f"**{r['ratio_default']:.3f}** | {c['log'] * 1e3:.0f} ms / {c['samples']:.2f} s / "
            f"{c['checkpoint']:.2f} s | "
            f"{iv['log_every']}, {iv['sample_every']}, {iv['checkpoint_every']} |")
    lines += [
        "",
        "Rate vs in-memory = in-memory step median / loop iteration time: *scaled* over every timed iteration "
        "at the scaled intervals (each event far more often than by default), *steady* with the median "
        "iteration that had no event, *default* with each event's measured cost spread over its default "
        "interval (log 100, samples 1000, checkpoints 2000 steps). The target is at least 0.95. "
        "In-memory steps: the same trainer's train_step on the batch in hand, run inside the loop between its "
        "iterations (alternating with them). Costs: median extra time of the iterations with a log line; mean extra "
        "time of those with a sample grid or a checkpoint (the training state, fsynced, and the model folder).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="facades,cityscapes")
    p.add_argument("--loader", choices=("loop", "prefetch"), default="loop")
    p.add_argument("--workers", type=int, default=-1, help="data.num_workers (default: the config's, -1 = auto)")
    p.add_argument("--steps", type=int, default=40, help="timed loop iterations, facades")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--inmem", type=int, default=1, help="in-memory steps per block, facades")
    p.add_argument("--inmem-every", type=int, default=2,
                   help="a block of in-memory steps before every Nth loop iteration (default 2: they alternate)")
    p.add_argument("--hd-steps", type=int, default=10, help="timed loop iterations, cityscapes")
    p.add_argument("--hd-warmup", type=int, default=2)
    p.add_argument("--hd-inmem", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results_process.md")
    p.add_argument("--json", default="")
    p.add_argument("--work", default="", help="folder for the runs (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = bm.machine_info(args.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="process-rate-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        for name in [s.strip() for s in args.datasets.split(",") if s.strip()]:
            row = run_one(name, args, work)
            print(f"[{name}] in-memory {row['inmem_median_s']:.3f} s, loop {row['iteration_median_s']:.3f} s "
                  f"(mean {row['iteration_mean_s']:.3f}), ratios {row['ratio_scaled']:.3f} / {row['ratio_steady']:.3f}"
                  f" / {row['ratio_default']:.3f}", file=sys.stderr, flush=True)
            rows.append(row)
    report = format_report(rows, info, argv, started)
    print(report)
    if args.out:
        Path(args.out).write_text(report, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "argv": argv, "started": started, "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
