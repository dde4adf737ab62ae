"""Orthanc → app: turn Orthanc's change feed into Study/Series rows and draft jobs.

Why the change feed (``/changes``) rather than a callback plugin: the feed is durable. If the
app is down while studies arrive, the watcher resumes from its stored cursor and misses
nothing; a push callback would be lost. Orthanc emits ``StableStudy`` once no instance has
arrived for ``StableAge`` seconds, which is exactly "the modality has finished sending".
"""

from __future__ import annotations

import datetime as dt
import logging

import httpx
import pyorthanc
from django.conf import settings
from django.db import transaction

from reviewer.integrations.orthanc import dicomweb, orthanc
from reviewer.ml_bridge import classify_series_metadata
from reviewer.models import OrthancCursor, Series, Study
from reviewer.services.audit import audit
from reviewer.services.drafting import drafts_together, request_draft

logger = logging.getLogger(__name__)


def process_changes(*, client: pyorthanc.Orthanc | None = None, limit: int = 200) -> int:
    """Process the change feed from the stored cursor to its end; returns studies synced.

    The cursor advances only after each page is handled, so a crash re-processes the last
    page, which is harmless: syncing a study and requesting its draft are idempotent.
    """
    client = client or orthanc()
    cursor, _ = OrthancCursor.objects.get_or_create(orthanc_url=settings.ORTHANC_URL)
    synced = 0
    while True:
        page = client.get_changes(params={"since": cursor.last_seq, "limit": limit})
        # in-process drafting (the demo): the page's studies are drafted together once it is synced
        with drafts_together():
            for change in page.get("Changes", []):
                if change.get("ChangeType") == "StableStudy":
                    try:
                        sync_study(orthanc_study_id=change["ID"], client=client)
                        synced += 1
                    except httpx.HTTPError as exc:
                        # pyorthanc reports HTTP status only in the message; network errors propagate
                        if not str(exc).startswith("HTTP code: 404"):
                            raise
                        logger.warning("study %s vanished from Orthanc before sync", change["ID"])
            cursor.last_seq = page.get("Last", cursor.last_seq)
            cursor.save(update_fields=["last_seq", "updated_at"])
        if page.get("Done", True):
            return synced


def _parse_date(value: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime(value or "", "%Y%m%d").date()
    except ValueError:
        return None


def _series_fields(study_uid: str, series_id: str, client: pyorthanc.Orthanc, web) -> tuple[str, dict]:
    """Read one series from Orthanc and classify it (network only; no database)."""
    sinfo = client.get_series_id(series_id)
    stags = sinfo.get("MainDicomTags", {})
    modality = stags.get("Modality", "")
    fields: dict = {
        "orthanc_id": series_id,
        "series_number": int(stags["SeriesNumber"]) if stags.get("SeriesNumber", "").isdigit() else None,
        "description": stags.get("SeriesDescription", ""),
        "modality": modality,
        "manufacturer": stags.get("Manufacturer", ""),
        "instance_count": len(sinfo.get("Instances", [])),
    }
    if modality == "MR":
        metadata = web.retrieve_series_metadata(study_uid, stags["SeriesInstanceUID"])
        try:
            cls = classify_series_metadata(metadata)
        except Exception as exc:  # odd headers must not block the change feed for every later study
            logger.exception("classification of series %s failed", stags["SeriesInstanceUID"])
            fields.update(sequence_class="", sequence_subtype="UNKNOWN", plane="unknown",
                          classification_reasons=[f"classification failed: {type(exc).__name__}: {exc}"])  # fmt: skip
        else:
            fields.update(
                sequence_class=cls.sequence_class,
                sequence_subtype=cls.subtype,
                plane=cls.plane,
                classification_confidence=cls.confidence,
                classification_reasons=cls.reasons,
            )
    return stags["SeriesInstanceUID"], fields


def sync_study(*, orthanc_study_id: str, client: pyorthanc.Orthanc | None = None) -> Study:
    """Create or update a Study and its Series from Orthanc, classify each series, and
    request the draft (queued on commit). Safe to call any number of times.

    All Orthanc reads happen first, outside any transaction, so a slow archive never holds
    database locks; the writes then happen in one short transaction.
    """
    client = client or orthanc()
    info = client.get_studies_id(orthanc_study_id)
    tags = info.get("MainDicomTags", {})
    patient = info.get("PatientMainDicomTags", {})
    web = dicomweb()
    series = [_series_fields(tags["StudyInstanceUID"], sid, client, web) for sid in info.get("Series", [])]
    patient = {**patient, "IssuerOfPatientID": _patient_id_issuer(client, info)}
    return _store_study(orthanc_study_id=orthanc_study_id, tags=tags, patient=patient, series=series)


def _patient_id_issuer(client: pyorthanc.Orthanc, info: dict) -> str:
    """IssuerOfPatientID (0010,0021) of the study, read from one of its instances.

    Neither Orthanc resource can say it: Orthanc 1.10 keeps the tag out of its main DICOM tags,
    and its patient level is keyed on PatientID alone, so two issuers' patients who share an id
    share one Orthanc patient. The instance is what the modality sent."""
    for series_id in info.get("Series", []):
        instances = client.get_series_id(series_id).get("Instances", [])
        if instances:
            return str(client.get_instances_id_simplified_tags(instances[0]).get("IssuerOfPatientID") or "").strip()
    return ""


@transaction.atomic
def _store_study(*, orthanc_study_id: str, tags: dict, patient: dict, series: list[tuple[str, dict]]) -> Study:
    study, created = Study.objects.update_or_create(
        study_uid=tags["StudyInstanceUID"],
        defaults={
            "orthanc_id": orthanc_study_id,
            "patient_id": patient.get("PatientID", ""),
            "patient_id_issuer": patient.get("IssuerOfPatientID", ""),
            "patient_name": patient.get("PatientName", ""),
            "accession_number": tags.get("AccessionNumber", ""),
            "study_date": _parse_date(tags.get("StudyDate")),
            "description": tags.get("StudyDescription", ""),
            "institution": tags.get("InstitutionName", ""),
            "modalities": ",".join(sorted({f["modality"] for _, f in series if f["modality"]})),
        },
    )
    for series_uid, fields in series:
        Series.objects.update_or_create(series_uid=series_uid, defaults={**fields, "study": study})
    if created:
        audit(actor=None, action="study.received", obj=study, orthanc_id=orthanc_study_id)
    request_draft(study=study)
    return study
