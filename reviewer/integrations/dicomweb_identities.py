"""What the DICOMweb proxy hides per user: patient identities (admin-only, README's role table)
and other readers' box SRs on a blinded study.

For every role but admin the DICOM JSON of QIDO and metadata answers is rewritten without the
identifying attributes (``IDENTITY_TAGS``, every private attribute), and the rows of SRs the
reader is blinded to are dropped (``selectors.reader_srs_hidden_from``, the same policy as the
report text).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from reviewer.integrations.dicomweb_access import StudySRs
from reviewer.selectors import reader_srs_hidden_from

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
# ``httpx.Response.extensions`` key of an answer's identity-free JSON made ahead of time
# (``dicomweb_prefetch``), served as it is to a reader blinded to nothing in it
IDENTITY_FREE = "spinereview_identity_free"

# Basic-profile (DICOM PS3.15 Annex E) attributes that identify the patient, the visit or the
# people involved. Kept on purpose: UIDs (the viewer needs them), study/series dates and
# descriptions (the worklist shows them to every role), and the patient characteristics a reader
# needs (sex, age, size, weight). Group 0010 (patient) is removed whole except those.
_PATIENT_CHARACTERISTICS = frozenset({0x00100040, 0x00101010, 0x00101020, 0x00101030})
IDENTITY_TAGS = frozenset(
    {
        0x00080050,  # AccessionNumber
        0x00080051,  # IssuerOfAccessionNumberSequence
        0x00080080,  # InstitutionName
        0x00080081,  # InstitutionAddress
        0x00080082,  # InstitutionCodeSequence
        0x00080090,  # ReferringPhysicianName
        0x00080092,  # ReferringPhysicianAddress
        0x00080094,  # ReferringPhysicianTelephoneNumbers
        0x00080096,  # ReferringPhysicianIdentificationSequence
        0x00081010,  # StationName
        0x00081040,  # InstitutionalDepartmentName
        0x00081048,  # PhysiciansOfRecord
        0x00081049,  # PhysiciansOfRecordIdentificationSequence
        0x00081050,  # PerformingPhysicianName
        0x00081052,  # PerformingPhysicianIdentificationSequence
        0x00081060,  # NameOfPhysiciansReadingStudy
        0x00081062,  # PhysiciansReadingStudyIdentificationSequence
        0x00081070,  # OperatorsName
        0x00081072,  # OperatorIdentificationSequence
        0x00081080,  # AdmittingDiagnosesDescription
        0x00081120,  # ReferencedPatientSequence
        0x00181000,  # DeviceSerialNumber
        0x00200010,  # StudyID
        0x00321032,  # RequestingPhysician
        0x00321033,  # RequestingService
        0x00324000,  # StudyComments
        0x00380010,  # AdmissionID
        0x00380300,  # CurrentPatientLocation
        0x00380400,  # PatientInstitutionResidence
        0x00400006,  # ScheduledPerformingPhysicianName
        0x00400009,  # ScheduledProcedureStepID
        0x00400241,  # PerformedStationAETitle
        0x00400242,  # PerformedStationName
        0x00400243,  # PerformedLocation
        0x00400253,  # PerformedProcedureStepID
        0x00400275,  # RequestAttributesSequence
        0x00401001,  # RequestedProcedureID
        0x00402016,  # PlacerOrderNumberImagingServiceRequest
        0x00402017,  # FillerOrderNumberImagingServiceRequest
        0x0040A075,  # VerifyingObserverName
        0x0040A123,  # PersonName
        0x00700084,  # ContentCreatorName
    }
)


def is_identifying(tag: int) -> bool:
    """Whether a non-admin may not see this attribute: identity attributes and private ones
    (private attributes are vendor-defined and often carry names or ids)."""
    group = tag >> 16
    if group % 2 == 1:
        return True
    if group == 0x0010:
        return tag not in _PATIENT_CHARACTERISTICS
    return tag in IDENTITY_TAGS


def strip_identities(node: object) -> object:
    """DICOM JSON (a dataset or a list of datasets) without identifying attributes, recursing
    into sequence items."""
    if isinstance(node, list):
        return [strip_identities(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, element in node.items():
        try:
            tag = int(key, 16) if len(key) == 8 else None
        except ValueError:
            tag = None
        if tag is not None and is_identifying(tag):
            continue
        if tag is not None and isinstance(element, dict) and element.get("vr") == "SQ" and "Value" in element:
            element = {**element, "Value": [strip_identities(item) for item in element["Value"]]}
        out[key] = element
    return out


def identity_free_json(data: object) -> bytes:
    """``data`` (parsed DICOM JSON) without identities, as the proxy sends it."""
    return json.dumps(strip_identities(data), separators=(",", ":")).encode()


@dataclass(frozen=True)
class HiddenSRs:
    """Other readers' box SRs a blinded reader may not see (``selectors.reader_srs_hidden_from``)."""

    series: frozenset[str] = frozenset()
    sops: frozenset[str] = frozenset()

    def covers(self, dataset: object) -> bool:
        """Whether a DICOM JSON dataset (a QIDO row or a metadata item) is one of them."""
        if not isinstance(dataset, dict):
            return False

        def first(tag: str) -> object:
            value = dataset.get(tag, {}).get("Value") if isinstance(dataset.get(tag), dict) else None
            return value[0] if value else None

        return first("0020000E") in self.series or first("00080018") in self.sops

    @property
    def none(self) -> bool:
        return not self.series and not self.sops

    def names_any(self, segments: tuple[str, ...]) -> bool:
        """Whether a request path names one of them (a series or an instance segment)."""
        return any(segment in self.series or segment in self.sops for segment in segments)


