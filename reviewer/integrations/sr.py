"""DICOM Comprehensive SR (TID 1500 measurement report) for the AI's and the readers' boxes.

Why this exact shape: OHIF 3.13 shows and lets a radiologist edit a rectangle from an SR only
when each box is a TID 1501 measurement group whose *Area* measurement carries the box as a
5-point closed POLYLINE (``referenced_coordinates``, an SCOORD on the source image) and whose
tracking identifier is ``Cornerstone3DTools@^0.1.0:RectangleROI`` (docs/viewer.md). OHIF has no
Key Object Selection handler, so key slices are written as measurement groups that reference
their images (``source_images``) and are also served by our API. The AI's SR is also an IHE AI
Results document naming no model, beside a Key Object Selection of its key slices (``air``).

Nothing is ever replaced: every call writes a new SR instance (new series for the AI draft of a
pipeline version, new SOP instance for each reader correction) and a ``StructuredReport`` row
whose ``parent`` is the SR that was edited. Corrections can therefore feed training later.

Coordinates are the ones of ``ml.agents.analysis.BoxResult``: ``xyxy`` = (x0, y0, x1, y1) in
pixels of the original image, x = column, y = row, origin at the top-left corner of the
top-left pixel (the DICOM SCOORD convention).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import requests
from django.conf import settings
from django.db import transaction
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ml.conditions import BY_KEY, CONDITIONS
from ml.dicom.tags import checked_frame, copy_patient_identity, pixel_spacing, with_type2_patient_study
from reviewer.integrations import air
from reviewer.integrations.orthanc import OrthancUnavailable, dicomweb
from reviewer.models import Draft, StructuredReport, Study
from reviewer.services.audit import audit

logger = logging.getLogger(__name__)

RECTANGLE_TRACKING_ID = "Cornerstone3DTools@^0.1.0:RectangleROI"
CODING_SCHEME = "99SPINEREVIEW"  # private scheme: our 17 condition keys are its code values
MANUFACTURER = air.MANUFACTURER
AI_SERIES_NUMBER = 9000  # far from scanner series numbers, so the SR sorts last in viewers
READER_SERIES_NUMBER = 9100
_KEY_SLICE_GROUP = "Key slice"  # prefix of key-slice tracking identifiers


class SRInputError(ValueError):
    """Boxes that cannot be written (unknown image, coordinates outside it, unknown condition)."""


@dataclass(frozen=True)
class SRBox:
    """One rectangle on one image. ``condition`` is a key of ml.conditions; ``label`` free text."""

    condition: str
    series_uid: str
    sop_uid: str
    xyxy: tuple[float, float, float, float]
    label: str = ""
    frame: int | None = None  # 1-based frame of a multi-frame image (ReferencedFrameNumber)

    def as_json(self) -> dict:
        return {"condition": self.condition, "series_uid": self.series_uid, "sop_uid": self.sop_uid,
                "xyxy": [round(float(v), 3) for v in self.xyxy], "label": self.label, "frame": self.frame}  # fmt: skip


@dataclass(frozen=True)
class SRKeySlice:
    condition: str
    series_uid: str
    sop_uid: str
    frame: int | None = None  # 1-based frame of a multi-frame image (ReferencedFrameNumber)


# Code values are short (SH, 16 characters: longer keys would land in LongCodeValue, which
# viewers ignore): "SR01".."SR17" in the canonical, never-reordered order of ml.conditions.
CONDITION_CODES: dict[str, str] = {c.key: f"SR{i + 1:02d}" for i, c in enumerate(CONDITIONS)}
CODE_CONDITIONS: dict[str, str] = {v: k for k, v in CONDITION_CODES.items()}


def condition_code(key: str) -> hd.sr.CodedConcept:
    if key not in CONDITION_CODES:
        raise SRInputError(f"unknown condition {key!r}")
    return hd.sr.CodedConcept(CONDITION_CODES[key], CODING_SCHEME, BY_KEY[key].name[:64])


def parse_boxes(raw: Iterable[Mapping], sources: Mapping[str, Dataset], *, clip: bool = False) -> list[SRBox]:
    """Validate box dicts against the source images; a clear error names the offending box.

    ``clip`` (the AI's boxes) clips a box that reaches past the image edge to the image and
    drops one left empty, instead of refusing it: a model's box may overhang by rounding."""
    out = []
    for i, item in enumerate(raw):
        try:
            condition, sop_uid = str(item["condition"]), str(item["sop_uid"])
            x0, y0, x1, y1 = (float(v) for v in item["xyxy"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SRInputError(f"box {i}: needs condition, sop_uid and xyxy [x0, y0, x1, y1] ({exc})") from exc
        condition_code(condition)
        source = sources.get(sop_uid)
        if source is None:
            raise SRInputError(f"box {i}: image {sop_uid} is not part of this study")
        series_uid = str(item.get("series_uid") or source.SeriesInstanceUID)
        if series_uid != source.SeriesInstanceUID:
            raise SRInputError(
                f"box {i}: image {sop_uid} belongs to series {source.SeriesInstanceUID}, not {series_uid}"
            )
        cols, rows = int(source.Columns), int(source.Rows)
        if clip:
            x0, x1 = min(max(x0, 0.0), cols), min(max(x1, 0.0), cols)
            y0, y1 = min(max(y0, 0.0), rows), min(max(y1, 0.0), rows)
            if not (x0 < x1 and y0 < y1):
                logger.warning(
                    "box %d on %s is empty inside the %dx%d image: left out of the SR", i, sop_uid, cols, rows
                )
                continue
        if not (0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows):
            raise SRInputError(
                f"box {i}: xyxy {[x0, y0, x1, y1]} is not a non-empty box inside the {cols}x{rows} image"
            )
        frame = checked_frame(item.get("frame"), source, what=f"box {i}", error=SRInputError)  # multi-frame: needed
        out.append(SRBox(condition, series_uid, sop_uid, (x0, y0, x1, y1), str(item.get("label", ""))[:64], frame))
    return out


def _rectangle(xyxy: Sequence[float]) -> np.ndarray:
    """[5, 2] (column, row) corners, clockwise from the top-left, closed (first == last)."""
    x0, y0, x1, y1 = xyxy
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def _area_mm2(box: SRBox, source: Dataset) -> float:
    row_mm, col_mm = pixel_spacing(source, box.frame)
    x0, y0, x1, y1 = box.xyxy
    return round((x1 - x0) * col_mm * (y1 - y0) * row_mm, 3)


def _box_group(box: SRBox, source: Dataset, algorithm=None) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    region_source = hd.sr.SourceImageForRegion(source.SOPClassUID, box.sop_uid, [box.frame] if box.frame else None)
    area = hd.sr.Measurement(
        name=codes.SCT.Area,
        value=_area_mm2(box, source),
        unit=codes.UCUM.SquareMillimeter,
        referenced_coordinates=[
            hd.sr.CoordinatesForMeasurement(hd.sr.GraphicTypeValues.POLYLINE, _rectangle(box.xyxy), region_source)
        ],
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=RECTANGLE_TRACKING_ID),
        finding_type=condition_code(box.condition),
        algorithm_id=algorithm,
        measurements=[area],
    )


def _key_slice_group(condition: str, slices: Sequence[SRKeySlice], sources: Mapping[str, Dataset], algorithm=None):
    image = hd.sr.SourceImageForMeasurementGroup  # with its frame in a multi-frame object
    images = [image(sources[k.sop_uid].SOPClassUID, k.sop_uid, [k.frame] if k.frame else None) for k in slices]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{_KEY_SLICE_GROUP}: {condition}"),
        finding_type=condition_code(condition),
        algorithm_id=algorithm,
        source_images=images,
    )


def _observer(*, device: str | None = None, person: str | None = None) -> hd.sr.ObservationContext:
    if person is not None:
        return hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=person),
            )
        )
    return hd.sr.ObservationContext(observer_device_context=air.device_context(device))


