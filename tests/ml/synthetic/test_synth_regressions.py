"""Regressions found by using the generator at scale."""

from __future__ import annotations

import subprocess
import sys

from ml.data.manifest import read_manifest


def test_enriched_coarse_studies_with_pars_defects_do_not_crash(tmp_path):  # type: ignore[no-untyped-def]
    # seed 1 used to stop with "finding pars_defect at L4 painted no voxels": on the 2.4 mm --fast
    # grid the thin isthmus fell between the cleft's voxel planes
    cmd = [sys.executable, "-m", "ml", "synth", "--studies", "20", "--seed", "1", "--out", str(tmp_path),
           "--fast", "--prevalence", "enriched", "--workers", "2"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    studies = list(read_manifest(tmp_path / "manifest.jsonl"))
    assert len(studies) == 20
    assert any(s.labels.get("pars_defect") == 1 for s in studies)


def test_a_small_foraminal_herniation_beside_the_sacrum_is_still_painted(tmp_path):  # type: ignore[no-untyped-def]
    # seed 11, studies 80-99 used to stop with "finding disc_herniation at L5-S1 painted no voxels":
    # a small left foraminal protrusion fell entirely on muscle and bone next to the sacral ala
    cmd = [sys.executable, "-m", "ml", "synth", "--studies", "20", "--start", "80", "--seed", "11",
           "--out", str(tmp_path), "--fast", "--prevalence", "enriched", "--cohort", "general",
           "--series", "sag_t2,ax_t2", "--workers", "2"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    studies = list(read_manifest(tmp_path / "manifest.jsonl"))
    assert len(studies) == 20
    assert any(s.labels.get("disc_herniation") == 1 for s in studies)
