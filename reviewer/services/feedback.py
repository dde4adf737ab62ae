"""Finding-level feedback and active reading time.

A reader's verdict on each AI finding (agree / disagree / correct level or side) is stored as an
immutable ``FindingFeedback`` row; the newest row per (reader, finding) is their verdict, earlier
rows stay as history. A reader only ever sees their own feedback, so readers of a shared study
never learn each other's verdicts (blinding holds whatever the study's flag).

Reading time: while the study is visible and the reader has used keyboard or mouse in the last
minute, the viewer sends a heartbeat every ``HEARTBEAT_SECONDS``. Each heartbeat credits the time
since the previous one, at most one interval, so an idle gap (no heartbeats) counts one interval
at most, two open tabs do not count twice, and nothing after sign-off counts.

Writes here (keyword-only, atomic); reads are the selector functions at the end of the module.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from ml.conditions import CONDITION_KEYS, DISC_LEVELS
from reviewer.deid import pseudonym_secret
from reviewer.models import Draft, Finding, FindingFeedback, ReadingHeartbeat, Review, Study
from reviewer.pseudonyms import Pseudonyms
from reviewer.services.audit import audit
from reviewer.services.reports import ReportSigned

HEARTBEAT_SECONDS = 15  # the viewer's interval (ohif-extension/src/readingClock.ts)
LEVELS = tuple(level for levels in DISC_LEVELS.values() for level in levels)
SIDES = ("left", "right", "bilateral", "central")
OUTCOME = {
    FindingFeedback.Verdict.AGREE: "accepted",
    FindingFeedback.Verdict.CORRECT: "corrected",
    FindingFeedback.Verdict.DISAGREE: "rejected",
}


class FeedbackClosed(ReportSigned):
    """The reader has signed this study: their verdicts are part of the signed review (a kind
    of ``ReportSigned``, so the API answers it as any write to a signed report: 409)."""


# --- writes -----------------------------------------------------------------------------------


@transaction.atomic
def record_feedback(
    *, study: Study, finding_id: int, reader, verdict: str, level: str = "", side: str = "", comment: str = ""
) -> FindingFeedback:  # type: ignore[no-untyped-def]
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
def record_heartbeat(*, study: Study, reader) -> ReadingHeartbeat | None:  # type: ignore[no-untyped-def]
    """One "still reading" tick; none once the reader has signed (reading time ends at sign-off)."""
    if Review.objects.filter(study=study, reader=reader, signed_at__isnull=False).exists():
        return None
    return ReadingHeartbeat.objects.create(study=study, reader=reader)


# --- reads --------------------------------------------------------------------------------------


def feedback_of(*, study: Study, reader) -> QuerySet[FindingFeedback]:  # type: ignore[no-untyped-def]
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


def active_seconds(*, study: Study, reader) -> float:  # type: ignore[no-untyped-def]
    """The reader's active reading time of ``study`` (heartbeats up to their sign-off)."""
    times = ReadingHeartbeat.objects.filter(study=study, reader=reader).order_by("at").values_list("at", flat=True)
    signed = Review.objects.filter(study=study, reader=reader).values_list("signed_at", flat=True).first()
    if signed is not None:
        times = times.filter(at__lte=signed)
    return credited_seconds(times)


def outcome_counts(*, study: Study, reader) -> dict[str, int]:  # type: ignore[no-untyped-def]
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
    from django.db.models import Count, Q

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


# --- exports ------------------------------------------------------------------------------------

READING_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("review_key", "string", "HMAC-SHA256 of the review's id with the site secret"),
    ("study_key", "string", "HMAC-SHA256 of the Study Instance UID with the site secret"),
    ("reader_key", "string", "HMAC-SHA256 of the reader's user id with the site secret"),
    ("model_version", "string", "name@version of the model that drafted"),
    ("radpeer", "string", "the reader's RADPEER score"),
    ("active_reading_seconds", "float64", "viewer open to sign-off, idle gaps excluded (15 s heartbeats)"),
    ("findings_accepted", "int64", "findings the reader agreed with (current verdicts)"),
    ("findings_corrected", "int64", "findings whose level or side the reader corrected"),
    ("findings_rejected", "int64", "findings the reader disagreed with"),
)


def iter_reading_rows() -> Iterator[dict]:
    """One de-identified row per signed review: active reading time and finding outcomes."""
    key = Pseudonyms(pseudonym_secret())
    reviews = (
        Review.objects.filter(signed_at__isnull=False)
        .select_related("study", "draft__model_version", "draft__job")
        .order_by("study_id", "reader_id")
    )
    chunk: list[Review] = []
    for review in reviews.iterator(chunk_size=500):
        chunk.append(review)
        if len(chunk) == 500:
            yield from _reading_rows(chunk, key)
            chunk = []
    yield from _reading_rows(chunk, key)


