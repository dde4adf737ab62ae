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
