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
  it; with ``dense_canal_mm`` the central sagittal slices are also cut into canal tiles, squares
  down the canal at twice the spine tile's scale (``dense_views.canal_tiles``: what lies inside
  the canal, an intradural lesion among the roots, is one cell on a spine tile). Each view is
  resized to ``dense_size`` px and ImageNet-normalised.
* **Trunk** (``ml.agents.dense_trunk``). A generic encoder: ImageNet MobileNetV2 up to its last
  inverted-residual block (320 channels, stride 32), the best generic weights available offline
  here; frozen, or with its last blocks spine-adapted (``dense_adapt_blocks``,
  ``ml.agents.dense_adapt``). The cells are computed once per study and cached on the
  ``StudyFeatures`` (``extras["dense"]``), keyed by the views and the trunk.
* **Head.** Per cell: [320 features, plane one-hot] -> shared 1x1 MLP (``dense_hidden``) -> 17
  logits. A study's logit per condition is the maximum over all cells of all views (a finding
  anywhere makes the study positive).
* **Supervision** (``ml.agents.dense_train``, which fits the head). Study labels through the max
  (MIL), plus, where the generator's ground truth is given (training only), the key-slice boxes:
  cells under a present finding's box are positives, and every cell of a study negative for a
  condition is a negative. Uncertain (-1) labels are masked. Calibration and thresholds as the
  linear probes (held-out validation patients, ``fit_temperature`` / ``choose_threshold``).

Inference is a MobileNetV2 forward on ~20 views plus a matrix product: about a second per study
on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from ml.agents.analysis import ConditionResult
from ml.agents.artifact import save_artifact
from ml.agents.dense_boxes import regress
from ml.agents.dense_trunk import (
    ADAPT_PREFIX,
    FINE_CHANNELS,
    FIRST_TAIL_BLOCK,
    TRUNK_CHANNELS,
    adapted_arrays,
    fold_batch_norms,
    load_trunk,
    tail_cells,
    trunk_digest,
)
from ml.agents.dense_views import study_views
from ml.agents.diagnosis import FAMILY, DiagnosisConfig, DiagnosisHead
from ml.agents.features import StudyFeatures
from ml.conditions import CONDITION_KEYS

__all__ = [  # the trunk's helpers live in ``dense_trunk``; their users import them from here
    "ADAPT_PREFIX", "FINE_CHANNELS", "FIRST_TAIL_BLOCK", "TRUNK_CHANNELS", "adapted_arrays", "fold_batch_norms",
    "load_trunk", "tail_cells", "trunk_digest",
]  # fmt: skip
K = len(CONDITION_KEYS)
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
PLANES = ("sagittal", "axial")


@torch.inference_mode()
def dense_cells(feat: StudyFeatures, cfg: DiagnosisConfig, trunk: nn.Sequential | None = None) -> dict[str, Any]:
    """Trunk cells of a study, computed once and kept in ``feat.extras["dense"]``:
    {"cells": [V, g, g, 320] (stride 32), "fine": [V, 2g, 2g, 96] (stride 16), float16;
    "views": [(plane, series, slice)], "crops": [(x0, y0, side)] (each view's window in its
    series' preprocessed pixels), "size": px, "key": the view settings and, for an adapted
    trunk, its digest}.

    Cells of another trunk are never reused: the key names the trunk. Cells cached from the same
    views by another trunk are converted through this trunk's blocks 14-17 from their block-13
    "fine" cells (which every trunk shares: only blocks 14-17 are ever adapted) and kept beside
    them in ``feat.extras["dense_trunks"][key]``, so switching trunks never re-encodes pixels."""
    want = view_key(cfg) + trunk_suffix(trunk)
    cached = feat.extras.get("dense")
    if cached is not None:
        have = cached.get("key", _LEGACY_KEY.format(cached["size"]))
        if have == want:
            return cached
        derived = feat.extras.get("dense_trunks", {}).get(want)
        if derived is not None:
            return derived
        if have.split("|")[0] == view_key(cfg) and "fine" in cached:
            trunk = trunk if trunk is not None else load_trunk()
            out = {**cached, "cells": tail_cells(trunk, cached["fine"]), "key": want}
            feat.extras.setdefault("dense_trunks", {})[want] = out
            return out
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
        "key": want,
    }
    feat.extras.pop("dense_trunks", None)  # derived from the cells this replaces
    return feat.extras["dense"]


