"""Study -> report retrieval in finding space: pure tests on hand-built indexes (no SpineFM, no pipeline).

The aligned embeddings are random throughout, as with the demo's barely aligned SpineFM, so any
ranking beyond chance has to come from the diagnosis calls against the reports' extracted labels.
"""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import numpy as np

from ml.agents.analysis import ConditionResult
from ml.agents.artifact import save_artifact
from ml.agents.retrieval import (
    FAMILY,
    LEVEL_VERTEBRAE,
    RetrievalConfig,
    RetrievalIndex,
    level_bits,
    report_findings,
)
from ml.conditions import CONDITION_KEYS

E = 256  # embedding width of the hand-built indexes, SpineFM's
N = 40  # index size


def _feat(case: np.ndarray, uid: str = "query", patient: str = "QP") -> SimpleNamespace:
    """The parts of a ``StudyFeatures`` that retrieval reads."""
    return SimpleNamespace(
        embedding=SimpleNamespace(case=case), study=SimpleNamespace(study_uid=uid, patient_key=patient)
    )


def _calls(probs: np.ndarray, levels: dict[str, str] | None = None) -> list[ConditionResult]:
    """ConditionResults with the given probabilities [17] (present at >= 0.5)."""
    levels = levels or {}
    return [
        ConditionResult(
            condition=k, probability=float(p), present=bool(p >= 0.5), threshold=0.5, level=levels.get(k, "")
        )
        for k, p in zip(CONDITION_KEYS, probs, strict=True)
    ]


def _index(cfg: RetrievalConfig | None = None, *, findings: bool = True, seed: int = 0) -> RetrievalIndex:
    """N reports with distinct random labels [N, 17], random unit embeddings, one patient each."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(N, E)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)  # [N, E]
    arrays = {"report_emb": emb, "study_emb": emb.copy()}
    if findings:
        arrays["report_findings"] = (rng.random((N, len(CONDITION_KEYS))) < 0.4).astype(np.float32)  # [N, 17]
    meta = {
        "study_uids": [f"1.2.{i}" for i in range(N)],
        "patient_keys": [f"P{i}" for i in range(N)],
        "reports": [f"report {i}" for i in range(N)],
    }
    return RetrievalIndex(cfg or RetrievalConfig(), arrays, meta)


def _matching_probs(index: RetrievalIndex, k: int) -> np.ndarray:
    """Confident, not perfect, calls that agree with report k's labels: [17]."""
    assert index.report_findings is not None
    return np.where(index.report_findings[k] > 0.5, 0.85, 0.1)


def _cosine(index: RetrievalIndex, case: np.ndarray) -> np.ndarray:
    return (case / np.linalg.norm(case)) @ index.report_emb.T  # [N]


def test_matching_findings_rank_first_with_uninformative_embeddings():
    index = _index(RetrievalConfig(top_k=3))
    rng = np.random.default_rng(1)
    for k in (0, 7, 23, 39):
        case = rng.normal(size=E).astype(np.float32)  # random: the aligned term carries nothing
        feat = _feat(case)
        scores = index.report_scores([feat], [_calls(_matching_probs(index, k))])[0]
        assert int(np.argmax(scores)) == k
        hits = index.similar([feat], [_calls(_matching_probs(index, k))])[0]
        assert next(h.study_uid for h in hits) == f"1.2.{k}"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        # without the calls, the same query ranks by cosine alone
        np.testing.assert_allclose(index.report_scores([feat])[0], _cosine(index, case), rtol=1e-5)


def test_aligned_term_is_the_cosine_times_the_logit_scale():
    """Two queries with the same calls differ only by the scaled cosine: the terms add in nats."""
    index = _index(RetrievalConfig(aligned_weight=0.5))
    index.meta["logit_scale"] = 20.0
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, E)).astype(np.float32)
    calls = _calls(_matching_probs(index, 3))
    sa, sb = index.report_scores([_feat(a), _feat(b)], [calls, calls])
    np.testing.assert_allclose(sa - sb, 0.5 * 20.0 * (_cosine(index, a) - _cosine(index, b)), rtol=1e-4, atol=1e-6)


