"""Allow/deny matrix: every endpoint × every role, asserted on the real URL routing."""

from __future__ import annotations

import pytest

from ml.conditions import CONDITION_KEYS
from reviewer.models import ModelVersion
from tests.factories import DraftFactory, FindingFactory, StudyFactory

pytestmark = pytest.mark.django_db

ROLES = ("radiologist", "annotator", "researcher", "admin")
OK = {200, 201}


@pytest.fixture
def world(role_user):  # type: ignore[no-untyped-def]
    from reviewer.models import LabelExtraction

    draft = DraftFactory()
    FindingFactory(draft=draft)
    extraction = LabelExtraction.objects.create(
        study=draft.study, source="historical", report_text="No stenosis.", extractor="rules@1",
        labels={"canal_stenosis": 0},
    )  # fmt: skip
    version = ModelVersion.objects.create(name="spinefm-tiny", version="1")
    return {"study": draft.study, "extraction": extraction, "version": version}


def _requests(world):  # type: ignore[no-untyped-def]
    sid = world["study"].pk
    return {
        "list studies": ("get", "/api/studies/", None),
        "study detail": ("get", f"/api/studies/{sid}/", None),
        "study drafts": ("get", f"/api/studies/{sid}/drafts/", None),
        "study jobs": ("get", f"/api/studies/{sid}/jobs/", None),
        "read revisions": ("get", f"/api/studies/{sid}/revisions/", None),
        "save revision": ("post", f"/api/studies/{sid}/revisions/", {"text": "Edited.", "parent": None}),
        "study reviews": ("get", f"/api/studies/{sid}/reviews/", None),
        "redraft": ("post", f"/api/studies/{sid}/redraft/", {"pipeline_version": "x@2"}),
        "list reviews": ("get", "/api/reviews/", None),
        "label extractions": ("get", "/api/label-extractions/", None),
        "read confirmations": ("get", "/api/label-confirmations/", None),
        "confirm labels": (
            "post",
            "/api/label-confirmations/",
            {"extraction": world["extraction"].pk, "labels": dict.fromkeys(CONDITION_KEYS, 0)},
        ),
        "model versions": ("get", "/api/model-versions/", None),
        "create model version": ("post", "/api/model-versions/", {"name": "m", "version": "2"}),
        "activate model version": ("post", f"/api/model-versions/{world['version'].pk}/activate/", None),
        "audit log": ("get", "/api/audit-events/", None),
        "openapi schema": ("get", "/api/schema/", None),
    }


R, A, S, AD = "radiologist", "annotator", "researcher", "admin"
# Researchers read none of the study, review, revision or label endpoints: they carry UIDs, dates,
# report text and user names; researchers work from the pseudonymised statistics and exports.
ALLOWED = {
    "list studies": {R, A, AD},
    "study detail": {R, A, AD},
    "study drafts": {R, AD},
    "study jobs": {R, AD},
    "read revisions": {R, AD},
    "save revision": {R, AD},
    "study reviews": {R, AD},
    "redraft": {AD},
    "list reviews": {R, AD},
    "label extractions": {A, AD},
    "read confirmations": {A, AD},
    "confirm labels": {A, AD},
    "model versions": {R, A, S, AD},
    "create model version": {AD},
    "activate model version": {AD},
    "audit log": {AD},
    "openapi schema": {R, A, S, AD},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(ALLOWED))
def test_role_matrix(endpoint, role, world, api_as):  # type: ignore[no-untyped-def]
    method, url, data = _requests(world)[endpoint]
    client = api_as(role)
    response = getattr(client, method)(url, data, format="json")
    if role in ALLOWED[endpoint]:
        assert response.status_code in OK, (endpoint, role, response.status_code, getattr(response, "data", None))
    else:
        assert response.status_code == 403, (endpoint, role, response.status_code)


