"""The DICOM Comprehensive SR (TID 1500 measurement report) of the AI's and the readers' boxes,
as datasets: built from boxes and key slices, and read back. Pure functions: no network, no
database (``reviewer.integrations.sr`` fetches the source headers, stores the SR and keeps its row).

Why this exact shape: OHIF 3.13 shows and lets a radiologist edit a rectangle from an SR only
when each box is a TID 1501 measurement group whose *Area* measurement carries the box as a
5-point closed POLYLINE (``referenced_coordinates``, an SCOORD on the source image) and whose
tracking identifier is ``Cornerstone3DTools@^0.1.0:RectangleROI`` (docs/viewer.md). OHIF has no
Key Object Selection handler, so key slices are written as measurement groups that reference
their images (``source_images``) and are also served by our API. The AI's SR is also an IHE AI
Results document naming no model, beside a Key Object Selection of its key slices (``air``).

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
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ml.conditions import BY_KEY, CONDITIONS
from ml.dicom.tags import checked_frame, copy_patient_identity, pixel_spacing, with_type2_patient_study
from reviewer.integrations import air

logger = logging.getLogger(__name__)

RECTANGLE_TRACKING_ID = "Cornerstone3DTools@^0.1.0:RectangleROI"
CODING_SCHEME = "99SPINEREVIEW"  # private scheme: our 17 condition keys are its code values
MANUFACTURER = air.MANUFACTURER
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


def sr_observer_device(ds: Dataset) -> str | None:
    """The Device Observer Name of an SR (``reviewer.integrations.sr.AI_DEVICE_NAME`` for our AI SRs), or None."""
    for item in getattr(ds, "ContentSequence", []):
        name = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
        if name is not None and name.CodeValue == "121013":  # DCM 121013 Device Observer Name
            return str(item.TextValue)
    return None


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
