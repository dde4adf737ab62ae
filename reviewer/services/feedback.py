"""Finding-level feedback and active reading time.

A reader's verdict on each AI finding (agree / disagree / correct level or side) is stored as an
immutable ``FindingFeedback`` row; the newest row per (reader, finding) is their verdict, earlier
rows stay as history. A reader only ever sees their own feedback, so readers of a shared study
never learn each other's verdicts (blinding holds whatever the study's flag).

Reading time: while the study is visible and the reader has used keyboard or mouse in the last
minute, the viewer sends a heartbeat every ``selectors.HEARTBEAT_SECONDS``. Each heartbeat credits the time
since the previous one, at most one interval, so an idle gap (no heartbeats) counts one interval
at most, two open tabs do not count twice, and nothing after sign-off counts.

Writes here (keyword-only, atomic); the reads (current verdicts, credited reading time, agreement
per condition) are ``reviewer.selectors.feedback``, the research export ``reviewer.research.reading``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from ml.conditions import DISC_LEVELS
from reviewer.models import Finding, FindingFeedback, ReadingHeartbeat, Review, Study
from reviewer.services.audit import audit
from reviewer.services.reports import ReportSigned

LEVELS = tuple(level for levels in DISC_LEVELS.values() for level in levels)
SIDES = ("left", "right", "bilateral", "central")


class FeedbackClosed(ReportSigned):
    """The reader has signed this study: their verdicts are part of the signed review (a kind
    of ``ReportSigned``, so the API answers it as any write to a signed report: 409)."""


# --- writes -----------------------------------------------------------------------------------


@transaction.atomic
def record_feedback(
    *, study: Study, finding_id: int, reader, verdict: str, level: str = "", side: str = "", comment: str = ""
) -> FindingFeedback:
    """Append the reader's verdict on one finding of the study's newest draft.

    A correction must change something (level or side); agree/disagree carry neither. After the
    reader has signed the study no verdict is taken: the signed review is what they stood by.
    """
    if verdict not in FindingFeedback.Verdict.values:
        raise ValidationError({"verdict": f"one of {', '.join(FindingFeedback.Verdict.values)}"})
    finding = (
        Finding.objects.select_related("draft").filter(pk=finding_id, draft__study=study).first()
        if finding_id
        else None
    )
    if finding is None:
        raise ValidationError({"finding": "no finding of this study's drafts has this id"})
    if level and level not in LEVELS:
        raise ValidationError({"level": f"one of {', '.join(LEVELS)}"})
    if side and side not in SIDES:
        raise ValidationError({"side": f"one of {', '.join(SIDES)}"})
    if verdict == FindingFeedback.Verdict.CORRECT:
        if not level and not side:
            raise ValidationError({"level": "a correction names the reader's level or side"})
        if (level or finding.level) == finding.level and (side or finding.side) == finding.side:
            raise ValidationError({"level": "the correction repeats the AI's level and side: agree instead"})
    elif level or side:
        raise ValidationError({"level": "level and side belong to a correction only"})
    if Review.objects.filter(study=study, reader=reader, signed_at__isnull=False).exists():
        raise FeedbackClosed("you have signed this study: its finding verdicts are closed")
    row = FindingFeedback.objects.create(
        study=study,
        draft=finding.draft,
        finding=finding,
        reader=reader,
        verdict=verdict,
        level=level,
        side=side,
        comment=comment,
    )
    audit(actor=reader, action="finding_feedback", obj=row, finding=finding.pk, verdict=verdict)
    return row


@transaction.atomic
def record_heartbeat(*, study: Study, reader) -> ReadingHeartbeat | None:
    """One "still reading" tick; none once the reader has signed (reading time ends at sign-off)."""
    if Review.objects.filter(study=study, reader=reader, signed_at__isnull=False).exists():
        return None
    return ReadingHeartbeat.objects.create(study=study, reader=reader)
