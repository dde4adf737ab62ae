"""Report revisions and RADPEER reviews.

Concurrency model (two radiologists saving at once): every save names the revision it was
based on (``parent``). If that is not the current head, the save is still stored, flagged
``is_conflict``, and the caller gets a ``RevisionConflict`` carrying both, so the user can
merge. Nothing is ever overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from reviewer.metrics import report_edit_distances
from reviewer.models import Draft, ReportRevision, Review, Study
from reviewer.services.audit import audit
from reviewer.services.workflow import open_arbitration


@dataclass
class RevisionConflict(Exception):
    saved: ReportRevision
    head: ReportRevision


def head_revision(study: Study) -> ReportRevision | None:
    return study.revisions.filter(is_conflict=False).order_by("-number").first()


def save_revision(
    *, study: Study, author, text: str, sections: dict | None = None, parent_id: int | None
) -> ReportRevision:
    """Append a revision. If ``parent_id`` is stale the revision is committed first, flagged
    as a conflict, and then RevisionConflict is raised so the caller can show both."""
    revision, head = _append_revision(study=study, author=author, text=text, sections=sections, parent_id=parent_id)
    if revision.is_conflict:
        raise RevisionConflict(saved=revision, head=head)  # type: ignore[arg-type]
    return revision


@transaction.atomic
def _append_revision(
    *, study: Study, author, text: str, sections: dict | None, parent_id: int | None
) -> tuple[ReportRevision, ReportRevision | None]:
    Study.objects.select_for_update().filter(pk=study.pk).first()  # serialise savers of one study
    head = head_revision(study)
    conflict = (head.pk if head else None) != parent_id
    last = study.revisions.order_by("-number").values_list("number", flat=True).first() or 0
    revision = ReportRevision.objects.create(
        study=study,
        number=last + 1,
        parent_id=parent_id,
        draft=study.drafts.order_by("-created_at").first(),
        author=author,
        text=text,
        sections=sections or {},
        is_conflict=conflict,
    )
    if study.status in (Study.Status.DRAFT_READY, Study.Status.AWAITING_DRAFT):
        study.status = Study.Status.IN_REVIEW
        study.save(update_fields=["status", "updated_at"])
    audit(actor=author, action="revision.saved", obj=revision, study=study.pk, conflict=conflict)
    return revision, head


@transaction.atomic
def sign_review(
    *,
    study: Study,
    reader,
    radpeer: str,
    comment: str = "",
    in_scope: bool = True,
    revision_id: int | None = None,
) -> Review:
    """Sign a study: store the RADPEER score and the edit distance draft → signed revision."""
    if radpeer not in Review.Radpeer.values:
        raise ValidationError({"radpeer": f"must be one of {', '.join(Review.Radpeer.values)}"})
    if radpeer in Review.ARBITRATION_SCORES and not comment.strip():
        raise ValidationError({"comment": f"RADPEER {radpeer} requires a comment"})
    if revision_id:
        revision = study.revisions.filter(pk=revision_id, is_conflict=False).first()
        if revision is None:
            raise ValidationError({"revision": f"revision {revision_id} is not a signable revision of this study"})
    else:
        revision = head_revision(study)
    if revision is None:
        raise ValidationError({"revision": "nothing to sign: save a report revision first"})
    draft: Draft | None = revision.draft or study.drafts.order_by("-created_at").first()
    review, _ = Review.objects.select_for_update().get_or_create(study=study, reader=reader)
    if review.signed_at:
        raise ValidationError({"review": "already signed; signed reviews are final"})
    review.draft = draft
    review.radpeer = radpeer
    review.comment = comment
    review.in_scope = in_scope
    review.signed_revision = revision
    review.signed_at = timezone.now()
    review.edit_distance = (
        report_edit_distances(draft.text, revision.text, draft_id=draft.pk, revision_id=revision.pk) if draft else {}
    )
    review.save()
    open_arbitration(review=review)  # 2b/3a/3b (no-op otherwise)
    study.status = Study.Status.SIGNED
    study.save(update_fields=["status", "updated_at"])
    audit(actor=reader, action="review.signed", obj=review, study=study.pk, radpeer=radpeer)
    transaction.on_commit(lambda: _queue_label_extraction(review.pk), robust=True)
    return review


def _queue_label_extraction(review_id: int) -> None:
    from reviewer.tasks import extract_review_labels

    extract_review_labels.delay(review_id)
