"""Data model. Pixels live only in Orthanc; rows here hold UIDs and derived results.

One module per topic (``studies``, ``drafts``, ``reports``, ``workflow``, ``labels``, ``audit``,
``statistics``); every model is re-exported here, so callers write ``from reviewer.models import
Study`` and Django finds them all when it imports the app's models.

Immutability rules that the rest of the code relies on:
- a ``Draft`` (AI output) is never edited once written;
- a ``ReportRevision`` is never edited: every save appends one, with author and time;
- an ``AuditEvent`` is append-only.
"""

from __future__ import annotations

from reviewer.models.audit import AuditEvent
from reviewer.models.base import ImmutableModel
from reviewer.models.drafts import Draft, DraftJob, Finding, ModelVersion, StructuredReport
from reviewer.models.labels import FindingFeedback, LabelConfirmation, LabelExtraction
from reviewer.models.reports import OutboxMessage, ReportRevision
from reviewer.models.statistics import ConfirmationStatistics, ReviewStatistics
from reviewer.models.studies import OrthancCursor, Series, Study
from reviewer.models.workflow import Arbitration, Assignment, ReadingHeartbeat, Review

__all__ = [
    "Arbitration",
    "Assignment",
    "AuditEvent",
    "ConfirmationStatistics",
    "Draft",
    "DraftJob",
    "Finding",
    "FindingFeedback",
    "ImmutableModel",
    "LabelConfirmation",
    "LabelExtraction",
    "ModelVersion",
    "OrthancCursor",
    "OutboxMessage",
    "ReadingHeartbeat",
    "ReportRevision",
    "Review",
    "ReviewStatistics",
    "Series",
    "StructuredReport",
    "Study",
]
