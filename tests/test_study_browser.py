"""A participant takes a short study in Chromium: keys and clicks, a timed pair that disappears after its
exposure, a reload in the middle; then the results count exactly those answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pix2pix.study.design import create_study
from pix2pix.study.results import summarise
from pix2pix.study.server import build_app
from pix2pix.study.store import read_answers
from pix2pix.web import serve_in_thread

EXPOSURE = 0.6


@pytest.fixture
def served(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        for i in range(5):  # one is the sentinel's, one the practice pair's
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / name / f"s{i}.png")
    study, _ = create_study(tmp_path / "studies", "real-vs-fake", tmp_path / "fake", real=tmp_path / "real",
                            timings=[None, EXPOSURE], study_id="browser", seed=0, sentinels=1, practice=1)
    app = build_app(tmp_path / "studies")
    server = serve_in_thread(app)
    yield server, study
    server.shutdown()
    app.studies.close()


def test_participant_completes_a_study(served, page):
    server, study = served
    trials = study.trials_for("browser1")
    assert [t.kind for t in trials].count("trial") == 3 and trials[0].kind == "practice"
    assert any(t.exposure == EXPOSURE for t in trials)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/study/browser/?participant=browser1")
    page.wait_for_selector("#intro", state="visible")
    assert page.text_content("#intro-question") == "Which image is the real photograph?"
    page.keyboard.press("Enter")

    # the answer that picks the wanted role: fooled by every fake, sentinel and practice right
    wanted = {t.index: ("real" if t.kind != "trial" else t.method) for t in trials}
    inputs = ["click", "ArrowLeft", "1", "click", "ArrowRight", "2"]
    chosen = {}
    for step, trial in enumerate(trials):
        if step == 2:  # a reload in the middle resumes at the first unanswered pair
            page.reload()
            page.wait_for_selector("#intro", state="visible")
            assert "Welcome back: 3 of 5 pairs to go" in page.text_content("#intro-count")
            page.click("#start")
        page.wait_for_selector(f'#pair[data-trial="{trial.index}"][data-state="shown"]', timeout=10_000)
        assert page.is_visible("#img-left") and page.is_visible("#img-right")
        assert page.text_content("#progress") == f"Pair {step + 1} of 5"
        # the images are named by the participant's opaque tokens, never by index
        assert page.get_attribute("#img-left", "src").endswith(
            f"/api/study/browser/image/{study.image_token('browser1', trial.left)}")
        assert page.get_attribute("#img-right", "src").endswith(
            f"/api/study/browser/image/{study.image_token('browser1', trial.right)}")
        if trial.exposure is None:
            assert page.get_attribute("#pair", "data-exposure") == "unlimited"
            page.wait_for_timeout(int(EXPOSURE * 1000) + 300)
            assert page.is_visible("#img-left")  # unlimited: still there
        else:
            page.wait_for_selector('#pair[data-state="hidden"]', timeout=5_000)
            assert page.is_hidden("#img-left") and page.is_hidden("#img-right")  # gone after the exposure
        side = "left" if trial.left_role == wanted[trial.index] else "right"
        how = inputs[step % len(inputs)]
        if how == "click":
            page.click(f"#side-{side}")
        else:  # a key; when it points at the other side, use that side's other key
            key = {"left": {"ArrowLeft", "1"}, "right": {"ArrowRight", "2"}}[side]
            page.keyboard.press(how if how in key else sorted(key)[0])
        chosen[trial.index] = side
        if trial.kind == "practice":
            page.wait_for_selector(f"#side-{side}.feedback-correct")
            assert page.text_content("#status") == "Correct."
    page.wait_for_selector("#done", state="visible")
    code = page.text_content("#done-code")
    assert page.text_content("#done-count") == "5" and code == study.completion_code("browser1")
    assert study.check_codes([code], ["browser1", "browser2"]) == {code: "browser1"}
    assert errors == []

    answers = read_answers(study.folder)
    assert {a["trial"]: a["choice"] for a in answers} == chosen
    assert all(a["chosen_role"] == wanted[a["trial"]] for a in answers)
    for a in answers:
        assert a["rt_ms"] > 0
        if a["exposure"] == EXPOSURE:  # the page measured how long the pair was on screen
            assert EXPOSURE * 1000 - 50 <= a["shown_ms"] <= EXPOSURE * 1000 + 500
        else:
            assert a["shown_ms"] == pytest.approx(a["rt_ms"], abs=1)
    summary = summarise(study, answers)
    pooled = summary["conditions"][-1]
    assert (pooled["exposure"], pooled["n"], pooled["k"], pooled["rate"]) == ("all", 3, 3, 1.0)
    assert summary["careless"] == [] and summary["sentinels"] == {"answers": 1, "missed": 0}
    assert summary["practice_answers"] == 1
