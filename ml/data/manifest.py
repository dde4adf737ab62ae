"""The training manifest: the one format in which studies flow into ``ml/``.

A manifest is a JSON Lines file (``manifest.jsonl``), one study per line. The synthetic
generator writes it, the review app exports corrected studies in it, and every trainer and
evaluator reads it. Paths are relative to the manifest's folder, so a dataset folder can be
moved or archived whole. A series without ``path`` is fetched from Orthanc over DICOMweb by
its UIDs.

Example line (wrapped)::

    {"study_uid": "1.2.826.0.1.3680043.10.1234.1", "patient_key": "SYN-0001",
     "root": "studies/SYN-0001", "vendor": "GE", "cohort": "general", "region": "lumbar",
     "series": [{"series_uid": "1.2...", "path": "studies/SYN-0001/sag_t2",
                 "description": "SAG T2 FSE", "sequence_class": "T2", "plane": "sagittal"}],
     "report": "CLINICAL HISTORY: ...", "labels": {"canal_stenosis": 1, ...},
     "ground_truth": "studies/SYN-0001/ground_truth.json"}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ml.conditions import CONDITION_KEYS


@dataclass
class SeriesEntry:
    series_uid: str
    path: str | None = None  # folder of .dcm files, relative to the manifest; None = DICOMweb
    description: str = ""
    sequence_class: str | None = None  # "T1" | "T2" | "other"; None = classify on load
    plane: str | None = None  # "sagittal" | "axial" | "coronal"


@dataclass
class StudyEntry:
    study_uid: str
    patient_key: str  # the unit of every train/test split: never split a patient
    series: list[SeriesEntry]
    root: str | None = None
    vendor: str | None = None
    cohort: str | None = None
    region: str | None = None
    report: str | None = None
    labels: dict[str, int] = field(default_factory=dict)  # condition key -> -1/0/1
    ground_truth: str | None = None

    def __post_init__(self) -> None:
        self.series = [s if isinstance(s, SeriesEntry) else SeriesEntry(**s) for s in self.series]
        unknown = set(self.labels) - set(CONDITION_KEYS)
        if unknown:
            raise ValueError(f"study {self.study_uid}: unknown condition keys {sorted(unknown)}")
        bad = {k: v for k, v in self.labels.items() if v not in (-1, 0, 1)}
        if bad:
            raise ValueError(f"study {self.study_uid}: labels must be -1, 0 or 1, got {bad}")


def read_manifest(path: str | Path) -> Iterator[StudyEntry]:
    """Yield the studies of a manifest, naming the line of any malformed entry."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield StudyEntry(**json.loads(line))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{lineno}: bad manifest entry: {exc}") from exc


def write_manifest(path: str | Path, studies: Iterable[StudyEntry]) -> int:
    """Write studies as JSON Lines; returns the number written."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for study in studies:
            fh.write(json.dumps(asdict(study), sort_keys=True) + "\n")
            n += 1
    return n
