"""What a researcher can read: only pseudonymous keys, in the API as in the files, and no way
from a key back to a study, a reader or a report. The training manifest leaves the site with
keyed replacement UIDs and scrubbed report text."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json

import pyarrow.parquet as pq
import pytest

from ml.conditions import CONDITION_KEYS
from reviewer.models import LabelConfirmation, LabelExtraction, StructuredReport
from reviewer.research import exports
from tests.factories import DraftFactory, FindingFactory, SeriesFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db


def body_of(response) -> bytes:  # type: ignore[no-untyped-def]
    """A response's bytes; the CSV exports are streamed."""
    return b"".join(response.streaming_content) if response.streaming else response.content


SECRET = "deid-test-secret"

REPORT = (
    "CLINICAL HISTORY: 92-year-old man, DOE, JOHN (MRN 4471902), back pain since 03/12/2024.\n"
    "FINDINGS: Severe canal stenosis at L4-5 with an 8 mm protrusion. T2 hyperintense S1 endplate.\n"
    "IMPRESSION: 1. Severe canal stenosis at L4-5.\n"
    "Discussed with Dr. Julia Harper on 12 March 2024 at 555-201-7788. Electronically signed by jharper."
)


@pytest.fixture(autouse=True)
def _secret(settings):  # type: ignore[no-untyped-def]
    settings.SPINEREVIEW_EXPORT_SECRET = SECRET


def key(kind: str, value: object) -> str:
    return hmac.new(SECRET.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:20]


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    """One signed study full of identities: patient, reader, UIDs, date, PHI in the report."""
    from reviewer.services.reports import save_revision, sign_review

    reader = UserFactory(role="radiologist", username="jharper", first_name="Julia", last_name="Harper")
    study = StudyFactory(
        study_uid="1.2.826.0.1.3680043.10.4242.7", patient_name="DOE^JOHN", patient_id="MRN4471902",
        accession_number="ACC20240312001", study_date=dt.date(2024, 3, 12), institution="St Elsewhere Hospital",
    )  # fmt: skip
    series = SeriesFactory(study=study, series_uid="1.2.826.0.1.3680043.10.4242.7.3", description="SAG T2 DOE")
    draft = DraftFactory(study=study)
    FindingFactory(draft=draft, condition="canal_stenosis",
                   boxes=[{"sop_uid": "1.2.826.0.1.3680043.10.4242.7.3.1", "series_uid": series.series_uid,
                           "xyxy": [1, 2, 3, 4], "label": "stenosis seen by Dr. Harper"}])  # fmt: skip
    StructuredReport.objects.create(
        study=study, draft=draft, source="ai", series_instance_uid="1.2.826.0.1.3680043.10.4242.9",
        sop_instance_uid="1.2.826.0.1.3680043.10.4242.9.1", boxes=[],
    )  # fmt: skip
    revision = save_revision(study=study, author=reader, text=REPORT, parent_id=None)
    review = sign_review(study=study, reader=reader, radpeer="2b", comment="Called Dr. Harper re DOE",
                         revision_id=revision.pk)  # fmt: skip
    extraction = LabelExtraction.objects.create(
        study=study, revision=revision, source="signed_report", report_text=REPORT, extractor="rules@1",
        labels=dict.fromkeys(CONDITION_KEYS, 0),
    )  # fmt: skip
    LabelConfirmation.objects.create(
        extraction=extraction, annotator=UserFactory(role="annotator"), labels=dict.fromkeys(CONDITION_KEYS, 0)
    )
    identities = [
        "jharper", "Julia", "Harper", "DOE", "JOHN", "MRN4471902", "4471902", "ACC20240312001", "2024-03-12",
        "03/12/2024", "12 March 2024", "555-201-7788", "St Elsewhere", study.study_uid, series.series_uid,
        "1.2.826.0.1.3680043.10.4242.7.3.1", "1.2.826.0.1.3680043.10.4242.9.1", "Called Dr",
    ]  # fmt: skip
    return {"study": study, "series": series, "review": review, "revision": revision, "reader": reader,
            "draft": draft, "extraction": extraction, "identities": identities}  # fmt: skip


