"""Report revisions (every save kept, conflicts never lose text) and RADPEER sign-off."""

from __future__ import annotations

import pytest

from reviewer.models import AuditEvent, ReportRevision, Review
from tests.factories import DraftFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft():  # type: ignore[no-untyped-def]
    return DraftFactory(text="IMPRESSION: 1. Mild disc bulge at L4-5.")


def save(client, study, text, parent):  # type: ignore[no-untyped-def]
    return client.post(f"/api/studies/{study.pk}/revisions/", {"text": text, "parent": parent}, format="json")


def test_every_save_is_kept_with_author_and_parent(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    first = save(client, draft.study, "v1", None).json()
    second = save(client, draft.study, "v2", first["id"]).json()
    revisions = client.get(f"/api/studies/{draft.study.pk}/revisions/").json()
    assert [r["text"] for r in revisions] == ["v1", "v2"]
    assert second["parent"] == first["id"]
    assert revisions[0]["author"] == client.user.username
    assert revisions[0]["draft"] == draft.pk
    assert AuditEvent.objects.filter(action="revision.saved").count() == 2


def test_two_saves_of_one_report_at_once_lose_nothing(draft, api_as):  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    tab1 = api_as("radiologist")
    tab2 = APIClient()  # the same reader in a second window
    tab2.force_login(tab1.user)
    base = save(tab1, draft.study, "base", None).json()
    assert save(tab1, draft.study, "first tab's edit", base["id"]).status_code == 201
    conflict = save(tab2, draft.study, "second tab's edit", base["id"])  # edited the stale base
    assert conflict.status_code == 409
    body = conflict.json()
    assert body["head"]["text"] == "first tab's edit"
    assert body["saved"]["text"] == "second tab's edit"
    assert body["saved"]["is_conflict"] is True
    texts = set(ReportRevision.objects.filter(study=draft.study).values_list("text", flat=True))
    assert texts == {"base", "first tab's edit", "second tab's edit"}


def test_revisions_and_drafts_are_immutable(draft, role_user):  # type: ignore[no-untyped-def]
    from reviewer.services.reports import save_revision

    revision = save_revision(study=draft.study, author=role_user("radiologist"), text="x", parent_id=None)
    revision.text = "rewritten history"
    with pytest.raises(ValueError, match="immutable"):
        revision.save()
    draft.text = "changed"
    with pytest.raises(ValueError, match="immutable"):
        draft.save()


def test_sign_off_stores_radpeer_and_edit_distance(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    rev = save(client, draft.study, "IMPRESSION: 1. Small disc protrusion at L4-5.", None).json()
    response = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "2a", "revision": rev["id"]})
    assert response.status_code == 201, response.json()
    review = Review.objects.get(study=draft.study)
    assert review.radpeer == "2a"
    assert review.signed_revision_id == rev["id"]
    assert review.edit_distance["word_levenshtein"] == 2  # mild→small, bulge→protrusion
    draft.study.refresh_from_db()
    assert draft.study.status == "signed"
    again = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "1"})
    assert again.status_code == 400


@pytest.mark.parametrize("score", ["2b", "3a", "3b"])
def test_significant_discrepancies_require_a_comment(score, draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    save(client, draft.study, "final", None)
    response = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": score})
    assert response.status_code == 400
    assert "comment" in response.json()
    ok = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": score, "comment": "missed extrusion"})
    assert ok.status_code == 201
    assert ok.json()["needs_arbitration"] is True


def test_readers_are_blinded_to_each_others_reviews(draft, api_as):  # type: ignore[no-untyped-def]
    alice, bob, admin = api_as("radiologist"), api_as("radiologist"), api_as("admin")
    for client in (alice, bob):
        rev = save(client, draft.study, "final", None).json()  # each reader's own chain
        signed = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "1", "revision": rev["id"]})
        assert signed.status_code == 201
    assert [r["reader"] for r in alice.get("/api/reviews/").json()["results"]] == [alice.user.username]
    assert len(admin.get("/api/reviews/").json()["results"]) == 2
    # researchers read reviews only as pseudonymous statistics, never through this endpoint
    assert api_as("researcher").get("/api/reviews/").status_code == 403


def test_signing_a_conflicting_revision_is_refused(draft, api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    base = save(client, draft.study, "base", None).json()
    save(client, draft.study, "head", base["id"])
    stale = save(client, draft.study, "stale", base["id"]).json()["saved"]
    response = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "1", "revision": stale["id"]})
    assert response.status_code == 400
    assert "revision" in response.json()
