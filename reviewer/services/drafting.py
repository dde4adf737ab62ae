"""Draft jobs: at most one per (study, pipeline version), queued on commit.

The job itself (fetch → encode → agents → draft) is the drafting service's; until the model
pipeline is wired in, ``run_draft_job`` records that it ran, so the plumbing from Orthanc's
stable-study event to a worker is exercised end to end.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from reviewer.models import DraftJob, ModelVersion, Study

logger = logging.getLogger(__name__)


def active_pipeline() -> tuple[str, ModelVersion | None]:
    """The pipeline version new drafts use: the admin-activated ModelVersion if any."""
    active = ModelVersion.objects.filter(is_active=True).first()
    return (active.key, active) if active else (settings.DRAFT_PIPELINE_VERSION, None)


@transaction.atomic
def request_draft(*, study: Study, pipeline_version: str | None = None) -> tuple[DraftJob, bool]:
    """Ensure a draft job exists for the study; enqueue it (after commit) only if new.

    Returns (job, created). Duplicate stable-study events therefore produce one job.
    """
    from reviewer.tasks import draft_study

    model_version = None
    if pipeline_version is None:
        pipeline_version, model_version = active_pipeline()
    job, created = DraftJob.objects.get_or_create(
        study=study, pipeline_version=pipeline_version, defaults={"model_version": model_version}
    )
    if created:
        job_id = job.pk
        transaction.on_commit(lambda: draft_study.delay(job_id))
        logger.info("draft job %s queued for study %s (%s)", job_id, study.study_uid, pipeline_version)
    return job, created


def _log(job: DraftJob, state: str, note: str = "") -> None:
    job.state = state
    job.log = [*job.log, {"at": timezone.now().isoformat(), "state": state, "note": note}]


@transaction.atomic
def run_draft_job(*, job_id: int) -> DraftJob:
    """Run one draft job. Idempotent: a job already done is left untouched."""
    job = DraftJob.objects.select_for_update().get(pk=job_id)
    if job.state == DraftJob.State.DONE:
        logger.info("draft job %s already done; nothing to do", job_id)
        return job
    job.attempts += 1
    job.started_at = job.started_at or timezone.now()
    _log(job, DraftJob.State.DONE, "placeholder pipeline: no drafting model is wired in yet")
    job.finished_at = timezone.now()
    job.save()
    return job
