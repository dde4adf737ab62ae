"""``python -m ml classify PATH... [--json]``: classify every MR series under the given paths.

Files are grouped by SeriesInstanceUID and classified with ``classify_series``. Unreadable or
non-DICOM files are reported one per line with the reason and skipped, so one corrupt file in a
PACS export does not hide the rest of the study.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ml.dicom.series_classifier import classify_series


def iter_files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def _read(path: Path) -> Dataset:
    """Read a header; files without the 128-byte preamble (old exports) are retried leniently."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if "SOPClassUID" not in ds and "Modality" not in ds:
            raise InvalidDicomError("no DICM prefix and no SOPClassUID/Modality") from None
        return ds


def read_headers(paths: list[str]) -> tuple[dict[str, list[tuple[Path, Dataset]]], list[dict[str, str]]]:
    """Group readable MR headers by series; collect per-file problems."""
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    problems: list[dict[str, str]] = []
    for path in iter_files(paths):
        if not path.exists():
            problems.append({"file": str(path), "reason": "no such file or directory"})
            continue
        try:
            ds = _read(path)
        except InvalidDicomError as exc:
            problems.append({"file": str(path), "reason": f"not DICOM: {exc}"})
            continue
        except Exception as exc:  # truncated/corrupt files raise many types; report, don't crash
            problems.append({"file": str(path), "reason": f"unreadable: {type(exc).__name__}: {exc}"})
            continue
        modality = str(ds.get("Modality", "")).upper()
        if modality != "MR":
            problems.append({"file": str(path), "reason": f"Modality {modality or 'missing'} is not MR"})
            continue
        uid = str(ds.get("SeriesInstanceUID", "")) or f"no-series-uid:{path}"
        series[uid].append((path, ds))
    return series, problems


def classify_paths(paths: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Machine-readable result: one dict per series, plus the skipped files."""
    series, problems = read_headers(paths)
    rows: list[dict[str, Any]] = []
    for uid, members in series.items():
        first = members[0][1]
        try:
            result = classify_series([ds for _, ds in members])
        except ValueError as exc:
            problems.append({"file": str(members[0][0]), "reason": f"series not classified: {exc}"})
            continue
        rows.append(
            {
                "series_instance_uid": uid,
                "series_description": str(first.get("SeriesDescription", "") or first.get("ProtocolName", "")),
                "vendor": str(first.get("Manufacturer", "")),
                "files": len(members),
                **result.to_dict(),
            }
        )
    rows.sort(key=lambda r: (r["vendor"], r["series_description"], r["series_instance_uid"]))
    return rows, problems


def format_table(rows: list[dict[str, Any]]) -> str:
    headers = ("description", "vendor", "n", "class", "subtype", "plane", "conf", "reasons")
    lines = [
        (
            r["series_description"][:32],
            r["vendor"][:18],
            str(r["files"]),
            r["sequence_class"],
            r["subtype"],
            r["plane"],
            f"{r['confidence']:.2f}",
            "; ".join(r["reasons"]),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    widths[-1] = 0  # reasons are long: no padding
    render = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([render(headers), *(render(line) for line in lines)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml classify", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="DICOM files or folders (searched recursively)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows, problems = classify_paths(args.paths)
    if args.json:
        print(json.dumps({"series": rows, "skipped": problems}, indent=2, ensure_ascii=False))
    else:
        print(format_table(rows) if rows else "no MR series found")
        for problem in problems:
            print(f"skipped {problem['file']}: {problem['reason']}", file=sys.stderr)
    return 0 if rows else 1
