"""Spine adaptation of the dense head's trunk (``dense_adapt_blocks``): the adapted blocks change,
the artifact carries them and the loaded head reproduces the training-time logits, the frozen
default is untouched, and cells of one trunk are never served for another."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ml.agents.dense import (
    ADAPT_PREFIX,
    DenseDiagnosisAgents,
    adapted_arrays,
    dense_cells,
    load_trunk,
    tail_cells,
    trunk_digest,
    view_key,
)
from ml.agents.dense_train import train_dense
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.heads import load_diagnosis
from ml.conditions import CONDITION_KEYS
from ml.data.types import StudyData

K = len(CONDITION_KEYS)
CFG = DiagnosisConfig(
    head="dense", dense_size=64, dense_epochs=8, dense_hidden=16, min_positives=3, dense_stride=32,
    dense_box_stride=32, dense_adapt_epochs=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def generic():
    return load_trunk()


def _feats(n: int, seed: int, trunk, axial: bool = False) -> list[StudyFeatures]:
    """Studies of 4 views whose block-13 cells (4 x 4, 96 channels) are noise; condition 0
    present = a fixed pattern on one 2 x 2 patch of one view. The stride-32 cells are the generic
    trunk's blocks 14-17 on them, as ``dense_cells`` caches them. With ``axial`` the last view
    is an axial one."""
    rng = np.random.default_rng(seed)
    pattern = np.random.default_rng(99).normal(size=96)
    y = (rng.random((n, K)) < 0.4).astype(np.int64)
    out = []
    for i in range(n):
        fine = np.abs(rng.normal(size=(4, 4, 4, 96)))
        if y[i, 0]:
            v, r, c = rng.integers(4), 2 * rng.integers(2), 2 * rng.integers(2)
            fine[v, r : r + 2, c : c + 2] += 0.7 * pattern
        fine = fine.astype(np.float16)
        f = StudyFeatures(StudyData(f"1.{seed}.{i}", f"P{seed}-{i}", [], labels=y[i]), None)  # type: ignore[arg-type]
        views = [(0, 0, k) for k in range(3)] + [(1, 1, 3) if axial else (0, 0, 3)]
        f.extras["dense"] = {"cells": tail_cells(trunk, fine), "fine": fine, "views": views, "size": 64,
                             "key": view_key(CFG)}  # fmt: skip
        out.append(f)
    return out


def _fresh(feats: list[StudyFeatures]) -> list[StudyFeatures]:
    """The same studies with only the generic cached cells (nothing derived by training)."""
    out = []
    for f in feats:
        g = StudyFeatures(f.study, None)  # type: ignore[arg-type]
        g.extras["dense"] = f.extras["dense"]
        out.append(g)
    return out


@pytest.mark.parametrize(("contrast", "mirror"), [(False, False), (True, False), (True, True)])
def test_adapted_blocks_change_and_the_loaded_artifact_reproduces_training_logits(tmp_path, generic, contrast, mirror):
    """With the slice contrast and the axial mirror too: the adaptation's torch design is the
    served numpy one."""
    train = _feats(48, 0, generic, axial=mirror)
    cfg = replace(CFG, dense_adapt_blocks=1, dense_slice_contrast=contrast, dense_axial_mirror=mirror)
    agents = train_dense(train, cfg)
    weights = {k: v for k, v in agents.arrays().items() if k.startswith(ADAPT_PREFIX)}
    before = adapted_arrays(generic, 1)
    assert set(weights) == set(before)
    assert all(k.startswith("adapt.17.") for k in weights)
    assert max(float(np.abs(weights[k] - before[k]).max()) for k in weights) > 1e-4  # the block moved
    assert agents.meta["adapt_seconds"] > 0
    agents.save(tmp_path / "diag")
    back = load_diagnosis(tmp_path / "diag")
    assert isinstance(back, DenseDiagnosisAgents)
    assert back.cfg.dense_adapt_blocks == 1
    assert back.cfg.dense_slice_contrast == contrast
    fresh = _fresh(train)
    assert agents.fit_logits is not None
    np.testing.assert_allclose(back.logits(fresh), agents.fit_logits, rtol=1e-4, atol=1e-4)
    # the adapted trunk's cells, not the cached generic ones
    d = dense_cells(fresh[0], back.cfg, back.trunk(fresh[:1]))
    assert d["key"] == view_key(back.cfg) + f"|trunk:{trunk_digest(back.trunk([]))}"
    assert not np.array_equal(d["cells"], fresh[0].extras["dense"]["cells"])


def test_without_adaptation_the_head_and_its_cells_are_the_frozen_ones(generic):
    train = _feats(40, 1, generic)
    agents = train_dense(train, CFG)
    assert CFG.dense_adapt_blocks == 0
    assert not agents.adapted
    assert not any(k.startswith(ADAPT_PREFIX) for k in agents.arrays())
    assert "adapt_seconds" not in agents.meta
    agents.logits(train)
    assert agents._trunk is None  # cached cells served as they are: no trunk loaded
    assert all(f.extras["dense"]["key"] == view_key(CFG) and "dense_trunks" not in f.extras for f in train)
    again = train_dense(_fresh(train), replace(CFG, dense_adapt_blocks=0))
    for k, v in agents.arrays().items():
        np.testing.assert_array_equal(again.arrays()[k], v)
    with pytest.raises(ValueError, match="dense_adapt_blocks"):
        DiagnosisConfig(head="dense", dense_adapt_blocks=5)


def test_cells_are_keyed_by_trunk_and_never_reused_across_trunks(generic):
    (f,) = _feats(1, 2, generic)
    cached = f.extras["dense"]
    assert dense_cells(f, CFG) is cached
    assert dense_cells(f, CFG, generic) is cached
    rng = np.random.default_rng(0)
    tweaks = []
    for scale in (0.05, 0.1):
        w = {k: v + scale * rng.normal(size=v.shape).astype(np.float32) for k, v in adapted_arrays(generic, 1).items()}
        tweaks.append(load_trunk(w))
    a, b = tweaks
    assert trunk_digest(a) != trunk_digest(b)
    assert trunk_digest(generic) == ""
    da, db = dense_cells(f, CFG, a), dense_cells(f, CFG, b)
    assert da["key"] == view_key(CFG) + f"|trunk:{trunk_digest(a)}"
    assert db["key"] != da["key"]
    assert not np.array_equal(da["cells"], cached["cells"])
    assert not np.array_equal(da["cells"], db["cells"])
    np.testing.assert_array_equal(da["cells"], tail_cells(a, cached["fine"]))  # from the block-13 cells
    assert f.extras["dense"] is cached  # the generic cells stay what the study caches
    assert dense_cells(f, CFG, a) is da
    assert dense_cells(f, CFG, generic) is cached
    # the same weights loaded again key the same cells (the digest is of the weights)
    again = load_trunk(adapted_arrays(a, 1))
    assert dense_cells(f, CFG, again) is da


def test_adapted_cells_from_pixels_match_those_from_cached_block13_cells(agents_synth_dir, generic):
    """Serving (pixels through the whole adapted trunk) and training (the cached block-13 cells
    through its adapted blocks) give the same cells, to the float16 the cache stores."""
    from ml.data.loader import StudyLoader, load_manifest
    from ml.data.preprocess import PreprocessConfig

    entries, base = load_manifest(agents_synth_dir / "manifest.jsonl")
    cfg = replace(CFG, dense_size=128, dense_sag_slices=2, dense_max_axial=2)
    study = StudyLoader(base, PreprocessConfig(size=128)).load(entries[0], geometry=True)
    rng = np.random.default_rng(1)
    adapted = load_trunk({k: v + 0.05 * rng.normal(size=v.shape).astype(np.float32)
                          for k, v in adapted_arrays(generic, 2).items()})  # fmt: skip
    from_pixels = dense_cells(StudyFeatures(study, None), cfg, adapted)  # type: ignore[arg-type]
    f = StudyFeatures(study, None)  # type: ignore[arg-type]
    dense_cells(f, cfg, generic)
    derived = dense_cells(f, cfg, adapted)
    assert derived["key"] == from_pixels["key"]
    assert derived is not f.extras["dense"]
    np.testing.assert_array_equal(derived["fine"], from_pixels["fine"])  # block 13 is every trunk's
    a, b = derived["cells"].astype(np.float32), from_pixels["cells"].astype(np.float32)
    assert np.abs(a - b).max() <= 0.02 * np.abs(b).max()