def _reading_rows(reviews: list[Review], key: Pseudonyms) -> Iterator[dict]:
    """The rows of a chunk of signed reviews with three queries (verdicts, heartbeats), not a few
    per review: the export covers a department's years of reviews."""
    if not reviews:
        return
    studies = {r.study_id for r in reviews}
    readers = {r.reader_id for r in reviews}
    outcomes: dict[tuple[int, int], Counter] = defaultdict(Counter)
    verdicts = current_feedback(FindingFeedback.objects.filter(study_id__in=studies, reader_id__in=readers))
    for study_id, reader_id, verdict in verdicts.values_list("study_id", "reader_id", "verdict"):
        outcomes[(study_id, reader_id)][OUTCOME[verdict]] += 1
    beats: dict[tuple[int, int], list] = defaultdict(list)
    for study_id, reader_id, at in (
        ReadingHeartbeat.objects.filter(study_id__in=studies, reader_id__in=readers)
        .order_by("at")
        .values_list("study_id", "reader_id", "at")
    ):
        beats[(study_id, reader_id)].append(at)
    for review in reviews:
        pair = (review.study_id, review.reader_id)
        counts = outcomes[pair]
        times = [t for t in beats[pair] if t <= review.signed_at]  # reading time ends at sign-off
        mv = review.draft.model_version if review.draft else None
        yield {
            "review_key": key("review", review.pk),
            "study_key": key("study", review.study.study_uid),
            "reader_key": key.reader(review.reader_id),
            "model_version": mv.key if mv else (review.draft.job.pipeline_version if review.draft else ""),
            "radpeer": review.radpeer,
            "active_reading_seconds": round(credited_seconds(times), 1),
            "findings_accepted": counts.get("accepted", 0),
            "findings_corrected": counts.get("corrected", 0),
            "findings_rejected": counts.get("rejected", 0),
        }


def reading_time_summary(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """Active reading time and finding outcomes of signed reviews (rows of ``iter_reading_rows``)
    grouped by model version and by RADPEER score: the question a site asks of an AI draft is
    whether it saves reading time, and whether the time saved goes with worse reviews. Median
    (robust to a reader who left the viewer open between heartbeats' 15 s credits) and mean."""
    import statistics

    def summarise(groups: dict[str, list[dict]]) -> list[dict]:
        out = []
        for name in sorted(groups):
            group = groups[name]
            seconds = [r["active_reading_seconds"] for r in group]
            judged = sum(r["findings_accepted"] + r["findings_corrected"] + r["findings_rejected"] for r in group)
            out.append(
                {
                    "name": name,
                    "n": len(group),
                    "median_seconds": statistics.median(seconds),
                    "mean_seconds": statistics.fmean(seconds),
                    "accepted": sum(r["findings_accepted"] for r in group),
                    "corrected": sum(r["findings_corrected"] for r in group),
                    "rejected": sum(r["findings_rejected"] for r in group),
                    "accepted_share": sum(r["findings_accepted"] for r in group) / judged if judged else None,
                }
            )
        return out

    by_model: dict[str, list[dict]] = {}
    by_radpeer: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model_version"] or "(unknown)", []).append(row)
        by_radpeer.setdefault(row["radpeer"] or "(none)", []).append(row)
    return {"by_model": summarise(by_model), "by_radpeer": summarise(by_radpeer)}


def training_feedback(study_ids: Iterable[int], *, key: bytes) -> dict[int, list[dict]]:
    """Per study, the readers' current finding verdicts as training labels with provenance:
    the condition, the label they imply (present 1/0, level, side), the verdict, the reader's
    and the draft's pseudonymous keys and the month given. The AI's own call is kept beside."""
    from reviewer.deid import pseudonym

    out: dict[int, list[dict]] = {}
    rows = current_feedback(FindingFeedback.objects.filter(study_id__in=list(study_ids))).select_related("finding")
    for row in sorted(rows, key=lambda r: (r.study_id, r.finding.condition, r.reader_id)):
        f = row.finding
        if row.verdict == FindingFeedback.Verdict.AGREE:
            present, level, side = f.present, f.level, f.side
        elif row.verdict == FindingFeedback.Verdict.DISAGREE:
            present, level, side = (not f.present), "", ""
        else:
            present, level, side = True, row.level or f.level, row.side or f.side
        out.setdefault(row.study_id, []).append(
            {
                "condition": f.condition,
                "present": int(present),
                "level": level,
                "side": side,
                "verdict": row.verdict,
                "ai": {"present": int(f.present), "level": f.level, "side": f.side, "probability": f.probability},
                "source": "reader_feedback",
                "reader_key": pseudonym("reader", row.reader_id, secret=key),
                "draft_key": pseudonym("draft", row.draft_id, secret=key),
                "given_month": row.created_at.strftime("%Y-%m"),
            }
        )
    return out


def newest_draft(study: Study) -> Draft | None:
    return Draft.objects.filter(study=study).order_by("-created_at", "-id").first()
