"""Synthetic study generation speed: studies per minute and peak memory.

Usage: python benchmarks/synth_speed.py [--studies 12] [--workers 2] [--fast]

Realistic matrices (vendor defaults: sagittal 384-512, 15-17 slices; axial 320-352,
3 slices per disc), 4 series per study, DICOM written to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.data.synthetic.cli import configs, generate_dataset


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--studies", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fast", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = configs(a.studies, a.seed, fast=a.fast)
        t0 = time.perf_counter()
        generate_dataset(Path(tmp), cfgs, workers=a.workers)
        dt = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"studies: {a.studies}  workers: {a.workers}  fast: {a.fast}")
    print(f"wall: {dt:.1f} s  ->  {60 * a.studies / dt:.1f} studies/min")
    print(f"peak RSS: main {me:.0f} MiB, largest worker {kids:.0f} MiB")
    print(f"output: {size / 2**20 / a.studies:.1f} MiB per study")
    # other jobs share the cores: figures only compare at a similar load
    print(f"load average (1 min): {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
