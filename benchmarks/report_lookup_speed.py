"""The report writer's drafting time with prompt lookup decoding against plain greedy decoding,
side by side on the same held-out studies, and whether the drafts are the same::

    .venv/bin/python benchmarks/report_lookup_speed.py --pipeline .cache/pipelines/demo-<key> \\
        [--data .cache/heldout/heldout-s9301-n300] [--studies 8] [--tokens 10] [--ngram 3]

Each study goes through ``Pipeline.analyze`` once (SpineFM, the 36 other agents, retrieval) to
get the writer's inputs as served; then the writer drafts it with lookup off and on, in an order
that alternates from study to study, so that the machine's load falls on both alike. Prints, per
study, seconds and new tokens each way and whether the two drafts are identical; then the
medians, the ratio, and the tokens accepted per forward pass.

Prompt lookup proposes the tokens that followed the draft's last words in the prompt (the
similar case's report) and checks them in one forward pass; with greedy decoding a draft can
differ only where two tokens' logits tie to the decoder's precision between a one-token and a
several-token pass (in bfloat16, the dtype served on CPUs with AMX / AVX-512 BF16, that is
0.125 at a logit of 20; ``--float32`` to compare in float32).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path(".cache/heldout/heldout-s9301-n300"))
    ap.add_argument("--studies", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=10, help="tokens proposed per pass (prompt_lookup_tokens)")
    ap.add_argument("--ngram", type=int, default=3, help="longest match of the last words (prompt_lookup_ngram)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--float32", action="store_true", help="the writer's decoder in float32 (default: as served)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from benchmarks.drafting_throughput import load_studies
    from ml.agents.pipeline import Pipeline
    from ml.agents.report.agent import ReportAgent
    from ml.data.dicom_adapter import study_from_datasets

    pipe = Pipeline.load(a.pipeline)
    writer = pipe.agents.get("report")
    if not isinstance(writer, ReportAgent):
        raise SystemExit(f"{a.pipeline} has no trained report writer")
    if a.float32:
        writer.decoder.float()
    dtype = next(writer.decoder.parameters()).dtype
    captured: list = []
    generate = writer.generate_many

    def capture(items, max_new_tokens=None):  # type: ignore[no-untyped-def]
        captured.extend(items)
        return generate(items, max_new_tokens)

    writer.generate_many = capture  # type: ignore[method-assign]
    for uid, series in load_studies(a.data, a.studies):
        study, skipped = study_from_datasets(uid, series, pipe.preprocess)
        pipe.analyze(study, skipped)
    writer.generate_many = generate  # type: ignore[method-assign]
    budget = pipe.cfg.max_new_tokens
    rows = []
    for i, item in enumerate(captured):
        out: dict[str, tuple[float, int, str]] = {}
        for mode in ("plain", "lookup") if i % 2 == 0 else ("lookup", "plain"):
            writer.cfg.prompt_lookup_tokens = a.tokens if mode == "lookup" else 0
            writer.cfg.prompt_lookup_ngram = a.ngram
            t = time.perf_counter()
            draft = writer.generate(item, max_new_tokens=budget)
            out[mode] = (time.perf_counter() - t, draft.tokens, draft.text)
        same = out["plain"][2] == out["lookup"][2]
        rows.append((out["plain"][0], out["lookup"][0], out["plain"][1], out["lookup"][1], same))
        print(
            f"study {i}: plain {out['plain'][0]:.2f} s ({out['plain'][1]} tokens)  "
            f"lookup {out['lookup'][0]:.2f} s ({out['lookup'][1]} tokens)  identical: {same}",
            flush=True,
        )
    plain = statistics.median(r[0] for r in rows)
    look = statistics.median(r[1] for r in rows)
    print(
        f"median draft: plain {plain:.2f} s, lookup {look:.2f} s, {plain / look:.2f}x; "
        f"identical drafts {sum(r[4] for r in rows)}/{len(rows)}; "
        f"tokens per s plain {sum(r[2] for r in rows) / sum(r[0] for r in rows):.1f}, "
        f"lookup {sum(r[3] for r in rows) / sum(r[1] for r in rows):.1f}"
    )
    print(f"decoder dtype {dtype}; prompt_lookup_tokens {a.tokens}, prompt_lookup_ngram {a.ngram}")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