def hidden_srs(
    user: Any, study_uid: str | None, series_uid: str | None, instance_uid: str | None, study_srs: StudySRs
) -> HiddenSRs:
    """The SRs ``user`` may not see on the path's study (every study for a path above one).

    Every hidden SR is one of the app's SRs of the path's study (``study_srs``, from
    ``dicomweb_access.prime``), so a path into an image series (no SR in it, nor the instance
    named) has nothing to hide: the blinding query is skipped on the path every frame and
    series metadata request takes."""
    if study_uid and series_uid and not study_srs.touched_by(series_uid, instance_uid):
        return HiddenSRs()
    series, sops = reader_srs_hidden_from(user, study_uid)
    return HiddenSRs(series, sops)


def filtered_json(response: httpx.Response, hidden: HiddenSRs = HiddenSRs()) -> HttpResponse:
    """Orthanc's DICOM JSON without identities, and without the rows of SRs the reader is
    blinded to. Read whole (QIDO and metadata answers are small next to pixel data),
    rewritten, and streamed back out in chunks. An answer whose identity-free form was made
    ahead of time (``IDENTITY_FREE``) is sent as that when nothing in it is hidden."""
    try:
        raw = response.read()
    finally:
        response.close()
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type.lower():
        if response.is_success and raw:
            logger.warning("DICOMweb proxy: expected DICOM JSON from Orthanc, got %s", content_type)
            return JsonResponse({"detail": "unexpected answer from the image archive"}, status=502)
        return HttpResponse(raw, status=response.status_code, content_type=content_type or None)
    prepared = response.extensions.get(IDENTITY_FREE)
    if response.is_success and isinstance(prepared, bytes) and hidden.none:
        return _json_out(prepared, response.status_code)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return JsonResponse({"detail": "unexpected answer from the image archive"}, status=502)
    if data is None:
        return HttpResponse(b"", status=response.status_code, content_type=content_type)
    if not response.is_success:
        return _json_out(json.dumps(data, separators=(",", ":")).encode(), response.status_code)
    if isinstance(data, list):
        data = [row for row in data if not hidden.covers(row)]
    return _json_out(identity_free_json(data), response.status_code)


def _json_out(text: bytes, status: int) -> StreamingHttpResponse:
    """DICOM JSON streamed out in 64 KiB chunks, its length known (keep-alive)."""

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(text), CHUNK):
            yield text[start : start + CHUNK]

    out = StreamingHttpResponse(chunks(), status=status, content_type="application/dicom+json")
    out["Content-Length"] = str(len(text))
    return out
