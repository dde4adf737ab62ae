"""The optional MIL head of the Diagnosis Agents (``diagnosis.head: mil``).

A linear probe on the case embedding sees one vector per study: a small herniation on two of
sixty slices is averaged away. Multiple-instance learning keeps the slices: gated attention
(Ilse et al. 2018) over every slice of the configured sequence classes, one attention vector and
one classifier per condition on a shared slice projection, so each condition can look at its own
slices. Trained with class-balanced BCE (uncertain -1 labels masked), then calibrated and
thresholded on held-out validation patients exactly like the linear probes
(``diagnosis.fit_temperature`` / ``choose_threshold``).

Slice input: ``features.slice_design`` (SpineFM slice feature + position in the stack +
sequence-class and plane one-hots), standardised with training statistics. Training uses torch;
inference is numpy, like the probes, so the serving process needs nothing extra.

Per condition c, slices x_s [S, F]:  h_s = tanh(V x_s) * sigmoid(U x_s)  [S, H];
a_cs = softmax_s(w_c . h_s);  z_c = sum_s a_cs h_s  [H];  logit_c = beta_c . z_c + b_c.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from ml.agents.analysis import ConditionResult
from ml.agents.artifact import save_artifact
from ml.agents.diagnosis import (
    FAMILY,
    DiagnosisConfig,
    DiagnosisHead,
    choose_threshold,
    fit_temperature,
    labels_matrix,
)
from ml.agents.features import StudyFeatures, slice_design
from ml.conditions import CONDITION_KEYS
from ml.data.splits import patient_fold

log = logging.getLogger(__name__)
K = len(CONDITION_KEYS)


def bag(f: StudyFeatures, classes: tuple[str, ...]) -> np.ndarray:
    """All slices of the study's series of ``classes`` -> [S, F] (empty [0, F] when none)."""
    rows = [slice_design(s, e) for s, e in f.pairs(classes)]
    if rows:
        return np.concatenate(rows).astype(np.float32)
    d = f.embedding.series[0].slices.shape[1] if f.embedding.series else 0
    return np.zeros((0, d + 7), np.float32)


class _GatedAttentionMIL(nn.Module):
    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.V = nn.Linear(n_in, hidden)
        self.U = nn.Linear(n_in, hidden)
        self.w = nn.Parameter(torch.randn(K, hidden) * 0.02)  # attention vector per condition
        self.beta = nn.Parameter(torch.randn(K, hidden) * 0.02)  # classifier per condition
        self.b = nn.Parameter(torch.zeros(K))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [N, S, F], mask [N, S] (True = real slice) -> logits [N, K]."""
        h = torch.tanh(self.V(x)) * torch.sigmoid(self.U(x))  # [N, S, H]
        scores = torch.einsum("nsh,kh->nks", h, self.w)  # [N, K, S]
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        a = torch.softmax(scores, dim=-1)  # [N, K, S]
        z = torch.einsum("nks,nsh->nkh", a, h)  # [N, K, H]
        return (z * self.beta).sum(-1) + self.b  # [N, K]


def _pad(bags: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Bags -> x [N, S_max, F], mask [N, S_max]."""
    s_max = max(1, max(len(b) for b in bags))
    x = np.zeros((len(bags), s_max, bags[0].shape[1]), np.float32)
    m = np.zeros((len(bags), s_max), bool)
    for i, b in enumerate(bags):
        x[i, : len(b)] = b
        m[i, : len(b)] = True
    m[~m.any(1), 0] = True  # a study without slices of these classes: one zero slice (-> prior-like)
    return x, m


