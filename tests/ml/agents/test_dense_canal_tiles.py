"""Canal tiles (``DiagnosisConfig.dense_canal_mm``): the central sagittal slices cut a second time
to small squares down the canal, so the lesions inside it are seen at twice the spine tile's
scale. The windows must follow the canal, cover every row and contain the lesion."""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ml.agents.dense import view_key
from ml.agents.dense_views import canal_tiles, study_views
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures
from ml.agents.localization import load_truth, truth_slices
from ml.data.loader import StudyLoader, load_manifest
from ml.data.preprocess import PreprocessConfig

REPO = Path(__file__).resolve().parents[3]


def test_canal_tiles_follow_the_canal_and_cover_every_row():
    p = 256
    rows = np.arange(p, dtype=np.float32)
    cols = 100 + 0.002 * (rows - 40) ** 2  # a lordotic curve, 100 px at the top to ~175 at the bottom
    tiles = canal_tiles(cols, p, mm=1.2, side_mm=80)
    side = round(80 / 1.2)
    assert all(s == side for _, _, s in tiles)
    assert tiles[0][1] == 0  # the first row covered
    assert tiles[-1][1] + side == p  # and the last
    for (_, a, _), (_, b, _) in itertools.pairwise(tiles):
        assert a + side - b >= 0.2 * side  # neighbours overlap: a lesion at a seam is whole in one
    for x0, y0, s in tiles:  # each window is centred on the canal at its own rows
        assert abs(x0 + s / 2 - np.median(cols[y0 : y0 + s])) <= 1
    assert tiles[-1][0] - tiles[0][0] > 40  # the windows moved with the curve
    assert canal_tiles(cols, p, mm=1.2, side_mm=400) == [(round(float(np.median(cols)) - p / 2), 0, p)]


def test_canal_tiles_contain_the_intradural_lesion_and_key_the_cells(tmp_path):
    """On generated studies forced to show an intradural lesion, some canal tile of the lesion's
    key slice holds its box centre, the tiles are half the spine tile's side, and the cells'
    cache key names them (cells of the spine tiles alone are never reused for them)."""
    out = tmp_path / "synth"
    subprocess.run(
        [sys.executable, "-m", "ml", "synth", "--studies", "2", "--seed", "11", "--out", str(out), "--fast",
         "--force", "intradural_lesion", "--series", "sag_t1,sag_t2,sag_stir,ax_t2"],
        check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip
    base_cfg = DiagnosisConfig(head="dense", dense_size=128, dense_crop=True, dense_axial="disc")
    cfg = replace(base_cfg, dense_canal_mm=80.0, dense_canal_slices=3)
    assert view_key(cfg) != view_key(base_cfg)
    entries, base = load_manifest(out / "manifest.jsonl")
    loader = StudyLoader(base, PreprocessConfig(size=128))
    checked = 0
    for e in entries:
        study = loader.load(e, geometry=True)
        plain: list[tuple[int, int, int]] = []
        _, plain_meta = study_views(study, base_cfg, plain)
        crops: list[tuple[int, int, int]] = []
        x, meta = study_views(study, cfg, crops)
        assert len(x) == len(meta) == len(crops) > len(plain_meta)
        pairs, before = list(zip(meta, crops, strict=True)), list(zip(plain_meta, plain, strict=True))
        assert [v for v in pairs if v in before] == before  # every other view kept, in order
        canal = [v for v in pairs if v not in before]
        assert all(p == 0 for (p, _, _), _ in canal)
        assert len({k for (_, _, k), _ in canal}) == 3  # the three central slices
        assert max(s for _, (_, _, s) in canal) * 2 <= max(s for _, _, s in plain) + 1  # twice the scale
        ref = next(si for p, si, _ in meta if p == 0)
        f = StudyFeatures(study, None)  # type: ignore[arg-type]
        for (si, k, cond), item in truth_slices(f, load_truth(base / e.ground_truth)).items():
            if cond != "intradural_lesion" or item["label"] != 1 or si != ref:
                continue
            wins = [w for (_, _, k2), w in canal if k2 == k]
            if not wins:
                continue  # a key slice beside the three central ones
            x0, y0, x1, y1 = study.series[si].geometry.to_preprocessed(item["box"])
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            assert any(wx <= cx <= wx + s and wy <= cy <= wy + s for wx, wy, s in wins), (e.study_uid, item)
            checked += 1
    assert checked >= 1
