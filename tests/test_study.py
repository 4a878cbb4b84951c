"""Human perceptual study: design, randomisation, intervals, results, server validation."""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix.cli.main import build_parser, main
from pix2pix.errors import ConfigError, DataError
from pix2pix.study.design import create_study, load_study, parse_timing
from pix2pix.study.results import careless_participants, markdown, summarise, write_csv
from pix2pix.study.server import build_app
from pix2pix.study.stats import beta_quantile, binomial_ci, normal_quantile, proportion, regularized_beta
from pix2pix.study.store import ANSWERS_FILE, AnswerStore, read_answers
from pix2pix.web import serve_in_thread


def write_folders(root: Path, n: int = 6, names=("real", "a", "b"), size=(24, 24)) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    out = {}
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"s{i}.png")
        out[name] = folder
    return out


@pytest.fixture
def folders(tmp_path):
    return write_folders(tmp_path / "imgs")


# -- timing -------------------------------------------------------------------------------------------

def test_parse_timing():
    assert parse_timing("unlimited") == [None]
    assert parse_timing("unlimited,1") == [None, 1.0]
    assert parse_timing("0.125,0.25,...,8") == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert parse_timing("unlimited, 0.5, 1, ..., 4") == [None, 0.5, 1.0, 2.0, 4.0]
    for bad in ("", "fast", "0", "-1", "1,1", "1,2,...,3", "2,1,...,0.5", "1,...,4", "100"):
        with pytest.raises(ConfigError):
            parse_timing(bad)


# -- intervals: known values (R's binom.test and prop.test(correct=FALSE), closed forms) ------------

def test_binomial_intervals_match_known_values():
    assert normal_quantile(0.975) == pytest.approx(1.959963984540054, abs=1e-12)
    assert regularized_beta(0.3, 2, 5) == pytest.approx(0.579825, abs=1e-12)  # 1 - 0.7^6 - 6*0.3*0.7^5
    assert regularized_beta(0.5, 0.5, 0.5) == pytest.approx(0.5, abs=1e-12)  # arcsine distribution
    assert beta_quantile(0.579825, 2, 5) == pytest.approx(0.3, abs=1e-10)
    # R: prop.test(5, 10, correct=FALSE)$conf.int
    assert binomial_ci(5, 10) == pytest.approx((0.2365931, 0.7634069), abs=1e-7)
    # Wilson with k=0 has the closed form upper bound z^2 / (n + z^2)
    z2 = 1.959963984540054 ** 2
    assert binomial_ci(0, 10) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-12)
    # R: binom.test(5, 10), binom.test(682, 925), binom.test(7, 20)
    cp = "clopper-pearson"
    assert binomial_ci(5, 10, method=cp) == pytest.approx((0.1870860, 0.8129140), abs=1e-7)
    assert binomial_ci(682, 925, method=cp) == pytest.approx((0.7076683, 0.7654066), abs=1e-7)
    assert binomial_ci(7, 20, method=cp) == pytest.approx((0.1539092, 0.5921885), abs=1e-7)
    # k = 0 and k = n: (alpha/2)^(1/n) closed forms
    assert binomial_ci(0, 10, method=cp) == pytest.approx((0.0, 1 - 0.025 ** 0.1), abs=1e-12)
    assert binomial_ci(10, 10, method=cp) == pytest.approx((0.025 ** 0.1, 1.0), abs=1e-12)
    assert binomial_ci(5, 10, confidence=0.99, method=cp)[0] < 0.1870860  # wider at 99%
    p = proportion(3, 4)
    assert (p.k, p.n, p.rate) == (3, 4, 0.75) and p.low < 0.75 < p.high
    assert proportion(0, 0).rate is None
    with pytest.raises(ValueError):
        binomial_ci(5, 4)
    with pytest.raises(ValueError):
        binomial_ci(1, 4, method="wald")


# -- creation -----------------------------------------------------------------------------------------

