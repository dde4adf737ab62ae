"""Reads: querysets the views and pages use, with the joins they need (no N+1)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Prefetch, QuerySet

from reviewer.models import (
    Draft,
    Finding,
    LabelExtraction,
    ReportRevision,
    Review,
    Series,
    StructuredReport,
    Study,
)
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


def revisions_for(study_id: int) -> QuerySet[ReportRevision]:
    """Every revision of every reader's chain on a study (admin and research use)."""
    return ReportRevision.objects.filter(study_id=study_id).select_related("author").order_by("created_at", "id")


def revisions_visible_to(user, study: Study) -> QuerySet[ReportRevision]:  # type: ignore[no-untyped-def]
    """The report revisions of ``study`` that ``user`` may read.

    Blinding policy: a reader of a blinded study sees only their own chain until they have
    signed; after signing they also see the *signed* reports of the other readers who have
    signed (each one's signed revision and its addenda), never work in progress, conflicting
    saves, or the chain of a reader who has not signed. RADPEER reviews stay private either way
    (``reviews_visible_to``). On an unblinded study, and for admins, every chain is visible.
    Researchers read no report text here (only de-identified exports), like the API."""
    from django.db.models import Q

    from reviewer.services.workflow import blinded_for

    qs = revisions_for(study.pk)
    if has_role(user, Role.RESEARCHER) and not has_role(user, Role.ADMIN, Role.RADIOLOGIST, Role.ANNOTATOR):
        return qs.none()
    if not blinded_for(user, study):
        return qs
    own = Q(author=user)
    signed = Review.objects.filter(study=study, signed_at__isnull=False)
    if not signed.filter(reader=user).exists():
        return qs.filter(own)
    others_signed = signed.exclude(reader=user)
    shown = Q(pk__in=others_signed.values("signed_revision_id")) | Q(
        author__in=others_signed.values("reader_id"), is_addendum=True, is_conflict=False
    )
    return qs.filter(own | shown)


def reviews_visible_to(user, study_id: int | None = None) -> QuerySet[Review]:
    """Admins see every review; a radiologist sees only their own (readers are blinded to each
    other); annotators and researchers see none. Researchers, as in the API, get reviews only as
    the pseudonymised statistics and ``reviews`` export: a review carries the reader, the study
    and the comment."""
    qs = Review.objects.select_related("reader", "study", "draft__model_version", "signed_revision")
    if study_id is not None:
        qs = qs.filter(study_id=study_id)
    if has_role(user, Role.ADMIN):
        return qs
    if has_role(user, Role.RADIOLOGIST):
        return qs.filter(reader=user)
    return qs.none()


def label_extractions() -> QuerySet[LabelExtraction]:
    return LabelExtraction.objects.select_related("study", "revision").prefetch_related("confirmations")


# --- review workflow (worklist, arbitration, annotation) -------------------------------------


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


def with_reading_priority(qs: QuerySet[Study], *, user) -> QuerySet[Study]:  # type: ignore[no-untyped-def]
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
    finding: str,  # type: ignore[no-untyped-def]
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
    finding: str = "",  # type: ignore[no-untyped-def]
) -> dict[str, int]:
    """Studies per status under every worklist filter but the status one (one GROUP BY), so the
    status chips say how many each would show."""
    base = _worklist_base(user=user, mine=mine, date_from=date_from, date_to=date_to, q=q, finding=finding)
    rows = base.order_by().values("status").annotate(n=Count("id", distinct=True))
    return {row["status"]: row["n"] for row in rows}


def next_unread_study(*, user, after_id: int | None = None) -> Study | None:  # type: ignore[no-untyped-def]
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


def arbitrations_for(user, *, state: str = "open") -> QuerySet:
    """Arbitrations an arbiter may see: admins all; a radiologist those of other readers'
    reviews on studies they neither read nor are assigned to; everyone else none."""
    from django.db.models import Exists, OuterRef

    from reviewer.models import Arbitration, Assignment

    qs = Arbitration.objects.select_related(
        "review__study", "review__reader", "review__draft__model_version", "review__signed_revision", "arbiter"
    ).order_by("created_at", "id")
    if state:
        qs = qs.filter(state=state)
    if has_role(user, Role.ADMIN):
        return qs
    if has_role(user, Role.RADIOLOGIST):
        reads = Review.objects.filter(study_id=OuterRef("review__study_id"), reader=user)
        assigned = Assignment.objects.filter(study_id=OuterRef("review__study_id"), reader=user)
        return qs.exclude(review__reader=user).exclude(Exists(reads)).exclude(Exists(assigned))
    return qs.none()


def radiologists() -> QuerySet:
    from django.contrib.auth import get_user_model

    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name=Role.RADIOLOGIST.value)
        .order_by("username")
        .distinct()
    )


