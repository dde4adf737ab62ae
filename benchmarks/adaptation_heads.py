"""Spine adaptation against its frozen generic initialisation, with the same heads: the dense head
(what the pipelines serve) and light heads (the paper-faithful evaluation of a foundation model:
its features frozen, one logistic probe per condition on pooled features).

The agents' image trunk is ImageNet MobileNetV2 (the best generic weights this machine has);
its spine adaptation is ``DiagnosisConfig.dense_adapt_blocks`` (blocks 14-17 fine-tuned with the
dense head on the training studies, ``ml/configs/agents/agents.yaml``'s recipe by default). Both
trunks see the same training studies, the same heads and the same held-out studies:

- **dense**: the demo's dense head (``ml.agents.bootstrap.DEMO``'s diagnosis settings) on the
  generic trunk, and the same head trained with the adapted trunk;
- **light**: per study the trunk's stride-32 cells [V, g, g, 320] max- and mean-pooled over every
  view and cell of each plane (sagittal, axial) -> 1,280 features; ``fit_probes`` (the linear
  probes the baselines and SpineFM's embeddings are scored with) on the training studies.

Prints mean AUROC with its patient-bootstrap CI per row, the paired difference adapted - generic
(the same resamples for both) and AUROC per condition; writes ``--out`` (JSON)::

    .venv/bin/python -m ml synth --studies 260 --seed 41 --prevalence enriched --matrix-scale 0.5 \\
        --series sag_t1,sag_t2,sag_stir,ax_t2 --workers 2 --out .cache/bench/adapt/train-s41-n260
    .venv/bin/python benchmarks/adaptation_heads.py --train .cache/bench/adapt/train-s41-n260 \\
        --test .cache/heldout/heldout-s9301-n300 --cache .cache/bench/adapt

Each set's generic cells are cached beside its studies (``diagnosis_dense.load``), each trained
head in ``--cache``: a re-run costs the probes only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def demo_config(adapt_blocks: int, epochs: int, lr: float):
    """The demo's diagnosis settings (``DEMO``), adapted or not."""
    from ml.agents.bootstrap import DEMO

    cfg = DEMO.diagnosis_config()
    return replace(cfg, dense_adapt_blocks=adapt_blocks, dense_adapt_epochs=epochs, dense_adapt_lr=lr)


def pooled(feats: list, cfg, trunk) -> np.ndarray:
    """Light-head features [N, 1280]: per plane (sagittal, axial) the max and the mean of the
    trunk's stride-32 cells over every view and cell (zeros for a plane a study lacks)."""
    from ml.agents.dense import dense_cells
    from ml.agents.dense_trunk import TRUNK_CHANNELS

    out = np.zeros((len(feats), 2 * 2 * TRUNK_CHANNELS), np.float32)
    for i, f in enumerate(feats):
        d = dense_cells(f, cfg, trunk)
        c = np.asarray(d["cells"], np.float32)  # [V, g, g, 320]
        planes = np.array([p for p, _, _ in d["views"]])
        for p in (0, 1):
            sel = c[planes == p].reshape(-1, TRUNK_CHANNELS) if len(planes) else np.zeros((0, TRUNK_CHANNELS))
            if len(sel):
                k = 2 * p * TRUNK_CHANNELS
                out[i, k : k + TRUNK_CHANNELS] = sel.max(0)
                out[i, k + TRUNK_CHANNELS : k + 2 * TRUNK_CHANNELS] = sel.mean(0)
    return out


