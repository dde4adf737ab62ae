"""Sagittal -> axial slice retrieval: a point on a sagittal slice (a finding's box, a reader's
click) -> every axial slice of the study, nearest plane first, from the DICOM geometry.

Why geometry and not image features: a sagittal slice shows every level at once, so the slice
alone does not say which axial slice is meant (ranked by the cosine of SpineFM's slice features,
the first axial slice was at the finding's level in 19 % of queries, chance 20 %:
docs/agents.md); a point on it does, and within one study both series share the frame of
reference. The localization agents place their axial box the same way (the axial slice through
the sagittal box, ``SeriesGeometry.plane_distance``).

Scored on generated studies: ``cross_orientation_queries`` (per disc-level finding with a
sagittal T2 key slice, which axial slices are at its level, from the generator's
``slice_levels``) and ``sagittal_to_axial`` (the held-out evaluation's figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.agents.analysis import ConditionResult
from ml.data.types import SeriesData, StudyData


def axial_slices_through(
    series: Sequence[SeriesData], point_mm: np.ndarray | Sequence[float]
) -> list[tuple[int, int, float]]:
    """Sagittal -> axial slice retrieval: every slice of the study's axial series as (series index,
    sorted slice index, distance in mm from ``point_mm`` to the slice's plane), nearest first.
    Series without geometry are left out (an empty list when none has it)."""
    out = []
    for si, s in enumerate(series):
        if s.plane != "axial" or s.geometry is None:
            continue
        for k in range(len(s.sop_uids)):
            d = s.geometry.plane_distance(k, point_mm)
            if d is not None:
                out.append((si, k, d))
    return sorted(out, key=lambda t: t[2])


def point_on_slice_mm(series: SeriesData, sop_uid: str, xyxy: Sequence[float]) -> tuple[int, np.ndarray] | None:
    """(sorted slice index, patient mm of the centre of the original-pixel box ``xyxy``) on the
    slice ``sop_uid`` of ``series``; None when the slice or the geometry is missing."""
    if sop_uid not in series.sop_uids or series.geometry is None:
        return None
    k = series.sop_uids.index(sop_uid)
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    p = series.geometry.pixel_to_patient(k, (x0 + x1) / 2, (y0 + y1) / 2)
    return None if p is None else (k, np.asarray(p, float))


@dataclass
class CrossOrientationQuery:
    """One disc-level finding's sagittal T2 key slice, the point of its box there, and which
    slices of the study's axial series (``axial``, sorted order) are at the finding's level."""

    condition: str
    sagittal: int  # series index
    slice: int  # sorted slice index in the sagittal series
    point_mm: np.ndarray  # [3]
    axial: int  # series index
    same: list[bool]  # per sorted axial slice


def cross_orientation_queries(study: StudyData, truth: dict | None) -> list[CrossOrientationQuery]:
    """The queries of a generated study: per disc-level finding with a sagittal T2 key slice and an
    axial series whose slice levels the generator recorded."""
    if not truth:
        return []
    by_key = {s["key"]: s for s in truth.get("series", [])}
    uid_pos = {s.series_uid: i for i, s in enumerate(study.series)}
    axial = [s for s in truth.get("series", []) if s.get("slice_levels") and s["series_uid"] in uid_pos]
    sag = by_key.get("sag_t2")
    if not axial or sag is None or sag["series_uid"] not in uid_pos:
        return []
    ai, si = uid_pos[axial[0]["series_uid"]], uid_pos[sag["series_uid"]]
    levels_by_instance = axial[0]["slice_levels"]
    out = []
    for f in truth.get("findings", []):
        if f.get("label") != 1 or "-" not in (f.get("level") or ""):
            continue
        ks = f.get("key_slices", {}).get("sag_t2")
        placed = point_on_slice_mm(study.series[si], ks[0]["sop_instance_uid"], ks[0]["box"]) if ks else None
        if placed is None:
            continue
        # slice_levels follow the generator's order (InstanceNumber - 1), ours is along the normal
        same = [
            0 < n <= len(levels_by_instance) and levels_by_instance[n - 1] == f["level"]
            for n in study.series[ai].instance_numbers
        ]
        if any(same):
            out.append(CrossOrientationQuery(f["condition"], si, placed[0], placed[1], ai, same))
    return out


def sagittal_to_axial(study: StudyData, truth: dict, conditions: Sequence[ConditionResult]) -> dict[str, list[Any]]:
    """Sagittal -> axial slice retrieval on one generated study (``axial_slices_through``):
    "point", per disc-level finding, whether the first axial slice from the centre of its true box
    on its sagittal T2 key slice (a reader's click) is at its level, and "point_condition" its
    condition; "agent", per such condition the pipeline calls present with a sagittal box, whether
    the first axial slice from that box is at one of the condition's true levels; "chance", the
    share of axial slices at each finding's level."""
    out: dict[str, list[Any]] = {"point": [], "point_condition": [], "agent": [], "chance": []}
    queries = cross_orientation_queries(study, truth)
    at_level: dict[str, np.ndarray] = {}
    for q in queries:
        same = np.asarray(q.same)
        ranked = [k for si, k, _ in axial_slices_through(study.series, q.point_mm) if si == q.axial]
        if not ranked:  # the axial series has no geometry
            continue
        out["point"].append(float(same[ranked[0]]))
        out["point_condition"].append(q.condition)
        out["chance"].append(float(same.mean()))
        at_level[q.condition] = at_level.get(q.condition, np.zeros_like(same)) | same
    by_uid = {s.series_uid: s for s in study.series}
    axial = queries[0].axial if queries else -1
    for c in conditions:
        if not c.present or c.condition not in at_level:
            continue
        boxes = [b for b in c.boxes if b.series_uid in by_uid and by_uid[b.series_uid].plane == "sagittal"]
        placed = point_on_slice_mm(by_uid[boxes[0].series_uid], boxes[0].sop_uid, boxes[0].xyxy) if boxes else None
        if placed is None:
            continue
        ranked = [k for si, k, _ in axial_slices_through(study.series, placed[1]) if si == axial]
        if ranked:
            out["agent"].append(float(at_level[c.condition][ranked[0]]))
    return out


def sagittal_to_axial_summary(figures: dict[str, list[Any]]) -> dict[str, Any]:
    """The held-out evaluation's figures from ``sagittal_to_axial``'s lists over every study, with
    the true boxes' misses per condition ({condition: [misses, findings]}, conditions with a miss)."""

    def share(v: list[float]) -> float:
        return float(np.mean(v)) if v else float("nan")

    per: dict[str, list[int]] = {}
    for hit, condition in zip(figures["point"], figures["point_condition"], strict=True):
        n = per.setdefault(condition, [0, 0])
        n[0] += int(not hit)
        n[1] += 1
    return {
        "queries": len(figures["point"]),
        "top1_same_level": share(figures["point"]),
        "agent_queries": len(figures["agent"]),
        "agent_top1_same_level": share(figures["agent"]),
        "chance_top1": share(figures["chance"]),
        "point_misses": {c: n for c, n in sorted(per.items()) if n[0]},
    }
