"""The signed report as a FHIR R4 Bundle (DiagnosticReport, Observations, ImagingStudy, Patient).

The Bundle is validated with fhir.resources' R4B models before it leaves (R4B differs from R4
only in resources this Bundle does not use). ``identities=False`` (every caller but an admin and
the FHIR push) leaves the Patient resource without identifier and name, as the app shows
identities to admins only.

Pushed to a FHIR server as a ``transaction`` Bundle with conditional creates keyed on stable
identifiers (``urn:spinereview:...``), so a retry after a lost answer creates nothing twice.
"""

from __future__ import annotations

import base64
import re
import uuid
from urllib.parse import quote

import httpx
from django.conf import settings

from reviewer.integrations.codes import CONDITION_SNOMED, LATERALITY, SNOMED_SYSTEM, level_coding, spine_coding
from reviewer.integrations.content import SignedReport, impression

DICOM_UID_SYSTEM = "urn:dicom:uid"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC_SYSTEM = "http://loinc.org"
ID_SYSTEM = "urn:spinereview"
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_URI = re.compile(r"(https?|urn):", re.IGNORECASE)
_NS = uuid.UUID("6c1f6b5e-5b7e-4c47-9d55-3f1a9f0b7a21")  # namespace of the Bundle's urn:uuid ids


class FhirPushError(RuntimeError):
    """The FHIR server refused or could not be reached (kept in the outbox and retried)."""


def _uuid(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, '/'.join(str(p) for p in parts))}"


def _coding(c) -> dict:
    return {"system": c.system, "code": c.code, "display": c.display}


def patient_id_system(issuer: str) -> str:
    """Patient.identifier.system for a PatientID assigned by ``issuer`` (IssuerOfPatientID).

    The system is what makes an identifier unambiguous: one PatientID from two hospitals is two
    people, so the issuer must go out with the id. A site maps its issuers to the URIs its FHIR
    server knows (``SPINEREVIEW_FHIR_PATIENT_ID_SYSTEMS``); otherwise an OID becomes
    ``urn:oid:``, a URI stays as it is, and any other issuer is namespaced under ours. An id
    without an issuer gets a system of its own, so a conditional create never matches a patient
    with the same id from a known issuer."""
    mapped = settings.SPINEREVIEW_FHIR_PATIENT_ID_SYSTEMS.get(issuer)
    if mapped:
        return mapped
    if not issuer:
        return f"{ID_SYSTEM}:patient-id"
    if _OID.fullmatch(issuer):
        return f"urn:oid:{issuer}"
    if _URI.match(issuer):
        return issuer
    return f"{ID_SYSTEM}:patient-id-issuer:{quote(issuer, safe='')}"


