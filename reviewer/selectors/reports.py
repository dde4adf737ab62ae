"""Report revisions: each reader's chain on a study and its head.

Why here and not beside the saves: the viewer, the sign-off and the concurrency tests all need
"which revision is this reader's current one", and that answer must be the same read everywhere
(one reader's head never another's)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from reviewer.models import ReportRevision, Study


def revisions_for(study_id: int) -> QuerySet[ReportRevision]:
    """Every revision of every reader's chain on a study (admin and research use)."""
    return ReportRevision.objects.filter(study_id=study_id).select_related("author").order_by("created_at", "id")


def chain_of(study: Study, author: Any) -> QuerySet[ReportRevision]:
    """Every revision ``author`` saved on ``study`` (their chain), accepted and conflicting."""
    return ReportRevision.objects.filter(study=study, author=author)


def head_revision(study: Study, *, author: Any) -> ReportRevision | None:
    """The current head of ``author``'s chain on ``study`` (None before their first save).

    There is no study-wide head: with one chain per reader, a shared head would hand one
    reader's text to another."""
    if author is None or not getattr(author, "is_authenticated", False):
        return None
    return chain_of(study, author).filter(is_conflict=False).order_by("-number").first()
