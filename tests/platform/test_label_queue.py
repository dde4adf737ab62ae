"""Label extraction (on sign, through a real Celery worker; and on imported reports), the
annotators' queue and confirmation page, and label-agreement statistics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from ml.conditions import CONDITION_KEYS
from reviewer import selectors
from reviewer.models import LabelConfirmation, LabelExtraction
from reviewer.research import stats
from reviewer.services import labels
from tests.conftest import ROOT, _need, wait_for
from tests.factories import DraftFactory, StudyFactory, UserFactory

REPORT = (
    "CLINICAL HISTORY: Back pain.\nDISCS:\n  L4-5: Moderate-grade central disc extrusion.\n"
    "SPINAL CANAL: Severe spinal canal stenosis at L4-5.\nIMPRESSION:\n1. Disc herniation at L4-5.\n"
    "2. Severe spinal canal stenosis at L4-5.\n3. Possible small Tarlov cyst at S2."
)
DRAFT = "IMPRESSION:\n1. Mild disc bulge at L4-5 without stenosis."


def all_labels(value: int = 0, **overrides: int) -> dict[str, int]:
    return {**dict.fromkeys(CONDITION_KEYS, value), **overrides}


def make_extraction(text: str = REPORT, *, confidence: float = 0.9, source: str = "historical", **labels_):  # type: ignore[no-untyped-def]
    return LabelExtraction.objects.create(
        source=source, report_text=text, extractor="test@1", labels=all_labels(**labels_),
        confidence=dict.fromkeys(CONDITION_KEYS, confidence),
    )  # fmt: skip


# --- extraction ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_extraction_of_a_signed_review_covers_report_and_draft_once(role_user):  # type: ignore[no-untyped-def]
    from reviewer.services.reports import save_revision, sign_review

    draft = DraftFactory(text=DRAFT)
    reader = role_user("radiologist")
    revision = save_revision(study=draft.study, author=reader, text=REPORT, parent_id=None)
    review = sign_review(study=draft.study, reader=reader, radpeer="3b", comment="missed stenosis")
    signed, drafted = labels.extract_for_review(review_id=review.pk)
    assert (signed.source, signed.revision_id, drafted.source) == ("signed_report", revision.pk, "draft")
    assert signed.labels["canal_stenosis"] == 1
    assert signed.labels["disc_herniation"] == 1
    assert signed.evidence["canal_stenosis"] in REPORT  # the sentence as it appears in the text
    assert drafted.labels["canal_stenosis"] == 0
    assert set(signed.labels) == set(CONDITION_KEYS)
    labels.extract_for_review(review_id=review.pk)
    assert LabelExtraction.objects.count() == 2  # idempotent


@pytest.fixture
def default_queue_worker(transactional_db):  # type: ignore[no-untyped-def]
    """A real Celery worker process on the ``default`` queue (where label extraction runs)."""
    from django.db import connection

    broker = _need("CELERY_BROKER_URL")
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_BROKER_URL": broker, "DJANGO_SETTINGS_MODULE": "webapp.settings.test"}  # fmt: skip
    log_dir = Path(os.environ.get("SPINEREVIEW_SERVICES_DIR", ROOT / "var" / "services"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"celery-labels-{os.getpid()}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", "default", "-P", "solo", "-c", "1",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO",
             "-n", f"labels-{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        yield proc
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.services
def test_signing_queues_label_extraction_on_a_real_worker(default_queue_worker, api_as):  # type: ignore[no-untyped-def]
    draft = DraftFactory(text=DRAFT)
    client = api_as("radiologist")
    rev = client.post(f"/api/studies/{draft.study.pk}/revisions/", {"text": REPORT, "parent": None}, format="json")
    signed = client.post(f"/api/studies/{draft.study.pk}/sign/", {"radpeer": "2a", "revision": rev.json()["id"]})
    assert signed.status_code == 201
    wait_for(lambda: LabelExtraction.objects.filter(study=draft.study).count() == 2, timeout=60,
             what="label extraction of the signed report and the draft by the worker")  # fmt: skip
    extraction = LabelExtraction.objects.get(study=draft.study, source="signed_report")
    assert extraction.revision_id == rev.json()["id"]
    assert extraction.labels["canal_stenosis"] == 1


# --- historical reports ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_reports_from_a_folder_and_a_csv(tmp_path, capsys):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    folder = tmp_path / "reports"
    (folder / "2019").mkdir(parents=True)
    (folder / "a.txt").write_text(REPORT)
    (folder / "2019" / "b.txt").write_text("IMPRESSION: 1. Vertebral hemangioma at L2.")
    (folder / "empty.txt").write_text("   \n")
    call_command("import_reports", str(folder))
    out = capsys.readouterr()
    assert "2 extracted, 0 already extracted, 1 rejected" in out.out
    assert "REJECTED empty.txt" in out.err
    assert LabelExtraction.objects.filter(source="historical").count() == 2
    call_command("import_reports", str(folder))
    assert "0 extracted, 2 already extracted" in capsys.readouterr().out  # re-import: no-op

    study = StudyFactory()
    csv_path = tmp_path / "reports.csv"
    csv_path.write_text(f'id,study_uid,Report\n1,{study.study_uid},"{REPORT}"\n2,,"No acute abnormality."\n')
    call_command("import_reports", str(csv_path))
    linked = LabelExtraction.objects.get(study=study)
    assert linked.source == "historical"
    assert linked.labels["canal_stenosis"] == 1


@pytest.mark.django_db
def test_a_csv_without_a_report_column_is_refused_clearly(tmp_path):  # type: ignore[no-untyped-def]
    from django.core.management import CommandError, call_command

    bad = tmp_path / "bad.csv"
    bad.write_text("id,findings\n1,x\n")
    with pytest.raises(CommandError, match="no report column"):
        call_command("import_reports", str(bad))
    assert not LabelExtraction.objects.exists()


# --- queue ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_uncertain_first_orders_by_the_lowest_confidence(role_user):  # type: ignore[no-untyped-def]
    sure, unsure, middling = (make_extraction(f"r{i}", confidence=c) for i, c in enumerate((0.95, 0.4, 0.7)))
    make_extraction("draft text", confidence=0.1, source="draft")  # drafts are not annotated
    queue = selectors.annotation_queue(annotator=role_user("annotator"), strategy="uncertain")
    assert queue == [unsure.pk, middling.pk, sure.pk]


@pytest.mark.django_db
def test_random_sampling_is_reproducible_with_a_seed(role_user):  # type: ignore[no-untyped-def]
    ids = [make_extraction(f"report {i}").pk for i in range(30)]
    annotator = role_user("annotator")
    first = selectors.annotation_queue(annotator=annotator, strategy="random", seed=1, limit=30)
    assert first == selectors.annotation_queue(annotator=annotator, strategy="random", seed=1, limit=30)
    assert sorted(first) == sorted(ids)
    assert first != selectors.annotation_queue(annotator=annotator, strategy="random", seed=2, limit=30)
    assert first != sorted(first)


@pytest.mark.django_db
def test_labelled_reports_leave_the_queue_after_two_annotators(role_user):  # type: ignore[no-untyped-def]
    a, b, c = (role_user("annotator") for _ in range(3))
    once, fresh = make_extraction("once", confidence=0.2), make_extraction("fresh", confidence=0.9)
    labels.confirm_labels(extraction=once, annotator=a, labels=all_labels())
    assert once.pk not in selectors.annotation_queue(annotator=a)
    assert selectors.annotation_queue(annotator=b) == [fresh.pk, once.pk]  # unlabelled first, then a second read
    labels.confirm_labels(extraction=once, annotator=b, labels=all_labels())
    assert selectors.annotation_queue(annotator=c) == [fresh.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    [{"canal_stenosis": 1}, all_labels(canal_stenosis=2), {**all_labels(), "made_up": 1}, all_labels(hemangioma=True)],
)
def test_incomplete_or_invalid_labels_are_refused(bad, role_user):  # type: ignore[no-untyped-def]
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        labels.confirm_labels(extraction=make_extraction(), annotator=role_user("annotator"), labels=bad)
    assert not LabelConfirmation.objects.exists()


@pytest.mark.django_db
def test_confirmation_page_highlights_evidence_and_saves_corrections(client, role_user):  # type: ignore[no-untyped-def]
    extraction = labels.import_report(labels.ImportedReport(key="x", text=REPORT))[0]
    nxt = make_extraction("next report", confidence=0.1)
    annotator = role_user("annotator")
    client.force_login(annotator)
    html = client.get(f"/labels/{extraction.pk}/").content.decode()
    sentence = extraction.evidence["canal_stenosis"]
    assert f'<mark data-conditions="canal_stenosis" title="canal_stenosis">{sentence}</mark>' in html
    form = {f"label_{k}": str(v) for k, v in extraction.labels.items()}
    form["label_perineural_cyst"] = "1"  # the annotator corrects one label
    response = client.post(f"/labels/{extraction.pk}/?strategy=uncertain&seed=0", form)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/labels/{nxt.pk}/")  # on to the next report in the queue
    saved = LabelConfirmation.objects.get(extraction=extraction, annotator=annotator)
    assert saved.labels == {**extraction.labels, "perineural_cyst": 1}
    form.pop("label_hemangioma")
    refused = client.post(f"/labels/{extraction.pk}/", form)
    assert refused.status_code == 400
    assert b"missing" in refused.content
    assert LabelConfirmation.objects.get(pk=saved.pk).labels == saved.labels  # unchanged


@pytest.mark.django_db
def test_queue_api_returns_extractions_with_evidence(api_as):  # type: ignore[no-untyped-def]
    extraction = make_extraction(canal_stenosis=1)
    body = api_as("annotator").get("/api/label-queue/", {"strategy": "random", "seed": 3}).json()
    assert [e["id"] for e in body] == [extraction.pk]
    assert api_as("annotator").get("/api/label-queue/", {"strategy": "bogus"}).status_code == 400


# --- agreement --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_agreement_statistics_match_scikit_learn():  # type: ignore[no-untyped-def]
    import random

    rng = random.Random(4)
    a1, a2 = UserFactory(role="annotator"), UserFactory(role="annotator")
    ext, ann, first, second = [], [], [], []
    for i in range(40):
        e = rng.choice([-1, 0, 0, 1])
        extraction = make_extraction(f"report {i}", canal_stenosis=e)
        x = e if rng.random() < 0.75 else rng.choice([-1, 0, 1])
        LabelConfirmation.objects.create(extraction=extraction, annotator=a1, labels=all_labels(canal_stenosis=x))
        ext.append(e)
        ann.append(x)
        if i % 2 == 0:
            y = x if rng.random() < 0.8 else rng.choice([-1, 0, 1])
            LabelConfirmation.objects.create(extraction=extraction, annotator=a2, labels=all_labels(canal_stenosis=y))
            ext.append(e)
            ann.append(y)
            first.append(x)
            second.append(y)
    row = next(r for r in stats.label_agreement() if r["condition"] == "canal_stenosis")
    assert row["n_confirmations"] == 60
    assert row["extractor_kappa"] == pytest.approx(cohen_kappa_score(ext, ann))
    assert row["extractor_accuracy"] == pytest.approx(sum(a == b for a, b in zip(ext, ann, strict=True)) / 60)
    assert row["n_double_annotated"] == 20
    assert row["inter_annotator_kappa"] == pytest.approx(cohen_kappa_score(first, second))
