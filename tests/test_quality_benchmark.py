"""benchmarks/quality.py end to end at a tiny size: the report's numbers, the plot, re-rendering and resuming.

The measurement: the synthetic world (10 scenes of 32x32, 2 held out as val, 2 test), a 5-level U-Net
with 8 filters, two recipes (reference, lsgan), two seeds, a budget of 4 steps scored at 2 and 4,
and a segmenter trained for 3 steps: numbers without meaning, but every stage of the real harness.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("pix2pix_quality_benchmark", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pix2pix_quality_benchmark", module)
    spec.loader.exec_module(module)
    return module


q = _load()

TINY = ["--datasets", "synthetic", "--synthetic-num", "10", "--synthetic-val", "2", "--size", "32",
        "--set", "model.ngf=8", "--set", "model.ndf=8", "--segmenter-steps", "3", "--segmenter-ngf", "8",
        "--segmenter-batch", "4", "--budget-steps", "4", "--fractions", "0.5,1", "--seeds", "0,1",
        "--recipes", "reference,lsgan", "--threads", "1"]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    work = tmp_path_factory.mktemp("quality")
    argv = TINY + ["--cache", str(work / "cache"), "--out", str(work / "q.md"), "--isolation", "inline"]
    assert q.main(argv) == 0
    return work, argv


def _raw(work: Path) -> dict:
    return json.loads((work / "q.json").read_text())


def _row(md: str, section: str, name: str) -> list[str]:
    """The cells of the first table row named `name` in the report's `## section`."""
    text = md.split(f"## {section}\n", 1)[1]
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.slow
def test_report_rows_are_mean_and_std_over_the_seeds(measured):
    work, _ = measured
    raw, md = _raw(work), (work / "q.md").read_text()
    assert len(raw["runs"]) == 4
    for run in raw["runs"]:
        assert [s["steps"] for s in run["segments"]] == [2, 4]
        assert [s["fraction"] for s in run["segments"]] == [0.5, 1.0]
        assert "person" in run["segments"][-1]["generated"]["class_iou"]  # per-class IoU kept in the JSON
    header = [c.strip() for c in md.split("## synthetic\n", 1)[1].split("\n| recipe |", 1)[1]
              .splitlines()[0].strip("|").split("|")]
    columns = ["recipe"] + header
    for recipe in ("reference", "lsgan"):
        finals = [r["segments"][-1] for r in raw["runs"] if r["recipe"] == recipe]
        row = dict(zip(columns, _row(md, "synthetic", recipe), strict=True))
        assert row["seeds"] == "2"
        for column, values, digits in (
                ("mean IoU", [s["generated"]["mean_iou"] for s in finals], 3),
                ("per-pixel acc.", [s["generated"]["pixel_accuracy"] for s in finals], 3),
                ("L1", [s["metrics"]["l1"] for s in finals], 4),
                ("PSNR", [s["metrics"]["psnr"] for s in finals], 2),
                ("training s", [s["train_seconds"] for s in finals], 0)):
            expected = f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
            assert row[column] == expected, (recipe, column)
        assert row["steps"] == "4 ± 0"
    # the reference comes first, the ceiling row follows the recipes
    body = md.split("## synthetic\n", 1)[1]
    assert body.index("| reference |") < body.index("| lsgan |") < body.index("| real photos (ceiling) |")
    real = raw["runs"][0]["segments"][-1]["real"]["mean_iou"]
    assert _row(md, "synthetic", "real photos (ceiling)")[4] == f"{real:.3f} ± 0.000"
    assert "python benchmarks/quality.py " + " ".join(TINY[:4]) in md
    assert raw["invocations"][-1]["machine"]["cpu"] in md


