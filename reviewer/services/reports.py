"""Report revisions and RADPEER reviews.

Chains: each reader writes their own revision chain per study, rooted at the AI draft. A
reader's saves, head and signature only ever concern their own chain, so a second reader never
edits, signs or (on a blinded study) sees the first reader's text; who may read which chain is
``reviewer.selectors.revisions_visible_to``, and a reader's head is ``selectors.head_revision``.

Concurrency model (the same report saved from two tabs at once): every save names the revision
it was based on (``parent``). Savers of one study are serialised (row lock on the study on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite, see the settings). If the parent is not the chain's
current head, the save is still stored, flagged ``is_conflict``, and the caller gets a
``RevisionConflict`` carrying both, so the user can merge. Nothing is ever overwritten.

After sign-off the report is final: a change is an addendum (a new revision flagged
``is_addendum`` with the reason, author and time), and a plain save is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from reviewer.models import Assignment, Draft, ReportRevision, Review, Study
from reviewer.research.metrics import report_edit_distances
from reviewer.selectors.reports import chain_of, head_revision
from reviewer.services.audit import audit
from reviewer.services.statistics import refresh_review_statistics
from reviewer.services.workflow import open_arbitration


@dataclass
class RevisionConflict(Exception):
    saved: ReportRevision
    head: ReportRevision | None


class ReportSigned(Exception):
    """A plain save of a report its author has signed: changes must be addenda (with a reason)."""


def _signed_review(study: Study, reader) -> Review | None:
    return Review.objects.filter(study=study, reader=reader, signed_at__isnull=False).first()


def _check_length(text: str) -> None:
    limit = settings.SPINEREVIEW_MAX_REPORT_CHARS
    if len(text) > limit:
        raise ValidationError(
            {"text": f"the report is {len(text)} characters long; at most {limit} are accepted. Shorten it."}
        )


def save_revision(
    *,
    study: Study,
    author,
    text: str,
    sections: dict | None = None,
    parent_id: int | None,
    reason: str = "",
) -> ReportRevision:
    """Append a revision to ``author``'s chain.

    ``parent_id`` must be a revision of that chain (else ValidationError). If it is stale the
    revision is committed first, flagged as a conflict, and then RevisionConflict is raised so
    the caller can show both. Once ``author`` has signed, only an addendum (``reason`` given)
    is accepted; a plain save raises ReportSigned. A reason before signing is a
    ValidationError (there is nothing to amend yet)."""
    _check_length(text)
    reason = (reason or "").strip()
    try:
        revision, head = _append_revision(
            study=study, author=author, text=text, sections=sections, parent_id=parent_id, reason=reason
        )
    except IntegrityError:
        # A backstop constraint fired (a chain must not fork): another save won the race between
        # our read of the head and our insert. Retry once; it now sees that head and stores ours
        # as a conflicting revision instead of losing it.
        revision, head = _append_revision(
            study=study, author=author, text=text, sections=sections, parent_id=parent_id, reason=reason
        )
    if revision.is_conflict:
        raise RevisionConflict(saved=revision, head=head)
    return revision


@transaction.atomic
def _append_revision(
    *, study: Study, author, text: str, sections: dict | None, parent_id: int | None, reason: str
) -> tuple[ReportRevision, ReportRevision | None]:
    Study.objects.select_for_update().filter(pk=study.pk).first()  # serialise savers of one study
    chain = chain_of(study, author)
    parent = None
    if parent_id is not None:
        parent = chain.filter(pk=parent_id).first()
        if parent is None:  # the same words whether it exists elsewhere or not: nothing to probe
            raise ValidationError({"parent": f"revision {parent_id} is not a revision of your report on this study"})
    signed = _signed_review(study, author)
    if signed is not None and not reason:
        raise ReportSigned(
            "You signed this report; it can no longer be edited. Add an addendum instead: "
            "send the amended text with a reason."
        )
    if signed is None and reason:
        raise ValidationError({"reason": "only a signed report takes addenda; save without a reason"})
    head = head_revision(study, author=author)
    conflict = (head.pk if head else None) != parent_id
    last = chain.order_by("-number").values_list("number", flat=True).first() or 0
    draft = parent.draft if parent is not None and parent.draft_id else _newest_draft(study)
    revision = ReportRevision.objects.create(
        study=study,
        number=last + 1,
        parent=parent,
        draft=draft,
        author=author,
        text=text,
        sections=sections or {},
        is_conflict=conflict,
        is_addendum=bool(reason),
        addendum_reason=reason,
    )
    if study.status in (Study.Status.DRAFT_READY, Study.Status.AWAITING_DRAFT):
        study.status = Study.Status.IN_REVIEW
        study.save(update_fields=["status", "updated_at"])
    action = "revision.addendum" if reason else "revision.saved"
    audit(actor=author, action=action, obj=revision, study=study.pk, conflict=conflict)
    if revision.is_addendum and not conflict:  # an addendum goes out like the signed report
        from reviewer.integrations.outbox import enqueue_report_messages

        enqueue_report_messages(revision=revision)
    return revision, head


def _newest_draft(study: Study) -> Draft | None:
    return study.drafts.order_by("-created_at", "-id").first()


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
    """Sign the reader's own report: store the RADPEER score and the edit distance draft →
    signed revision.

    Only the head of the reader's own chain can be signed (``revision_id``, if given, must be
    it). A reader who signs without having saved signs the AI draft as it stands: it is stored
    as the root of their chain, authored by them, so authorship and edit distances stay theirs.
    """
    if radpeer not in Review.Radpeer.values:
        raise ValidationError({"radpeer": f"must be one of {', '.join(Review.Radpeer.values)}"})
    if radpeer in Review.ARBITRATION_SCORES and not comment.strip():
        raise ValidationError({"comment": f"RADPEER {radpeer} requires a comment"})
    Study.objects.select_for_update().filter(pk=study.pk).first()  # serialise with saves of this study
    review, _ = Review.objects.select_for_update().get_or_create(study=study, reader=reader)
    if review.signed_at:
        raise ValidationError({"review": "already signed; signed reviews are final (add an addendum instead)"})
    head = head_revision(study, author=reader)
    if revision_id is not None and (head is None or head.pk != revision_id):
        raise ValidationError(
            {"revision": f"revision {revision_id} is not the current revision of your report on this study"}
        )
    revision = head or _draft_as_revision(study=study, reader=reader)
    draft: Draft | None = revision.draft or _newest_draft(study)
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
    refresh_review_statistics(review_ids=[review.pk])  # its statistics row, in this transaction
    status = study.status
    if _every_reader_signed(study):
        status = Study.Status.SIGNED
    elif status in (Study.Status.DRAFT_READY, Study.Status.AWAITING_DRAFT):
        status = Study.Status.IN_REVIEW
    if status != study.status:  # untouched otherwise: even ``updated_at`` would tell others someone signed
        study.status = status
        study.save(update_fields=["status", "updated_at"])
    audit(actor=reader, action="review.signed", obj=review, study=study.pk, radpeer=radpeer)
    transaction.on_commit(lambda: _queue_label_extraction(review.pk), robust=True)
    from reviewer.integrations.outbox import enqueue_report_messages

    enqueue_report_messages(revision=revision)  # SR / FHIR / HL7 rows, sent after commit
    return review


def _draft_as_revision(*, study: Study, reader) -> ReportRevision:
    """The root of ``reader``'s chain when they sign the AI draft unedited."""
    draft = _newest_draft(study)
    if draft is None:
        raise ValidationError({"revision": "nothing to sign: the study has no draft and you saved no report"})
    revision = ReportRevision.objects.create(
        study=study, number=1, parent=None, draft=draft, author=reader, text=draft.text, sections=draft.sections
    )
    audit(actor=reader, action="revision.saved", obj=revision, study=study.pk, conflict=False, from_draft=draft.pk)
    return revision


def _every_reader_signed(study: Study) -> bool:
    """A study is signed when all its assigned readers signed (any one reader when none is
    assigned): one reader's signature must not show other readers of a multi-reader study
    that someone finished."""
    assigned = set(Assignment.objects.filter(study=study).values_list("reader_id", flat=True))
    signed = set(study.reviews.filter(signed_at__isnull=False).values_list("reader_id", flat=True))
    return bool(signed) and assigned <= signed


def _queue_label_extraction(review_id: int) -> None:
    from reviewer.tasks import extract_review_labels

    extract_review_labels.delay(review_id)
