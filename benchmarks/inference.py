"""CPU inference benchmark: eager PyTorch against TorchScript, onnxruntime and OpenVINO exports.

    python benchmarks/inference.py --out benchmarks/inference.md          # the full table (~15 minutes here)
    python benchmarks/inference.py --quick                                # tiny widths: a smoke test of the script

Models (untrained: the time does not depend on the weights): `unet_256` (ngf 64, batch norm, the
pix2pix default) at 256x256, and pix2pixHD's `global` generator (ngf 64, 4 down-samplings, 9
residual blocks, 36 input channels: 35 one-hot Cityscapes labels + the boundary map) at 512x256
and 1024x512 (W x H). Batches 1 and 8. The input is the tensor the eager generator takes (for the
global generator a one-hot label map with its boundary channel), so every row runs the same
network on the same input.

Backends (`--backends`):

  eager          the generator in eval mode, fp32, NCHW, under torch.no_grad: the baseline
  eager_1t       the same with one torch thread: on a machine whose cores are busy with other work,
                 torch's OpenMP threads wait for each other at every operation, and one thread can be
                 faster than two (onnxruntime's and OpenVINO's thread pools let the caller do the work)
  eager_bf16_cl  the same under torch.autocast(bfloat16), model and input channels_last
  torchscript    `pix2pix export --format torchscript`, run by `load_exported`
  onnxruntime    `pix2pix export --format onnx`, onnxruntime's CPU provider
  openvino       `pix2pix export --format openvino`, OpenVINO's CPU plugin in f32
  openvino_bf16  the same IR with INFERENCE_PRECISION_HINT=bf16 (not exact: for reference)

Every exported row goes through the library's export (with its parity check) and runtime wrapper,
as `pix2pix translate --backend` would; its padding is inside the graph (a gather even when no
padding is needed). Each model is exported once and the same graph serves both sizes (dynamic H, W).

Method: for each (model, size, batch) case every backend runs once untimed (the "first call"
column: lazy initialisation, shape-specific planning), and its output is compared with eager
fp32's (max|a - b| / max|b|, the export parity metric). Then timed rounds run the backends in
lockstep, one call each per round, so that the machine's changing load (it is shared) hits every
backend alike, for `--reps` rounds or until the case's share of `--minutes` is spent (at least one
round). Cases above `--lockstep-mpix` (batch x megapixels; 1024x512 batch 8) run one backend at a
time instead (each loaded, warmed up, timed and freed in turn), so that only one runtime's buffers
are held at once. The table gives the median latency, throughput (batch / median) and the spread (min-max
over the rounds); "others" is the CPU time other processes used during the timed calls, in % of
the calls' wall time (100 % = one of the two cores busy elsewhere all along). A case that would
not fit in the remaining time (estimated from batch 1) is skipped and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import gc
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import OthersMeter, machine_info  # noqa: E402  (benchmarks/benchmark.py: one /proc reader)

from pix2pix.export import export_generator, load_exported, relative_difference  # noqa: E402
from pix2pix.registry import create_generator  # noqa: E402

BACKENDS = ("eager", "eager_1t", "eager_bf16_cl", "torchscript", "onnxruntime", "openvino", "openvino_bf16")
EXPORTED = {"torchscript": "torchscript", "onnxruntime": "onnx", "openvino": "openvino", "openvino_bf16": "openvino"}
LABEL_NC = 35


def build_model(name: str, quick: bool) -> tuple[torch.nn.Module, int]:
    torch.manual_seed(0)
    if name == "unet_256":
        net = create_generator("unet_256", 3, 3, ngf=8 if quick else 64)
        channels = 3
    else:
        net = create_generator("global", LABEL_NC + 1, 3, ngf=8 if quick else 64)
        channels = LABEL_NC + 1
    return net.eval(), channels


def make_input(channels: int, batch: int, height: int, width: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if channels == 3:
        return torch.rand(batch, 3, height, width, generator=gen) * 2 - 1
    from pix2pix.data.label_inputs import LabelInputs

    coarse = torch.randint(0, LABEL_NC, (batch, 1, height // 16, width // 16), generator=gen)
    label = coarse.repeat_interleave(16, 2).repeat_interleave(16, 3)
    return LabelInputs(LABEL_NC, True).encode(label, label)


class Backend:
    """One way of running the generator: `__call__(x) -> output`, fp32 out."""

    def __init__(self, name: str, net: torch.nn.Module, folder: Path | None, threads: int) -> None:
        self.name = name
        if name == "eager":
            self.fn = net
        elif name == "eager_1t":
            def one_thread(x: torch.Tensor) -> torch.Tensor:
                torch.set_num_threads(1)
                try:
                    return net(x)
                finally:
                    torch.set_num_threads(threads)

            self.fn = one_thread
        elif name == "eager_bf16_cl":
            cl = copy.deepcopy(net).to(memory_format=torch.channels_last)  # a copy: `to` is in place

            def run(x: torch.Tensor) -> torch.Tensor:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return cl(x.contiguous(memory_format=torch.channels_last)).float()

            self.fn = run
        else:
            assert folder is not None
            backend = "openvino" if name.startswith("openvino") else name
            options = {"INFERENCE_PRECISION_HINT": "bf16"} if name == "openvino_bf16" else None
            self.fn = load_exported(folder, backend, threads=threads, options=options)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _rss_gib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _row(name: str, first: float, out: torch.Tensor, reference: torch.Tensor | None) -> dict[str, Any]:
    rel = relative_difference(out, reference)[1] if reference is not None else 0.0
    return {"backend": name, "first_s": first, "max_rel": rel, "times": [], "others": []}


def _timed(b: Backend, x: torch.Tensor, row: dict[str, Any]) -> None:
    with OthersMeter() as meter:
        t0 = time.perf_counter()
        b(x)
        dt = time.perf_counter() - t0
    row["times"].append(dt)
    row["others"].append(meter.others_s)


def _first(b: Backend, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = b(x)
    return time.perf_counter() - t0, out


def run_lockstep(backends: dict[str, Backend], x: torch.Tensor, reps: int, budget_s: float) -> list[dict[str, Any]]:
    """First calls, then rounds of one timed call per backend until `reps` rounds or the budget is spent."""
    rows: dict[str, dict[str, Any]] = {}
    reference = None
    for name, b in backends.items():
        first, out = _first(b, x)
        reference = out if name == "eager" else reference
        rows[name] = _row(name, first, out, reference)
    start = time.perf_counter()
    rounds = 0
    while rounds < reps:
        for name, b in backends.items():
            _timed(b, x, rows[name])
        rounds += 1
        if (time.perf_counter() - start) / rounds * (rounds + 1) > budget_s:
            break
    return _summarise(rows.values())


def run_sequential(make: dict[str, Any], x: torch.Tensor, reps: int, budget_s: float) -> list[dict[str, Any]]:
    """One backend at a time: load, first call, timed calls within its share of the budget, free."""
    rows = []
    reference = None
    for name, factory in make.items():
        start = time.perf_counter()
        b = factory()
        first, out = _first(b, x)
        reference = out if name == "eager" else reference
        row = _row(name, first, out, reference)
        del out
        share = budget_s / len(make) - (time.perf_counter() - start)
        while len(row["times"]) < reps:
            _timed(b, x, row)
            n = len(row["times"])
            if sum(row["times"]) / n * (n + 1) > share:
                break
        rows.append(row)
        del b
        gc.collect()
    return _summarise(rows)


def _summarise(rows: Any) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        t = r["times"]
        r["median_s"] = statistics.median(t)
        r["min_s"], r["max_s"] = min(t), max(t)
        r["others_pct"] = 100 * sum(r["others"]) / sum(t)
        r["rounds"] = len(t)
        out.append(r)
    return out


def fmt_s(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def render(results: list[dict[str, Any]], skipped: list[str], exports: list[dict[str, Any]], argv: list[str],
           info: dict[str, str], started: str, wall_s: float) -> str:
    lines = ["# Inference on the CPU: eager PyTorch, TorchScript, onnxruntime, OpenVINO", "",
             f"Command: `python benchmarks/inference.py {shlex.join(argv)}`", "",
             f"Date: {started} (UTC), {wall_s / 60:.1f} minutes. Machine: {info.get('cpu', '?')} "
             f"({info.get('cpu_flags', '')}), {info.get('logical_cpus')} logical CPUs shared with other users, "
             f"{info.get('memory_gib', '?')} GiB; torch {info.get('torch')} with {info.get('torch_threads')} "
             f"threads (onnxruntime and OpenVINO: the same count); load average at start "
             f"{info.get('load_average_at_start', '?')}.", "",
             "Latency is the median over the timed rounds (backends in lockstep); the spread is min-max over the "
             "rounds; speed is eager fp32's median latency / the row's; max rel is max|out - eager fp32| / "
             "max|eager fp32| on the benchmark input (exact: below 1e-4); others is the CPU time of other processes "
             "during the row's timed calls, in % of their wall time.", "",
             "| model | size (WxH) | batch | backend | latency | throughput | speed vs eager | spread | first call "
             "| max rel | rounds | others |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        exact = "" if r["max_rel"] < 1e-4 or r["backend"] == "eager" else " (not exact)"
        lines.append(
            f"| {r['model']} | {r['size']} | {r['batch']} | {r['backend']} | {fmt_s(r['median_s'])} | "
            f"{r['batch'] / r['median_s']:.2f} img/s | {r['speed']:.2f}x | {fmt_s(r['min_s'])}-{fmt_s(r['max_s'])} | "
            f"{fmt_s(r['first_s'])} | {r['max_rel']:.1e}{exact} | {r['rounds']} | {r['others_pct']:.0f} % |")
    if skipped:
        lines += ["", "Skipped (time cap): " + "; ".join(skipped) + "."]
    if exports:
        lines += ["", "Exports (`export_generator`, parity check included):", "",
                  "| model | format | time | size on disk | parity (max rel, two sizes) |", "|---|---|---|---|---|"]
        for e in exports:
            lines.append(f"| {e['model']} | {e['format']} | {e['seconds']:.1f} s | {e['mib']:.0f} MiB | "
                         f"{', '.join(f'{c:.1e}' for c in e['parity'])} |")
    best = {}
    for r in results:
        key = (r["model"], r["size"], r["batch"])
        if r["backend"] != "eager" and (key not in best or r["speed"] > best[key]["speed"]):
            best[key] = r
    if best:
        lines += ["", "Best backend per case (latency as a fraction of eager fp32's; the target is at most 0.6):",
                  ""]
        for (model, size, batch), r in best.items():
            exact = [x for x in results if (x["model"], x["size"], x["batch"]) == (model, size, batch)
                     and x["backend"] != "eager" and x["max_rel"] < 1e-4]
            best_exact = max(exact, key=lambda x: x["speed"]) if exact else None
            text = f"- {model} {size} batch {batch}: {r['backend']} {1 / r['speed']:.2f}"
            if best_exact is not None and best_exact is not r:
                text += f"; best exact: {best_exact['backend']} {1 / best_exact['speed']:.2f}"
            lines.append(text)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="unet_256@256x256,global@512x256,global@1024x512",
                   help="MODEL@WxH,... (models: unet_256, global)")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--reps", type=int, default=5, help="timed rounds per case at most")
    p.add_argument("--minutes", type=float, default=15.0,
                   help="time cap of the whole run (a case that starts runs its first calls and one round)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lockstep-mpix", type=float, default=2.0,
                   help="cases above batch x megapixels run one backend at a time (memory)")
    p.add_argument("--quick", action="store_true", help="tiny widths (ngf 8): checks the script, times nothing real")
    p.add_argument("--out", help="write the markdown table here too")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    info = machine_info("cpu")
    t_start = time.perf_counter()
    deadline = t_start + args.minutes * 60
    names = [b for b in args.backends.split(",") if b]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or "eager" not in names:
        p.error(f"--backends: choose from {', '.join(BACKENDS)}, eager included (unknown: {unknown})")
    cases: dict[str, list[tuple[int, int]]] = {}
    for item in args.cases.split(","):
        model, _, size = item.partition("@")
        w, _, h = size.partition("x")
        cases.setdefault(model, []).append((int(h), int(w)))
    batches = [int(b) for b in args.batches.split(",")]
    n_cases = sum(len(s) for s in cases.values()) * len(batches)
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    exports: list[dict[str, Any]] = []
    done = 0
    with tempfile.TemporaryDirectory(prefix="pix2pix-bench-") as tmp:
        for model, sizes in cases.items():
            net, channels = build_model(model, args.quick)
            folders: dict[str, Path] = {}
            for fmt in dict.fromkeys(EXPORTED[b] for b in names if b in EXPORTED):
                folder = Path(tmp) / f"{model}-{fmt}"
                t0 = time.perf_counter()
                result = export_generator(net, folder, fmt, log=None)
                mib = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
                exports.append({"model": model, "format": fmt, "seconds": time.perf_counter() - t0, "mib": mib,
                                "parity": [c.max_rel for c in result.checks["generator"]]})
                folders[fmt] = folder
                print(f"exported {model} as {fmt} in {exports[-1]['seconds']:.1f} s", file=sys.stderr)

            def factory(b: str, net: torch.nn.Module = net, folders: dict[str, Path] = folders) -> Any:
                return lambda: Backend(b, net, folders.get(EXPORTED.get(b, "")), args.threads)

            make = {b: factory(b) for b in names}
            loaded: dict[str, Backend] = {}
            for h, w in sizes:
                per_image: float | None = None
                for batch in batches:
                    left = deadline - time.perf_counter()
                    budget = left / max(n_cases - done, 1)
                    label = f"{model} {w}x{h} batch {batch}"
                    if per_image is not None:
                        estimate = per_image * batch * 2  # a first call and one timed call of every backend
                        if estimate > left:
                            skipped.append(f"{label} (estimated {estimate / 60:.0f} min, {left / 60:.0f} min left)")
                            done += 1
                            continue
                        budget = max(budget, estimate)
                    x = make_input(channels, batch, h, w)
                    if batch * h * w / 1e6 > args.lockstep_mpix:
                        loaded.clear()  # free the runtimes' buffers first
                        gc.collect()
                        rows = run_sequential(make, x, args.reps, budget)
                    else:
                        if not loaded:
                            loaded.update((b, f()) for b, f in make.items())
                        rows = run_lockstep(loaded, x, args.reps, budget)
                    base = next(r for r in rows if r["backend"] == "eager")["median_s"]
                    per_image = sum(r["median_s"] for r in rows) / batch
                    for r in rows:
                        r.update(model=model, size=f"{w}x{h}", batch=batch, speed=base / r["median_s"])
                        print(f"{label:32s} {r['backend']:14s} {fmt_s(r['median_s']):>9s} "
                              f"({r['rounds']} rounds, max rel {r['max_rel']:.1e}, others {r['others_pct']:.0f} %, "
                              f"rss {_rss_gib():.1f} GiB)", file=sys.stderr)
                    results += rows
                    done += 1
                    del x
                    gc.collect()
            loaded.clear()
            del make, net
            gc.collect()
    text = render(results, skipped, exports, argv, info, started, time.perf_counter() - t_start)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    os._exit(130)