def _assert_no_identity(body: bytes | str, identities: list[str], where: str) -> None:
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    leaked = [i for i in identities if i in text]
    assert not leaked, (where, leaked)


def _researcher_urls(world) -> list[str]:  # type: ignore[no-untyped-def]
    sid, rid = world["study"].pk, world["review"].pk
    return [
        "/api/studies/", f"/api/studies/{sid}/", f"/api/studies/{sid}/drafts/", f"/api/studies/{sid}/jobs/",
        f"/api/studies/{sid}/revisions/", f"/api/studies/{sid}/reviews/", "/api/reviews/", f"/api/reviews/{rid}/",
        "/api/label-extractions/", f"/api/label-extractions/{world['extraction'].pk}/", "/api/label-confirmations/",
        f"/api/viewer/studies/{world['study'].study_uid}/",
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(12))
def test_researchers_cannot_reach_endpoints_with_names_uids_dates_or_text(index, world, api_as):  # type: ignore[no-untyped-def]
    url = _researcher_urls(world)[index]
    response = api_as("researcher").get(url)
    assert response.status_code == 403, (url, response.status_code)


def test_every_researcher_surface_is_free_of_identities_and_database_ids(world, api_as):  # type: ignore[no-untyped-def]
    client = api_as("researcher")
    for table in exports.TABLES:
        for fmt in exports.FORMATS:
            response = client.get(f"/api/exports/{table}.{fmt}")
            assert response.status_code == 200
            _assert_no_identity(body_of(response), world["identities"], f"{table}.{fmt}")
    body = client.get("/api/stats/").content
    _assert_no_identity(body, world["identities"], "/api/stats/")
    header = next(csv.reader(io.StringIO(body_of(client.get("/api/exports/reviews.csv")).decode())))
    assert not [c for c in header if c.endswith("_id")], header  # database ids are API lookups


def test_keys_join_files_and_api_but_never_lead_back_to_the_database(world, api_as):  # type: ignore[no-untyped-def]
    client = api_as("researcher")
    (row,) = csv.DictReader(io.StringIO(body_of(client.get("/api/exports/reviews.csv")).decode()))
    review, study = world["review"], world["study"]
    assert row["review_key"] == key("review", review.pk)
    assert row["study_key"] == key("study", study.study_uid)
    assert row["patient_key"] == key("patient", study.patient_id)
    assert row["reader_key"] == key("reader", world["reader"].pk)
    assert row["draft_key"] == key("draft", world["draft"].pk)
    assert row["revision_key"] == key("revision", world["revision"].pk)
    table = pq.read_table(io.BytesIO(client.get("/api/exports/reviews.parquet").content)).to_pylist()
    assert table[0]["review_key"] == row["review_key"]
    by_reader = client.get("/api/stats/").json()["radpeer_by_reader"]
    assert set(by_reader) == {row["reader_key"]}  # the API's reader keys are the files' keys
    admin = api_as("admin")
    for value in (row["review_key"], row["study_key"]):
        assert admin.get(f"/api/reviews/{value}/").status_code == 404
        assert admin.get(f"/api/studies/{value}/").status_code == 404


def test_keys_are_stable_across_runs_and_change_with_the_secret(world, settings):  # type: ignore[no-untyped-def]
    first = exports.render_table("reviews", "csv")
    assert exports.render_table("reviews", "csv") == first
    settings.SPINEREVIEW_EXPORT_SECRET = "another-site"
    rotated = exports.render_table("reviews", "csv")
    assert rotated != first
    assert key("review", world["review"].pk).encode() in first
    assert key("review", world["review"].pk).encode() not in rotated