def reader_srs_hidden_from(user, study_uid: str | None = None) -> tuple[frozenset[str], frozenset[str]]:  # type: ignore[no-untyped-def]
    """(series UIDs, SOP instance UIDs) of other readers' box SRs that ``user`` may not fetch
    through the DICOMweb proxy: the same blinding policy as the report text. On a blinded study
    a reader sees no other reader's boxes until both have signed; admins and researchers are
    not blinded. A series is hidden only when every SR in it is hidden (older studies kept all
    readers' SRs in one series), the SOP instances always."""
    if has_role(user, Role.ADMIN, Role.RESEARCHER):
        return frozenset(), frozenset()
    others = StructuredReport.objects.filter(
        source__in=(StructuredReport.Source.READER, StructuredReport.Source.REPORT), study__blinded=True
    ).exclude(author=user)  # box SRs and signed-report SRs alike
    if study_uid is not None:
        others = others.filter(study__study_uid=study_uid)
    signed = Review.objects.filter(study=OuterRef("study"), signed_at__isnull=False)
    hidden = (
        others.annotate(author_signed=Exists(signed.filter(reader=OuterRef("author"))))
        .annotate(user_signed=Exists(signed.filter(reader=user)))
        .exclude(author_signed=True, user_signed=True)
        .values_list("series_instance_uid", "sop_instance_uid")
    )
    series = {row[0] for row in hidden}
    sops = frozenset(row[1] for row in hidden)
    shared = StructuredReport.objects.filter(series_instance_uid__in=series).exclude(sop_instance_uid__in=sops)
    series -= set(shared.values_list("series_instance_uid", flat=True))
    return frozenset(series), sops


def finding_feedback_visible_to(user, study: Study):  # type: ignore[no-untyped-def]
    """The finding verdicts ``user`` may read on ``study``: their own only, whatever the study's
    blinding and role (a verdict is a reader's private call until it is aggregated per condition)."""
    from reviewer.services.feedback import feedback_of

    return feedback_of(study=study, reader=user)


# --- priors: the same patient's earlier studies, beside the draft -----------------------------


@dataclass
class PriorReport:
    """A prior's signed report as the viewer shows it: the signed text, or its newest addendum
    (the full amended text); ``reader`` is None where the prior is blinded for the caller."""

    text: str
    signed_at: object  # datetime
    reader: str | None
    is_addendum: bool
    addendum_reason: str


@dataclass
class Prior:
    study: Study
    report: PriorReport | None


PRIORS_MAX = 20


def _prior_report(prior: Study, user) -> PriorReport | None:  # type: ignore[no-untyped-def]
    """The newest signed report of ``prior`` the caller may read. Only signed reports are shown
    (never work in progress). A blinded prior the caller is reading themselves (assigned, or a
    review not yet signed) shows no other reader's report until they sign, as on the study itself."""
    from reviewer.services.workflow import blinded_for

    blinded = blinded_for(user, prior)
    reviews = Review.objects.filter(study=prior, signed_at__isnull=False, signed_revision__isnull=False)
    if blinded:
        reading = (
            prior.assignments.filter(reader=user).exists()
            or Review.objects.filter(study=prior, reader=user, signed_at__isnull=True).exists()
        )
        if reading and not reviews.filter(reader=user).exists():
            return None
    review = reviews.select_related("reader", "signed_revision").order_by("-signed_at", "-id").first()
    if review is None:
        return None
    signed = review.signed_revision
    addenda = ReportRevision.objects.filter(
        study=prior, author=review.reader, is_addendum=True, is_conflict=False, created_at__gte=signed.created_at
    )
    newest = addenda.order_by("-created_at", "-id").first() or signed
    return PriorReport(
        text=newest.text,
        signed_at=review.signed_at,
        reader=None if blinded else str(review.reader),
        is_addendum=newest.is_addendum,
        addendum_reason=newest.addendum_reason,
    )


def priors_for(study: Study, *, user) -> list[Prior]:  # type: ignore[no-untyped-def]
    """The same patient's earlier studies in the app (same PatientID and IssuerOfPatientID, an
    earlier study date, or received earlier where a date is missing), newest first, each with the
    newest signed report ``user`` may read. A study without a PatientID has no priors: nothing
    links it to another.

    The issuer must match exactly, an empty one only an empty one: two hospitals can give one
    PatientID to two people, and a study without an issuer cannot be told apart from either of
    them, so putting another person's study beside the draft is worse than showing no prior."""
    from django.db.models import Q

    if not study.patient_id:
        return []
    qs = Study.objects.filter(patient_id=study.patient_id, patient_id_issuer=study.patient_id_issuer)
    qs = qs.exclude(pk=study.pk)
    if study.study_date:
        qs = qs.filter(Q(study_date__lt=study.study_date) | Q(study_date__isnull=True, created_at__lt=study.created_at))
    else:
        qs = qs.filter(created_at__lt=study.created_at)
    qs = qs.order_by(F("study_date").desc(nulls_last=True), "-created_at", "-id")[:PRIORS_MAX]
    return [Prior(p, _prior_report(p, user)) for p in qs]
