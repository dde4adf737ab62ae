"""Training labels: conditions extracted from report text, annotators' confirmations, and readers'
verdicts on single AI findings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from reviewer.models.base import ImmutableModel
from reviewer.models.drafts import Draft, Finding
from reviewer.models.reports import ReportRevision
from reviewer.models.studies import Study


class LabelExtraction(ImmutableModel):
    """Ternary labels for the 17 conditions extracted from one report text by one extractor."""

    class Source(models.TextChoices):
        SIGNED_REPORT = "signed_report"
        DRAFT = "draft"
        HISTORICAL = "historical"

    study = models.ForeignKey(Study, null=True, blank=True, related_name="label_extractions", on_delete=models.CASCADE)
    revision = models.ForeignKey(ReportRevision, null=True, blank=True, on_delete=models.CASCADE)
    source = models.CharField(max_length=20, choices=Source.choices)
    report_text = models.TextField()
    extractor = models.CharField(max_length=100)
    labels = models.JSONField()  # {condition_key: -1|0|1}
    evidence = models.JSONField(default=dict, blank=True)  # {condition_key: "sentence"}
    confidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class LabelConfirmation(models.Model):
    extraction = models.ForeignKey(LabelExtraction, related_name="confirmations", on_delete=models.CASCADE)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    labels = models.JSONField()  # the annotator's final {condition_key: -1|0|1}
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["extraction", "annotator"], name="one_confirmation_per_annotator")
        ]
        ordering = ["-created_at"]


class FindingFeedback(ImmutableModel):
    """One reader's verdict on one AI finding: agree, disagree (the AI's present/absent call is
    wrong) or correct (right condition, another level or side). Rows are never edited: a reader
    who changes their mind adds a row, the newest row per (reader, finding) is their verdict,
    and the history stays for the training export's provenance."""

    class Verdict(models.TextChoices):
        AGREE = "agree"
        DISAGREE = "disagree"
        CORRECT = "correct"

    study = models.ForeignKey(Study, related_name="finding_feedback", on_delete=models.CASCADE)
    draft = models.ForeignKey(Draft, related_name="finding_feedback", on_delete=models.PROTECT)
    finding = models.ForeignKey(Finding, related_name="feedback", on_delete=models.PROTECT)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="finding_feedback", on_delete=models.PROTECT)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    level = models.CharField(max_length=16, blank=True)  # the reader's level (correct), else blank
    side = models.CharField(max_length=10, blank=True)  # the reader's side (correct), else blank
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "reader", "finding", "created_at", "id"]
        indexes = [models.Index(fields=["study", "reader", "finding", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(verdict="correct") | (Q(level="") & Q(side="")), name="feedback_level_only_on_correct"
            ),
        ]
