"""The AI's and the readers' box SRs in Orthanc and in the database: the source images' headers
fetched, each SR stored by STOW-RS and recorded as a ``StructuredReport`` row, read back by
WADO-RS. What the dataset holds and why it has this shape: ``reviewer.integrations.sr_dataset``.

Nothing is ever replaced: every call writes a new SR instance (new series for the AI draft of a
pipeline version, new SOP instance for each reader correction) and a ``StructuredReport`` row
whose ``parent`` is the SR that was edited. Corrections can therefore feed training later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import requests
from django.conf import settings
from django.db import transaction
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from reviewer.integrations import air
from reviewer.integrations.orthanc import OrthancUnavailable, dicomweb
from reviewer.integrations.sr_dataset import SRInputError, SRKeySlice, build_sr, parse_boxes
from reviewer.models import Draft, StructuredReport, Study
from reviewer.services.audit import audit

logger = logging.getLogger(__name__)

AI_SERIES_NUMBER = 9000  # far from scanner series numbers, so the SR sorts last in viewers
READER_SERIES_NUMBER = 9100


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


def load_sr(study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
    """Retrieve one SR instance from Orthanc by WADO-RS."""
    try:
        return dicomweb().retrieve_instance(study_uid, series_uid, sop_uid)
    except requests.ConnectionError as exc:
        raise OrthancUnavailable(f"WADO-RS of SR {sop_uid}: {exc}") from exc


__all__ = [
    "AI_DEVICE_NAME", "AI_SERIES_DESCRIPTION", "READER_SERIES_DESCRIPTION", "load_sr", "source_headers",
    "sr_pipeline_version", "store_sr", "write_ai_sr", "write_reader_sr",
]  # fmt: skip
