"""The paper's claim with a decoder that reads: do the agents' tokens make the Medical Report
Agent's drafts better than plain LLaVA (the same decoder and data without them)?

    nice .venv/bin/python benchmarks/report_claim.py --pipeline .cache/pipelines/demo-<key> \\
        --train .cache/agents_dense/rtrain/manifest.jsonl \\
        --test .cache/heldout/heldout-s9301-n300/manifest.jsonl --n-test 60

Setup: the served pipeline (SpineFM + diagnosis, localization and retrieval agents) analyses
generated studies it never trained on, as in the app; its calls, levels and the retrieved
similar case are the agent tokens. Two writers are trained from the same pretrained decoder
(``--preset``, default gemma-3-270m with its report vocabulary), the same steps and seed, on the
same training studies' reports: **agent** (prompt with the tokens) and **plain** (image tokens
and the template only). Each held-out study is drafted by

- agent: its own tokens;
- plain;
- agent fed **another held-out study's** tokens (the same layout, the wrong content): if this
  equals the agent row, the decoder is not reading its tokens;

and scored against the generator's truth (label extractor on the draft; truth -1 excluded):
false positives and omissions per report, beside a plain **transcription** of the agents' calls
and the **grounded** draft the reader gets (``ground_draft``). Differences are paired per study
with bootstrap 95 % CIs. The cost is recorded: training seconds per variant, drafting seconds per
study in batches, and single-study drafting latency (the figure the drafting worker pays).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from report_grounding import truth_errors  # the benchmark beside this one

VARIANTS = ("agent", "plain", "other")


def analysed(pipe: Any, manifest: Path, limit: int | None, batch: int = 8) -> list[dict[str, Any]]:
    """Each study as the drafting worker has it, through every agent family but the report's:
    the entry, its ``StudyAnalysis`` (calls, levels, similar cases) and its SpineFM features."""
    from tqdm import tqdm

    from ml.agents.analysis import StudyAnalysis
    from ml.agents.features import encode_studies
    from ml.agents.heldout import read_study
    from ml.agents.protocol import FAMILIES, RunContext
    from ml.data.dicom_adapter import study_from_datasets
    from ml.data.manifest import read_manifest

    entries = [e for e in read_manifest(manifest) if e.report][:limit]
    rows: list[dict[str, Any]] = []
    context = RunContext(pipe.cfg, pipe.agents)
    for i in tqdm(range(0, len(entries), batch), desc=f"analyse {manifest.parent.name}", unit="batch"):
        chunk = entries[i : i + batch]
        studies = [study_from_datasets(*read_study(manifest.parent, e), pipe.preprocess, patient_key=e.patient_key)[0]
                   for e in chunk]  # fmt: skip
        feats = encode_studies(studies, pipe.model, pipe.cfg.slice_batch, studies_per_batch=len(studies))
        results = [StudyAnalysis(study_uid=s.study_uid, pipeline_version=pipe.version) for s in studies]
        for name in FAMILIES:
            if name != "report" and name in pipe.agents:
                pipe.agents[name].run(results, feats, context)
        rows += [{"entry": e, "analysis": r, "feat": f} for e, r, f in zip(chunk, results, feats, strict=True)]
    return rows


def report_inputs(row: dict[str, Any], tokens_from: dict[str, Any] | None = None) -> Any:
    """The writer's inputs for ``row``'s images, with the agent tokens of ``tokens_from`` (itself by default)."""
    from ml.agents.report import ReportInputs

    f, src = row["feat"], (tokens_from or row)["analysis"]
    return ReportInputs(
        t1_slices=[e.slices for _, e in f.pairs(("T1",))],
        t2_slices=[e.slices for _, e in f.pairs(("T2",))],
        conditions=src.conditions,
        similar_report=src.similar_cases[0].report if src.similar_cases else None,
        region=row["entry"].region or "lumbar",
    )


def train_variants(rows: list[dict[str, Any]], out: Path, a: argparse.Namespace) -> dict[str, float]:
    from ml.agents.report import ReportExample, train_report_agent

    examples = [ReportExample(**vars(report_inputs(r)), target=r["entry"].report) for r in rows]
    seconds: dict[str, float] = {}
    for name, tokens in (("agent", True), ("plain", False)):
        if (out / name / "config.json").exists() and not a.retrain:
            seconds[name] = float(json.loads((out / name / "meta.json").read_text())["seconds"]["total"])
            continue
        t0 = time.perf_counter()
        overrides: dict[str, Any] = {"train.batch_size": a.train_batch}
        if a.lr_stage2:
            overrides["train.lr_stage2"] = a.lr_stage2
        if a.dtype:
            overrides["dtype"] = a.dtype
        train_report_agent(examples, out / name, preset=a.preset, stage1_steps=a.stage1, stage2_steps=a.stage2,
                           use_agent_tokens=tokens, overrides=overrides)  # fmt: skip
        seconds[name] = time.perf_counter() - t0
    return seconds


def draft_all(agent: Any, inputs: list[Any], batch: int, budget: int) -> tuple[list[str], float]:
    from tqdm import tqdm

    texts: list[str] = []
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(inputs), batch), desc="draft", unit="batch"):
        texts += [d.text for d in agent.generate_many(inputs[i : i + batch], max_new_tokens=budget)]
    return texts, (time.perf_counter() - t0) / max(len(inputs), 1)


def score(texts: list[str], rows: list[dict[str, Any]], grounded: bool) -> list[tuple[int, int]]:
    from ml.agents.labels import extract_labels
    from ml.agents.report.grounding import ground_draft

    out = []
    for text, r in zip(texts, rows, strict=True):
        if grounded:
            text = ground_draft(text, r["analysis"].conditions, r["entry"].region, record_facts=False).text
        out.append(truth_errors(extract_labels(text).labels, r["entry"].labels))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True, help="a pipeline folder (e.g. the demo's)")
    ap.add_argument("--train", type=Path, required=True, help="manifest.jsonl of the writers' training studies")
    ap.add_argument("--test", type=Path, required=True, help="manifest.jsonl of held-out studies")
    ap.add_argument("--n-train", type=int, default=140)
    ap.add_argument("--n-test", type=int, default=60)
    ap.add_argument("--preset", default="gemma-3-270m")
    ap.add_argument("--stage1", type=int, default=30)
    ap.add_argument("--stage2", type=int, default=60)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--lr-stage2", type=float, default=None, help="LoRA learning rate (default: the preset's YAML)")
    ap.add_argument("--dtype", default=None, help="decoder dtype, e.g. bfloat16 (AMX / AVX-512 BF16 CPUs, GPUs)")
    ap.add_argument("--batch", type=int, default=8, help="studies per generate call")
    ap.add_argument("--max-new-tokens", type=int, default=400)
    ap.add_argument("--latency-studies", type=int, default=5, help="studies drafted one at a time for the latency")
    ap.add_argument("--out", type=Path, default=Path(".cache/bench/report_claim"))
    ap.add_argument("--retrain", action="store_true", help="train the writers again even if cached")
    ap.add_argument("--image", type=Path, default=Path("docs/images/report_claim.png"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # training steps, rates

    import numpy as np
    import torch

    from ml.agents.metrics import paired_mean_ci
    from ml.agents.pipeline import Pipeline
    from ml.agents.report import ReportAgent

    a.out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    pipe = Pipeline.load(a.pipeline, overrides={"report": False})
    t0 = time.perf_counter()
    train_rows = analysed(pipe, a.train, a.n_train)
    test_rows = analysed(pipe, a.test, a.n_test)
    analyse_s = time.perf_counter() - t0
    train_s = train_variants(train_rows, a.out, a)

    n = len(test_rows)
    agent = ReportAgent.load(a.out / "agent")
    plain = ReportAgent.load(a.out / "plain")
    own = [report_inputs(r) for r in test_rows]
    inputs = {
        "agent": own,
        "plain": [dataclasses.replace(x, use_agent_tokens=False) for x in own],
        "other": [report_inputs(r, test_rows[(i + 1) % n]) for i, r in enumerate(test_rows)],
    }
    writers = {"agent": agent, "plain": plain, "other": agent}
    texts, per_study_s = {}, {}
    for v in VARIANTS:
        texts[v], per_study_s[v] = draft_all(writers[v], inputs[v], a.batch, a.max_new_tokens)
    latency = []
    for x in own[: a.latency_studies]:
        latency.append(agent.generate(x, max_new_tokens=a.max_new_tokens).seconds)

    errors = {v: score(texts[v], test_rows, grounded=False) for v in VARIANTS}
    errors["grounded"] = score(texts["agent"], test_rows, grounded=True)
    errors["transcription"] = [
        truth_errors({c.condition: int(c.present) for c in r["analysis"].conditions}, r["entry"].labels)
        for r in test_rows
    ]
    true_findings = float(np.mean([sum(v == 1 for v in r["entry"].labels.values()) for r in test_rows]))
    rows_out = {k: {"fp": float(np.mean([e[0] for e in v])), "om": float(np.mean([e[1] for e in v]))}
                for k, v in errors.items()}  # fmt: skip

    def diff(x: str, y: str, i: int) -> list[float]:
        return list(paired_mean_ci([ex[i] - ey[i] for ex, ey in zip(errors[x], errors[y], strict=True)]))

    contrasts = {f"{x} - {y}": {"fp": diff(x, y, 0), "om": diff(x, y, 1)}
                 for x, y in (("agent", "plain"), ("agent", "other"), ("grounded", "transcription"))}  # fmt: skip
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    summary = {
        "pipeline": str(a.pipeline), "train": str(a.train), "test": str(a.test), "n_train": len(train_rows),
        "n_test": n, "preset": a.preset, "stage1": a.stage1, "stage2": a.stage2, "device": device,
        "dtype": agent.cfg.dtype, "lr_stage2": agent.cfg.train.lr_stage2,
        "true_findings_per_report": true_findings, "errors": rows_out, "contrasts": contrasts,
        "seconds": {"analyse": analyse_s, "train": train_s, "draft_per_study_batched": per_study_s,
                    "draft_latency_single": latency},
        "vocab": len(agent.vocab) if agent.vocab is not None else None,
        "load_before_after": [load0, os.getloadavg()[0]],
    }  # fmt: skip
    (a.out / "report_claim.json").write_text(json.dumps(summary, indent=2))
    drafts = [{"study": r["entry"].study_uid, **{v: texts[v][i] for v in VARIANTS}} for i, r in enumerate(test_rows)]
    (a.out / "drafts.json").write_text(json.dumps(drafts, indent=1))
    print(f"{n} held-out studies ({true_findings:.2f} true findings each), writers trained on {len(train_rows)}; "
          f"preset {a.preset} (report vocabulary {summary['vocab']}); {device}")  # fmt: skip
    print(f"{'per report vs truth':<34}{'FP':>8}{'omissions':>11}")
    for k, v in rows_out.items():
        print(f"{k:<34}{v['fp']:>8.2f}{v['om']:>11.2f}")
    for k, c in contrasts.items():
        fp, om = c["fp"], c["om"]
        print(f"{k:<34}FP {fp[0]:+.2f} [{fp[1]:+.2f}, {fp[2]:+.2f}]   "
              f"omissions {om[0]:+.2f} [{om[1]:+.2f}, {om[2]:+.2f}]")  # fmt: skip
    print(f"seconds: analyse {analyse_s:.0f}, train " + ", ".join(f"{k} {v:.0f}" for k, v in train_s.items())
          + ", draft per study (batches of " + str(a.batch) + ") "
          + ", ".join(f"{k} {v:.1f}" for k, v in per_study_s.items())
          + f"; single-study latency {np.mean(latency):.1f} s (n={len(latency)})")  # fmt: skip
    print(f"load average (1 min): {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs")
    _plot(summary, a.image)
    return 0


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["errors"]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [rows[k]["fp"] for k in names], 0.4, label="false positives")
    ax.bar([i + 0.2 for i in x], [rows[k]["om"] for k in names], 0.4, label="omissions")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("per report")
    ax.set_title(f"{summary['preset']}: {summary['n_test']} held-out studies vs the generator's truth", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
