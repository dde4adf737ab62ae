"""Finding-level feedback (agree / disagree / correct level or side), active reading time and
per-condition agreement: stored as immutable rows, private to their reader, closed at sign-off,
and exported pseudonymously (research table ``reading``, training manifest ground truth)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from reviewer import selectors
from reviewer.deid import pseudonym, pseudonym_secret
from reviewer.models import FindingFeedback, ReadingHeartbeat
from reviewer.research import reading
from reviewer.services import feedback as fb
from reviewer.services.reports import sign_review
from tests.factories import DraftFactory, FindingFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft():  # type: ignore[no-untyped-def]
    d = DraftFactory()
    FindingFactory(draft=d, condition="disc_herniation", present=True, level="L4-5", side="left", probability=0.9)
    FindingFactory(draft=d, condition="canal_stenosis", present=False, level="", side="", probability=0.2)
    FindingFactory(draft=d, condition="acute_fracture", present=True, level="L1-2", side="", probability=0.7)
    return d


def finding(draft, condition):  # type: ignore[no-untyped-def]
    return draft.findings.get(condition=condition)


def post(client, study, **body):  # type: ignore[no-untyped-def]
    return client.post(f"/api/studies/{study.pk}/finding-feedback/", body, format="json")


def test_verdicts_are_appended_and_the_newest_per_finding_counts(draft, api_as):  # type: ignore[no-untyped-def]
    reader = api_as("radiologist")
    study, hernia = draft.study, finding(draft, "disc_herniation")
    first = post(reader, study, finding=hernia.pk, verdict="agree")
    assert first.status_code == 201, first.content
    assert first.json()["condition"] == "disc_herniation"
    second = post(reader, study, finding=hernia.pk, verdict="correct", level="L5-S1")
    assert second.status_code == 201, second.content
    stenosis = finding(draft, "canal_stenosis")
    assert post(reader, study, finding=stenosis.pk, verdict="disagree").status_code == 201

    rows = reader.get(f"/api/studies/{study.pk}/finding-feedback/").json()
    assert [(r["condition"], r["verdict"], r["level"]) for r in rows] == [
        ("disc_herniation", "agree", ""),
        ("disc_herniation", "correct", "L5-S1"),
        ("canal_stenosis", "disagree", ""),
    ]
    # the first verdict is kept, not overwritten, and cannot be edited
    kept = FindingFeedback.objects.get(pk=first.json()["id"])
    assert kept.verdict == "agree"
    assert kept.reader == reader.user
    kept.verdict = "disagree"
    with pytest.raises(ValueError, match="immutable"):
        kept.save()
    assert selectors.outcome_counts(study=study, reader=reader.user) == {"accepted": 0, "corrected": 1, "rejected": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"verdict": "correct"}, "level"),  # a correction must change something
        ({"verdict": "correct", "level": "L4-5", "side": "left"}, "level"),  # ... not repeat the AI
        ({"verdict": "agree", "level": "L3-4"}, "level"),  # level only with a correction
        ({"verdict": "correct", "level": "L9-10"}, "level"),  # not a disc level
        ({"verdict": "correct", "side": "up"}, "side"),
        ({"verdict": "maybe"}, "verdict"),
    ],
)
def test_invalid_verdicts_are_refused_and_nothing_is_stored(draft, api_as, body, field):  # type: ignore[no-untyped-def]
    reader = api_as("radiologist")
    response = post(reader, draft.study, finding=finding(draft, "disc_herniation").pk, **body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not FindingFeedback.objects.exists()


def test_a_finding_of_another_study_is_refused(draft, api_as):  # type: ignore[no-untyped-def]
    other = DraftFactory()
    response = post(api_as("radiologist"), other.study, finding=finding(draft, "disc_herniation").pk, verdict="agree")
    assert response.status_code == 400
    assert "finding" in response.json()


def test_a_reader_sees_only_their_own_verdicts(draft, api_as):  # type: ignore[no-untyped-def]
    alice, bob = api_as("radiologist"), api_as("radiologist")
    study = draft.study
    assert post(alice, study, finding=finding(draft, "disc_herniation").pk, verdict="disagree").status_code == 201
    assert bob.get(f"/api/studies/{study.pk}/finding-feedback/").json() == []
    assert selectors.outcome_counts(study=study, reader=bob.user) == {"accepted": 0, "corrected": 0, "rejected": 0}
    assert len(alice.get(f"/api/studies/{study.pk}/finding-feedback/").json()) == 1


@pytest.mark.parametrize(("role", "status"), [("researcher", 403), ("annotator", 403), (None, 403)])
def test_only_readers_give_verdicts(draft, api_as, role, status):  # type: ignore[no-untyped-def]
    client = api_as(role)
    assert post(client, draft.study, finding=finding(draft, "disc_herniation").pk, verdict="agree").status_code in (
        status,
        401,
    )
    assert client.get(f"/api/studies/{draft.study.pk}/finding-feedback/").status_code in (status, 401)
    assert client.post(f"/api/studies/{draft.study.pk}/reading-heartbeat/").status_code in (status, 401)
    assert not FindingFeedback.objects.exists()
    assert not ReadingHeartbeat.objects.exists()


def test_verdicts_and_reading_time_close_at_sign_off(draft, api_as):  # type: ignore[no-untyped-def]
    reader = api_as("radiologist")
    study = draft.study
    beat = reader.post(f"/api/studies/{study.pk}/reading-heartbeat/")
    assert beat.status_code == 200
    assert beat.json()["counted"] is True
    assert beat.json()["active_seconds"] == selectors.HEARTBEAT_SECONDS
    sign_review(study=study, reader=reader.user, radpeer="1")
    late = post(reader, study, finding=finding(draft, "disc_herniation").pk, verdict="agree")
    assert late.status_code == 409
    after = reader.post(f"/api/studies/{study.pk}/reading-heartbeat/").json()
    assert after["counted"] is False
    assert after["active_seconds"] == selectors.HEARTBEAT_SECONDS
    assert ReadingHeartbeat.objects.count() == 1


def test_credited_seconds_excludes_idle_gaps_and_double_tabs():  # type: ignore[no-untyped-def]
    t0 = timezone.now()
    at = [t0 + timedelta(seconds=s) for s in (0, 15, 30, 45, 645, 660, 661)]  # 10 min idle, then a second tab
    # 15 (first) + 15 + 15 + 15 + 15 (the idle gap counts one interval) + 15 + 1
    assert selectors.credited_seconds(at) == 91
    assert selectors.credited_seconds([]) == 0


def test_active_seconds_sums_the_server_times_up_to_sign_off(draft, role_user):  # type: ignore[no-untyped-def]
    reader = role_user("radiologist")
    study = draft.study
    t0 = timezone.now() - timedelta(hours=1)
    for seconds in (0, 15, 30, 300, 315):  # a 4.5 minute pause after 30 s
        beat = fb.record_heartbeat(study=study, reader=reader)
        ReadingHeartbeat.objects.filter(pk=beat.pk).update(at=t0 + timedelta(seconds=seconds))
    assert selectors.active_seconds(study=study, reader=reader) == 15 + 15 + 15 + 15 + 15
    review = sign_review(study=study, reader=reader, radpeer="1")
    type(review).objects.filter(pk=review.pk).update(signed_at=t0 + timedelta(seconds=100))  # signed in the pause
    assert selectors.active_seconds(study=study, reader=reader) == 45


def test_agreement_by_condition_counts_each_readers_current_verdict(draft, role_user, api_as):  # type: ignore[no-untyped-def]
    readers = [role_user("radiologist") for _ in range(3)]
    hernia, fracture = finding(draft, "disc_herniation"), finding(draft, "acute_fracture")
    given = [
        (readers[0], hernia, "disagree", ""),
        (readers[0], hernia, "agree", ""),  # changed their mind: agree counts
        (readers[1], hernia, "correct", "L5-S1"),
        (readers[2], hernia, "agree", ""),
        (readers[0], fracture, "disagree", ""),
    ]
    for reader, f, verdict, level in given:
        fb.record_feedback(study=draft.study, finding_id=f.pk, reader=reader, verdict=verdict, level=level)
    table = {r["condition"]: r for r in api_as("researcher").get("/api/finding-agreement/").json()}
    assert len(table) == 17
    assert table["disc_herniation"] == {
        "condition": "disc_herniation", "n": 3, "agree": 2, "disagree": 0, "corrected": 1, "agreement": 2 / 3,
    }  # fmt: skip
    assert table["acute_fracture"]["n"] == 1
    assert table["acute_fracture"]["agreement"] == 0.0
    assert table["canal_stenosis"]["n"] == 0
    assert table["canal_stenosis"]["agreement"] is None
    assert api_as("radiologist").get("/api/finding-agreement/").status_code == 403
    other = api_as("researcher").get("/api/finding-agreement/?model_version=nobody@0").json()
    assert all(r["n"] == 0 for r in other)


def test_reading_export_and_training_manifest_carry_verdicts_with_keys(draft, role_user, api_as, tmp_path):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    reader = role_user("radiologist", username="dr-feedback-export")
    study = draft.study
    hernia, stenosis = finding(draft, "disc_herniation"), finding(draft, "canal_stenosis")
    fb.record_feedback(study=study, finding_id=hernia.pk, reader=reader, verdict="correct", side="right")
    fb.record_feedback(study=study, finding_id=stenosis.pk, reader=reader, verdict="disagree")
    fb.record_heartbeat(study=study, reader=reader)
    review = sign_review(study=study, reader=reader, radpeer="1")

    csv_text = b"".join(api_as("researcher").get("/api/exports/reading.csv").streaming_content).decode()
    header, row = csv_text.strip().splitlines()
    assert header.split(",") == [c[0] for c in reading.READING_COLUMNS]
    values = dict(zip(header.split(","), row.split(","), strict=True))
    secret = pseudonym_secret()
    assert values["reader_key"] == pseudonym("reader", reader.pk, secret=secret)
    assert values["review_key"] == pseudonym("review", review.pk, secret=secret)
    assert (values["findings_accepted"], values["findings_corrected"], values["findings_rejected"]) == ("0", "1", "1")
    assert float(values["active_reading_seconds"]) == selectors.HEARTBEAT_SECONDS
    assert reader.username not in csv_text
    assert study.study_uid not in csv_text

    call_command("export_training_manifest", str(tmp_path / "train"))
    truths = [json.loads(p.read_text()) for p in (tmp_path / "train" / "ground_truth").glob("*.json")]
    (truth,) = truths
    labels = {v["condition"]: v for v in truth["finding_feedback"]}
    assert labels["disc_herniation"]["present"] == 1
    assert (labels["disc_herniation"]["level"], labels["disc_herniation"]["side"]) == ("L4-5", "right")
    assert labels["disc_herniation"]["ai"]["side"] == "left"
    assert labels["canal_stenosis"]["present"] == 1  # the AI said absent; the reader disagreed
    assert labels["canal_stenosis"]["verdict"] == "disagree"
    assert {v["reader_key"] for v in labels.values()} == {pseudonym("reader", reader.pk, secret=secret)}
    assert labels["disc_herniation"]["draft_key"] == pseudonym("draft", draft.pk, secret=secret)
    dumped = json.dumps(truths)
    assert reader.username not in dumped
    assert study.study_uid not in dumped
