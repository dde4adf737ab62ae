"""Drafting throughput on this machine: studies per hour through the worker's ML path.

Usage: python benchmarks/drafting_throughput.py [--studies 6] [--pipeline DIR] [--data DIR]

What is timed is what a drafting worker does after the DICOMweb fetch: pydicom datasets ->
``study_from_datasets`` (preprocess, classify) -> ``Pipeline.analyze_many`` (SpineFM encode, 17
diagnosis + 17 localization agents, retrieval, report). Three modes, side by side in one run on
the same studies, the pipeline loaded once per mode (as a warm worker has it):

- ``batched``: the studies go through one ``analyze_many`` call (slices of all studies of a
  sequence class share encoder forwards of up to ``slice_batch`` slices);
- ``per-study``: one study at a time, its own slices batched (what one task per study does);
- ``one-slice``: one study at a time, encoder batch of 1 slice (the unbatched baseline).

The tiny pipeline (``ensure_tiny_pipeline``) is the default; studies are fast-preset synthetic
studies generated into a temporary folder unless ``--data`` names a folder with a manifest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_studies(data: Path, n: int) -> list[tuple[str, dict]]:
    """(study UID, {series UID: [pydicom Dataset]}) for the first ``n`` manifest studies."""
    import pydicom

    from ml.data.manifest import read_manifest

    out = []
    for entry in list(read_manifest(data / "manifest.jsonl"))[:n]:
        series = {
            s.series_uid: [pydicom.dcmread(f) for f in sorted((data / s.path).glob("*.dcm"))] for s in entry.series
        }
        out.append((entry.study_uid, series))
    return out


def run(folder: str, studies: list[tuple[str, dict]], mode: str) -> dict:
    from ml.agents.pipeline import Pipeline
    from ml.data.dicom_adapter import study_from_datasets

    overrides = {"slice_batch": 1, "studies_per_batch": 1} if mode == "one-slice" else {}
    pipeline = Pipeline.load(folder, overrides=overrides)
    t0 = time.perf_counter()
    prepared = [study_from_datasets(uid, series, pipeline.preprocess) for uid, series in studies]
    prep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if mode == "batched":
        results = pipeline.analyze_many([p[0] for p in prepared], [p[1] for p in prepared])
    else:
        results = [pipeline.analyze(p[0], p[1]) for p in prepared]
    analyze_s = time.perf_counter() - t0
    slices = sum(len(s.pixels) for p in prepared for s in p[0].series)
    per_agent: dict[str, float] = {}
    for r in results:
        for a in r.agents:
            per_agent[a.name] = per_agent.get(a.name, 0.0) + a.seconds
    total = prep_s + analyze_s
    return {"mode": mode, "studies": len(studies), "slices": slices, "prep_s": prep_s, "analyze_s": analyze_s,
            "total_s": total, "per_hour": 3600 * len(studies) / total, "agents": per_agent,
            "ok": all(r.ok for r in results)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=6)
    p.add_argument("--pipeline", help="pipeline folder (default: the cached tiny pipeline)")
    p.add_argument("--data", type=Path, help="folder with manifest.jsonl (default: generate fast studies)")
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    from ml.agents.bootstrap import ensure_tiny_pipeline

    folder = a.pipeline or str(ensure_tiny_pipeline())
    import torch

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data
        if data is None:
            data = Path(tmp)
            subprocess.run([sys.executable, "-m", "ml", "synth", "--studies", str(a.studies), "--seed", str(a.seed),
                            "--out", tmp, "--fast"], check=True, capture_output=True)  # fmt: skip
        studies = load_studies(data, a.studies)
        rows = [run(folder, studies, mode) for mode in ("batched", "per-study", "one-slice")]
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"pipeline: {folder}\ndevice: {device}  studies: {rows[0]['studies']}  slices: {rows[0]['slices']}")
    print(f"{'mode':<10} {'prep s':>7} {'agents s':>9} {'total s':>8} {'studies/h':>10}  per agent family (s)")
    for r in rows:
        agents = ", ".join(f"{k} {v:.1f}" for k, v in r["agents"].items())
        print(f"{r['mode']:<10} {r['prep_s']:>7.1f} {r['analyze_s']:>9.1f} {r['total_s']:>8.1f} "
              f"{r['per_hour']:>10.0f}  {agents}{'' if r['ok'] else '  (an agent failed)'}")  # fmt: skip
    base, per_study = rows[2]["per_hour"], rows[1]["per_hour"]
    print(f"ratio batched / one-slice: {rows[0]['per_hour'] / base:.2f}; per-study / one-slice: "
          f"{per_study / base:.2f}; batched / per-study: {rows[0]['per_hour'] / per_study:.2f}")  # fmt: skip
    # other jobs share the cores: figures only compare at a similar load
    print(f"load average (1 min): {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
