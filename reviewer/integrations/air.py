"""The AI findings in the shape of IHE AI Results (AIR), without naming the model.

Other systems read the AI SR (``sr.write_ai_sr``) as an AIR result: a TID 1500 Measurement
Report whose procedure reported is the imaging procedure, a Contributing Equipment item
(``ContributingEquipmentSequence``: manufacturer, model name, software version, device UID,
purpose of reference *Processing Equipment*, when it contributed), TID 4019 Algorithm
Identification (name, version) in every measurement group, the Device Observer, the content
date/time of the analysis, and VerificationFlag UNVERIFIED (the reader's signed report is a
separate, VERIFIED document: ``reviewer.integrations.report_sr``). The key slices are also a Key
Object Selection document in the study.

Blinding: any reader, a blinded one too, can fetch these instances through the DICOMweb proxy,
so they must not say which model drafted. Every identification therefore carries the neutral
name ``SpineReview AI`` and an opaque version: ``version_key`` = a keyed hash of the pipeline
version (``reviewer.deid.pseudonym``, the site's secret), and a device UID derived from that
hash, new for each model version as AIR wants. A reader sees that two results came from the
same or from different versions, never which; the admin maps a key back to the pipeline version
from the database (``pipeline_version_of_key``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM

from ml.dicom.tags import copy_patient_identity, with_type2_patient_study
from reviewer.deid import pseudonym
from reviewer.models import DraftJob

MANUFACTURER = "SpineReview"
AI_NAME = "SpineReview AI"  # the algorithm, the device and the model name: the same for every version
KO_SERIES_NUMBER = 9010
KO_SERIES_DESCRIPTION = "SpineReview AI key slices"
_IMAGING_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")  # CID 100


@dataclass(frozen=True)
class AIIdentity:
    """What the AI's DICOM objects say about the algorithm: nothing that names the model."""

    version_key: str  # opaque version: keyed hash of the pipeline version
    device_uid: str  # one per version_key
    analysed_at: dt.datetime  # when the analysis ran (the content date/time)


def version_key(pipeline_version: str) -> str:
    """The opaque version identifier of a pipeline version (20 hex digits, keyed by the site's secret)."""
    return pseudonym("ai-model-version", pipeline_version)


def ai_identity(pipeline_version: str, *, analysed_at: dt.datetime) -> AIIdentity:
    key = version_key(pipeline_version)
    return AIIdentity(key, generate_uid(entropy_srcs=[AI_NAME, "device", key]), analysed_at)


def algorithm_identification(ai: AIIdentity) -> hd.sr.AlgorithmIdentification:
    """TID 4019: algorithm name and version."""
    return hd.sr.AlgorithmIdentification(name=AI_NAME, version=ai.version_key, manufacturer=MANUFACTURER)


def contributing_equipment(ai: AIIdentity) -> hd.ContributingEquipment:
    """The ContributingEquipmentSequence item of the AI (purpose of reference: Processing Equipment)."""
    item = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=AI_NAME,
        software_versions=ai.version_key,
        contribution_datetime=ai.analysed_at,
        contribution_description="AI findings: boxes and key slices",
    )
    item.DeviceUID = ai.device_uid
    return item


def device_context(device_uid: str | None) -> hd.sr.ObserverContext:
    """TID 1004 Device Observer: the neutral name; the version's device UID when known (the
    fixed UID of the name otherwise)."""
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid or generate_uid(entropy_srcs=[MANUFACTURER, AI_NAME]),
            name=AI_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=AI_NAME,
        ),
    )


def procedure_reported(sources: Sequence[Dataset]) -> list[hd.sr.CodedConcept]:
    """The imaging procedure: the study's own procedure code (ProcedureCodeSequence, or the
    requested procedure's) when the modality sent one, else SCT 363679005 Imaging procedure."""
    for ds in sources:
        for keyword in ("ProcedureCodeSequence", "RequestedProcedureCodeSequence"):
            items = ds.get(keyword) or [
                r for ra in ds.get("RequestAttributesSequence") or [] for r in ra.get(keyword) or []
            ]
            for item in items:
                if item.get("CodeValue") and item.get("CodingSchemeDesignator") and item.get("CodeMeaning"):
                    return [hd.sr.CodedConcept(item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning[:64])]
    return [_IMAGING_PROCEDURE]


def build_key_object_selection(
    *,
    sources: Mapping[str, Dataset],
    key_slices: Sequence[tuple[str, int | None]],
    ai: AIIdentity,
    series_uid: str,
    sop_uid: str,
    description: str,
) -> Dataset:
    """A Key Object Selection document (title *Of Interest*) of the key slices ``(sop_uid,
    frame)``, observed by the AI device; a frame of a multi-frame image is named in its item."""
    frames: dict[str, list[int]] = {}
    for uid, frame in key_slices:
        if frame:
            frames.setdefault(uid, []).append(int(frame))
    # a source without PatientID, dates etc. must not crash the document (they are type 2 here)
    referenced = [with_type2_patient_study(sources[uid]) for uid in dict.fromkeys(uid for uid, _ in key_slices)]
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=referenced,
        observer_device_context=device_context(ai.device_uid),
        description=description[:1024],
    )
    ko = hd.ko.KeyObjectSelectionDocument(
        evidence=referenced,
        content=content,
        series_instance_uid=series_uid,
        series_number=KO_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        contributing_equipment=[contributing_equipment(ai)],
        series_description=KO_SERIES_DESCRIPTION,
    )
    for keyword in ("StudyDescription", "PatientAge", "PatientSex"):  # highdicom copies none of these
        if keyword not in ko and referenced[0].get(keyword):
            setattr(ko, keyword, referenced[0].get(keyword))
    copy_patient_identity(ko, referenced[0])
    ko.ContentDate = DA(ai.analysed_at.date())
    ko.ContentTime = TM(ai.analysed_at.time().replace(microsecond=0))
    for item in ko.ContentSequence:
        if item.ValueType == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            if ref.ReferencedSOPInstanceUID in frames:
                ref.ReferencedFrameNumber = sorted(set(frames[ref.ReferencedSOPInstanceUID]))
    return ko


def key_object_selection(
    *,
    study_uid: str,
    draft_pk: int,
    sources: Mapping[str, Dataset],
    key_slices: Sequence[tuple[str, int | None]],
    ai: AIIdentity,
) -> Dataset:
    """The KOS of a draft's key slices; UIDs derived from the draft, so a retry stores the same instance."""
    return build_key_object_selection(
        sources=sources,
        key_slices=key_slices,
        ai=ai,
        series_uid=generate_uid(entropy_srcs=[study_uid, "ai-ko-series", ai.version_key]),
        sop_uid=generate_uid(entropy_srcs=[study_uid, "ai-ko", str(draft_pk)]),
        description="Key slices of the AI findings (not verified by a reader)",
    )


def pipeline_version_of_key(key: str) -> str | None:
    """The pipeline version behind an opaque version key (admins: which model made this AI SR)."""
    for version in DraftJob.objects.values_list("pipeline_version", flat=True).distinct():
        if version_key(version) == key:
            return version
    return None
