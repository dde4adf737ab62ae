"""The signed report as a DICOM Enhanced SR, Basic Diagnostic Imaging Report (TID 2000).

Shape: root CONTAINER "Diagnostic Imaging Report" (LN 18748-4) with the language (TID 1204),
the reader as person observer (TID 1002), the procedure reported, then one CONTAINER per
section (CID 7001 headings: History, Current/Prior Procedure Descriptions, Findings,
Impressions, Addendum) holding the section's text (TID 2002), and in Findings one CODE item per
confirmed condition (SNOMED CT where ``codes.CONDITION_SNOMED`` has one, else the private
99SPINEREVIEW code of ``reviewer.integrations.sr_dataset``). The reader is the verifying observer; the
document is COMPLETE and VERIFIED. An addendum is a new instance whose Predecessor Documents
Sequence names the SR it amends: nothing is overwritten.

UIDs are derived from the revision, so a retry stores the same instance again (Orthanc keeps one).
The instance names its reader (observer, verifying observer): on a blinded study it is hidden
from other readers through the DICOMweb proxy like their box SRs (a ``StructuredReport`` row
with source ``report`` and its author, written before the instance is stored).
"""

from __future__ import annotations

import highdicom as hd
from django.db import transaction
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import EnhancedSRStorage, generate_uid

from ml.dicom.tags import copy_patient_identity, with_type2_patient_study
from reviewer.integrations.codes import CONDITION_SNOMED
from reviewer.integrations.content import SignedReport
from reviewer.integrations.sr import source_headers, store_sr
from reviewer.integrations.sr_dataset import MANUFACTURER, condition_code
from reviewer.models import ReportRevision, StructuredReport

REPORT_SERIES_NUMBER = 9200
REPORT_SERIES_DESCRIPTION = "SpineReview signed report"  # names no one: every reader's viewer lists it
_REPORT = hd.sr.CodedConcept("18748-4", "LN", "Diagnostic Imaging Report")
_PROCEDURE = hd.sr.CodedConcept("18756-7", "LN", "MRI Spine Report")
_LANGUAGE = hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)")

# report heading -> (section container concept, text item concept)
_SECTION_CODES = {
    "CLINICAL HISTORY": (codes.DCM.History, codes.DCM.History),
    "TECHNIQUE": (codes.DCM.CurrentProcedureDescriptions, codes.DCM.ProcedureDescription),
    "COMPARISON": (codes.DCM.PriorProcedureDescriptions, codes.DCM.ProcedureDescription),
    "IMPRESSION": (codes.DCM.Impressions, codes.DCM.Impression),
}


def report_uids(revision: ReportRevision) -> tuple[str, str]:
    """(series UID, SOP instance UID) of a revision's report SR: one series per reader (blinding
    hides series by series), one instance per signed revision or addendum."""
    uid = revision.study.study_uid
    series = generate_uid(entropy_srcs=[uid, "report-sr-series", str(revision.author_id)])
    sop = generate_uid(entropy_srcs=[uid, "report-sr", str(revision.pk)])
    return series, sop


def _person_name(name: str) -> str:
    """DICOM PN (Family^Given) of "Given Family"."""
    parts = name.split(" ", 1)
    return f"{parts[1]}^{parts[0]}" if len(parts) == 2 else name


