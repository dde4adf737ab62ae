"""The app's DICOM adapter: already-fetched pydicom datasets -> a preprocessed ``StudyData``.

The drafting service fetches a study over DICOMweb and hands the datasets here (through
``reviewer.ml_bridge``); unreadable instances and unusable series are skipped with a reason
rather than failing the study, and ``NoUsableSeries`` is raised only when nothing is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset

from ml.data.preprocess import (
    PreprocessConfig,
    apply_window,
    pad_to_square,
    resize,
    robust_window,
    series_geometry,
    sort_slices,
)
from ml.data.types import SEQUENCE_CLASSES, SeriesData, StudyData


class NoUsableSeries(ValueError):
    """A study none of whose series could be read and preprocessed; ``skipped`` says why."""

    def __init__(self, study_uid: str, skipped: list[dict[str, str]]) -> None:
        reasons = "; ".join(f"{d['series_uid'] or '?'}/{d['sop_uid'] or '*'}: {d['reason']}" for d in skipped[:10])
        super().__init__(f"study {study_uid}: no usable series ({reasons or 'no series given'})")
        self.study_uid = study_uid
        self.skipped = skipped


def _skip(series_uid: str, sop_uid: str, reason: str) -> dict[str, str]:
    return {"series_uid": series_uid, "sop_uid": sop_uid, "reason": reason}


def _readable(ds: Dataset) -> list[tuple[Dataset, np.ndarray, int | None]]:
    """(per-slice header, modality pixels [H, W], frame number) of every 2-D slice of an image
    object, single- or multi-frame (``ml.dicom.decode.split_frames``), or a ``DicomReadError``
    saying why not (no pixels, codec failure, Siemens mosaic)."""
    from ml.dicom.decode import split_frames

    return [(f.header, f.pixels, f.frame_number) for f in split_frames(ds)]


def _first_frame_header(ds: Dataset) -> Dataset:
    """The header of an object's first slice (Enhanced MR keeps its orientation per frame)."""
    from ml.dicom.decode import frame_headers

    return frame_headers(ds)[0][0]


def _plane_of(ds: Dataset) -> str | None:
    """Plane from ImageOrientationPatient (None when missing or oblique-unusable)."""
    from ml.dicom.plane import plane_from_orientation

    iop = getattr(ds, "ImageOrientationPatient", None)
    found = plane_from_orientation(tuple(float(v) for v in iop)) if iop is not None else None
    return found[0] if found else None


def series_from_datasets(
    series_uid: str,
    datasets: Sequence[Dataset],
    preprocess: PreprocessConfig,
    sequence_class: str,
    plane: str | None = None,
) -> tuple[SeriesData | None, list[dict[str, str]]]:
    """Preprocess one series from pydicom datasets (any order), skipping unreadable instances.

    Instances whose Rows x Columns differ from the series' most common shape are skipped too (a
    mixed export or a localizer slipped in), so that one geometry holds for every kept slice.
    Returns (None, reasons) when no instance is usable.
    """
    skipped: list[dict[str, str]] = []
    good: list[tuple[Dataset, np.ndarray]] = []
    frame_of: dict[int, int | None] = {}
    for ds in datasets:
        sop = str(getattr(ds, "SOPInstanceUID", ""))
        try:
            for header, arr, number in _readable(ds):
                good.append((header, arr))
                frame_of[id(header)] = number
        except Exception as exc:  # DicomReadError and any decoder error: record, keep going
            skipped.append(_skip(series_uid, sop, f"unreadable instance: {exc}"))
    if not good:
        skipped.append(_skip(series_uid, "", "no readable image instance in the series"))
        return None, skipped
    shapes = [a.shape for _, a in good]
    common = max(set(shapes), key=shapes.count)
    for ds, a in good:
        if a.shape != common:
            skipped.append(
                _skip(series_uid, str(getattr(ds, "SOPInstanceUID", "")), f"size {a.shape} differs from {common}")
            )
    good = [(ds, a) for ds, a in good if a.shape == common]
    order = {id(ds): a for ds, a in good}
    ordered = sort_slices([ds for ds, _ in good])
    raw = [order[id(ds)] for ds in ordered]
    lo, hi = robust_window(raw, preprocess.p_low, preprocess.p_high, preprocess.max_sample)
    pixels = np.stack([resize(pad_to_square(apply_window(a, lo, hi)), preprocess.size) for a in raw])
    first = ordered[0]
    return (
        SeriesData(
            series_uid=series_uid,
            sequence_class=sequence_class,
            pixels=pixels,
            plane=plane,
            description=str(getattr(first, "SeriesDescription", "") or ""),
            sop_uids=[str(getattr(ds, "SOPInstanceUID", "")) for ds in ordered],
            geometry=series_geometry(ordered, preprocess.size),
            instance_numbers=[int(getattr(ds, "InstanceNumber", 0) or 0) for ds in ordered],
            frame_numbers=[frame_of[id(ds)] for ds in ordered],
        ),
        skipped,
    )