def build_bundle(report: SignedReport, *, identities: bool, bundle_type: str = "collection") -> dict:
    """The Bundle as JSON-ready dict (validated). ``bundle_type`` "transaction" adds requests."""
    study, revision = report.study, report.revision
    issuer = study.patient_id_issuer
    patient_url = _uuid("patient", *([issuer] if issuer else []), study.patient_id or study.study_uid)
    id_system = patient_id_system(issuer)
    study_url = _uuid("imagingstudy", study.study_uid)
    report_url = _uuid("diagnosticreport", revision.pk)
    subject = {"reference": patient_url}
    status = report.status
    patient: dict = {"resourceType": "Patient"}
    if identities and study.patient_id:
        patient["identifier"] = [
            {"system": id_system, "value": study.patient_id, **({"assigner": {"display": issuer}} if issuer else {})}
        ]
    if identities and study.patient_name:
        family, _, given = study.patient_name.partition("^")
        patient["name"] = [{"family": family, **({"given": given.split("^")} if given else {})}]
    imaging_study: dict = {
        "resourceType": "ImagingStudy",
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study.study_uid}"}],
        "status": "available",
        "subject": subject,
        "modality": [{"system": DCM_SYSTEM, "code": m} for m in (study.modalities or "MR").split("\\") if m],
    }
    if study.study_date:
        imaging_study["started"] = study.study_date.isoformat()
    if study.description:
        imaging_study["description"] = study.description
    if identities and study.accession_number:
        imaging_study["identifier"].append(
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
             "value": study.accession_number}
        )  # fmt: skip
    observations = []
    for f in report.findings:
        code: dict = {"text": f.name}
        if f.condition in CONDITION_SNOMED:
            code["coding"] = [_coding(CONDITION_SNOMED[f.condition])]
        site = level_coding(f.level) or spine_coding()
        obs: dict = {
            "resourceType": "Observation",
            "identifier": [{"system": f"{ID_SYSTEM}:finding", "value": f"{revision.pk}-{f.condition}"}],
            "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "imaging", "display": "Imaging"}]}],
            "code": code,
            "subject": subject,
            "effectiveDateTime": report.signed_at.isoformat(),
            "valueBoolean": True,
            "bodySite": {"coding": [_coding(site)], "text": f.level or "spine"},
            "derivedFrom": [{"reference": study_url}],
        }  # fmt: skip
        if f.side in LATERALITY:
            lat = LATERALITY[f.side]
            obs["component"] = [{
                "code": {"coding": [{"system": SNOMED_SYSTEM, "code": "272741003", "display": "Laterality"}]},
                "valueCodeableConcept": {"coding": [_coding(lat)], "text": f.side},
            }]  # fmt: skip
        observations.append((_uuid("observation", revision.pk, f.condition), obs))
    diagnostic_report: dict = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": f"{ID_SYSTEM}:report", "value": str(revision.pk)}],
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                                  "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": "18748-4", "display": "Diagnostic imaging study"}],
                 "text": study.description or "MRI spine"},
        "subject": subject,
        "issued": report.signed_at.isoformat(),
        "resultsInterpreter": [{"display": report.reader_name}],
        "imagingStudy": [{"reference": study_url}],
        "result": [{"reference": url} for url, _ in observations],
        "conclusion": impression(report),
        "presentedForm": [{
            "contentType": "text/plain; charset=utf-8", "language": "en-US",
            "data": base64.b64encode(report.text.encode()).decode("ascii"),
            "title": "Addendum" if report.is_addendum else "Signed report",
            "creation": report.signed_at.isoformat(),
        }],
    }  # fmt: skip
    if study.study_date:
        diagnostic_report["effectiveDateTime"] = study.study_date.isoformat()
    entries = [
        (report_url, diagnostic_report, f"{ID_SYSTEM}:report|{revision.pk}"),
        *[(url, obs, f"{ID_SYSTEM}:finding|{obs['identifier'][0]['value']}") for url, obs in observations],
        (study_url, imaging_study, f"{DICOM_UID_SYSTEM}|urn:oid:{study.study_uid}"),
        # encoded: ifNoneExist is a query string, and an issuer or id may hold '&', '#' or '%'
        (
            patient_url,
            patient,
            "identifier=" + quote(f"{id_system}|{study.patient_id}", safe=":/|")
            if identities and study.patient_id
            else None,
        ),
    ]
    bundle: dict = {"resourceType": "Bundle", "type": bundle_type, "entry": []}
    for url, resource, ident in entries:
        entry: dict = {"fullUrl": url, "resource": resource}
        if bundle_type == "transaction":
            request = {"method": "POST", "url": resource["resourceType"]}
            if ident:
                request["ifNoneExist"] = ident if ident.startswith("identifier=") else f"identifier={ident}"
            entry["request"] = request
        bundle["entry"].append(entry)
    validate(bundle)
    return bundle


def validate(bundle: dict) -> None:
    """Raise pydantic's ValidationError if the Bundle is not valid FHIR (R4B models)."""
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)


def push_bundle(report: SignedReport, *, url: str | None = None) -> dict:
    """POST the report as a transaction Bundle to the FHIR server; its answer on success."""
    base = (url or settings.SPINEREVIEW_FHIR_URL).rstrip("/")
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if settings.SPINEREVIEW_FHIR_TOKEN:
        headers["Authorization"] = f"Bearer {settings.SPINEREVIEW_FHIR_TOKEN}"
    bundle = build_bundle(report, identities=True, bundle_type="transaction")
    try:
        response = httpx.post(base + "/", json=bundle, headers=headers, timeout=settings.SPINEREVIEW_INTEROP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise FhirPushError(f"FHIR server {base} unreachable: {exc}") from exc
    if response.status_code >= 300:
        raise FhirPushError(f"FHIR server {base} answered {response.status_code}: {response.text[:300]}")
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    return {"status": response.status_code, "type": answer.get("type", "") if isinstance(answer, dict) else ""}