def _text(name, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _section(heading_code, items: list) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(name=heading_code, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _finding_code(condition: str) -> hd.sr.CodedConcept:
    snomed = CONDITION_SNOMED.get(condition)
    if snomed is not None:
        return hd.sr.CodedConcept(snomed.code, snomed.scheme, snomed.display)
    return condition_code(condition)


def content_tree(report: SignedReport) -> hd.sr.ContainerContentItem:
    """The TID 2000 content tree of a signed report (pure function)."""
    root = hd.sr.ContainerContentItem(name=_REPORT, template_id="2000")
    items: list = [
        hd.sr.CodeContentItem(
            name=codes.DCM.LanguageOfContentItemAndDescendants, value=_LANGUAGE,
            relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
        ),
        *hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=_person_name(report.reader_name)
            ),
        ),
        hd.sr.CodeContentItem(
            name=codes.DCM.ProcedureReported, value=_PROCEDURE,
            relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
        ),
    ]  # fmt: skip
    findings_text: list[str] = []
    sections: list = []
    for heading, text in report.sections.items():
        if heading in _SECTION_CODES:
            container, item = _SECTION_CODES[heading]
            sections.append((heading, _section(container, [_text(item, text)])))
        else:  # the anatomic sections (and text before any heading) are the findings
            findings_text.append(f"{heading}: {text}" if heading else text)
    finding_items: list = [_text(codes.DCM.Finding, t) for t in findings_text]
    finding_items += [
        hd.sr.CodeContentItem(
            name=codes.DCM.Finding, value=_finding_code(f.condition),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        for f in report.findings
    ]  # fmt: skip
    order = ["CLINICAL HISTORY", "TECHNIQUE", "COMPARISON"]
    items += [c for h, c in sections if h in order]
    if finding_items:
        items.append(_section(codes.DCM.Findings, finding_items))
    items += [c for h, c in sections if h not in order]
    if report.is_addendum:
        items.append(_section(codes.DCM.Addendum, [_text(codes.DCM.Addendum, report.addendum_reason)]))
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def build_report_sr(report: SignedReport, evidence: list[Dataset]) -> Dataset:
    """The Enhanced SR dataset of a signed report (pure: no network). ``evidence``: headers of
    the study's images (patient and study modules are copied from them)."""
    if not evidence:
        raise ValueError(f"study {report.study.study_uid} has no images to attach the report to")
    evidence = [with_type2_patient_study(d) for d in evidence]
    series_uid, sop_uid = report_uids(report.revision)
    previous = None
    if report.predecessor is not None:
        pre = Dataset()
        pre.StudyInstanceUID = report.study.study_uid
        pre.SeriesInstanceUID, pre.SOPInstanceUID = report_uids(report.predecessor)
        pre.SOPClassUID = EnhancedSRStorage
        previous = [pre]
    when = report.signed_at
    sr = hd.sr.EnhancedSR(
        evidence=evidence,
        content=content_tree(report),
        series_instance_uid=series_uid,
        series_number=REPORT_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=report.revision.number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name=_person_name(report.reader_name),
        verifying_organization=(report.study.institution or MANUFACTURER)[:64],
        institution_name=report.study.institution or None,
        previous_versions=previous,
        series_description=REPORT_SERIES_DESCRIPTION,
        content_date=when.strftime("%Y%m%d"),
        content_time=when.strftime("%H%M%S"),
    )
    sr.VerifyingObserverSequence[0].VerificationDateTime = when.strftime("%Y%m%d%H%M%S")
    return copy_patient_identity(sr, evidence[0])


def store_report_sr(report: SignedReport) -> StructuredReport:
    """Build the report SR, record it (for blinding) and STOW it into Orthanc. Idempotent."""
    revision = report.revision
    series_uid, sop_uid = report_uids(revision)
    parent = None
    if report.predecessor is not None:
        parent = StructuredReport.objects.filter(sop_instance_uid=report_uids(report.predecessor)[1]).first()
    with transaction.atomic():  # the row first: the proxy hides the instance from the moment it exists
        row, _ = StructuredReport.objects.get_or_create(
            sop_instance_uid=sop_uid,
            defaults={
                "study": report.study, "parent": parent, "author_id": revision.author_id,
                "source": StructuredReport.Source.REPORT, "series_instance_uid": series_uid,
                "series_description": REPORT_SERIES_DESCRIPTION,
            },
        )  # fmt: skip
    headers = list(source_headers(report.study.study_uid).values())
    store_sr(build_report_sr(report, headers))
    return row
