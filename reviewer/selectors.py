"""Reads: querysets the views and pages use, with the joins they need (no N+1)."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from reviewer.models import Draft, Finding, LabelExtraction, ReportRevision, Review, Series, Study
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
        .select_related("model_version", "job")
        .prefetch_related(Prefetch("findings", queryset=Finding.objects.order_by("condition")))
    )


def revisions_for(study_id: int) -> QuerySet[ReportRevision]:
    return ReportRevision.objects.filter(study_id=study_id).select_related("author").order_by("number")


def reviews_visible_to(user, study_id: int | None = None) -> QuerySet[Review]:
    """Admins and researchers see every review; a radiologist sees only their own
    (readers are blinded to each other); annotators see none."""
    qs = Review.objects.select_related("reader", "study", "draft__model_version", "signed_revision")
    if study_id is not None:
        qs = qs.filter(study_id=study_id)
    if has_role(user, Role.ADMIN, Role.RESEARCHER):
        return qs
    if has_role(user, Role.RADIOLOGIST):
        return qs.filter(reader=user)
    return qs.none()


def label_extractions() -> QuerySet[LabelExtraction]:
    return LabelExtraction.objects.select_related("study", "revision").prefetch_related("confirmations")
