"""Localization from the dense diagnosis head's cells (the default pipeline's path).

Why: a slice head says *whether* a slice shows a finding, hardly *where* (its boxes were no
better than the mean box); the dense head scores every cell of every view, trained with the
generator's boxes as cell targets, so the cells that fire are where the finding is, and its box
regressor (``ml/agents/dense_boxes.py``) says where inside the cell.

The reading order of a radiologist, and of the RSNA 2024 lumbar winners: **sagittal first**.
The sagittal view sees every level at once, so the finding's box is placed there; the level is
read from that box (the level head, ``LocalizationAgents.levels``); the **axial** box goes on
the axial slice that passes closest to the sagittal box in patient space (a per-disc axial
stack is planned through the discs, so that is the slice of the same level). Without a
sagittal view the best axial view is used alone.

Side: the left-right offset from the midline (the mid-sagittal slice's plane, where the canal
is) in patient mm (DICOM LPS: +x = patient left) of the box the finding was placed with first,
the **sagittal** one: the offset of the sagittal slice whose cells fire is a measurement of
laterality, while the axial cells barely tell left from right (the contralateral recess or
foramen looks alike to them: on the findings' own axial key slices the stronger half named
the side 0.50-0.61 of the time even on the training studies), and for findings below the
last disc (sacral perineural cysts) the nearest axial slice does not pass through the finding
at all. The axial box gives the side only without a sagittal box. The offset is read only as
the condition's training findings allow (``localization_train.side_rules``): a condition
always central (canal stenosis) or nearly always bilateral (pars defects) gets that side;
left/right-only conditions get the sign; conditions that are also central (disc herniation)
are central within the margin learnt from the training findings measured the same way
(``localization_train.central_margin`` over ``side_offsets``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ml.agents.analysis import BoxResult, ConditionResult, SliceRef
from ml.agents.cell_levels import PLANE_NAMES, choose_level, level_evidence, view_levels, view_window
from ml.agents.dense_views import canal_tile_views
from ml.agents.features import StudyFeatures
from ml.agents.levels import level_of, midline_x
from ml.conditions import CONDITION_KEYS
from ml.data.types import SeriesData

# A canal tile places a condition's box only where canal tiles held at least this share of the
# condition's training boxes whole: 0.98-1.0 for what lies in or at the canal (herniation,
# stenoses, cysts, intradural lesions, hemangioma), 0.4-0.8 for what runs past a tile's edge
# (vertebral bodies, slips over two levels, lipomatosis) on the demo's training studies.
CANAL_BOX_FIT = 0.9


def cell_box(zmap: np.ndarray, margin: float) -> tuple[tuple[float, float], tuple[float, float, float, float]]:
    """Where a view's map [G, G] fires, in cells: the centre (x, y) of the connected cells within
    ``margin`` of the best (weighted by exp(z - max): sub-cell precision), and their outline."""
    r, c = np.unravel_index(int(np.argmax(zmap)), zmap.shape)
    labels, _ = ndimage.label(zmap >= zmap[r, c] - margin)
    rows, cols = np.nonzero(labels == labels[r, c])
    w = np.exp(zmap[rows, cols] - zmap[r, c])
    centre = (float((w * (cols + 0.5)).sum() / w.sum()), float((w * (rows + 0.5)).sum() / w.sum()))
    return centre, (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


def regressed_box(zmap: np.ndarray, reg: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    """The box (cx, cy, w, h) in cells from the box regressor ``reg`` [G, G, 4] (dx, dy, log w,
    log h per cell): each connected cell within ``margin`` of the best votes its own box,
    weighted by exp(z - max), so one noisy cell does not decide alone."""
    r, c = np.unravel_index(int(np.argmax(zmap)), zmap.shape)
    labels, _ = ndimage.label(zmap >= zmap[r, c] - margin)
    rows, cols = np.nonzero(labels == labels[r, c])
    w = np.exp(zmap[rows, cols] - zmap[r, c])
    w = w / w.sum()
    g = reg[rows, cols]  # [n, 4]
    cx = float((w * (cols + 0.5 + g[:, 0])).sum())
    cy = float((w * (rows + 0.5 + g[:, 1])).sum())
    bw, bh = (float(np.exp((w * g[:, i]).sum())) for i in (2, 3))
    return cx, cy, bw, bh


def decide_side(rule: dict[str, Any] | None, dx_mm: float | None, margin_mm: float) -> str:
    """The side of a finding ``dx_mm`` from the midline (LPS: + is the patient's left); "central"
    within the rule's learnt margin (``margin_mm`` for a rule without one)."""
    if not rule:
        return ""
    if rule["only"]:
        return str(rule["only"])
    if dx_mm is None:
        return ""
    if "central" in rule["sides"] and abs(dx_mm) < rule.get("central_mm", margin_mm):
        return "central"
    return "left" if dx_mm > 0 else "right"


def _nearest_axial(series: list[SeriesData], views, cands: list[int], point: np.ndarray | None) -> int:
    """Of the axial views ``cands`` (best first), the one whose slice plane passes closest to
    ``point`` (patient mm); the best one without a point or geometry."""
    if point is None:
        return cands[0]
    dists = []
    for v in cands:
        _, si, k = views[v]
        g = series[si].geometry
        d = g.plane_distance(k, point) if g is not None else None
        if d is None:
            return cands[0]
        dists.append(d)
    return cands[int(np.argmin(dists))]


def localize_from_cells(
    feat: StudyFeatures,
    d: dict[str, Any],
    z: np.ndarray,
    results: list[ConditionResult],
    agents: Any | None,
    *,
    box_wh: np.ndarray | None = None,
    reg: np.ndarray | None = None,
    top_k: int = 3,
    max_boxes: int = 2,
    margin: float = 1.0,
    side_margin_mm: float = 6.0,
    axial_from_sagittal: bool = True,
    side_profile: float = 0.0,
    level_sources: dict[str, str] | None = None,
    canal_fit: np.ndarray | None = None,
) -> list[ConditionResult]:
    """Fill each result's key slices, boxes (sagittal first, then axial), level and side.

    z: the cell logits [V, G, G, 17] of the views ``d["views"]`` ([(plane, series index, slice
    index)]; a fused sagittal view is a slice of the sagittal T2 reference series); reg: the box
    regressor's cells [V, G, G, 17, 4] (or None: a box of the typical size ``box_wh`` [2, 17, 2]
    at the firing cells, or their outline); agents: the ``LocalizationAgents`` whose level head
    and side rules are used (None: no level or side); a condition's level is read from both
    planes' cells where the agents' config says so (``level_both_planes``, ``ml.agents.cell_levels``),
    else on the sagittal box; ``level_sources`` ({condition: source}) replaces that (experiments);
    canal_fit [17]: the share of each condition's training boxes a canal tile held whole
    (``dense_boxes.canal_box_counts``): below ``CANAL_BOX_FIT`` its box is placed on a spine
    tile, the canal tiles still naming its key slices (None: any sagittal view)."""
    views = d["views"]
    if not len(views):
        return results
    series = feat.study.series
    rules = (agents.meta.get("side_rules") or {}) if agents is not None else {}
    cfg = getattr(agents, "cfg", None)
    sources = dict.fromkeys(getattr(cfg, "level_both_planes", ()), "both") if level_sources is None else level_sources
    mid_x = midline_x(feat.study)
    canal = canal_tile_views(d) if canal_fit is not None else set()
    for result in results:
        j = CONDITION_KEYS.index(result.condition)
        best = z[..., j].reshape(len(views), -1).max(1)  # [V]
        order = [int(v) for v in np.argsort(-best)]
        seen: set[tuple[int, int]] = set()
        refs = []
        for v in order:
            _, si, k = views[v]
            if (si, k) in seen:
                continue  # two tiles of one sagittal slice
            seen.add((si, k))
            s = series[si]
            refs.append(SliceRef(s.series_uid, sop_of(s, k), int(k), round(float(best[v]), 4), frame_of(s, k)))
            if len(refs) >= top_k:
                break
        result.key_slices = refs
        sag = [v for v in order if views[v][0] == 0 and series[views[v][1]].geometry is not None]
        if canal and canal_fit is not None and canal_fit[j] < CANAL_BOX_FIT:
            sag = [v for v in sag if v not in canal] or sag  # its boxes run past a canal tile's edge
        ax = [v for v in order if views[v][0] == 1 and series[views[v][1]].geometry is not None]
        level = _sourced_level(feat, d, z, j, agents, result.condition, sag, sources)
        if level is not None:  # the sagittal view and cells at the level its source chose
            v0, keep, _ = level
            sag = [v0, *(v for v in sag if v != v0)]
            placed = {v0: _place(feat, d, z, reg, box_wh, v0, j, margin, keep)}  # [x0, y0, x1, y1]
        else:
            placed = {
                v: _place(
                    feat, d, z, reg, box_wh, v, j, margin, _same_level(feat, d, z, v, j, agents, result.condition)
                )
                for v in sag[:1]
            }
        if ax:
            if sag and axial_from_sagittal:
                centre_mm = _box_centre_mm(feat, d, sag[0], placed[sag[0]])
                placed[_nearest_axial(series, views, ax, centre_mm)] = np.zeros(4)
            else:
                placed[ax[0]] = np.zeros(4)
        for v in list(placed)[:max_boxes]:
            plane, si, k = views[v]
            s = series[si]
            pre = placed[v] if plane == 0 else _place(feat, d, z, reg, box_wh, v, j, margin)
            xyxy = s.geometry.to_original(pre)
            result.boxes.append(
                BoxResult(
                    series_uid=s.series_uid,
                    sop_uid=sop_of(s, k),
                    index=int(k),
                    xyxy=[round(float(c), 2) for c in xyxy],
                    xyxy_norm=[round(float(c), 5) for c in s.geometry.normalise(xyxy)],
                    score=round(float(best[v]), 4),
                    patient_mm=s.geometry.box_to_patient(int(k), xyxy),
                    frame=frame_of(s, k),
                )
            )
            if len(result.boxes) == 1 and agents is not None and agents.levels:
                rel = k / max(1, len(s.sop_uids) - 1)
                result.level = level_of(agents, PLANE_NAMES[plane], rel, pre / s.geometry.size, result.condition)
                if level is not None and plane == 0:  # the level its source chose (the box is on its cells)
                    result.level = agents.levels[level[2]]
        if agents is not None and result.boxes and result.condition in rules:
            dx = side_offset_mm(series, result.boxes, mid_x)
            if side_profile > 0 and sag and mid_x is not None:
                profile = profile_offset_mm(feat, d, z, sag[0], j, placed[sag[0]], mid_x, side_profile)
                dx = dx if profile is None else profile
            result.side = decide_side(rules[result.condition], dx, side_margin_mm)
    return results


def profile_offset_mm(
    feat: StudyFeatures, d: dict[str, Any], z: np.ndarray, v: int, j: int, pre: np.ndarray, mid_x: float, tau: float
) -> float | None:
    """The patient-x offset (mm) from the midline of where condition ``j`` is seen, read from
    every sagittal slice at once: the softmax(z / ``tau``)-weighted mean of the slices' x, where z is
    each slice's best logit under the sagittal box ``pre`` placed on view ``v`` (same tile).

    Why: a lesion is seen on two or three neighbouring sagittal slices and the best-firing one of
    them is a coin toss between neighbours (a central herniation was named left or right from
    the slice beside the midline); the weighted mean of the slices sits between them."""
    _, si, _ = d["views"][v]
    s = feat.study.series[si]
    g = z.shape[1]
    x0, y0, cell, _ = view_window(feat, d, v, g)
    window = d["crops"][v] if d.get("crops") else None
    # the cells under the box (as ``dense_boxes.covered_cells``, which this module cannot import:
    # dense_boxes reads the truth through ``localization``, which imports this module), except
    # that a predicted box wholly past the tile's far edge reads the edge cells: a max needs one
    bx0, by0, bx1, by1 = np.clip((np.asarray(pre, float) - [x0, y0, x0, y0]) / cell, 0, g)
    c0, r0 = min(int(bx0), g - 1), min(int(by0), g - 1)
    c1, r1 = min(max(int(np.ceil(bx1)), c0 + 1), g), min(max(int(np.ceil(by1)), r0 + 1), g)
    ox0, oy0, ox1, oy1 = s.geometry.to_original(pre)
    xs, zs = [], []
    for u, (plane, sj, k) in enumerate(d["views"]):
        if plane != 0 or sj != si or (window is not None and tuple(d["crops"][u]) != tuple(window)):
            continue
        p = s.geometry.pixel_to_patient(int(k), (ox0 + ox1) / 2, (oy0 + oy1) / 2)
        if p is None:
            continue
        xs.append(float(p[0]))
        zs.append(float(z[u, r0:r1, c0:c1, j].max()))
    if not zs:
        return None  # no slice with geometry: the caller keeps the best slice's offset
    w = np.exp((np.asarray(zs) - max(zs)) / tau)
    return float((w * np.asarray(xs)).sum() / w.sum()) - mid_x


def side_offset_mm(series: list[SeriesData], boxes: list[BoxResult], mid_x: float | None) -> float | None:
    """The patient-x offset (mm, LPS: + is the patient's left) from the midline ``mid_x`` of the
    box the side is read on: the first sagittal box (its slice's offset), else the first box.
    None without a box, a midline or geometry."""
    if not boxes or mid_x is None:
        return None
    planes = {s.series_uid: s.plane for s in series}
    box = next((b for b in boxes if planes.get(b.series_uid) == "sagittal"), boxes[0])
    p = _centre_mm_of(series, box)
    return None if p is None else float(p[0] - mid_x)


def _same_level(feat: StudyFeatures, d, z: np.ndarray, v: int, j: int, agents: Any | None, condition: str):
    """[G, G] bool: the cells of sagittal view ``v`` that the level head reads at the level of the
    condition's best cell there (None without a level head). Why: the cells within the margin of
    the best one often run on to the next disc or vertebra, and a box voted by both lands
    between them; the finding's box is at one level (median IoU 0.39 -> 0.43 on held-out studies)."""
    if agents is None or not getattr(agents, "levels", None):
        return None
    g = z.shape[1]
    lv = view_levels(feat, d, v, g, agents, condition)
    r, c = np.unravel_index(int(np.argmax(z[v, :, :, j])), (g, g))
    return lv == lv[r, c]


def _sourced_level(
    feat: StudyFeatures, d, z: np.ndarray, j: int, agents: Any | None, condition: str, sag: list[int], sources: dict
) -> tuple[int, np.ndarray, int] | None:
    """(the sagittal view, its cells [G, G] at the level, the level index) for a condition whose
    level source is not ``sagittal`` (``cell_levels``); None for the plain sagittal reading."""
    source = sources.get(condition, "sagittal")
    if source == "sagittal" or agents is None or not getattr(agents, "levels", None) or not sag:
        return None
    maps = {v: view_levels(feat, d, v, z.shape[1], agents, condition) for v in sag}  # [G, G] each
    level = choose_level(*level_evidence(feat, d, z, j, agents, condition, maps), source)
    if level is None:
        return None
    at = {v: lv == level for v, lv in maps.items() if (lv == level).any()}
    if not at:
        return None
    v0 = max(at, key=lambda v: float(z[v, :, :, j][at[v]].max()))
    return v0, at[v0], level


def _place(
    feat: StudyFeatures, d, z, reg, box_wh, v: int, j: int, margin: float, keep: np.ndarray | None = None
) -> np.ndarray:
    """The box of condition ``j`` on view ``v`` in its series' preprocessed pixels [x0, y0, x1, y1],
    from the cells ``keep`` ([G, G] bool, holding the best cell) only when given."""
    plane = d["views"][v][0]
    x0, y0, cell, square = view_window(feat, d, v, z.shape[1])
    zmap = z[v, :, :, j]
    if keep is not None:
        zmap = np.where(keep, zmap, zmap[keep].max() - margin - 1.0)  # below the margin: out of the component
    if reg is not None:
        cx, cy, bw, bh = regressed_box(zmap, reg[v, :, :, j], margin)
        mx, my, wh = x0 + cx * cell, y0 + cy * cell, np.array([bw, bh]) * cell
    else:
        (cx, cy), (cx0, cy0, cx1, cy1) = cell_box(zmap, margin)
        wh = np.zeros(2)
        if box_wh is not None:  # the typical size, at least a cell (the centre is known to about a cell)
            wh = np.maximum(box_wh[plane, j] * square, cell)
        if wh.min() <= 0:
            return np.array([x0 + cx0 * cell, y0 + cy0 * cell, x0 + cx1 * cell, y0 + cy1 * cell])
        mx, my = x0 + cx * cell, y0 + cy * cell
    return np.array([mx - wh[0] / 2, my - wh[1] / 2, mx + wh[0] / 2, my + wh[1] / 2])


def _box_centre_mm(feat: StudyFeatures, d: dict[str, Any], v: int, pre: np.ndarray) -> np.ndarray | None:
    _, si, k = d["views"][v]
    s = feat.study.series[si]
    ox0, oy0, ox1, oy1 = s.geometry.to_original(pre)
    p = s.geometry.pixel_to_patient(int(k), (ox0 + ox1) / 2, (oy0 + oy1) / 2)
    return None if p is None else np.asarray(p, float)


def _centre_mm_of(series: list[SeriesData], b: BoxResult) -> np.ndarray | None:
    s = next((x for x in series if x.series_uid == b.series_uid), None)
    if s is None or s.geometry is None:
        return None
    p = s.geometry.pixel_to_patient(b.index, (b.xyxy[0] + b.xyxy[2]) / 2, (b.xyxy[1] + b.xyxy[3]) / 2)
    return None if p is None else np.asarray(p, float)


def sop_of(series: SeriesData, k: int) -> str:
    """The SOP Instance UID of sorted slice ``k`` ("" when unknown)."""
    return series.sop_uids[k] if k < len(series.sop_uids) else ""


def frame_of(series: SeriesData, k: int) -> int | None:
    """The 1-based frame of sorted slice ``k`` in its multi-frame object (None: single-frame)."""
    frame = series.frame_numbers[k] if k < len(series.frame_numbers) else None
    return int(frame) if frame is not None else None


def localize_with(diagnosis: Any, localization: Any, feat: StudyFeatures, results: list[ConditionResult]) -> None:
    """Localise ``results`` the one way the pipeline does: from the dense head's cells when the
    diagnosis head is dense, else with the localization agents' slice heads."""
    if not results:
        return
    if hasattr(diagnosis, "cell_maps"):
        z, d, reg = diagnosis.cell_maps(feat)
        c = localization.cfg
        localize_from_cells(feat, d, z, results, localization, box_wh=diagnosis.a.get("box_wh"), reg=reg,
                            top_k=c.top_k_slices, max_boxes=c.max_boxes, side_margin_mm=c.side_margin_mm,
                            side_profile=c.side_profile, canal_fit=diagnosis.a.get("box_canal_fit"))  # fmt: skip
    else:
        localization.localize(feat, results)
