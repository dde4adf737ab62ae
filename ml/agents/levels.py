"""Where a localised finding sits on the spine: its level (the Localization Agents' level head)
and the mid-sagittal plane its side is measured from.

Why a module of its own: both localization paths use them, the slice heads
(``ml.agents.localization``) and the dense head's cells (``ml.agents.cell_localization``), and
the Localization Agents run either path; with these here neither path's module imports the other's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ml.agents.features import PLANES
from ml.conditions import CONDITION_KEYS
from ml.data.types import StudyData

if TYPE_CHECKING:
    from ml.agents.localization import LocalizationAgents


def level_design(plane: str | None, rel: float, box_pre: np.ndarray, condition: str) -> np.ndarray:
    """The level head's input: plane one-hot, plane-specific (relative slice position, box centre)
    terms and the condition one-hot."""
    p = np.zeros(len(PLANES))
    if plane in PLANES:
        p[PLANES.index(plane)] = 1
    cx, cy = (box_pre[0] + box_pre[2]) / 2, (box_pre[1] + box_pre[3]) / 2
    inter = np.outer(p, [rel, cx, cy]).ravel()  # [9] plane-specific position terms
    c = np.zeros(len(CONDITION_KEYS))
    c[CONDITION_KEYS.index(condition)] = 1
    return np.concatenate([p, inter, c])


def level_of(agents: LocalizationAgents, plane: str | None, rel: float, box_pre: np.ndarray, condition: str) -> str:
    """The level head's answer for a box (normalised preprocessed [x0, y0, x1, y1]) on a slice at
    relative position ``rel`` of its stack."""
    g = level_design(plane, rel, box_pre, condition)
    return agents.levels[int(np.argmax(agents.level_w @ g + agents.level_b))]


def level_cells(
    agents: LocalizationAgents, plane: str | None, rel: float, centres: np.ndarray, condition: str
) -> np.ndarray:
    """The level head's answer (an index into ``agents.levels``) for a point box at each of
    ``centres`` [N, 2] (normalised preprocessed x, y) on a slice at relative position ``rel``:
    which level each cell of a view lies at."""
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)  # a point box: its centre is the point
    one = level_design(plane, rel, np.zeros(4), condition)  # [F]: plane, position terms, condition
    g = np.repeat(one[None], len(c), axis=0)  # [N, F], every row built as ``level_design`` builds it
    p = one[: len(PLANES)]
    n = len(PLANES)
    for k, v in enumerate(p):  # plane k's (cx, cy) terms of the outer product (its rel term is in ``one``)
        g[:, n + 3 * k + 1] = v * c[:, 0]
        g[:, n + 3 * k + 2] = v * c[:, 1]
    return np.argmax(g @ agents.level_w.T + agents.level_b, axis=1)


def midline_x(study: StudyData) -> float | None:
    """Patient x (LPS, mm) of the mid-sagittal plane: the middle slice of the sagittal series (a
    sagittal stack is planned centred on the canal). None without a sagittal series with geometry."""
    sag = [s for s in study.series if s.plane == "sagittal" and s.geometry is not None]
    sag.sort(key=lambda s: s.sequence_class != "T2")  # the T2 reference first, as the dense views
    for s in sag:
        g = s.geometry
        if g is None or g.positions is None or not len(g.positions):
            continue
        p = g.pixel_to_patient(len(g.positions) // 2, g.columns / 2, g.rows / 2)
        if p is not None:
            return float(p[0])
    return None
