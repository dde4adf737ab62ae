"""The dense head of the Diagnosis Agents (``diagnosis.head: dense``): lesions seen cell by cell.

Why: a probe on one vector per study (the case embedding, or mean slice features) averages a
10 mm lesion over a whole spine, and at 96 px a tiny encoder's 16-px patches barely resolve it.
Here the image stays near native resolution and every cell of a stride-32 feature map votes:

* **Views.** Sagittal: the T1, T2 and STIR series of one slice plan fused as the 3 channels of
  one image (a missing sequence repeats T2; slices matched by relative position), the
  ``dense_sag_slices`` central slices; axial: every axial slice (at most ``dense_max_axial``,
  evenly spaced; with ``dense_axial: disc`` the middle slice of each per-disc block), grey in
  all 3 channels. With ``dense_crop`` each view is first cut to a window around the spine found
  in the image (``spine_columns``: the CSF column of a sagittal fluid map; axial windows around
  the canal through the patient geometry), so the spine fills the input instead of a strip of
  it. Each view is resized to ``dense_size`` px and ImageNet-normalised.
* **Trunk.** A frozen generic encoder: ImageNet MobileNetV2 up to its last inverted-residual
  block (320 channels, stride 32), the best generic weights available offline here. The cells
  are computed once per study and cached on the ``StudyFeatures`` (``extras["dense"]``).
* **Head.** Per cell: [320 features, plane one-hot] -> shared 1x1 MLP (``dense_hidden``) -> 17
  logits. A study's logit per condition is the maximum over all cells of all views (a finding
  anywhere makes the study positive).
* **Supervision.** Study labels through the max (MIL), plus, where the generator's ground truth
  is given (training only), the key-slice boxes: cells under a present finding's box are
  positives, and every cell of a study negative for a condition is a negative. Uncertain (-1)
  labels are masked. Calibration and thresholds as the linear probes (held-out validation
  patients, ``fit_temperature`` / ``choose_threshold``).

Inference is a MobileNetV2 forward on ~20 views plus a matrix product: about a second per study
on 2 CPU cores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from ml.agents.analysis import ConditionResult
from ml.agents.artifact import save_artifact
from ml.agents.dense_boxes import (
    box_targets,
    covered_cells,
    fit_box_regressor,
    key_slice_negatives,
    regress,
    truth_boxes_in_cells,
)
from ml.agents.dense_views import study_views
from ml.agents.diagnosis import (
    FAMILY,
    DiagnosisConfig,
    DiagnosisHead,
    choose_threshold,
    fit_temperature,
    labels_matrix,
)
from ml.agents.features import StudyFeatures
from ml.conditions import CONDITION_KEYS
from ml.data.splits import patient_fold

log = logging.getLogger(__name__)
K = len(CONDITION_KEYS)
TRUNK_CHANNELS = 320
FINE_CHANNELS = 96  # MobileNetV2 block 13 (stride 16)
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
_PLANES = ("sagittal", "axial")


def load_trunk() -> nn.Sequential:
    """Frozen ImageNet MobileNetV2 up to block 17: [B, 3, H, W] -> [B, 320, H/32, W/32]."""
    from ml.agents.baselines import load_mobilenet_v2

    trunk = load_mobilenet_v2().features[:18].eval()
    trunk.requires_grad_(False)
    return trunk


@torch.inference_mode()
def dense_cells(feat: StudyFeatures, cfg: DiagnosisConfig, trunk: nn.Sequential | None = None) -> dict[str, Any]:
    """Trunk cells of a study, computed once and kept in ``feat.extras["dense"]``:
    {"cells": [V, g, g, 320] (stride 32), "fine": [V, 2g, 2g, 96] (stride 16), float16;
    "views": [(plane, series, slice)], "crops": [(x0, y0, side)] (each view's window in its
    series' preprocessed pixels), "size": px, "key": the view settings}."""
    cached = feat.extras.get("dense")
    if cached is not None and cached.get("key", _LEGACY_KEY.format(cached["size"])) == view_key(cfg):
        return cached
    trunk = trunk if trunk is not None else load_trunk()
    crops: list[tuple[int, int, int]] = []
    x, meta = study_views(feat.study, cfg, crops)
    g = cfg.dense_size // 32
    if len(x) == 0:
        cells = np.zeros((0, g, g, TRUNK_CHANNELS), np.float16)
        fine = np.zeros((0, 2 * g, 2 * g, FINE_CHANNELS), np.float16)
    else:
        xt = ((torch.from_numpy(x) - _MEAN) / _STD).contiguous(memory_format=torch.channels_last)
        c32, c16 = [], []
        for i in range(0, len(xt), 16):
            h = trunk[:14](xt[i : i + 16])
            c16.append(h)
            c32.append(trunk[14:](h))
        cells = torch.cat(c32).permute(0, 2, 3, 1).numpy().astype(np.float16)
        fine = torch.cat(c16).permute(0, 2, 3, 1).numpy().astype(np.float16)
    feat.extras["dense"] = {
        "cells": cells,
        "fine": fine,
        "views": meta,
        "crops": crops,
        "size": cfg.dense_size,
        "key": view_key(cfg),
    }
    return feat.extras["dense"]


_LEGACY_KEY = "{}:7:15:all:full"  # cells cached before the key existed: whole slices, all axials


def view_key(cfg: DiagnosisConfig) -> str:
    """The settings that decide which pixels the trunk saw (cached cells are reused only for the same)."""
    crop = f"crop{cfg.dense_sag_crop_mm:g}/{cfg.dense_ax_crop_mm:g}" if cfg.dense_crop else "full"
    return f"{cfg.dense_size}:{cfg.dense_sag_slices}:{cfg.dense_max_axial}:{cfg.dense_axial}:{crop}"


def subset_views(d: dict[str, Any], keep: list[int], cfg: DiagnosisConfig) -> dict[str, Any]:
    """The cells of some of a study's views (e.g. one axial slice per disc out of all of them),
    keyed as the cells ``cfg`` would compute (so they are not recomputed)."""
    out = dict(d)
    out["key"] = view_key(cfg)
    out["cells"], out["fine"] = d["cells"][keep], d["fine"][keep]
    out["views"] = [d["views"][i] for i in keep]
    if "crops" in d:
        out["crops"] = [d["crops"][i] for i in keep]
    return out


def cell_grid(d: dict[str, Any], stride: int) -> np.ndarray:
    """[V, G, G, C] cell features at ``stride`` 32 (320 channels) or 16 (the 96 stride-16
    channels with the stride-32 cell above each, 416 channels: finer cells for small lesions)."""
    cells = d["cells"].astype(np.float32)
    if stride == 32:
        return cells
    up = np.repeat(np.repeat(cells, 2, axis=1), 2, axis=2)
    return np.concatenate([d["fine"].astype(np.float32), up], -1)


def _design(d: dict[str, Any], stride: int = 32) -> np.ndarray:
    """Cells -> [V * G * G, C + 2] (features, plane one-hot)."""
    cells = cell_grid(d, stride)
    v, g, _, c = cells.shape
    plane = np.zeros((v, g, g, len(_PLANES)), np.float32)
    for i, (p, _, _) in enumerate(d["views"]):
        plane[i, :, :, p] = 1
    return np.concatenate([cells, plane], -1).reshape(v * g * g, c + len(_PLANES))


def cell_targets(
    feat: StudyFeatures, d: dict[str, Any], truth: dict | None, stride: int = 32, key_negatives: bool = False
) -> np.ndarray:
    """[V * g * g, 17] cell targets from the generator's key-slice boxes: 1 under a present
    finding's box, 0 everywhere for a condition the study is negative for and, with
    ``key_negatives``, on the rest of a present finding's key slice (``key_slice_negatives``);
    -1 unknown."""
    v = len(d["views"])
    g = d["cells"].shape[1] * (32 // stride) if v else 0
    t = np.full((v, g, g, K), -1, np.int8)
    t[..., feat.study.labels == 0] = 0
    if key_negatives:
        for view, j in key_slice_negatives(feat, d, truth):
            t[view, :, :, j] = 0  # the boxes below set their cells back to 1
    for view, j, b in truth_boxes_in_cells(feat, d, truth, g):
        c0, r0, c1, r1 = covered_cells(b, g)
        t[view, r0:r1, c0:c1, j] = 1
    return t.reshape(v * g * g, K)


class _DenseHead(nn.Module):
    def __init__(self, n_in: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _arrays_of(head: _DenseHead) -> dict[str, np.ndarray]:
    l1, l2 = head.net[0], head.net[3]
    assert isinstance(l1, nn.Linear)
    assert isinstance(l2, nn.Linear)
    return {
        "w1": l1.weight.detach().numpy().T.copy(),
        "b1": l1.bias.detach().numpy().copy(),
        "w2": l2.weight.detach().numpy().T.copy(),
        "b2": l2.bias.detach().numpy().copy(),
    }


def _cell_logits(a: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.maximum((x - a["mean"]) / a["std"] @ a["w1"] + a["b1"], 0)
    return h @ a["w2"] + a["b2"]  # [C, 17]


class DenseDiagnosisAgents(DiagnosisHead):
    """The 17 agents with the dense head; same ``predict`` / ``probabilities`` / ``save`` as the probes."""

    head = "dense"

    def __init__(self, cfg: DiagnosisConfig, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        super().__init__(cfg, arrays, meta)
        self.a = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
        self.temperature = self.a["temperature"]
        self.threshold = self.a["threshold"]
        self.trained = self.a["trained"].astype(bool)
        self.prior = self.a["prior"]
        self._trunk: nn.Sequential | None = None

    @classmethod
    def from_artifact(cls, cfg: DiagnosisConfig, arrays: dict[str, np.ndarray], doc: dict) -> Self:
        if "dense_crop" not in doc.get("config", {}):  # saved before crops existed: whole slices, all axials
            cfg = replace(cfg, dense_crop=False, dense_axial="all")
        return super().from_artifact(cfg, arrays, doc)

    def logits(self, feats: list[StudyFeatures]) -> np.ndarray:
        """Study logits [N, 17]: max over every cell of every view."""
        if self._trunk is None and any("dense" not in f.extras for f in feats):
            self._trunk = load_trunk()
        out = np.zeros((len(feats), K), np.float32)
        for i, f in enumerate(feats):
            x = _design(dense_cells(f, self.cfg, self._trunk), self.cfg.dense_stride)
            if len(x):
                out[i] = _cell_logits(self.a, x).max(0)
        return out

    def cell_maps(self, feat: StudyFeatures) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
        """Per-cell logits [V, G, G, 17] of a study's views, the cells' record (views, crops) and
        the box regressor's per-cell boxes [V, G, G, 17, 4] (None for a head trained before it
        existed): where each condition fires (``ml.agents.localization.localize_from_cells``)."""
        if self._trunk is None and "dense" not in feat.extras:
            self._trunk = load_trunk()
        d = dense_cells(feat, self.cfg, self._trunk)
        x = _design(d, self.cfg.dense_stride)
        v, gs = len(d["views"]), d["cells"].shape[1] * (32 // self.cfg.dense_stride)
        z = _cell_logits(self.a, x) if len(x) else np.zeros((0, K), np.float32)
        z = z.reshape(v, gs, gs, K)
        if "reg_w" not in self.a:
            return z, d, None
        bs = self.cfg.dense_box_stride
        gb = d["cells"].shape[1] * (32 // bs)
        xb = x if bs == self.cfg.dense_stride else _design(d, bs)
        reg = regress(self.a, xb) if len(xb) else np.zeros((0, K, 4), np.float32)
        if gb != gs:  # the logits at the regressor's finer cells: each head cell repeated
            z = np.repeat(np.repeat(z, gb // gs, axis=1), gb // gs, axis=2)
        return z, d, reg.reshape(v, gb, gb, K, 4)

    def probabilities(self, feats: list[StudyFeatures]) -> np.ndarray:
        p = expit(self.logits(feats) / self.temperature)
        return np.where(self.trained, p, self.prior)

    def predict(self, feats: list[StudyFeatures]) -> list[list[ConditionResult]]:
        p = self.probabilities(feats)
        return [
            [
                ConditionResult(k, float(row[j]), bool(row[j] >= self.threshold[j]), float(self.threshold[j]))
                for j, k in enumerate(CONDITION_KEYS)
            ]
            for row in p
        ]

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.a)

    def save(self, folder: str | Path) -> str:
        self.version = save_artifact(folder, FAMILY, self.cfg, self.arrays(), self.meta)
        self.meta["version"] = self.version
        return self.version


def box_sizes(feats: list[StudyFeatures], truths: list[dict | None]) -> np.ndarray:
    """Median true box (width, height) per plane and condition as a fraction of the preprocessed
    square: [2 (sagittal, axial), 17, 2], 0 where no box was seen. Why: a stride-32 cell is ~2 cm
    of a spine crop, coarser than most lesions; localisation places a box of the typical size at
    the cells' centre instead of drawing the cells' outline."""
    from ml.agents.localization import truth_slices

    sizes: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for f, truth in zip(feats, truths, strict=True):
        for (si, _k, cond), item in truth_slices(f, truth).items():
            s = f.study.series[si]
            if item["label"] != 1 or s.geometry is None or s.plane not in _PLANES:
                continue
            x0, y0, x1, y1 = s.geometry.to_preprocessed(item["box"])
            sizes.setdefault((_PLANES.index(s.plane), CONDITION_KEYS.index(cond)), []).append(
                ((x1 - x0) / s.geometry.size, (y1 - y0) / s.geometry.size)
            )
    out = np.zeros((len(_PLANES), K, 2), np.float32)
    for (p, j), wh in sizes.items():
        out[p, j] = np.median(np.asarray(wh), 0)
    return out


def _fit_boxes(feats: list[StudyFeatures], truths: list[dict | None], cfg: DiagnosisConfig, trunk) -> dict:
    """The box regressor (``ml/agents/dense_boxes.py``) on the cells under the training boxes, at
    ``dense_box_stride`` (finer cells than the diagnosis head's: a 10 mm cell places a 13 mm box)."""
    g = cfg.dense_size // cfg.dense_box_stride
    rows, conds, targets = [], [], []
    for f, tr in zip(feats, truths, strict=True):
        d = dense_cells(f, cfg, trunk)
        found = box_targets(f, d, tr, g)
        if not found:
            continue
        x = _design(d, cfg.dense_box_stride)
        rows.append(x[[cell for cell, _, _ in found]])
        conds.append(np.asarray([j for _, j, _ in found]))
        targets.append(np.asarray([t for _, _, t in found]))
    return fit_box_regressor(rows, conds, targets, cfg.dense_box_alpha)


def _batch_loss(
    head: _DenseHead,
    xs: list[torch.Tensor],
    ts: list[torch.Tensor],
    yb: torch.Tensor,
    lengths: np.ndarray,
    pw: torch.Tensor,
    cfg: DiagnosisConfig,
) -> torch.Tensor:
    """MIL loss on the studies' max cell + the box (cell) loss, one forward for the whole batch.
    xs: per study [C_i, F]; ts: per study [C_i, 17] cell targets (-1 unknown); yb: [B, 17]."""
    z = head(torch.cat(xs))  # [sum C_i, 17]
    zs = torch.stack([part.max(0).values for part in torch.split(z, lengths.tolist())])  # [B, 17]
    m = yb >= 0
    mil = F.binary_cross_entropy_with_logits(zs[m], yb[m], pos_weight=pw.expand_as(zs)[m])
    t = torch.cat(ts)  # [sum C_i, 17]
    known = t >= 0
    w = torch.where(t > 0, cfg.dense_box_pos_weight, 1.0) * known
    per_cell = F.binary_cross_entropy_with_logits(z, t.clamp(min=0), weight=w, reduction="none")
    seg = torch.repeat_interleave(torch.arange(len(xs)), torch.from_numpy(lengths))  # [sum C_i] study index
    num = torch.zeros(len(xs)).index_add_(0, seg, per_cell.sum(1))
    den = torch.zeros(len(xs)).index_add_(0, seg, known.sum(1).float())
    cell_loss = (num[den > 0] / den[den > 0]).sum()  # each study: the mean over its known cells
    return mil + cfg.dense_box_weight * cell_loss / len(xs)


def train_dense(
    feats: list[StudyFeatures], cfg: DiagnosisConfig, truths: list[dict | None] | None = None
) -> DenseDiagnosisAgents:
    """Fit the dense head on ``feats`` (training studies only); ``truths`` (the generator's
    ground truth, aligned with ``feats``) adds the box supervision where given."""
    t0 = time.perf_counter()
    trunk = None if all("dense" in f.extras for f in feats) else load_trunk()
    truths = truths if truths is not None else [None] * len(feats)
    y = labels_matrix(feats)
    keys = [f.study.patient_key for f in feats]
    is_val = np.array([patient_fold(k, 100, cfg.seed + 7) < round(cfg.val_fraction * 100) for k in keys])
    fit = np.flatnonzero(~is_val)
    # one standardised copy of the cells in memory (stride-16 designs are ~12 MB a study): the
    # statistics of the fitting studies as running sums, then each study converted in turn
    n_in = _design(dense_cells(feats[0], cfg, trunk), cfg.dense_stride).shape[1]
    s1, s2, count = np.zeros(n_in), np.zeros(n_in), 0
    for i in fit:
        x = _design(dense_cells(feats[i], cfg, trunk), cfg.dense_stride).astype(np.float64)
        s1, s2, count = s1 + x.sum(0), s2 + (x * x).sum(0), count + len(x)
    mean = (s1 / max(count, 1)).astype(np.float32)
    std = (np.sqrt(np.maximum(s2 / max(count, 1) - mean.astype(np.float64) ** 2, 0)) + 1e-4).astype(np.float32)
    mean[-len(_PLANES) :], std[-len(_PLANES) :] = 0.0, 1.0
    xt, tt = [], []
    for f, tr in zip(feats, truths, strict=True):
        d = dense_cells(f, cfg, trunk)
        xt.append(torch.from_numpy((_design(d, cfg.dense_stride) - mean) / std))  # [C_i, F]
        t = cell_targets(f, d, tr, cfg.dense_stride, cfg.dense_key_negatives)
        tt.append(torch.from_numpy(t.astype(np.float32)))  # [C_i, 17]
    torch.manual_seed(cfg.seed)
    head = _DenseHead(n_in, cfg.dense_hidden, 0.2)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.dense_lr, weight_decay=cfg.dense_weight_decay)
    yt = torch.from_numpy(y.astype(np.float32))
    pos = np.clip((y[fit] == 1).sum(0), 1, None)
    neg = np.clip((y[fit] == 0).sum(0), 1, None)
    pw = torch.from_numpy(np.clip(neg / pos, 1.0, 10.0).astype(np.float32))
    rng = np.random.default_rng(cfg.seed)
    lengths = np.array([len(x) for x in xt])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread beats several on shared cores (no spin-waits)
    try:
        for _ in range(cfg.dense_epochs):
            head.train()
            for b in np.array_split(rng.permutation(fit), max(1, len(fit) // cfg.dense_batch)):
                loss = _batch_loss(head, [xt[i] for i in b], [tt[i] for i in b], yt[b], lengths[b], pw, cfg)
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    head.eval()
    a = {**_arrays_of(head), "mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    with torch.no_grad():
        z = np.stack([head(x).max(0).values.numpy() if len(x) else np.zeros(K) for x in xt])  # [N, 17]
    temp, thr = np.ones(K), np.full(K, 0.5)
    trained, prior = np.zeros(K, bool), np.zeros(K)
    for j in range(K):
        known = y[:, j] >= 0
        prior[j] = float(y[known, j].mean()) if known.any() else 0.0
        n_pos, n_neg = int((y[fit, j] == 1).sum()), int((y[fit, j] == 0).sum())
        if min(n_pos, n_neg) < cfg.min_positives:
            continue
        trained[j] = True
        val = known & is_val
        if val.any():
            temp[j] = fit_temperature(z[val, j], y[val, j])
            thr[j] = choose_threshold(expit(z[val, j] / temp[j]), y[val, j], cfg.threshold_rule, cfg.target_sensitivity)
    reg = _fit_boxes(feats, truths, cfg, trunk)
    arrays = {
        **a,
        **reg,
        "temperature": temp,
        "threshold": thr,
        "trained": trained.astype(np.uint8),
        "prior": prior,
        "box_wh": box_sizes(feats, truths),
    }
    meta = {
        "n_studies": len(feats),
        "boxes": int(sum((t == 1).any(0).sum() for t in tt)),
        "seconds": round(time.perf_counter() - t0, 1),
        "conditions": list(CONDITION_KEYS),
    }
    log.info("dense diagnosis head: %d studies, %.1f s", len(feats), meta["seconds"])
    return DenseDiagnosisAgents(cfg, arrays, meta)
