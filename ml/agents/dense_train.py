"""Training the dense head of the Diagnosis Agents (``ml.agents.dense``): the cell targets from the
generator's key-slice boxes, the MIL + box loss, the fit with calibration and thresholds on
held-out validation patients, the box regressor and the typical box sizes.

Why apart from the head: inference (``DenseDiagnosisAgents``, what a pipeline loads) needs the
trunk, the cells and the MLP only; everything here runs once, on training studies with ground truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit

from ml.agents.dense import (
    PLANES,
    DenseDiagnosisAgents,
    DenseHead,
    K,
    adapted_arrays,
    cell_design,
    dense_cells,
    head_arrays,
    head_design,
    load_trunk,
)
from ml.agents.dense_boxes import (
    BoxMoments,
    box_sizes,
    box_targets,
    canal_box_counts,
    canal_box_fit,
    complete_negatives,
    covered_cells,
    fit_box_regressor,
    key_slice_negatives,
    truth_boxes_in_cells,
)
from ml.agents.dense_designs import design_pool, float32_designs, keeps_half, standardise, training_designs
from ml.agents.diagnosis import (
    DiagnosisConfig,
    choose_threshold,
    fit_shifted_temperature,
    fit_temperature,
    labels_matrix,
)
from ml.agents.features import StudyFeatures
from ml.conditions import CONDITION_KEYS
from ml.data.splits import patient_fold
from ml.hardware import native_bf16
from ml.progress import ProgressLog

log = logging.getLogger(__name__)


def cell_targets(
    feat: StudyFeatures,
    d: dict[str, Any],
    truth: dict | None,
    stride: int = 32,
    key_negatives: bool = False,
    complete: bool = False,
) -> np.ndarray:
    """[V * g * g, 17] cell targets from the generator's key-slice boxes: 1 under a present
    finding's box, 0 everywhere for a condition the study is negative for and, with
    ``key_negatives``, on the rest of a present finding's key slice (``key_slice_negatives``),
    with ``complete``, away from every finding of a present condition (``complete_negatives``);
    -1 unknown."""
    v = len(d["views"])
    g = d["cells"].shape[1] * (32 // stride) if v else 0
    t = np.full((v, g, g, K), -1, np.int8)
    t[..., feat.study.labels == 0] = 0
    if key_negatives:
        for view, j in key_slice_negatives(feat, d, truth):
            t[view, :, :, j] = 0  # the boxes below set their cells back to 1
    if complete:
        t[complete_negatives(feat, d, truth, g)] = 0
    for view, j, b in truth_boxes_in_cells(feat, d, truth, g):
        c0, r0, c1, r1 = covered_cells(b, g)
        t[view, r0:r1, c0:c1, j] = 1
    return t.reshape(v * g * g, K)


def _fit_boxes(feats: list[StudyFeatures], truths: list[dict | None], cfg: DiagnosisConfig, trunk) -> dict:
    """The box regressor (``ml/agents/dense_boxes.py``) on the cells under the training boxes, at
    ``dense_box_stride`` (finer cells than the diagnosis head's: a 10 mm cell places a 13 mm box),
    and per condition the share of its boxes that a canal tile holds whole (``box_canal_fit``)."""
    g = cfg.dense_size // cfg.dense_box_stride

    def cells_under_boxes(f: StudyFeatures, tr: dict | None) -> tuple[tuple | None, np.ndarray]:
        d = dense_cells(f, cfg, trunk)
        found, canal = box_targets(f, d, tr, g), canal_box_counts(f, d, tr, g)
        if not found:
            return None, canal
        x = cell_design(d, cfg.dense_box_stride)
        rows = x[[c for c, _, _ in found]], np.asarray([j for _, j, _ in found]), np.asarray([t for _, _, t in found])
        return rows, canal

    acc: BoxMoments | None = None  # each study's rows reduced to the ridge's sums as it comes
    canal = np.zeros((K, 2), np.int64)
    with design_pool(cfg) as pool:
        for m, c in pool.map(cells_under_boxes, feats, truths):
            canal += c
            if m is None:
                continue
            if acc is None:
                acc = BoxMoments(m[0].shape[1])
            acc.add(*m)
    reg = acc.fit(cfg.dense_box_alpha) if acc is not None else fit_box_regressor([], [], [], cfg.dense_box_alpha)
    return {**reg, "box_canal_fit": canal_box_fit(canal)}


def _batch_loss(
    head: DenseHead,
    xs: list[torch.Tensor],
    ts: list[torch.Tensor],
    yb: torch.Tensor,
    lengths: np.ndarray,
    pw: torch.Tensor,
    cfg: DiagnosisConfig,
) -> torch.Tensor:
    """MIL loss on the studies' max cell + the box (cell) loss, one forward per study of the batch.
    xs: per study [C_i, F]; ts: per study [C_i, 17] cell targets (-1 unknown); yb: [B, 17]."""
    # per study, not on the batch's concatenated cells: the same rows (a study is whole views, as the
    # vertical context needs) without copying ~140 MB of cells per batch; 1.4x faster per step
    z = torch.cat([head(x) for x in xs]).float()  # [sum C_i, 17]; float32 under bfloat16 autocast too
    zs = torch.stack([part.max(0).values for part in torch.split(z, lengths.tolist())])  # [B, 17]
    m = yb >= 0
    mil = F.binary_cross_entropy_with_logits(zs[m], yb[m], pos_weight=pw.expand_as(zs)[m])
    t = torch.cat(ts)  # [sum C_i, 17]
    seg = torch.repeat_interleave(torch.arange(len(xs)), torch.from_numpy(lengths))  # [sum C_i] study index
    if cfg.dense_cell_loss == "balanced":
        return mil + cfg.dense_box_weight * _balanced_cell_loss(z, t, seg, len(xs), cfg.dense_box_pos_weight)
    known = t >= 0
    w = torch.where(t > 0, cfg.dense_box_pos_weight, 1.0) * known
    per_cell = F.binary_cross_entropy_with_logits(z, t.clamp(min=0), weight=w, reduction="none")
    num = torch.zeros(len(xs)).index_add_(0, seg, per_cell.sum(1))
    den = torch.zeros(len(xs)).index_add_(0, seg, known.sum(1).float())
    cell_loss = (num[den > 0] / den[den > 0]).sum()  # each study: the mean over its known cells
    return mil + cfg.dense_box_weight * cell_loss / len(xs)


def _balanced_cell_loss(z: torch.Tensor, t: torch.Tensor, seg: torch.Tensor, n: int, pos_weight: float) -> torch.Tensor:
    """The cell loss with a finding's box cells weighing as much as the rest of its study: per
    study and condition, the mean BCE over the cells under its boxes (times ``pos_weight``) plus
    the mean over its negative cells, averaged over the n studies and 17 conditions.

    Why: the plain mean over a study's known cells gives the ~6 cells under a small lesion's box
    a few 1e-4 of the study's cell loss, next to the MIL term that pushes the top cell of every
    negative study down; the lesion's own cells are then scored below normal anatomy even on the
    training studies (an intradural lesion's cells at -3.9 while the max of a negative study is -1),
    and MIL alone finds no small lesion that resembles normal anatomy (a grey oval in the CSF
    beside the conus and the roots, a round marrow lesion beside edema and hemangiomas)."""
    pos, neg = t > 0, t == 0
    per_cell = F.binary_cross_entropy_with_logits(z, pos.float(), reduction="none")  # [C, 17]

    def per_study(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, x.shape[1]).index_add_(0, seg, x)  # [n, 17]

    n_pos, n_neg = per_study(pos.float()), per_study(neg.float())
    l_pos = per_study(per_cell * pos) / n_pos.clamp(min=1)
    l_neg = per_study(per_cell * neg) / n_neg.clamp(min=1)
    return (pos_weight * l_pos + l_neg).sum() / (n * z.shape[1])


def _fit_head(
    xt: list[torch.Tensor],
    tt: list[torch.Tensor],
    yt: torch.Tensor,
    fit: np.ndarray,
    n_in: int,
    cfg: DiagnosisConfig,
    name: str = "dense head",
) -> DenseHead:
    """One training run of the head on the studies ``fit`` (indices into the standardised cells
    ``xt`` [C_i, F], cell targets ``tt`` [C_i, 17] and study labels ``yt`` [N, 17]); ``name``
    labels its progress lines."""
    torch.manual_seed(cfg.seed)
    head = DenseHead(n_in, cfg.dense_hidden, 0.2, context_grid(cfg))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.dense_lr, weight_decay=cfg.dense_weight_decay)
    pw = _pos_weight(yt.numpy(), fit)
    rng = np.random.default_rng(cfg.seed)
    lengths = np.array([len(x) for x in xt])
    threads = torch.get_num_threads()
    torch.set_num_threads(min(cfg.dense_threads, threads))
    avg: dict[str, torch.Tensor] = {}
    n_avg = 0
    progress = ProgressLog(log, name, cfg.dense_epochs, unit="epochs")
    # the per-cell MLP's matrix products in bfloat16 where that is native (3.5 s an epoch against 4.1 on AMX)
    bf16 = cfg.dense_precision == "auto" and native_bf16()
    try:
        for epoch in range(cfg.dense_epochs):
            head.train()
            epoch_loss = []
            for b in np.array_split(rng.permutation(fit), max(1, len(fit) // cfg.dense_batch)):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = _batch_loss(head, [xt[i] for i in b], [tt[i] for i in b], yt[b], lengths[b], pw, cfg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                epoch_loss.append(loss.item())
            progress.update(epoch + 1, f"loss {np.mean(epoch_loss):.3f} ({len(fit)} studies)")
            if cfg.dense_average_from and epoch + 1 >= cfg.dense_average_from:
                n_avg += 1  # running mean of the weights at the end of each late epoch
                for k, v in head.state_dict().items():
                    avg[k] = v.detach().clone() if k not in avg else avg[k] + (v.detach() - avg[k]) / n_avg
    finally:
        torch.set_num_threads(threads)
    if avg:
        head.load_state_dict(avg)
    head.eval()
    return head


def context_grid(cfg: DiagnosisConfig) -> int:
    """Cells per side of a view for the head's vertical context (``dense_context``), else 0."""
    return (cfg.dense_size // 32) * (32 // cfg.dense_stride) if cfg.dense_context else 0


def _pos_weight(y: np.ndarray, fit: np.ndarray) -> torch.Tensor:
    """The MIL loss's positive weight per condition: negatives / positives of the fitting studies, in [1, 10]."""
    pos = np.clip((y[fit] == 1).sum(0), 1, None)
    neg = np.clip((y[fit] == 0).sum(0), 1, None)
    return torch.from_numpy(np.clip(neg / pos, 1.0, 10.0).astype(np.float32))


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
    folds = cfg.dense_folds if cfg.dense_folds >= 2 else 0
    if folds:  # every study is out-of-fold once: all of them calibrate, all of them train
        fold_of = np.array([patient_fold(k, folds, cfg.seed + 7) for k in keys])
        is_val = np.ones(len(feats), bool)
        fit = np.arange(len(feats))
    else:
        is_val = np.array([patient_fold(k, 100, cfg.seed + 7) < round(cfg.val_fraction * 100) for k in keys])
        fit = np.flatnonzero(~is_val)

    def targets(i: int, d: dict[str, Any]) -> np.ndarray:
        return cell_targets(
            feats[i], d, truths[i], cfg.dense_stride, cfg.dense_key_negatives, cfg.dense_complete_negatives
        )

    # one copy of the designs in memory, float16 for large sets (``ml/agents/dense_designs.py``)
    xt, tt, mean, std = training_designs(feats, fit, cfg, trunk, targets)
    n_in = xt[0].shape[1]
    half = keeps_half(len(feats), cfg)
    yt = torch.from_numpy(y.astype(np.float32))
    joint, adapt_s = None, 0.0
    if cfg.dense_adapt_blocks:  # the head on the frozen cells, then head + the trunk's last blocks
        from ml.agents.dense_adapt import adapt_trunk

        ta = time.perf_counter()
        head0 = _fit_head(xt, tt, yt, fit, n_in, cfg)
        ds = [dense_cells(f, cfg, trunk) for f in feats]
        xt = []  # free the frozen designs while the blocks train
        trunk, joint = adapt_trunk(ds, head0, tt, yt, fit, mean, std, _pos_weight(y, fit), cfg, _batch_loss)
        del ds
        # the adapted cells (from the cached block-13 cells, kept beside them), same standardisation
        xt = [standardise(head_design(dense_cells(f, cfg, trunk), cfg), mean, std, half) for f in feats]
        adapt_s = time.perf_counter() - ta
    served = None  # the served study logits where they are not ``z`` (fold heads: z is out-of-fold)

    def inputs() -> Iterable[torch.Tensor]:  # the served logits come from float32 designs, as inference's
        return float32_designs(feats, cfg, trunk, mean, std) if half else xt

    if folds:
        fold_heads, z = [], np.zeros((len(feats), K), np.float32)  # z: out-of-fold study logits
        for k in range(folds):
            name = f"dense head, fold {k + 1}/{folds}"
            fold_heads.append(_fit_head(xt, tt, yt, np.flatnonzero(fold_of != k), n_in, cfg, name))
            with torch.no_grad():
                for i in np.flatnonzero(fold_of == k):
                    z[i] = fold_heads[-1](xt[i]).max(0).values.numpy() if len(xt[i]) else 0.0
        a = {
            **mean_of_heads([head_arrays(h) for h in fold_heads]),
            "mean": mean.astype(np.float32),
            "std": std.astype(np.float32),
        }
        served = served_logits(fold_heads, inputs())
    elif cfg.dense_seeds > 1 and joint is None:  # heads of other seeds on the same studies, served as their mean
        seeded = [_fit_head(xt, tt, yt, fit, n_in, replace(cfg, seed=cfg.seed + k)) for k in range(cfg.dense_seeds)]
        a = {
            **mean_of_heads([head_arrays(h) for h in seeded]),
            "mean": mean.astype(np.float32),
            "std": std.astype(np.float32),
        }
        z = served_logits(seeded, inputs())
    else:  # with adaptation the jointly trained head: it read the adapted cells as they are served
        head = joint if joint is not None else _fit_head(xt, tt, yt, fit, n_in, cfg)
        a = {**head_arrays(head), "mean": mean.astype(np.float32), "std": std.astype(np.float32)}
        z = served_logits([head], inputs())  # [N, 17]
    temp, thr, shift = np.ones(K), np.full(K, 0.5), np.zeros(K)
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
            if cfg.dense_cell_loss == "balanced":
                temp[j], shift[j] = fit_shifted_temperature(z[val, j], y[val, j])
            else:
                temp[j] = fit_temperature(z[val, j], y[val, j])
            p_val = expit((z[val, j] - shift[j]) / temp[j])
            thr[j] = choose_threshold(p_val, y[val, j], cfg.threshold_rule, cfg.target_sensitivity)
    if cfg.dense_refit_all and not folds and is_val.any():  # fold heads already train on every study
        # calibrated on the held-out quarter, then refitted on every study with the same recipe
        # (what scikit-learn's CalibratedClassifierCV(ensemble=False) does with one fold): the
        # quarter is a quarter of the positives of rare conditions, which this head needs more
        # than a calibration set; the temperature and threshold carry over to the refit head
        head = _fit_head(xt, tt, yt, np.arange(len(feats)), n_in, cfg)
        a = {**head_arrays(head), "mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    # the shift into the output bias: the max over cells commutes with it, the cell maps' shape and
    # the artifact stay as they were (probabilities are sigmoid(logit / T) at inference)
    a["b2"] = (a["b2"] - shift).astype(np.float32)
    reg = _fit_boxes(feats, truths, cfg, trunk)
    arrays = {
        **a,
        **reg,
        **(adapted_arrays(trunk, cfg.dense_adapt_blocks) if trunk is not None and cfg.dense_adapt_blocks else {}),
        "temperature": temp,
        "threshold": thr,
        "trained": trained.astype(np.uint8),
        "prior": prior,
        "box_wh": box_sizes(feats, truths, PLANES),
    }
    meta = {
        "n_studies": len(feats),
        "boxes": int(sum((t == 1).any(0).sum() for t in tt)),
        "seconds": round(time.perf_counter() - t0, 1),
        **({"adapt_seconds": round(adapt_s, 1)} if cfg.dense_adapt_blocks else {}),
        "conditions": list(CONDITION_KEYS),
    }
    log.info("dense diagnosis head: %d studies, %.1f s", len(feats), meta["seconds"])
    agents = DenseDiagnosisAgents(cfg, arrays, meta)
    agents._trunk = trunk if cfg.dense_adapt_blocks else None
    # the study logits as training computed them (torch head on the cells), for round-trip checks
    agents.fit_logits = ((z if served is None else served) - shift).astype(np.float32)
    if folds:  # kept in memory for the report agent's cross-fitted tokens (not saved)
        agents.out_of_fold = (z - shift).astype(np.float32)  # the served logits carry the shift in their bias
    return agents


def served_logits(heads: list[DenseHead], xt: Iterable[torch.Tensor]) -> np.ndarray:
    """Study logits [N, 17] of heads served as their mean (``mean_of_heads``): per study the max
    over its cells [C_i, F] of the heads' mean cell logits, as the saved wider head computes them."""
    with torch.no_grad():
        return np.stack(
            [torch.stack([h(x) for h in heads]).mean(0).max(0).values.numpy() if len(x) else np.zeros(K) for x in xt]
        ).astype(np.float32)


def mean_of_heads(heads: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """k trained MLPs as one MLP whose cell logits are their mean: the hidden layers side by side
    (w1 [F, k*H]) and the output layer stacked and divided by k (w2 [k*H, 17]). The artifact and
    the numpy inference stay those of a single head, only wider."""
    k = len(heads)
    out = {
        "w1": np.concatenate([h["w1"] for h in heads], 1),
        "b1": np.concatenate([h["b1"] for h in heads]),
        "w2": np.concatenate([h["w2"] for h in heads], 0) / k,
        "b2": np.mean([h["b2"] for h in heads], 0),
    }
    for name in ("w2_up", "w2_down"):  # the context weights read the same hidden units
        if name in heads[0]:
            out[name] = np.concatenate([h[name] for h in heads], 0) / k
    return out
