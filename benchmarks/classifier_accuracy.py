"""Series-classifier accuracy on the real vendor MR files that ship in packages.

Usage: ``.venv/bin/python benchmarks/classifier_accuracy.py [--markdown]``

Prints one row per reference case (file or series, vendor, description, expected and predicted
class/subtype/plane) and the accuracy: a case counts as correct only when class, subtype and
plane all match. Sources that are not installed are listed as skipped, not counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ml.dicom.reference_files import REFERENCE_CASES, ReferenceUnavailable, load_case
from ml.dicom.series_classifier import classify_series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for docs/)")
    args = parser.parse_args(argv)
    header = ("case", "files", "vendor", "description", "expected", "predicted", "ok")
    rows: list[tuple[str, ...]] = []
    skipped: list[str] = []
    correct = class_correct = plane_correct = 0
    for case in REFERENCE_CASES:
        try:
            datasets = load_case(case)
        except ReferenceUnavailable as exc:
            skipped.append(f"{case.case_id}: {exc}")
            continue
        result = classify_series(datasets)
        first = datasets[len(datasets) // 2]
        expected = (case.sequence_class, case.subtype, case.plane)
        predicted = (result.sequence_class, result.subtype, result.plane)
        correct += expected == predicted
        class_correct += expected[0] == predicted[0]
        plane_correct += expected[2] == predicted[2]
        description = str(first.get("SeriesDescription", "") or first.get("ProtocolName", "") or "—")
        rows.append(
            (
                case.case_id,
                str(len(datasets)),
                str(first.get("Manufacturer", "") or "—"),
                description,
                "/".join(expected),
                "/".join(predicted),
                "yes" if expected == predicted else "NO",
            )
        )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        for row in (header, *rows):
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    n = len(rows)
    if n:
        print(
            f"\naccuracy (class+subtype+plane): {correct}/{n} = {correct / n:.1%}; "
            f"class only: {class_correct}/{n}; plane only: {plane_correct}/{n}"
        )
    for line in skipped:
        print(f"skipped {line}")
    return 0 if n else 1


if __name__ == "__main__":
    raise SystemExit(main())
