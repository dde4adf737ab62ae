"""The dense head's vertical context (``dense_context``): each cell reads the hidden features of
the cells above and below it in its own view; the numpy inference, the torch head and the fold
heads' mean agree; a finding told only by what lies above it is learnt."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ml.agents.dense import TRUNK_CHANNELS, DenseHead, _cell_logits, head_arrays, vertical_neighbours
from ml.agents.dense_train import mean_of_heads, train_dense
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.metrics import auroc
from ml.conditions import CONDITION_KEYS
from tests.ml.agents.dense_toy import cached_cells_study

K = len(CONDITION_KEYS)


def test_neighbours_stay_in_their_view_and_column():
    g = 3
    h = np.arange(2 * g * g, dtype=float)[:, None]  # 2 views of 3 x 3 cells, the cell index as feature
    up, down = vertical_neighbours(h, g)
    grid = h.reshape(2, g, g)
    np.testing.assert_array_equal(up.reshape(2, g, g)[:, 1:], grid[:, :-1])  # the row above
    np.testing.assert_array_equal(down.reshape(2, g, g)[:, :-1], grid[:, 1:])
    assert (up.reshape(2, g, g)[:, 0] == 0).all()  # nothing above a view's top row (not the other view)
    assert (down.reshape(2, g, g)[:, -1] == 0).all()
    t_up, t_down = vertical_neighbours(torch.from_numpy(h), g)
    np.testing.assert_array_equal(t_up.numpy(), up)
    np.testing.assert_array_equal(t_down.numpy(), down)


def test_numpy_inference_and_fold_mean_match_the_torch_context_head():
    torch.manual_seed(0)
    f, g = 10, 4
    heads = []
    x = np.random.default_rng(0).normal(size=(3 * g * g, f)).astype(np.float32)
    norm = {"mean": np.zeros(f, np.float32), "std": np.ones(f, np.float32)}
    for _ in range(3):
        head = DenseHead(f, 6, 0.0, grid=g).eval()
        for p in (head.up.weight, head.down.weight):
            torch.nn.init.normal_(p)
        with torch.no_grad():
            want = head(torch.from_numpy(x)).numpy()
        a = head_arrays(head)
        np.testing.assert_allclose(_cell_logits({**a, **norm}, x, g), want, rtol=1e-5, atol=1e-5)
        heads.append(a)
    mean = np.mean([_cell_logits({**a, **norm}, x, g) for a in heads], 0)
    np.testing.assert_allclose(_cell_logits({**mean_of_heads(heads), **norm}, x, g), mean, rtol=1e-5, atol=1e-5)


def _feats(n: int, seed: int, cfg: DiagnosisConfig) -> tuple[list[StudyFeatures], np.ndarray]:
    """Views of 4 x 4 cells; every study has a pattern A in one cell, and condition 0 is present
    when a pattern B lies right above it (B alone, elsewhere, means nothing)."""
    rng = np.random.default_rng(seed)
    pa, pb = np.random.default_rng(99).normal(size=(2, TRUNK_CHANNELS))
    y = np.zeros((n, K), np.int64)
    y[:, 0] = rng.random(n) < 0.5
    out = []
    for i in range(n):
        cells = rng.normal(size=(2, 4, 4, TRUNK_CHANNELS))
        v, r, c = rng.integers(2), 1 + rng.integers(3), rng.integers(4)
        cells[v, r, c] += 2 * pa
        if y[i, 0]:
            cells[v, r - 1, c] += 2 * pb
        else:  # B elsewhere: not above A
            cells[1 - v, rng.integers(4), rng.integers(4)] += 2 * pb
        out.append(cached_cells_study(f"1.{seed}.{i}", y[i], cells, [(0, 0, 0), (0, 0, 1)], cfg))
    return out, y


def test_context_learns_a_finding_told_by_the_cell_above():
    cfg = DiagnosisConfig(head="dense", dense_size=128, dense_epochs=30, dense_hidden=16, min_positives=3,
                          dense_stride=32, dense_box_stride=32, dense_context=True)  # fmt: skip
    train, _ = _feats(200, 0, cfg)
    test, y = _feats(100, 1, cfg)
    agents = train_dense(train, cfg)
    assert {"w2_up", "w2_down"} <= set(agents.arrays())
    assert auroc(y[:, 0], agents.probabilities(test)[:, 0]) > 0.85
    plain = train_dense(train, replace(cfg, dense_context=False))  # one cell at a time cannot tell
    assert "w2_up" not in plain.arrays()
    assert auroc(y[:, 0], plain.probabilities(test)[:, 0]) < 0.7
