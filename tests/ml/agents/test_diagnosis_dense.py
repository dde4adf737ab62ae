"""The dense diagnosis head: views of a real generated study, learning a lesion that occupies
one cell of one view (the max over cells must find it), the artifact round trip, box targets."""

from __future__ import annotations

import json

import numpy as np

from ml.agents.dense import TRUNK_CHANNELS, DenseDiagnosisAgents, view_key
from ml.agents.dense_train import cell_targets, train_dense
from ml.agents.dense_views import axial_indices, study_views
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.heads import load_diagnosis
from ml.agents.localization import load_truth, truth_slices
from ml.agents.metrics import auroc
from ml.conditions import CONDITION_KEYS
from ml.data.loader import StudyLoader, load_manifest
from ml.data.preprocess import PreprocessConfig
from ml.data.types import StudyData

# the hand-made studies below have stride-32 cells only (no stride-16 "fine" cells)
CFG = DiagnosisConfig(
    head="dense", dense_size=64, dense_epochs=30, dense_hidden=16, min_positives=3, dense_stride=32, dense_box_stride=32
)


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
        f.extras["dense"] = {
            "cells": cells.astype(np.float16),
            "views": [(0, 0, k) for k in range(4)],
            "size": 64,
            "key": view_key(CFG),
        }
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
    assert (back.cfg.dense_crop, back.cfg.dense_axial) == (CFG.dense_crop, CFG.dense_axial)
    # an artifact saved before spine crops existed keeps seeing whole slices and every axial
    doc = json.loads((tmp_path / "diag" / "config.json").read_text())
    del doc["config"]["dense_crop"], doc["config"]["dense_axial"]
    (tmp_path / "diag" / "config.json").write_text(json.dumps(doc))
    old = load_diagnosis(tmp_path / "diag")
    assert (old.cfg.dense_crop, old.cfg.dense_axial) == (False, "all")


def test_views_fuse_sagittal_sequences_and_boxes_mark_the_lesion_cells(agents_synth_dir):
    entries, base = load_manifest(agents_synth_dir / "manifest.jsonl")
    loader = StudyLoader(base, PreprocessConfig(size=128))
    cfg = DiagnosisConfig(
        head="dense", dense_size=128, dense_sag_slices=5, dense_max_axial=6, dense_crop=False, dense_axial="all"
    )
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
        # key-slice negatives: on a view with a present finding's box the rest of that view is
        # negative; elsewhere a present condition stays unknown
        tk = cell_targets(f, d, load_truth(base / e.ground_truth), key_negatives=True).reshape(t.shape)
        for j in present:
            boxed = (t[..., j] == 1).any(axis=(1, 2))  # [V] views with a box of j
            assert ((tk[..., j] == 1) == (t[..., j] == 1)).all()  # the boxes are the same
            assert ((tk[boxed, :, :, j] == 0) | (t[boxed, :, :, j] == 1)).all()
            assert (tk[~boxed & ~(tk[..., j] == 0).any(axis=(1, 2)), :, :, j] == -1).all()


def test_spine_crops_keep_every_lesion_and_one_axial_slice_per_disc(agents_synth_dir):
    """The crops are found from the pixels alone; here the generator's truth checks them: the
    centre of every present finding's key-slice box lies inside a window of that slice, the
    windows are smaller than the slice (the spine is magnified), and ``dense_axial: disc`` picks
    one axial slice of each disc level the stack covers."""
    entries, base = load_manifest(agents_synth_dir / "manifest.jsonl")
    loader = StudyLoader(base, PreprocessConfig(size=128))
    cfg = DiagnosisConfig(head="dense", dense_size=128, dense_sag_slices=15, dense_crop=True, dense_axial="all")
    disc = DiagnosisConfig(head="dense", dense_size=128, dense_crop=True, dense_axial="disc")
    checked = 0
    for e in entries:
        study = loader.load(e, geometry=True)
        truth = load_truth(base / e.ground_truth)
        crops: list[tuple[int, int, int]] = []
        x, meta = study_views(study, cfg, crops)
        assert len(crops) == len(meta) == len(x)
        assert all(
            side < study.series[si].pixels.shape[-1] for (_, si, _), (_, _, side) in zip(meta, crops, strict=True)
        )
        f = StudyFeatures(study, None)  # type: ignore[arg-type]
        ref = next(si for p, si, _ in meta if p == 0)
        for (si, k, _cond), item in truth_slices(f, truth).items():
            if item["label"] != 1:
                continue
            series = study.series[si]
            x0, y0, x1, y1 = series.geometry.to_preprocessed(item["box"])
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            at = si if series.plane == "axial" else ref
            wins = [w for (_, s2, k2), w in zip(meta, crops, strict=True) if s2 == at and k2 == k]
            if not wins:
                continue  # a sagittal slice outside the central ones the head sees
            assert any(wx <= cx <= wx + side and wy <= cy <= wy + side for wx, wy, side in wins), (e.study_uid, item)
            checked += 1
        ax = [(si, s) for si, s in enumerate(study.series) if s.plane == "axial"]
        levels = {s["series_uid"]: s["slice_levels"] for s in truth["series"]}
        for _si, s in ax:
            chosen = axial_indices(s, disc)
            lv = levels[s.series_uid]
            assert sorted(lv[k] for k in chosen) == sorted(set(lv))  # one slice per level, each level once
        _, dmeta = study_views(study, disc)
        assert sum(1 for p, _, _ in dmeta if p == 1) == sum(len(set(levels[s.series_uid])) for _, s in ax)
    assert checked >= 3