@pytest.mark.slow
def test_training_seconds_come_from_the_trainers_step_times(measured):
    work, _ = measured
    run = _raw(work)["runs"][0]
    records = [json.loads(ln) for ln in (Path(run["run_dir"]) / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    secs = [1 / r["it_per_s"] for r in records]
    assert run["segments"][0]["train_seconds"] == pytest.approx(secs[0] + secs[1])
    # the resumed chunk's first step (3) counts as the median of that chunk's other steps (step 4 alone)
    assert run["segments"][1]["train_seconds"] == pytest.approx(secs[0] + secs[1] + 2 * secs[3])


@pytest.mark.slow
def test_plot_is_well_formed_svg_with_a_line_per_recipe(measured):
    work, _ = measured
    root = ET.fromstring((work / "q_synthetic.svg").read_text())
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert all(len(line.get("points").split()) == 2 for line in lines)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "reference (2)" in texts and "lsgan (2)" in texts and "real photos (ceiling)" in texts
    assert "![mean IoU against training seconds, synthetic](q_synthetic.svg)" in (work / "q.md").read_text()


def test_line_plot_places_points_bands_and_reference_lines():
    from pix2pix.report import line_plot_svg

    svg = line_plot_svg([{"name": "a", "x": [10, 20, 30], "y": [0.2, None, 0.6], "low": [0.1, None, 0.5],
                          "high": [0.3, None, 0.7]},
                         {"name": "b", "x": [10, 30], "y": [0.4, 0.4]}], hlines=[("top", 0.8)])
    root = ET.fromstring(svg)
    a, b = root.findall(f"{SVG}polyline")
    pa = [tuple(map(float, p.split(","))) for p in a.get("points").split()]
    pb = [tuple(map(float, p.split(","))) for p in b.get("points").split()]
    assert len(pa) == 2  # the None point is left out
    assert pa[0][0] == pb[0][0] and pa[1][0] == pb[1][0] and pa[0][0] < pa[1][0]
    assert pa[0][1] > pb[0][1] > pa[1][1]  # SVG y grows downwards: 0.2 below 0.4 below 0.6
    assert pb[0][1] == pb[1][1]
    assert len(root.findall(f"{SVG}polygon")) == 1  # only the series with a spread has a band
    dashed = [ln for ln in root.findall(f"{SVG}line") if ln.get("stroke-dasharray")]
    assert len(dashed) == 1 and float(dashed[0].get("y1")) < pa[1][1]  # 0.8 above everything
    assert "no points yet" in line_plot_svg([{"name": "empty", "x": [], "y": []}])


@pytest.mark.slow
def test_render_reproduces_the_report_from_the_raw_json(measured, tmp_path):
    work, _ = measured
    out = tmp_path / "q.md"
    assert q.main(["--render", str(work / "q.json"), "--out", str(out)]) == 0
    again = q.render_markdown(_raw(work), work / "q.md")
    assert out.read_text() == again == (work / "q.md").read_text()
    assert (tmp_path / "q_synthetic.svg").read_text() == (work / "q_synthetic.svg").read_text()


@pytest.mark.slow
def test_report_shows_fid_and_flags_runs_on_a_busy_machine(measured):
    work, _ = measured
    raw = _raw(work)
    for i, run in enumerate(raw["runs"]):
        run["segments"][-1]["metrics"].update(fid=100.0 + 10 * i, kid_mean=0.01 * i)
        run["others_cpus"] = 1.0 if i == 2 else 0.1
    md = q.render_markdown(raw, work / "q.md")
    header = md.split("## synthetic\n", 1)[1].split("\n| recipe |", 1)[1].splitlines()[0]
    assert "| FID | KID |" in header
    fids = [r["segments"][-1]["metrics"]["fid"] for r in raw["runs"] if r["recipe"] == "reference"]
    assert f"{statistics.mean(fids):.1f} ± {statistics.stdev(fids):.1f}" in _row(md, "synthetic", "reference")
    assert "during 1 of 4 runs other processes kept more than 0.25 CPU busy" in md
    assert md.count("| synthetic | ") == 4  # the every-run table
    raw["runs"][2]["others_cpus"] = 0.2
    assert "**Shared machine:**" not in q.render_markdown(raw, work / "q.md")


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_redoes_a_missing_one_in_a_subprocess(measured, capsys):
    work, argv = measured
    raw = _raw(work)
    gone = next(r for r in raw["runs"] if r["recipe"] == "lsgan" and r["seed"] == 1)
    shutil.rmtree(Path(gone["run_dir"]).parents[1])  # its whole run folder: it must train again
    raw["runs"] = [r for r in raw["runs"] if r is not gone]
    (work / "q.json").write_text(json.dumps(raw))
    capsys.readouterr()
    assert q.main([a if a != "inline" else "process" for a in argv]) == 0
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 3
    assert "synthetic lsgan seed 1 ..." in out
    new = _raw(work)
    assert len(new["runs"]) == 4
    kept = {(r["recipe"], r["seed"]): r["finished"] for r in raw["runs"]}
    assert all(r["finished"] == kept[(r["recipe"], r["seed"])] for r in new["runs"] if r["seed"] == 0
               or r["recipe"] == "reference")
    redone = next(r for r in new["runs"] if r["recipe"] == "lsgan" and r["seed"] == 1)
    assert [s["steps"] for s in redone["segments"]] == [2, 4]
    # same seed, same thread count, its own process: the same model, so the same scores
    for s_new, s_old in zip(redone["segments"], gone["segments"], strict=True):
        assert s_new["metrics"]["l1"] == pytest.approx(s_old["metrics"]["l1"], rel=1e-5)


@pytest.mark.slow
def test_a_cut_off_run_continues_from_its_checkpoint_without_retraining(measured):
    work, argv = measured
    raw = _raw(work)
    run = next(r for r in raw["runs"] if r["recipe"] == "reference" and r["seed"] == 1)
    root = Path(run["run_dir"]).parents[1]
    progress = json.loads((root / "progress.json").read_text())
    # as if killed after the second chunk's checkpoint, before its evaluation was recorded
    progress.update(steps=2, planned=4, segments=progress["segments"][:1])
    (root / "progress.json").write_text(json.dumps(progress))
    stats = Path(run["run_dir"]) / "stats.jsonl"
    before = stats.read_text()
    raw["runs"] = [r for r in raw["runs"] if r is not run]
    (work / "q.json").write_text(json.dumps(raw))
    assert q.main(argv) == 0
    redone = next(r for r in _raw(work)["runs"] if r["recipe"] == "reference" and r["seed"] == 1)
    assert stats.read_text() == before  # nothing trained again
    assert redone["segments"][1]["steps"] == 4
    assert redone["segments"][1]["metrics"] == run["segments"][1]["metrics"]
    assert redone["segments"][1]["train_seconds"] == pytest.approx(run["segments"][1]["train_seconds"])


@pytest.mark.slow
def test_other_settings_do_not_continue_a_saved_measurement(measured, capsys):
    work, argv = measured
    changed = list(argv)
    changed[changed.index("--budget-steps") + 1] = "6"
    capsys.readouterr()
    assert q.main(changed) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "budget_steps 4 there, 6 now" in err
    changed = list(argv)
    changed[changed.index("--synthetic-val") + 1] = "3"  # another split of a dataset already measured
    assert q.main(changed) == 2
    assert "other settings (datasets.synthetic" in capsys.readouterr().err


@pytest.mark.slow
def test_extend_continues_each_run_to_a_longer_budget_as_a_fresh_run_of_it(tmp_path, capsys):
    """Constant schedule: a 4-step run continued to 8 steps equals an 8-step run, and nothing trains twice."""
    base = TINY + ["--cache", str(tmp_path / "cache"), "--isolation", "inline"]
    base[base.index("--seeds") + 1] = "0"
    short = base + ["--out", str(tmp_path / "q.md")]
    assert q.main(short) == 0
    before = _raw(tmp_path)
    ref = next(r for r in before["runs"] if r["recipe"] == "reference")
    stats = Path(ref["run_dir"]) / "stats.jsonl"
    first_four = stats.read_text()

    def longer(*extra: str) -> list[str]:
        argv = list(short)
        argv[argv.index("--budget-steps") + 1] = "8"
        argv[argv.index("--fractions") + 1] = "0.25,0.5,1"
        argv[argv.index("--recipes") + 1] = "reference"
        return argv + list(extra)

    capsys.readouterr()
    assert q.main(longer()) == 2  # without --extend another budget is refused
    assert "budget_steps 4 there, 8 now" in capsys.readouterr().err
    assert q.main(longer("--extend")) == 0
    after = _raw(tmp_path)
    run = next(r for r in after["runs"] if r["recipe"] == "reference")
    assert [s["steps"] for s in run["segments"]] == [2, 4, 8]
    assert [s["fraction"] for s in run["segments"]] == [0.25, 0.5, 1.0]
    assert run["segments"][:2] == [{**s, "fraction": f} for s, f in zip(ref["segments"], (0.25, 0.5), strict=True)]
    assert stats.read_text().startswith(first_four)  # steps 1-4 were not trained again
    assert after["earlier_budgets"] == [{"budget_steps": 4, "fractions": [0.5, 1.0]}]
    # the recipe left out stays at the shorter budget: kept in the JSON, not in the report
    assert [r["status"] for r in after["runs"] if r["recipe"] == "lsgan"] == ["shorter"]
    md = (tmp_path / "q.md").read_text()
    assert "| reference |" in md and "| lsgan |" not in md
    assert q.main(longer("--extend")) == 0  # again: nothing left to do
    assert "done before, skipped" in capsys.readouterr().out

    fresh = longer("--json", str(tmp_path / "fresh.json"), "--out", str(tmp_path / "fresh.md"))
    assert q.main(fresh) == 0
    fresh_run = next(r for r in json.loads((tmp_path / "fresh.json").read_text())["runs"])
    for a, b in zip(fresh_run["segments"], run["segments"], strict=True):
        assert a["steps"] == b["steps"] and a["metrics"] == b["metrics"] and a["generated"] == b["generated"]

    assert q.main(longer("--extend", "--budget-steps", "6")) == 2
    assert "already trained 8 steps" in capsys.readouterr().err
    assert q.main(longer("--extend", "--schedule", "linear")) == 2
    assert "--extend needs --schedule constant" in capsys.readouterr().err
    assert q.main(longer("--extend", "--json", str(tmp_path / "none.json"))) == 2
    assert "holds none" in capsys.readouterr().err


def test_recipes_that_do_not_build_fail_before_anything_trains(tmp_path, capsys):
    base = TINY + ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "q.md"), "--isolation", "inline"]
    assert q.main(base + ["--recipe-set", "future=train.ema_decayy=0.999"]) == 2
    err = capsys.readouterr().err
    assert "recipe 'future' (train.ema_decayy=0.999)" in err and "unknown config key" in err
    assert "--recipes reference,lsgan" in err  # what does work
    assert not (tmp_path / "q.json").exists() and not (tmp_path / "cache" / "runs").exists()
    assert q.main(base + ["--recipe-set", "cheat=train.seed=3"]) == 2
    assert "train.seed is set by the benchmark" in capsys.readouterr().err
    assert q.main([a if a != "reference,lsgan" else "reference,lsgam" for a in base]) == 2
    assert "unknown recipe 'lsgam'" in capsys.readouterr().err
    assert q.main(TINY + ["--cache", str(ROOT / "cache-in-repo"), "--out", str(tmp_path / "r.md")]) == 2
    assert "inside the repository" in capsys.readouterr().err
    assert not (ROOT / "cache-in-repo").exists()