def test_create_study_layout(tmp_path, folders):
    study, warnings = create_study(tmp_path / "studies", "real-vs-fake", folders["a"], folders["b"], folders["real"],
                                   [None, 1.0], study_id="s1", seed=7, sentinels=2, practice=1)
    assert warnings == []
    spec = json.loads((tmp_path / "studies" / "s1" / "study.json").read_text())
    assert spec["mode"] == "real-vs-fake" and spec["timings"] == [None, 1.0] and spec["seed"] == 7
    assert len(spec["items"]) == 3 and len(spec["practice_items"]) == 1 and len(spec["sentinels"]) == 2
    assert len(spec["images"]) == 6 * 3 + 2  # every image re-encoded, plus one ruined copy per sentinel
    files = [img["file"] for img in spec["images"]]
    assert files == [f"images/{i:04d}.png" for i in range(len(files))]  # names say nothing of the role
    roles = [img["role"] for img in spec["images"]]
    assert roles != sorted(roles)  # roles are shuffled over the indices
    assert len(spec["items"]) + len(spec["practice_items"]) + len(spec["sentinels"]) == 6  # each stem has one use
    item = spec["items"][0]
    src = Path(spec["images"][item["real"]]["source"])
    served = np.asarray(Image.open(study.folder / spec["images"][item["real"]]["file"]))
    assert np.array_equal(served, np.asarray(Image.open(src)))  # re-encoded losslessly: the same pixels
    assert src.parent == folders["real"].resolve() and src.stem == item["stem"]
    assert spec["size"] == [24, 24] and {(study.folder / f).stat().st_size for f in files} == {spec["image_bytes"]}
    assert (study.folder / "secret.key").stat().st_mode & 0o077 == 0  # the key is the owner's only
    sentinel = spec["sentinels"][0]
    ruined = np.asarray(Image.open(study.folder / spec["images"][sentinel["ruined"]]["file"]))
    assert ruined.shape == (24, 24, 3) and len(np.unique(ruined.reshape(-1, 3), axis=0)) <= 36  # flat blocks
    assert spec["methods"]["a"]["name"] == "a" and spec["methods"]["b"]["name"] == "b"
    assert load_study(study.folder).spec == spec

    with pytest.raises(ConfigError, match="already exists"):
        create_study(tmp_path / "studies", "a-vs-b", folders["a"], folders["b"], study_id="s1")


def test_create_study_errors(tmp_path, folders):
    studies = tmp_path / "studies"
    with pytest.raises(ConfigError, match="--real"):
        create_study(studies, "real-vs-fake", folders["a"], timings=[None], study_id="x")
    with pytest.raises(ConfigError, match="--b"):
        create_study(studies, "a-vs-b", folders["a"], study_id="x")
    with pytest.raises(ConfigError, match="study id"):
        create_study(studies, "a-vs-b", folders["a"], folders["b"], study_id="../evil")
    (folders["b"] / "s3.png").unlink()
    with pytest.raises(DataError, match=r"s3\.png \(--a\) has no partner"):
        create_study(studies, "a-vs-b", folders["a"], folders["b"], study_id="x")
    Image.new("RGB", (24, 24)).save(folders["real"] / "extra.png")
    with pytest.raises(DataError, match=r"extra\.png \(--real\) has no partner"):
        create_study(studies, "real-vs-fake", folders["a"], real=folders["real"], study_id="x")
    Image.new("RGB", (24, 24)).save(folders["a"] / "s0.jpg")
    with pytest.raises(DataError, match="share the stem"):
        create_study(studies, "a-vs-b", folders["a"], folders["b"], study_id="x")
    assert not (studies / "x" / "study.json").exists()


def test_size_mismatch_is_a_warning_and_every_image_gets_one_size(tmp_path):
    f = write_folders(tmp_path / "imgs", n=3, names=("a",))
    f.update(write_folders(tmp_path / "imgs2", n=3, names=("b",), size=(30, 24)))
    study, warnings = create_study(tmp_path / "studies", "a-vs-b", f["a"], f["b"], study_id="w", seed=0,
                                   sentinels=1)
    assert len(warnings) == 3 and "sizes differ" in warnings[0] and "stretched" in warnings[0]
    assert study.spec["size"] == [30, 24]  # a tie between the two sizes: the larger
    assert {Image.open(study.folder / im["file"]).size for im in study.spec["images"]} == {(30, 24)}
    made, _ = create_study(tmp_path / "studies", "a-vs-b", f["a"], f["b"], study_id="w2", seed=0, sentinels=1,
                           size=(16, 12))
    assert {Image.open(made.folder / im["file"]).size for im in made.spec["images"]} == {(16, 12)}


