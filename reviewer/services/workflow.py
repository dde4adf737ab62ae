"""Who reads what: reader assignment, blinding, and arbitration of RADPEER 2b/3a/3b.

Rules:
- only radiologists can be assigned as readers (an admin assigns, one or several per study);
- a blinded study hides other readers' reviews and the model identity from its readers
  (the rules are ``reviewer.selectors.blinding``; this module only sets the flag);
- a signed review scored 2b, 3a or 3b opens one Arbitration; an arbiter (admin, or a
  radiologist who is neither that review's reader nor assigned to the study:
  ``selectors.can_arbitrate``) resolves it with
  a decision and a comment. The reader's own score is never overwritten: the decision sits
  next to it, so both are exported.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from reviewer.models import Arbitration, Assignment, Review, Study
from reviewer.roles import Role, has_role
from reviewer.selectors.workflow import can_arbitrate
from reviewer.services.audit import audit
from reviewer.services.statistics import refresh_review_statistics


@transaction.atomic
def assign_readers(*, study: Study, reader_ids: Iterable[int], assigned_by) -> list[Assignment]:
    """Assign readers to a study (idempotent: existing assignments are kept).

    Every id must name an active radiologist; otherwise nothing is assigned.
    """
    ids = sorted(set(int(i) for i in reader_ids))
    users = {u.pk: u for u in get_user_model().objects.filter(pk__in=ids, is_active=True).prefetch_related("groups")}
    missing = [i for i in ids if i not in users]
    if missing:
        raise ValidationError({"readers": f"unknown or inactive users: {missing}"})
    not_readers = [users[i].get_username() for i in ids if not has_role(users[i], Role.RADIOLOGIST)]
    if not_readers:
        raise ValidationError({"readers": f"only radiologists can read studies: {', '.join(not_readers)}"})
    created = []
    for i in ids:
        assignment, new = Assignment.objects.get_or_create(
            study=study, reader=users[i], defaults={"assigned_by": assigned_by}
        )
        if new:
            created.append(assignment)
            audit(actor=assigned_by, action="study.assigned", obj=study, reader=i)
    return created


@transaction.atomic
def unassign_reader(*, study: Study, reader_id: int, actor) -> bool:
    """Remove an assignment. A reader who already signed keeps the review (it is final)."""
    deleted, _ = Assignment.objects.filter(study=study, reader_id=reader_id).delete()
    if deleted:
        audit(actor=actor, action="study.unassigned", obj=study, reader=reader_id)
    return bool(deleted)


@transaction.atomic
def set_blinding(*, study: Study, blinded: bool, actor) -> Study:
    if study.blinded != blinded:
        study.blinded = blinded
        study.save(update_fields=["blinded", "updated_at"])
        audit(actor=actor, action="study.blinding", obj=study, blinded=blinded)
    return study


def open_arbitration(*, review: Review) -> Arbitration | None:
    """Open the arbitration of a signed review scored 2b/3a/3b (idempotent); None otherwise.

    Called inside ``sign_review``'s transaction.
    """
    if not review.needs_arbitration:
        return None
    arbitration, created = Arbitration.objects.get_or_create(review=review)
    if created:
        audit(actor=None, action="arbitration.opened", obj=arbitration, review=review.pk, radpeer=review.radpeer)
    return arbitration


@transaction.atomic
def resolve_arbitration(*, arbitration_id: int, arbiter, decision: str, comment: str) -> Arbitration:
    """Record the arbiter's RADPEER decision and comment; a resolved arbitration is final."""
    arbitration = Arbitration.objects.select_for_update().select_related("review").get(pk=arbitration_id)
    if not can_arbitrate(arbiter, arbitration):
        raise PermissionDenied("you cannot arbitrate this review (your own, or a study you read)")
    if arbitration.state == Arbitration.State.RESOLVED:
        raise ValidationError({"arbitration": "already resolved; arbitration decisions are final"})
    if decision not in Review.Radpeer.values:
        raise ValidationError({"decision": f"must be one of {', '.join(Review.Radpeer.values)}"})
    if not comment.strip():
        raise ValidationError({"comment": "an arbitration decision needs a comment"})
    arbitration.state = Arbitration.State.RESOLVED
    arbitration.arbiter = arbiter
    arbitration.decision = decision
    arbitration.comment = comment.strip()
    arbitration.resolved_at = timezone.now()
    arbitration.save()
    audit(
        actor=arbiter, action="arbitration.resolved", obj=arbitration, review=arbitration.review_id,
        radpeer=arbitration.review.radpeer, decision=decision,
    )  # fmt: skip
    refresh_review_statistics(review_ids=[arbitration.review_id])
    return arbitration


def recompute_edit_distances(*, review_ids: Iterable[int] | None = None, actor=None, batch: int = 500) -> int:
    """Recompute the stored draft → signed edit distances (after a method change, or on
    demand). Compares the same two text versions as at sign time (the review's draft and
    signed revision). Returns the number of reviews updated; safe to run repeatedly."""
    from reviewer.research.metrics import report_edit_distances

    qs = Review.objects.filter(signed_at__isnull=False, draft__isnull=False, signed_revision__isnull=False)
    if review_ids is not None:
        qs = qs.filter(pk__in=list(review_ids))
    qs = qs.select_related("draft", "signed_revision").order_by("pk")
    updated = 0
    pending: list[Review] = []
    for review in qs.iterator(chunk_size=batch):
        review.edit_distance = report_edit_distances(
            review.draft.text, review.signed_revision.text,
            draft_id=review.draft_id, revision_id=review.signed_revision_id,
        )  # fmt: skip
        pending.append(review)
        if len(pending) >= batch:
            updated += _save_distances(pending)
    updated += _save_distances(pending)
    if updated:
        audit(actor=actor, action="edit_distance.recomputed", obj=None, reviews=updated)
    return updated


@transaction.atomic
def _save_distances(reviews: list[Review]) -> int:
    n = len(reviews)
    if n:
        Review.objects.bulk_update(reviews, ["edit_distance"])
        refresh_review_statistics(review_ids=[r.pk for r in reviews])
    reviews.clear()
    return n