def test_a_recipe_whose_objective_cannot_be_built_is_named_before_training(tmp_path):
    """loss.lambda_seg reads classes from a label set: pairs without one fail in the check, with one they pass."""
    from pix2pix.data.label_sets import get_label_set

    pairs = tmp_path / "pairs"
    (pairs / "train").mkdir(parents=True)
    prepared = q.Prepared("facades", pairs, "BtoA", "facades", "B", {"train": 1}, "key", "test")
    args = q.build_parser().parse_args(TINY)
    recipes = {"reference": [], "seg": ["loss.lambda_seg=5"]}
    with pytest.raises(Exception, match=r"recipe 'seg' \(loss.lambda_seg=5\): loss.lambda_seg=5 needs the classes"):
        q.check_recipes(recipes, [prepared], args)
    (tmp_path / "classes.json").write_text(json.dumps(get_label_set("facades").to_classes_json()))
    q.check_recipes(recipes, [prepared], args)  # found beside the pairs, as the synthetic world's


def test_recipe_set_keeps_commas_inside_a_value():
    from pix2pix.errors import ConfigError

    assert q.parse_recipe_set("aug=loss.diffaugment=translation,cutout,color,train.batch_size=4") == (
        "aug", ["loss.diffaugment=translation,cutout,color", "train.batch_size=4"])
    assert q.parse_recipe_set("plain=") == ("plain", [])
    with pytest.raises(ConfigError, match="NAME=key=value"):
        q.parse_recipe_set("no overrides")
    chosen = q.select_recipes("lsgan", ["mine=loss.gan_mode=hinge"])
    assert list(chosen) == ["reference", "lsgan", "mine"] and chosen["mine"] == ["loss.gan_mode=hinge"]


