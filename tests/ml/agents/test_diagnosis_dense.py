"""The dense diagnosis head: views of a real generated study, learning a lesion that occupies
one cell of one view (the max over cells must find it), the artifact round trip, box targets."""

from __future__ import annotations

import numpy as np

from ml.agents.dense import TRUNK_CHANNELS, DenseDiagnosisAgents, cell_targets, study_views, train_dense
from ml.agents.diagnosis import DiagnosisConfig, load_diagnosis
from ml.agents.features import StudyFeatures
from ml.agents.localization import load_truth
from ml.agents.metrics import auroc
from ml.conditions import CONDITION_KEYS
from ml.data.loader import StudyLoader, load_manifest
from ml.data.preprocess import PreprocessConfig
from ml.data.types import StudyData

CFG = DiagnosisConfig(head="dense", dense_size=64, dense_epochs=30, dense_hidden=16, min_positives=3)


def _feats(n: int, seed: int) -> tuple[list[StudyFeatures], np.ndarray]:
    """Studies of 4 views x 2 x 2 cells of noise; condition 0 present = one random cell of one
    random view carries a fixed pattern (a lesion somewhere in the spine)."""
    rng = np.random.default_rng(seed)
    pattern = np.random.default_rng(99).normal(size=TRUNK_CHANNELS)
    y = np.zeros((n, len(CONDITION_KEYS)), np.int64)
    y[:, 0] = rng.random(n) < 0.5
    y[:, 1:] = rng.random((n, len(CONDITION_KEYS) - 1)) < 0.3
    feats = []
    for i in range(n):
        cells = rng.normal(size=(4, 2, 2, TRUNK_CHANNELS))
        if y[i, 0]:
            cells[rng.integers(4), rng.integers(2), rng.integers(2)] += 1.5 * pattern
        study = StudyData(f"1.{seed}.{i}", f"P{seed}-{i}", [], labels=y[i])
        f = StudyFeatures(study, None)  # type: ignore[arg-type]
        f.extras["dense"] = {"cells": cells.astype(np.float16), "views": [(0, 0, k) for k in range(4)], "size": 64}
        feats.append(f)
    return feats, y


def test_dense_head_finds_a_one_cell_lesion_on_held_out_studies(tmp_path):
    train, _ = _feats(160, 0)
    test, y = _feats(80, 1)
    agents = train_dense(train, CFG)
    p = agents.probabilities(test)
    assert auroc(y[:, 0], p[:, 0]) > 0.9  # the lesion, wherever it is
    assert auroc(y[:, 1], p[:, 1]) < 0.75  # a condition with no signal is not learnt
    agents.save(tmp_path / "diag")
    back = load_diagnosis(tmp_path / "diag")
    assert isinstance(back, DenseDiagnosisAgents)
    np.testing.assert_allclose(back.probabilities(test), p, rtol=1e-5, atol=1e-6)
    calls = back.predict(test[:3])
    assert [c.condition for c in calls[0]] == list(CONDITION_KEYS)


def test_views_fuse_sagittal_sequences_and_boxes_mark_the_lesion_cells(agents_synth_dir):
    entries, base = load_manifest(agents_synth_dir / "manifest.jsonl")
    loader = StudyLoader(base, PreprocessConfig(size=128))
    cfg = DiagnosisConfig(head="dense", dense_size=128, dense_sag_slices=5, dense_max_axial=6)
    for e in entries:
        study = loader.load(e, geometry=True)
        x, meta = study_views(study, cfg)
        n_sag = sum(1 for p, _, _ in meta if p == 0)
        assert n_sag == 5
        assert 0 < sum(1 for p, _, _ in meta if p == 1) <= 6
        assert x.shape == (len(meta), 3, 128, 128)
        # T1, T2 and STIR differ: the three channels of a sagittal view are not copies
        assert np.abs(x[0, 0] - x[0, 1]).mean() > 0.02
        assert np.abs(x[0, 1] - x[0, 2]).mean() > 0.02
        f = StudyFeatures(study, None)  # type: ignore[arg-type]
        g = 4
        d = {"cells": np.zeros((len(meta), g, g, TRUNK_CHANNELS), np.float16), "views": meta, "size": 128}
        t = cell_targets(f, d, load_truth(base / e.ground_truth)).reshape(len(meta), g, g, -1)
        for j in range(len(CONDITION_KEYS)):
            if study.labels[j] == 0:
                assert (t[..., j] == 0).all()  # a negative study: every cell is a negative
            if study.labels[j] != 0:
                assert (t[..., j] != 0).all()  # never a negative cell for a present or uncertain condition
        present = [j for j in range(len(CONDITION_KEYS)) if study.labels[j] == 1]
        assert present
        assert any((t[..., j] == 1).any() for j in present)  # some box landed on a view
