"""Localisation from the dense head's cells, timed with the box regressor as one matrix product
(served: ``dense_boxes.regress``) beside the same regressor as ``np.einsum("cf,kfo->cko")`` (how
it was written before: numpy runs that contraction in its own loop, without BLAS), on the same
studies in one run, and the two answers compared.

    .venv/bin/python benchmarks/cell_localization_speed.py --pipeline .cache/pipelines/demo-<key>
        [--studies 30] [--seed 9402] [--data DIR] [--rounds 2]

The studies are generated with the demo's settings (``ml synth``, half-size realistic matrices,
enriched prevalence; a seed nobody trained on) unless ``--data`` names a folder with a manifest,
and encoded as the pipeline's build does (``ml.agents.train.prepare``). Every finding the head
calls present is localised (``cell_localization.localize_with``: the path of the served
pipeline and of the writer's training examples). Prints per way the median seconds a study over
``--rounds`` rounds (the ways take turns), their ratio, and how many findings get the same
level, side, key slices and boxes (coordinates rounded to 1e-3).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def einsum_regress(a: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The regressor as it was written before (the reference of this benchmark)."""
    from ml.agents.dense_boxes import LOG_SIZE_CLIP, OFFSET_CLIP

    out = np.einsum("cf,kfo->cko", (x - a["reg_mean"]) / a["reg_std"], a["reg_w"]) + a["reg_b"]  # [C, 17, 4]
    out[..., :2] = np.clip(out[..., :2], -OFFSET_CLIP, OFFSET_CLIP)
    out[..., 2:] = np.clip(out[..., 2:], *LOG_SIZE_CLIP)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True)
    ap.add_argument("--studies", type=int, default=30)
    ap.add_argument("--seed", type=int, default=9402)
    ap.add_argument("--data", type=Path, default=None, help="a folder with manifest.jsonl (default: generate)")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    import ml.agents.dense as dense_module
    from ml.agents.cell_localization import localize_with
    from ml.agents.dense_boxes import regress
    from ml.agents.pipeline import Pipeline
    from ml.agents.train import prepare

    pipe = Pipeline.load(a.pipeline)
    diagnosis, localization = pipe.diagnosis, pipe.localization
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data
        if data is None:
            data = Path(tmp) / "data"
            subprocess.run(
                [sys.executable, "-m", "ml", "synth", "--studies", str(a.studies), "--seed", str(a.seed),
                 "--out", str(data), "--series", "sag_t1,sag_t2,sag_stir,ax_t2", "--prevalence", "enriched",
                 "--matrix-scale", "0.5", "--workers", "2"],
                check=True,
            )  # fmt: skip
        prep = prepare(data / "manifest.jsonl", a.pipeline / "spinefm", diagnosis=diagnosis.cfg)
    feats = prep.feats[: a.studies]
    calls = [[c for c in conds if c.present] for conds in diagnosis.predict(feats)]

    def localise(way) -> tuple[float, list]:  # type: ignore[no-untyped-def]
        dense_module.regress = way  # what ``DenseDiagnosisAgents.cell_maps`` calls
        out = []
        t = time.perf_counter()
        for f, c in zip(feats, calls, strict=True):
            found = copy.deepcopy(c)
            localize_with(diagnosis, localization, f, found)
            out.append(found)
        return (time.perf_counter() - t) / len(feats), out

    ways = {"matrix product (served)": regress, "einsum (before)": einsum_regress}
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    answers: dict[str, list] = {}
    for r in range(a.rounds):
        for name in list(ways) if r % 2 == 0 else list(ways)[::-1]:
            s, answers[name] = localise(ways[name])
            seconds[name].append(s)
    dense_module.regress = regress

    def rounded(x: object) -> str:
        return re.sub(r"-?\d+\.\d+", lambda m: f"{float(m.group()):.3f}", repr(x))

    served, before = (answers[k] for k in ways)
    pairs = [(x, y) for s, b in zip(served, before, strict=True) for x, y in zip(s, b, strict=True)]
    same_calls = sum((x.level, x.side, x.key_slices) == (y.level, y.side, y.key_slices) for x, y in pairs)
    same_all = sum(rounded(x) == rounded(y) for x, y in pairs)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    print(f"pipeline {a.pipeline}; {len(feats)} studies, {len(pairs)} findings called present; {a.rounds} rounds")
    for k, v in med.items():
        print(f"{k:<26} {v:.3f} s a study (rounds: {', '.join(f'{x:.3f}' for x in seconds[k])})")
    print(f"ratio einsum / matrix product: {med['einsum (before)'] / med['matrix product (served)']:.2f}")
    print(f"same level, side and key slices: {same_calls}/{len(pairs)}; "
          f"same with boxes (1e-3): {same_all}/{len(pairs)}")  # fmt: skip
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
