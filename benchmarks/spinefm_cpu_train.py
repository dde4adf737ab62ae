"""Train every SpineFM stage at the ``tiny`` preset on generated studies, on CPU, and time it.

    .venv/bin/python benchmarks/spinefm_cpu_train.py --studies 240 --out .cache/bench/spinefm

Chain: synth data -> pretrain T1 -> pretrain T2 -> gram T1 -> gram T2 -> align -> synthesizer
(conditioned router; plus the ablations scalar / none-T1 / none-T2 unless --no-ablation).
Every stage runs through the same CLI a user runs (``python -m ml train ...``), in-process.
Writes ``OUT/timings.json``; ``benchmarks/spinefm_probe.py OUT`` measures what was learnt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CFG = REPO / "ml" / "configs" / "tiny"


def generate(data: Path, n: int, seed: int) -> None:
    """Generate ``n`` studies with ``python -m ml synth`` into ``data`` (one run: the generator
    re-draws a study it cannot make, so no seed stops it; a failure stops the benchmark)."""
    cmd = [sys.executable, "-m", "ml", "synth", "--studies", str(n), "--seed", str(seed), "--out", str(data),
           "--fast", "--prevalence", "enriched", "--workers", "2",
           "--series", "sag_t1,sag_t2,sag_stir,sag_t1_post,ax_t2"]  # fmt: skip
    subprocess.run(cmd, cwd=REPO, check=True)
    print(f"generated {n} studies in {data}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=240)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "bench" / "spinefm")
    ap.add_argument("--data", type=Path, default=None, help="existing generated dataset (skip synth)")
    ap.add_argument("--pretrain-steps", type=int, default=120)
    ap.add_argument("--gram-steps", type=int, default=30)
    ap.add_argument("--align-steps", type=int, default=100)
    ap.add_argument("--synth-steps", type=int, default=60)
    ap.add_argument("--no-ablation", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)
    from ml.train.cli import main as train

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data = args.data or out / "data"
    if args.data is None and not (data / "manifest.jsonl").exists():
        t = time.time()
        generate(data, args.studies, args.seed)
        timings["synth_data"] = time.time() - t
    common = [
        f"data.manifest={data / 'manifest.jsonl'}",
        f"data.cache_dir={out / 'cache'}",
        "run.resume=false",
        "data.test_fraction=0.3",  # 30% of patients held out of every stage, for the probes
    ]

    def stage(name: str, kind: str, *extra: str) -> None:
        t = time.time()
        rc = train([kind, str(CFG / f"{kind}.yaml"), f"run.out_dir={out / name}", *common, *extra])
        if rc:
            raise SystemExit(f"stage {name} failed")
        timings[name] = time.time() - t
        print(f"== {name}: {timings[name]:.1f} s", flush=True)

    pre = [f"optim.max_steps={args.pretrain_steps}", "optim.batch_size=32"]
    stage("pretrain_t1", "pretrain", *pre, "ssl.sequence_class=T1")
    stage("pretrain_t2", "pretrain", *pre, "ssl.sequence_class=T2")
    for c in ("t1", "t2"):
        src = out / f"pretrain_{c}"
        stage(f"gram_{c}", "gram", f"optim.max_steps={args.gram_steps}", "optim.batch_size=32",
              f"ssl.sequence_class={c.upper()}", f"ssl.resume_from={src}", f"ssl.gram_teacher={src}")  # fmt: skip
    stage("align", "align", f"optim.max_steps={args.align_steps}", "data.max_slices=4",
          f"t1_encoder={out / 'gram_t1'}", f"t2_encoder={out / 'gram_t2'}")  # fmt: skip
    routes = [("synth_conditioned", ["model.router=conditioned"])]
    if not args.no_ablation:
        routes += [
            ("synth_scalar", ["model.router=scalar"]),
            ("synth_none_t1", ["model.router=none", "model.other_fallback=T1"]),
            ("synth_none_t2", ["model.router=none", "model.other_fallback=T2"]),
        ]
    for name, extra in routes:
        stage(name, "synthesizer", f"optim.max_steps={args.synth_steps}", "data.max_slices=4",
              f"init_from={out / 'align'}", *extra)  # fmt: skip
    train_total = sum(v for k, v in timings.items() if k != "synth_data")
    timings["train_total"] = train_total
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    print(json.dumps(timings, indent=2))
    print(f"all training stages: {train_total / 60:.1f} min on {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
