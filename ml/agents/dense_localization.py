"""Key slices, boxes, levels and sides from the dense diagnosis head's cells.

Why: the slice heads of ``ml.agents.localization`` regress a box from one feature vector per
slice, which says *whether* a slice shows a finding but hardly *where* in it (their boxes were no
better than the mean box). The dense head already scores every stride-32 cell of every view
for every condition, and was trained with the generator's boxes as cell targets, so the cells
that fire are where the finding is:

* **key slices**: the views ranked by their best cell for the condition (a fused sagittal view
  is a slice of the sagittal T2 reference series; the same slice of T1/STIR is the same plane);
* **box**, one per plane (best view of that plane): the connected cells around the best cell
  whose logit is within ``margin`` of it, mapped from the view's crop window to preprocessed
  and then original pixels (``SeriesGeometry``) and patient mm;
* **level**: the Localization Agents' level head (plane, slice position, box centre, condition),
  which learnt the anatomy from true boxes; **side**: ``side_of`` (geometry).

The slice heads stay the fallback for a pipeline without a dense head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ml.agents.analysis import BoxResult, ConditionResult, SliceRef
from ml.agents.features import StudyFeatures
from ml.agents.localization import LocalizationAgents, _frame, _level_design, _sop, side_of
from ml.conditions import CONDITION_KEYS

PLANE_NAMES = ("sagittal", "axial")  # the dense views' plane index


def cell_box(zmap: np.ndarray, margin: float) -> tuple[tuple[float, float], tuple[float, float, float, float]]:
    """Where a view's map fires, in cell units: the centre (x, y) of the connected region of
    cells within ``margin`` of the best one (weighted by exp(z - max), so a neighbour that nearly
    fires pulls the centre towards it: sub-cell precision), and the region's outline.
    zmap: [G, G] logits; -> ((cx, cy), (x0, y0, x1, y1))."""
    r, c = np.unravel_index(int(np.argmax(zmap)), zmap.shape)
    labels, _ = ndimage.label(zmap >= zmap[r, c] - margin)
    rows, cols = np.nonzero(labels == labels[r, c])
    w = np.exp(zmap[rows, cols] - zmap[r, c])
    centre = (float((w * (cols + 0.5)).sum() / w.sum()), float((w * (rows + 0.5)).sum() / w.sum()))
    return centre, (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


def localize_from_cells(
    feat: StudyFeatures,
    d: dict[str, Any],
    z: np.ndarray,
    results: list[ConditionResult],
    agents: LocalizationAgents | None,
    *,
    box_wh: np.ndarray | None = None,
    top_k: int = 3,
    max_boxes: int = 2,
    margin: float = 1.0,
    side_margin_mm: float = 6.0,
) -> list[ConditionResult]:
    """Fill each result's key slices, boxes, level and side from the cell logits ``z``
    [V, G, G, 17] of the views ``d["views"]`` ([(plane index, series index, slice index)]).
    ``box_wh`` [2, 17, 2]: the typical box size per plane and condition (fraction of the
    preprocessed square, ``dense.box_sizes``); where known the box is that size around the
    cells' centre, else the outline of the cells."""
    views, crops = d["views"], d.get("crops")
    if not len(views):
        return results
    series = feat.study.series
    g = z.shape[1]
    for result in results:
        j = CONDITION_KEYS.index(result.condition)
        best = z[..., j].reshape(len(views), -1).max(1)  # [V]
        order = np.argsort(-best)
        seen: set[tuple[int, int]] = set()
        refs = []
        for v in order:
            _, si, k = views[v]
            if (si, k) in seen:
                continue  # two tiles of one sagittal slice
            seen.add((si, k))
            s = series[si]
            refs.append(SliceRef(s.series_uid, _sop(s, k), int(k), round(float(best[v]), 4), _frame(s, k)))
            if len(refs) >= top_k:
                break
        result.key_slices = refs
        planes_done: set[int] = set()
        for v in order:
            plane, si, k = views[v]
            s = series[si]
            if plane in planes_done or s.geometry is None or len(result.boxes) >= max_boxes:
                continue
            planes_done.add(plane)
            (cx, cy), (cx0, cy0, cx1, cy1) = cell_box(z[v, :, :, j], margin)
            x0, y0, side = crops[v] if crops else (0, 0, s.geometry.size)
            wh = box_wh[plane, j] * s.geometry.size if box_wh is not None else np.zeros(2)
            if wh.min() > 0:
                mx, my = x0 + cx * side / g, y0 + cy * side / g
                pre = np.array([mx - wh[0] / 2, my - wh[1] / 2, mx + wh[0] / 2, my + wh[1] / 2])
            else:
                pre = np.array([x0 + cx0 * side / g, y0 + cy0 * side / g, x0 + cx1 * side / g, y0 + cy1 * side / g])
            pre = np.clip(pre, 0, s.geometry.size)
            xyxy = s.geometry.to_original(pre)
            result.boxes.append(
                BoxResult(
                    series_uid=s.series_uid,
                    sop_uid=_sop(s, k),
                    index=int(k),
                    xyxy=[round(float(c), 2) for c in xyxy],
                    xyxy_norm=[round(float(c), 5) for c in s.geometry.normalise(xyxy)],
                    score=round(float(best[v]), 4),
                    patient_mm=s.geometry.box_to_patient(int(k), xyxy),
                    frame=_frame(s, k),
                )
            )
            if len(result.boxes) == 1 and agents is not None:
                rel = k / max(1, len(s.sop_uids) - 1)
                if agents.levels:
                    design = _level_design(PLANE_NAMES[plane], rel, pre / s.geometry.size, result.condition)
                    result.level = agents.levels[int(np.argmax(agents.level_w @ design + agents.level_b))]
                if result.condition in agents.sided:
                    result.side = side_of(s, int(k), xyxy, side_margin_mm)
    return results