def build_sr(
    *,
    sources: Mapping[str, Dataset],
    boxes: Sequence[SRBox],
    key_slices: Sequence[SRKeySlice] = (),
    series_description: str,
    series_uid: str,
    sop_uid: str,
    series_number: int,
    instance_number: int = 1,
    ai: air.AIIdentity | None = None,
    person: str | None = None,
) -> Dataset:
    """A Comprehensive SR dataset (pure function: no network, no database).

    ``sources`` maps SOP Instance UID -> header of that source image (patient/study module,
    SOP class, frame of reference, pixel spacing); every referenced image must be in it.
    ``ai``: the AI's SR (IHE AIR: algorithm identification, contributing equipment, analysis time).
    """
    for k in key_slices:
        if k.sop_uid not in sources:
            raise SRInputError(f"key slice image {k.sop_uid} is not part of this study")
    algorithm = air.algorithm_identification(ai) if ai is not None else None
    groups: list = [_box_group(b, sources[b.sop_uid], algorithm) for b in boxes]
    by_condition: dict[str, list[SRKeySlice]] = {}
    for k in key_slices:
        by_condition.setdefault(k.condition, []).append(k)
    groups += [_key_slice_group(c, ks, sources, algorithm) for c, ks in by_condition.items()]
    referenced = list(dict.fromkeys([b.sop_uid for b in boxes] + [k.sop_uid for k in key_slices]))
    evidence = [sources[uid] for uid in referenced] or [next(iter(sources.values()))]
    evidence = [with_type2_patient_study(d) for d in evidence]  # no PatientID etc. must not crash the SR
    report = hd.sr.MeasurementReport(
        observation_context=_observer(device=ai.device_uid if ai else None, person=person),
        procedure_reported=air.procedure_reported(evidence),
        imaging_measurements=groups or None,
    )
    now = ai.analysed_at if ai is not None else dt.datetime.now(dt.UTC)
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=report,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=series_description[:64],
        content_date=now.strftime("%Y%m%d"),
        content_time=now.strftime("%H%M%S"),
        contributing_equipment=[air.contributing_equipment(ai)] if ai is not None else None,
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = CODING_SCHEME
    scheme.CodingSchemeName = "SpineReview spine MRI conditions"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]  # declares the private scheme (PS3.3 C.12.1)
    return copy_patient_identity(sr, evidence[0])