_LEGACY_KEY = "{}:7:15:all:full"  # cells cached before the key existed: whole slices, all axials


def view_key(cfg: DiagnosisConfig) -> str:
    """The settings that decide which pixels the trunk saw (cached cells are reused only for the same)."""
    crop = f"crop{cfg.dense_sag_crop_mm:g}/{cfg.dense_ax_crop_mm:g}" if cfg.dense_crop else "full"
    if canal_tiles_on(cfg):
        crop += f"/canal{cfg.dense_canal_mm:g}x{cfg.dense_canal_slices}"
    return f"{cfg.dense_size}:{cfg.dense_sag_slices}:{cfg.dense_max_axial}:{cfg.dense_axial}:{crop}"


def trunk_suffix(trunk: nn.Module | None) -> str:
    """The trunk's part of the cells' key: none for the generic trunk (keys cached before adaptation
    existed stay valid), "|trunk:<digest>" for an adapted one."""
    digest = trunk_digest(trunk)
    return f"|trunk:{digest}" if digest else ""


def subset_views(d: dict[str, Any], keep: list[int], cfg: DiagnosisConfig) -> dict[str, Any]:
    """The cells of some of a study's views (e.g. one axial slice per disc out of all of them),
    keyed as the cells ``cfg`` would compute (so they are not recomputed), of the same trunk."""
    out = dict(d)
    key = d.get("key", "")
    out["key"] = view_key(cfg) + (key[key.index("|") :] if "|" in key else "")
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


def slice_mean_matrix(d: dict[str, Any]) -> np.ndarray:
    """[V, V] row-stochastic: row v averages the views of v's group, the sagittal views of one
    series and window (the slices across the spine, cell for cell at the same place); an axial
    view is a group of its own."""
    views, crops = d["views"], d.get("crops") or [None] * len(d["views"])
    keys = [(p, si, tuple(c) if c is not None else None) if p == 0 else ("axial", i)
            for i, ((p, si, _), c) in enumerate(zip(views, crops, strict=True))]  # fmt: skip
    same = np.asarray([[a == b for b in keys] for a in keys], np.float32).reshape(len(keys), len(keys))
    return same / np.maximum(same.sum(1, keepdims=True), 1.0)


def cell_design(d: dict[str, Any], stride: int = 32, contrast: bool = False, mirror: bool = False) -> np.ndarray:
    """Cells -> [V * G * G, C + 2] (features, plane one-hot); with ``contrast`` (``dense_slice_contrast``)
    [V * G * G, 2C + 2]: each cell's features also minus their mean over the sagittal slices at
    the same place; with ``mirror`` too (``dense_axial_mirror``) an axial view's second half is
    each cell minus the cell at the mirrored column (the other side of the canal, which the
    axial crop is centred on) instead of zero.

    Why the contrast: a disc herniation is a focal protrusion seen on one to three sagittal
    slices, the disc bulge of a degenerated disc (a hard negative) is the same grey margin on
    every slice; one cell's features cannot tell the two apart, their difference from the
    across-slice mean can (the most common level error was a herniation called at the bulging,
    degenerated disc below it). Why the mirror: on the axial slice through a disc, a degenerated
    disc's bulge and a canal narrowed from both sides are symmetric, while a lateral herniation,
    a narrowed subarticular recess or foramen is on one side; the cell against its contralateral
    twin says which."""
    cells = cell_grid(d, stride)
    if contrast:
        ref = np.einsum("uv,vijc->uijc", slice_mean_matrix(d), cells)  # [V, G, G, C]
        if mirror:
            axial = [i for i, (p, _, _) in enumerate(d["views"]) if p == 1]
            ref[axial] = cells[axial][:, :, ::-1]  # columns left <-> right
        cells = np.concatenate([cells, cells - ref], -1)
    v, g, _, c = cells.shape
    plane = np.zeros((v, g, g, len(PLANES)), np.float32)
    for i, (p, _, _) in enumerate(d["views"]):
        plane[i, :, :, p] = 1
    return np.concatenate([cells, plane], -1).reshape(v * g * g, c + len(PLANES))