def test_old_artifact_without_finding_arrays_ranks_by_cosine(tmp_path):
    """An index saved before the finding arrays (and before the finding config keys) still loads
    and ranks by the aligned cosine, calls or not."""
    new = _index()
    old_cfg = {k: v for k, v in asdict(RetrievalConfig()).items() if k in ("top_k", "exclude_same_patient")}
    old_cfg |= {"text_encoder": "minilm", "text_pooling": "mean", "text_max_length": 256}
    arrays = {"report_emb": new.report_emb, "study_emb": new.study_emb}
    save_artifact(
        tmp_path / "old", FAMILY, old_cfg, arrays, {k: new.meta[k] for k in ("study_uids", "patient_keys", "reports")}
    )
    old = RetrievalIndex.load(tmp_path / "old")
    assert old.report_findings is None
    assert old.report_levels is None
    case = np.random.default_rng(3).normal(size=E).astype(np.float32)
    scores = old.report_scores([_feat(case)], [_calls(_matching_probs(new, 5))])[0]
    np.testing.assert_allclose(scores, _cosine(old, case), rtol=1e-5)
    hits = old.similar([_feat(case)], [_calls(_matching_probs(new, 5))])[0]
    assert hits[0].study_uid == f"1.2.{int(np.argmax(_cosine(old, case)))}"


def test_finding_arrays_survive_save_and_load(tmp_path):
    index = _index()
    index.report_levels = np.full((N, len(CONDITION_KEYS)), level_bits("L4-5"), np.int32)
    index.save(tmp_path / "ret")
    back = RetrievalIndex.load(tmp_path / "ret")
    assert back.report_findings is not None
    assert back.report_levels is not None
    np.testing.assert_array_equal(back.report_findings, index.report_findings)
    np.testing.assert_array_equal(back.report_levels, index.report_levels)
    case = np.random.default_rng(4).normal(size=E).astype(np.float32)
    calls = [_calls(_matching_probs(index, 9), {"canal_stenosis": "L4-5"})]
    np.testing.assert_allclose(back.report_scores([_feat(case)], calls), index.report_scores([_feat(case)], calls))


def test_failed_diagnosis_falls_back_to_cosine():
    index = _index()
    case = np.random.default_rng(5).normal(size=E).astype(np.float32)
    cosine = _cosine(index, case)
    failed = [ConditionResult(condition=k, probability=-1.0, present=False, threshold=-1.0) for k in CONDITION_KEYS]
    for calls in (failed, [], None):
        np.testing.assert_allclose(index.report_scores([_feat(case)], [calls])[0], cosine, rtol=1e-5)
    # one failed condition is left out of the likelihood, as if it had not been called; the others count
    probs = _matching_probs(index, 11)
    partial = _calls(probs)
    partial[0] = ConditionResult(condition=CONDITION_KEYS[0], probability=-1.0, present=False, threshold=-1.0)
    scores = index.report_scores([_feat(case)] * 3, [partial, _calls(probs)[1:], _calls(probs)])
    np.testing.assert_allclose(scores[0], scores[1])
    assert not np.allclose(scores[0], scores[2])
    assert not np.allclose(scores[0], cosine)
    # a batch mixes both: each row on its own
    rows = index.report_scores([_feat(case), _feat(case)], [failed, _calls(probs)])
    np.testing.assert_allclose(rows[0], cosine, rtol=1e-5)
    assert int(np.argmax(rows[1])) == 11


