"""Review workflow: role matrix of every page and endpoint added for it, reader assignment,
blinding, arbitration of RADPEER 2b/3a/3b, the worklist."""

from __future__ import annotations

import pytest

from reviewer.models import Arbitration, Assignment, DraftJob, LabelExtraction, ModelVersion, Review, Study
from reviewer.services.reports import save_revision, sign_review
from tests.factories import DraftFactory, DraftJobFactory, FindingFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db

ROLES = ("radiologist", "annotator", "researcher", "admin")
R, A, S, AD = "radiologist", "annotator", "researcher", "admin"


def signed_review(*, draft, reader=None, radpeer="1", comment="", text="IMPRESSION: 1. Small protrusion at L4-5."):  # type: ignore[no-untyped-def]
    reader = reader or UserFactory(role=R)
    head = draft.study.revisions.filter(is_conflict=False, author=reader).order_by("-number").first()
    revision = save_revision(study=draft.study, author=reader, text=text, parent_id=head.pk if head else None)
    return sign_review(study=draft.study, reader=reader, radpeer=radpeer, comment=comment, revision_id=revision.pk)


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    version = ModelVersion.objects.create(name="spinefm-agents", version="7")
    draft = DraftFactory(
        model_version=version,
        study__patient_name="SYNTHETIC^CAROL",
        analysis={"pipeline_version": "spinefm-agents@7", "model_versions": {"report": "r7"},
                  "agents": [{"name": "report", "version": "r7", "seconds": 1.0}]},
    )  # fmt: skip
    FindingFactory(draft=draft)
    review = signed_review(draft=draft, radpeer="2b", comment="missed extrusion")
    extraction = LabelExtraction.objects.create(
        study=draft.study, revision=review.signed_revision, source="signed_report", report_text="No stenosis.",
        extractor="rules@1", labels={"canal_stenosis": 0}, confidence={"canal_stenosis": 0.9},
    )  # fmt: skip
    return {"study": draft.study, "draft": draft, "review": review, "extraction": extraction,
            "arbitration": review.arbitration, "reader": UserFactory(role=R)}  # fmt: skip


def _api(world):  # type: ignore[no-untyped-def]
    sid = world["study"].pk
    return {
        "list assignments": ("get", "/api/assignments/", None),
        "assign readers": ("post", "/api/assignments/", {"study": sid, "readers": [world["reader"].pk]}),
        "set blinding": ("post", f"/api/studies/{sid}/blinding/", {"blinded": True}),
        "list arbitrations": ("get", "/api/arbitrations/", None),
        "resolve arbitration": (
            "post",
            f"/api/arbitrations/{world['arbitration'].pk}/resolve/",
            {"decision": "2a", "comment": "agree, minor"},
        ),
        "label queue": ("get", "/api/label-queue/", None),
        "statistics": ("get", "/api/stats/", None),
        "export csv": ("get", "/api/exports/reviews.csv", None),
        "export parquet": ("get", "/api/exports/reviews.parquet", None),
        "plot": ("get", "/api/stats/plots/radpeer_distribution.png", None),
        "recompute edit distances": ("post", "/api/edit-distances/recompute/", {}),
    }


API_ALLOWED = {
    "list assignments": {R, AD},
    "assign readers": {AD},
    "set blinding": {AD},
    "list arbitrations": {R, AD},
    "resolve arbitration": {R, AD},
    "label queue": {A, AD},
    "statistics": {S, AD},
    "export csv": {S, AD},
    "export parquet": {S, AD},
    "plot": {S, AD},
    "recompute edit distances": {AD},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(API_ALLOWED))
def test_api_role_matrix(endpoint, role, world, api_as):  # type: ignore[no-untyped-def]
    method, url, data = _api(world)[endpoint]
    response = getattr(api_as(role), method)(url, data, format="json")
    if role in API_ALLOWED[endpoint]:
        assert response.status_code in (200, 201), (endpoint, role, response.status_code, response.content[:300])
    else:
        assert response.status_code == 403, (endpoint, role, response.status_code)


