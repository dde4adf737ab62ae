"""The dense head's cell loss: the cells under a finding's box must weigh enough to teach a small
lesion that the MIL max over thousands of cells does not find by itself."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ml.agents.dense import DenseHead
from ml.agents.dense_train import _batch_loss, _fit_head
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.metrics import auroc
from ml.conditions import CONDITION_KEYS
from tests.ml.agents.dense_toy import cached_cells_study

K = len(CONDITION_KEYS)
CFG = DiagnosisConfig(head="dense", dense_epochs=15, dense_hidden=16, dense_batch=16)


class _Identity(DenseHead):
    """The logits are the inputs: the loss's gradient per cell is read off the inputs."""

    def __init__(self) -> None:
        super().__init__(K, 1, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _box_share(cell_loss: str) -> float:
    """|gradient| on a 2-cell box of condition 0 over |gradient| on the 1000 cells of a negative
    study, through the cell loss alone (MIL off: no study label known)."""
    cells = 1000
    zs = [torch.zeros(cells, K, requires_grad=True) for _ in range(2)]
    t_pos = torch.zeros(cells, K)
    t_pos[:, 0] = -1  # a present condition: only its box cells are known
    t_pos[:2, 0] = 1
    ts = [t_pos, torch.zeros(cells, K)]
    yb = torch.full((2, K), -1.0)
    cfg = replace(CFG, dense_cell_loss=cell_loss)
    _batch_loss(_Identity(), zs, ts, yb, np.array([cells, cells]), torch.ones(K), cfg).backward()
    assert zs[0].grad is not None
    assert zs[1].grad is not None
    return float(zs[0].grad[:2, 0].abs().sum() / zs[1].grad[:, 0].abs().sum())


def test_balanced_cell_loss_weighs_a_box_as_much_as_the_rest_of_a_study():
    # the mean over a study's known cells: the box is 2 of 16002 known entries (x5), against the
    # negative study's 1000 cells of 17000: about 1 % of a negative study's pull
    assert _box_share("study") < 0.02
    # balanced: the box's mean loss (times the positive weight) against the negative cells' mean
    assert _box_share("balanced") == pytest.approx(CFG.dense_box_pos_weight, rel=1e-4)


def _studies(n: int, seed: int, cells: int = 300, width: int = 24) -> tuple[list, list, torch.Tensor]:
    """Studies of ``cells`` noise cells; condition 0 present = one cell carries a faint pattern,
    its box the only known cell of that condition in the study."""
    rng = np.random.default_rng(seed)
    lesion = np.random.default_rng(5).normal(size=width)
    lesion *= 2.2 * 3 / np.linalg.norm(lesion)
    y = np.zeros((n, K), np.float32)
    y[:, 0] = rng.random(n) < 0.4
    xs, ts = [], []
    for i in range(n):
        x = rng.normal(size=(cells, width)).astype(np.float32)
        t = np.zeros((cells, K), np.float32)
        if y[i, 0]:
            c = rng.integers(cells)
            x[c] += lesion
            t[:, 0] = -1
            t[c, 0] = 1
        xs.append(torch.from_numpy(x))
        ts.append(torch.from_numpy(t))
    return xs, ts, torch.from_numpy(y)


def test_box_cells_teach_a_faint_lesion_that_the_max_alone_misses():
    xs, ts, y = _studies(160, 0)
    xe, _, ye = _studies(100, 1)
    scores = {}
    for cell_loss in ("study", "balanced"):
        head = _fit_head(xs, ts, y, np.arange(len(xs)), xs[0].shape[1], replace(CFG, dense_cell_loss=cell_loss))
        with torch.no_grad():
            z = np.array([float(head(x).max(0).values[0]) for x in xe])
        scores[cell_loss] = auroc(ye[:, 0].numpy(), z)
    assert scores["balanced"] > 0.9
    assert scores["study"] < 0.75  # the box cells drown in the study's other cells


def test_unknown_cell_loss_is_refused():
    with pytest.raises(ValueError, match="dense_cell_loss"):
        DiagnosisConfig(head="dense", dense_cell_loss="focal")


def test_shifted_temperature_recentres_logits_whose_negatives_sit_above_zero():
    from scipy.special import expit

    from ml.agents.diagnosis import fit_shifted_temperature

    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(float)
    z = np.where(y == 1, 3.0, 1.0) + rng.normal(0, 0.7, 400)  # every study's max cell above 0
    t, shift = fit_shifted_temperature(z, y)
    assert 1.5 < shift < 2.5  # the 50 % point between the two groups, not at 0
    p = expit((z - shift) / t)
    assert abs(p.mean() - y.mean()) < 0.02  # Platt scaling matches the prevalence
    assert abs(p[y == 0].mean()) < 0.2
    # one class, or logits that rank negatives higher: no shift
    assert fit_shifted_temperature(z, np.zeros(400)) == (1.0, 0.0)
    assert fit_shifted_temperature(-z, y)[1] == 0.0


def test_balanced_head_folds_its_shift_into_the_output_bias():
    """Probabilities of the served head are sigmoid(max cell logit / T): the calibration shift
    lives in the last layer's bias, so the held-out probabilities track the prevalence."""
    from ml.agents.dense import TRUNK_CHANNELS
    from ml.agents.dense_train import train_dense
    from ml.agents.features import StudyFeatures

    cfg = replace(CFG, dense_size=64, dense_epochs=30, dense_stride=32, dense_box_stride=32, dense_cell_loss="balanced")
    pattern = np.random.default_rng(99).normal(size=TRUNK_CHANNELS)

    def feats(n: int, seed: int) -> tuple[list[StudyFeatures], np.ndarray]:
        rng = np.random.default_rng(seed)
        y = np.zeros((n, K), np.int64)
        y[:, 0] = rng.random(n) < 0.4
        y[:, 1:] = rng.random((n, K - 1)) < 0.3
        out = []
        for i in range(n):
            cells = rng.normal(size=(4, 2, 2, TRUNK_CHANNELS))
            if y[i, 0]:
                cells[rng.integers(4), rng.integers(2), rng.integers(2)] += 1.5 * pattern
            out.append(cached_cells_study(f"1.{seed}.{i}", y[i], cells, [(0, 0, k) for k in range(4)], cfg))
        return out, y

    train, _ = feats(160, 0)
    test, y = feats(120, 1)
    p = train_dense(train, cfg).probabilities(test)
    assert auroc(y[:, 0], p[:, 0]) > 0.9
    assert abs(p[:, 0].mean() - y[:, 0].mean()) < 0.1
