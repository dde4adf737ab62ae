"""Metrics of the agents: AUROC/AUPRC with bootstrap CIs, box error and IoU, retrieval ranks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """AUROC, NaN when only one class is present (a condition absent from a fold)."""
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y)
    return float(average_precision_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def bootstrap_ci(
    y: np.ndarray,
    p: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(point, low, high): percentile 95 % CI over ``n`` resamples. With ``groups`` (patient keys)
    whole patients are resampled, so that a patient's studies stay together."""
    y, p = np.asarray(y), np.asarray(p)
    point = metric(y, p)
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(len(y))
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    vals = []
    for _ in range(n):
        pick = rng.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([members[g] for g in pick])
        if len(np.unique(y[idx])) < 2:
            continue
        vals.append(metric(y[idx], p[idx]))
    if not vals:
        return point, float("nan"), float("nan")
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return point, float(lo), float(hi)


def paired_mean_ci(diffs: Sequence[float], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of paired per-study differences: a percentile 95 % CI over ``n``
    resamples of the studies (each study's two variants stay paired)."""
    d = np.asarray(diffs, float)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (n, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def box_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Paper's normalised box error: mean |delta| of the 4 normalised coordinates. [N, 4] -> [N]."""
    return np.abs(np.asarray(pred, float) - np.asarray(true, float)).mean(-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes, row by row. [N, 4], [N, 4] -> [N]."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def ranks_of_truth(scores: np.ndarray, truth: Sequence[int]) -> np.ndarray:
    """1-based rank of each query's true candidate. scores: [Q, N] (higher = better)."""
    scores = np.asarray(scores)
    true_scores = scores[np.arange(len(truth)), np.asarray(truth)]
    return 1 + (scores > true_scores[:, None]).sum(1)


def recall_at(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    ranks = np.asarray(ranks)
    out = {f"R@{k}": float((ranks <= k).mean()) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    return out
