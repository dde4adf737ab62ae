"""The demo's dense diagnosis head with one or more of its settings changed, trained on a generated
training set and scored on held-out sets: the quickest way to try an idea on the head against
what the demo serves (no SpineFM, no localization, no report agent).

Each run trains ``ml.agents.bootstrap.DEMO``'s diagnosis settings with ``--set`` applied (the
same three fold heads, served as their mean) and prints the mean AUROC and the AUROC per
condition on every ``--test`` set, with the head's training time; the probabilities go to
``--out`` (JSON) for paired comparisons. The trunk's cells are cached beside each set
(``diagnosis_dense.load``), keyed by the view settings, so a run that changes only the head
costs the head's training; a run that changes the views (``dense_canal_mm``, crops, slices)
encodes every set once::

    .venv/bin/python -m ml synth --studies 260 --seed 41 --prevalence enriched --matrix-scale 0.5 \\
        --series sag_t1,sag_t2,sag_stir,ax_t2 --workers 2 --out .cache/bench/adapt/train-s41-n260
    .venv/bin/python benchmarks/dense_variants.py --train .cache/bench/adapt/train-s41-n260 \\
        --test .cache/heldout/heldout-s9503-n300 .cache/heldout/heldout-s9301-n300 \\
        --set dense_canal_mm=0 --set dense_precision=float32 --name "before canal tiles"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def demo_config_with(settings: list[str]) -> Any:
    """``DEMO``'s diagnosis config with ``key=value`` settings applied (typed as the field's default)."""
    from ml.agents.bootstrap import DEMO

    cfg = DEMO.diagnosis_config()
    known = {f.name for f in fields(cfg)}
    changes: dict[str, Any] = {}
    for item in settings:
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"unknown DiagnosisConfig field {key!r}")
        current = getattr(cfg, key)
        if isinstance(current, bool):
            changes[key] = value.lower() in ("1", "true", "yes")
        else:
            changes[key] = type(current)(value)
    return replace(cfg, **changes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="a generated training set (ml synth)")
    ap.add_argument("--test", type=Path, nargs="+", required=True, help="held-out generated sets (other seeds)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a DiagnosisConfig change")
    ap.add_argument("--name", default="", help="the row's name (default: the changes)")
    ap.add_argument("--boot", type=int, default=200, help="patient-bootstrap resamples for the mean's CI")
    ap.add_argument("--out", type=Path, default=None, help="JSON of the figures and probabilities")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
    from diagnosis_dense import load, table

    from ml.agents.dense_train import train_dense
    from ml.agents.diagnosis import labels_matrix
    from ml.conditions import CONDITION_KEYS

    cfg = demo_config_with(args.set)
    name = args.name or (", ".join(args.set) or "the demo's head")
    threads = torch.get_num_threads()  # load() encodes on one thread; training gets them back
    train, truth, _ = load(args.train, cfg)
    tests = [load(t, cfg)[0] for t in args.test]
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    agents = train_dense(train, cfg, truth)
    seconds = time.perf_counter() - t0
    rows = []
    for path, test in zip(args.test, tests, strict=True):
        p = agents.probabilities(test)  # [N, 17]
        t = table(labels_matrix(test), p, [f.study.patient_key for f in test], args.boot)
        per = {k: t["per_condition"][k]["auroc"] for k in CONDITION_KEYS}
        rows.append({"test": str(path), "mean": t["mean_auroc"], "ci": t["mean_auroc_ci"], "per": per, "p": p.tolist()})
    print(f"{name}: head {seconds:.0f} s on {len(train)} training studies")
    for r in rows:
        lo, hi = r["ci"]
        print(f"  {Path(r['test']).name}: mean AUROC {r['mean']:.3f} [{lo:.3f}, {hi:.3f}]")
    print("  AUROC per condition (" + " / ".join(Path(r["test"]).name for r in rows) + "):")
    for k in CONDITION_KEYS:
        print(f"    {k:24s} " + " / ".join(f"{r['per'][k]:.3f}" for r in rows))
    if args.out:
        args.out.write_text(json.dumps({"name": name, "set": args.set, "seconds": seconds, "rows": rows}))
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
