"""The one module through which the review app calls ``ml/`` (dependency direction:
webapp → reviewer → ml). Keeping it in one place makes the seam easy to see and to fake in
unit tests that also have a real-part counterpart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

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


# --- drafting: the pipeline of SpineFM + agents (engineer C) -------------------------------
# ``ml`` imports torch; these functions import it lazily so that the web process and the
# Orthanc watcher, which import this module, never pay for it.

_PIPELINES: dict[str, object] = {}


class NoUsableSeries(ValueError):
    """No series of the study could be used (bad input: the job fails, it is not retried)."""

    def __init__(self, message: str, skipped: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.skipped = skipped


def training_manifest() -> ModuleType:
    """``ml.data.manifest`` (``StudyEntry``, ``SeriesEntry``, ``write_manifest``): the format that
    ``python -m ml train`` reads, and so the format of the app's training export."""
    from ml.data import manifest

    return manifest


def ensure_tiny_pipeline(cache_dir: str | None = None, preset: str = "tiny") -> str:
    """Folder of the cached bootstrap pipeline of ``preset`` ("tiny": the tests', "demo": the
    demo's), trained once (file-locked) when missing."""
    from ml.agents.bootstrap import PRESETS
    from ml.agents.bootstrap import ensure_tiny_pipeline as ensure

    return str(ensure(cache_dir=Path(cache_dir) if cache_dir else None, params=PRESETS[preset]))


def load_pipeline(folder: str) -> object:
    """The pipeline in ``folder``, loaded once per process (the worker keeps it warm)."""
    key = str(folder)
    if key not in _PIPELINES:
        from ml.agents.pipeline import Pipeline

        _PIPELINES[key] = Pipeline.load(key)
    return _PIPELINES[key]


def loaded_pipelines() -> list[str]:
    return list(_PIPELINES)


def check_scope(series: dict[str, list]) -> dict:
    """Whether a study (fetched datasets by series UID) is a spine MRI the pipeline can draft:
    ``{"verdict": "in_scope" | "out_of_scope" | "not_applicable", "reason", "region", "sequences",
    "missing", "series"}`` (``ml.dicom.scope``; headers only, no torch)."""
    from ml.dicom.scope import check_scope as check

    return check(series).to_dict()


def prepare_study(
    pipeline: object, study_uid: str, series: dict[str, list], sequence_classes: dict[str, str]
) -> tuple[object, list[dict[str, str]]]:
    """Fetched pydicom datasets -> the pipeline's ``StudyData`` and the skipped instances/series."""
    from ml.data import dicom_adapter as mld
    from ml.data.preprocess import PreprocessConfig

    preprocess = getattr(pipeline, "preprocess", None) or PreprocessConfig()
    try:
        return mld.study_from_datasets(study_uid, series, preprocess, sequence_classes=sequence_classes)
    except mld.NoUsableSeries as exc:
        raise NoUsableSeries(str(exc), list(exc.skipped)) from exc


def study_facts(series: dict[str, list], archive_studies: list[dict[str, str]] | None) -> object:
    """What the study's DICOM and the archive say for the draft's CLINICAL HISTORY, TECHNIQUE and
    COMPARISON (``ml.agents.report.facts.StudyFacts``): the request attributes and patient age and
    sex of the fetched instances, each series classified from its headers, and of
    ``archive_studies`` (the patient's studies found in Orthanc: {"study_uid", "date", "time",
    "description"}) those acquired before this one. None = the archive could not be searched."""
    from ml.agents.report.facts import PriorStudy, study_facts_from_datasets

    candidates = None if archive_studies is None else [PriorStudy(**s) for s in archive_studies]
    return study_facts_from_datasets(series, candidates)


def analyze_studies(
    pipeline: object, studies: list[object], skipped: list[list[dict[str, str]]], facts: list[object] | None = None
) -> list[dict]:
    """Run the agents on a batch of studies (one SpineFM pass over all their slices); one
    ``StudyAnalysis`` dict (JSON-ready, ``skipped`` included) per study, same order. ``facts``
    (from ``study_facts``, one per study) ground the drafts' factual sections."""
    return [a.to_dict() for a in pipeline.analyze_many(studies, skipped, facts)]  # type: ignore[attr-defined]