def test_box_targets_follow_the_crop_window():
    """A box maps into the cells of the window that holds it, and nowhere in one that does not."""
    from ml.data.preprocess import SeriesGeometry
    from ml.data.types import SeriesData

    geo = SeriesGeometry(rows=128, columns=128, size=128)
    s = SeriesData(
        "1.9", "T2", np.zeros((3, 128, 128), np.float32), plane="axial", sop_uids=["a", "b", "c"], geometry=geo
    )
    labels = np.zeros(len(CONDITION_KEYS), np.int64)
    labels[0] = 1
    f = StudyFeatures(StudyData("1.8", "P", [s], labels=labels), None)  # type: ignore[arg-type]
    truth = {
        "series": [{"key": "ax", "series_uid": "1.9"}],
        "findings": [
            {
                "condition": CONDITION_KEYS[0],
                "label": 1,
                "key_slices": {"ax": [{"box": [40, 40, 48, 48], "sop_instance_uid": "b"}]},
            }
        ],
    }
    d = {
        "cells": np.zeros((2, 4, 4, TRUNK_CHANNELS), np.float16),
        "views": [(1, 0, 1), (1, 0, 1)],
        "crops": [(32, 32, 64), (80, 80, 48)],
        "size": 64,
    }
    t = cell_targets(f, d, truth).reshape(2, 4, 4, -1)[..., 0]
    # window 1: (40..48 - 32) / 64 * 4 = 0.5..1.0 -> cell (0, 0) only
    assert t[0].tolist() == [[1, -1, -1, -1], [-1] * 4, [-1] * 4, [-1] * 4]
    assert (t[1] == -1).all()  # the box is outside the second window
    assert (cell_targets(f, d, truth).reshape(2, 4, 4, -1)[..., 1] == 0).all()  # a negative condition


def test_folded_trunk_gives_the_cells_of_the_unfolded_network():
    """The served trunk has its batch norms folded into the convolutions (faster encoding); the
    cells must be those of the ImageNet network as published, at both strides."""
    import copy

    import torch
    from torch import nn

    from ml.agents.baselines import load_mobilenet_v2
    from ml.agents.dense import fold_batch_norms, load_trunk

    reference = load_mobilenet_v2().features[:18].eval()
    folded = load_trunk()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        for part in (slice(0, 14), slice(0, 18)):
            a, b = reference[part](x), folded[part](x)
            assert float((a - b).norm() / a.norm()) < 1e-4
    # folding works on a copy and leaves a network without Conv -> BN pairs unchanged
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert isinstance(fold_batch_norms(copy.deepcopy(plain))[0], nn.Conv2d)


def test_mean_of_heads_is_one_wider_head_with_the_mean_cell_logits():
    """Fold heads are served as one MLP: its cell logits must be exactly the mean of theirs."""
    from ml.agents.dense import _cell_logits
    from ml.agents.dense_train import mean_of_heads

    rng = np.random.default_rng(0)
    f, h, k = 12, 5, len(CONDITION_KEYS)
    shapes = {"w1": (f, h), "b1": (h,), "w2": (h, k), "b2": (k,)}
    heads = [{name: rng.normal(size=shape) for name, shape in shapes.items()} for _ in range(3)]
    norm = {"mean": np.zeros(f), "std": np.ones(f)}
    x = rng.normal(size=(40, f))
    want = np.mean([_cell_logits({**a, **norm}, x) for a in heads], 0)
    got = _cell_logits({**mean_of_heads(heads), **norm}, x)
    assert got.shape == (40, k)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_fold_heads_learn_and_give_honest_out_of_fold_logits(caplog):
    """With ``dense_folds`` every training study is scored by the fold head that did not see it:
    those logits find the lesion (they are held-out predictions, not in-sample ones), and the
    served head is the folds' mean, as good on new studies. Each fold's training says how far
    it is (its first and last epoch at least)."""
    import logging
    from dataclasses import replace

    train, y_train = _feats(160, 0)
    test, y = _feats(80, 1)
    with caplog.at_level(logging.INFO, logger="ml.agents.dense_train"):
        agents = train_dense(train, replace(CFG, dense_folds=3))
    lines = [r.getMessage() for r in caplog.records if r.name == "ml.agents.dense_train"]
    n = CFG.dense_epochs
    for k in (1, 2, 3):
        assert any(m.startswith(f"dense head, fold {k}/3: 1/{n} epochs (") for m in lines), lines
        assert any(m.startswith(f"dense head, fold {k}/3: {n}/{n} epochs (") and "loss" in m for m in lines), lines
    assert agents.a["w1"].shape[1] == 3 * CFG.dense_hidden
    assert agents.out_of_fold is not None
    assert agents.out_of_fold.shape == (160, len(CONDITION_KEYS))
    assert auroc(y_train[:, 0], agents.out_of_fold[:, 0]) > 0.85
    assert auroc(y[:, 0], agents.probabilities(test)[:, 0]) > 0.9
    oof_calls = agents.results(agents.out_of_fold)
    assert len(oof_calls) == 160
    assert [c.condition for c in oof_calls[0]] == list(CONDITION_KEYS)
    # what training says it serves is what the saved mean head serves (not the out-of-fold logits)
    np.testing.assert_allclose(agents.logits(train), agents.fit_logits, rtol=1e-4, atol=1e-4)
    assert not np.allclose(agents.fit_logits, agents.out_of_fold)


