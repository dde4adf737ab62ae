"""Label extraction runs and the annotators' confirmation queue.

The label-extraction agent (``ml.agents.labels`` through ``reviewer.ml_bridge``) turns a report
text into ternary labels for the 17 conditions, each with its evidence sentence and a
confidence. It runs on every signed report (and on the draft of the same study, so that the
draft can be scored against the signed report), and on historical reports imported with
``manage.py import_reports``. Annotators then confirm or correct a sample, in the order of
``reviewer.selectors.annotation_queue``.

Every run is idempotent: the same text from the same source is extracted once.
"""

from __future__ import annotations

import csv
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from ml.conditions import CONDITION_KEYS
from reviewer import ml_bridge
from reviewer.models import LabelConfirmation, LabelExtraction, ReportRevision, Review, Study
from reviewer.selectors.labels import ANNOTATED_SOURCES
from reviewer.services.audit import audit
from reviewer.services.statistics import refresh_confirmation_statistics, refresh_study_statistics

log = logging.getLogger(__name__)


def extract(
    *, text: str, source: str, study: Study | None = None, revision: ReportRevision | None = None
) -> tuple[LabelExtraction, bool]:
    """Extract labels from ``text`` and store them, unless this text from this source (and
    revision / study) was extracted already. Returns (extraction, created)."""
    if not text.strip():
        raise ValidationError({"text": "empty report: nothing to extract"})
    existing = LabelExtraction.objects.filter(source=source, report_text=text)
    existing = existing.filter(revision=revision) if revision is not None else existing.filter(study=study)
    found = existing.order_by("-created_at").first()
    if found is not None:
        return found, False
    result = ml_bridge.extract_report_labels(text)
    unknown = set(result.labels) - set(CONDITION_KEYS)
    if unknown:
        raise ValueError(f"extractor {result.extractor} returned unknown conditions {sorted(unknown)}")
    with transaction.atomic():
        extraction = LabelExtraction.objects.create(
            study=study, revision=revision, source=source, report_text=text, extractor=result.extractor,
            labels=result.labels, evidence=result.evidence, confidence=result.confidence,
        )  # fmt: skip
        study_id = study.pk if study is not None else (revision.study_id if revision is not None else None)
        if study_id is not None:  # the labels its signed reviews compare may have changed
            refresh_study_statistics(study_id=study_id)
    return extraction, True


def extract_for_review(*, review_id: int) -> list[LabelExtraction]:
    """Labels of a signed review's report and of the draft it was compared with (idempotent).

    This is what the sign hook queues (``reviewer.tasks.extract_review_labels``).
    """
    review = Review.objects.select_related("signed_revision", "draft", "study").get(pk=review_id)
    if review.signed_revision is None:
        raise ValidationError({"review": f"review {review_id} is not signed"})
    signed, _ = extract(
        text=review.signed_revision.text, source=LabelExtraction.Source.SIGNED_REPORT,
        study=review.study, revision=review.signed_revision,
    )  # fmt: skip
    out = [signed]
    if review.draft is not None and review.draft.text.strip():
        draft, _ = extract(text=review.draft.text, source=LabelExtraction.Source.DRAFT, study=review.study)
        out.append(draft)
    return out


# --- historical reports ---------------------------------------------------------------------


@dataclass
class ImportedReport:
    key: str  # file name or CSV row id: where the text came from (for messages only)
    text: str
    study_uid: str = ""


TEXT_COLUMNS = ("report", "text", "report_text")


def read_reports(path: Path) -> Iterator[ImportedReport]:
    """Reports from a folder of ``.txt`` files (recursive; one report per file) or a CSV file
    with a ``report`` (or ``text``) column and an optional ``study_uid`` column."""
    if path.is_dir():
        for file in sorted(path.rglob("*.txt")):
            yield ImportedReport(key=str(file.relative_to(path)), text=file.read_text(encoding="utf-8"))
        return
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: expected a folder of .txt files or a .csv file")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = {c.strip().lower(): c for c in reader.fieldnames or ()}
        text_col = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
        if text_col is None:
            raise ValueError(f"{path}: no report column (one of {', '.join(TEXT_COLUMNS)}); found {list(columns)}")
        uid_col = columns.get("study_uid")
        for n, row in enumerate(reader, 2):
            yield ImportedReport(
                key=f"{path.name}:{n}",
                text=row[text_col] or "",
                study_uid=(row.get(uid_col) or "").strip() if uid_col else "",
            )


@dataclass
class ImportSummary:
    created: int = 0
    existing: int = 0
    rejected: list[tuple[str, str]] | None = None


def import_report(report: ImportedReport) -> tuple[LabelExtraction, bool]:
    """Extract one historical report, linked to its Study when its UID is known here."""
    study = Study.objects.filter(study_uid=report.study_uid).first() if report.study_uid else None
    return extract(text=report.text, source=LabelExtraction.Source.HISTORICAL, study=study)


# --- confirmations (what to label next is ``reviewer.selectors.annotation_queue``) --------


def validate_labels(labels: dict) -> dict[str, int]:
    """All 17 conditions, each -1, 0 or 1 (an annotator's confirmation is complete)."""
    if not isinstance(labels, dict):
        raise ValidationError({"labels": "expected an object {condition: -1|0|1}"})
    unknown = sorted(set(labels) - set(CONDITION_KEYS))
    if unknown:
        raise ValidationError({"labels": f"unknown conditions: {unknown}"})
    missing = [k for k in CONDITION_KEYS if k not in labels]
    if missing:
        raise ValidationError({"labels": f"every condition needs a label; missing: {missing}"})
    out = {}
    for key in CONDITION_KEYS:
        try:
            value = int(labels[key])
        except (TypeError, ValueError):
            value = None
        if value not in (-1, 0, 1) or str(labels[key]).strip() not in {"-1", "0", "1"}:
            raise ValidationError({"labels": f"{key}: must be -1, 0 or 1, got {labels[key]!r}"})
        out[key] = value
    return out


@transaction.atomic
def confirm_labels(*, extraction: LabelExtraction, annotator, labels: dict, comment: str = "") -> LabelConfirmation:
    """Store (or correct) one annotator's labels for one extraction."""
    if extraction.source not in ANNOTATED_SOURCES:
        raise ValidationError({"extraction": "only signed and historical reports are annotated"})
    clean = validate_labels(labels)
    confirmation, created = LabelConfirmation.objects.update_or_create(
        extraction=extraction, annotator=annotator, defaults={"labels": clean, "comment": comment.strip()}
    )
    refresh_confirmation_statistics(confirmation_ids=[confirmation.pk])
    changed = sorted(k for k in CONDITION_KEYS if extraction.labels.get(k) != clean[k])
    audit(
        actor=annotator, action="labels.confirmed" if created else "labels.corrected", obj=confirmation,
        extraction=extraction.pk, corrected=changed,
    )  # fmt: skip
    return confirmation


def highlight(text: str, evidence: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Split ``text`` into segments, each with the condition keys whose evidence sentence it
    is (empty list = plain text). Evidence not found verbatim is ignored here; the page lists
    it under the label instead."""
    spans: list[tuple[int, int, str]] = []
    for key, sentence in (evidence or {}).items():
        if not sentence:
            continue
        start = text.find(sentence)
        if start >= 0:
            spans.append((start, start + len(sentence), key))
    if not spans:
        return [(text, [])]
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    segments = []
    for a, b in itertools.pairwise(cuts):
        keys = [k for s, e, k in spans if s <= a and b <= e]
        segments.append((text[a:b], keys))
    return segments
