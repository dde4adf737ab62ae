"""Training the Localization Agents (``ml.agents.localization``) on studies with the generator's
ground truth: the per-slice targets, the key-slice, box and level heads, and the side rules
(which side a condition may have, and the learnt "central" margin).

Why apart from the agents: a pipeline loads and runs ``LocalizationAgents`` without any of this;
training, cross-validation (``ml.agents.evaluate``) and the benchmarks fit new heads with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from ml.agents.features import StudyFeatures, slice_design
from ml.agents.levels import level_design, midline_x
from ml.agents.localization import LocalizationAgents, LocalizationConfig, norm_pre_box, truth_slices
from ml.conditions import CONDITION_KEYS

DOMINANT_SIDE = 0.75  # a side at least this common in training is the condition's only answer
MIN_SIDE_SHARE = 0.10  # a side rarer than this in training is never answered


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
    ``offsets``: per condition and side, the training findings' offsets from the midline (``side_offsets``)."""
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
    """(condition, side, offset from the midline in mm) of every present, sided finding, measured
    where localization reads the side (``cell_localization.side_offset_mm``): the centre of its
    sagittal key-slice box that covers the most pixels (the slice where it is seen best), else
    of its largest axial one. What ``side_rules`` learns the central margin from."""
    mid = midline_x(feat.study)
    out: list[tuple[str, str, float]] = []
    if mid is None:
        return out
    best: dict[tuple[str, str, str], tuple[bool, int, float]] = {}  # (cond, level, side) -> (sagittal, pixels, dx)
    for (si, k, cond), item in truth_slices(feat, truth).items():
        s = feat.study.series[si]
        if item["label"] != 1 or not item["side"] or s.plane not in ("sagittal", "axial") or s.geometry is None:
            continue
        b = item["box"]
        p = s.geometry.pixel_to_patient(k, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        if p is None:
            continue
        key = (cond, str(item["level"]), str(item["side"]))
        cand = (s.plane == "sagittal", int(item["pixels"]), float(p[0]) - mid)
        if key not in best or cand[:2] > best[key][:2]:
            best[key] = cand
    return [(cond, side, dx) for (cond, _, side), (_, _, dx) in best.items()]


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
            pre = norm_pre_box(s, item["box"])
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
