"""The reading workflow: assignments, RADPEER reviews and sign-off, arbitration, and the
viewer's reading-time heartbeats."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from reviewer.models.base import ImmutableModel
from reviewer.models.drafts import Draft
from reviewer.models.reports import ReportRevision
from reviewer.models.studies import Study


class Review(models.Model):
    """One reader's RADPEER review of a study's AI draft, signed at most once."""

    class Radpeer(models.TextChoices):
        CONCUR = "1", "1 — Concur with interpretation"
        MISS_UNLIKELY_SIGNIFICANT = "2a", "2a — Understandable miss, unlikely clinically significant"
        MISS_LIKELY_SIGNIFICANT = "2b", "2b — Understandable miss, likely clinically significant"
        SHOULD_MAKE_UNLIKELY_SIGNIFICANT = "3a", "3a — Should be made most of the time, unlikely significant"
        SHOULD_MAKE_LIKELY_SIGNIFICANT = "3b", "3b — Should be made most of the time, likely significant"

    ARBITRATION_SCORES = ("2b", "3a", "3b")

    study = models.ForeignKey(Study, related_name="reviews", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="reviews", on_delete=models.PROTECT)
    draft = models.ForeignKey(Draft, null=True, blank=True, on_delete=models.PROTECT)
    radpeer = models.CharField(max_length=2, choices=Radpeer.choices, blank=True)
    comment = models.TextField(blank=True)
    in_scope = models.BooleanField(default=True)
    signed_revision = models.ForeignKey(ReportRevision, null=True, blank=True, on_delete=models.PROTECT)
    signed_at = models.DateTimeField(null=True, blank=True)
    edit_distance = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="one_review_per_reader")]
        ordering = ["-created_at"]

    @property
    def needs_arbitration(self) -> bool:
        return self.radpeer in self.ARBITRATION_SCORES


class Assignment(models.Model):
    """A reader assigned to a study (several per study for multi-reader studies)."""

    study = models.ForeignKey(Study, related_name="assignments", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="assignments", on_delete=models.PROTECT)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="one_assignment_per_reader")]
        ordering = ["created_at"]


class Arbitration(models.Model):
    """A review scored 2b/3a/3b goes to arbitration; an arbiter confirms or changes the score."""

    class State(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    review = models.OneToOneField(Review, related_name="arbitration", on_delete=models.CASCADE)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    arbiter = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    decision = models.CharField(max_length=2, choices=Review.Radpeer.choices, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]


class ReadingHeartbeat(ImmutableModel):
    """A "still reading" tick from the viewer: sent while the study is visible and the reader
    has used keyboard or mouse recently. Active reading time is summed from these on the server
    (``reviewer.selectors.active_seconds``), so idle gaps never count."""

    study = models.ForeignKey(Study, related_name="reading_heartbeats", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="reading_heartbeats", on_delete=models.PROTECT)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "reader", "at"]
        indexes = [models.Index(fields=["study", "reader", "at"])]
