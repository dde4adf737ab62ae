"""The report step for several studies: one draft at a time (prompt lookup) against one
left-padded batch (``ReportAgent.generate_many``, what ``Pipeline.analyze_many`` now does), on
the same studies and the same writer, in turn in one run.

    .venv/bin/python benchmarks/report_batch_speed.py --pipeline .cache/pipelines/demo-<key> \
        --data .cache/heldout/heldout-s9402-n150 [--studies 10] [--batch 10 5]

Each study goes through the pipeline as the drafting worker has it (``study_from_datasets``,
``analyze_many``) with the writer held back, so both ways draft from the same calls, boxes and
similar case. Prints seconds per study each way, the ratio, the tokens written, and how many
drafts are the same text both ways: greedy decoding in bfloat16 is not bit-stable across batch
shapes (padding changes the order of the sums), so a batch may word some drafts differently;
the grounding that follows the writer (``benchmarks/report_grounding.py``) holds either way.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, required=True, help="a pipeline folder with a report agent")
    ap.add_argument("--data", type=Path, required=True, help="a generated folder with manifest.jsonl")
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--batch", type=int, nargs="+", default=[10, 5], help="batch sizes to time")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(a.threads)
    from ml.agents.heldout import read_study
    from ml.agents.pipeline import Pipeline
    from ml.agents.report.agent import ReportAgent
    from ml.data.dicom_adapter import study_from_datasets
    from ml.data.manifest import read_manifest

    pipeline = Pipeline.load(a.pipeline)
    agent = pipeline.agents.get("report")
    if not isinstance(agent, ReportAgent):
        print(f"{a.pipeline} has no report agent", file=sys.stderr)
        return 2
    manifest = a.data / "manifest.jsonl"
    studies = []
    for entry in list(read_manifest(manifest))[: a.studies]:
        uid, series = read_study(manifest.parent, entry)
        studies.append(study_from_datasets(uid, series, pipeline.preprocess, patient_key=entry.patient_key)[0])
    held: dict = {}  # what the writer would be given, per study UID (a study is offered again alone)

    class Holder:
        """Stands in for the writer during the analysis: keeps its inputs, drafts nothing."""

        per_study = False

        def run(self, results, feats, context) -> None:  # type: ignore[no-untyped-def]
            for r, f in zip(results, feats, strict=True):
                held[r.study_uid] = ReportAgent.inputs_of(r, f)
            raise RuntimeError("held back")  # the pipeline falls back to the template

    pipeline.agents["report"] = Holder()
    quiet = logging.getLogger("ml.agents.pipeline")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the held-back writer's "failures"
    try:
        pipeline.analyze_many(studies)
    finally:
        quiet.setLevel(level)
    inputs = list(held.values())
    budget = pipeline.cfg.max_new_tokens
    dtype = next(agent.decoder.parameters()).dtype
    print(f"{len(inputs)} studies, budget {budget} tokens, decoder {dtype}, {a.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip

    t0 = time.perf_counter()
    single = [agent.generate(item, budget) for item in inputs]
    single_s = (time.perf_counter() - t0) / len(inputs)
    tokens = sum(d.tokens for d in single) / len(single)
    print(f"  one at a time (prompt lookup): {single_s:.2f} s a study, {tokens:.0f} tokens a draft")
    for size in a.batch:
        t0 = time.perf_counter()
        drafts = []
        for i in range(0, len(inputs), size):
            drafts += agent.generate_many(inputs[i : i + size], budget)
        batch_s = (time.perf_counter() - t0) / len(inputs)
        same = sum(x.text == y.text for x, y in zip(single, drafts, strict=True))
        print(f"  batches of {size}: {batch_s:.2f} s a study ({single_s / batch_s:.2f}x), "
              f"{sum(d.tokens for d in drafts) / len(drafts):.0f} tokens a draft, "
              f"same text as alone {same} / {len(inputs)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