# -- randomisation ------------------------------------------------------------------------------------

def test_trial_lists_randomised_and_balanced(tmp_path):
    f = write_folders(tmp_path / "imgs", n=12)
    study, _ = create_study(tmp_path / "studies", "real-vs-fake", f["a"], f["b"], f["real"],
                            [None, 0.5, 2.0], study_id="r", seed=1, sentinels=3, practice=2)
    stems = {it["stem"] for it in study.spec["items"]}
    sentinel_stems = {s["stem"] for s in study.spec["sentinels"]}
    assert len(stems) == 7 and len(sentinel_stems) == 3 and not stems & sentinel_stems
    cells = {(m, t) for m in ("a", "b") for t in (None, 0.5, 2.0)}
    assert study.trials_for("p1") == study.trials_for("p1")
    assert load_study(study.folder).trials_for("p1") == study.trials_for("p1")  # no hidden state
    assert study.trials_for("p1") != study.trials_for("p2")

    left_real, stem_cells = [], Counter()
    for p in range(300):
        trials = study.trials_for(f"p{p}")
        assert [t.index for t in trials] == list(range(len(trials)))
        kinds = [t.kind for t in trials]
        assert kinds[:2] == ["practice"] * 2 and kinds.count("sentinel") == 3 and kinds.count("trial") == 7
        assert kinds[2] == "trial"  # a sentinel never comes first
        tests = [t for t in trials if t.kind == "trial"]
        assert {t.stem for t in tests} == stems  # every stem once
        counts = Counter((t.method, t.exposure) for t in tests)
        assert set(counts) <= cells and max(counts.values()) - min(counts.get(c, 0) for c in cells) <= 1
        for t in tests:
            assert {t.left_role, t.right_role} == {"real", t.method}
            image = study.spec["items"][[it["stem"] for it in study.spec["items"]].index(t.stem)][t.method]
            assert image in (t.left, t.right)
            left_real.append(t.left_role == "real")
            stem_cells[(t.stem, t.method, t.exposure)] += 1
        for s in (t for t in trials if t.kind == "sentinel"):
            assert {s.left_role, s.right_role} == {"real", "ruined"} and s.exposure is None  # the longest
            # the intact image is one the participant sees nowhere else: it cannot be recognised
            others = {i for t in trials if t.index != s.index for i in (t.left, t.right)}
            assert s.left not in others and s.right not in others
        public = json.dumps([t.public(lambda i: f"token{i}") for t in trials])
        assert "left_role" not in public and "real" not in public and "ruined" not in public
    assert 0.45 < np.mean(left_real) < 0.55
    assert len(stem_cells) == len(stems) * len(cells)  # every stem meets every condition across participants


def test_trials_cap_and_timed_only_sentinels(tmp_path, folders):
    study, _ = create_study(tmp_path / "studies", "a-vs-b", folders["a"], folders["b"], folders["real"],
                            [0.25, 1.0], study_id="c", seed=2, sentinels=1, trials=3)
    trials = study.trials_for("x")
    assert sum(t.kind == "trial" for t in trials) == 3 and len(trials) == 4
    assert all({t.left_role, t.right_role} == {"a", "b"} for t in trials if t.kind == "trial")
    assert [t.exposure for t in trials if t.kind == "sentinel"] == [1.0]


# -- results ------------------------------------------------------------------------------------------

def _answer_all(study, store, participant, pick):
    """Answer every trial of `participant`; pick(trial) -> the role chosen."""
    for t in study.trials_for(participant):
        role = pick(t)
        side = "left" if t.left_role == role else "right"
        assert store.record({"participant": participant, "trial": t.index, "kind": t.kind, "stem": t.stem,
                             "method": t.method, "exposure": t.exposure, "left_image": t.left,
                             "right_image": t.right, "left_role": t.left_role, "right_role": t.right_role,
                             "choice": side, "chosen_role": t.role(side), "rt_ms": 500.0})[0]