# --- Orthanc I/O ----------------------------------------------------------------------------


def source_headers(study_uid: str, sop_uids: Iterable[str] | None = None) -> dict[str, Dataset]:
    """Headers (no pixels) of the study's images from Orthanc's DICOMweb metadata, by SOP UID."""
    try:
        metadata = dicomweb().retrieve_study_metadata(study_uid)
    except requests.RequestException as exc:
        raise OrthancUnavailable(f"metadata of study {study_uid} from {settings.ORTHANC_URL}: {exc}") from exc
    wanted = set(sop_uids) if sop_uids is not None else None
    out = {}
    for item in metadata:
        ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
        uid = str(ds.get("SOPInstanceUID", ""))
        if getattr(ds, "Modality", "") == "SR" or (wanted is not None and uid not in wanted):
            continue
        out[uid] = ds
    return out


def store_sr(ds: Dataset) -> None:
    """STOW-RS into Orthanc. Storing the same SOP Instance UID again is harmless."""
    try:
        dicomweb().store_instances([ds])
    except requests.ConnectionError as exc:
        raise OrthancUnavailable(f"STOW-RS of SR {ds.SOPInstanceUID} to {settings.ORTHANC_URL}: {exc}") from exc


def _boxes_of_draft(draft: Draft) -> tuple[list[dict], list[SRKeySlice]]:
    boxes, slices = [], []
    for finding in draft.findings.filter(present=True).order_by("condition"):
        for b in finding.boxes:
            boxes.append({"condition": finding.condition, "series_uid": b["series_uid"], "sop_uid": b["sop_uid"],
                          "xyxy": b["xyxy"], "label": f"{finding.condition} p={finding.probability:.2f}",
                          "frame": b.get("frame")})  # fmt: skip
        slices += [
            SRKeySlice(finding.condition, k["series_uid"], k["sop_uid"], k.get("frame")) for k in finding.key_slices
        ]
    return boxes, slices


# The AI SR names no model anywhere: OHIF lists its SeriesDescription, and every reader (blinded
# ones too) can fetch the whole instance through the DICOMweb proxy. Its names are the same for
# every pipeline version; its version and device UID are opaque (``air``). Which version drafted is
# kept in the database (``Draft.job.pipeline_version``) and read from there: ``sr_pipeline_version``.
AI_SERIES_DESCRIPTION = "SpineReview AI findings"
AI_DEVICE_NAME = air.AI_NAME


