"""Learning does not break: the shipped diagnosis design (dense head on frozen generic cells,
box-supervised) trained on a small seeded set of generated studies must see the common,
visible findings on held-out studies of another seed, far above chance, and its cells must
put the boxes where the findings are. Not a timed test: a floor on what was learnt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.agents.analysis import ConditionResult
from ml.agents.cell_localization import localize_from_cells
from ml.agents.dense_train import train_dense
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.localization import load_truth
from ml.agents.metrics import auroc, box_iou
from ml.conditions import CONDITION_KEYS
from ml.data.loader import StudyLoader, load_manifest
from ml.data.preprocess import PreprocessConfig

# 4 x 4 stride-32 cells per view: a quarter of the cost. The served head's stride-16 cells need
# more studies than this floor's 60 small ones (docs/agents.md: its figures by training size)
CFG = DiagnosisConfig(head="dense", dense_size=128, dense_stride=32, dense_box_stride=32)


def _synth(out: Path, n: int, seed: int) -> Path:
    cmd = [sys.executable, "-m", "ml", "synth", "--studies", str(n), "--seed", str(seed), "--fast",
           "--prevalence", "enriched", "--series", "sag_t1,sag_t2,sag_stir,ax_t2", "--workers", "2",
           "--id-prefix", f"L{seed}", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return out / "manifest.jsonl"


def _load(manifest: Path) -> tuple[list[StudyFeatures], list[dict | None]]:
    entries, base = load_manifest(manifest)
    loader = StudyLoader(base, PreprocessConfig(size=CFG.dense_size))
    feats = [StudyFeatures(loader.load(e, geometry=True), None) for e in entries]  # type: ignore[arg-type]
    return feats, [load_truth(base / e.ground_truth) for e in entries]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("learn")
    train, train_truth = _load(_synth(tmp / "train", 60, 611))
    test, test_truth = _load(_synth(tmp / "test", 40, 612))
    return train_dense(train, CFG, train_truth), test, test_truth


def test_held_out_auroc_of_the_visible_findings_is_far_above_chance(trained):
    agents, test, _ = trained
    p = agents.probabilities(test)  # [N, 17]
    y = np.stack([f.study.labels for f in test])
    scored = {}
    for j, key in enumerate(CONDITION_KEYS):
        m = y[:, j] >= 0
        if (y[m, j] == 1).sum() >= 4 and (y[m, j] == 0).sum() >= 4:
            scored[key] = auroc(y[m, j], p[m, j])
    assert len(scored) >= 12, scored
    # the large, always-visible findings (measured 0.82 at seeds 611/612; chance is 0.5)
    large = ["canal_stenosis", "disc_height_loss", "endplate_inflammation", "compression_deformity",
             "acute_fracture", "marrow_edema"]  # fmt: skip
    assert np.mean([scored[k] for k in large if k in scored]) > 0.70, scored
    assert np.mean(list(scored.values())) > 0.55, scored


def test_the_cells_that_fire_put_boxes_on_the_finding(trained):
    agents, test, truths = trained
    hits, ious = 0, []
    for f, truth in zip(test, truths, strict=True):
        present = {x["condition"]: x for x in truth["findings"] if x["label"] == 1 and x["key_slices"]}
        results = [ConditionResult(c, 1.0, True, 0.5) for c in present]
        z, d, reg = agents.cell_maps(f)
        localize_from_cells(f, d, z, results, None, box_wh=agents.a["box_wh"], reg=reg)
        for r in results:
            slices = present[r.condition]["key_slices"].values()
            truth_boxes = {ks["sop_instance_uid"]: ks["box_norm"] for sl in slices for ks in sl}
            assert r.key_slices
            assert r.boxes
            b = r.boxes[0]
            if b.sop_uid in truth_boxes:
                hits += 1
                ious.append(float(box_iou(np.asarray([b.xyxy_norm]), np.asarray([truth_boxes[b.sop_uid]]))[0]))
            else:
                ious.append(0.0)
    assert len(ious) >= 100
    assert hits / len(ious) > 0.45  # the best view is one of the finding's key slices (measured 0.64)
    on_slice = [i for i in ious if i > 0]
    assert np.median(on_slice) > 0.1, np.median(on_slice)  # and the box overlaps the finding there


def test_cell_box_is_the_connected_region_near_the_best_cell():
    from ml.agents.cell_localization import cell_box

    z = np.full((8, 8), -5.0)
    z[2:4, 5:8] = 2.0  # the finding: rows 2-3, columns 5-7
    z[2, 6] = 2.5
    z[6, 0] = 1.8  # a separate, weaker blob within the margin is not part of the box
    (cx, cy), box = cell_box(z, margin=1.0)
    assert box == (5.0, 2.0, 8.0, 4.0)
    assert cx == pytest.approx(6.5)  # the region is symmetric left-right about the best cell
    assert 2.5 < cy < 3.0  # pulled from the best row's centre (2.5) towards the row below it