def test_results_rates_careless_and_csv(tmp_path, folders):
    study, _ = create_study(tmp_path / "studies", "real-vs-fake", folders["a"], None, folders["real"],
                            [None, 1.0], study_id="res", seed=3, sentinels=2)
    store = AnswerStore(study.folder / ANSWERS_FILE)
    def honest(t):  # always spots the fake, passes sentinels
        return "real"

    def fooled(t):  # always fooled by the fake, passes sentinels
        return t.method if t.kind == "trial" else "real"

    def careless(t):  # fooled on trials, fails the sentinels
        return t.method if t.kind == "trial" else "ruined"

    _answer_all(study, store, "honest", honest)
    _answer_all(study, store, "fooled", fooled)
    _answer_all(study, store, "careless", careless)
    answers = read_answers(study.folder)
    assert len(answers) == 3 * 6  # 4 test pairs and 2 sentinels each
    assert careless_participants(answers) == {"careless"}

    summary = summarise(study, answers)
    rows = {c["exposure"]: c for c in summary["conditions"]}
    assert set(rows) == {None, 1.0, "all"}
    assert rows["all"]["n"] == 8 and rows["all"]["k"] == 4 and rows["all"]["rate"] == 0.5
    assert rows[None]["n"] + rows[1.0]["n"] == 8 and rows[None]["participants"] == 2
    assert (rows["all"]["low"], rows["all"]["high"]) == pytest.approx(binomial_ci(4, 8))
    assert summary["careless"] == ["careless"] and summary["excluded_answers"] == 6
    assert summary["sentinels"] == {"answers": 6, "missed": 2}

    with_all = summarise(study, answers, include_careless=True, ci="clopper-pearson")
    rows = {c["exposure"]: c for c in with_all["conditions"]}
    assert rows["all"]["n"] == 12 and rows["all"]["k"] == 8
    assert (rows["all"]["low"], rows["all"]["high"]) == pytest.approx(binomial_ci(8, 12, method="clopper-pearson"))

    text = markdown(summary)
    assert "| a | all pooled | 8 | 4 | 50.0% |" in text and "1 flagged careless" in text and "Wilson" in text

    # completion codes handed in: only those participants count; made-up codes are reported
    codes = [study.completion_code("fooled"), "honest", study.completion_code("nobody").lower(), "XXXX-XXXX"]
    checked = summarise(study, answers, codes=codes)
    assert checked["codes"]["valid"] == ["fooled"] and checked["participants"] == 1
    assert checked["codes"]["invalid"] == codes[1:] and checked["codes"]["finished_without_code"] == ["careless",
                                                                                                      "honest"]
    assert checked["conditions"][-1]["n"] == 4 and checked["conditions"][-1]["k"] == 4
    assert "4 handed in, 1 valid" in markdown(checked) and "3 invalid" in markdown(checked)

    write_csv(tmp_path / "answers.csv", study, answers)
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18
    assert {r["careless"] for r in rows if r["participant"] == "careless"} == {"1"}
    assert all(r["success"] == "1" for r in rows if r["participant"] == "fooled" and r["kind"] == "trial")
    assert all(r["success"] == "" for r in rows if r["kind"] == "sentinel")
    store.close()

    # the command: table on stdout, JSON summary, CSV
    assert main(["study", "results", str(study.folder), "--csv", str(tmp_path / "out.csv")]) == 0
    saved = json.loads((study.folder / "results.json").read_text())
    assert saved["conditions"][-1]["k"] == 4 and (tmp_path / "out.csv").is_file()
    (tmp_path / "codes.txt").write_text(f"# handed in\n{study.completion_code('honest')}\n\nforged-code\n")
    assert main(["study", "results", str(study.folder), "--codes", str(tmp_path / "codes.txt"),
                 "--json", str(tmp_path / "r.json")]) == 0
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["codes"]["valid"] == ["honest"] and saved["codes"]["invalid"] == ["forged-code"]
    assert saved["conditions"][-1]["k"] == 0 and saved["conditions"][-1]["n"] == 4


