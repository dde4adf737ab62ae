"""The one module through which the review app calls ``ml/`` (dependency direction:
webapp → reviewer → ml). Keeping it in one place makes the seam easy to see and to fake in
unit tests that also have a real-part counterpart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pydicom


@dataclass(frozen=True)
class SeriesClassification:
    sequence_class: str
    subtype: str
    plane: str
    confidence: float
    reasons: list[str]


def classify_series_metadata(instances: Sequence[dict]) -> SeriesClassification:
    """Classify a series from its DICOMweb JSON metadata (one dict per instance).

    Bulk data (pixels) is never fetched: the classifier only needs header tags.
    """
    from ml.dicom.series_classifier import classify_series

    datasets = [pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"") for item in instances]
    result = classify_series(datasets)
    return SeriesClassification(
        sequence_class=result.sequence_class,
        subtype=result.subtype,
        plane=result.plane,
        confidence=float(result.confidence),
        reasons=list(result.reasons),
    )


@dataclass(frozen=True)
class ReportLabels:
    """Ternary labels of the 17 conditions extracted from one report text."""

    labels: dict[str, int]  # condition key -> -1 | 0 | 1
    evidence: dict[str, str]  # condition key -> the sentence as it appears in the text
    confidence: dict[str, float]
    extractor: str  # name@version of the extractor, stored with every extraction


def extract_report_labels(text: str) -> ReportLabels:
    """Run the label-extraction agent (rules backend: offline, deterministic) on a report."""
    from ml.agents.labels import extract_labels

    result = extract_labels(text, backend="rules")
    return ReportLabels(
        labels={k: int(v) for k, v in result.labels.items()},
        evidence={k: str(v) for k, v in result.evidence.items()},
        confidence={k: float(v) for k, v in result.confidence.items()},
        extractor=str(result.extractor),
    )