def head_design(d: dict[str, Any], cfg: DiagnosisConfig) -> np.ndarray:
    """The diagnosis head's input rows for the cells ``d`` under ``cfg`` (``cell_design``)."""
    return cell_design(d, cfg.dense_stride, cfg.dense_slice_contrast, cfg.dense_axial_mirror)


def canal_tiles_on(cfg: DiagnosisConfig) -> bool:
    """Whether ``cfg``'s views include canal tiles (``dense_canal_mm``; they are cut from the crops)."""
    return cfg.dense_crop and cfg.dense_canal_mm > 0


class DenseHead(nn.Module):
    """The shared per-cell MLP: [features, plane one-hot] -> 17 logits (trained in ``dense_train``).

    With ``grid`` (the cells per side of a view; ``dense_context``) a cell's logits also read the
    hidden features of the cells above and below it in its view (``w2_up`` / ``w2_down``): on a
    sagittal tile, the cells along the spine. Why: a grey oval in the CSF (an intradural lesion)
    is told from the conus or the roots by what lies above and below it, which one cell's
    features do not hold. The input rows must be whole views of grid x grid cells, in order."""

    def __init__(self, n_in: int, hidden: int, dropout: float, grid: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, K))
        self.grid = grid
        if grid:
            self.up = nn.Linear(hidden, K, bias=False)
            self.down = nn.Linear(hidden, K, bias=False)
            nn.init.zeros_(self.up.weight)  # starts as the plain head
            nn.init.zeros_(self.down.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # training keeps large sets' designs in float16 (the head is float32)
        if not self.grid:
            return self.net(x)
        h = self.net[2](self.net[1](self.net[0](x)))
        up, down = vertical_neighbours(h, self.grid)
        return self.net[3](h) + self.up(up) + self.down(down)


def vertical_neighbours(h: Any, g: int) -> tuple[Any, Any]:
    """Per-cell rows h [V * g * g, H] (torch or numpy) -> (the row of the cell above, the row of
    the cell below) in the same view, zero beyond the view's edge."""
    lib = torch if isinstance(h, torch.Tensor) else np
    v = h.reshape(-1, g, g, h.shape[-1])
    pad = lib.zeros_like(v[:, :1])
    up = lib.cat([pad, v[:, :-1]], 1) if lib is torch else np.concatenate([pad, v[:, :-1]], 1)
    down = lib.cat([v[:, 1:], pad], 1) if lib is torch else np.concatenate([v[:, 1:], pad], 1)
    return up.reshape(h.shape), down.reshape(h.shape)


def head_arrays(head: DenseHead) -> dict[str, np.ndarray]:
    """The trained MLP's weights as the artifact's arrays (inference is numpy: ``_cell_logits``)."""
    l1, l2 = head.net[0], head.net[3]
    assert isinstance(l1, nn.Linear)
    assert isinstance(l2, nn.Linear)
    out = {
        "w1": l1.weight.detach().numpy().T.copy(),
        "b1": l1.bias.detach().numpy().copy(),
        "w2": l2.weight.detach().numpy().T.copy(),
        "b2": l2.bias.detach().numpy().copy(),
    }
    if head.grid:
        out["w2_up"] = head.up.weight.detach().numpy().T.copy()
        out["w2_down"] = head.down.weight.detach().numpy().T.copy()
    return out


def _cell_logits(a: dict[str, np.ndarray], x: np.ndarray, grid: int = 0) -> np.ndarray:
    """Cell logits [C, 17] of the design x [C, F]; a head with context (``w2_up``) needs ``grid``
    (cells per side of a view) and x in whole views."""
    h = np.maximum((x - a["mean"]) / a["std"] @ a["w1"] + a["b1"], 0)
    z = h @ a["w2"] + a["b2"]  # [C, 17]
    if "w2_up" in a:
        up, down = vertical_neighbours(h, grid)
        z = z + up @ a["w2_up"] + down @ a["w2_down"]
    return z


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
        # spine-adapted trunk blocks (``dense_adapt_blocks``); none in a frozen head's artifact
        self.adapted = {k: v for k, v in self.a.items() if k.startswith(ADAPT_PREFIX)}
        # training only (``dense_folds``): each training study's logits [N, 17] from the fold head
        # that did not see it, for the report agent's cross-fitted tokens
        self.out_of_fold: np.ndarray | None = None
        # training only: the study logits [N, 17] as training computed them (torch head on the
        # training cells, calibration shift applied): what the served head must reproduce
        self.fit_logits: np.ndarray | None = None

    @classmethod
    def from_artifact(cls, cfg: DiagnosisConfig, arrays: dict[str, np.ndarray], doc: dict) -> Self:
        if "dense_crop" not in doc.get("config", {}):  # saved before crops existed: whole slices, all axials
            cfg = replace(cfg, dense_crop=False, dense_axial="all")
        return super().from_artifact(cfg, arrays, doc)

    def logits(self, feats: list[StudyFeatures]) -> np.ndarray:
        """Study logits [N, 17]: max over every cell of every view."""
        trunk = self.trunk(feats)
        out = np.zeros((len(feats), K), np.float32)
        for i, f in enumerate(feats):
            d = dense_cells(f, self.cfg, trunk)
            x = head_design(d, self.cfg)
            if len(x):
                out[i] = _cell_logits(self.a, x, d["cells"].shape[1] * (32 // self.cfg.dense_stride)).max(0)
        return out

    def cell_maps(self, feat: StudyFeatures) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
        """Per-cell logits [V, G, G, 17] of a study's views, the cells' record (views, crops) and
        the box regressor's per-cell boxes [V, G, G, 17, 4] (None for a head trained before it
        existed): where each condition fires (``ml.agents.localization.localize_from_cells``)."""
        d = dense_cells(feat, self.cfg, self.trunk([feat]))
        x = head_design(d, self.cfg)
        v, gs = len(d["views"]), d["cells"].shape[1] * (32 // self.cfg.dense_stride)
        z = _cell_logits(self.a, x, gs) if len(x) else np.zeros((0, K), np.float32)
        z = z.reshape(v, gs, gs, K)
        if "reg_w" not in self.a:
            return z, d, None
        bs = self.cfg.dense_box_stride
        gb = d["cells"].shape[1] * (32 // bs)
        # the box regressor reads the plain cells (no slice contrast)
        xb = x if bs == self.cfg.dense_stride and not self.cfg.dense_slice_contrast else cell_design(d, bs)
        reg = regress(self.a, xb) if len(xb) else np.zeros((0, K, 4), np.float32)
        if gb != gs:  # the logits at the regressor's finer cells: each head cell repeated
            z = np.repeat(np.repeat(z, gb // gs, axis=1), gb // gs, axis=2)
        return z, d, reg.reshape(v, gb, gb, K, 4)

    def trunk(self, feats: list[StudyFeatures]) -> nn.Sequential | None:
        """The trunk the head was trained with, loaded when needed: always for an adapted one (its
        digest keys the cells), for the generic one only when a study has no cached cells."""
        if self._trunk is None and (self.adapted or any("dense" not in f.extras for f in feats)):
            self._trunk = load_trunk(self.adapted)
        return self._trunk

    def probabilities(self, feats: list[StudyFeatures]) -> np.ndarray:
        return self._calibrated(self.logits(feats))

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        """Study logits [N, 17] -> calibrated probabilities (the prior for untrained conditions)."""
        return np.where(self.trained, expit(logits / self.temperature), self.prior)

    def predict(self, feats: list[StudyFeatures]) -> list[list[ConditionResult]]:
        return self.results(self.logits(feats))

    def results(self, logits: np.ndarray) -> list[list[ConditionResult]]:
        """Calibrated calls of study logits [N, 17] (``logits`` or ``out_of_fold``)."""
        p = self._calibrated(logits)
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
