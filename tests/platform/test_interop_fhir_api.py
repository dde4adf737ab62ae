"""GET /api/studies/<id>/fhir/: a valid FHIR Bundle for the signing reader (no identities) and
admins (identities); another reader of the study, a researcher and anonymous callers get nothing."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.bundle import Bundle

from reviewer.services import reports
from tests.factories import DraftFactory, StudyFactory

pytestmark = pytest.mark.django_db

TEXT = "COMPARISON: None.\nSPINAL CANAL: Severe canal stenosis at L3-4.\nIMPRESSION: Severe canal stenosis at L3-4."


def test_fhir_bundle_for_the_signing_reader_and_admins_only(api_as) -> None:  # type: ignore[no-untyped-def]
    study = StudyFactory(blinded=True, accession_number="ACC1")
    DraftFactory(study=study, text=TEXT)
    signer, other = api_as("radiologist"), api_as("radiologist")
    rev = reports.save_revision(study=study, author=signer.user, text=TEXT, parent_id=None)
    reports.sign_review(study=study, reader=signer.user, radpeer="1")
    url = f"/api/studies/{study.pk}/fhir/"

    mine = signer.get(url)
    assert mine.status_code == 200, mine.content
    bundle = Bundle.model_validate(mine.json())
    report = bundle.entry[0].resource
    assert (report.status, report.conclusion) == ("final", "Severe canal stenosis at L3-4.")
    assert bundle.entry[1].resource.code.coding[0].code == "76107001"
    patient = bundle.entry[-1].resource
    assert patient.identifier is None, "readers see no identities"
    assert patient.name is None
    assert study.patient_id not in mine.content.decode()

    assert other.get(url).status_code == 404, "another reader: not even whether someone signed"
    assert api_as("researcher").get(url).status_code == 403
    assert api_as(None).get(url).status_code in (401, 403)

    admin = api_as("admin").get(url)
    assert admin.status_code == 200
    assert Bundle.model_validate(admin.json()).entry[-1].resource.identifier[0].value == study.patient_id

    # an addendum: the Bundle becomes "amended" with the new text
    reports.save_revision(study=study, author=signer.user, text=TEXT + "\nAddendum: L4-5 too.", parent_id=rev.pk,
                          reason="level")  # fmt: skip
    amended = Bundle.model_validate(signer.get(url).json()).entry[0].resource
    assert amended.status == "amended"
