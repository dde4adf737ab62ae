"""The Diagnosis Agents' heads by name: ``diagnosis.head`` picks the one to train, and a saved
artifact's config picks the class that loads it.

* ``linear`` (``ml.agents.diagnosis``): the paper's light probes on one vector per study;
* ``mil`` (``ml.agents.mil``): attention over SpineFM slice features;
* ``dense`` (``ml.agents.dense``, the default): generic CNN cells of spine crops at near-native
  resolution, box-supervised.

Why a module of its own: the heads share the probes' calibration helpers in ``diagnosis.py``,
so the dispatch sits above all three and none of them imports another's trainer (no import
cycle). Every head is a ``diagnosis.DiagnosisHead``: ``predict`` / ``probabilities`` / ``save`` /
``load`` / ``run`` and ``cfg`` / ``version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ml.agents.artifact import load_artifact
from ml.agents.diagnosis import FAMILY, DiagnosisAgents, DiagnosisConfig, DiagnosisHead, fit_probes, labels_matrix
from ml.agents.features import StudyFeatures

HEADS = ("linear", "mil", "dense")


def train_diagnosis(
    feats: list[StudyFeatures], cfg: DiagnosisConfig | None = None, truths: list[dict | None] | None = None
) -> Any:
    """Fit the 17 agents on ``feats`` (training studies only; the caller holds out test patients)
    with the head ``cfg.head``; the dense head also learns from the generator's boxes in ``truths``."""
    cfg = cfg or DiagnosisConfig()
    if cfg.head == "dense":
        from ml.agents.dense_train import train_dense

        return train_dense(feats, cfg, truths)
    if cfg.head == "mil":
        from ml.agents.mil import train_mil

        return train_mil(feats, cfg)
    if cfg.head != "linear":
        raise ValueError(f"unknown diagnosis head {cfg.head!r}; known: {', '.join(HEADS)}")
    x = np.stack([f.diagnosis_vector(cfg.feature, tuple(cfg.classes)) for f in feats])  # [N, F]
    return fit_probes(x, labels_matrix(feats), [f.study.patient_key for f in feats], cfg)


def load_diagnosis(folder: str | Path) -> DiagnosisHead:
    """The saved Diagnosis Agents of any head: the diagnosis family's loader
    (``ml.agents.protocol.FAMILIES``)."""
    cfg, arrays, doc = load_artifact(folder, FAMILY, DiagnosisConfig)
    if cfg.head == "dense":
        from ml.agents.dense import DenseDiagnosisAgents

        return DenseDiagnosisAgents.from_artifact(cfg, arrays, doc)
    if cfg.head == "mil":
        from ml.agents.mil import MILDiagnosisAgents

        return MILDiagnosisAgents.from_artifact(cfg, arrays, doc)
    return DiagnosisAgents.from_artifact(cfg, arrays, doc)
