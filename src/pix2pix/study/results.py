"""From stored answers to rates per condition: markdown table, JSON summary, CSV of every answer.

Conditions are (method, exposure) in real-vs-fake mode and exposure in a-vs-b mode, plus a pooled
row per method when the study has several exposures. Practice and sentinel trials never count.
Participants who missed a sentinel are flagged careless and, unless asked otherwise, excluded with
all of their answers. With the completion codes participants handed in (`codes`), each code is
checked against the study's key and only the participants whose valid code was handed in count:
a code that was never issued (made up, or from another study) is reported as invalid.

The intervals treat answers as independent Bernoulli trials; answers of one participant are
correlated, so with few participants the intervals are optimistic.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..io.atomic import atomic_path
from .design import Study, exposure_label
from .stats import proportion
from .store import ANSWER_COLUMNS

METRICS = {"real-vs-fake": ("fooling rate", "fooled",
                            "share of trials where the participant picked the generated image as the real one "
                            "(50% = indistinguishable from real, 0% = always spotted)"),
           "a-vs-b": ("preference for A", "chose A",
                      "share of trials where the participant picked method A's image as more realistic "
                      "(50% = no preference)")}


def careless_participants(answers: list[dict]) -> set[str]:
    """Participants who picked the ruined image of a sentinel at least once."""
    return {a["participant"] for a in answers if a["kind"] == "sentinel" and a["chosen_role"] == "ruined"}


def _success(study: Study, answer: dict) -> bool:
    if study.mode == "real-vs-fake":
        return answer["chosen_role"] == answer["method"]  # the generated image was taken for the real one
    return answer["chosen_role"] == "a"


def check_codes(study: Study, answers: list[dict], codes: list[str]) -> dict:
    """Which handed-in codes are valid, for which participants, and who finished without handing one in."""
    answered: dict[str, int] = {}
    for a in answers:
        answered[a["participant"]] = answered.get(a["participant"], 0) + 1
    finished = sorted(p for p, n in answered.items() if n == len(study.trials_for(p)))
    owners = study.check_codes(codes, finished)
    valid, invalid, duplicates, seen = [], [], [], set()
    for code, participant in owners.items():
        if participant is None:
            invalid.append(code)
        elif participant in seen:
            duplicates.append(code)
        else:
            seen.add(participant)
            valid.append(participant)
    repeats = len(codes) - len(owners)  # the same code handed in twice
    return {"submitted": len(codes), "valid": sorted(valid), "invalid": invalid, "duplicates": duplicates,
            "repeated": repeats, "finished": finished, "finished_without_code": sorted(set(finished) - seen)}


def summarise(study: Study, answers: list[dict], *, include_careless: bool = False, confidence: float = 0.95,
              ci: str = "wilson", codes: list[str] | None = None) -> dict:
    code_check = check_codes(study, answers, codes) if codes is not None else None
    if code_check is not None:  # only the participants who handed in a valid code
        paid = set(code_check["valid"])
        answers = [a for a in answers if a["participant"] in paid]
    careless = careless_participants(answers)
    kept = [a for a in answers if a["kind"] == "trial" and (include_careless or a["participant"] not in careless)]
    methods = list(study.spec["methods"]) if study.mode == "real-vs-fake" else [None]
    timings = study.timings
    conditions = []
    for method in methods:
        groups = [(t, [a for a in kept if a["method"] == method and a["exposure"] == t]) for t in timings]
        if len(timings) > 1:
            groups.append(("all", [a for a in kept if a["method"] == method]))
        for exposure, rows in groups:
            k = sum(_success(study, a) for a in rows)
            conditions.append({
                "method": method, "method_name": study.method_name(method) if method else None,
                "exposure": exposure, "exposure_label": "all pooled" if exposure == "all" else exposure_label(exposure),
                "participants": len({a["participant"] for a in rows}),
                **proportion(k, len(rows), confidence, ci).as_dict()})
    sentinel_rows = [a for a in answers if a["kind"] == "sentinel"]
    name, _, meaning = METRICS[study.mode]
    return {
        "study": study.id, "mode": study.mode, "metric": name, "meaning": meaning,
        "a": study.method_name("a"), "b": study.method_name("b") if "b" in study.spec["methods"] else None,
        "ci": ci, "confidence": confidence, "include_careless": include_careless,
        "participants": len({a["participant"] for a in answers}),
        "careless": sorted(careless), "careless_rule": study.spec.get("careless_rule"),
        "excluded_answers": 0 if include_careless else sum(a["participant"] in careless for a in answers),
        "sentinels": {"answers": len(sentinel_rows),
                      "missed": sum(a["chosen_role"] == "ruined" for a in sentinel_rows)},
        "practice_answers": sum(a["kind"] == "practice" for a in answers),
        "codes": code_check,
        "conditions": conditions,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def markdown(summary: dict) -> str:
    name, column, meaning = METRICS[summary["mode"]]
    title = name if summary["mode"] == "real-vs-fake" else f"preference for {summary['a']} over {summary['b']}"
    ci_name = {"wilson": "Wilson", "clopper-pearson": "Clopper-Pearson"}[summary["ci"]]
    conf = f"{100 * summary['confidence']:g}%"
    lines = [f"## Study {summary['study']} ({summary['mode']}): {title}", "",
             f"{name[0].upper() + name[1:]}: {meaning}.", ""]
    head = ["exposure", "n", column, "rate", f"{conf} CI ({ci_name})", "participants"]
    if summary["mode"] == "real-vs-fake":
        head.insert(0, "method")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in summary["conditions"]:
        ci = "-" if c["low"] is None else f"{_pct(c['low'])} - {_pct(c['high'])}"
        cells = [c["exposure_label"], str(c["n"]), str(c["k"]), _pct(c["rate"]), ci, str(c["participants"])]
        if summary["mode"] == "real-vs-fake":
            cells.insert(0, c["method_name"])
        lines.append("| " + " | ".join(cells) + " |")
    n_careless = len(summary["careless"])
    kept = "kept (--include-careless)" if summary["include_careless"] else \
        f"excluded with their {summary['excluded_answers']} answers (--include-careless keeps them)"
    lines += ["", f"Participants: {summary['participants']} answered; {n_careless} flagged careless "
                  f"({summary['careless_rule']})" + (f", {kept}." if n_careless else "."),
              f"Sentinels: {summary['sentinels']['answers']} answers, {summary['sentinels']['missed']} missed. "
              f"Practice answers (not counted): {summary['practice_answers']}."]
    codes = summary.get("codes")
    if codes is not None:
        lines.append(f"Completion codes: {codes['submitted']} handed in, {len(codes['valid'])} valid (only their "
                     f"participants are counted), {len(codes['invalid'])} invalid"
                     + (f" ({', '.join(codes['invalid'][:5])}{', ...' if len(codes['invalid']) > 5 else ''})"
                        if codes["invalid"] else "")
                     + f", {len(codes['duplicates']) + codes['repeated']} repeated; "
                     f"{len(codes['finished_without_code'])} finished without handing one in.")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ANSWER_COLUMNS + ("method_name", "success", "careless")


def write_csv(path: str | Path, study: Study, answers: list[dict]) -> None:
    """Every answer, one row each, with `success` (fooled / chose A; empty for sentinels and practice)
    and `careless` (the participant missed a sentinel) for analyses of one's own."""
    careless = careless_participants(answers)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for a in answers:
            success = "" if a["kind"] != "trial" else int(_success(study, a))
            extra = (study.method_name(a["method"]) if a["method"] else "", success, int(a["participant"] in careless))
            writer.writerow([("" if a[c] is None else a[c]) for c in ANSWER_COLUMNS] + list(extra))