@pytest.mark.parametrize("endpoint", sorted(ALLOWED))
def test_anonymous_users_are_refused_everywhere(endpoint, world, api_as):  # type: ignore[no-untyped-def]
    method, url, data = _requests(world)[endpoint]
    response = getattr(api_as(None), method)(url, data, format="json")
    assert response.status_code in (401, 403)


@pytest.mark.parametrize(("role", "sees_identity"), [(R, False), (A, False), (S, False), (AD, True)])
def test_only_admins_see_patient_identities(role, sees_identity, api_as):  # type: ignore[no-untyped-def]
    study = StudyFactory(patient_name="SYNTHETIC^ALICE", patient_id="SYN-0042")
    body = api_as(role).get(f"/api/studies/{study.pk}/").json()
    assert ("patient_name" in body) is sees_identity
    assert ("SYN-0042" in str(body)) is sees_identity


def test_session_writes_need_the_csrf_token(world, api_as):  # type: ignore[no-untyped-def]
    client = api_as(R, csrf=True)
    response = client.post(f"/api/studies/{world['study'].pk}/revisions/", {"text": "x", "parent": None}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_scripts_authenticate_with_a_token(world, role_user):  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    user = role_user(S)
    user.set_password("secret-pw")
    user.save()
    client = APIClient()
    token = client.post("/api/auth/token/", {"username": user.username, "password": "secret-pw"}).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/exports/reviews.csv").status_code == 200
    denied = client.post(f"/api/studies/{world['study'].pk}/revisions/", {"text": "x", "parent": None}, format="json")
    assert denied.status_code == 403


def test_study_list_is_filtered_and_paginated(api_as):  # type: ignore[no-untyped-def]
    for _ in range(3):
        StudyFactory(status="signed")
    StudyFactory(status="awaiting_draft")
    body = api_as(R).get("/api/studies/", {"status": "signed"}).json()
    assert body["count"] == 3
    assert {s["status"] for s in body["results"]} == {"signed"}


def test_label_confirmations_through_the_api_are_complete_and_corrected_not_duplicated(world, api_as):  # type: ignore[no-untyped-def]
    from reviewer.models import AuditEvent, LabelConfirmation, LabelExtraction

    client = api_as("annotator")
    url = "/api/label-confirmations/"
    ext = world["extraction"].pk
    partial = client.post(url, {"extraction": ext, "labels": {"canal_stenosis": 0}}, format="json")
    assert partial.status_code == 400
    assert "missing" in str(partial.data["labels"])
    bad = client.post(url, {"extraction": ext, "labels": {**dict.fromkeys(CONDITION_KEYS, 0), "canal_stenosis": 2}},
                      format="json")  # fmt: skip
    assert bad.status_code == 400
    draft_ext = LabelExtraction.objects.create(
        study=world["study"], source="draft", report_text="x", extractor="rules@1", labels={}
    )
    wrong_source = client.post(url, {"extraction": draft_ext.pk, "labels": dict.fromkeys(CONDITION_KEYS, 0)},
                               format="json")  # fmt: skip
    assert wrong_source.status_code == 400
    assert "signed and historical" in str(wrong_source.data)
    assert not LabelConfirmation.objects.exists()

    first = client.post(url, {"extraction": ext, "labels": dict.fromkeys(CONDITION_KEYS, 0)}, format="json")
    assert first.status_code == 201
    again = client.post(url, {"extraction": ext, "labels": {**dict.fromkeys(CONDITION_KEYS, 0), "canal_stenosis": 1}},
                        format="json")  # fmt: skip
    assert again.status_code == 201
    assert again.data["id"] == first.data["id"]
    (row,) = LabelConfirmation.objects.all()
    assert row.labels["canal_stenosis"] == 1
    events = AuditEvent.objects.filter(object_type="LabelConfirmation").order_by("at", "id")
    actions = list(events.values_list("action", flat=True))
    assert actions == ["labels.confirmed", "labels.corrected"]