def sr_observer_device(ds: Dataset) -> str | None:
    """The Device Observer Name of an SR (``AI_DEVICE_NAME`` for our AI SRs), or None."""
    for item in getattr(ds, "ContentSequence", []):
        name = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
        if name is not None and name.CodeValue == "121013":  # DCM 121013 Device Observer Name
            return str(item.TextValue)
    return None


def sr_pipeline_version(row: StructuredReport) -> str | None:
    """The pipeline version that produced an AI SR, from the database (the DICOM names none)."""
    if row.source != StructuredReport.Source.AI or row.draft_id is None:
        return None
    return Draft.objects.select_related("job").get(pk=row.draft_id).job.pipeline_version


def write_ai_sr(*, draft: Draft, sources: Mapping[str, Dataset] | None = None) -> StructuredReport:
    """The AI SR of a draft: boxes and key slices of its present findings. One per draft.

    The SOP/Series UIDs are derived from the draft, so a retry after a crash between STOW-RS and
    the database write stores the same instance again instead of a second one.
    """
    existing = StructuredReport.objects.filter(draft=draft, source=StructuredReport.Source.AI).first()
    if existing is not None:
        return existing
    study = draft.study
    raw_boxes, key_slices = _boxes_of_draft(draft)
    if sources is None:
        sources = source_headers(study.study_uid)
    else:
        sources = {uid: ds for uid, ds in sources.items() if getattr(ds, "Modality", "") != "SR"}
    boxes = parse_boxes(raw_boxes, sources, clip=True)
    key_slices = [k for k in key_slices if k.sop_uid in sources]
    version = draft.job.pipeline_version
    ai = air.ai_identity(version, analysed_at=draft.created_at)
    series_uid = generate_uid(entropy_srcs=[study.study_uid, "ai-sr-series", version])
    sop_uid = generate_uid(entropy_srcs=[study.study_uid, "ai-sr", str(draft.pk)])
    ds = build_sr(
        sources=sources, boxes=boxes, key_slices=key_slices, series_description=AI_SERIES_DESCRIPTION,
        series_uid=series_uid, sop_uid=sop_uid, series_number=AI_SERIES_NUMBER, ai=ai,
    )  # fmt: skip
    store_sr(ds)
    if key_slices:  # the key slices also as a Key Object Selection document (no row: every reader may see it)
        store_sr(air.key_object_selection(study_uid=study.study_uid, draft_pk=draft.pk, sources=sources,
                                          key_slices=[(k.sop_uid, k.frame) for k in key_slices], ai=ai))  # fmt: skip
    with transaction.atomic():
        row, _ = StructuredReport.objects.get_or_create(
            sop_instance_uid=sop_uid,
            defaults={
                "study": study, "draft": draft, "source": StructuredReport.Source.AI,
                "series_instance_uid": series_uid, "series_description": ds.SeriesDescription,
                "boxes": [b.as_json() for b in boxes],
            },
        )  # fmt: skip
    logger.info(
        "AI SR %s stored for draft %s (%d boxes, %d key slices)", sop_uid, draft.pk, len(boxes), len(key_slices)
    )
    return row


READER_SERIES_DESCRIPTION = "SpineReview reader boxes"


