"""The dense head's slice contrast (``dense_slice_contrast``): each cell's features also minus their
mean over the sagittal slices at the same place. The averaging stays within one series and
window, axial views are left alone, the served logits are the trained ones, and a finding told
only by being on one slice (against the same look on every slice) is learnt. Heads of several
seeds (``dense_seeds``) are served as their mean."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ml.agents.dense import TRUNK_CHANNELS, cell_design, slice_mean_matrix
from ml.agents.dense_train import train_dense
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.metrics import auroc
from tests.ml.agents.dense_toy import pattern_studies

SLICES = 5


def test_the_mean_is_over_one_window_of_sagittal_slices_only():
    views = [(0, 0, 0), (0, 0, 1), (0, 0, 0), (0, 0, 1), (1, 1, 3), (1, 1, 4)]
    crops = [(0, 0, 64), (0, 0, 64), (0, 40, 64), (0, 40, 64), (5, 5, 32), (5, 5, 32)]
    m = slice_mean_matrix({"views": views, "crops": crops})
    np.testing.assert_allclose(m.sum(1), 1.0)
    np.testing.assert_allclose(m[0], [0.5, 0.5, 0, 0, 0, 0])  # the two slices of the upper tile
    np.testing.assert_allclose(m[3], [0, 0, 0.5, 0.5, 0, 0])  # the lower tile is another window
    np.testing.assert_allclose(m[4], [0, 0, 0, 0, 1, 0])  # an axial view: its own group (no contrast)
    cells = np.random.default_rng(0).normal(size=(6, 2, 2, TRUNK_CHANNELS)).astype(np.float16)
    x = cell_design({"views": views, "crops": crops, "cells": cells}, 32, contrast=True)  # [6 * 2 * 2, 2C + 2]
    c = TRUNK_CHANNELS
    assert x.shape == (6 * 4, 2 * c + 2)
    plain = cell_design({"views": views, "crops": crops, "cells": cells}, 32)
    np.testing.assert_array_equal(x[:, :c], plain[:, :c])
    np.testing.assert_array_equal(x[:, -2:], plain[:, -2:])
    diff = x[:, c : 2 * c].reshape(6, 4, c)
    np.testing.assert_allclose(diff[4:], 0.0)
    want = cells[0].astype(np.float32) - (cells[0].astype(np.float32) + cells[1].astype(np.float32)) / 2
    np.testing.assert_allclose(diff[0], want.reshape(4, c), rtol=1e-5, atol=1e-5)


def _feats(n: int, seed: int, cfg: DiagnosisConfig) -> tuple[list[StudyFeatures], np.ndarray]:
    """Five sagittal slices of 4 x 4 cells. Every study shows a pattern A at one place; condition 0
    is present when A is on one slice only (a focal finding), absent when A is on every slice
    there (a diffuse one). One cell's features are the same in both."""

    def paint(cells: np.ndarray, rng: np.random.Generator, present: bool, pa: np.ndarray) -> None:
        r, c = rng.integers(4), rng.integers(4)
        if present:
            cells[rng.integers(SLICES), r, c] += 2 * pa
        else:
            cells[:, r, c] += 2 * pa

    return pattern_studies(n, seed, cfg, [(0, 0, k) for k in range(SLICES)], paint)


def test_contrast_learns_a_finding_seen_on_one_slice_only():
    cfg = DiagnosisConfig(head="dense", dense_size=128, dense_epochs=30, dense_hidden=64, min_positives=3,
                          dense_stride=32, dense_box_stride=32, dense_slice_contrast=True)  # fmt: skip
    train, _ = _feats(200, 0, cfg)
    test, y = _feats(100, 1, cfg)
    agents = train_dense(train, cfg)
    assert agents.a["w1"].shape[0] == 2 * TRUNK_CHANNELS + 2
    assert auroc(y[:, 0], agents.probabilities(test)[:, 0]) > 0.85
    # what is served (numpy, from the saved arrays) is what training computed (torch)
    np.testing.assert_allclose(agents.logits(train), agents.fit_logits, rtol=1e-4, atol=1e-4)
    plain = train_dense(train, replace(cfg, dense_slice_contrast=False))  # one cell at a time cannot tell
    assert auroc(y[:, 0], plain.probabilities(test)[:, 0]) < 0.7


def test_heads_of_several_seeds_are_served_as_their_mean():
    cfg = DiagnosisConfig(head="dense", dense_size=128, dense_epochs=10, dense_hidden=16, min_positives=3,
                          dense_stride=32, dense_box_stride=32, dense_slice_contrast=True, dense_seeds=2)  # fmt: skip
    train, _ = _feats(60, 2, cfg)
    agents = train_dense(train, cfg)
    one = train_dense(train, replace(cfg, dense_seeds=1))
    assert agents.a["w1"].shape[1] == 2 * one.a["w1"].shape[1]  # the two hidden layers side by side
    np.testing.assert_allclose(agents.logits(train), agents.fit_logits, rtol=1e-4, atol=1e-4)
    assert not np.allclose(agents.fit_logits, one.fit_logits)
