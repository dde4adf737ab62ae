"""Blinding of multi-reader studies: each reader works on their own revision chain from the AI
draft; a blinded reader sees no other reader's text, name, review, boxes or timing until they
have signed (then: the other signed reports only); signing signs only the signer's own report;
the AI SR served over DICOMweb names no model."""

from __future__ import annotations

import pytest

from reviewer.models import Assignment, ReportRevision, Review, StructuredReport
from reviewer.research import stats
from tests.factories import DraftFactory, UserFactory

pytestmark = pytest.mark.django_db

DRAFT = "FINDINGS:\nL4-5: mild disc bulge.\n\nIMPRESSION:\n1. Mild disc bulge at L4-5."
ALICE = "FINDINGS:\nL4-5: large extrusion compressing the thecal sac.\n\nIMPRESSION:\n1. Alice's secret reading."


@pytest.fixture
def blinded():  # type: ignore[no-untyped-def]
    draft = DraftFactory(text=DRAFT, study__blinded=True)
    return draft


def save(client, study, text, parent=None):  # type: ignore[no-untyped-def]
    return client.post(f"/api/studies/{study.pk}/revisions/", {"text": text, "parent": parent}, format="json")


def viewer(client, study):  # type: ignore[no-untyped-def]
    response = client.get(f"/api/viewer/studies/{study.study_uid}/")
    assert response.status_code == 200
    return response.json()


def test_a_blinded_reader_sees_neither_the_text_nor_the_name_of_another_reader(blinded, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    study = blinded.study
    assert save(alice, study, ALICE).status_code == 201
    listed = bob.get(f"/api/studies/{study.pk}/revisions/")
    assert listed.status_code == 200
    assert listed.json() == []
    context = viewer(bob, study)
    assert context["head_revision"] is None  # bob starts from the AI draft
    for body in (listed.content.decode(), str(context)):
        assert "secret reading" not in body
        assert alice.user.username not in body


def test_each_reader_has_their_own_chain_and_head(blinded, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    study = blinded.study
    a1 = save(alice, study, ALICE).json()
    b1 = save(bob, study, DRAFT + " Bob.").json()  # parent None: bob's chain starts from the draft
    assert b1["number"] == 1  # numbering is per chain: no gap betrays alice's save
    assert save(alice, study, ALICE + " v2", a1["id"]).status_code == 201
    assert save(bob, study, DRAFT + " Bob v2", b1["id"]).status_code == 201  # no conflict with alice
    assert viewer(alice, study)["head_revision"]["text"] == ALICE + " v2"
    assert viewer(bob, study)["head_revision"]["text"] == DRAFT + " Bob v2"
    assert [r["text"] for r in bob.get(f"/api/studies/{study.pk}/revisions/").json()] == [
        DRAFT + " Bob.",
        DRAFT + " Bob v2",
    ]


def test_signing_without_saving_signs_the_ai_draft_as_the_signers_own_report(blinded, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    study = blinded.study
    theirs = save(alice, study, ALICE).json()
    response = bob.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "1"})
    assert response.status_code == 201, response.json()
    review = Review.objects.select_related("signed_revision").get(reader=bob.user)
    assert review.signed_revision_id != theirs["id"]
    assert review.signed_revision.author_id == bob.user.pk
    assert review.signed_revision.text == DRAFT
    assert review.signed_revision.draft_id == blinded.pk
    assert review.edit_distance["word_levenshtein"] == 0
    assert review.edit_distance["revision_id"] == review.signed_revision_id
    assert ReportRevision.objects.get(pk=theirs["id"]).text == ALICE  # alice's report untouched


def test_a_reader_cannot_sign_another_readers_revision(blinded, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    theirs = save(alice, blinded.study, ALICE).json()
    response = bob.post(f"/api/studies/{blinded.study.pk}/sign/", {"radpeer": "1", "revision": theirs["id"]})
    assert response.status_code == 400
    assert not Review.objects.filter(reader=bob.user, signed_at__isnull=False).exists()


def test_edit_distance_and_radpeer_statistics_use_each_readers_own_report(blinded, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    study = blinded.study
    save(alice, study, ALICE)
    assert alice.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "2a"}).status_code == 201
    assert bob.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "1"}).status_code == 201
    rows = {r.reader_id: r for r in stats.review_rows()}
    for client in (alice, bob):
        review = Review.objects.select_related("signed_revision").get(reader=client.user)
        assert review.signed_revision.author_id == client.user.pk
        assert rows[client.user.pk].revision_id == review.signed_revision_id
    assert Review.objects.get(reader=alice.user).edit_distance["word_levenshtein"] > 0
    assert Review.objects.get(reader=bob.user).edit_distance["word_levenshtein"] == 0


def test_after_signing_a_blinded_reader_sees_the_other_signed_reports_only(blinded, api_as):  # type: ignore[no-untyped-def]
    alice, bob, carol = api_as("radiologist"), api_as("radiologist"), api_as("radiologist")
    study = blinded.study
    a1 = save(alice, study, "alice work in progress").json()
    save(alice, study, ALICE, a1["id"])
    assert alice.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "1"}).status_code == 201
    save(carol, study, "carol work in progress")  # carol has not signed
    save(bob, study, "bob's report")
    before = [r["text"] for r in bob.get(f"/api/studies/{study.pk}/revisions/").json()]
    assert before == ["bob's report"]
    assert bob.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "1"}).status_code == 201
    after = {r["text"] for r in bob.get(f"/api/studies/{study.pk}/revisions/").json()}
    assert after == {"bob's report", ALICE}  # alice's signed report; no drafts, nothing of carol
    assert [r["reader"] for r in bob.get(f"/api/studies/{study.pk}/reviews/").json()] == [bob.user.username]
    assert {r["text"] for r in carol.get(f"/api/studies/{study.pk}/revisions/").json()} == {"carol work in progress"}


