"""Studies and their drafts as the lists and the worklist read them, with the joins they need
(no N+1), and the reading order a shift works through."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from reviewer.models import Assignment, Draft, DraftJob, Finding, Review, Series, Study
from reviewer.roles import Role, has_role


def study_list() -> QuerySet[Study]:
    return Study.objects.prefetch_related(
        Prefetch("series", queryset=Series.objects.order_by("series_number", "id"))
    ).order_by("-created_at", "-id")  # pagination needs a stable order


def drafts_for(study_id: int) -> QuerySet[Draft]:
    return (
        Draft.objects.filter(study_id=study_id)
        .select_related("model_version", "job", "study")
        .prefetch_related(Prefetch("findings", queryset=Finding.objects.order_by("condition")), "structured_reports")
    )


# --- the worklist -----------------------------------------------------------------------------


# The AI findings that put a study at the top of a reading shift: the conditions the report's
# impression lists first (``ml.conditions.IMPRESSION_ORDER``), the ones a reader must not find hours late.
URGENT_CONDITIONS: tuple[str, ...] = ("acute_fracture", "osseous_lesion", "intradural_lesion")
WORKLIST_SORTS: tuple[str, ...] = ("priority", "received", "oldest")
_WAITING = (Study.Status.DRAFT_READY, Study.Status.IN_REVIEW)


def _studies_calling(condition_keys: tuple[str, ...] | list[str]) -> QuerySet[Finding]:
    """Ids of the studies whose newest draft (the one the viewer shows: latest ``created_at``,
    then highest id) calls one of these conditions present. Uncorrelated, so a filter or an
    annotation over every study reads it once (a semi-join or a hashed subplan in PostgreSQL)
    instead of once per study; the indexes ``finding_present_condition`` and
    ``draft_study_newest`` find the present findings and the newer drafts without reading the
    rest of either table."""
    created = OuterRef("draft__created_at")
    newer = Draft.objects.filter(study_id=OuterRef("draft__study_id")).filter(
        Q(created_at__gt=created) | Q(created_at=created, id__gt=OuterRef("draft_id"))
    )
    present = Finding.objects.filter(present=True, condition__in=condition_keys).filter(~Exists(newer))
    return present.order_by().values("draft__study_id")


def _called_present(condition_keys: tuple[str, ...] | list[str]) -> QuerySet[Finding]:
    """Findings of the outer study's newest draft that the AI calls present, for ``Subquery``
    over the few studies of one page (correlated: read once per study)."""
    newest = Draft.objects.filter(study=OuterRef(OuterRef("pk"))).order_by("-created_at", "-id").values("pk")[:1]
    return Finding.objects.filter(draft_id=Subquery(newest), present=True, condition__in=condition_keys)


def with_reading_priority(qs: QuerySet[Study], *, user) -> QuerySet[Study]:
    """Annotate what the reading order needs: ``to_read`` (a draft waits and ``user`` has not
    signed it) and ``urgent`` (the newest draft calls an urgent condition present). Both test
    membership in an uncorrelated subquery, which PostgreSQL reads once per query; a correlated
    ``EXISTS`` here is costed per study, and at 100,000 studies that estimate alone switches on
    PostgreSQL's JIT compiler, which then spent seconds compiling a query that runs in tenths."""
    signed_by_me = Review.objects.filter(reader=user, signed_at__isnull=False).values("study_id")
    return qs.annotate(
        to_read=ExpressionWrapper(Q(status__in=_WAITING) & ~Q(pk__in=signed_by_me), output_field=BooleanField()),
        urgent=ExpressionWrapper(Q(pk__in=_studies_calling(URGENT_CONDITIONS)), output_field=BooleanField()),
    )


# A reading shift reads what waits for the reader first, urgent AI findings first, first come
# first served; the viewer's "next study" follows the same order (``next_unread_study``).
READING_ORDER: tuple[str, ...] = ("-to_read", "-urgent", "created_at", "id")


def _worklist_base(
    *,
    user,
    mine: bool,
    date_from,
    date_to,
    q: str,
    finding: str,
) -> QuerySet[Study]:
    qs = Study.objects.all()
    if mine:
        qs = qs.filter(assignments__reader=user)
    if date_from:
        qs = qs.filter(study_date__gte=date_from)
    if date_to:
        qs = qs.filter(study_date__lte=date_to)
    if q:
        text = Q(description__icontains=q) | Q(study_uid__icontains=q) | Q(modalities__icontains=q)
        if has_role(user, Role.ADMIN):
            text |= Q(patient_name__icontains=q) | Q(patient_id__icontains=q) | Q(accession_number__icontains=q)
        qs = qs.filter(text)
    if finding:
        qs = qs.filter(pk__in=_studies_calling([finding]))
    return qs


