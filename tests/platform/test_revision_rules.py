"""What a report save may name and contain: the parent must be a revision of the caller's own
report on this study (any other id is a 400, never a 500), a report has a maximum length, and
after sign-off a change is an addendum (reason, author, time), never a silent edit."""

from __future__ import annotations

import pytest
from django.test import override_settings

from reviewer.models import AuditEvent, ReportRevision, Review
from tests.factories import DraftFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft():  # type: ignore[no-untyped-def]
    return DraftFactory(text="IMPRESSION: 1. Mild disc bulge at L4-5.")


def save(client, study, text, parent, **extra):  # type: ignore[no-untyped-def]
    return client.post(f"/api/studies/{study.pk}/revisions/", {"text": text, "parent": parent, **extra}, format="json")


@pytest.mark.parametrize("parent", [999999, -5, 0, 2**70, 2**63])
def test_a_parent_that_is_no_revision_is_a_400_and_nothing_is_stored(parent, draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    response = save(client, draft.study, "text", parent)
    assert response.status_code == 400, response.content[:300]
    assert "parent" in response.json()
    assert not ReportRevision.objects.exists()


def test_a_parent_from_another_study_is_refused(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    elsewhere = save(client, DraftFactory().study, "other study", None).json()
    response = save(client, draft.study, "text", elsewhere["id"])
    assert response.status_code == 400
    assert "parent" in response.json()
    assert not ReportRevision.objects.filter(study=draft.study).exists()


def test_a_parent_from_another_readers_chain_is_refused(draft, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    theirs = save(alice, draft.study, "alice's report", None).json()
    response = save(bob, draft.study, "bob builds on alice", theirs["id"])
    assert response.status_code == 400
    assert "alice" not in str(response.json())  # the refusal says nothing about the other chain
    assert not ReportRevision.objects.filter(author=bob.user).exists()


def test_signing_an_older_revision_of_your_own_report_is_refused(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    first = save(client, draft.study, "v1", None).json()
    save(client, draft.study, "v2", first["id"])
    response = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "1", "revision": first["id"]})
    assert response.status_code == 400
    assert "revision" in response.json()


@override_settings(SPINEREVIEW_MAX_REPORT_CHARS=50_000)
def test_a_report_longer_than_the_limit_is_refused_with_a_clear_message(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    too_long = save(client, draft.study, "x" * 50_001, None)
    assert too_long.status_code == 400
    message = str(too_long.json()["text"])
    assert "50001" in message
    assert "50000" in message
    assert not ReportRevision.objects.exists()
    assert save(client, draft.study, "x" * 50_000, None).status_code == 201


def test_after_sign_off_a_plain_save_is_a_409_that_asks_for_an_addendum(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    rev = save(client, draft.study, "signed text", None).json()
    assert client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "1"}).status_code == 201
    response = save(client, draft.study, "silently changed", rev["id"])
    assert response.status_code == 409
    assert "addendum" in response.json()["detail"].lower()
    assert not ReportRevision.objects.filter(text="silently changed").exists()


def test_after_sign_off_a_change_is_an_addendum_with_reason_author_and_time(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    rev = save(client, draft.study, "signed text", None).json()
    client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "1"})
    no_reason = save(client, draft.study, "signed text + addendum", rev["id"], reason="   ")
    assert no_reason.status_code == 409  # a blank reason is no reason
    amended = "signed text\nADDENDUM: L5-S1 also narrowed."
    response = save(client, draft.study, amended, rev["id"], reason="missed level")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["is_addendum"] is True
    assert body["addendum_reason"] == "missed level"
    assert body["author"] == client.user.username
    assert body["created_at"]
    assert body["parent"] == rev["id"]
    review = Review.objects.get(study=draft.study)
    assert review.signed_revision_id == rev["id"]  # the signature still points at what was signed
    assert ReportRevision.objects.get(pk=rev["id"]).text == "signed text"
    assert AuditEvent.objects.filter(action="revision.addendum", object_id=str(body["id"])).exists()
    listed = client.get(f"/api/studies/{draft.study.pk}/revisions/").json()
    assert [r["is_addendum"] for r in listed] == [False, True]


def test_a_reason_before_sign_off_is_refused(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    response = save(client, draft.study, "text", None, reason="why")
    assert response.status_code == 400
    assert "reason" in response.json()
