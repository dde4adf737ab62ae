"""How ``build_pipeline`` feeds the Medical Report Agent: its training tokens are the calls of
diagnosis agents that never saw the study (patient-level cross-fitting), as at inference."""

from __future__ import annotations

import numpy as np

from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.heads import train_diagnosis
from ml.agents.metrics import auroc
from ml.agents.train import Prepared, cross_fitted_conditions
from ml.conditions import CONDITION_KEYS
from ml.data.manifest import StudyEntry
from ml.data.types import StudyData
from ml.spinefm.embed import CaseEmbedding


def _prepared(n: int = 90, dim: int = 150, seed: int = 0) -> Prepared:
    """Studies whose case features are noise, except that condition 0 is written in feature 0:
    a probe can memorise every label in-sample, but only condition 0 generalises."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = (rng.random((n, len(CONDITION_KEYS))) < 0.4).astype(np.int64)
    x[:, 0] = 2.5 * (y[:, 0] - 0.5) + 0.5 * rng.normal(size=n)
    feats, entries = [], []
    for i in range(n):
        key = f"P{i:03d}"
        study = StudyData(f"1.{i}", key, [], report=f"report {i}", labels=y[i])
        feats.append(StudyFeatures(study, CaseEmbedding(f"1.{i}", x[i], {}, [])))
        entries.append(StudyEntry(study_uid=f"1.{i}", patient_key=key, series=[]))
    return Prepared(entries, feats, [None] * n, None, None)  # type: ignore[arg-type]


def test_report_tokens_are_cross_fitted_not_in_sample():
    prep = _prepared()
    cfg = DiagnosisConfig(feature="case", C=10.0, class_weight=None)
    y = np.stack([f.study.labels for f in prep.feats])

    def aurocs(conds) -> np.ndarray:
        p = np.array([[c.probability for c in row] for row in conds])
        return np.array([auroc(y[:, j], p[:, j]) for j in range(len(CONDITION_KEYS))])

    in_sample = aurocs(train_diagnosis(prep.feats, cfg).predict(prep.feats))
    crossfit = cross_fitted_conditions(prep, cfg, folds=5)
    assert len(crossfit) == len(prep.feats)
    assert all([c.condition for c in row] == list(CONDITION_KEYS) for row in crossfit)
    out = aurocs(crossfit)
    # in-sample the noise conditions look learnt (memorised); out of fold they are at chance
    assert np.mean(in_sample[1:]) > 0.8
    assert np.mean(out[1:]) < 0.65
    # the real signal survives cross-fitting: the tokens still carry what generalises
    assert out[0] > 0.8