def test_on_an_unblinded_study_readers_see_each_others_chains(api_as):  # type: ignore[no-untyped-def]
    draft = DraftFactory(text=DRAFT)
    alice, bob = api_as("radiologist"), api_as("radiologist")
    save(alice, draft.study, ALICE)
    save(bob, draft.study, "bob's report")
    assert {r["text"] for r in bob.get(f"/api/studies/{draft.study.pk}/revisions/").json()} == {ALICE, "bob's report"}
    assert viewer(bob, draft.study)["head_revision"]["text"] == "bob's report"  # still bob's own head


def test_a_blinded_reader_gets_neither_another_readers_boxes_nor_name(blinded, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    study = blinded.study
    ai = StructuredReport.objects.create(
        study=study, draft=blinded, source="ai", sop_instance_uid="1.2.3.1", series_instance_uid="1.2.3",
        series_description="SpineReview AI findings",
    )  # fmt: skip
    StructuredReport.objects.create(
        study=study, draft=blinded, parent=ai, author=alice.user, source="reader", sop_instance_uid="1.2.4.1",
        series_instance_uid="1.2.4", series_description=f"SpineReview reader {alice.user.username}",
    )  # fmt: skip
    context = viewer(bob, study)
    assert context["structured_report"]["id"] == ai.pk
    assert alice.user.username not in str(context)
    assert viewer(alice, study)["structured_report"]["author"] == alice.user.username


def test_one_readers_signature_does_not_show_the_others_that_the_study_is_signed(blinded, api_as, client):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    study = blinded.study
    for reader in (alice, bob):
        Assignment.objects.create(study=study, reader=reader.user)
    save(alice, study, ALICE)
    before = bob.get(f"/api/studies/{study.pk}/").json()
    assert alice.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "1"}).status_code == 201
    after = bob.get(f"/api/studies/{study.pk}/").json()
    assert after["status"] != "signed"
    assert (after["status"], after["updated_at"]) == (before["status"], before["updated_at"])  # no trace of it
    assert bob.get("/api/viewer/next-study/").json()["id"] == study.pk  # still waiting for bob
    assert bob.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "1"}).status_code == 201
    assert bob.get(f"/api/studies/{study.pk}/").json()["status"] == "signed"


def test_the_revision_list_shows_a_reader_only_their_own_conflicts(blinded, api_as):  # type: ignore[no-untyped-def]
    alice = api_as("radiologist")
    bob = UserFactory(role="radiologist")
    from reviewer.services.reports import RevisionConflict, save_revision

    first = save_revision(study=blinded.study, author=bob, text="bob 1", parent_id=None)
    save_revision(study=blinded.study, author=bob, text="bob 2", parent_id=first.pk)
    with pytest.raises(RevisionConflict):
        save_revision(study=blinded.study, author=bob, text="bob stale", parent_id=first.pk)
    assert alice.get(f"/api/studies/{blinded.study.pk}/revisions/").json() == []


@pytest.mark.services
def test_the_ai_sr_names_no_model_and_the_database_keeps_the_version(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    from pathlib import Path

    import pydicom

    from reviewer.integrations.sr import load_sr, sr_pipeline_version, write_ai_sr
    from reviewer.integrations.sr_dataset import sr_observer_device
    from tests.dicom_factory import write_study
    from tests.factories import FindingFactory

    study_uid, files = write_study(tmp_path / "dcm")
    for f in files:
        assert empty_orthanc.post("/instances", content=Path(f).read_bytes()).status_code == 200
    header = pydicom.dcmread(files[1], stop_before_pixels=True)
    version = "secret-spinefm-agents@7.3"
    draft = DraftFactory(study__study_uid=study_uid, study__blinded=True, job__pipeline_version=version)
    FindingFactory(
        draft=draft,
        boxes=[{"series_uid": header.SeriesInstanceUID, "sop_uid": header.SOPInstanceUID, "xyxy": [4, 4, 20, 20]}],
        key_slices=[{"series_uid": header.SeriesInstanceUID, "sop_uid": header.SOPInstanceUID, "index": 1}],
    )
    row = write_ai_sr(draft=draft)
    ds = load_sr(study_uid, row.series_instance_uid, row.sop_instance_uid)  # what the proxy serves
    served = str(ds.to_json_dict())
    for token in ("secret-spinefm", version):
        assert token not in served, token
    # the bare version number in no text attribute (numbers such as a box's area may contain
    # "7.3" by chance, so only text is searched)
    texts = [str(e.value) for e in ds.iterall() if e.VR in ("LO", "SH", "LT", "ST", "UT", "UC", "CS")]
    assert not [t for t in texts if "7.3" in t]
    assert version not in ds.SeriesDescription
    assert sr_observer_device(ds) == "SpineReview AI"
    assert sr_pipeline_version(row) == version


def test_a_researcher_reads_no_report_text_through_the_selector(api_as):  # type: ignore[no-untyped-def]
    from reviewer.selectors import revisions_visible_to
    from tests.factories import DraftFactory, UserFactory

    draft = DraftFactory()
    reader = api_as("radiologist")
    saved = reader.post(f"/api/studies/{draft.study.pk}/revisions/", {"text": "t", "parent": None}, format="json")
    assert saved.status_code == 201
    assert revisions_visible_to(UserFactory(role="researcher"), draft.study).count() == 0
    assert revisions_visible_to(UserFactory(role="admin"), draft.study).count() == 1