def test_complete_negatives_leave_every_finding_its_place():
    """With complete negatives a present condition's cells are negatives away from its findings:
    never at a finding's place on any sagittal slice (nor the ring of cells around it), never on
    an axial view through it; a condition with a finding that has no box gets none."""
    from ml.agents.dense_boxes import complete_negatives
    from ml.data.preprocess import SeriesGeometry
    from ml.data.types import SeriesData

    # sagittal: x = -4.4, 0, 4.4; columns run posterior (+y), rows down (-z); axial: z = 10 and -40
    sag = SeriesGeometry(rows=64, columns=64, size=64, positions=[[x, 0.0, 50.0] for x in (-4.4, 0.0, 4.4)],
                         orientations=[[0.0, 1, 0, 0, 0, -1]] * 3, spacing=[1.0, 1.0])  # fmt: skip
    ax = SeriesGeometry(rows=64, columns=64, size=64, positions=[[-32.0, -32.0, 10.0], [-32.0, -32.0, -40.0]],
                        orientations=[[1.0, 0, 0, 0, 1, 0]] * 2, spacing=[1.0, 1.0])  # fmt: skip
    px = np.zeros((3, 64, 64), np.float32)
    s = SeriesData("1.1", "T2", px, plane="sagittal", sop_uids=["s0", "s1", "s2"], geometry=sag)
    a = SeriesData("1.2", "T2", px[:2], plane="axial", sop_uids=["a0", "a1"], geometry=ax)
    herniation, cyst = CONDITION_KEYS.index("disc_herniation"), CONDITION_KEYS.index("synovial_cyst")
    labels = np.zeros(len(CONDITION_KEYS), np.int64)
    labels[[herniation, cyst]] = 1
    f = StudyFeatures(StudyData("1.0", "P", [s, a], labels=labels), None)  # type: ignore[arg-type]
    truth = {
        "series": [{"key": "sag_t2", "series_uid": "1.1"}, {"key": "ax_t2", "series_uid": "1.2"}],
        "findings": [
            {"condition": "disc_herniation", "label": 1, "level": "L4-5", "side": "left",  # centre z = 50 - 40
             "key_slices": {"sag_t2": [{"box": [32, 36, 40, 44], "sop_instance_uid": "s2"}]}},
            {"condition": "synovial_cyst", "label": 1, "level": "L4-5", "side": "left", "key_slices": {}},
        ],
    }  # fmt: skip
    g = 8  # cells of 8 px
    d = {
        "views": [(0, 0, 0), (0, 0, 1), (0, 0, 2), (1, 1, 0), (1, 1, 1)],
        "crops": [(0, 0, 64)] * 5,
        "cells": np.zeros((5, g // 2, g // 2, 1), np.float16),
    }  # stride-32 cells: g / 2 at stride 16
    neg = complete_negatives(f, d, truth, g)  # [V, g, g, 17]
    t = cell_targets(f, d, truth, stride=16, complete=True).reshape(5, g, g, -1)
    h = neg[..., herniation]
    assert (t[2, 4:6, 4, herniation] == 1).all()  # the box's cells stay positive
    for v in range(3):  # every sagittal slice: the box's place and a ring of one cell are not negatives
        assert not h[v, 3:7, 3:6].any()
        assert h[v, 0, 0]
        assert h[v, 7, 7]
        assert h[v, 4, 7]
    assert not h[3].any()  # the axial slice through the finding (z = 10)
    assert h[4].all()  # the axial slice 50 mm below it
    assert not neg[..., cyst].any()  # its finding has no box: where it is, is unknown
    assert (t[..., cyst] == -1).all()
    assert (t[..., 0] == 0).all()  # a negative condition: every cell, as before
