"""Arbitration and the readers who can be assigned: who may judge whose review.

Why the arbiter rule is here once: the arbitration list (``arbitrations_for``) and the write that
resolves one (``can_arbitrate``, asked by ``services.workflow.resolve_arbitration``) must agree,
or a radiologist could resolve a review they were never shown, or be shown one they cannot."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet

from reviewer.models import Arbitration, Assignment, Review
from reviewer.roles import Role, has_role


def arbitrations_for(user: Any, *, state: str = "open") -> QuerySet[Arbitration]:
    """Arbitrations an arbiter may see: admins all; a radiologist those of other readers'
    reviews on studies they neither read nor are assigned to; everyone else none."""
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


def can_arbitrate(user: Any, arbitration: Arbitration) -> bool:
    """Admins always; radiologists only for reviews that are not theirs, on studies they do
    not read (an assigned reader of a blinded study must not see the other readers' scores)."""
    if has_role(user, Role.ADMIN):
        return True
    if not has_role(user, Role.RADIOLOGIST):
        return False
    review = arbitration.review
    if review.reader_id == user.pk:
        return False
    return not (
        Assignment.objects.filter(study_id=review.study_id, reader=user).exists()
        or Review.objects.filter(study_id=review.study_id, reader=user).exists()
    )


def radiologists() -> QuerySet[Any]:
    """Active radiologists by username: the readers an admin can assign."""
    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name=Role.RADIOLOGIST.value)
        .order_by("username")
        .distinct()
    )
