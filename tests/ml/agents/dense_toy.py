"""Hand-made studies for the dense head's tests: a study whose trunk cells are given (cached as
``dense_cells`` caches them), so a test decides exactly what each cell shows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ml.agents.dense import TRUNK_CHANNELS, view_key
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.conditions import CONDITION_KEYS
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


def pattern_studies(
    n: int,
    seed: int,
    cfg: DiagnosisConfig,
    views: list[tuple[int, int, int]],
    paint: Callable[[np.ndarray, np.random.Generator, bool, np.ndarray], None],
    grid: int = 4,
) -> tuple[list[StudyFeatures], np.ndarray]:
    """``n`` studies of noise cells [len(views), grid, grid, C], condition 0 present in about half
    (labels [n, 17], the rest 0); ``paint(cells, rng, present, pattern)`` adds the test's fixed
    pattern (one draw, the same in every study) where the case says. Returns (studies, labels)."""
    rng = np.random.default_rng(seed)
    pattern = np.random.default_rng(99).normal(size=TRUNK_CHANNELS)
    y = np.zeros((n, len(CONDITION_KEYS)), np.int64)
    y[:, 0] = rng.random(n) < 0.5
    out = []
    for i in range(n):
        cells = rng.normal(size=(len(views), grid, grid, TRUNK_CHANNELS))
        paint(cells, rng, bool(y[i, 0]), pattern)
        out.append(cached_cells_study(f"1.{seed}.{i}", y[i], cells, views, cfg))
    return out, y
