"""Label extraction on hand-written realistic reports (not the generator's wording).

The corpus is ``tests/data/realistic_reports/<split>.yaml``: reports in different radiologists'
styles with hand-assigned labels (conditions not listed are absent). ``dev`` is what the rules
were tuned on; ``heldout`` was written before tuning and only evaluated (but its sentences were in
view while lexicon v2 was designed); ``heldout_b`` was written after v2, run once, and then became
development for lexicon v3; ``heldout_c`` was written before any v3 change, run once at the end, and
then became development for lexicon v4; ``heldout_d`` was written and committed before any v4
change, run once with v3 before and once with v4 at the end.

Prints, per split:
- non-absent accuracy: of the labels that are present (1) or uncertain (-1) in truth, the fraction
  extracted with exactly that value (a hedged finding read as present is wrong);
- false positives: labels absent in truth that came out present or uncertain;
- whole-report accuracy: reports with all 17 labels right;
- the pooled -1/0/1 confusion (rows truth, columns extracted) and, with ``--show-errors``, every
  mistake with its evidence sentence.

    python benchmarks/label_extraction_realistic.py                 # every split, default lexicon
    python benchmarks/label_extraction_realistic.py --split heldout --show-errors
    python benchmarks/label_extraction_realistic.py --lexicon 1     # the generator-only lexicon
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.conditions import CONDITION_KEYS  # noqa: E402

CORPUS = REPO / "tests" / "data" / "realistic_reports"
SPLITS = ("dev", "heldout", "heldout_b", "heldout_c", "heldout_d")
VALUES = (-1, 0, 1)


def load_corpus(split: str, folder: Path = CORPUS) -> list[dict[str, Any]]:
    """Entries of one split with ``labels`` completed to all 17 conditions (absent by default)."""
    rows = yaml.safe_load((folder / f"{split}.yaml").read_text())
    out = []
    for r in rows:
        unknown = set(r.get("labels") or {}) - set(CONDITION_KEYS)
        if unknown:
            raise ValueError(f"{r['id']}: unknown conditions {sorted(unknown)}")
        labels = dict.fromkeys(CONDITION_KEYS, 0)
        labels.update({k: int(v) for k, v in (r.get("labels") or {}).items()})
        out.append({**r, "labels": labels})
    return out


def score(rows: list[dict[str, Any]], predict) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Non-absent accuracy, false positives, whole-report accuracy, confusion and the mistakes."""
    confusion = [[0] * 3 for _ in VALUES]
    non_absent = right_non_absent = false_pos = exact = 0
    errors = []
    for r in rows:
        res = predict(r["text"])
        ok = True
        for k in CONDITION_KEYS:
            t, p = r["labels"][k], res.labels[k]
            confusion[VALUES.index(t)][VALUES.index(p)] += 1
            if t != 0:
                non_absent += 1
                right_non_absent += int(p == t)
            elif p != 0:
                false_pos += 1
            if p != t:
                ok = False
                errors.append(
                    {"id": r["id"], "condition": k, "truth": t, "extracted": p, "evidence": res.evidence.get(k)}
                )
        exact += int(ok)
    n = len(rows)
    return {
        "reports": n,
        "non_absent_labels": non_absent,
        "non_absent_accuracy": right_non_absent / non_absent if non_absent else 1.0,
        "false_positives": false_pos,
        "false_positives_per_report": false_pos / n if n else 0.0,
        "report_accuracy": exact / n if n else 1.0,
        "label_accuracy": sum(confusion[i][i] for i in range(3)) / (17 * n) if n else 1.0,
        "confusion": confusion,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=(*SPLITS, "all"), default="all")
    ap.add_argument("--lexicon", type=int, default=None, help="rule lexicon version (default: the extractor's)")
    ap.add_argument("--show-errors", action="store_true")
    ap.add_argument("--json", type=Path, help="write the metrics here")
    args = ap.parse_args()

    from ml.agents.labels.rules import DEFAULT_LEXICON, extract_rules

    version = args.lexicon or DEFAULT_LEXICON

    def predict(text: str):  # type: ignore[no-untyped-def]
        return extract_rules(text, lexicon_version=version)

    out = {}
    for split in SPLITS if args.split == "all" else (args.split,):
        rows = load_corpus(split)
        t0 = time.perf_counter()
        res = score(rows, predict)
        dt = time.perf_counter() - t0
        out[split] = {k: v for k, v in res.items() if k != "errors"}
        print(f"[{split}] rules/lexicon-v{version}: {res['reports']} reports in {dt:.2f} s")
        print(
            f"  present/uncertain labels right {res['non_absent_accuracy']:.3f} "
            f"({round(res['non_absent_accuracy'] * res['non_absent_labels'])}/{res['non_absent_labels']}); "
            f"reports with all 17 right {res['report_accuracy']:.3f}; "
            f"false positives {res['false_positives']} ({res['false_positives_per_report']:.2f}/report); "
            f"label accuracy {res['label_accuracy']:.4f}"
        )
        print("  confusion (rows truth -1/0/1, columns extracted -1/0/1):")
        for v, row in zip(VALUES, res["confusion"], strict=True):
            print(f"    {v:>2}: " + " ".join(f"{x:5d}" for x in row))
        if args.show_errors:
            for e in res["errors"]:
                print(
                    f"  - {e['id']} {e['condition']}: truth {e['truth']}, extracted {e['extracted']}; {e['evidence']!r}"
                )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
