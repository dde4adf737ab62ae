"""The 17 Localization Agents: per condition, a key-slice head and a box head on the chosen slices.

Method (what each part learns from the generator's ``ground_truth.json``):

* **key-slice head** (per condition): logistic regression on per-slice inputs
  (``features.slice_design``: the SpineFM slice feature, the relative position in the stack, the
  sequence class and the plane). Target 1 for a slice listed as a key slice of a present
  (label 1) finding of the condition in that series (matched by SOP Instance UID), else 0;
  key slices of uncertain (-1) findings are left out. Evaluated as slice-level AUROC.
* **box head** (per condition): ridge regression from the same inputs to the box in normalised
  *preprocessed* coordinates (x0, y0, x1, y1 in [0, 1] of the padded square); trained on the
  key slices of present findings (one box per slice: the finding covering most pixels).
  At inference the box is mapped back with ``SeriesGeometry`` to original pixels, normalised by
  (Columns, Rows) and to patient mm. Error = the paper's mean |delta| of normalised coordinates;
  IoU as well.
* **level** (shared): multinomial logistic regression on the plane, the relative slice position,
  the box centre and the condition, predicting the finding's level label ("L4-5", "L3", ...).
* **from the dense head's cells** (when the pipeline's diagnosis head is dense, the default):
  key slices are its best views, the box is the condition's typical size at the firing cells,
  the level and side as below (``localize_from_cells``).
* **side**: geometry, not learnt: the box centre in patient mm is compared with the centre of the
  series' field of view along the patient's left-right axis (DICOM LPS: +x = patient left);
  within ``side_margin_mm`` it is "central". Only for conditions whose training findings carry a
  side (e.g. foraminal narrowing, subarticular stenosis, disc herniation).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from ml.agents.analysis import BoxResult, ConditionResult, SliceRef, StudyAnalysis
from ml.agents.artifact import load_artifact, save_artifact
from ml.agents.cell_localization import frame_of, localize_with, sop_of
from ml.agents.features import StudyFeatures, slice_design
from ml.agents.levels import level_design, level_of, midline_x
from ml.conditions import CONDITION_KEYS
from ml.data.types import SeriesData

if TYPE_CHECKING:
    from ml.agents.protocol import RunContext

log = logging.getLogger(__name__)
FAMILY = "localization"
DOMINANT_SIDE = 0.75  # a side at least this common in training is the condition's only answer
MIN_SIDE_SHARE = 0.10  # a side rarer than this in training is never answered


@dataclass
class LocalizationConfig:
    C: float = 0.1  # key-slice logistic regression inverse L2
    ridge_alpha: float = 10.0  # box regression L2
    level_C: float = 1.0
    top_k_slices: int = 3  # key slices reported per condition (across series), best first
    max_boxes: int = 2  # boxes per condition: best slice of each plane, up to this many
    side_margin_mm: float = 6.0  # |x - FOV centre| below this is "central"
    min_slices: int = 3  # fewer positive training slices: the condition gets no head
    max_neg_ratio: int = 20  # key-slice head: negatives subsampled to this many per positive slice
    seed: int = 0


# -- ground truth ------------------------------------------------------------------------------


def truth_slices(feat: StudyFeatures, truth: dict[str, Any] | None) -> dict[tuple[int, int, str], dict]:
    """(series position, slice index, condition) -> {"box": original px, "label", "level", "side",
    "pixels"} for every key slice in ``truth`` that is a slice of this study."""
    if not truth:
        return {}
    key_to_uid = {s["key"]: s["series_uid"] for s in truth.get("series", [])}
    pos = {s.series_uid: i for i, s in enumerate(feat.study.series)}
    out: dict[tuple[int, int, str], dict] = {}
    for f in truth.get("findings", []):
        for skey, slices in f.get("key_slices", {}).items():
            si = pos.get(key_to_uid.get(skey, ""))
            if si is None:
                continue
            series = feat.study.series[si]
            for ks in slices:
                try:
                    k = series.sop_uids.index(ks["sop_instance_uid"])
                except ValueError:
                    continue
                item = {"box": ks["box"], "label": f["label"], "level": f.get("level") or "", "side": f.get("side")}
                item["pixels"] = ks.get("pixels", 0)
                prev = out.get((si, k, f["condition"]))
                # a present finding wins over an uncertain one; then the larger one
                if prev is None or (item["label"], item["pixels"]) > (prev["label"], prev["pixels"]):
                    out[(si, k, f["condition"])] = item
    return out


def _norm_pre(series: SeriesData, box: list[float]) -> np.ndarray:
    g = series.geometry
    if g is None:
        raise ValueError(f"series {series.series_uid} has no geometry: its boxes cannot be normalised")
    return np.asarray(g.to_preprocessed(box), float) / g.size  # [4] in [0, 1] of the padded square


def side_of(series: SeriesData, index: int, xyxy: list[float], margin_mm: float) -> str:
    """ "left" / "right" / "central" from the box centre vs. the field-of-view centre (LPS x)."""
    g = series.geometry
    if g is None or g.positions is None:
        return ""
    cx, cy = (xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2
    p = g.pixel_to_patient(index, cx, cy)
    corners = [g.pixel_to_patient(k, g.columns / 2, g.rows / 2) for k in range(len(g.positions))]
    if p is None or any(c is None for c in corners):
        return ""
    centre = np.mean(np.asarray(corners, float), 0)
    dx = p[0] - centre[0]
    if abs(dx) < margin_mm:
        return "central"
    return "left" if dx > 0 else "right"


def central_margin(offsets: dict[str, list[float]]) -> float | None:
    """The |offset from the midline| (mm) below which a finding is "central": the threshold that
    names the most training findings right ({side: [offset, ...]} of one condition), or None when
    the condition has no central and no lateral findings to separate."""
    central = np.abs(offsets.get("central", []))
    lateral = np.abs(offsets.get("left", []) + offsets.get("right", []))
    if not len(central) or not len(lateral):
        return None
    cands = np.unique(np.concatenate([central, lateral]))
    right = [(central < t).sum() + (lateral >= t).sum() for t in cands]
    best = int(np.argmax(right))
    below = cands[best - 1] if best > 0 else 0.0
    return float((cands[best] + below) / 2)  # half way between the last central and the first lateral


def side_rules(
    sides: dict[str, list[str]], offsets: dict[str, dict[str, list[float]]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per condition, from its training findings' sides: {"only": side or "", "sides": [...],
    "central_mm": the learnt central margin (``central_margin``) where the condition has one}.
    ``offsets``: per condition and side, the training key-slice boxes' offsets from the midline."""
    out: dict[str, dict[str, Any]] = {}
    for cond, seen in sides.items():
        seen = [s for s in seen if s]
        if not seen:
            continue
        values, counts = np.unique(seen, return_counts=True)
        share = counts / counts.sum()
        top = str(values[int(np.argmax(counts))])
        out[cond] = {
            "only": top if share.max() >= DOMINANT_SIDE else "",
            "sides": sorted(str(v) for v, s in zip(values, share, strict=True) if s >= MIN_SIDE_SHARE),
        }
        margin = central_margin((offsets or {}).get(cond, {}))
        if margin is not None:
            out[cond]["central_mm"] = round(margin, 2)
    return out


