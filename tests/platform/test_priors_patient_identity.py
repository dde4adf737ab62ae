"""A patient is a PatientID *and* its issuer (IssuerOfPatientID), against real parts (Orthanc,
PostgreSQL): two hospitals can give one PatientID to two people, so a study of the same id from
another issuer (or from no issuer) is never a prior, neither beside the draft nor in its
COMPARISON, and the issuer goes out with the id in HL7 PID-3 and the FHIR Patient identifier."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import unquote

import pydicom
import pytest
from hl7apy.parser import parse_message

from reviewer import selectors
from reviewer.integrations.content import signed_report
from reviewer.integrations.fetch import fetch_study
from reviewer.integrations.fhir import build_bundle
from reviewer.integrations.hl7 import build_oru
from reviewer.models import Study
from reviewer.services import reports
from reviewer.services.drafting import patient_studies
from reviewer.services.sync import sync_study
from tests.dicom_factory import SeriesSpec, upload_study, write_study
from tests.factories import DraftFactory, StudyFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]

ONE_SERIES = (SeriesSpec("SAG T2 FSE", tr=3500, te=100, n=2),)


def study_of(out: Path, *, issuer: str, date: str, patient: str = "PAT-1") -> list[Path]:
    """A two-image study of ``patient`` as assigned by ``issuer`` ("" = the tag absent), on ``date``."""
    _, files = write_study(out, patient=patient, protocol=ONE_SERIES)
    for f in files:
        ds = pydicom.dcmread(f)
        if issuer:
            ds.IssuerOfPatientID = issuer
        ds.StudyDate = ds.SeriesDate = date
        ds.save_as(f, enforce_file_format=True)
    return files


def test_a_prior_is_the_same_patient_id_from_the_same_issuer_only(  # type: ignore[no-untyped-def]
    tmp_path, empty_orthanc, orthanc_settings, api_as
):
    uploaded = {
        name: sync_study(orthanc_study_id=upload_study(empty_orthanc, study_of(tmp_path / name, issuer=i, date=d)))
        for name, i, d in [
            ("current", "HOSP_A", "20240601"),
            ("same_issuer", "HOSP_A", "20200101"),
            ("other_issuer", "HOSP_B", "20210101"),  # another person who has the same PatientID
            ("no_issuer", "", "20220101"),
            ("no_issuer_older", "", "20190101"),
        ]
    }
    studies = {name: Study.objects.get(pk=s.pk) for name, s in uploaded.items()}
    # the issuer is read from the instances Orthanc holds (Orthanc's patient level is PatientID only)
    assert {n: s.patient_id_issuer for n, s in studies.items()} == {
        "current": "HOSP_A", "same_issuer": "HOSP_A", "other_issuer": "HOSP_B", "no_issuer": "", "no_issuer_older": "",
    }  # fmt: skip
    assert {s.patient_id for s in studies.values()} == {"PAT-1"}

    admin = UserFactory(role="admin")
    assert [p.study for p in selectors.priors_for(studies["current"], user=admin)] == [studies["same_issuer"]]
    # an empty issuer matches only an empty issuer: neither HOSP_A's nor HOSP_B's patient
    assert [p.study for p in selectors.priors_for(studies["no_issuer"], user=admin)] == [studies["no_issuer_older"]]
    assert selectors.priors_for(studies["other_issuer"], user=admin) == []

    reader = api_as("radiologist")
    priors = reader.get(f"/api/viewer/studies/{studies['current'].study_uid}/").json()["priors"]
    assert [p["study_uid"] for p in priors] == [studies["same_issuer"].study_uid]

    # the draft's COMPARISON searches Orthanc itself (QIDO-RS): the same rule holds there
    found = patient_studies(fetch_study(studies["current"].study_uid))
    assert found is not None
    assert {s["study_uid"] for s in found} == {studies["current"].study_uid, studies["same_issuer"].study_uid}
    found = patient_studies(fetch_study(studies["no_issuer"].study_uid))
    assert {s["study_uid"] for s in found} == {studies["no_issuer"].study_uid, studies["no_issuer_older"].study_uid}


def _signed(study: Study):  # type: ignore[no-untyped-def]
    text = "FINDINGS: Moderate spinal canal stenosis at L4-5.\nIMPRESSION: Moderate spinal canal stenosis at L4-5."
    DraftFactory(study=study, text=text)
    reader = UserFactory(role="radiologist", first_name="Ada", last_name="Reader")
    revision = reports.save_revision(study=study, author=reader, text=text, parent_id=None)
    reports.sign_review(study=study, reader=reader, radpeer="1")
    return signed_report(revision.pk)


def _patient(bundle: dict) -> tuple[dict, dict]:
    (entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    return entry["resource"], entry.get("request", {})


@pytest.mark.parametrize(
    ("issuer", "system", "pid_3"),
    [
        ("HOSP_A", "urn:spinereview:patient-id-issuer:HOSP_A", "PAT-1^^^HOSP_A"),
        ("1.2.826.0.1.3680043.10.1", "urn:oid:1.2.826.0.1.3680043.10.1", "PAT-1^^^1.2.826.0.1.3680043.10.1"),
        ("St Mary & Co", "urn:spinereview:patient-id-issuer:St%20Mary%20%26%20Co", "PAT-1^^^St Mary \\T\\ Co"),
        ("", "urn:spinereview:patient-id", "PAT-1"),
    ],
)
def test_hl7_pid_3_and_the_fhir_patient_identifier_carry_the_issuer(issuer, system, pid_3) -> None:  # type: ignore[no-untyped-def]
    report = _signed(StudyFactory(patient_id="PAT-1", patient_id_issuer=issuer, study_date=dt.date(2024, 6, 1)))

    oru = build_oru(report, control_id="SR1")
    (pid,) = [line for line in oru.split("\r") if line.startswith("PID|")]
    assert pid.split("|")[3] == pid_3
    msg = parse_message(oru, find_groups=False)
    assert msg.pid.pid_3.cx_1.value == "PAT-1"
    assert msg.pid.pid_3.cx_4.value == pid_3.partition("^^^")[2]  # assigning authority

    bundle = build_bundle(report, identities=True, bundle_type="transaction")  # validated (fhir.resources)
    patient, request = _patient(bundle)
    assert patient["identifier"] == [
        {"system": system, "value": "PAT-1", **({"assigner": {"display": issuer}} if issuer else {})}
    ]
    assert request["ifNoneExist"].startswith("identifier=")
    assert unquote(request["ifNoneExist"].removeprefix("identifier=")) == f"{system}|PAT-1"
    # without identities (a reader's own bundle) neither id nor issuer leaves
    patient, _ = _patient(build_bundle(report, identities=False))
    assert "identifier" not in patient


def test_a_site_maps_its_issuer_to_the_system_its_fhir_server_knows(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SPINEREVIEW_FHIR_PATIENT_ID_SYSTEMS = {"HOSP_A": "https://hospital-a.example/fhir/mrn"}
    report = _signed(StudyFactory(patient_id="PAT-1", patient_id_issuer="HOSP_A"))
    patient, _ = _patient(build_bundle(report, identities=True))
    assert patient["identifier"][0]["system"] == "https://hospital-a.example/fhir/mrn"
    other = _signed(StudyFactory(patient_id="PAT-1", patient_id_issuer="HOSP_B"))
    assert _patient(build_bundle(other, identities=True))[0]["identifier"][0]["system"] != (
        "https://hospital-a.example/fhir/mrn"
    )
