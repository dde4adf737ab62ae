"""Research exports read back (CSV and Parquet), de-identified; the training manifest read back
with ``ml.data.manifest.read_manifest``."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json

import pyarrow.parquet as pq
import pytest

from benchmarks.stats_page import populate
from ml.conditions import CONDITION_KEYS
from ml.data.manifest import read_manifest
from reviewer.models import LabelConfirmation, LabelExtraction, Review, StructuredReport, Study
from reviewer.research import exports
from tests.factories import DraftFactory, FindingFactory, SeriesFactory, UserFactory

pytestmark = pytest.mark.django_db


def body_of(response) -> bytes:  # type: ignore[no-untyped-def]
    """A response's bytes; the CSV exports are streamed."""
    return b"".join(response.streaming_content) if response.streaming else response.content


SECRET = "site-secret-for-tests"


@pytest.fixture(autouse=True)
def _export_secret(settings):  # type: ignore[no-untyped-def]
    settings.SPINEREVIEW_EXPORT_SECRET = SECRET


def key(kind: str, value: object) -> str:
    return hmac.new(SECRET.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:20]


def uid(value: str) -> str:
    """The keyed replacement UID (PS3.15 action U) the training manifest carries."""
    digest = hmac.new(SECRET.encode(), f"uid:{value}".encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _assert_deidentified(body: bytes) -> None:
    for study in Study.objects.all():
        for identity in (study.patient_name, study.patient_id, study.study_uid):
            assert identity.encode() not in body, identity


@pytest.fixture
def reviews():  # type: ignore[no-untyped-def]
    populate(25, seed=5)
    return {r.pk: r for r in Review.objects.select_related("study", "arbitration", "draft__model_version")}


def test_csv_export_round_trip(reviews, api_as):  # type: ignore[no-untyped-def]
    response = api_as("researcher").get("/api/exports/reviews.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.streaming  # rows are read and written in chunks
    body = body_of(response)
    _assert_deidentified(body)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert tuple(rows[0]) == exports.REVIEW_COLUMN_NAMES
    assert len(rows) == len(reviews)
    by_key = {key("review", pk): review for pk, review in reviews.items()}
    for row in rows:
        review = by_key[row["review_key"]]
        assert row["study_key"] == key("study", review.study.study_uid)
        assert row["reader_key"] == key("reader", review.reader_id)
        assert row["radpeer"] == review.radpeer
        assert row["discrepancy"] == ("true" if review.radpeer != "1" else "false")
        assert row["clinically_significant"] == ("true" if review.radpeer in ("2b", "3b") else "false")
        assert row["model_version"] == str(review.draft.model_version)
        assert float(row["wer"]) == pytest.approx(review.edit_distance["wer"])
        assert float(row["impression_wer"]) == pytest.approx(review.edit_distance["sections"]["impression"]["wer"])
        assert row["revision_key"] == key("revision", review.signed_revision_id)


def test_parquet_export_round_trip(reviews, api_as):  # type: ignore[no-untyped-def]
    response = api_as("researcher").get("/api/exports/reviews.parquet")
    assert response.status_code == 200
    _assert_deidentified(response.content)
    table = pq.read_table(io.BytesIO(response.content))
    assert tuple(table.column_names) == exports.REVIEW_COLUMN_NAMES
    assert str(table.schema.field("discrepancy").type) == "bool"
    assert table.schema.field("wer").metadata[b"description"].startswith(b"word error rate")
    data = table.to_pylist()
    assert len(data) == len(reviews)
    by_key = {key("review", pk): review for pk, review in reviews.items()}
    for row in data:
        review = by_key[row["review_key"]]
        assert row["char_levenshtein"] == review.edit_distance["char_levenshtein"]
        assert row["word_levenshtein_norm"] == pytest.approx(review.edit_distance["word_levenshtein_norm"])
        arbitration = getattr(review, "arbitration", None)
        assert row["arbitration_state"] == (arbitration.state if arbitration else "")
        if arbitration and arbitration.state == "resolved":
            assert row["radpeer_final"] == arbitration.decision


@pytest.mark.parametrize("table", ["label_agreement", "draft_accuracy"])
def test_agreement_and_accuracy_tables_round_trip(table, reviews, api_as):  # type: ignore[no-untyped-def]
    client = api_as("researcher")
    as_csv = list(csv.DictReader(io.StringIO(body_of(client.get(f"/api/exports/{table}.csv")).decode())))
    as_parquet = pq.read_table(io.BytesIO(client.get(f"/api/exports/{table}.parquet").content)).to_pylist()
    assert [r["condition"] for r in as_csv] == [r["condition"] for r in as_parquet]
    assert {r["condition"] for r in as_csv} == set(CONDITION_KEYS)


def test_unknown_tables_and_formats_are_refused(api_as):  # type: ignore[no-untyped-def]
    client = api_as("researcher")
    assert client.get("/api/exports/patients.csv").status_code == 400
    assert client.get("/api/exports/reviews.xlsx").status_code == 400


def test_export_stats_command_writes_tables_summary_and_plots(reviews, tmp_path):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    call_command("export_stats", str(tmp_path / "out"))
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"reviews.csv", "reviews.parquet", "label_agreement.parquet", "summary.json"} <= names
    assert {"edit_distance_by_radpeer.png", "edit_distance_by_radpeer.svg", "radpeer_distribution.png"} <= names
    assert pq.read_table(out / "reviews.parquet").num_rows == len(reviews)
    summary = json.loads((out / "summary.json").read_text())
    n_discrepant = sum(r.radpeer != "1" for r in reviews.values())
    assert summary["radpeer"]["discrepancy_rate"] == pytest.approx(n_discrepant / len(reviews))
    for path in out.iterdir():
        if path.suffix in (".csv", ".json", ".svg"):
            _assert_deidentified(path.read_bytes())


def test_the_export_secret_is_generated_once_outside_git(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.SPINEREVIEW_EXPORT_SECRET = ""
    settings.VAR_DIR = tmp_path
    first = exports.export_secret()
    assert (tmp_path / "export_secret").stat().st_mode & 0o777 == 0o600
    assert exports.export_secret() == first
    assert len(first) >= 40


def test_training_manifest_round_trip(tmp_path):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    from reviewer.services.reports import save_revision, sign_review

    reader = UserFactory(role="radiologist")
    corrected = DraftFactory(study__patient_id="SYN-0100")
    SeriesFactory(study=corrected.study, series_uid="1.2.3.4.1", description="SAG T2", sequence_class="T2")
    ai_only = DraftFactory()
    FindingFactory(draft=ai_only, condition="canal_stenosis",
                   boxes=[{"sop_uid": "1.2.3.9", "xyxy": [1, 2, 3, 4], "xyxy_norm": [0.1, 0.2, 0.3, 0.4]}])  # fmt: skip
    common = {"study": corrected.study, "draft": corrected, "series_instance_uid": "1.2.9"}
    ai_box = {"condition": "canal_stenosis", "xyxy": [0, 0, 5, 5]}
    reader_box = {"condition": "canal_stenosis", "sop_uid": "1.2.3.4.1.5", "xyxy": [1, 1, 6, 6]}
    StructuredReport.objects.create(**common, source="ai", sop_instance_uid="1.2.9.1", boxes=[ai_box])
    StructuredReport.objects.create(
        **common, source="reader", sop_instance_uid="1.2.9.2", author=reader, boxes=[reader_box]
    )
    for draft, text in ((corrected, "IMPRESSION: 1. Severe canal stenosis at L4-5."), (ai_only, "IMPRESSION: normal.")):
        revision = save_revision(study=draft.study, author=reader, text=text, parent_id=None)
        sign_review(study=draft.study, reader=reader, radpeer="1", revision_id=revision.pk)
    extraction = LabelExtraction.objects.create(
        study=corrected.study, source="signed_report", report_text="x", extractor="t",
        labels=dict.fromkeys(CONDITION_KEYS, 0),
    )  # fmt: skip
    a1, a2 = UserFactory(role="annotator"), UserFactory(role="annotator")
    base = dict.fromkeys(CONDITION_KEYS, 0)
    LabelConfirmation.objects.create(extraction=extraction, annotator=a1, labels={**base, "canal_stenosis": 1})
    LabelConfirmation.objects.create(extraction=extraction, annotator=a2,
                                     labels={**base, "canal_stenosis": 1, "hemangioma": 1})  # fmt: skip

    call_command("export_training_manifest", str(tmp_path / "train"))
    entries = {e.study_uid: e for e in read_manifest(tmp_path / "train" / "manifest.jsonl")}
    assert set(entries) == {uid(corrected.study.study_uid), uid(ai_only.study.study_uid)}
    entry = entries[uid(corrected.study.study_uid)]
    assert entry.report == "IMPRESSION: 1. Severe canal stenosis at L4-5."
    assert entry.labels["canal_stenosis"] == 1
    assert entry.labels["hemangioma"] == -1  # annotators disagree: uncertain
    assert entry.patient_key == key("patient", "SYN-0100")
    assert [(s.series_uid, s.path, s.sequence_class) for s in entry.series] == [(uid("1.2.3.4.1"), None, "T2")]
    truth = json.loads((tmp_path / "train" / entry.ground_truth).read_text())
    assert truth["box_source"] == "reader"
    assert truth["boxes"][0]["xyxy"] == [1, 1, 6, 6]
    assert truth["structured_report_sop_uid"] == uid("1.2.9.2")
    other = entries[uid(ai_only.study.study_uid)]
    assert other.labels == {}  # nothing confirmed
    other_truth = json.loads((tmp_path / "train" / other.ground_truth).read_text())
    assert other_truth["box_source"] == "ai"
    assert other_truth["boxes"][0]["sop_uid"] == uid("1.2.3.9")