def test_budget_planning():
    plan = q.plan_target
    # step budget: each segment ends at its fraction of the steps
    assert [plan(f, budget_steps=10, budget_seconds=None, steps_done=0, seconds_done=0, step_time=None,
                 calibration_steps=5)[0] for f in (0.25, 0.5, 1)] == [2, 5, 10]
    # time budget: calibrate first, then fill the time left at the measured step time
    assert plan(0.5, budget_steps=None, budget_seconds=100, steps_done=0, seconds_done=0, step_time=None,
                calibration_steps=20) == (20, True)
    assert plan(0.5, budget_steps=None, budget_seconds=100, steps_done=20, seconds_done=10.0, step_time=0.5,
                calibration_steps=20) == (100, False)
    # both: whichever ends first; a segment already past its time trains nothing more
    assert plan(1, budget_steps=50, budget_seconds=100, steps_done=20, seconds_done=10.0, step_time=0.5,
                calibration_steps=20) == (50, False)
    assert plan(0.25, budget_steps=None, budget_seconds=100, steps_done=60, seconds_done=30.0, step_time=0.5,
                calibration_steps=20) == (60, False)


def test_step_seconds_replace_each_resumed_chunks_warm_up():
    rates = {1: 1 / 3.0, 2: 1.0, 3: 1.0, 4: 1 / 5.0, 5: 1 / 2.0, 6: 1 / 4.0}  # step -> it/s
    records = [{"step": s, "it_per_s": r} for s, r in rates.items()]
    secs = q.step_seconds(records, [0, 3], 6)
    assert secs == {1: 3.0, 2: 1.0, 3: 1.0, 4: 3.0, 5: 2.0, 6: 4.0}  # step 4 (resumed) -> median(2, 4)
    assert q.chunk_step_time(records, 3, 6) == pytest.approx(3.0)  # mean of steps 5 and 6
    with pytest.raises(RuntimeError, match="log_every=1"):
        q.step_seconds(records[:2] + records[3:], [0], 6)


