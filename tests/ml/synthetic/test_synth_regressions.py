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