def worklist(
    *,
    user,
    status: str = "",
    mine: bool = False,
    date_from=None,  # datetime.date | None
    date_to=None,
    q: str = "",
    finding: str = "",
    sort: str = "received",
) -> QuerySet[Study]:
    """The worklist's studies, filtered and in order, and nothing more: a page of it is sliced in
    the database and then completed by ``worklist_rows``, so what a row shows is read for the
    rows of one page, never for every study. Free text matches description, study UID and
    modality; admins also match patient name/ID and accession (others must not be able to
    probe identities). ``finding`` keeps the studies whose newest draft calls that condition
    present. ``sort``: ``priority`` (``READING_ORDER``), ``received`` (newest first) or ``oldest``."""
    qs = _worklist_base(user=user, mine=mine, date_from=date_from, date_to=date_to, q=q, finding=finding)
    if status:
        qs = qs.filter(status=status)
    if sort == "priority":
        return with_reading_priority(qs, user=user).order_by(*READING_ORDER)
    return qs.order_by(*{"oldest": ("created_at", "id")}.get(sort, ("-created_at", "-id")))


def worklist_rows(studies: Iterable[Study], *, finding: str = "") -> list[Study]:
    """The studies of one worklist page, in the same order, with what their rows show: series,
    drafting jobs newest first (``jobs_newest_first``), assigned readers, ``signed_count``, the
    most probable urgent condition of the newest draft and its probability (``urgent_condition``,
    ``urgent_probability``: the tag) and, with ``finding``, that finding's probability
    (``finding_probability``). One query per kind of data for the whole page."""
    ids = [s.pk for s in studies]
    urgent = _called_present(URGENT_CONDITIONS).order_by("-probability", "condition")
    signed = Review.objects.filter(study=OuterRef("pk"), signed_at__isnull=False).order_by().values("study")
    qs = Study.objects.filter(pk__in=ids).annotate(
        signed_count=Coalesce(Subquery(signed.annotate(n=Count("id")).values("n")), 0),
        urgent_condition=Subquery(urgent.values("condition")[:1]),
        urgent_probability=Subquery(urgent.values("probability")[:1]),
    )
    if finding:
        qs = qs.annotate(finding_probability=Subquery(_called_present([finding]).values("probability")[:1]))
    qs = qs.prefetch_related(
        Prefetch("series", queryset=Series.objects.order_by("series_number", "id")),
        Prefetch("draft_jobs", queryset=DraftJob.objects.order_by("-queued_at", "-id"), to_attr="jobs_newest_first"),
        Prefetch("assignments", queryset=Assignment.objects.select_related("reader").order_by("created_at")),
    )
    by_id = {s.pk: s for s in qs}
    return [by_id[pk] for pk in ids if pk in by_id]


def worklist_status_counts(
    *,
    user,
    mine: bool = False,
    date_from=None,
    date_to=None,
    q: str = "",
    finding: str = "",
) -> dict[str, int]:
    """Studies per status under every worklist filter but the status one (one GROUP BY), so the
    status chips say how many each would show."""
    base = _worklist_base(user=user, mine=mine, date_from=date_from, date_to=date_to, q=q, finding=finding)
    # no join of the filters repeats a study (one assignment per reader and study; the finding
    # filter is a semi-join), so a plain count is a count of studies
    rows = base.order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def next_unread_study(*, user, after_id: int | None = None) -> Study | None:
    """The next study ``user`` should read, in the worklist's reading order: among the studies
    whose draft waits and that ``user`` has not signed, the first (urgent first, then oldest
    received) that comes after study ``after_id`` in that order. The study just read is placed
    by its urgency and received time alone, so signing it does not move where "next" starts."""
    waiting = with_reading_priority(Study.objects.filter(status__in=_WAITING), user=user).filter(to_read=True)
    current = with_reading_priority(Study.objects.filter(pk=after_id), user=user).first() if after_id else None
    if current is not None:
        later = Q(created_at__gt=current.created_at) | Q(created_at=current.created_at, id__gt=current.pk)
        # urgent ones come first: after an urgent study, the later urgent ones and every routine one
        waiting = waiting.filter(Q(urgent=False) | later if current.urgent else Q(urgent=False) & later)
    return waiting.order_by(*READING_ORDER).first()
