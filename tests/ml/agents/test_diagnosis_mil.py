"""The optional MIL head of the Diagnosis Agents: it finds a finding that lives on one slice of a
series (where the mean-pooled probe cannot), is calibrated like the probes, and round-trips."""

from __future__ import annotations

import numpy as np

from ml.agents.diagnosis import DiagnosisConfig, fit_probes
from ml.agents.features import StudyFeatures
from ml.agents.heads import load_diagnosis, train_diagnosis
from ml.agents.metrics import auroc
from ml.agents.mil import MILDiagnosisAgents
from ml.conditions import CONDITION_KEYS
from ml.data.types import SeriesData, StudyData
from ml.spinefm.embed import CaseEmbedding, SeriesEmbedding

D = 16


def _studies(n: int, seed: int) -> list[StudyFeatures]:
    """Condition j < 4 present: one random slice of the T2 series carries +4 on feature j."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = rng.integers(0, 2, len(CONDITION_KEYS))
        s = int(rng.integers(14, 24))
        slices = rng.normal(size=(s, D)).astype(np.float32)
        for j in range(4):
            if labels[j] == 1:
                slices[int(rng.integers(s)), j] += 4.0
        if i % 9 == 0:
            labels[5] = -1  # uncertain: excluded from fitting
        t1 = rng.normal(size=(10, D)).astype(np.float32)
        series = [
            SeriesData(f"{seed}.{i}.2", "T2", np.zeros((s, 1, 1), np.float32), plane="sagittal"),
            SeriesData(f"{seed}.{i}.1", "T1", np.zeros((10, 1, 1), np.float32), plane="sagittal"),
        ]
        embs = [
            SeriesEmbedding(series[0].series_uid, "T2", "T2", np.zeros(4), slices, np.ones(s) / s, None),
            SeriesEmbedding(series[1].series_uid, "T1", "T1", np.zeros(4), t1, np.ones(10) / 10, None),
        ]
        study = StudyData(f"{seed}.{i}", f"P{seed}-{i}", series, labels=labels.astype(np.int64))
        out.append(StudyFeatures(study, CaseEmbedding(study.study_uid, np.zeros(4), {}, embs)))
    return out


def test_mil_head_finds_one_slice_findings_and_round_trips(tmp_path) -> None:
    train, test = _studies(120, seed=0), _studies(60, seed=1)
    cfg = DiagnosisConfig(head="mil", mil_epochs=60)
    agents = train_diagnosis(train, cfg)
    assert isinstance(agents, MILDiagnosisAgents)
    assert agents.trained[:4].all()
    p = agents.probabilities(test)  # [60, 17]
    y = np.stack([f.study.labels for f in test])

    mean_x = np.stack([np.concatenate([e.slices.mean(0) for e in f.embedding.series]) for f in train])
    probe = fit_probes(mean_x, np.stack([f.study.labels for f in train]), [f.study.patient_key for f in train],
                       DiagnosisConfig())  # fmt: skip
    test_x = np.stack([np.concatenate([e.slices.mean(0) for e in f.embedding.series]) for f in test])
    p_lin = probe.infer((test_x - probe.mean) / probe.std)
    mil = [auroc(y[:, j], p[:, j]) for j in range(4)]
    lin = [auroc(y[:, j], p_lin[:, j]) for j in range(4)]
    assert min(mil) > 0.75, mil
    assert np.mean(mil) > np.mean(lin) + 0.1, (mil, lin)
    assert abs(np.mean([auroc(y[:, j], p[:, j]) for j in range(8, 17)]) - 0.5) < 0.15  # no signal, none found

    assert (agents.temperature > 0).all()
    assert ((agents.threshold >= 0) & (agents.threshold <= 1)).all()
    conds = agents.predict(test[:2])
    assert [c.condition for c in conds[0]] == list(CONDITION_KEYS)
    assert all(c.present == (c.probability >= c.threshold) for c in conds[0])

    version = agents.save(tmp_path / "diag")
    back = load_diagnosis(tmp_path / "diag")
    assert isinstance(back, MILDiagnosisAgents)
    assert back.version == version
    np.testing.assert_allclose(back.probabilities(test), p, rtol=1e-5, atol=1e-6)