def side_offsets(feat: StudyFeatures, truth: dict | None) -> list[tuple[str, str, float]]:
    """(condition, side, offset from the midline in mm) of every present, sided finding's axial
    key-slice box: what ``side_rules`` learns the central margin from."""
    mid = midline_x(feat.study)
    out: list[tuple[str, str, float]] = []
    if mid is None:
        return out
    for (si, k, cond), item in truth_slices(feat, truth).items():
        s = feat.study.series[si]
        if item["label"] != 1 or not item["side"] or s.plane != "axial" or s.geometry is None:
            continue
        b = item["box"]
        p = s.geometry.pixel_to_patient(k, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        if p is not None:
            out.append((cond, str(item["side"]), float(p[0]) - mid))
    return out


# -- the agents --------------------------------------------------------------------------------


class LocalizationAgents:
    """The 17 Localization Agents: the localization family (``ml.agents.protocol.AgentFamily``)."""

    name = FAMILY
    per_study = True  # one study at a time: a study that fails to localise fails alone

    def __init__(self, cfg: LocalizationConfig, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        self.cfg = cfg
        self.slice_w, self.slice_b = arrays["slice_weight"], arrays["slice_bias"]  # [17, F], [17]
        self.box_w, self.box_b = arrays["box_weight"], arrays["box_bias"]  # [17, 4, F], [17, 4]
        self.mean, self.std = arrays["mean"], arrays["std"]  # [F]
        self.trained = arrays["trained"].astype(bool)  # [17] key-slice head fitted
        self.level_w, self.level_b = arrays["level_weight"], arrays["level_bias"]  # [L, G], [L]
        self.meta = meta or {}
        self.levels: list[str] = self.meta.get("levels", [])
        self.sided: list[str] = self.meta.get("sided", [])
        self.version = self.meta.get("version", "")

    # -- pre -> infer -> post ----------------------------------------------------------------------
    def pre(self, feat: StudyFeatures) -> list[np.ndarray]:
        """Standardised per-slice inputs, one [S, F] array per series."""
        return [(slice_design(s, e) - self.mean) / self.std for s, e in feat.pairs()]

    def infer(self, xs: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """-> per series: key-slice probabilities [S, 17] and boxes [S, 17, 4] (normalised, padded)."""
        scores = [1 / (1 + np.exp(-np.clip(x @ self.slice_w.T + self.slice_b, -50, 50))) for x in xs]
        boxes = [np.clip(np.einsum("sf,cjf->scj", x, self.box_w) + self.box_b, 0, 1) for x in xs]
        return scores, boxes

    def slice_scores(self, feat: StudyFeatures) -> list[np.ndarray]:
        return self.infer(self.pre(feat))[0]

    def post(
        self, feat: StudyFeatures, scores: list[np.ndarray], boxes: list[np.ndarray], result: ConditionResult
    ) -> ConditionResult:
        """Fill ``result`` (one condition) with key slices, boxes, level and side."""
        j = CONDITION_KEYS.index(result.condition)
        if not self.trained[j]:
            return result
        series = feat.study.series
        cands = [(float(sc[k, j]), si, k) for si, sc in enumerate(scores) for k in range(sc.shape[0])]
        cands.sort(key=lambda t: -t[0])
        result.key_slices = [
            SliceRef(series[si].series_uid, sop_of(series[si], k), int(k), round(score, 4), frame_of(series[si], k))
            for score, si, k in cands[: self.cfg.top_k_slices]
        ]
        seen_planes: set[str | None] = set()
        for score, si, k in cands:
            if len(result.boxes) >= self.cfg.max_boxes:
                break
            s = series[si]
            if s.plane in seen_planes or s.geometry is None:
                continue
            seen_planes.add(s.plane)
            pre = boxes[si][k, j]
            pre = np.array([min(pre[0], pre[2]), min(pre[1], pre[3]), max(pre[0], pre[2]), max(pre[1], pre[3])])
            xyxy = s.geometry.to_original(list(pre * s.geometry.size))
            result.boxes.append(
                BoxResult(
                    series_uid=s.series_uid,
                    sop_uid=sop_of(s, k),
                    index=int(k),
                    xyxy=[round(v, 2) for v in xyxy],
                    xyxy_norm=[round(v, 5) for v in s.geometry.normalise(xyxy)],
                    score=round(score, 4),
                    patient_mm=s.geometry.box_to_patient(int(k), xyxy),
                    frame=frame_of(s, k),
                )
            )
            if len(result.boxes) == 1:
                rel = k / max(1, scores[si].shape[0] - 1)
                if self.levels:
                    result.level = level_of(self, s.plane, rel, pre, result.condition)
                if result.condition in self.sided:
                    result.side = side_of(s, int(k), xyxy, self.cfg.side_margin_mm)
        return result

    def localize(self, feat: StudyFeatures, results: list[ConditionResult]) -> list[ConditionResult]:
        """Key slices, boxes, level and side for ``results`` from the slice heads (the dense
        head's path is ``ml.agents.cell_localization.localize_from_cells``)."""
        scores, boxes = self.infer(self.pre(feat))
        return [self.post(feat, scores, boxes, r) for r in results]

    def run(self, results: list[StudyAnalysis], feats: list[StudyFeatures], context: RunContext) -> None:
        """Localise each study's conditions called present (``localize: all`` in the pipeline's
        config: all 17), the one way ``cell_localization.localize_with`` does: from the dense
        diagnosis head's cells when ``context`` holds one, else with the slice heads. Without
        diagnosis calls (disabled or failed) every condition is localised, with probability -1."""
        for r, f in zip(results, feats, strict=True):
            if not r.conditions:
                r.conditions = [ConditionResult(k, -1.0, present=False, threshold=-1.0) for k in CONDITION_KEYS]
                todo = r.conditions
            else:
                todo = r.conditions if context.cfg.localize == "all" else [c for c in r.conditions if c.present]
            localize_with(context.agents.get("diagnosis"), self, f, todo)

    # -- artifact ----------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "slice_weight": self.slice_w.astype(np.float32),
            "slice_bias": self.slice_b.astype(np.float32),
            "box_weight": self.box_w.astype(np.float32),
            "box_bias": self.box_b.astype(np.float32),
            "mean": self.mean.astype(np.float32),
            "std": self.std.astype(np.float32),
            "trained": self.trained.astype(np.uint8),
            "level_weight": self.level_w.astype(np.float32),
            "level_bias": self.level_b.astype(np.float32),
        }

    def save(self, folder: str | Path) -> str:
        self.version = save_artifact(folder, FAMILY, self.cfg, self.arrays(), self.meta)
        self.meta["version"] = self.version
        return self.version

    @classmethod
    def load(cls, folder: str | Path) -> LocalizationAgents:
        cfg, arrays, doc = load_artifact(folder, FAMILY, LocalizationConfig)
        return cls(cfg, arrays, {**doc["meta"], "version": doc["version"]})


def slice_targets(feat: StudyFeatures, truth: dict | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per series: (design [S, F], targets [S, 17] in {1, 0, -1 = leave out})."""
    ts = truth_slices(feat, truth)
    out = []
    for si, (s, e) in enumerate(feat.pairs()):
        y = np.zeros((e.slices.shape[0], len(CONDITION_KEYS)), np.int64)
        for (sj, k, cond), item in ts.items():
            if sj == si:
                y[k, CONDITION_KEYS.index(cond)] = 1 if item["label"] == 1 else -1 if item["label"] == -1 else 0
        out.append((slice_design(s, e), y))
    return out


def train_localization(
    feats: list[StudyFeatures],
    truths: list[dict | None],
    cfg: LocalizationConfig | None = None,
    slice_heads: bool = True,
) -> LocalizationAgents:
    """Fit key-slice, box and level heads and the side rules on training studies with ground
    truth. ``slice_heads=False`` fits only the level head and side rules: what localization from
    the dense head's cells uses (the slice heads' logistic regressions are most of the cost)."""
    cfg = cfg or LocalizationConfig()
    designs, targets, boxes_x, boxes_y, level_x, level_y = [], [], [], [], [], []
    sides: dict[str, list[bool]] = {}
    side_names: dict[str, list[str]] = {}
    offsets: dict[str, dict[str, list[float]]] = {}
    for feat, truth in zip(feats, truths, strict=True):
        for f in (truth or {}).get("findings", []):
            if f.get("label") == 1:
                side_names.setdefault(f["condition"], []).append(f.get("side") or "")
        for cond, side, dx in side_offsets(feat, truth):
            offsets.setdefault(cond, {}).setdefault(side, []).append(dx)
        for x, y in slice_targets(feat, truth):
            designs.append(x)
            targets.append(y)
        for (si, k, cond), item in truth_slices(feat, truth).items():
            if item["label"] != 1:
                continue
            s = feat.study.series[si]
            pre = _norm_pre(s, item["box"])
            boxes_x.append((CONDITION_KEYS.index(cond), slice_design(s, feat.embedding.series[si])[k]))
            boxes_y.append(pre)
            level_x.append(level_design(s.plane, k / max(1, len(s.sop_uids) - 1), pre, cond))
            level_y.append(item["level"])
            sides.setdefault(cond, []).append(item["side"] is not None)
    if not designs:
        raise ValueError("no training slices: studies have no series")
    x_all = np.concatenate(designs)  # [N, F]
    y_all = np.concatenate(targets)  # [N, 17]
    mean, std = x_all.mean(0), x_all.std(0) + 1e-6
    xs = (x_all - mean) / std
    n_feat = xs.shape[1]
    nc = len(CONDITION_KEYS)
    slice_w, slice_b = np.zeros((nc, n_feat)), np.full(nc, -10.0)
    box_w, box_b = np.zeros((nc, 4, n_feat)), np.tile([0.4, 0.4, 0.6, 0.6], (nc, 1)).astype(float)
    trained = np.zeros(nc, bool)
    counts: dict[str, dict[str, int]] = {}
    bx = np.array([b for _, b in boxes_x]) if boxes_x else np.zeros((0, n_feat))
    bx = (bx - mean) / std if len(bx) else bx
    bc = np.array([c for c, _ in boxes_x], int)
    by = np.array(boxes_y) if boxes_y else np.zeros((0, 4))
    if len(by):
        box_b[:] = by.mean(0)  # conditions without enough boxes fall back to the mean box
    for j, key in enumerate(CONDITION_KEYS):
        keep = y_all[:, j] >= 0
        n_pos = int((y_all[keep, j] == 1).sum())
        counts[key] = {"pos_slices": n_pos, "slices": int(keep.sum()), "boxes": int((bc == j).sum())}
        if n_pos < cfg.min_slices or not slice_heads:
            continue
        # every positive slice and at most ``max_neg_ratio`` negatives per positive (seeded): the
        # balanced fit ranks slices the same, at a fraction of the cost on thousands of slices
        idx = np.flatnonzero(keep)
        neg = idx[y_all[idx, j] == 0]
        if len(neg) > cfg.max_neg_ratio * n_pos:
            rng = np.random.default_rng(cfg.seed + j)
            idx = np.concatenate([idx[y_all[idx, j] == 1], rng.choice(neg, cfg.max_neg_ratio * n_pos, replace=False)])
        lr = LogisticRegression(C=cfg.C, class_weight="balanced", max_iter=2000)
        lr.fit(xs[idx], y_all[idx, j])
        slice_w[j], slice_b[j] = lr.coef_[0], lr.intercept_[0]
        trained[j] = True
        sel = bc == j
        if sel.sum() >= cfg.min_slices:
            rg = Ridge(alpha=cfg.ridge_alpha).fit(bx[sel], by[sel])
            box_w[j], box_b[j] = rg.coef_, rg.intercept_
    levels = sorted(set(level_y))
    level_w = np.zeros((max(1, len(levels)), len(CONDITION_KEYS) + 12))
    level_b = np.zeros(max(1, len(levels)))
    if len(levels) >= 2:
        lv = LogisticRegression(C=cfg.level_C, max_iter=2000).fit(np.array(level_x), level_y)
        level_w, level_b = lv.coef_, lv.intercept_
        if len(levels) == 2:  # binary sklearn model: one row; make it two (argmax over classes)
            level_w = np.stack([-lv.coef_[0], lv.coef_[0]]) / 2
            level_b = np.array([-lv.intercept_[0], lv.intercept_[0]]) / 2
        levels = [str(c) for c in lv.classes_]
    sided = sorted(k for k, v in sides.items() if np.mean(v) > 0.5)
    meta = {
        "counts": counts,
        "levels": levels,
        "sided": sided,
        "side_rules": side_rules(side_names, offsets),
        "slice_heads": slice_heads,
        "n_studies": len(feats),
    }
    arrays = {
        "slice_weight": slice_w,
        "slice_bias": slice_b,
        "box_weight": box_w,
        "box_bias": box_b,
        "mean": mean,
        "std": std,
        "trained": trained.astype(np.uint8),
        "level_weight": level_w,
        "level_bias": level_b,
    }
    return LocalizationAgents(cfg, arrays, meta)


def load_truth(path: str | Path | None) -> dict | None:
    return json.loads(Path(path).read_text()) if path and Path(path).exists() else None
