"""Hand-made studies for the dense head's tests: a study whose trunk cells are given (cached as
``dense_cells`` caches them), so a test decides exactly what each cell shows."""

from __future__ import annotations

import numpy as np

from ml.agents.dense import view_key
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.data.types import StudyData


def cached_cells_study(
    uid: str, labels: np.ndarray, cells: np.ndarray, views: list[tuple[int, int, int]], cfg: DiagnosisConfig
) -> StudyFeatures:
    """A study (patient ``P<uid>``) with study ``labels`` [17] and the stride-32 trunk ``cells``
    [V, g, g, C] of its ``views`` [(plane, series, slice)], keyed for ``cfg``'s views."""
    feat = StudyFeatures(StudyData(uid, f"P{uid}", [], labels=labels), None)  # type: ignore[arg-type]
    feat.extras["dense"] = {
        "cells": cells.astype(np.float16),
        "views": views,
        "size": cfg.dense_size,
        "key": view_key(cfg),
    }
    return feat
