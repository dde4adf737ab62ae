"""Fetch a study's images from Orthanc over DICOMweb for drafting.

Why DICOMweb and not Orthanc's REST archive: the worker then talks to any PACS with the same
code, and the pixels never touch the database or a shared disk (they live only in Orthanc).

Instances are asked for in the transfer syntax they were stored in (``transfer-syntax=*``) and
decoded here (``ml.dicom.decode``, pylibjpeg codecs): asking Orthanc for explicit little endian
makes it transcode, and a codec it lacks (JPEG 2000, JPEG-LS, some JPEG lossless) answers
HTTP 500 "Cannot transcode image", which is a property of the data, not an outage.

Faults are sorted into two kinds, because the Celery task treats them differently:
- transient (Orthanc unreachable, timeouts, 502/503/504): ``OrthancUnavailable``; the task retries;
- bad data (an instance that cannot be served, read or has truncated pixels, including an
  HTTP 500 from a server that otherwise answers): that instance is skipped and named in
  ``FetchedStudy.skipped``; the rest of the study is drafted. One bad series never sinks the others.
Series that hold no images (our own SR, presentation states, key-object notes) are left out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import requests
from django.conf import settings
from pydicom.dataset import Dataset

from reviewer.integrations.orthanc import OrthancUnavailable, dicomweb

logger = logging.getLogger(__name__)

NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "SEG", "DOC", "RWV"})
UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
# Accept: multipart/related; type="application/dicom"; transfer-syntax=*  (as stored, no transcoding)
AS_STORED = (("application/dicom", "*"),)


class StudyNotInOrthanc(LookupError):
    """The study is not (or no longer) in Orthanc: bad input, not retried."""


@dataclass
class FetchedStudy:
    study_uid: str
    series: dict[str, list[Dataset]]  # series UID -> instances (with pixel data), unsorted
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"series_uid", "sop_uid", "reason"}]
    seconds: float = 0.0
    bytes: int = 0

    @property
    def n_instances(self) -> int:
        return sum(len(v) for v in self.series.values())


def _transient(exc: Exception) -> bool:
    """Network faults and gateway/overload answers are worth a retry; a 500 from a server that
    answers is about the object asked for (e.g. "Cannot transcode image") and is not."""
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    response = getattr(exc, "response", None)
    return response is not None and response.status_code in (502, 503, 504)


def _http_reason(exc: Exception) -> str:
    """ "HTTP 500: Cannot transcode image" rather than a requests traceback line."""
    response = getattr(exc, "response", None)
    if response is None:
        return f"{type(exc).__name__}: {exc}"
    body = (response.text or "").strip().replace("\n", " ")
    try:
        details = response.json()
        body = str(details.get("Details") or details.get("Message") or body)
    except ValueError:
        pass
    return f"HTTP {response.status_code}: {body[:200]}"


def _value(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def pixel_problem(ds: Dataset) -> str:
    """Why this instance's pixels cannot be used, or "" (cheap: no decoding).

    Uncompressed pixel data shorter than Rows x Columns x frames x samples x bytes is the
    common corruption (a truncated transfer); compressed data is checked when decoded.
    """
    if "PixelData" not in ds:
        return "no pixel data"
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits, samples = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel", 1))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        return f"image pixel module incomplete: {exc}"
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "1.2.840.10008.1.2.1")
    expected = rows * cols * frames * samples * bits // 8
    if syntax in UNCOMPRESSED and len(ds.PixelData) < expected:
        return f"truncated pixel data: {len(ds.PixelData)} bytes, {expected} expected for {rows}x{cols}x{frames}"
    return ""


def _retrieve_series(web, study_uid: str, series_uid: str, sop_uids: list[str]) -> tuple[list[Dataset], list[dict]]:
    """Whole series in one multipart request; per instance only when that fails (to name the bad one)."""
    try:
        return list(web.retrieve_series(study_uid, series_uid, media_types=AS_STORED)), []
    except Exception as exc:
        if _transient(exc):
            raise
        logger.warning("series %s: whole-series retrieve failed (%s); retrying instance by instance", series_uid, exc)
    got, skipped = [], []
    for sop_uid in sop_uids:
        try:
            got.append(web.retrieve_instance(study_uid, series_uid, sop_uid, media_types=AS_STORED))
        except Exception as exc:
            if _transient(exc):
                raise
            skipped.append({"series_uid": series_uid, "sop_uid": sop_uid,
                            "reason": f"cannot be retrieved or parsed: {_http_reason(exc)}"[:300]})  # fmt: skip
    return got, skipped


def fetch_study(study_uid: str) -> FetchedStudy:
    """All image series of a study from Orthanc (DICOMweb), corrupt instances skipped and named.

    Raises OrthancUnavailable (transient: retry) or StudyNotInOrthanc (bad input).
    """
    start = time.perf_counter()
    web = dicomweb()
    try:
        instances = web.search_for_instances(
            study_uid,
            fields=["00080060", "0020000E", "00080018"],  # Modality, SeriesInstanceUID, SOPInstanceUID
        )
    except Exception as exc:
        if _transient(exc):
            raise OrthancUnavailable(f"DICOMweb search of study {study_uid} at {settings.ORTHANC_URL}: {exc}") from exc
        raise StudyNotInOrthanc(f"study {study_uid}: DICOMweb search failed: {exc}") from exc
    if not instances:
        raise StudyNotInOrthanc(f"study {study_uid} has no instances in Orthanc")
    by_series: dict[str, list[str]] = {}
    for item in instances:
        if _value(item, "00080060") in NON_IMAGE_MODALITIES:
            continue
        by_series.setdefault(_value(item, "0020000E"), []).append(_value(item, "00080018"))
    fetched = FetchedStudy(study_uid=study_uid, series={})
    for series_uid, sop_uids in by_series.items():
        try:
            datasets, skipped = _retrieve_series(web, study_uid, series_uid, sop_uids)
        except Exception as exc:
            if _transient(exc):
                raise OrthancUnavailable(f"DICOMweb retrieve of series {series_uid}: {exc}") from exc
            raise
        fetched.skipped += skipped
        good = []
        for ds in datasets:
            problem = pixel_problem(ds)
            if problem:
                fetched.skipped.append({"series_uid": series_uid, "sop_uid": str(ds.get("SOPInstanceUID", "")),
                                        "reason": problem})  # fmt: skip
                continue
            fetched.bytes += len(ds.PixelData)
            good.append(ds)
        if good:
            fetched.series[series_uid] = good
    fetched.seconds = time.perf_counter() - start
    for s in fetched.skipped:
        logger.warning("study %s: skipped instance %s of series %s: %s", study_uid, s["sop_uid"], s["series_uid"],
                       s["reason"])  # fmt: skip
    return fetched
