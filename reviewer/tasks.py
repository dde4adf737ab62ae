"""Celery tasks: thin, take ids, idempotent, retried with backoff on transient faults.

Services never import this module (it imports them): they send a task by its registered name,
``reviewer.tasks.<function>`` (``reviewer.task_queue.send_task``).

``draft_study`` runs on the ``gpu`` queue (settings.CELERY_TASK_ROUTES), served by one
single-process worker per GPU (``--pool solo``; see docs/drafting.md). The solo pool has no
time limits of its own, so the task arms a SIGALRM soft limit itself when it runs in the main
thread; prefork workers (CPU fallback) get Celery's own soft/hard limits from the decorator.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from reviewer.integrations.orthanc import OrthancUnavailable
from reviewer.services.drafting import add_note, mark_failed, run_draft_job

logger = logging.getLogger(__name__)

TRANSIENT = (OrthancUnavailable, ConnectionError)


class DraftTask(Task):
    """Marks the job failed when Celery gives up on it (retries exhausted, unexpected error)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # An exception here is raised outside the task body, which stops a solo-pool worker and
        # re-delivers the message (acks_late) to the next one: it must never raise.
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id is None:
            return
        try:
            mark_failed(job_id=job_id, reason=f"{type(exc).__name__}: {exc}")
        except Exception:
            logger.exception("could not mark draft job %s failed", job_id)


@contextlib.contextmanager
def soft_time_limit(seconds: float) -> Iterator[None]:
    """SIGALRM-based soft limit for the solo pool (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise SoftTimeLimitExceeded(f"soft time limit of {seconds:.0f} s exceeded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@shared_task(
    bind=True,
    base=DraftTask,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=settings.SPINEREVIEW_DRAFT_MAX_RETRIES,
    soft_time_limit=settings.SPINEREVIEW_DRAFT_SOFT_LIMIT_S,
    time_limit=settings.SPINEREVIEW_DRAFT_HARD_LIMIT_S,
)
def draft_study(self, job_id: int, batch_with: list[int] | None = None) -> str:
    """Draft one job; ``batch_with``: jobs this process queued together with it and hands it to
    draft in the same run (in-process tasks, ``requesting.drafts_together``)."""
    from reviewer.models import DraftJob

    if not DraftJob.objects.filter(pk=job_id).exists():
        # the study (and its jobs) was deleted while the message waited: acknowledge and move on,
        # otherwise the message would be re-delivered to every worker forever (a poison message)
        logger.warning("draft job %s no longer exists; message dropped", job_id)
        return "missing"
    try:
        with soft_time_limit(settings.SPINEREVIEW_DRAFT_SOFT_LIMIT_S + 5):
            job = run_draft_job(job_id=job_id, batch_with=batch_with)
    except TRANSIENT as exc:
        countdown = min(settings.SPINEREVIEW_DRAFT_RETRY_BACKOFF_S * 2**self.request.retries, 300)
        add_note(
            job_id=job_id, note=f"transient fault, retry {self.request.retries + 1} in {countdown:.0f} s: {exc}"[:500]
        )
        raise self.retry(exc=exc, countdown=countdown) from exc
    except SoftTimeLimitExceeded as exc:
        failed = mark_failed(job_id=job_id, reason=f"time limit: {exc}")
        return failed.state if failed else "missing"
    return job.state if job else "missing"  # None: the job was deleted (with its study) while it ran


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


@shared_task(bind=True, acks_late=True, max_retries=None)
def send_outbox_message(self, message_id: int) -> str:
    """One attempt at an outbox message (reviewer/integrations/outbox.py); while it stays
    pending, the next attempt is scheduled at the row's backoff time. The row, not this
    message, is the record: ``flush_outbox`` re-queues any pending row whose retry was lost."""
    from django.utils import timezone

    from reviewer.integrations.outbox import send_message

    row = send_message(message_id=message_id)
    if row is None:
        return "missing"
    if row.state == row.State.PENDING and row.next_attempt_at is not None:
        countdown = max((row.next_attempt_at - timezone.now()).total_seconds(), 0.0)
        raise self.retry(countdown=countdown)
    return row.state


@shared_task(acks_late=True)
def flush_outbox() -> int:
    """Queue the outbox messages that are due (for celery beat, e.g. every minute)."""
    from reviewer.integrations.outbox import flush_due

    return flush_due()