def test_same_study_and_same_patient_are_never_similar():
    index = _index(RetrievalConfig(top_k=5))
    index.patient_keys[12] = "QP"  # the query patient's prior, the best finding match
    case = np.random.default_rng(6).normal(size=E).astype(np.float32)
    calls = [_calls(_matching_probs(index, 12))]
    assert int(np.argmax(index.report_scores([_feat(case)], calls)[0])) == 12
    hits = index.similar([_feat(case)], calls)[0]
    assert len(hits) == 5
    assert "1.2.12" not in {h.study_uid for h in hits}
    # the query study itself (indexed with its own report) is excluded even with the patient rule off
    index.cfg.exclude_same_patient = False
    own = index.similar([_feat(case, uid="1.2.12", patient="QP")], calls)[0]
    assert "1.2.12" not in {h.study_uid for h in own}
    assert index.similar([_feat(case)], calls)[0][0].study_uid == "1.2.12"


REPORTS = [
    "IMPRESSION:\n1. Disc herniation at L4-5.\n2. Spinal canal stenosis at L4-5.",
    "IMPRESSION:\n1. Disc herniation at L2-3.\n2. Spinal canal stenosis at L2-3.",
    "IMPRESSION:\n1. Possible pars interarticularis defect at L5.\n2. No fracture.",
    "IMPRESSION:\n1. Vertebral hemangioma at L3 (T1 and T2 hyperintense).",
    "IMPRESSION:\n1. No acute abnormality.",
]


def test_report_findings_reads_labels_and_levels():
    labels, levels, extractor = report_findings(REPORTS)
    assert labels.shape == levels.shape == (len(REPORTS), len(CONDITION_KEYS))
    assert labels.dtype == np.float32
    assert levels.dtype == np.int32
    assert extractor.startswith("rules/")
    col = {k: i for i, k in enumerate(CONDITION_KEYS)}
    assert labels[0, col["disc_herniation"]] == 1
    assert labels[0, col["canal_stenosis"]] == 1
    assert levels[0, col["disc_herniation"]] == level_bits("L4-5") != levels[1, col["disc_herniation"]]
    assert labels[2, col["pars_defect"]] == 0.5  # hedged
    assert labels[2, col["acute_fracture"]] == 0  # negated
    assert levels[3, col["hemangioma"]] == level_bits("L3")  # not the T1 / T2 of the sequence names
    assert labels[4].sum() == 0
    assert levels[4].sum() == 0


def test_level_bits_key_a_level_by_its_upper_vertebra():
    names = lambda b: [v for i, v in enumerate(LEVEL_VERTEBRAE) if b >> i & 1]  # noqa: E731
    assert names(level_bits("L4-5")) == names(level_bits("L4/L5")) == names(level_bits("L4 on L5")) == ["L4"]
    assert names(level_bits("narrowing at L4-5, L5-S1 and C7-T1")) == ["C7", "L4", "L5"]
    assert names(level_bits("T2 signal change at T11-12")) == ["T11"]
    assert level_bits("") == 0


def test_level_bonus_picks_the_report_at_the_localised_level():
    """Two reports with the same conditions at different levels: the present calls' levels decide."""
    labels, levels, _ = report_findings(REPORTS)
    n = len(REPORTS)
    emb = np.tile(np.eye(1, E, dtype=np.float32), (n, 1))  # identical embeddings: no aligned signal
    meta = {"study_uids": [f"r{i}" for i in range(n)], "patient_keys": [f"P{i}" for i in range(n)], "reports": REPORTS}
    arrays = {"report_emb": emb, "study_emb": emb, "report_findings": labels, "report_levels": levels}
    index = RetrievalIndex(RetrievalConfig(top_k=2), arrays, meta)
    probs = np.where(np.isin(CONDITION_KEYS, ["disc_herniation", "canal_stenosis"]), 0.8, 0.05)
    for level, first in (("L2-3", "r1"), ("L4-5", "r0")):
        calls = _calls(probs, {"disc_herniation": level, "canal_stenosis": level})
        hits = index.similar([_feat(np.eye(1, E, dtype=np.float32)[0])], [calls])[0]
        assert hits[0].study_uid == first
        assert hits[1].study_uid in {"r0", "r1"} - {first}