class MILDiagnosisAgents(DiagnosisHead):
    """The 17 MIL heads; same interface as ``DiagnosisAgents`` (predict / probabilities / save)."""

    head = "mil"

    def __init__(self, cfg: DiagnosisConfig, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        super().__init__(cfg, arrays, meta)
        self.a = arrays
        self.temperature = arrays["temperature"]  # [17]
        self.threshold = arrays["threshold"]  # [17]
        self.trained = arrays["trained"].astype(bool)  # [17]
        self.prior = arrays["prior"]  # [17]
        self.mean, self.std = arrays["mean"], arrays["std"]  # [F]

    def logits(self, feats: list[StudyFeatures]) -> np.ndarray:
        """Studies -> uncalibrated logits [N, 17] (numpy: the serving path needs no torch)."""
        a = self.a
        out = np.zeros((len(feats), K), np.float32)
        for i, f in enumerate(feats):
            x = (bag(f, tuple(self.cfg.classes)) - self.mean) / self.std  # [S, F]
            if len(x) == 0:
                x = np.zeros((1, len(self.mean)), np.float32)
            h = np.tanh(x @ a["V_w"].T + a["V_b"]) * expit(x @ a["U_w"].T + a["U_b"])  # [S, H]
            s = a["w"] @ h.T  # [K, S]
            s = np.exp(s - s.max(1, keepdims=True))
            att = s / s.sum(1, keepdims=True)  # [K, S]
            z = att @ h  # [K, H]
            out[i] = (z * a["beta"]).sum(1) + a["b"]
        return out

    def probabilities(self, feats: list[StudyFeatures]) -> np.ndarray:
        p = expit(self.logits(feats) / self.temperature)
        return np.where(self.trained, p, self.prior)

    def predict(self, feats: list[StudyFeatures]) -> list[list[ConditionResult]]:
        return [
            [
                ConditionResult(k, float(row[j]), bool(row[j] >= self.threshold[j]), float(self.threshold[j]))
                for j, k in enumerate(CONDITION_KEYS)
            ]
            for row in self.probabilities(feats)
        ]

    def save(self, folder: str | Path) -> str:
        self.version = save_artifact(folder, FAMILY, self.cfg, dict(self.a), self.meta)
        self.meta["version"] = self.version
        return self.version


def train_mil(feats: list[StudyFeatures], cfg: DiagnosisConfig) -> MILDiagnosisAgents:
    """Fit the MIL heads on ``feats`` (training studies only); calibrate on validation patients."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    classes = tuple(cfg.classes)
    bags = [bag(f, classes) for f in feats]
    y = labels_matrix(feats).astype(np.float32)  # [N, 17] in {-1, 0, 1}
    keys = [f.study.patient_key for f in feats]
    is_val = np.array([patient_fold(k, 100, cfg.seed + 7) < round(cfg.val_fraction * 100) for k in keys])
    stacked = np.concatenate([b for b, v in zip(bags, is_val, strict=True) if len(b) and not v] or bags)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    x, mask = _pad([(b - mean) / std if len(b) else b for b in bags])
    fit = ~is_val
    known = y >= 0
    n_pos = ((y == 1) & known & fit[:, None]).sum(0)
    n_neg = ((y == 0) & known & fit[:, None]).sum(0)
    trained = np.minimum(n_pos, n_neg) >= cfg.min_positives
    prior = np.array([(y[known[:, j], j] == 1).mean() if known[:, j].any() else 0.0 for j in range(K)])

    model = _GatedAttentionMIL(x.shape[2], cfg.mil_hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.mil_lr, weight_decay=cfg.mil_weight_decay)
    xt, mt = torch.from_numpy(x[fit]), torch.from_numpy(mask[fit])  # [n, S, F], [n, S]
    yt = torch.from_numpy(np.clip(y[fit], 0, 1))  # [n, 17]
    wt = torch.from_numpy((known[fit] & trained).astype(np.float32))  # [n, 17] masked -1 / untrained
    pos_weight = torch.from_numpy(np.where(n_pos > 0, n_neg / np.maximum(n_pos, 1), 1.0).astype(np.float32))
    loss_fn = nn.BCEWithLogitsLoss(reduction="none", pos_weight=pos_weight)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(xt)
    for epoch in range(cfg.mil_epochs):
        for idx in torch.randperm(n, generator=gen).split(cfg.mil_batch):
            loss = (loss_fn(model(xt[idx], mt[idx]), yt[idx]) * wt[idx]).sum() / wt[idx].sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if (epoch + 1) % max(1, cfg.mil_epochs // 4) == 0:
            log.info("diagnosis MIL epoch %d/%d loss %.3f", epoch + 1, cfg.mil_epochs, loss.item())

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    arrays = {
        "V_w": sd["V.weight"],
        "V_b": sd["V.bias"],
        "U_w": sd["U.weight"],
        "U_b": sd["U.bias"],
        "w": sd["w"],
        "beta": sd["beta"],
        "b": sd["b"],
        "mean": mean.astype(np.float32),
        "std": std.astype(np.float32),
        "temperature": np.ones(K, np.float32),
        "threshold": np.full(K, 0.5, np.float32),
        "trained": trained.astype(np.uint8),
        "prior": prior.astype(np.float32),
    }
    meta = {"head": "mil", "n_studies": len(feats), "n_features": int(x.shape[2]), "conditions": list(CONDITION_KEYS)}
    agents = MILDiagnosisAgents(cfg, arrays, meta)
    if is_val.any():
        z = agents.logits([f for f, v in zip(feats, is_val, strict=True) if v])  # [n_val, 17]
        yv = y[is_val]
        for j in range(K):
            ok = yv[:, j] >= 0
            if not trained[j] or not ok.any():
                continue
            arrays["temperature"][j] = fit_temperature(z[ok, j], yv[ok, j])
            p = expit(z[ok, j] / arrays["temperature"][j])
            arrays["threshold"][j] = choose_threshold(p, yv[ok, j], cfg.threshold_rule, cfg.target_sensitivity)
    log.info(
        "diagnosis MIL: %d studies, %d conditions trained (%.1f s)", n, int(trained.sum()), time.perf_counter() - t0
    )
    return agents
