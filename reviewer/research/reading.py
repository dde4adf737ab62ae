"""The ``reading`` research table: per signed review, the active reading time and what the reader
made of the AI's findings, de-identified; and the readers' verdicts as training labels.

Why in research: these rows leave the app (CSV/Parquet exports, the training manifest), so they
carry pseudonymous keys only, and they are read in chunks so an export of a department's years of
reviews costs a few queries per 500 reviews, not per review."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from reviewer.deid import pseudonym_secret
from reviewer.models import FindingFeedback, ReadingHeartbeat, Review
from reviewer.pseudonyms import Pseudonyms
from reviewer.selectors.feedback import OUTCOME, credited_seconds, current_feedback

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
