"""Peak memory and time of training the dense diagnosis head, its designs kept in float32 against
float16 (``DiagnosisConfig.dense_half_from``), side by side, each in a fresh process.

    .venv/bin/python benchmarks/dense_head_memory.py [--studies 60,180] [--epochs 2]

The studies are random trunk cells at the demo head's shape (19 views a study: sagittal tiles of 7
slices and per-disc axial slices; stride-16 cells with the slice contrast, 834 features; three fold
heads with vertical context and the balanced cell loss), so the figure is the head's own memory,
without the synthesis and the encoder. Prints, per mode and training-set size, the peak resident
memory above what the process held before training (``ru_maxrss`` minus the resident size at the
start) and the training seconds; then the memory each further study costs (the slope between the
two sizes: a batch's activations and float32 copies are a fixed cost that a single size would
spread over its studies). Why it matters: memory, not time, bounds the training set on a 24 GB
machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIEWS = [(0, 0, k) for k in range(7)] * 2 + [(1, 3, k) for k in range(5)]  # 2 tiles x 7 slices + 5 axials


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**30


def child(studies: int, epochs: int, half: bool) -> dict:
    """Train the head once in this process; the figures as a dict."""
    from ml.agents.dense import TRUNK_CHANNELS, view_key
    from ml.agents.dense_train import train_dense
    from ml.agents.diagnosis import DiagnosisConfig
    from tests.ml.agents.dense_toy import cached_cells_study

    cfg = DiagnosisConfig(head="dense", dense_epochs=epochs, dense_folds=3, dense_cell_loss="balanced",
                          dense_context=True, dense_slice_contrast=True, min_positives=3,
                          dense_half_from=1 if half else 0)  # fmt: skip
    rng = np.random.default_rng(0)
    crops = [(0, 0, 256)] * 7 + [(0, 200, 256)] * 7 + [(0, 0, 128)] * 5
    feats = []
    for i in range(studies):
        y = (rng.random(17) < 0.3).astype(np.int64)
        cells = rng.normal(size=(len(VIEWS), 8, 8, TRUNK_CHANNELS)).astype(np.float16)
        f = cached_cells_study(f"1.{i}", y, cells, VIEWS, cfg)
        f.extras["dense"]["fine"] = rng.normal(size=(len(VIEWS), 16, 16, 96)).astype(np.float16)
        f.extras["dense"]["crops"] = crops
        f.extras["dense"]["key"] = view_key(cfg)
        feats.append(f)
    before = _rss_gb()
    t0 = time.perf_counter()
    train_dense(feats, cfg)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"peak_above_start_gb": peak - before, "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default="60,180", help="two training-set sizes, comma-separated")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--child", choices=["float32", "float16"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.studies), args.epochs, args.child == "float16")))
        return 0
    small, large = (int(n) for n in args.studies.split(","))
    print(f"dense head training memory: random studies at the demo head's shape, {args.epochs} epochs")
    print(f"{'designs':<9} {'studies':>7} {'peak above start':>17} {'seconds':>8}")
    slope = {}
    for mode in ("float32", "float16"):
        peaks = []
        for n in (small, large):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--studies", str(n), "--epochs", str(args.epochs)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            peaks.append(r["peak_above_start_gb"])
            print(f"{mode:<9} {n:>7} {r['peak_above_start_gb']:>14.2f} GB {r['seconds']:>8.1f}")
        slope[mode] = 1024 * (peaks[1] - peaks[0]) / (large - small)
    for mode, mb in slope.items():
        print(f"{mode}: {mb:.1f} MB per further study")
    print(f"float16 / float32 per study: {slope['float16'] / slope['float32']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
