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
