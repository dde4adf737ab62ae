"""Studies from a manifest -> preprocessed arrays -> torch datasets for SSL and alignment.

Pipeline per study: manifest entry -> series source (a DICOM folder, or DICOMweb when the series
has no path) -> sequence class (from the manifest, else the series classifier) -> preprocessing
(``ml.data.preprocess``) through the slice cache -> ``StudyData``. Two torch datasets sit on top:
``SliceDataset`` (single slices of one sequence class, for self-supervised pretraining) and
``StudyDataset`` (all series of a study + report + labels, for alignment and probes).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset
from torch.utils.data import Dataset as TorchDataset

from ml.conditions import CONDITION_KEYS
from ml.data.cache import SliceCache
from ml.data.dicomweb import DicomWebSource
from ml.data.manifest import SeriesEntry, StudyEntry, read_manifest
from ml.data.preprocess import (
    PreprocessConfig,
    SeriesGeometry,
    apply_window,
    pad_to_square,
    preprocess_series,
    resize,
    robust_window,
    series_geometry,
    sort_slices,
)

log = logging.getLogger(__name__)

SEQUENCE_CLASSES = ("T1", "T2", "other")


@dataclass
class SeriesData:
    series_uid: str
    sequence_class: str  # "T1" | "T2" | "other"
    pixels: np.ndarray  # [S, H, W] float32 in [0, 1], sorted along the slice normal
    plane: str | None = None
    description: str = ""
    sop_uids: list[str] = field(default_factory=list)  # [S] SOP Instance UID of each sorted slice
    geometry: SeriesGeometry | None = None  # preprocessed box -> original pixels / patient mm
    instance_numbers: list[int] = field(default_factory=list)  # [S] InstanceNumber of each sorted slice
    # [S] 1-based frame of each sorted slice in its multi-frame object (Enhanced MR); None for single-frame
    frame_numbers: list[int | None] = field(default_factory=list)


@dataclass
class StudyData:
    study_uid: str
    patient_key: str
    series: list[SeriesData]
    report: str = ""
    labels: np.ndarray = field(default_factory=lambda: np.full(len(CONDITION_KEYS), -1, np.int64))
    vendor: str | None = None
    region: str | None = None


def labels_vector(labels: dict[str, int]) -> np.ndarray:
    """Condition dict -> [17] int64 in canonical order; absent keys are -1 (excluded)."""
    return np.array([labels.get(k, -1) for k in CONDITION_KEYS], dtype=np.int64)


def _default_classifier(datasets: Sequence[Dataset]) -> str:
    try:
        from ml.dicom.series_classifier import classify_series
    except ImportError:
        log.warning("ml.dicom.series_classifier not available: unlabelled series treated as 'other'")
        return "other"
    return classify_series(datasets).sequence_class


class StudyLoader:
    """Loads manifest studies into ``StudyData`` (with caching); picklable for DataLoader workers."""

    def __init__(
        self,
        base_dir: str | Path,
        preprocess: PreprocessConfig | None = None,
        cache: SliceCache | None = None,
        dicomweb: DicomWebSource | None = None,
        classifier: Callable[[Sequence[Dataset]], str] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.preprocess = preprocess or PreprocessConfig()
        self.cache = cache
        self.dicomweb = dicomweb
        self.classifier = classifier or _default_classifier

    # -- series sources -------------------------------------------------------------------------
    def _files(self, series: SeriesEntry) -> list[Path]:
        folder = self.base_dir / series.path  # type: ignore[operator]
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"no DICOM files in {folder}")
        return files

    def read_series(self, study: StudyEntry, series: SeriesEntry, pixels: bool = True) -> list[Dataset]:
        if series.path is None:
            if self.dicomweb is None:
                raise ValueError(f"series {series.series_uid} has no path and no DICOMweb source is set")
            return self.dicomweb.load_series(study.study_uid, series.series_uid)
        return [pydicom.dcmread(f, stop_before_pixels=not pixels) for f in self._files(series)]

    def slice_count(self, study: StudyEntry, series: SeriesEntry) -> int:
        """Number of slices without decoding pixels (one single-frame instance per slice)."""
        if series.path is None:
            if self.dicomweb is None:
                raise ValueError(f"series {series.series_uid} has no path and no DICOMweb source is set")
            return len(self.dicomweb.sop_uids(study.study_uid, series.series_uid))
        return len(self._files(series))

    def sequence_class(self, study: StudyEntry, series: SeriesEntry) -> str:
        if series.sequence_class is not None:
            return series.sequence_class
        return self.classifier(self.read_series(study, series, pixels=False))

    def _folder_key(self, series: SeriesEntry) -> str:
        """Identity of a series folder's content: file names, sizes and mtimes (no DICOM parsing)."""
        parts = [series.series_uid]
        for f in self._files(series):
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
        return hashlib.sha1("|".join(parts).encode()).hexdigest()

    # -- pixels ----------------------------------------------------------------------------------
    def series_pixels(self, study: StudyEntry, series: SeriesEntry) -> np.ndarray:
        """[S, H, W] float32 preprocessed slices, through the cache when one is set."""
        key = self.preprocess.key()
        sop_uids: list[str] | None = None
        if self.cache is not None and series.path is not None:
            folder_key = self._folder_key(series)
            sop_uids = self.cache.get_index(folder_key)
            if sop_uids is None:
                headers = sort_slices(self.read_series(study, series, pixels=False))
                sop_uids = [str(h.SOPInstanceUID) for h in headers]
                self.cache.put_index(folder_key, sop_uids)
            hit = self.cache.get_series(sop_uids, key)
            if hit is not None:
                return hit
        datasets = self.read_series(study, series, pixels=True)
        arr = preprocess_series(datasets, self.preprocess)
        if self.cache is not None:
            sop_uids = [str(d.SOPInstanceUID) for d in sort_slices(datasets)]
            self.cache.put_series(sop_uids, key, arr)
        return arr

    def series_headers(self, study: StudyEntry, series: SeriesEntry) -> list[Dataset]:
        """Headers (no pixels) of a series, sorted along the slice normal like the pixels."""
        return sort_slices(self.read_series(study, series, pixels=False))

    def load(self, study: StudyEntry, classes: Sequence[str] = SEQUENCE_CLASSES, geometry: bool = False) -> StudyData:
        """Load a study's series of ``classes``. ``geometry=True`` also reads the headers for each
        series' SOP UIDs and ``SeriesGeometry`` (what localisation needs; training stages skip it)."""
        series = []
        for s in study.series:
            cls = self.sequence_class(study, s)
            if cls not in classes:
                continue
            data = SeriesData(s.series_uid, cls, self.series_pixels(study, s), s.plane, s.description)
            if geometry:
                headers = self.series_headers(study, s)
                data.sop_uids = [str(h.SOPInstanceUID) for h in headers]
                data.geometry = series_geometry(headers, self.preprocess.size)
                data.instance_numbers = [int(getattr(h, "InstanceNumber", 0) or 0) for h in headers]
            series.append(data)
        return StudyData(
            study_uid=study.study_uid,
            patient_key=study.patient_key,
            series=series,
            report=study.report or "",
            labels=labels_vector(study.labels),
            vendor=study.vendor,
            region=study.region,
        )


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


