"""The per-condition share of training boxes that a canal tile holds whole (``box_canal_fit``,
``ml.agents.dense_boxes.canal_box_counts``), computed on a generated training set and printed;
with ``--pipeline`` and ``--out`` also written into a copy of a pipeline built before its
artifact carried them (bootstrap 14), so that its boxes can be scored with the rule that decides
which tiles place them, without retraining anything (the head, the studies and the regressor
are the same; building bootstrap 15 computes the same shares during training)::

    .venv/bin/python benchmarks/box_canal_fit.py --train .cache/bench/adapt/train-s41-n260 \\
        --pipeline .cache/pipelines/demo-6077a8e29828 --out .cache/pipelines/exp-canalfit
    .venv/bin/python benchmarks/agents_heldout.py --pipeline .cache/pipelines/exp-canalfit --seed 9503 --studies 300
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="the pipeline's generated training set (ml synth)")
    ap.add_argument("--pipeline", type=Path, help="a built pipeline folder to copy")
    ap.add_argument("--out", type=Path, help="the copy, with the shares in its diagnosis artifact")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from dense_variants import demo_config_with
    from diagnosis_dense import load
    from safetensors.numpy import load_file, save_file

    from ml.agents.cell_localization import CANAL_BOX_FIT
    from ml.agents.dense_boxes import canal_box_counts, canal_box_fit
    from ml.conditions import CONDITION_KEYS

    cfg = demo_config_with([])
    feats, truths, _ = load(args.train, cfg)
    g = cfg.dense_size // cfg.dense_box_stride
    counts = np.zeros((len(CONDITION_KEYS), 2), np.int64)
    for f, t in zip(feats, truths, strict=True):
        counts += canal_box_counts(f, f.extras["dense"], t, g)
    fit = canal_box_fit(counts)
    print(f"{'condition':24s} {'on canal tiles':>14s} {'held whole':>10s} {'share':>6s}  boxes placed on")
    for k, (shown, whole), share in zip(CONDITION_KEYS, counts, fit, strict=True):
        where = "canal or spine tiles" if share >= CANAL_BOX_FIT else "spine tiles"
        print(f"{k:24s} {shown:14d} {whole:10d} {share:6.2f}  {where}")
    if args.pipeline and args.out:
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(args.pipeline, args.out)
        weights = args.out / "diagnosis" / "weights.safetensors"
        arrays = load_file(str(weights))
        arrays["box_canal_fit"] = fit
        save_file(arrays, str(weights))
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
