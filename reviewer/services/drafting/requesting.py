"""Asking for a draft: the job row (for ``selectors.active_pipeline`` unless a version is named)
and the task sent after commit.

The task is sent by its registered name (``DRAFT_TASK``) rather than imported: ``reviewer.tasks``
imports this package, so importing it back would close an import circle.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextvars import ContextVar, Token

from django.conf import settings
from django.db import transaction

from reviewer.models import DraftJob, ModelVersion, Study
from reviewer.selectors.model_versions import active_pipeline
from reviewer.services.drafting.jobs import log_state, mark_failed
from reviewer.task_queue import send_task

logger = logging.getLogger(__name__)

DRAFT_TASK = "reviewer.tasks.draft_study"  # the name CELERY_TASK_ROUTES routes to the gpu queue


@transaction.atomic
def request_draft(
    *, study: Study, pipeline_version: str | None = None, retry_failed: bool = False, force_scope: bool = False
) -> tuple[DraftJob, bool]:
    """Ensure a draft job exists for the study; enqueue it (after commit) only if new.

    Returns (job, created). Duplicate stable-study events therefore produce one job.
    ``retry_failed`` (the admin's redraft) queues a failed job of the same version again.
    ``force_scope`` (admins) drafts it even if the scope check refuses the study.
    """
    model_version = None
    if pipeline_version is None:
        pipeline_version, model_version = active_pipeline()
    else:
        name, _, version = pipeline_version.partition("@")
        model_version = ModelVersion.objects.filter(name=name, version=version).first()
    job, created = DraftJob.objects.get_or_create(
        study=study,
        pipeline_version=pipeline_version,
        defaults={"model_version": model_version, "scope_override": force_scope},
    )
    if not created and (retry_failed or force_scope) and job.state == DraftJob.State.FAILED:
        job = DraftJob.objects.select_for_update().get(pk=job.pk)
        job.reason, job.attempts, job.finished_at = "", 0, None
        job.scope_override = job.scope_override or force_scope
        log_state(
            job,
            DraftJob.State.QUEUED,
            "queued again after failure" + (" (scope check overridden)" if force_scope else ""),
        )
        job.save()
        created = True
    if created:
        job_id = job.pk
        transaction.on_commit(lambda: enqueue(job_id=job_id))
        logger.info("draft job %s queued for study %s (%s)", job_id, study.study_uid, pipeline_version)
    return job, created


def send_draft_task(job_id: int, batch_with: Sequence[int] = ()) -> None:
    """Send ``draft_study(job_id)`` (with in-process tasks it runs right here)."""
    send_task(DRAFT_TASK, job_id, kwargs={"batch_with": list(batch_with)} if batch_with else None)


# the jobs queued inside ``drafts_together`` (in-process tasks only), to run when it ends
_together: ContextVar[list[int] | None] = ContextVar("drafts_together", default=None)


@contextlib.contextmanager
def drafts_together() -> Iterator[None]:
    """With in-process tasks (the demo), the draft jobs queued inside run when it ends, in runs of
    SPINEREVIEW_DRAFT_BATCH_STUDIES jobs: one ``analyze_many`` and one batch of the report
    agent's drafts (two to three times as fast a draft on a CPU as one at a time), where each would
    otherwise run alone as it is queued. The Orthanc watcher syncs a page of stable studies
    inside it. Without in-process tasks it changes nothing: each job is sent as it is queued,
    and a worker batches the jobs it finds waiting (PostgreSQL)."""
    if not settings.CELERY_TASK_ALWAYS_EAGER or _together.get() is not None:
        yield
        return
    token = _together.set([])
    try:
        yield
    except Exception:  # the body failed half-way: the jobs queued so far are drafted all the same
        _run_together(token)
        raise
    except BaseException:  # Ctrl-C, exit: not now
        _together.reset(token)
        raise
    _run_together(token)


def _run_together(token: Token[list[int] | None]) -> None:
    queued = _together.get() or []
    _together.reset(token)
    size = max(1, settings.SPINEREVIEW_DRAFT_BATCH_STUDIES)
    for i in range(0, len(queued), size):
        _run_here(queued[i], queued[i + 1 : i + size])


def _run_here(job_id: int, batch_with: Sequence[int] = ()) -> None:
    """An in-process run; an error in it must not take the caller (the Orthanc watcher) down:
    the job records it, and the jobs it was to take along are run on their own."""
    try:
        send_draft_task(job_id, batch_with)
    except Exception as exc:
        logger.exception("in-process draft job %s failed", job_id)
        mark_failed(job_id=job_id, reason=f"{type(exc).__name__}: {exc}")
        for other in batch_with:
            if (
                DraftJob.objects.filter(pk=other)
                .exclude(state__in=(DraftJob.State.DONE, DraftJob.State.FAILED))
                .exists()
            ):
                _run_here(other)


def enqueue(*, job_id: int) -> None:
    """Send the task; with in-process tasks (the demo) it runs right here, or when the
    ``drafts_together`` around it ends."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        send_draft_task(job_id)
        return
    queued = _together.get()
    if queued is not None:
        queued.append(job_id)
        return
    _run_here(job_id)


def resume_queued() -> int:
    """With in-process tasks (the demo), draft the jobs a previous run queued and never ran: it
    was stopped between a watcher pass and that pass's drafts (``drafts_together``), and nothing
    else would send them, since the study's job already exists. Returns how many were resumed.
    Celery deployments need none of this: their messages wait in the broker."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        return 0
    waiting = list(
        DraftJob.objects.filter(state=DraftJob.State.QUEUED).order_by("queued_at").values_list("pk", flat=True)
    )
    with drafts_together():
        for job_id in waiting:
            enqueue(job_id=job_id)
    return len(waiting)
