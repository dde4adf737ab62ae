"""Shared fixtures for the agent tests: small generated studies (seconds) and the cached tiny
pipeline (built once per cache key, shared by every process through a file lock)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def agents_synth_dir(tmp_path_factory) -> Path:
    """Two fast generated lumbar studies (sag T1, sag T2, sag STIR, ax T2), seed 3."""
    out = tmp_path_factory.mktemp("agents_synth")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ml",
            "synth",
            "--studies",
            "2",
            "--seed",
            "3",
            "--out",
            str(out),
            "--fast",
            "--series",
            "sag_t1,sag_t2,sag_stir,ax_t2",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def tiny_pipeline_dir() -> Path:
    """The bootstrap pipeline (cached under $SPINEREVIEW_CACHE/pipelines)."""
    from ml.agents.bootstrap import ensure_tiny_pipeline

    return ensure_tiny_pipeline()
