"""Studies and their drafts as the lists and the worklist read them, with the joins they need
(no N+1), and the reading order a shift works through."""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet

from reviewer.models import Draft, Finding, Review, Series, Study
from reviewer.roles import Role, has_role


def study_list() -> QuerySet[Study]:
    return (
        Study.objects.annotate(series_count=Count("series", distinct=True))
        .prefetch_related(Prefetch("series", queryset=Series.objects.order_by("series_number", "id")))
        .order_by("-created_at", "-id")  # GROUP BY drops Meta.ordering; pagination needs a stable order
    )


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


def _called_present(condition_keys: tuple[str, ...] | list[str]) -> QuerySet[Finding]:
    """Findings of the outer study's newest draft (the one the viewer shows) that the AI calls
    present, for ``Exists`` / ``Subquery`` over studies."""
    from django.db.models import Subquery

    newest = Draft.objects.filter(study=OuterRef(OuterRef("pk"))).order_by("-created_at", "-id").values("pk")[:1]
    return Finding.objects.filter(draft_id=Subquery(newest), present=True, condition__in=condition_keys)


def with_reading_priority(qs: QuerySet[Study], *, user) -> QuerySet[Study]:
    """Annotate what the reading order needs: ``to_read`` (a draft waits and ``user`` has not
    signed it), ``urgent`` (the newest draft calls an urgent condition present) and, for the
    worklist's tag, the most probable such condition and its probability."""
    from django.db.models import BooleanField, ExpressionWrapper, Q, Subquery

    urgent = _called_present(URGENT_CONDITIONS).order_by("-probability", "condition")
    signed_by_me = Review.objects.filter(study=OuterRef("pk"), reader=user, signed_at__isnull=False)
    return qs.annotate(
        to_read=ExpressionWrapper(Q(status__in=_WAITING) & ~Exists(signed_by_me), output_field=BooleanField()),
        urgent=Exists(urgent),
        urgent_condition=Subquery(urgent.values("condition")[:1]),
        urgent_probability=Subquery(urgent.values("probability")[:1]),
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
    from django.db.models import Q

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
        qs = qs.filter(Exists(_called_present([finding])))
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
    """The worklist: studies with their series, current drafting job, assigned readers and
    review count, filtered. Free text matches description, study UID and modality; admins
    also match patient name/ID and accession (others must not be able to probe identities).
    ``finding`` keeps the studies whose newest draft calls that condition present (annotated
    with its probability). ``sort``: ``priority`` (``READING_ORDER``), ``received`` (newest
    first) or ``oldest``."""
    from django.db.models import Q, Subquery

    from reviewer.models import Assignment, DraftJob

    qs = _worklist_base(user=user, mine=mine, date_from=date_from, date_to=date_to, q=q, finding=finding)
    if status:
        qs = qs.filter(status=status)
    qs = with_reading_priority(qs, user=user).annotate(
        series_count=Count("series", distinct=True),
        signed_count=Count("reviews", filter=Q(reviews__signed_at__isnull=False), distinct=True),
    )
    if finding:
        probability = _called_present([finding]).values("probability")[:1]
        qs = qs.annotate(finding_probability=Subquery(probability))
    order = {"priority": READING_ORDER, "oldest": ("created_at", "id")}.get(sort, ("-created_at", "-id"))
    return qs.prefetch_related(
        Prefetch("series", queryset=Series.objects.order_by("series_number", "id")),
        Prefetch("draft_jobs", queryset=DraftJob.objects.order_by("-queued_at", "-id"), to_attr="jobs_newest_first"),
        Prefetch("assignments", queryset=Assignment.objects.select_related("reader").order_by("created_at")),
    ).order_by(*order)


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
    rows = base.order_by().values("status").annotate(n=Count("id", distinct=True))
    return {row["status"]: row["n"] for row in rows}


def next_unread_study(*, user, after_id: int | None = None) -> Study | None:
    """The next study ``user`` should read, in the worklist's reading order: among the studies
    whose draft waits and that ``user`` has not signed, the first (urgent first, then oldest
    received) that comes after study ``after_id`` in that order. The study just read is placed
    by its urgency and received time alone, so signing it does not move where "next" starts."""
    from django.db.models import Q

    waiting = with_reading_priority(Study.objects.filter(status__in=_WAITING), user=user).filter(to_read=True)
    current = with_reading_priority(Study.objects.filter(pk=after_id), user=user).first() if after_id else None
    if current is not None:
        later = Q(created_at__gt=current.created_at) | Q(created_at=current.created_at, id__gt=current.pk)
        # urgent ones come first: after an urgent study, the later urgent ones and every routine one
        waiting = waiting.filter(Q(urgent=False) | later if current.urgent else Q(urgent=False) & later)
    return waiting.order_by(*READING_ORDER).first()
