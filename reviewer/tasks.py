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


@shared_task(acks_late=True, autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=5)
def extract_review_labels(review_id: int) -> list[int]:
    """Label extraction of a signed review's report and its draft (idempotent; queued on sign)."""
    from reviewer.services.labels import extract_for_review

    return [e.pk for e in extract_for_review(review_id=review_id)]
