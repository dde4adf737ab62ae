"""The axial mirror (``dense_axial_mirror``): with the slice contrast, an axial cell's contrast
half is the cell minus the cell at the mirrored column (the other side of the canal) instead of
zero. Sagittal views keep their slice contrast, a finding told only by being on one side is
learnt, and the option needs the slice contrast."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ml.agents.dense import TRUNK_CHANNELS, cell_design
from ml.agents.dense_train import train_dense
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.metrics import auroc
from tests.ml.agents.dense_toy import pattern_studies

C = TRUNK_CHANNELS


def test_an_axial_cell_is_against_its_mirrored_twin_and_sagittal_cells_against_their_slices():
    views = [(0, 0, 0), (0, 0, 1), (1, 1, 3)]
    sq = np.random.default_rng(1).normal(size=(3, 3, 3, C)).astype(np.float16)  # [V, rows, cols, C]
    d = {"views": views, "cells": sq}
    mirrored = cell_design(d, 32, contrast=True, mirror=True).reshape(3, 3, 3, -1)  # [V, g, g, 2C + 2]
    slices = cell_design(d, 32, contrast=True).reshape(3, 3, 3, -1)
    x = sq.astype(np.float32)
    np.testing.assert_array_equal(mirrored[:2], slices[:2])  # sagittal: the slice contrast as before
    np.testing.assert_allclose(slices[2, :, :, C : 2 * C], 0.0)  # axial without the mirror: zero
    want = x[2] - x[2][:, ::-1]  # column j against column g - 1 - j
    np.testing.assert_allclose(mirrored[2, :, :, C : 2 * C], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mirrored[2, :, 1, C : 2 * C], 0.0)  # the middle column is its own twin
    np.testing.assert_array_equal(mirrored[2, :, :, -2:], slices[2, :, :, -2:])  # the plane one-hot


def test_the_mirror_needs_the_slice_contrast():
    with pytest.raises(ValueError, match="dense_slice_contrast"):
        DiagnosisConfig(head="dense", dense_axial_mirror=True)


def _feats(n: int, seed: int, cfg: DiagnosisConfig) -> tuple[list[StudyFeatures], np.ndarray]:
    """Two sagittal views of noise and one axial view of 4 x 4 cells. Every study shows a pattern
    A on the axial view; condition 0 is present when A is on one side only (a lateral finding),
    absent when A is at the same place on both sides (a symmetric one). One cell's features are
    the same in both."""

    def paint(cells: np.ndarray, rng: np.random.Generator, present: bool, pa: np.ndarray) -> None:
        r, c = rng.integers(4), rng.integers(4)
        cells[2, r, c] += 2 * pa
        if not present:
            cells[2, r, 3 - c] += 2 * pa

    return pattern_studies(n, seed, cfg, [(0, 0, 0), (0, 0, 1), (1, 1, 2)], paint)


def test_the_mirror_learns_a_finding_on_one_side_only():
    cfg = DiagnosisConfig(head="dense", dense_size=128, dense_epochs=30, dense_hidden=64, min_positives=3,
                          dense_stride=32, dense_box_stride=32, dense_slice_contrast=True,
                          dense_axial_mirror=True)  # fmt: skip
    train, _ = _feats(200, 0, cfg)
    test, y = _feats(100, 1, cfg)
    agents = train_dense(train, cfg)
    assert auroc(y[:, 0], agents.probabilities(test)[:, 0]) > 0.85
    np.testing.assert_allclose(agents.logits(train), agents.fit_logits, rtol=1e-4, atol=1e-4)
    slices_only = train_dense(train, replace(cfg, dense_axial_mirror=False))  # axial contrast zero: cannot tell
    assert auroc(y[:, 0], slices_only.probabilities(test)[:, 0]) < 0.7
