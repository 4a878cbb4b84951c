"""benchmarks/process_rate.py's arithmetic: event costs from the loop's iteration times, and the rates from them."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("pix2pix_process_rate", ROOT / "benchmarks" / "process_rate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pr = _load()


def test_event_costs_and_rates_from_iteration_times():
    from pix2pix.presets import get_preset

    cfg = get_preset("facades")
    intervals = {"log_every": 5, "sample_every": 15, "checkpoint_every": 20}
    probe = pr.Probe(torch.device("cpu"), warmup=3, steps=40, inmem=1)
    for call in range(3, 43):  # iteration `call` ends with the loop's step call + 1 and that step's events
        step = call + 1
        t = 1.0 + 0.01 * (step % 5 == 0) + 0.5 * (step % 15 == 0) + 2.0 * (step % 20 == 0)
        probe.iterations.append({"call": call, "s": t, "others": 0.0})
        probe.step_times.append(0.9)
    probe.inmem_times, probe.inmem_others = [0.95] * 12, [0.0] * 12
    args = argparse.Namespace(loader="loop")
    row = pr.summarise("facades", cfg, intervals, probe, args, wall=60.0, run_dir=Path("runs/x"))
    costs = row["event_cost_s"]
    assert costs["log"] == pytest.approx(0.01)
    assert costs["samples"] == pytest.approx(0.5)
    assert costs["checkpoint"] == pytest.approx(2.0)
    assert row["iteration_median_s"] == pytest.approx(1.0)
    assert row["ratio_steady"] == pytest.approx(0.95)
    projected = 1.0 + 0.01 / 100 + 0.5 / 1000 + 2.0 / 2000
    assert row["ratio_default"] == pytest.approx(0.95 / projected)
    mean = sum(it["s"] for it in probe.iterations) / 40
    assert row["ratio_scaled"] == pytest.approx(0.95 / mean) and row["ratio_scaled"] < row["ratio_default"]
    report = pr.format_report([row], {"cpu": "x", "logical_cpus": "2", "torch_threads": "2", "torch": "2",
                                      "python": "3"}, ["--datasets", "facades"], "now")
    assert "| facades | facades, 256x256 x 1 |" in report and "**0.950**" in report


def test_noisy_iterations_are_left_out_of_the_median():
    from pix2pix.presets import get_preset

    probe = pr.Probe(torch.device("cpu"), warmup=0, steps=6, inmem=1)
    for call, (t, others) in enumerate([(1.0, 0.0), (5.0, 3.0), (1.0, 0.0), (1.1, 0.0), (6.0, 4.0), (1.0, 0.0)]):
        probe.iterations.append({"call": call, "s": t, "others": others})
        probe.step_times.append(0.9)
    probe.inmem_times, probe.inmem_others = [0.9, 0.9, 0.9], [0.0, 0.0, 0.0]
    intervals = {"log_every": 100, "sample_every": 1000, "checkpoint_every": 2000}
    row = pr.summarise("facades", get_preset("facades"), intervals, probe, argparse.Namespace(loader="loop"), 1.0,
                       Path("x"))
    assert row["iteration_median_s"] == pytest.approx(1.0) and row["plain_iterations"] == 4


def test_probe_alternates_in_memory_steps_with_the_loops_iterations():
    class Trainer:
        def __init__(self):
            self.calls = []

        def train_step(self, batch):
            self.calls.append(batch)
            return {}

    trainer = Trainer()
    probe = pr.Probe(torch.device("cpu"), warmup=1, steps=4, inmem=1, every=2)
    probe.attach(trainer)
    for call in range(6):  # what the loop does: one train_step per batch
        trainer.train_step(call)
    # extra in-memory steps on the batch in hand before loop calls 1, 3 and 5 (the window is calls 1..4)
    assert trainer.calls == [0, 1, 1, 2, 3, 3, 4, 5, 5]
    assert [it["call"] for it in probe.iterations] == [1, 2, 3, 4] and len(probe.inmem_times) == 3
    assert len(probe.step_times) == 4
