"""Label extraction accuracy against the synthetic generator's ground truth.

Two report sources:
- ``--manifest PATH``: reports and labels of a generated dataset (``python -m ml synth``).
- ``--seed S --n N``: report text only, drawn with the generator's own functions
  (``sample_patient`` + ``write_report``, the same code ``generate_study`` calls) without rendering
  images, so thousands of held-out reports cost seconds. Development used seed 1000; report
  figures on other seeds.

Prints per-condition accuracy, the -1/0/1 confusion matrix (rows = truth, columns = extracted),
and reports/second. ``--backend llm --model PATH`` runs the LLM back-end instead.

    python benchmarks/label_extraction.py --seed 2026 --n 2000
    python benchmarks/label_extraction.py --seed 2026 --n 2000 --lexicon 3    # an older lexicon
    python benchmarks/label_extraction.py --manifest .cache/bench/spinefm/data/manifest.jsonl
    python benchmarks/label_extraction.py --seed 2026 --n 40 --backend llm --model .cache/models/gemma-3-270m
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.conditions import CONDITION_KEYS

VALUES = (-1, 0, 1)


def synth_reports(
    seed: int,
    n: int,
    regions: tuple[str, ...] = ("lumbar", "cervical", "thoracic"),
    cohorts: tuple[str, ...] = ("general", "elderly"),
) -> list[tuple[str, dict[str, int]]]:
    """(report, labels) pairs from the generator's patient sampler and report writer, no pixels."""
    from ml.data.synthetic.findings import sample_patient
    from ml.data.synthetic.regions import REGION_SPECS
    from ml.data.synthetic.report import write_report
    from ml.data.synthetic.study_labels import labels_from_findings

    out = []
    series = ["SAG T1 FSE", "SAG T2 FSE", "SAG STIR", "AX T2 FSE"]
    for i in range(n):
        region = regions[i % len(regions)]
        cohort = cohorts[(i // len(regions)) % len(cohorts)]
        prevalence = "enriched" if i % 2 else "realistic"
        rng_a, rng_r = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, i]).spawn(2))
        patient = sample_patient(rng_a, region, cohort, prevalence)
        report = write_report(rng_r, patient, region, REGION_SPECS[region].levels(), series, bool(rng_r.random() < 0.3))
        out.append((report, labels_from_findings(patient.findings)))
    return out


def manifest_reports(path: Path) -> list[tuple[str, dict[str, int]]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["report"], r["labels"]) for r in rows if r.get("report")]


def evaluate(pairs: list[tuple[str, dict[str, int]]], predict) -> dict:  # type: ignore[no-untyped-def]
    """Accuracy per condition and the pooled 3x3 confusion (truth rows, prediction columns)."""
    conf = {k: np.zeros((3, 3), dtype=int) for k in CONDITION_KEYS}
    preds = predict([t for t, _ in pairs])
    errors = []
    for (text, truth), pred in zip(pairs, preds, strict=True):
        for k in CONDITION_KEYS:
            conf[k][VALUES.index(truth[k]), VALUES.index(pred.labels[k])] += 1
            if truth[k] != pred.labels[k]:
                errors.append((k, truth[k], pred.labels[k], pred.evidence.get(k, ""), text))
    pooled = sum(conf.values())
    return {
        "per_condition": {k: float(np.trace(c) / c.sum()) for k, c in conf.items()},
        "per_condition_confusion": {k: c.tolist() for k, c in conf.items()},
        "confusion": pooled.tolist(),
        "accuracy": float(np.trace(pooled) / pooled.sum()),
        "exact_report": float(
            np.mean([all(p.labels[k] == t[k] for k in CONDITION_KEYS) for (_, t), p in zip(pairs, preds, strict=True)])
        ),
        "errors": errors,
    }


def print_result(res: dict, n: int, seconds: float, extractor: str) -> None:
    print(f"extractor {extractor}: {n} reports in {seconds:.2f} s ({n / seconds:.1f} reports/s)")
    print(f"{'condition':<24} {'acc':>7}  present/uncertain in truth")
    for k in CONDITION_KEYS:
        c = np.array(res["per_condition_confusion"][k])
        print(f"{k:<24} {res['per_condition'][k]:7.4f}  {int(c[2].sum()):4d} / {int(c[0].sum()):4d}")
    print(f"overall label accuracy {res['accuracy']:.4f}; reports with all 17 right {res['exact_report']:.4f}")
    print("confusion (rows truth -1/0/1, columns extracted -1/0/1):")
    for v, row in zip(VALUES, res["confusion"], strict=True):
        print(f"  {v:>2}: " + " ".join(f"{x:7d}" for x in row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--backend", default="rules", choices=("rules", "llm"))
    ap.add_argument("--model", help="local HF causal LM folder (backend llm)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--method", default="score", choices=("score", "generate"), help="LLM answer reading")
    ap.add_argument(
        "--drop-impression", action="store_true", help="cut each report at IMPRESSION: (findings-only stress test)"
    )
    ap.add_argument("--lexicon", type=int, default=None, help="rule lexicon version (default: the extractor's)")
    ap.add_argument("--show-errors", type=int, default=0, help="print this many mistakes")
    ap.add_argument("--json", type=Path, help="write the metrics here")
    args = ap.parse_args()

    pairs = manifest_reports(args.manifest) if args.manifest else synth_reports(args.seed, args.n)
    if args.drop_impression:
        pairs = [(t.split("IMPRESSION:")[0], y) for t, y in pairs]
    if args.backend == "rules":
        from ml.agents.labels.rules import DEFAULT_LEXICON, extract_rules

        version = args.lexicon or DEFAULT_LEXICON
        name = f"rules/lexicon-v{version}"

        def predict(texts: list[str]):  # type: ignore[no-untyped-def]
            return [extract_rules(t, lexicon_version=version) for t in texts]
    else:
        from ml.agents.labels.llm import extractor_for

        ext = extractor_for(args.model, batch_size=args.batch_size, method=args.method)
        name = ext.name

        def predict(texts: list[str]):  # type: ignore[no-untyped-def]
            return ext.extract_many(texts)

    t0 = time.perf_counter()
    res = evaluate(pairs, predict)
    dt = time.perf_counter() - t0
    print(f"source: {args.manifest or f'generator seed {args.seed}'}")
    print_result(res, len(pairs), dt, name)
    for k, t, p, ev, text in res["errors"][: args.show_errors]:
        print(f"\n--- {k}: truth {t}, extracted {p}; evidence {ev!r}\n{text}")
    if args.json:
        out = {k: v for k, v in res.items() if k != "errors"}
        out.update(n=len(pairs), seconds=dt, extractor=name, source=str(args.manifest or args.seed))
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