def load_manifest(path: str | Path) -> tuple[list[StudyEntry], Path]:
    """(studies, base_dir) of a manifest file; paths inside are relative to its folder."""
    path = Path(path)
    return list(read_manifest(path)), path.parent


def subsample_indices(n: int, k: int | None) -> np.ndarray:
    """Up to k evenly spaced indices of n slices (the centre of the stack is always covered)."""
    if k is None or n <= k:
        return np.arange(n)
    return np.linspace(0, n - 1, k).round().astype(int)


class SliceDataset(TorchDataset):
    """Single slices of one sequence class (e.g. every T2 slice of every study), for SSL.

    Indexing loads the whole series once per worker (small LRU) and returns one slice through
    ``transform`` (e.g. ``MultiCrop``); without transform, a [1, H, W] tensor.
    """

    def __init__(
        self,
        loader: StudyLoader,
        studies: Sequence[StudyEntry],
        sequence_classes: Sequence[str],
        transform: Callable | None = None,
        lru_series: int = 16,
    ) -> None:
        self.loader = loader
        self.transform = transform
        self.lru_series = lru_series
        self._lru: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.index: list[tuple[int, int, int]] = []  # (study, series, slice)
        self.studies = list(studies)
        for si, st in enumerate(self.studies):
            for ri, se in enumerate(st.series):
                if loader.sequence_class(st, se) in sequence_classes:
                    self.index += [(si, ri, k) for k in range(loader.slice_count(st, se))]
        if not self.index:
            raise ValueError(f"no slices of class {list(sequence_classes)} in {len(self.studies)} studies")

    def _pixels(self, si: int, ri: int) -> np.ndarray:
        key = (si, ri)
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        arr = self.loader.series_pixels(self.studies[si], self.studies[si].series[ri])
        self._lru[key] = arr
        if len(self._lru) > self.lru_series:
            self._lru.popitem(last=False)
        return arr

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        si, ri, k = self.index[i]
        x = torch.from_numpy(np.ascontiguousarray(self._pixels(si, ri)[k]))[None]  # [1, H, W]
        return self.transform(x) if self.transform is not None else x


class StudyDataset(TorchDataset):
    """Whole studies (all series, up to ``max_slices`` per series) + report + labels."""

    def __init__(
        self,
        loader: StudyLoader,
        studies: Sequence[StudyEntry],
        max_slices: int | None = 16,
        classes: Sequence[str] = SEQUENCE_CLASSES,
    ) -> None:
        self.loader = loader
        self.studies = list(studies)
        self.max_slices = max_slices
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self.studies)

    def __getitem__(self, i: int) -> StudyData:
        data = self.loader.load(self.studies[i], self.classes)
        for s in data.series:
            s.pixels = s.pixels[subsample_indices(len(s.pixels), self.max_slices)]
        return data


def collate_studies(batch: list[StudyData]) -> list[StudyData]:
    """Studies have variable numbers of series and slices: keep them as a list."""
    return batch
