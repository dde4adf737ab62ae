"""The held-out scoring of a served pipeline (``ml.agents.heldout.score``) on hand-made rows:
a perfect ranking scores 1, a reversed one 0, and level / side / box figures count only true
positives called present, a box on another slice scoring 0."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ml.agents.analysis import BoxResult, ConditionResult, StudyAnalysis
from ml.agents.heldout import format_table, score
from ml.conditions import CONDITION_KEYS


def _row(i: int, present: bool, good: bool) -> dict:
    labels = {k: 0 for k in CONDITION_KEYS} | {"canal_stenosis": int(present), "hemangioma": int(i % 2)}
    prob = (0.9 if present else 0.1) if good else (0.1 if present else 0.9)
    conds = [ConditionResult(k, 0.5, False, 0.5) for k in CONDITION_KEYS]
    conds[CONDITION_KEYS.index("canal_stenosis")] = ConditionResult(
        "canal_stenosis", prob, prob >= 0.5, 0.5, level="L4-5", side="left",
        boxes=[BoxResult("s", "sop-a" if i % 4 else "sop-b", 0, [0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4], 0.9)],
    )  # fmt: skip
    truth = {"vendor": "GE" if i % 2 else "Siemens", "findings": []}
    if present:
        truth["findings"] = [{"condition": "canal_stenosis", "label": 1, "level": "L4-5", "side": "left",
                              "key_slices": {"sag_t2": [{"sop_instance_uid": "sop-a",
                                                         "box_norm": [0.2, 0.2, 0.4, 0.4]}]}}]  # fmt: skip
    entry = SimpleNamespace(labels=labels, patient_key=f"P{i}")
    return {"entry": entry, "analysis": StudyAnalysis(f"1.{i}", "v", conditions=conds), "truth": truth}


def test_score_of_a_perfect_and_a_reversed_ranking():
    good = score([_row(i, i % 3 == 0, True) for i in range(24)], bootstrap_n=50)
    canal = good["diagnosis"]["per_condition"]["canal_stenosis"]
    assert canal["auroc"][0] == pytest.approx(1.0)
    assert canal["positives"] == 8
    assert good["diagnosis"]["per_condition"]["hemangioma"]["auroc"][0] == pytest.approx(0.5)  # a constant
    assert set(good["diagnosis"]["per_vendor"]) == {"GE", "Siemens"}
    loc = good["localization"]
    assert loc["level_accuracy"][0] == pytest.approx(1.0)
    assert loc["side_accuracy"][0] == pytest.approx(1.0)
    # every fourth study's box is on a slice that is not a key slice: IoU 0 there, 1 elsewhere
    ious = np.array([0.0 if i % 4 == 0 else 1.0 for i in range(24) if i % 3 == 0])
    assert loc["median_box_iou"] == pytest.approx(float(np.median(ious)))
    bad = score([_row(i, i % 3 == 0, False) for i in range(24)], bootstrap_n=50)
    assert bad["diagnosis"]["per_condition"]["canal_stenosis"]["auroc"][0] == pytest.approx(0.0)
    assert bad["localization"]["level_accuracy"][3] == 0  # none called present: nothing to localise
    assert "canal_stenosis" in format_table({**good, "pipeline_version": "v", "studies": 24, "manifest": "m",
                                              "seconds_per_study": 0.1})  # fmt: skip


def _foraminal_row(level: str, side: str, sop: str) -> dict:
    """One study with a left foraminal finding at L4-5 (key slice sop-l) and a right one at L4-5
    (sop-r) and at L5-S1 (sop-s); the call says ``level`` and ``side`` with its box on ``sop``."""
    labels = {k: 0 for k in CONDITION_KEYS} | {"foraminal_narrowing": 1}
    conds = [ConditionResult(k, 0.1, False, 0.5) for k in CONDITION_KEYS]
    conds[CONDITION_KEYS.index("foraminal_narrowing")] = ConditionResult(
        "foraminal_narrowing", 0.9, True, 0.5, level=level, side=side,
        boxes=[BoxResult("s", sop, 0, [0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4], 0.9)],
    )  # fmt: skip

    def finding(lv: str, sd: str, uid: str) -> dict:
        return {"condition": "foraminal_narrowing", "label": 1, "level": lv, "side": sd,
                "key_slices": {"sag_t2": [{"sop_instance_uid": uid, "box_norm": [0.2, 0.2, 0.4, 0.4]}]}}  # fmt: skip

    truth = {"findings": [finding("L4-5", "left", "sop-l"), finding("L4-5", "right", "sop-r"),
                          finding("L5-S1", "right", "sop-s")]}  # fmt: skip
    entry = SimpleNamespace(labels=labels, patient_key="P")
    return {"entry": entry, "analysis": StudyAnalysis("1", "v", conditions=conds), "truth": truth}


@pytest.mark.parametrize(
    ("level", "side", "sop", "side_hit", "iou"),
    [
        ("L4-5", "right", "sop-r", 1.0, 1.0),  # the second finding at that level: right, and its box
        ("L4-5", "left", "sop-l", 1.0, 1.0),
        ("L4-5", "bilateral", "sop-l", 1.0, 1.0),  # both sides have a finding at L4-5
        ("L5-S1", "left", "sop-s", 0.0, 1.0),  # at L5-S1 only the right foramen is narrowed
        ("L5-S1", "right", "sop-l", 1.0, 0.0),  # a box on another level's key slice scores 0
        ("L3-4", "right", "sop-x", 1.0, 0.0),  # a wrong level: judged against every finding
    ],
)
def test_a_call_is_judged_against_every_finding_at_its_level(
    level: str, side: str, sop: str, side_hit: float, iou: float
) -> None:
    loc = score([_foraminal_row(level, side, sop)], bootstrap_n=5)["localization"]
    assert loc["side_accuracy"][0] == pytest.approx(side_hit)
    assert loc["median_box_iou"] == pytest.approx(iou)


@pytest.mark.parametrize(("level", "hit"), [("L3-4", 1.0), ("L4-5", 1.0), ("L5-S1", 0.0)])
def test_a_finding_over_several_levels_is_at_each_of_them(level: str, hit: float) -> None:
    """Epidural lipomatosis painted from L3-4 to L4-5 (its report: "from L3-4 to L4-5"): a call at
    either level is at the finding, one below it is not."""
    labels = {k: 0 for k in CONDITION_KEYS} | {"epidural_lipomatosis": 1}
    conds = [ConditionResult(k, 0.1, False, 0.5) for k in CONDITION_KEYS]
    conds[CONDITION_KEYS.index("epidural_lipomatosis")] = ConditionResult(
        "epidural_lipomatosis", 0.9, True, 0.5, level=level,
        boxes=[BoxResult("s", "sop-a", 0, [0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4], 0.9)],
    )  # fmt: skip
    key = {"sag_t2": [{"sop_instance_uid": "sop-a", "box_norm": [0.2, 0.2, 0.4, 0.4]}]}
    truth = {"findings": [{"condition": "epidural_lipomatosis", "label": 1, "level": "L3-4",
                           "detail": {"levels": ["L3-4", "L4-5"]}, "key_slices": key}]}  # fmt: skip
    row = {"entry": SimpleNamespace(labels=labels, patient_key="P"),
           "analysis": StudyAnalysis("1", "v", conditions=conds), "truth": truth}  # fmt: skip
    assert score([row], bootstrap_n=5)["localization"]["level_accuracy"][0] == pytest.approx(hit)


def _slice_row(i: int, index: int) -> dict:
    """A canal stenosis on slice ``index`` of a 15-slice sagittal T2 (box [0.4, 0.4, 0.6, 0.6]),
    called present with its box exactly there."""
    sop = f"sop-{i}-{index}"
    labels = {k: 0 for k in CONDITION_KEYS} | {"canal_stenosis": 1}
    conds = [ConditionResult(k, 0.1, False, 0.5) for k in CONDITION_KEYS]
    conds[CONDITION_KEYS.index("canal_stenosis")] = ConditionResult(
        "canal_stenosis", 0.9, True, 0.5, level="L4-5",
        boxes=[BoxResult("s", sop, index, [0, 0, 1, 1], [0.4, 0.4, 0.6, 0.6], 0.9)],
    )  # fmt: skip
    key = {"sag_t2": [{"sop_instance_uid": sop, "index": index, "box_norm": [0.4, 0.4, 0.6, 0.6]}]}
    truth = {"series": [{"key": "sag_t2", "n_slices": 15}],
             "findings": [{"condition": "canal_stenosis", "label": 1, "level": "L4-5", "key_slices": key}]}  # fmt: skip
    return {"entry": SimpleNamespace(labels=labels, patient_key=f"P{i}"),
            "analysis": StudyAnalysis(f"1.{i}", "v", conditions=conds), "truth": truth}  # fmt: skip


def test_the_slice_choosing_prior_scores_zero_off_the_findings_slice() -> None:
    """The mean box placed on the slice the other studies' findings sit on most (the mid-sagittal
    7 of 0..14 here) matches a finding there exactly and scores 0 on a study whose finding is on
    slice 2, where the oracle-slice prior still scores 1; the agent, on the right slice each time,
    scores 1 throughout."""
    rows = [_slice_row(i, 7) for i in range(5)] + [_slice_row(5, 2)]
    loc = score(rows, bootstrap_n=5)["localization"]
    assert loc["median_box_iou"] == pytest.approx(1.0)
    assert loc["median_prior_iou"] == pytest.approx(1.0)
    assert loc["mean_slice_prior_iou"] == pytest.approx(5 / 6)
    assert loc["mean_box_iou"] == pytest.approx(1.0)