def test_export_stats_files_carry_no_identity(world, tmp_path):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    call_command("export_stats", str(tmp_path / "out"), "--no-plots")
    written = [p for p in (tmp_path / "out").iterdir() if p.is_file()]
    assert {p.name for p in written} >= {"reviews.csv", "reviews.parquet", "summary.json"}
    for path in written:
        _assert_no_identity(path.read_bytes(), world["identities"], path.name)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["radpeer_by_reader"]) == {key("reader", world["reader"].pk)}
    (row,) = csv.DictReader(io.StringIO((tmp_path / "out" / "reviews.csv").read_text()))
    assert not [c for c in row if c.endswith("_id")], list(row)  # no database id in the files either
    assert row["review_key"] == key("review", world["review"].pk)
    assert row["patient_key"] == key("patient", world["study"].patient_id)


def test_training_manifest_carries_keys_and_scrubbed_text_only(world, tmp_path):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    from ml.data.manifest import read_manifest
    from reviewer import deid

    call_command("export_training_manifest", str(tmp_path / "train"))
    files = [p for p in (tmp_path / "train").rglob("*") if p.is_file()]
    assert len(files) == 2  # manifest.jsonl + one ground truth
    for path in files:
        _assert_no_identity(path.read_bytes(), world["identities"], path.name)
    (entry,) = read_manifest(tmp_path / "train" / "manifest.jsonl")  # ml's reader takes it as it is
    study, secret = world["study"], SECRET.encode()
    assert entry.study_uid == deid.replacement_uid(study.study_uid, secret=secret)
    assert entry.patient_key == key("patient", study.patient_id)
    assert entry.series[0].series_uid == deid.replacement_uid(world["series"].series_uid, secret=secret)
    assert entry.series[0].description == "SAG T2 [NAME]"
    for clinical in ("Severe canal stenosis at L4-5", "8 mm", "T2 hyperintense S1 endplate", "IMPRESSION:"):
        assert clinical in entry.report
    assert "90+-year-old" in entry.report
    truth = json.loads((tmp_path / "train" / entry.ground_truth).read_text())
    assert entry.ground_truth == f"ground_truth/{key('study', study.study_uid)}.json"
    assert truth["study_uid"] == entry.study_uid
    assert truth["box_source"] == "ai"  # the AI SR (no boxes) is newer than the findings' boxes
    assert truth["structured_report_sop_uid"] == deid.replacement_uid("1.2.826.0.1.3680043.10.4242.9.1", secret=secret)


def test_deidentified_images_line_up_with_the_manifest(world, tmp_path):  # type: ignore[no-untyped-def]
    """The manifest's UIDs are those a PS3.15 de-identification of the study's images with the
    site key gives: pixels de-identified apart can be joined to it, the clinical archive cannot."""
    from django.core.management import call_command

    from ml.data.manifest import read_manifest
    from reviewer import deid
    from tests.dicom_factory import LUMBAR_PROTOCOL, make_instance

    study, series = world["study"], world["series"]
    StructuredReport.objects.all().delete()  # boxes then come from the draft's findings
    call_command("export_training_manifest", str(tmp_path / "train"))
    (entry,) = read_manifest(tmp_path / "train" / "manifest.jsonl")
    truth = json.loads((tmp_path / "train" / entry.ground_truth).read_text())
    ds = make_instance(study_uid=study.study_uid, series_uid=series.series_uid, spec=LUMBAR_PROTOCOL[1], index=0,
                       series_number=1, patient=study.patient_id)  # fmt: skip
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.4242.7.3.1"
    clean = deid.deidentify_dataset(ds)
    assert clean.StudyInstanceUID == entry.study_uid
    assert clean.SeriesInstanceUID == entry.series[0].series_uid == truth["boxes"][0]["series_uid"]
    assert clean.SOPInstanceUID == truth["boxes"][0]["sop_uid"]
    assert clean.PatientID == entry.patient_key
    assert truth["boxes"][0]["label"] == "stenosis seen by Dr. [NAME]"
    assert truth["boxes"][0]["xyxy"] == [1, 2, 3, 4]
