"""``python -m ml agents {train,evaluate,bootstrap} ...``: train, evaluate and bootstrap the agents.

python -m ml agents bootstrap --out DIR [--preset tiny|demo|large --studies N --seed S --no-report]
python -m ml agents train --manifest M --spinefm SPINEFM_DIR --out PIPELINE_DIR [key=value ...]
python -m ml agents evaluate --manifest M --spinefm SPINEFM_DIR --out EVAL_DIR [--folds 5]
python -m ml agents evaluate --manifest HELD_OUT_M --pipeline PIPELINE_DIR --out EVAL_DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "agents" / "agents.yaml"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m ml agents", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("bootstrap", help="synthesize studies, train tiny SpineFM + all agents, write a pipeline")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--preset", choices=("tiny", "demo", "large"), default="tiny",
                   help="tests' pipeline, the demo's, or the demo's recipe on 900 studies")  # fmt: skip
    b.add_argument("--studies", type=int, default=None)
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--align-steps", type=int, default=None)
    b.add_argument("--no-report", action="store_true", help="skip the Medical Report Agent (template drafts)")

    t = sub.add_parser("train", help="train every agent on a manifest's training patients")
    t.add_argument("--manifest", required=True)
    t.add_argument("--spinefm", required=True, help="SpineFM folder (model.safetensors + config.json)")
    t.add_argument("--out", type=Path, required=True, help="pipeline folder to write")
    t.add_argument("--config", default=str(DEFAULT_CONFIG))
    t.add_argument("--test-fraction", type=float, default=0.3, help="patients held out (0 = train on all)")
    t.add_argument("--split-seed", type=int, default=0)
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. diagnosis.C=1.0 report=false")

    e = sub.add_parser("evaluate", help="metrics JSON + plots for every agent family")
    e.add_argument("--manifest", required=True)
    e.add_argument("--spinefm", help="cross-validated research protocol: SpineFM folder (ml.agents.evaluate)")
    e.add_argument(
        "--pipeline", type=Path, help="a trained pipeline folder, scored on the held-out manifest (ml.agents.heldout)"
    )
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--config", default=str(DEFAULT_CONFIG))
    e.add_argument("--folds", type=int, default=5)
    e.add_argument("--test-fraction", type=float, default=0.3, help="held-out patients for localization/retrieval")
    e.add_argument("--split-seed", type=int, default=0)
    e.add_argument("--bootstrap-n", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    e.add_argument("--baselines", default="random,mobilenet", help="comma list: random, mobilenet ('' = none)")
    e.add_argument("--quick", action="store_true", help="skip the cross-vendor/cohort and sequence-set studies")
    e.add_argument("overrides", nargs="*")

    args = parser.parse_args(argv)
    if args.cmd == "bootstrap":
        from dataclasses import replace

        from ml.agents.bootstrap import PRESETS, bootstrap

        p = PRESETS[args.preset]
        changes = {"studies": args.studies, "seed": args.seed, "align_steps": args.align_steps}
        p = replace(p, **{k: v for k, v in changes.items() if v is not None}, report=not args.no_report)
        out = bootstrap(args.out, p)
        print(json.dumps({"pipeline": str(out), **json.loads((out / "bootstrap.json").read_text())}, indent=2))
        return 0

    from ml.agents.train import AgentsTrainConfig
    from ml.train.config import load_config

    cfg = load_config(AgentsTrainConfig, args.config, args.overrides)
    if args.cmd == "train":
        from ml.agents.train import build_pipeline, prepare, split_indices

        prep = prepare(args.manifest, args.spinefm, diagnosis=cfg.diagnosis)
        train_idx, test_idx = (
            split_indices(prep.entries, args.test_fraction, args.split_seed)
            if args.test_fraction > 0
            else (list(range(len(prep.entries))), [])
        )
        out = build_pipeline(prep.subset(train_idx), args.out, cfg)
        held = [prep.entries[i].study_uid for i in test_idx]
        (out / "split.json").write_text(
            json.dumps({"test_fraction": args.test_fraction, "seed": args.split_seed, "held_out": held}, indent=1)
        )
        print(f"pipeline: {out} (trained on {len(train_idx)} studies, {len(test_idx)} held out)")
        return 0

    if args.pipeline:
        from ml.agents.heldout import evaluate_pipeline, format_table

        metrics = evaluate_pipeline(args.pipeline, args.manifest, bootstrap_n=args.bootstrap_n)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "heldout.json").write_text(json.dumps(metrics, indent=1))
        table = format_table(metrics)
        (args.out / "heldout.md").write_text(table + "\n")
        print(table)
        return 0
    if not args.spinefm:
        parser.error("evaluate needs --spinefm (cross-validation) or --pipeline (held-out)")
    from ml.agents.evaluate import EvalOptions, evaluate

    opts = EvalOptions(
        folds=args.folds,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        bootstrap_n=args.bootstrap_n,
        baselines=[b for b in args.baselines.split(",") if b],
        quick=args.quick,
    )
    metrics = evaluate(args.manifest, args.spinefm, args.out, cfg, opts)
    print(json.dumps(metrics["summary"], indent=2))
    return 0