def test_facades_val_split_is_fixed_and_made_of_links(tmp_path):
    from PIL import Image

    source = tmp_path / "facades"
    for split, n in (("train", 10), ("test", 3)):
        (source / split).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (16, 8), (i * 20, 0, 0)).save(source / split / f"{i}.jpg")
    first = q.prepare_facades(source, tmp_path / "c1", 3, 0)
    again = q.prepare_facades(source, tmp_path / "c2", 3, 0)
    other = q.prepare_facades(source, tmp_path / "c3", 3, 1)
    assert first.counts == {"train": 7, "test": 3, "val": 3}
    assert (first.direction, first.label_side) == ("BtoA", "B")
    names = {split: sorted(p.name for p in (first.root / split).iterdir()) for split in ("train", "val", "test")}
    assert names["val"] == sorted(p.name for p in (again.root / "val").iterdir())
    assert names["val"] != sorted(p.name for p in (other.root / "val").iterdir())
    assert sorted(names["train"] + names["val"]) == sorted(p.name for p in (source / "train").iterdir())
    for split in names:
        for path in (first.root / split).iterdir():
            origin = source / ("test" if split == "test" else "train")
            assert path.is_symlink() and path.resolve().parent == origin.resolve()
    with pytest.raises(Exception, match="cannot hold out 10 of 10"):
        q.prepare_facades(source, tmp_path / "c4", 10, 0)


def test_synthetic_splits_have_their_instance_maps_beside_them(measured):
    """data.instance_edges recipes read {split}_inst/NAME.png: each split's maps link to the world's, name by name."""
    work, _ = measured
    root = Path(_raw(work)["datasets"]["synthetic"]["root"])
    world = root.parent
    for split in ("train", "val", "test"):
        names = sorted(p.name for p in (root / split).iterdir())
        inst = sorted((root / f"{split}_inst").iterdir())
        assert [p.name for p in inst] == names and names
        origin = world / ("test_inst" if split == "test" else "train_inst")
        assert all(p.is_symlink() and p.resolve() == (origin / p.name).resolve() for p in inst)
