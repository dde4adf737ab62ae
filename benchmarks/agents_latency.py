"""Latency of ``analyze_study`` for one 4-series study (sag T1, sag T2, sag STIR, ax T2).

Usage: python benchmarks/agents_latency.py [--pipeline DIR] [--repeats 3] [--fast] [--device cpu] [--no-report]
                                            [--report-agent DIR [--full-vocab]]

Without ``--pipeline`` the cached tiny bootstrap pipeline is used (``ensure_tiny_pipeline``).
Without ``--fast`` the study has the vendors' realistic matrices (sagittal 384-512 px, 15-17
slices; axial 320-352 px). Prints, per repeat: reading the DICOM files (stands in for the
DICOMweb fetch), ``study_from_datasets`` (classification + preprocessing), and each agent's
time from the ``StudyAnalysis``; then the medians, and the 1-minute load average (the machine
is shared: a loaded CPU stretches every figure). Target on a 2-core CPU with tiny presets: < 20 s.

``--report-agent`` drafts with another trained report agent folder (e.g. a gemma-3-270m writer)
in place of the pipeline's; ``--full-vocab`` loads it without its report vocabulary (the output
over all of the decoder's tokens), to see what the vocabulary saves on this machine;
``--report-dtype bfloat16`` loads its decoder in bfloat16 (AMX / AVX-512 BF16 CPUs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fast", action="store_true", help="tiny 128/96 px test studies instead of vendor matrices")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: the pipeline's config)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--no-report", action="store_true", help="template draft instead of the Medical Report Agent")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="report token budget (default: pipeline config)")
    ap.add_argument("--report-agent", type=Path, default=None, help="a report agent folder to draft with instead")
    ap.add_argument("--full-vocab", action="store_true", help="load --report-agent without its report vocabulary")
    ap.add_argument("--report-dtype", default=None, help="load --report-agent's decoder in this dtype (e.g. bfloat16)")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pydicom
    import torch

    torch.set_num_threads(a.threads)
    from ml.agents.bootstrap import ensure_tiny_pipeline
    from ml.agents.pipeline import Pipeline
    from ml.data.dicom_adapter import study_from_datasets

    folder = a.pipeline or ensure_tiny_pipeline()
    t = time.perf_counter()
    overrides: dict = {"device": a.device} if a.device else {}
    if a.no_report:
        overrides["report"] = False
    if a.max_new_tokens:
        overrides["max_new_tokens"] = a.max_new_tokens
    pipe = Pipeline.load(folder, overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        if a.report_agent:
            pipe.agents["report"] = _report_agent(a.report_agent, Path(tmp) / "agent", a.full_vocab, a.report_dtype)
        load_s = time.perf_counter() - t
        cmd = [sys.executable, "-m", "ml", "synth", "--studies", "1", "--seed", str(a.seed), "--out", f"{tmp}/data"]
        cmd += ["--series", "sag_t1,sag_t2,sag_stir,ax_t2"] + (["--fast"] if a.fast else [])
        subprocess.run(cmd, check=True, capture_output=True)
        files = sorted(Path(tmp).glob("data/studies/*/*/*.dcm"))
        rows = []
        for r in range(a.repeats):
            t0 = time.perf_counter()
            series: dict[str, list] = {}
            for f in files:
                ds = pydicom.dcmread(f)
                series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
            t1 = time.perf_counter()
            uid = str(next(iter(series.values()))[0].StudyInstanceUID)
            study, skipped = study_from_datasets(uid, series, pipe.preprocess)
            t2 = time.perf_counter()
            result = pipe.analyze(study, skipped)
            t3 = time.perf_counter()
            row = {"read": t1 - t0, "preprocess": t2 - t1, **{x.name: x.seconds for x in result.agents}}
            row["analyze"] = t3 - t2
            row["total"] = t3 - t0
            rows.append(row)
            print(f"repeat {r}: " + "  ".join(f"{k} {v:.2f}s" for k, v in row.items()), flush=True)
    shapes = sorted({f"{s.geometry.columns}x{s.geometry.rows}x{len(s.sop_uids)}" for s in study.series})
    print(f"pipeline {pipe.version} ({folder}); load {load_s:.1f} s; device {pipe.cfg.device}; threads {a.threads}")
    print(f"study: {len(files)} instances, series (cols x rows x slices): {', '.join(shapes)}")
    writer = pipe.agents.get("report")
    vocab = getattr(writer, "vocab", None)
    out_vocab = len(vocab) if vocab is not None else "full"
    version = getattr(writer, "version", "template")
    print(f"report source: {result.report_source} ({version}, output vocabulary {out_vocab}); agents ok: {result.ok}")
    print(f"errors: {result.errors or 'none'}")
    print(f"draft: {len(result.report_text)} characters, sections {sorted(result.report_sections)}")
    print("median: " + "  ".join(f"{k} {statistics.median(r[k] for r in rows):.2f}s" for k in rows[0]))
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


def _report_agent(folder: Path, tmp: Path, full_vocab: bool, dtype: str | None):  # type: ignore[no-untyped-def]
    import json
    import shutil

    from ml.agents.report import ReportAgent

    if full_vocab or dtype:  # the same agent, loaded another way
        shutil.copytree(folder, tmp)
        if full_vocab:  # its output over the decoder's whole vocabulary
            (tmp / "vocab.json").unlink(missing_ok=True)
        if dtype:
            cfg = json.loads((tmp / "config.json").read_text())
            (tmp / "config.json").write_text(json.dumps({**cfg, "dtype": dtype}))
        folder = tmp
    return ReportAgent.load(folder)


if __name__ == "__main__":
    raise SystemExit(main())
