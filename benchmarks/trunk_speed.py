"""Speed of the dense head's frozen trunk (ImageNet MobileNetV2 to block 17) with its batch norms
folded into the convolutions (what ``ml.agents.dense.load_trunk`` serves) against the network as
published, side by side in one run, and how far their cells differ::

    .venv/bin/python benchmarks/trunk_speed.py [--views 16] [--size 256] [--repeats 5]

Prints ms per view for each, their ratio, and the relative difference of the cells at both strides.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()

    from ml.agents.baselines import load_mobilenet_v2
    from ml.agents.dense import load_trunk

    reference = load_mobilenet_v2().features[:18].eval()
    folded = load_trunk()
    x = torch.randn(a.views, 3, a.size, a.size).contiguous(memory_format=torch.channels_last)  # [V, 3, S, S]
    times: dict[str, list[float]] = {"published": [], "folded": []}
    with torch.inference_mode():
        for net in (reference, folded):  # warm-up
            net(x)
        for _ in range(a.repeats):  # alternating, so load changes hit both alike
            for name, net in (("published", reference), ("folded", folded)):
                t = time.perf_counter()
                net[14:](net[:14](x))
                times[name].append((time.perf_counter() - t) / a.views * 1000)
        parts = (slice(0, 14), slice(0, 18))
        diffs = [float((reference[p](x) - folded[p](x)).norm() / reference[p](x).norm()) for p in parts]
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"{a.views} views of {a.size} px, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    print(f"published {med['published']:.1f} ms/view, folded {med['folded']:.1f} ms/view (median of {a.repeats}): "
          f"{med['published'] / med['folded']:.2f}x")  # fmt: skip
    print(f"relative difference of the cells: stride 16 {diffs[0]:.1e}, stride 32 {diffs[1]:.1e}")


if __name__ == "__main__":
    main()