@pytest.mark.parametrize("endpoint", sorted(API_ALLOWED))
def test_anonymous_users_get_no_workflow_endpoint(endpoint, world, api_as):  # type: ignore[no-untyped-def]
    method, url, data = _api(world)[endpoint]
    assert getattr(api_as(None), method)(url, data, format="json").status_code in (401, 403)


def _pages(world):  # type: ignore[no-untyped-def]
    return {
        "worklist": "/",
        "assign": f"/studies/{world['study'].pk}/assign/",
        "arbitration queue": "/arbitration/",
        "arbitration detail": f"/arbitration/{world['arbitration'].pk}/",
        "annotation queue": "/labels/",
        "label confirmation": f"/labels/{world['extraction'].pk}/",
        "statistics": "/statistics/",
    }


PAGE_ALLOWED = {
    "worklist": {R, A, AD},  # researchers are sent to the statistics: study rows carry UIDs
    "assign": {AD},
    "arbitration queue": {R, AD},
    "arbitration detail": {R, AD},
    "annotation queue": {A, AD},
    "label confirmation": {A, AD},
    "statistics": {S, AD},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", sorted(PAGE_ALLOWED))
def test_page_role_matrix(page, role, world, client, role_user):  # type: ignore[no-untyped-def]
    client.force_login(role_user(role))
    response = client.get(_pages(world)[page])
    if (page, role) == ("worklist", S):
        assert (response.status_code, response["Location"]) == (302, "/statistics/")
        return
    assert response.status_code == (200 if role in PAGE_ALLOWED[page] else 403), (page, role, response.status_code)


@pytest.mark.parametrize("page", sorted(PAGE_ALLOWED))
def test_anonymous_users_are_sent_to_the_login_page(page, world, client):  # type: ignore[no-untyped-def]
    response = client.get(_pages(world)[page])
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- identities and blinding --------------------------------------------------------------------


@pytest.mark.parametrize(("role", "sees"), [(R, False), (A, False), (S, False), (AD, True)])
def test_only_admins_see_patient_and_reader_identities_on_pages(role, sees, world, client, role_user):  # type: ignore[no-untyped-def]
    Assignment.objects.create(study=world["study"], reader=world["reader"])
    client.force_login(role_user(role))
    html = client.get("/").content.decode()
    assert ("SYNTHETIC^CAROL" in html) is sees
    assert (world["reader"].username in html) is sees
    if role in (S, AD):
        stats_html = client.get("/statistics/").content.decode()
        assert "SYNTHETIC^CAROL" not in stats_html
        assert (world["review"].reader.username in stats_html) is sees


def test_text_search_matches_identities_for_admins_only(world, client, role_user):  # type: ignore[no-untyped-def]
    for role, expected in ((R, 0), (AD, 1)):
        client.force_login(role_user(role))
        page = client.get("/", {"q": "CAROL"}).context["page"]
        assert page.paginator.count == expected, role


def test_blinded_readers_see_no_model_identity(world, api_as):  # type: ignore[no-untyped-def]
    study = world["study"]
    sid = study.pk
    admin = api_as(AD)
    assert admin.post(f"/api/studies/{sid}/blinding/", {"blinded": True}, format="json").json() == {"blinded": True}
    reader = api_as(R)
    draft = reader.get(f"/api/studies/{sid}/drafts/").json()[0]
    assert draft["model_version"] is None
    assert "pipeline_version" not in draft["analysis"]
    assert "model_versions" not in draft["analysis"]
    assert all("version" not in a for a in draft["analysis"]["agents"])
    assert reader.get(f"/api/studies/{sid}/jobs/").json()[0]["pipeline_version"] is None
    seen = admin.get(f"/api/studies/{sid}/drafts/").json()[0]  # the admin who set it up sees the model
    assert seen["model_version"] == "spinefm-agents@7"
    assert seen["analysis"]["pipeline_version"] == "spinefm-agents@7"
    # researchers read no drafts at all (report text, series UIDs): the model is in their exports
    assert api_as(S).get(f"/api/studies/{sid}/drafts/").status_code == 403
    admin.post(f"/api/studies/{sid}/blinding/", {"blinded": False}, format="json")
    assert reader.get(f"/api/studies/{sid}/drafts/").json()[0]["model_version"] == "spinefm-agents@7"


def test_readers_of_a_blinded_study_see_no_other_review(world, api_as):  # type: ignore[no-untyped-def]
    world["study"].blinded = True
    world["study"].save()
    other = api_as(R)
    signed_review(draft=world["draft"], reader=other.user, radpeer="1")
    reviews = other.get(f"/api/studies/{world['study'].pk}/reviews/").json()
    assert [r["reader"] for r in reviews] == [other.user.username]


# --- assignment ------------------------------------------------------------------------------------


def test_admin_assigns_several_readers_and_the_worklist_filters_mine(world, api_as, client):  # type: ignore[no-untyped-def]
    alice, bob = UserFactory(role=R), UserFactory(role=R)
    other = StudyFactory()
    admin = api_as(AD)
    response = admin.post("/api/assignments/", {"study": other.pk, "readers": [alice.pk, bob.pk]}, format="json")
    assert response.status_code == 201
    assert sorted(a["reader"] for a in response.json()) == sorted([alice.username, bob.username])
    again = admin.post("/api/assignments/", {"study": other.pk, "readers": [alice.pk]}, format="json")
    assert again.status_code == 201
    assert Assignment.objects.filter(study=other).count() == 2
    client.force_login(alice)
    mine = client.get("/", {"mine": "1"}).context["page"]
    assert [s.pk for s in mine] == [other.pk]
    assert client.get("/").context["page"].paginator.count == Study.objects.count()
    own = api_as(R)
    own_assignments = own.get("/api/assignments/").json()["results"]
    assert own_assignments == []  # a reader sees only their own assignments


def test_only_radiologists_can_be_assigned(world, api_as):  # type: ignore[no-untyped-def]
    annotator = UserFactory(role=A)
    response = api_as(AD).post(
        "/api/assignments/", {"study": world["study"].pk, "readers": [annotator.pk, world["reader"].pk]}, format="json"
    )
    assert response.status_code == 400
    assert "radiologists" in str(response.json())
    assert not Assignment.objects.filter(study=world["study"]).exists()  # nothing half-assigned


def test_assignment_page_assigns_and_sets_blinding(world, client, role_user):  # type: ignore[no-untyped-def]
    client.force_login(role_user(AD))
    url = f"/studies/{world['study'].pk}/assign/"
    response = client.post(url, {"readers": [world["reader"].pk], "blinded": "on"})
    assert response.status_code == 302
    world["study"].refresh_from_db()
    assert world["study"].blinded is True
    assert Assignment.objects.filter(study=world["study"], reader=world["reader"]).exists()
    client.post(url, {"unassign": world["reader"].pk})
    assert not Assignment.objects.filter(study=world["study"]).exists()


# --- arbitration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("score", "opens"), [("1", False), ("2a", False), ("2b", True), ("3a", True), ("3b", True)])
def test_signing_opens_arbitration_for_2b_3a_3b(score, opens):  # type: ignore[no-untyped-def]
    review = signed_review(draft=DraftFactory(), radpeer=score, comment="why")
    assert Arbitration.objects.filter(review=review).exists() is opens


def test_an_arbiter_resolves_with_decision_and_comment(world, api_as):  # type: ignore[no-untyped-def]
    arbiter = api_as(R)
    url = f"/api/arbitrations/{world['arbitration'].pk}/resolve/"
    assert arbiter.post(url, {"decision": "3b"}, format="json").status_code == 400  # comment required
    ok = arbiter.post(url, {"decision": "3b", "comment": "clinically significant miss"}, format="json")
    assert ok.status_code == 200, ok.json()
    arbitration = Arbitration.objects.get(pk=world["arbitration"].pk)
    assert (arbitration.state, arbitration.decision, arbitration.arbiter_id) == ("resolved", "3b", arbiter.user.pk)
    assert Review.objects.get(pk=world["review"].pk).radpeer == "2b"  # the reader's score is kept
    assert arbiter.post(url, {"decision": "1", "comment": "changed my mind"}, format="json").status_code == 400


def test_readers_cannot_arbitrate_their_own_or_their_studies_reviews(world, client, api_as):  # type: ignore[no-untyped-def]
    own = api_as(None)
    own.force_login(world["review"].reader)
    assert own.get("/api/arbitrations/").json()["results"] == []
    url = f"/api/arbitrations/{world['arbitration'].pk}/resolve/"
    assert own.post(url, {"decision": "1", "comment": "mine is fine"}, format="json").status_code == 404
    Assignment.objects.create(study=world["study"], reader=world["reader"])
    client.force_login(world["reader"])
    assert client.get(f"/arbitration/{world['arbitration'].pk}/").status_code == 404
    assert Arbitration.objects.get(pk=world["arbitration"].pk).state == "open"


def test_arbitration_page_resolves(world, client, role_user):  # type: ignore[no-untyped-def]
    client.force_login(role_user(R))
    assert b"missed extrusion" in client.get("/arbitration/").content
    response = client.post(f"/arbitration/{world['arbitration'].pk}/", {"decision": "2a", "comment": "minor"})
    assert response.status_code == 302
    assert Arbitration.objects.get(pk=world["arbitration"].pk).decision == "2a"


# --- worklist ---------------------------------------------------------------------------------------


def test_worklist_shows_job_state_and_failure_reason(client, role_user):  # type: ignore[no-untyped-def]
    drafting = StudyFactory(status="drafting", description="DRAFTING STUDY")
    DraftJobFactory(study=drafting, state=DraftJob.State.ENCODING)
    StudyFactory(status="failed", status_reason="no T1 or T2 series", description="FAILED STUDY")
    client.force_login(role_user(R))
    html = client.get("/").content.decode()
    assert "encoding" in html
    assert "no T1 or T2 series" in html
    ready = client.get("/", {"status": "failed"}).context["page"]
    assert [s.description for s in ready] == ["FAILED STUDY"]


def test_worklist_links_studies_to_the_viewer(world, client, role_user):  # type: ignore[no-untyped-def]
    client.force_login(role_user(R))
    assert f"/viewer/open/{world['study'].study_uid}/" in client.get("/").content.decode()


def test_worklist_query_count_does_not_grow_with_studies(client, role_user, django_assert_max_num_queries):  # type: ignore[no-untyped-def]
    reader = role_user(R)
    for i in range(30):
        study = StudyFactory(status="drafting" if i % 2 else "draft_ready")
        DraftJobFactory(study=study, state="encoding")
        Assignment.objects.create(study=study, reader=reader)
    client.force_login(reader)
    with django_assert_max_num_queries(10):
        assert client.get("/", {"mine": "1"}).status_code == 200


def test_recompute_edit_distances_restores_them(world, api_as):  # type: ignore[no-untyped-def]
    review = world["review"]
    expected = Review.objects.get(pk=review.pk).edit_distance
    Review.objects.filter(pk=review.pk).update(edit_distance={})
    assert api_as(AD).post("/api/edit-distances/recompute/", {"reviews": [review.pk]}, format="json").json() == {
        "updated": 1
    }
    again = Review.objects.get(pk=review.pk).edit_distance
    assert again["word_levenshtein"] == expected["word_levenshtein"]
    assert again["revision_id"] == review.signed_revision_id
    assert again["draft_id"] == world["draft"].pk
    assert "impression" in again["sections"]


def test_recompute_command_updates_every_signed_review(world, capsys):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    other = signed_review(draft=DraftFactory(), radpeer="1")
    Review.objects.update(edit_distance={})
    call_command("recompute_edit_distances")
    assert "recomputed 2 review(s)" in capsys.readouterr().out
    for review in Review.objects.filter(pk__in=[world["review"].pk, other.pk]):
        assert review.edit_distance["method"] == "v3"
        assert review.edit_distance["revision_id"] == review.signed_revision_id
