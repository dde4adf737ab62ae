"""One training step of the dense diagnosis head, timed side by side: the batch's cells
concatenated into one matrix before the forward (as before) against one forward per study (as
``dense_train._batch_loss`` does now), each on 1 and 2 threads (``DiagnosisConfig.dense_threads``).

    .venv/bin/python benchmarks/dense_head_speed.py [--studies 16] [--cells 2560] [--repeats 8]

The cells are random at the demo head's shape: 16 studies a batch, ~2,560 stride-16 cells a
study (sagittal tiles and per-disc axial slices), 834 features with the slice contrast, 64 hidden
units, vertical context. Prints seconds per step (median of ``--repeats``) and the ratio to the
concatenated single-thread step. Run it on an idle machine: with other jobs on the cores the
second thread is worth less (OpenMP spin-waits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.agents.dense import DenseHead
from ml.agents.dense_train import _batch_loss
from ml.agents.diagnosis import DiagnosisConfig


def concatenated_loss(head: DenseHead, xs: list[torch.Tensor], *rest) -> torch.Tensor:
    """The loss with one forward on the batch's concatenated cells (the code before)."""
    z = head(torch.cat(xs))  # [sum C_i, 17]: the copy of every cell the per-study forward avoids
    return _batch_loss(_Replay(torch.split(z, [len(x) for x in xs])), xs, *rest)


class _Replay(torch.nn.Module):
    """Hands back precomputed per-study logits in order, so the same loss code scores them."""

    def __init__(self, parts: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.parts = iter(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return next(self.parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=16)
    ap.add_argument("--cells", type=int, default=2560, help="cells per study (a multiple of 256: whole views)")
    ap.add_argument("--features", type=int, default=834)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()
    cfg = replace(DiagnosisConfig(head="dense"), dense_context=True, dense_cell_loss="balanced")
    grid = 16
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(args.cells, args.features, generator=gen) for _ in range(args.studies)]  # [C, F] each
    ts = [(torch.rand(args.cells, 17, generator=gen) < 0.01).float() for _ in range(args.studies)]  # [C, 17]
    yb = (torch.rand(args.studies, 17, generator=gen) < 0.3).float()  # [B, 17]
    lengths = np.full(args.studies, args.cells)
    pw = torch.ones(17)
    base = None
    print(f"{args.studies} studies x {args.cells} cells x {args.features} features, hidden {cfg.dense_hidden}")
    threads0 = torch.get_num_threads()
    for threads in sorted({1, min(2, os.cpu_count() or 1)}):
        torch.set_num_threads(threads)
        for name, loss_fn in (("concatenated", concatenated_loss), ("per study", _batch_loss)):
            torch.manual_seed(0)
            head = DenseHead(args.features, cfg.dense_hidden, 0.2, grid)
            opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
            times = []
            for _ in range(args.repeats + 1):
                t = time.perf_counter()
                loss = loss_fn(head, xs, ts, yb, lengths, pw, cfg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                times.append(time.perf_counter() - t)
            s = statistics.median(times[1:])  # the first step warms the allocator
            base = base or s
            print(f"{threads} thread(s), {name:12s}: {s * 1000:7.1f} ms a step, {base / s:4.2f}x")
    torch.set_num_threads(threads0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
