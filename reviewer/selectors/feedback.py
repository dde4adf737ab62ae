"""Finding feedback and reading time as the viewer and the statistics read them.

A reader's verdicts are immutable rows; the newest row per (reader, finding) is the verdict that
counts (``current_feedback``). Reading time is credited from the viewer's heartbeats, at most one
interval per heartbeat, so an idle gap or a second open tab never counts twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from ml.conditions import CONDITION_KEYS
from reviewer.models import FindingFeedback, ReadingHeartbeat, Review, Study

HEARTBEAT_SECONDS = 15  # the viewer's interval (ohif-extension/src/readingClock.ts)
OUTCOME = {
    FindingFeedback.Verdict.AGREE: "accepted",
    FindingFeedback.Verdict.CORRECT: "corrected",
    FindingFeedback.Verdict.DISAGREE: "rejected",
}


def feedback_of(*, study: Study, reader: Any) -> QuerySet[FindingFeedback]:
    """Every feedback row of ``reader`` on ``study``, oldest first (their own only: blinding)."""
    return (
        FindingFeedback.objects.filter(study=study, reader=reader)
        .select_related("finding")
        .order_by("created_at", "id")
    )


def current_feedback(rows: QuerySet[FindingFeedback]) -> QuerySet[FindingFeedback]:
    """The newest row per (reader, finding): the verdicts that count. A row counts when no later
    row of the same reader on the same finding exists (portable: the demo runs on SQLite, which
    has no DISTINCT ON)."""
    later = FindingFeedback.objects.filter(reader_id=OuterRef("reader_id"), finding_id=OuterRef("finding_id")).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))
    )
    return rows.exclude(Exists(later)).order_by("reader_id", "finding_id")


def credited_seconds(times: Iterable[datetime], interval: float = HEARTBEAT_SECONDS) -> float:
    """Active seconds from ordered heartbeat times: each one credits the gap since the previous
    one, at most ``interval`` (the first credits ``interval``)."""
    total, previous = 0.0, None
    for at in times:
        total += interval if previous is None else min(interval, max(0.0, (at - previous).total_seconds()))
        previous = at
    return total


def active_seconds(*, study: Study, reader: Any) -> float:
    """The reader's active reading time of ``study`` (heartbeats up to their sign-off)."""
    times = ReadingHeartbeat.objects.filter(study=study, reader=reader).order_by("at").values_list("at", flat=True)
    signed = Review.objects.filter(study=study, reader=reader).values_list("signed_at", flat=True).first()
    if signed is not None:
        times = times.filter(at__lte=signed)
    return credited_seconds(times)


def outcome_counts(*, study: Study, reader: Any) -> dict[str, int]:
    """accepted / corrected / rejected findings by the reader's current verdicts."""
    counts = Counter(
        OUTCOME[v] for v in current_feedback(feedback_of(study=study, reader=reader)).values_list("verdict", flat=True)
    )
    return {k: counts.get(k, 0) for k in ("accepted", "corrected", "rejected")}


@dataclass(frozen=True)
class ConditionAgreement:
    condition: str
    n: int  # findings with a current verdict (one per reader and finding)
    agree: int
    disagree: int
    corrected: int

    @property
    def agreement(self) -> float | None:
        """Share of verdicts that accept the AI's call as it stands."""
        return self.agree / self.n if self.n else None

    def to_dict(self) -> dict:
        return {**self.__dict__, "agreement": self.agreement}


def agreement_by_condition(model_version: str | None = None) -> list[ConditionAgreement]:
    """Per condition, how readers judged the AI's findings (current verdicts only), optionally of
    one model version (``name@version``). One GROUP BY over the DISTINCT ON of current rows."""
    rows = FindingFeedback.objects.all()
    if model_version:
        name, _, version = model_version.partition("@")
        rows = rows.filter(draft__model_version__name=name, draft__model_version__version=version)
    current = current_feedback(rows).values("pk")
    grouped = (
        FindingFeedback.objects.filter(pk__in=current)
        .values("finding__condition")
        .annotate(
            n=Count("pk"),
            agree=Count("pk", filter=Q(verdict="agree")),
            disagree=Count("pk", filter=Q(verdict="disagree")),
            corrected=Count("pk", filter=Q(verdict="correct")),
        )
    )
    found = {g["finding__condition"]: g for g in grouped}
    out = []
    for key in CONDITION_KEYS:
        g = found.get(key, {})
        out.append(
            ConditionAgreement(key, g.get("n", 0), g.get("agree", 0), g.get("disagree", 0), g.get("corrected", 0))
        )
    return out
