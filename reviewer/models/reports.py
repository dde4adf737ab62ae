"""Report text: every save as an immutable revision, and the outbox that delivers signed reports
to other systems."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from reviewer.models.base import ImmutableModel
from reviewer.models.drafts import Draft
from reviewer.models.studies import Study


class ReportRevision(ImmutableModel):
    """Every save of a report. Each reader has their own chain per study (the revisions they
    authored, rooted at the AI draft), so no reader ever edits, signs or sees another reader's
    text by accident: blinding holds by construction. ``parent`` is the revision of that chain
    the author was editing; a save whose parent is not the chain's current head is kept too,
    flagged as a conflict, so nothing is lost. After sign-off a change is an addendum (a new
    revision flagged ``is_addendum`` with a reason), never a silent edit."""

    study = models.ForeignKey(Study, related_name="revisions", on_delete=models.CASCADE)
    number = models.PositiveIntegerField()  # 1, 2, ... within the author's chain (no gaps from others)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    draft = models.ForeignKey(Draft, null=True, blank=True, on_delete=models.PROTECT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    text = models.TextField()
    sections = models.JSONField(default=dict, blank=True)
    is_conflict = models.BooleanField(default=False)
    is_addendum = models.BooleanField(default=False)
    addendum_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "author", "number"]
        constraints = [
            models.UniqueConstraint(fields=["study", "author", "number"], name="unique_revision_number_per_chain"),
            # backstops of the save service's lock: a chain never forks silently
            models.UniqueConstraint(
                fields=["parent"], condition=Q(is_conflict=False), name="one_accepted_child_per_revision"
            ),
            models.UniqueConstraint(
                fields=["study", "author"],
                condition=Q(parent__isnull=True, is_conflict=False),
                name="one_root_per_chain",
            ),
            models.CheckConstraint(condition=Q(is_addendum=False) | ~Q(addendum_reason=""), name="addendum_has_reason"),
        ]


class OutboxMessage(models.Model):
    """One message to another system (PACS, RIS, FHIR server) about one signed report or addendum.

    Written in the transaction that signs, sent afterwards by ``reviewer.tasks.send_outbox_message``:
    a destination that is down delays a message, never loses it. Each attempt is counted and its
    error kept; after ``SPINEREVIEW_OUTBOX_MAX_ATTEMPTS`` the row stays ``failed`` until an admin
    re-sends it (reviewer/integrations/outbox.py, docs/interoperability.md)."""

    class Kind(models.TextChoices):
        SR_STORE = "sr_store", "Report SR stored into Orthanc"
        SR_FORWARD = "sr_forward", "Report SR forwarded by C-STORE"
        FHIR_PUSH = "fhir_push", "FHIR Bundle pushed"
        HL7_ORU = "hl7_oru", "HL7 v2 ORU^R01 over MLLP"

    class State(models.TextChoices):
        PENDING = "pending"  # waiting for its first or next attempt
        SENT = "sent"
        FAILED = "failed"  # attempts exhausted (or a permanent refusal): an admin re-sends it

    study = models.ForeignKey(Study, related_name="outbox_messages", on_delete=models.CASCADE)
    revision = models.ForeignKey(ReportRevision, related_name="outbox_messages", on_delete=models.PROTECT)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    destination = models.CharField(max_length=100)  # "orthanc", an Orthanc modality name, a URL or host:port
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    response = models.JSONField(default=dict, blank=True)  # what the destination answered (ACK id, Location, ...)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["revision", "kind", "destination"], name="one_message_per_destination")
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.kind} -> {self.destination} ({self.state})"
