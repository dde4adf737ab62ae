"""GPU paths: bf16 autocast embedding and the GPU benchmark (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_embedding_under_bf16_autocast_is_deterministic_and_close_to_fp32():
    from ml.data.types import SeriesData, StudyData
    from ml.spinefm.embed import embed_studies
    from ml.spinefm.model import SpineFM, SpineFMConfig

    rng = np.random.default_rng(0)
    study = StudyData("1", "p", [SeriesData("a", "T1", rng.random((5, 96, 96), dtype=np.float32))])
    model = SpineFM(SpineFMConfig())
    cpu = embed_studies([study], model)[0].case
    model.cuda()
    a, b = embed_studies([study], model)[0].case, embed_studies([study], model)[0].case
    np.testing.assert_array_equal(a, b)
    assert float(np.dot(a, cpu)) > 0.99


@needs_cuda
def test_gpu_benchmark_runs_on_the_tiny_preset():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "spinefm_gpu.py"
    res = subprocess.run([sys.executable, str(script), "--model", "tiny", "--steps", "2", "--train-batch", "4"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "infer_slices_per_s_bf16" in res.stdout
