"""Manifest studies -> preprocessed ``StudyData``, through the slice cache.

Pipeline per study: manifest entry -> series source (a DICOM folder, or DICOMweb when the series
has no path) -> sequence class (from the manifest, else the series classifier) -> preprocessing
(``ml.data.preprocess``) through the slice cache -> ``StudyData``. Trainers, evaluators and the
torch datasets (``ml.data.datasets``) read studies through ``StudyLoader``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ml.data.cache import SliceCache
from ml.data.dicomweb import DicomWebSource
from ml.data.manifest import SeriesEntry, StudyEntry, read_manifest
from ml.data.preprocess import PreprocessConfig, preprocess_series, series_geometry, sort_slices
from ml.data.types import SEQUENCE_CLASSES, SeriesData, StudyData, labels_vector

log = logging.getLogger(__name__)


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


def load_manifest(path: str | Path) -> tuple[list[StudyEntry], Path]:
    """(studies, base_dir) of a manifest file; paths inside are relative to its folder."""
    path = Path(path)
    return list(read_manifest(path)), path.parent
