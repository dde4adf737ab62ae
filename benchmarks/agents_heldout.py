"""The served pipeline's figures on held-out generated studies: diagnosis AUROC per condition and
per vendor, level / side accuracy, box IoU on the key slice against the mean-box prior, and
study->report retrieval, each with a patient-bootstrap 95 % CI.

It runs the documented command (``python -m ml agents evaluate --pipeline``) on

* the pipeline a preset builds (``--preset demo``: what ``scripts/demo`` serves; ``tiny``: the
  tests'), built once and cached under ``$SPINEREVIEW_CACHE/pipelines``, or any folder
  (``--pipeline``);
* a held-out set from generator seeds no preset trains on (default seed 9301, 300 studies,
  enriched prevalence so every condition has positives, realistic matrices at half size, the
  4 vendor styles), generated once next to the cache if missing.

    .venv/bin/python benchmarks/agents_heldout.py --preset demo            # ~6 min with a cached pipeline
    .venv/bin/python benchmarks/agents_heldout.py --pipeline DIR --studies 100 --seed 9402

Figures change with the pipeline and with the held-out seed; the ones in docs/agents.md name
both. Nothing here is tuned on the held-out set: it only scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def held_out_set(root: Path, studies: int, seed: int) -> Path:
    """The manifest of the held-out set (generated on first use)."""
    from ml.data.synthetic.cli import main as synth_main

    out = root / f"heldout-s{seed}-n{studies}"
    manifest = out / "manifest.jsonl"
    if manifest.exists():
        return manifest
    rc = synth_main(
        ["--studies", str(studies), "--seed", str(seed), "--out", str(out), "--prevalence", "enriched",
         "--matrix-scale", "0.5", "--series", "sag_t1,sag_t2,sag_stir,ax_t2", "--id-prefix", "HO",
         "--workers", "2"]
    )  # fmt: skip
    if rc:
        raise SystemExit(f"ml synth failed with exit code {rc}")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("demo", "tiny", "large"), default="demo")
    ap.add_argument("--pipeline", type=Path, help="score this pipeline folder instead of a preset's")
    ap.add_argument("--studies", type=int, default=300)
    ap.add_argument("--seed", type=int, default=9301, help="generator seed of the held-out set")
    ap.add_argument("--bootstrap-n", type=int, default=1000)
    ap.add_argument("--out", type=Path, help="write the metrics JSON here")
    ap.add_argument("--level-sagittal", action="store_true",
                    help="read every level on the sagittal box (before the both-planes rule)")  # fmt: skip
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from ml.agents.bootstrap import PRESETS, ensure_tiny_pipeline
    from ml.agents.heldout import evaluate_pipeline, format_table
    from ml.data.cache import default_cache_dir

    t0 = time.perf_counter()
    pipeline = args.pipeline or ensure_tiny_pipeline(params=PRESETS[args.preset])
    built = time.perf_counter() - t0
    params = json.loads((pipeline / "bootstrap.json").read_text()).get("params", {}) if args.pipeline is None else {}
    if params and params.get("seed") == args.seed:
        raise SystemExit("the held-out seed is the pipeline's training seed: choose another --seed")
    manifest = held_out_set(default_cache_dir() / "heldout", args.studies, args.seed)
    m = evaluate_pipeline(pipeline, manifest, bootstrap_n=args.bootstrap_n,
                          level_both_planes=[] if args.level_sagittal else None)  # fmt: skip
    m["pipeline_ready_seconds"] = built
    print(format_table(m))
    print(f"\npipeline ready in {built:.0f} s (0 = cached); scored in {m['seconds_per_study'] * m['studies']:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(m, indent=2, default=str))


if __name__ == "__main__":
    main()
