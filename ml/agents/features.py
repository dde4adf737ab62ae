"""What the agents see of a study: SpineFM outputs, computed once and shared by every agent.

``StudyFeatures`` bundles the ``CaseEmbedding`` (case / per-class / per-series / per-slice
features) with the geometry the localisation agents need (SOP UIDs, ``SeriesGeometry``).
``encode_studies`` runs SpineFM once for a batch of studies: the model encodes the slices of all
series of all studies of one sequence class in large batches (``SpineFM.forward``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml.data.types import SEQUENCE_CLASSES, SeriesData, StudyData
from ml.spinefm.embed import CaseEmbedding, SeriesEmbedding, embed_studies

DIAGNOSIS_FEATURES = ("case", "slices", "case+slices")
PLANES = ("sagittal", "axial", "coronal")


@dataclass
class StudyFeatures:
    study: StudyData
    embedding: CaseEmbedding
    # what an agent derived from the pixels and keeps after they are freed (``dense``: the
    # dense diagnosis head's trunk cells, ``ml.agents.dense``)
    extras: dict[str, Any] = field(default_factory=dict)

    def pairs(self, classes: tuple[str, ...] = SEQUENCE_CLASSES) -> list[tuple[SeriesData, SeriesEmbedding]]:
        """(series, its embedding) for the series of ``classes``."""
        return [
            (s, e) for s, e in zip(self.study.series, self.embedding.series, strict=True) if s.sequence_class in classes
        ]

    def diagnosis_vector(self, kind: str, classes: tuple[str, ...] = SEQUENCE_CLASSES) -> np.ndarray:
        """Study-level feature of a diagnosis probe, restricted to the series of ``classes``.

        ``case``: the L2-normalised case embedding [E] (over ``classes``: the all-series case when
        every class is allowed, else the per-class case, averaged when several).
        ``slices``: mean slice features per encoder class, concatenated [3 * D] (zeros for a class
        that is absent: the T1 and T2 encoders have different feature spaces).
        ``case+slices``: both [E + 3 * D].
        """
        if kind not in DIAGNOSIS_FEATURES:
            raise ValueError(f"unknown diagnosis feature {kind!r}; choose from {DIAGNOSIS_FEATURES}")
        emb = self.embedding
        parts = []
        if kind in ("case", "case+slices"):
            if set(classes) >= set(SEQUENCE_CLASSES):
                parts.append(emb.case)
            else:
                have = [emb.by_class[c] for c in classes if c in emb.by_class]
                parts.append(np.mean(have, 0) if have else np.zeros_like(emb.case))
        if kind in ("slices", "case+slices"):
            d = emb.series[0].slices.shape[1]
            for c in SEQUENCE_CLASSES:
                feats = [e.slices for s, e in self.pairs((c,)) if c in classes]
                parts.append(np.concatenate(feats).mean(0) if feats else np.zeros(d, np.float32))
        return np.concatenate(parts).astype(np.float32)


def slice_design(series: SeriesData, emb: SeriesEmbedding) -> np.ndarray:
    """Per-slice input of the localisation heads: [S, D + 1 + 3 + 3] = slice feature, relative
    position in the stack (0..1), sequence-class one-hot, plane one-hot."""
    s = emb.slices.shape[0]
    rel = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None] if s > 1 else np.full((1, 1), 0.5, np.float32)
    cls = np.zeros((s, len(SEQUENCE_CLASSES)), np.float32)
    cls[:, SEQUENCE_CLASSES.index(series.sequence_class)] = 1
    plane = np.zeros((s, len(PLANES)), np.float32)
    if series.plane in PLANES:
        plane[:, PLANES.index(series.plane)] = 1
    return np.concatenate([emb.slices.astype(np.float32), rel, cls, plane], 1)


def encode_studies(
    studies: list[StudyData], model, batch_size: int = 256, studies_per_batch: int = 16
) -> list[StudyFeatures]:
    """SpineFM once per study; ``studies_per_batch`` studies share one forward (slices of a class
    from all of them encoded together in chunks of ``batch_size``)."""
    out: list[StudyFeatures] = []
    for i in range(0, len(studies), studies_per_batch):
        chunk = studies[i : i + studies_per_batch]
        embs = embed_studies(chunk, model, batch_size=batch_size)
        out += [StudyFeatures(st, e) for st, e in zip(chunk, embs, strict=True)]
    return out