def study_from_datasets(
    study_uid: str,
    series: dict[str, list[Dataset]],
    preprocess: PreprocessConfig,
    *,
    sequence_classes: dict[str, str] | None = None,
    classes: Sequence[str] = SEQUENCE_CLASSES,
    classifier: Callable[[Sequence[Dataset]], object] | None = None,
    patient_key: str | None = None,
    report: str = "",
) -> tuple[StudyData, list[dict[str, str]]]:
    """Build a ``StudyData`` from already-fetched datasets (e.g. a DICOMweb retrieve), keyed by
    Series Instance UID. This is what the drafting service calls.

    The sequence class comes from ``sequence_classes[series_uid]`` when given, else from the
    series classifier (``ml.dicom.series_classifier.classify_series``, which also gives the
    plane). Unreadable instances and unusable series (not MR, no readable image, a class outside
    ``classes``, the classifier failing) are skipped and reported as
    ``{"series_uid", "sop_uid", "reason"}`` dicts (``sop_uid`` "" for a whole series).
    Raises ``NoUsableSeries`` (a ``ValueError``) when nothing is left.
    """
    skipped: list[dict[str, str]] = []
    kept: list[SeriesData] = []
    known = sequence_classes or {}
    first_ds: Dataset | None = None
    for series_uid, datasets in series.items():
        if not datasets:
            skipped.append(_skip(series_uid, "", "series has no instances"))
            continue
        modality = str(getattr(datasets[0], "Modality", "MR") or "MR").upper()
        if modality != "MR":
            skipped.append(_skip(series_uid, "", f"modality {modality} is not MR"))
            continue
        plane: str | None = None
        cls = known.get(series_uid)
        if cls is None:
            try:
                if classifier is not None:
                    answer = classifier(datasets)
                else:
                    from ml.dicom.series_classifier import classify_series

                    answer = classify_series(datasets)
            except Exception as exc:
                skipped.append(_skip(series_uid, "", f"series classifier failed: {exc}"))
                continue
            cls = answer if isinstance(answer, str) else answer.sequence_class  # type: ignore[attr-defined]
            plane = None if isinstance(answer, str) else getattr(answer, "plane", None)
            if plane in ("unknown", ""):
                plane = None
        if plane is None:
            plane = _plane_of(_first_frame_header(datasets[0]))
        if cls not in classes:
            skipped.append(_skip(series_uid, "", f"sequence class {cls!r} not used (wanted {list(classes)})"))
            continue
        data, why = series_from_datasets(series_uid, datasets, preprocess, cls, plane)
        skipped += why
        if data is not None:
            kept.append(data)
            first_ds = first_ds or datasets[0]
    if not kept:
        raise NoUsableSeries(study_uid, skipped)
    return (
        StudyData(
            study_uid=study_uid,
            patient_key=patient_key or str(getattr(first_ds, "PatientID", "") or study_uid),
            series=kept,
            report=report,
            vendor=str(getattr(first_ds, "Manufacturer", "") or "") or None,
            region=_region_of(first_ds),
        ),
        skipped,
    )


_BODY_PARTS = {"LSPINE": "lumbar", "CSPINE": "cervical", "TSPINE": "thoracic", "SSPINE": "sacral", "SACRUM": "sacral"}


def _region_of(ds: Dataset | None) -> str | None:
    """Spine region from BodyPartExamined (LSPINE, CSPINE, TSPINE, ...), None when unknown."""
    part = str(getattr(ds, "BodyPartExamined", "") or "").upper().replace(" ", "")
    return _BODY_PARTS.get(part)
