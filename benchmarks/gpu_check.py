"""The sections of benchmarks/gpu_check.sh, one process each, and the report they make together.

    python benchmarks/gpu_check.py SECTION --work DIR [--dry-run]     # writes DIR/SECTION.json
    python benchmarks/gpu_check.py report --work DIR --out benchmarks/results_gpu.md [--dry-run] [--command ...]

Sections (gpu_check.sh runs them in this order, each under its own time limit):

  env        the machine: GPU, driver, torch, CUDA, cuDNN, Python
  tests      the CUDA tests: pytest -m cuda tests/test_gpu.py (both families' steps against the CPU, bf16,
             channels_last, compile, the fast step, the prefetcher, the loop with a resume, translate)
  train_hd   benchmark.py, pix2pixHD global G + 2-scale D + FM + VGG at 1024x512: plain fp32 eager against the
             library default and against bf16 + channels_last + torch.compile (target: >= 3x plain)
  local      benchmark.py, the local enhancer (pix2pixhd_cityscapes_1024, the whole G training) at 2048x1024:
             with and without activation checkpointing, time and torch.cuda.max_memory_allocated
             (target: a configuration within 24 GiB)
  infer      translate throughput (the model, and files to files) and the editor's latency per edit through
             its HTTP API, pix2pixHD's 512p global generator at 1024x512 (target: < 50 ms per edit)
  train_p2p  benchmark.py, pix2pix unet_256 + 70x70 D at 256x256, the same three variants

Each section writes DIR/SECTION.json (its markdown, its targets); `report` assembles whatever exists, so
that a section that failed or ran out of time leaves the others' results in the file. --dry-run runs
every section at tiny sizes on the CPU (torch.compile with dynamo's eager backend): it checks the
script, not the figures.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

SECTIONS = ("env", "tests", "train_hd", "local", "infer", "train_p2p")
TITLES = {
    "env": "Machine",
    "tests": "CUDA tests (`pytest -m cuda tests/test_gpu.py`)",
    "train_hd": "Training step, pix2pixHD global at 1024x512",
    "local": "Training step, local enhancer at 2048x1024: activation checkpointing and memory",
    "infer": "Translate throughput and editor latency at 1024x512",
    "train_p2p": "Training step, pix2pix at 256x256",
}
FAST = "library+bf16+channels_last+compile"
TRAIN_VARIANTS = f"plain,library,{FAST}"
LOCAL_VARIANTS = "library,library+ckpt,library+bf16+ckpt"
SPEED_TARGET, MEMORY_TARGET_GIB, EDIT_TARGET_MS = 3.0, 24.0, 50.0


def _write(work: Path, section: str, markdown: str, targets: list[dict[str, Any]] | None = None,
           **extra: Any) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{section}.json").write_text(json.dumps({"markdown": markdown, "targets": targets or [], **extra},
                                                     indent=1))


# ----------------------------------------------------------------------------------------------- env


def section_env(args: argparse.Namespace) -> None:
    import torch

    info = {"python": f"{platform.python_version()} ({sys.executable})", "torch": torch.__version__,
            "cuda available": str(torch.cuda.is_available()), "cpus": str(os.cpu_count())}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update({"gpu": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
                            f"{props.major}.{props.minor}, {props.multi_processor_count} SMs",
                     "cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version()),
                     "tf32 (cudnn conv / matmul)": f"{torch.backends.cudnn.allow_tf32} / "
                                                   f"{torch.backends.cuda.matmul.allow_tf32}"})
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            if smi.returncode == 0:
                info["driver, max SM clock, power limit"] = smi.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    elif not args.dry_run:
        raise SystemExit("no CUDA device: torch.cuda.is_available() is False (run with --dry-run to check the "
                         "script on the CPU)")
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        info["commit"] = "?"
    md = "\n".join(f"- {k}: {v}" for k, v in info.items())
    _write(args.work, "env", md, info=info)


# ----------------------------------------------------------------------------------------------- tests


def section_tests(args: argparse.Namespace) -> None:
    xml = args.work / "tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", str(REPO / "tests" / "test_gpu.py"), "-q",
           "-p", "no:cacheprovider", f"--junitxml={xml}", "-o", "addopts="]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    rows = []
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = case.get("name", "?")
            outcome, detail = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    detail = (node.get("message") or "").splitlines()[0][:200] if node.get("message") else ""
            counts[outcome] += 1
            rows.append(f"| {name} | {outcome} | {detail.replace('|', '/')} |")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    md = [f"`{' '.join(['python', '-m', 'pytest', '-m', 'cuda', 'tests/test_gpu.py'])}`: {summary or 'no tests ran'} "
          f"(pytest exit status {done.returncode})", ""]
    if rows:
        md += ["| test | outcome | message |", "|---|---|---|", *rows]
    if done.returncode not in (0, 5) and not rows:
        md += ["", "```", done.stdout[-3000:], done.stderr[-3000:], "```"]
    _write(args.work, "tests", "\n".join(md), counts=counts)
    if counts["failed"] or counts["error"]:
        raise SystemExit(1)


# ----------------------------------------------------------------------------------------------- training


def _benchmark(args: argparse.Namespace, name: str, presets: str, variants: str, steps: int, warmup: int,
               extra: list[str]) -> dict[str, Any]:
    raw = args.work / f"{name}_raw.json"
    cmd = [sys.executable, str(HERE / "benchmark.py"), "--presets", presets, "--variants", variants,
           "--steps", str(steps), "--warmup", str(warmup), "--device", "cpu" if args.dry_run else "cuda",
           "--json", str(raw), "--out", str(args.work / f"{name}_benchmark.md"), *extra]
    if args.dry_run:  # quick: no FLOP counting, dynamo's capture without code generation
        cmd += ["--compile-backend", "eager", "--flops", "none", "--max-slowdown", "0", "--infer-iters", "1"]
    print(" ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=REPO)
    if done.returncode != 0 or not raw.is_file():
        raise SystemExit(f"benchmark.py exited with {done.returncode}")
    return json.loads(raw.read_text())


def _rows_markdown(saved: dict[str, Any], variants: str) -> str:
    import benchmark as bm

    rows = saved["runs"]
    cols = [v.strip() for v in variants.split(",")]
    return "\n".join([f"`python benchmarks/benchmark.py {' '.join(saved['argv'])}`", "",
                      bm.format_summary(rows, cols), "", bm.format_table(rows)])


def _median(r: dict[str, Any]) -> float:
    import benchmark as bm

    return bm._median(r)


def section_train(args: argparse.Namespace, name: str) -> None:
    hd = name == "train_hd"
    if args.dry_run:
        presets, steps, warmup = ("tiny_hd" if hd else "tiny"), 2, 2
    else:
        presets, steps, warmup = ("hd_1024" if hd else "reference"), (10 if hd else 20), 3
    saved = _benchmark(args, name, presets, TRAIN_VARIANTS, steps, warmup, ["--infer-iters", "3"])
    rows = {r["variant"]: r for r in saved["runs"] if "error" not in r}
    targets = []
    if hd:
        plain, fast = rows.get("plain"), rows.get(FAST)
        value = _median(plain) / _median(fast) if plain and fast else None
        targets.append({"name": "bf16 + channels_last + compile vs plain fp32 eager, pix2pixHD global step at "
                                 + ("1024x512" if not args.dry_run else "the tiny_hd size (dry run)"),
                        "value": None if value is None else f"{value:.2f}x", "limit": f">= {SPEED_TARGET:g}x",
                        "pass": None if value is None else value >= SPEED_TARGET})
    notes = ("Plain fp32 eager is PyTorch's default on CUDA: cuDNN convolutions may use TF32 "
             "(torch.backends.cudnn.allow_tf32, True by default), matmuls do not. The library default on CUDA "
             "is the same maths as plain (BlockedAdam runs torch's Adam step there; the allocator setting is "
             "CPU-only); pix2pixHD's step does one D pass on the fake fewer. Losses vs plain: after the same "
             "seed and steps (bf16 differs by its rounding).")
    _write(args.work, name, _rows_markdown(saved, TRAIN_VARIANTS) + "\n\n" + notes, targets)
    _fail_on_errors(saved)


def _fail_on_errors(saved: dict[str, Any]) -> None:
    errors = [f"{r['variant']}: {r['error']}" for r in saved["runs"] if "error" in r]
    if errors:
        raise SystemExit("variants that did not run: " + "; ".join(errors))


def section_local(args: argparse.Namespace) -> None:
    preset = "tiny_hd_local" if args.dry_run else "hd_local_2048"
    steps, warmup = (2, 1) if args.dry_run else (3, 2)
    saved = _benchmark(args, "local", preset, LOCAL_VARIANTS, steps, warmup, ["--flops", "none", "--infer-iters", "3"])
    lines = ["| variant | step median (s) | torch.cuda.max_memory_allocated | within 24 GiB |", "|---|---|---|---|"]
    best = None
    for r in saved["runs"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['error']} | | |")
            continue
        mib = r.get("max_allocated_mib")
        mib = mib if mib is not None else r["peak_mib"]  # CPU (dry run): the resident-memory peak
        ok = mib / 1024 <= MEMORY_TARGET_GIB
        lines.append(f"| {r['variant']} | {_median(r):.3f} | {mib / 1024:.2f} GiB | {'yes' if ok else 'no'} |")
        if best is None or mib < best[1]:
            best = (r["variant"], mib)
    target = {"name": "local enhancer training step at " + ("2048x1024" if not args.dry_run else
                                                            "the tiny_hd_local size (dry run)")
                      + ", peak torch.cuda.max_memory_allocated of the best configuration",
              "value": None if best is None else f"{best[1] / 1024:.2f} GiB ({best[0]})",
              "limit": f"<= {MEMORY_TARGET_GIB:g} GiB", "pass": None if best is None else
              best[1] / 1024 <= MEMORY_TARGET_GIB}
    md = "\n".join(lines) + "\n\n" + _rows_markdown(saved, LOCAL_VARIANTS)
    _write(args.work, "local", md, [target])
    _fail_on_errors(saved)


# ----------------------------------------------------------------------------------------------- inference


def _hd_model(work: Path, device: Any, dry_run: bool) -> Path:
    """pix2pixHD's 512p global generator (Cityscapes' 35 classes + boundaries), untrained, saved as training
    saves it (tiny in a dry run): the time does not depend on the weights."""
    import torch

    from pix2pix.presets import get_preset
    from pix2pix.runtime import seed_everything
    from pix2pix.training.trainer import build_trainer

    cfg = get_preset("pix2pixhd_cityscapes_512")
    cfg.loss.vgg_random, cfg.loss.lambda_vgg = True, 0.0
    cfg.loss.lambda_feat = cfg.loss.lambda_gan = 0.0  # no D, no VGG: only G is saved
    cfg.train.device = str(device)
    if dry_run:
        cfg.model.ngf = 4
        cfg.model.generator_kwargs = {"n_downsample": 2, "n_blocks": 1}
    seed_everything(0)
    trainer = build_trainer(cfg, torch.device(device))
    model = work / "hd_model"
    trainer.save_model(model, 0)
    del trainer
    return model


def _sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def section_infer(args: argparse.Namespace) -> None:
    import editor_latency as el
    import numpy as np
    import torch
    from PIL import Image

    from pix2pix.editor import EditorModel, create_app
    from pix2pix.inference import load_translator
    from pix2pix.web import serve_in_thread

    device = "cpu" if args.dry_run else "cuda"
    w, h = (64, 32) if args.dry_run else (1024, 512)
    reps, edits, files = (3, 4, 3) if args.dry_run else (30, 24, 16)
    model_dir = _hd_model(args.work, device, args.dry_run)
    translator = load_translator(model_dir, device=device)
    label_np, inst_np = el.cityscapes_scene(w, h)
    rows = []
    for batch in (1, 4):
        label = torch.from_numpy(label_np.astype(np.int64))[None, None].repeat(batch, 1, 1, 1).to(device)
        inst = torch.from_numpy(inst_np.astype(np.int64))[None, None].repeat(batch, 1, 1, 1).to(device)
        with torch.inference_mode():
            for _ in range(3):
                translator.translate_tensor(label, inst)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(reps):
                translator.translate_tensor(label, inst)
            _sync(device)
        per = (time.perf_counter() - t0) / reps
        rows.append(f"| translate_tensor (label + instance map in, photo out, on the device) | {batch} | "
                    f"{per * 1e3:.1f} ms | {batch / per:.1f} |")
    # files to files: PNG label and instance maps in, PNG photos out (decoding, encoding included)
    folder = args.work / "translate" / "test_label"
    (folder.parent / "test_inst").mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        name = f"scene_{i:03d}.png"
        Image.fromarray(np.roll(label_np, 7 * i, axis=1)).save(folder / name)
        Image.fromarray(np.roll(inst_np, 7 * i, axis=1)).save(folder.parent / "test_inst" / name)
        paths.append(folder / name)
    translator.translate_files(paths[:2], args.work / "translate" / "warm")
    _sync(device)
    t0 = time.perf_counter()
    written = translator.translate_files(paths, args.work / "translate" / "out")
    _sync(device)
    per = (time.perf_counter() - t0) / len(paths)
    if len(written) != len(paths):
        raise SystemExit(f"translate_files wrote {len(written)} of {len(paths)} images")
    rows.append(f"| translate_files ({files} PNG label + instance maps -> PNG photos) | 1 | {per * 1e3:.1f} ms | "
                f"{1 / per:.1f} |")
    # the editor: one operation at a time through the HTTP API on loopback
    del translator
    model = EditorModel.load(model_dir, device=device)
    srv = serve_in_thread(create_app(model))
    try:
        r = el.measure(srv.url, {"source": "upload", "label": el._png_b64(label_np), "instance": el._png_b64(inst_np)},
                       edits, thing=26, other_thing=24, styles=False)
    finally:
        srv.shutdown()
    edit_ms = statistics.median(r["round_trip"]) * 1e3
    md = ["| what | batch | time per batch | images / s |", "|---|---|---|---|", *rows, "",
          f"Editor ({w}x{h}, {len(r['round_trip'])} edits after 4 warm-up ones: strokes, relabels, fills, undos):", "",
          el.table([("pix2pixHD global G ngf 64, Cityscapes 35 classes + boundaries, untrained"
                     + (" (tiny in the dry run)" if args.dry_run else ""), device, r)])]
    target = {"name": f"editor: edit -> new image through the HTTP API at {w}x{h}, median",
              "value": f"{edit_ms:.1f} ms", "limit": f"< {EDIT_TARGET_MS:g} ms", "pass": edit_ms < EDIT_TARGET_MS}
    _write(args.work, "infer", "\n".join(md), [target])


# ----------------------------------------------------------------------------------------------- report


def _status(work: Path, section: str) -> tuple[str, str]:
    """(status text, elapsed) from DIR/SECTION.status ("rc seconds limit"), written by gpu_check.sh."""
    path = work / f"{section}.status"
    if not path.is_file():
        return "not run", "-"
    rc, seconds, limit = (path.read_text().split() + ["?", "?", "?"])[:3]
    if rc == "0":
        return "ok", f"{seconds} s"
    if rc in ("124", "137"):
        return f"**timed out** (limit {limit} s)", f"{seconds} s"
    return f"**failed** (exit status {rc})", f"{seconds} s"


def _log_tail(work: Path, section: str, lines: int = 25) -> str:
    path = work / f"{section}.log"
    if not path.is_file():
        return ""
    tail = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()][-lines:]
    return "\n".join(tail)


def build_report(work: Path, dry_run: bool, command: str) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results = {s: json.loads((work / f"{s}.json").read_text()) for s in SECTIONS if (work / f"{s}.json").is_file()}
    lines = ["# GPU check", "",
             f"- command: `{command}`", f"- date: {now}",
             "- mode: " + ("**dry run**: every section at tiny sizes on the CPU (torch.compile with the eager "
                           "backend); it checks the script, the figures mean nothing" if dry_run else "GPU run"),
             ""]
    if "env" in results:
        lines += [results["env"]["markdown"], ""]
    lines += ["## Targets", "", "| target | measured | limit | result |", "|---|---|---|---|"]
    targets = [t for s in SECTIONS if s in results for t in results[s]["targets"]]
    expected = {"train_hd": "bf16 + channels_last + compile >= 3x plain fp32 eager at 1024x512",
                "local": "local enhancer 2048x1024 step within 24 GiB", "infer": "editor < 50 ms per edit at 1024x512"}
    for section, text in expected.items():
        if section not in results or not results[section]["targets"]:
            lines.append(f"| {text} | not measured ({_status(work, section)[0]}) | | - |")
    for t in targets:
        verdict = "-" if t["pass"] is None else ("PASS" if t["pass"] else "**FAIL**")
        lines.append(f"| {t['name']} | {t['value'] or '-'} | {t['limit']} | {verdict} |")
    lines += ["", "## Sections", "", "| section | status | time |", "|---|---|---|"]
    for s in SECTIONS:
        status, elapsed = _status(work, s)
        lines.append(f"| {s}: {TITLES[s]} | {status} | {elapsed} |")
    for i, s in enumerate(SECTIONS[1:], 1):
        lines += ["", f"## {i}. {TITLES[s]}", ""]
        status, _ = _status(work, s)
        if s in results:
            lines.append(results[s]["markdown"])
        if status != "ok":
            tail = _log_tail(work, s)
            lines += ["", f"Status: {status}." + (" Last lines of its log:" if tail else "")]
            if tail:
                lines += ["", "```", tail, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", choices=(*SECTIONS, "report"))
    p.add_argument("--work", type=Path, required=True, help="folder for the sections' results and logs")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--out", default="benchmarks/results_gpu.md", help="report: the markdown file to write")
    p.add_argument("--command", default="bash benchmarks/gpu_check.sh", help="report: the command line to show")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.section == "report":
        report = build_report(args.work, args.dry_run, args.command)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")
        return 0
    if args.dry_run:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU, even on a machine with a GPU
    {"env": section_env, "tests": section_tests, "train_hd": lambda a: section_train(a, "train_hd"),
     "train_p2p": lambda a: section_train(a, "train_p2p"), "local": section_local,
     "infer": section_infer}[args.section](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
