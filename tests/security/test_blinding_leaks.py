"""A blinded, assigned second reader probes every API a radiologist can reach for the first
reader's work before signing: report text, name, RADPEER comment, reader boxes, the fact that
the study was signed. Nothing may come back. (The DICOMweb side of blinding, the AI SR naming
no model, is in tests/platform/test_blinding.py.)"""

from __future__ import annotations

import pytest

from reviewer.models import Arbitration, Assignment, StructuredReport
from tests.factories import DraftFactory

pytestmark = pytest.mark.django_db

SECRET_TEXT = "IMPRESSION: 1. ZQX-SECRET-TEXT extrusion at L5-S1."
SECRET_COMMENT = "ZQX-SECRET-COMMENT missed the extrusion"
SECRET_SR = "ZQX-SECRET-SR"


def test_a_blinded_reader_learns_nothing_of_another_readers_work_from_any_endpoint(api_as):  # type: ignore[no-untyped-def]
    draft = DraftFactory(study__blinded=True)
    study = draft.study
    alice, bob = api_as("radiologist"), api_as("radiologist")
    for reader in (alice, bob):
        Assignment.objects.create(study=study, reader=reader.user)
    base = f"/api/studies/{study.pk}"
    first = alice.post(f"{base}/revisions/", {"text": "draft 1", "parent": None}, format="json").json()
    rev = alice.post(f"{base}/revisions/", {"text": SECRET_TEXT, "parent": first["id"]}, format="json").json()
    signed = alice.post(f"{base}/sign/", {"radpeer": "2b", "comment": SECRET_COMMENT}, format="json")
    assert signed.status_code == 201, signed.json()
    review_id = signed.json()["id"]
    ai = StructuredReport.objects.create(
        study=study, draft=draft, source="ai", sop_instance_uid="1.2.3.1", series_instance_uid="1.2.3",
        series_description="SpineReview AI findings",
    )  # fmt: skip
    StructuredReport.objects.create(
        study=study, draft=draft, parent=ai, author=alice.user, source="reader", sop_instance_uid="1.2.4.1",
        series_instance_uid="1.2.4", series_description=SECRET_SR,
    )  # fmt: skip
    arbitration_id = Arbitration.objects.get(review_id=review_id).pk  # 2b opened one

    probes = [
        ("get", f"{base}/revisions/", None),
        ("get", f"/api/viewer/studies/{study.study_uid}/", None),
        ("get", f"{base}/reviews/", None),
        ("get", "/api/reviews/", None),
        ("get", f"/api/reviews/{review_id}/", None),
        ("get", f"/api/reviews/?study={study.pk}", None),
        ("get", f"{base}/", None),
        ("get", "/api/studies/", None),
        ("get", f"{base}/drafts/", None),
        ("get", f"{base}/jobs/", None),
        ("get", "/api/arbitrations/", None),
        ("get", f"/api/arbitrations/{arbitration_id}/", None),
        ("get", "/api/assignments/", None),
        ("get", f"/api/assignments/?study={study.pk}", None),
        # writes that name alice's revision: the refusal must not echo it
        ("post", f"{base}/revisions/", {"text": "bob", "parent": rev["id"]}),
        ("post", f"{base}/revisions/", {"text": "bob", "parent": first["id"]}),
        ("post", f"{base}/sign/", {"radpeer": "1", "revision": rev["id"]}),
    ]
    secrets = (SECRET_TEXT, "ZQX-SECRET", SECRET_COMMENT, SECRET_SR, alice.user.username)
    leaks = []
    for method, url, data in probes:
        response = getattr(bob, method)(url, data, format="json") if data else getattr(bob, method)(url)
        assert response.status_code < 500, (url, response.status_code)
        body = response.content.decode()
        leaks += [(method, url, s) for s in secrets if s in body]
    assert leaks == []
    # the study is not "signed" for bob while he has not signed (that would tell him alice has)
    assert bob.get(f"{base}/").json()["status"] != "signed"
    assert bob.get("/api/viewer/next-study/").json().get("id") == study.pk