def main() -> int:
    import yaml

    recipe = yaml.safe_load((REPO / "ml/configs/agents/agents.yaml").read_text())["diagnosis"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, nargs="+", required=True, help="generated training sets (ml synth)")
    ap.add_argument("--test", type=Path, required=True, help="a held-out generated set (other seeds)")
    ap.add_argument("--cache", type=Path, required=True, help="the trained heads are kept here")
    ap.add_argument("--blocks", type=int, default=recipe["dense_adapt_blocks"])
    ap.add_argument("--epochs", type=int, default=recipe["dense_adapt_epochs"])
    ap.add_argument("--lr", type=float, default=float(recipe["dense_adapt_lr"]))
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="JSON of every figure (default CACHE/adaptation_heads.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from diagnosis_dense import boot_means, load, table

    from ml.agents.dense_train import train_dense
    from ml.agents.diagnosis import DiagnosisConfig, fit_probes, labels_matrix
    from ml.agents.heads import load_diagnosis
    from ml.conditions import CONDITION_KEYS

    args.cache.mkdir(parents=True, exist_ok=True)
    generic_cfg = demo_config(0, args.epochs, args.lr)
    import torch

    threads = torch.get_num_threads()  # load() encodes on one thread; training gets them all back
    train, train_truth = [], []
    for path in args.train:  # the generic trunk's cells, cached beside each set's studies
        f, t, _ = load(path, generic_cfg)
        train += f
        train_truth += t
    test, _, _ = load(args.test, generic_cfg)
    torch.set_num_threads(threads)
    y_train, y_test = labels_matrix(train), labels_matrix(test)
    keys = [f.study.patient_key for f in train]
    names = ", ".join(p.name for p in args.train)
    print(f"{len(train)} training studies ({names}), {len(test)} held out ({args.test.name})")

    tag = "-".join(p.name for p in args.train)
    probs: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, cfg in (("generic", generic_cfg), ("adapted", demo_config(args.blocks, args.epochs, args.lr))):
        folder = args.cache / f"head-{tag}-{name}-b{cfg.dense_adapt_blocks}-e{args.epochs}-lr{args.lr:g}"
        t0 = time.perf_counter()
        if folder.exists():
            agents = load_diagnosis(folder)
        else:
            agents = train_dense(train, cfg, train_truth)
            agents.save(folder)
        seconds[name] = float(agents.meta.get("seconds", time.perf_counter() - t0))
        trunk = agents.trunk(train + test)  # None: the generic trunk's cached cells
        probs[f"{name} trunk, dense head"] = agents.probabilities(test)
        probes = fit_probes(pooled(train, cfg, trunk), y_train, keys, DiagnosisConfig())
        probs[f"{name} trunk, light heads"] = probes.infer(pooled(test, cfg, trunk))

    results: dict[str, Any] = {"train": [str(p) for p in args.train], "test": str(args.test),
                               "adaptation": {"blocks": args.blocks, "epochs": args.epochs, "lr": args.lr},
                               "head_seconds": seconds, "rows": {}, "paired": {}}  # fmt: skip
    for name, p in probs.items():
        t = table(y_test, p, [f.study.patient_key for f in test], args.boot)
        results["rows"][name] = t
        lo, hi = t["mean_auroc_ci"]
        print(f"{name:>28}: mean AUROC {t['mean_auroc']:.3f} [{lo:.3f}, {hi:.3f}]")
    for head in ("dense head", "light heads"):
        a, g = probs[f"adapted trunk, {head}"], probs[f"generic trunk, {head}"]
        diff = boot_means(y_test, a, args.boot) - boot_means(y_test, g, args.boot)  # the same resamples
        rows = results["rows"]
        point = rows[f"adapted trunk, {head}"]["mean_auroc"] - rows[f"generic trunk, {head}"]["mean_auroc"]
        ci = [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]
        results["paired"][head] = {"difference": point, "ci": ci}
        print(f"{'adapted - generic, ' + head:>28}: {point:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] (paired bootstrap)")
    order = [f"{t} trunk, {h}" for h in ("dense head", "light heads") for t in ("generic", "adapted")]
    print("AUROC per condition (" + " / ".join(order) + "):")
    for k in CONDITION_KEYS:
        vals = [results["rows"][r]["per_condition"].get(k, {}).get("auroc") for r in order]
        print(f"  {k:24s} " + " / ".join("  -  " if v is None or v != v else f"{v:.3f}" for v in vals))
    print(f"head training: generic {seconds['generic']:.0f} s, adapted {seconds['adapted']:.0f} s")
    out = args.out or args.cache / "adaptation_heads.json"
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