def test_a_vs_b_preference(tmp_path, folders):
    study, _ = create_study(tmp_path / "studies", "a-vs-b", folders["a"], folders["b"], study_id="ab", seed=4,
                            sentinels=1, a_name="HD", b_name="pix2pix")
    store = AnswerStore(study.folder / ANSWERS_FILE)
    for p in range(4):  # three of four answers prefer A
        _answer_all(study, store, f"p{p}", lambda t, p=p: "a" if t.kind == "sentinel" else ("b" if p == 0 else "a"))
    summary = summarise(study, read_answers(study.folder))
    (row,) = summary["conditions"]
    assert (row["k"], row["n"], row["rate"]) == (15, 20, 0.75) and row["method"] is None
    assert summary["sentinels"]["missed"] == 0  # in a-vs-b without --real, the intact image is A's
    assert "preference for HD over pix2pix" in markdown(summary)
    store.close()


# -- server -------------------------------------------------------------------------------------------

def _request(url, body=None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module (stopping one takes half a second); tests use distinct participants."""
    tmp_path = tmp_path_factory.mktemp("served")
    folders = write_folders(tmp_path / "imgs")
    study, _ = create_study(tmp_path / "studies", "real-vs-fake", folders["a"], None, folders["real"],
                            [None], study_id="srv", seed=5)
    app = build_app(tmp_path / "studies")
    server = serve_in_thread(app)
    yield server, study
    server.shutdown()
    app.studies.close()


def _token(study, participant, index):
    return study.image_token(participant, index)


def test_server_session_answer_and_duplicates(served):
    server, study = served
    api = server.url + "/api/study/srv"
    status, body, _ = _request(api + "/session", {"participant": "w1"})
    session = json.loads(body)
    expected = study.trials_for("w1")
    assert status == 200 and session["answered"] == 0 and session["total"] == len(expected) == 6
    assert session["code"] is None and session["participant"] == "w1"
    token = session["session"]
    first = session["trial"]  # only the current pair is revealed, under the participant's image tokens
    assert set(first) == {"index", "left", "right", "exposure", "practice"}  # no roles, no indices
    assert (first["index"], first["left"], first["right"]) == (0, _token(study, "w1", expected[0].left),
                                                               _token(study, "w1", expected[0].right))
    assert "trials" not in session

    status, body, headers = _request(api + f"/image/{first['left']}")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == study.image_path(expected[0].left).read_bytes()
    assert _request(api + f"/image/{_token(study, 'w1', expected[1].left)}")[0] == 404  # not the current pair yet

    answer = {"session": token, "trial": 0, "choice": "right", "rt_ms": 812.4, "shown_ms": 812}
    status, body, _ = _request(api + "/answer", answer)
    reply = json.loads(body)
    assert status == 200 and reply["ok"] and not reply["duplicate"] and reply["answered"] == 1
    assert reply["next"]["index"] == 1 and reply["next"]["left"] == _token(study, "w1", expected[1].left)
    status, body, _ = _request(api + "/answer", answer)  # a retried POST
    assert status == 200 and json.loads(body)["duplicate"] is True and json.loads(body)["answered"] == 1
    status, body, _ = _request(api + "/answer", {**answer, "choice": "left"})
    assert status == 409 and b"already answered" in body
    status, body, _ = _request(api + "/answer", {**answer, "trial": 3})
    assert status == 409 and b"in order" in body  # no skipping ahead
    (row,) = [a for a in read_answers(study.folder) if a["participant"] == "w1"]
    assert (row["trial"], row["choice"], row["chosen_role"]) == (0, "right", expected[0].right_role)
    assert row["rt_ms"] == 812.4 and row["stem"] == expected[0].stem
    assert _request(api + f"/image/{first['left']}")[0] == 404  # an answered pair's images are gone
    status, body, _ = _request(api + "/session", {"session": token})
    resumed = json.loads(body)
    assert resumed["answered"] == 1 and resumed["trial"]["index"] == 1 and resumed["session"] == token  # a reload

    for trial in expected[1:]:
        status, body, _ = _request(api + "/answer", {"session": token, "trial": trial.index, "choice": "left"})
        assert status == 200
    done = json.loads(body)
    assert done["next"] is None and done["answered"] == 6 and done["code"] == study.completion_code("w1")
    status, body, _ = _request(server.url + "/study/srv/")
    assert status == 200 and b"/static/app.js" in body
    assert _request(server.url + "/static/app.js")[0] == 200


@pytest.mark.parametrize("path, body, status", [
    ("/api/study/nope/session", {"participant": "w"}, 404),            # unknown study
    ("/api/study/a%2F..%2Fsrv/session", {"participant": "w"}, 400),    # traversal
    ("/api/study/studies%2Fsrv/session", {"participant": "w"}, 404),   # ids are validated, not joined
    ("/api/study/.hidden/session", {"participant": "w"}, 404),
    ("/api/study/srv/session", {"participant": "../x"}, 400),
    ("/api/study/srv/session", {"participant": "w" * 65}, 400),
    ("/api/study/srv/session", {"participant": 5}, 400),
    ("/api/study/srv/session", {"session": "x" * 43}, 403),           # a token the server never issued
    ("/api/study/srv/session", {"session": 7}, 403),
    ("/api/study/srv/answer", {"participant": "w", "trial": 0, "choice": "left"}, 403),  # no session
    ("/api/study/srv/answer", {"session": "a" * 43, "trial": 0, "choice": "left"}, 403),
    ("/api/study/srv/image/999", None, 404),
    ("/api/study/srv/image/-1", None, 404),
    ("/api/study/srv/image/" + "A" * 32, None, 404),
    ("/api/study/srv/image/..%2Fstudy.json", None, 400),
    ("/api/study/srv/image/%2E%2E/study.json", None, 400),
    ("/api/study/srv/../srv/study.json", None, 400),
    ("/study/nope/", None, 404),
    ("/static/../study.json", None, 400),
    ("/static/%2E%2E/design.py", None, 400),
])
def test_server_refuses_bad_input(served, path, body, status):
    server, study = served
    code, answer, _ = _request(server.url + path, body)
    assert code == status, answer
    assert "error" in json.loads(answer)
    assert [a for a in read_answers(study.folder) if a["participant"] == "w"] == []


@pytest.mark.parametrize("change, status", [
    ({"choice": "up"}, 400), ({"trial": 6}, 400), ({"trial": -1}, 400), ({"trial": "0"}, 400),
    ({"trial": True}, 400), ({"rt_ms": -5}, 400), ({"shown_ms": "1"}, 400), ({"rt_ms": 1e12}, 400),
])
def test_server_refuses_bad_answers(served, change, status):
    server, study = served
    api = server.url + "/api/study/srv"
    participant = f"bad{abs(hash(json.dumps(change))) % 10**8}"
    token = json.loads(_request(api + "/session", {"participant": participant})[1])["session"]
    code, answer, _ = _request(api + "/answer", {"session": token, "trial": 0, "choice": "left", **change})
    assert code == status, answer
    assert [a for a in read_answers(study.folder) if a["participant"] == participant] == []


def test_server_limits_and_defaults(served):
    server, study = served
    api = server.url + "/api/study/srv"
    padding = "x" * 5000
    assert _request(api + "/answer", {"participant": "w", "trial": 0, "choice": "left", "pad": padding})[0] == 413
    assert _request(api + "/answer", raw=b"{not json")[0] == 400
    assert _request(api + "/answer", raw=b"[1, 2]")[0] == 400
    assert _request(server.url + "/study/srv")[0] == 200  # 301 to the page, followed by urllib
    assert [a for a in read_answers(study.folder) if a["participant"] == "w"] == []
    args = build_parser().parse_args(["study", "serve"])
    assert args.host == "127.0.0.1" and args.studies == "studies" and args.allow_host == []
    assert server.url.startswith("http://127.0.0.1:")


def test_cli_create(tmp_path, folders, capsys):
    assert main(["study", "create", "--mode", "a-vs-b", "--a", str(folders["a"]), "--b", str(folders["b"]),
                 "--timing", "unlimited,0.125,0.25,...,1", "--studies", str(tmp_path / "st"), "--id", "cli",
                 "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "created study cli (a-vs-b)" in out and "unlimited, 0.125 s, 0.25 s, 0.5 s, 1 s" in out
    assert load_study(tmp_path / "st" / "cli").timings == [None, 0.125, 0.25, 0.5, 1.0]
    assert main(["study", "create", "--mode", "real-vs-fake", "--a", str(folders["a"]),
                 "--studies", str(tmp_path / "st")]) == 2
    assert "--real" in capsys.readouterr().err
    assert main(["study", "results", str(tmp_path / "nostudy")]) == 2
