"""Asking for a draft: the job row (for ``selectors.active_pipeline`` unless a version is named)
and the task sent after commit.

The task is sent by its registered name (``DRAFT_TASK``) rather than imported: ``reviewer.tasks``
imports this package, so importing it back would close an import circle.
"""

from __future__ import annotations

import logging

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


def send_draft_task(job_id: int) -> None:
    """Send ``draft_study(job_id)`` (with in-process tasks it runs right here)."""
    send_task(DRAFT_TASK, job_id)


def enqueue(*, job_id: int) -> None:
    """Send the task; with in-process tasks (the demo) it runs right here, and an error in it
    must not take the caller (the Orthanc watcher) down: the job records it instead."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        send_draft_task(job_id)
        return
    try:
        send_draft_task(job_id)
    except Exception as exc:
        logger.exception("in-process draft job %s failed", job_id)
        mark_failed(job_id=job_id, reason=f"{type(exc).__name__}: {exc}")