def write_reader_sr(*, study: Study, parent: StructuredReport | None, author, boxes: list[dict]) -> StructuredReport:
    """A radiologist's corrected/added boxes as a new SR instance and a new row (nothing replaced).

    ``boxes``: [{"condition", "sop_uid", "xyxy": [x0, y0, x1, y1] pixels, "series_uid"?, "label"?}],
    the complete set the reader wants (boxes left out of a correction are removed in it).
    Raises SRInputError (bad boxes; nothing stored) or OrthancUnavailable (retry later).
    """
    if parent is not None and parent.study_id != study.pk:
        raise SRInputError(f"SR {parent.sop_instance_uid} belongs to another study")
    sources = source_headers(study.study_uid)
    if not sources:
        raise SRInputError(f"study {study.study_uid} has no images in Orthanc")
    parsed = parse_boxes(boxes, sources)
    name = (author.get_full_name() or author.get_username()) if author is not None else "Unknown"
    person = "^".join(reversed(name.split(" ", 1))) if " " in name else name  # DICOM PN: Family^Given
    # one series per reader, so that blinding can hide another reader's SRs series by series;
    # the description names no one (every reader's viewer lists it), the PN attribute does and
    # is admin-only through the proxy
    author_key = str(author.pk) if author is not None else "unknown"
    series_uid = generate_uid(entropy_srcs=[study.study_uid, "reader-sr-series", author_key])
    sop_uid = generate_uid()
    description = READER_SERIES_DESCRIPTION
    ds = build_sr(
        sources=sources, boxes=parsed, series_description=description, series_uid=series_uid, sop_uid=sop_uid,
        series_number=READER_SERIES_NUMBER, instance_number=StructuredReport.objects.filter(
            study=study, source=StructuredReport.Source.READER).count() + 1,
        person=person,
    )  # fmt: skip
    store_sr(ds)
    with transaction.atomic():
        row = StructuredReport.objects.create(
            study=study, draft=parent.draft if parent is not None else None, parent=parent, author=author,
            source=StructuredReport.Source.READER, sop_instance_uid=sop_uid, series_instance_uid=series_uid,
            series_description=ds.SeriesDescription, boxes=[b.as_json() for b in parsed],
        )  # fmt: skip
        audit(actor=author, action="sr.reader_saved", obj=row, parent=parent.pk if parent else None, boxes=len(parsed))
    return row


def read_sr_boxes(ds: Dataset) -> list[dict]:
    """The rectangles of an SR (ours or OHIF's): [{"condition", "sop_uid", "frame", "xyxy", "tracking_uid"}].

    Used by tests and by whoever turns reader corrections into training data.
    """
    out = []
    for group in _iter(ds, "ContentSequence"):
        if group.get("ValueType") != "CONTAINER":
            continue
        for sub in _iter(group, "ContentSequence"):
            finding, tracking_id, tracking_uid, boxes = "", "", "", []
            for item in _iter(sub, "ContentSequence"):
                name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
                if name == "Finding":
                    code = item.ConceptCodeSequence[0]
                    value = code.get("CodeValue") or code.get("LongCodeValue") or ""
                    finding = (
                        CODE_CONDITIONS.get(value, value) if code.CodingSchemeDesignator == CODING_SCHEME else value
                    )
                elif name == "Tracking Identifier":
                    tracking_id = item.TextValue
                elif name == "Tracking Unique Identifier":
                    tracking_uid = item.UID
                elif item.get("ValueType") == "NUM":
                    for scoord in _iter(item, "ContentSequence"):
                        if scoord.get("ValueType") == "SCOORD" and scoord.GraphicType == "POLYLINE":
                            pts = np.asarray(scoord.GraphicData, dtype=float).reshape(-1, 2)
                            image = scoord.ContentSequence[0].ReferencedSOPSequence[0]
                            frame = image.get("ReferencedFrameNumber")  # IS, or a list of them (VM 1-n)
                            frame = int(frame[0] if isinstance(frame, MultiValue) else frame) if frame else None
                            box = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
                            boxes.append((image.ReferencedSOPInstanceUID, frame, box))
            if tracking_id == RECTANGLE_TRACKING_ID:
                out += [{"condition": finding, "sop_uid": ref, "frame": frame,
                         "xyxy": [round(float(v), 3) for v in xyxy], "tracking_uid": tracking_uid}
                        for ref, frame, xyxy in boxes]  # fmt: skip
    return out


def _iter(ds: Dataset, keyword: str) -> list[Dataset]:
    return list(ds.get(keyword, None) or [])


def load_sr(study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
    """Retrieve one SR instance from Orthanc by WADO-RS."""
    try:
        return dicomweb().retrieve_instance(study_uid, series_uid, sop_uid)
    except requests.ConnectionError as exc:
        raise OrthancUnavailable(f"WADO-RS of SR {sop_uid}: {exc}") from exc


__all__ = [
    "AI_DEVICE_NAME", "RECTANGLE_TRACKING_ID", "SRBox", "SRInputError", "SRKeySlice", "build_sr", "load_sr",
    "parse_boxes", "read_sr_boxes", "source_headers", "sr_pipeline_version", "store_sr", "write_ai_sr",
    "write_reader_sr",
]  # fmt: skip
