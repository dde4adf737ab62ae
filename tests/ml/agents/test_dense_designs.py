"""The dense head's training designs kept in float16 for large sets (``dense_half_from``): the same
standardisation as the float32 path (made in two passes, never a float32 copy of the whole set),
values within float16's rounding and finite, a head that learns as the float32 one does, and
served logits that are the trained ones."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ml.agents.dense_designs import F16_MAX, keeps_half, training_designs
from ml.agents.dense_train import train_dense
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.metrics import auroc
from tests.ml.agents.dense_toy import pattern_studies

CFG = DiagnosisConfig(head="dense", dense_size=128, dense_epochs=20, dense_hidden=32, min_positives=3,
                      dense_stride=32, dense_box_stride=32, dense_context=True)  # fmt: skip


def _feats(n: int, seed: int, cfg: DiagnosisConfig):
    """Three sagittal slices of 4 x 4 cells; condition 0 is a fixed pattern at one cell."""

    def paint(cells: np.ndarray, rng: np.random.Generator, present: bool, pattern: np.ndarray) -> None:
        if present:
            cells[rng.integers(3), rng.integers(4), rng.integers(4)] += 2 * pattern

    return pattern_studies(n, seed, cfg, [(0, 0, k) for k in range(3)], paint)


def _no_targets(i: int, d: dict) -> np.ndarray:
    return np.full((len(d["views"]) * 16, 17), -1, np.int8)


def test_half_designs_are_the_float32_ones_within_float16_rounding():
    feats, _ = _feats(24, 0, CFG)
    feats[5].extras["dense"]["cells"][0, 0, 0, 3] = 3e4  # huge where the fitting studies are constant
    for f in feats[:5]:
        f.extras["dense"]["cells"][..., 3] = 0.0
    fit = np.arange(5)  # the statistics come from the first five studies only
    x32, t32, m32, s32 = training_designs(feats, fit, replace(CFG, dense_half_from=0), None, _no_targets)
    x16, t16, m16, s16 = training_designs(feats, fit, replace(CFG, dense_half_from=1), None, _no_targets)
    assert x32[0].dtype == torch.float32
    assert x16[0].dtype == torch.float16
    np.testing.assert_array_equal(m16, m32)  # the two passes give the one pass's statistics
    np.testing.assert_array_equal(s16, s32)
    for a, b in zip(x32, x16, strict=True):
        assert torch.isfinite(b).all()  # 3e4 / 1e-4 is far beyond float16: clipped, not inf
        np.testing.assert_allclose(b.float().numpy(), np.clip(a.numpy(), -F16_MAX, F16_MAX), rtol=1e-3, atol=1e-3)
    assert float(x32[5].abs().max()) > F16_MAX >= float(x16[5].float().abs().max())
    assert all(torch.equal(a, b) for a, b in zip(t32, t16, strict=True))


def test_a_head_on_half_designs_learns_and_serves_what_it_trained():
    assert not keeps_half(259, replace(CFG, dense_half_from=400))
    assert keeps_half(400, replace(CFG, dense_half_from=400))
    assert not keeps_half(10_000, replace(CFG, dense_half_from=0))
    train, _ = _feats(160, 1, CFG)
    test, y = _feats(80, 2, CFG)
    for folds in (0, 3):
        cfg = replace(CFG, dense_folds=folds)
        half = train_dense(train, replace(cfg, dense_half_from=1))
        full = train_dense(train, replace(cfg, dense_half_from=0))
        assert auroc(y[:, 0], half.probabilities(test)[:, 0]) > 0.9
        # served (numpy, float32, from the saved arrays) = what training reports (float32 designs)
        np.testing.assert_allclose(half.logits(train), half.fit_logits, rtol=1e-4, atol=1e-4)
        # the same head as float32 training, up to float16's rounding of its inputs
        assert np.corrcoef(half.logits(test)[:, 0], full.logits(test)[:, 0])[0, 1] > 0.98
        assert not np.array_equal(half.logits(test), full.logits(test))
