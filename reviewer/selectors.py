"""Reads: querysets the views and pages use, with the joins they need (no N+1)."""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet

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
    (``reviews_visible_to``). On an unblinded study, and for admins and researchers, every chain
    is visible."""
    from django.db.models import Q

    from reviewer.services.workflow import blinded_for

    qs = revisions_for(study.pk)
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


def worklist(
    *,
    user,
    status: str = "",
    mine: bool = False,
    date_from=None,  # datetime.date | None
    date_to=None,
    q: str = "",
) -> QuerySet[Study]:
    """The worklist: studies with their series, current drafting job, assigned readers and
    review count, filtered. Free text matches description, study UID and modality; admins
    also match patient name/ID and accession (others must not be able to probe identities)."""
    from django.db.models import Q

    from reviewer.models import Assignment, DraftJob

    qs = (
        Study.objects.annotate(
            series_count=Count("series", distinct=True),
            signed_count=Count("reviews", filter=Q(reviews__signed_at__isnull=False), distinct=True),
        )
        .prefetch_related(
            Prefetch("series", queryset=Series.objects.order_by("series_number", "id")),
            Prefetch(
                "draft_jobs", queryset=DraftJob.objects.order_by("-queued_at", "-id"), to_attr="jobs_newest_first"
            ),
            Prefetch("assignments", queryset=Assignment.objects.select_related("reader").order_by("created_at")),
        )
        .order_by("-created_at", "-id")
    )
    if status:
        qs = qs.filter(status=status)
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
    return qs


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
