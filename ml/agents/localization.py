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

The fitting of these heads and of the side rules is ``ml.agents.localization_train``; this module
is what a pipeline loads and runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.agents.analysis import BoxResult, ConditionResult, SliceRef, StudyAnalysis
from ml.agents.artifact import load_artifact, save_artifact
from ml.agents.cell_localization import frame_of, localize_with, sop_of
from ml.agents.features import StudyFeatures, slice_design
from ml.agents.levels import level_of
from ml.conditions import CONDITION_KEYS
from ml.data.types import SeriesData

if TYPE_CHECKING:
    from ml.agents.protocol import RunContext

log = logging.getLogger(__name__)
FAMILY = "localization"
# graded on the axial slice through each disc: their level is read from both planes' cells
AXIAL_GRADED = ("canal_stenosis", "subarticular_stenosis", "foraminal_narrowing", "disc_herniation")


@dataclass
class LocalizationConfig:
    C: float = 0.1  # key-slice logistic regression inverse L2
    ridge_alpha: float = 10.0  # box regression L2
    level_C: float = 1.0
    top_k_slices: int = 3  # key slices reported per condition (across series), best first
    max_boxes: int = 2  # boxes per condition: best slice of each plane, up to this many
    side_margin_mm: float = 6.0  # |x - FOV centre| below this is "central"
    # the cells path reads the side from every sagittal slice's logit at the box, softmax
    # temperature ``side_profile`` (``cell_localization.profile_offset_mm``; 0: the best slice)
    side_profile: float = 0.5
    # the cells path reads these conditions' level from both planes' cells, the others' from the
    # sagittal box (``ml.agents.cell_levels``): the conditions graded on the axial slice through a disc
    level_both_planes: list[str] = field(default_factory=lambda: list(AXIAL_GRADED))
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


def norm_pre_box(series: SeriesData, box: list[float]) -> np.ndarray:
    """A box in original pixels as (x0, y0, x1, y1) in [0, 1] of the preprocessed, padded square."""
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


def load_truth(path: str | Path | None) -> dict | None:
    """A study's ``ground_truth.json``, or None when there is none."""
    return json.loads(Path(path).read_text()) if path and Path(path).exists() else None
