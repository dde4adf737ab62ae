"""Celery tasks: thin, take ids, idempotent, retried with backoff on transient faults."""

from __future__ import annotations

from celery import shared_task

from reviewer.services.drafting import run_draft_job
from reviewer.services.orthanc import OrthancUnavailable


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(OrthancUnavailable, ConnectionError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=10,
)
def draft_study(self, job_id: int) -> str:  # type: ignore[no-untyped-def]
    job = run_draft_job(job_id=job_id)
    return job.state


@shared_task(acks_late=True)
def sync_orthanc_changes() -> int:
    """Process Orthanc's change feed once (for deployments that prefer celery beat)."""
    from reviewer.services.sync import process_changes

    return process_changes()
