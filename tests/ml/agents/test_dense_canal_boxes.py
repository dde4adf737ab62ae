"""Which tiles may place a condition's box: a canal tile holds a lesion of the canal whole, while a
slip over two vertebrae runs past its edge, so the training boxes decide per condition
(``dense_boxes.canal_box_counts``) and localization keeps such a condition's box on the spine
tile (``cell_localization.CANAL_BOX_FIT``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.agents.analysis import ConditionResult
from ml.agents.cell_localization import CANAL_BOX_FIT, localize_from_cells
from ml.agents.dense_boxes import canal_box_counts
from ml.agents.dense_views import canal_tile_views, study_views
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.localization import load_truth
from ml.conditions import CONDITION_KEYS
from ml.data.loader import StudyLoader, load_manifest
from ml.data.preprocess import PreprocessConfig

REPO = Path(__file__).resolve().parents[3]
CFG = DiagnosisConfig(head="dense", dense_size=128, dense_crop=True, dense_axial="disc", dense_canal_mm=80.0)
G = 8  # cells per side of a 128 px view at stride 16


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> list[tuple[StudyFeatures, dict, dict | None]]:
    """Generated studies that all show an intradural lesion and a spondylolisthesis: (features,
    the views' meta {views, crops}, ground truth)."""
    out = tmp_path_factory.mktemp("canal-boxes")
    subprocess.run(
        [sys.executable, "-m", "ml", "synth", "--studies", "4", "--seed", "23", "--out", str(out), "--fast",
         "--force", "intradural_lesion,spondylolisthesis", "--series", "sag_t1,sag_t2,sag_stir,ax_t2"],
        check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip
    entries, base = load_manifest(out / "manifest.jsonl")
    loader = StudyLoader(base, PreprocessConfig(size=128))
    found: list[tuple[StudyFeatures, dict, dict | None]] = []
    for e in entries:
        study = loader.load(e, geometry=True)
        crops: list[tuple[int, int, int]] = []
        _, views = study_views(study, CFG, crops)
        truth = load_truth(base / str(e.ground_truth))
        found.append((StudyFeatures(study, None), {"views": views, "crops": crops}, truth))  # type: ignore[arg-type]
    return found


def test_canal_tiles_hold_a_canal_lesion_whole_and_not_a_slip(studies):
    counts = sum(canal_box_counts(f, d, t, G) for f, d, t in studies)
    intradural, slip = (CONDITION_KEYS.index(c) for c in ("intradural_lesion", "spondylolisthesis"))
    assert counts[intradural, 0] >= 2  # both were seen on canal tiles
    assert counts[slip, 0] >= 2
    assert counts[intradural, 1] / counts[intradural, 0] >= CANAL_BOX_FIT
    assert counts[slip, 1] / counts[slip, 0] < CANAL_BOX_FIT
    assert (counts[:, 1] <= counts[:, 0]).all()
    f, d, t = studies[0]
    assert not canal_box_counts(f, {**d, "crops": [(0, 0, 128)] * len(d["views"])}, t, G).any()  # no canal tiles


def test_a_condition_whose_boxes_run_past_a_canal_tile_is_placed_on_the_spine_tile(studies):
    """The canal tile fires highest; the box follows it only where the condition's training boxes
    fitted in canal tiles."""
    f, d, _ = studies[0]
    canal = canal_tile_views(d)
    spine = [i for i, (p, _, _) in enumerate(d["views"]) if p == 0 and i not in canal]
    assert canal
    assert spine
    c, s = min(canal), next(i for i in spine if d["views"][i][2] == d["views"][min(canal)][2])
    j = CONDITION_KEYS.index("spondylolisthesis")
    z = np.full((len(d["views"]), G, G, len(CONDITION_KEYS)), -5.0, np.float32)
    z[c, 4, 4, j], z[s, 2, 3, j] = 3.0, 2.0

    def centre(fit: float) -> np.ndarray:
        r = ConditionResult("spondylolisthesis", 0.9, True, 0.5)
        localize_from_cells(f, d, z, [r], None, canal_fit=np.full(len(CONDITION_KEYS), fit, np.float32))
        box = f.study.series[d["views"][s][1]].geometry.to_preprocessed(r.boxes[0].xyxy)
        return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])

    def cell_centre(v: int, row: int, col: int) -> np.ndarray:
        x0, y0, side = d["crops"][v]
        return np.array([x0 + (col + 0.5) * side / G, y0 + (row + 0.5) * side / G])

    assert np.allclose(centre(1.0), cell_centre(c, 4, 4), atol=1.0)  # the canal tile's cell
    assert np.allclose(centre(0.5), cell_centre(s, 2, 3), atol=1.0)  # the spine tile's cell
