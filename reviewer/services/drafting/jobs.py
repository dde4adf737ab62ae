"""The draft job's state machine: ``queued → fetching → encoding → drafting → done | failed``.

Every transition is committed in its own transaction with a line in ``DraftJob.log``, so the API
and the worklist show progress while a worker runs; the study's status follows its jobs but
never moves back from review or sign-off. The per-job advisory lock lives here too: it is what
makes a second delivery of the same job leave.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from reviewer.models import DraftJob, Study
from reviewer.services.audit import audit

logger = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x5350  # first key of pg_try_advisory_lock(int, int): "SP"
RUNNING = (DraftJob.State.FETCHING, DraftJob.State.ENCODING, DraftJob.State.DRAFTING)


class BadInput(Exception):
    """A job that cannot succeed by retrying (the reason is shown to people as is)."""


class OutOfScope(Exception):
    """The scope check refused the study (not MR, not a spine MRI, no sagittal T2, ...): it is
    stored and shown with the reason, not drafted, not retried. An admin can force a draft."""

    def __init__(self, decision: dict) -> None:
        super().__init__(decision["reason"])
        self.decision = decision


class DraftTimeLimit(Exception):
    """The job ran past its time limit (soft limit; the job fails with the stage it was in)."""


def log_state(job: DraftJob, state: str, note: str = "") -> None:
    """Set the state and append its log line (the caller saves the job)."""
    job.state = state
    job.log = [*job.log, {"at": timezone.now().isoformat(), "state": state, "note": note}]


def advance(job_id: int, state: str, note: str = "", *, delay: bool = True, **fields: object) -> DraftJob:
    """Commit a state change now (its own transaction), so readers see progress."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().get(pk=job_id)
        log_state(job, state, note)
        for name, value in fields.items():
            setattr(job, name, value)
        job.save()
    if delay and settings.SPINEREVIEW_DRAFT_STAGE_DELAY_S:  # fault injection (tests, demos): widen each stage
        time.sleep(settings.SPINEREVIEW_DRAFT_STAGE_DELAY_S)
    return job


def add_note(*, job_id: int, note: str) -> None:
    """Add a log line without changing the state (e.g. a transient fault before a retry); the
    note is also the job's reason until the next transition, so people see why it waits."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().get(pk=job_id)
        job.log = [*job.log, {"at": timezone.now().isoformat(), "state": job.state, "note": note}]
        job.reason = note
        job.save(update_fields=["log", "reason"])


def set_study_status(study_id: int, status: str, reason: str = "") -> None:
    """Move the study's status along, never back from review or sign-off. ``status`` is a
    ``Study.Status`` value (callers pass ``str(Study.Status.X)``: the choice's value, typed)."""
    Study.objects.filter(pk=study_id).exclude(status__in=(Study.Status.IN_REVIEW, Study.Status.SIGNED)).update(
        status=status, status_reason=reason[:2000], updated_at=timezone.now()
    )


def mark_failed(*, job_id: int, reason: str) -> DraftJob | None:
    """Fail a job (and its study, unless another draft of it is ready) with a visible reason.
    Returns None when the job no longer exists (its study was deleted)."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("draft job %s no longer exists; nothing to mark failed", job_id)
            return None
        if job.state == DraftJob.State.DONE:
            return job
        job.reason = reason[:4000]
        job.finished_at = timezone.now()
        log_state(job, DraftJob.State.FAILED, reason[:500])
        job.save()
        # the study agrees with its jobs: failed unless another job of it finished (a draft whose
        # SR could not be written is no finished draft)
        if not DraftJob.objects.filter(study_id=job.study_id, state=DraftJob.State.DONE).exists():
            set_study_status(job.study_id, str(Study.Status.FAILED), f"draft failed ({job.pipeline_version}): {reason}")
        audit(actor=None, action="draft.failed", obj=job, reason=reason[:500])
    logger.warning("draft job %s failed: %s", job_id, reason)
    return job


def mark_out_of_scope(*, job_id: int, decision: dict) -> DraftJob | None:
    """End a job the scope check refused: the job fails with "not drafted: <reason>" (terminal,
    no retry) and the study shows "Not drafted" (MR) or "Not applicable" (other modalities)."""
    reason = f"not drafted: {decision['reason']}"
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state == DraftJob.State.DONE:
            return job
        job.reason = reason
        job.finished_at = timezone.now()
        log_state(job, DraftJob.State.FAILED, reason[:500])
        job.save()
        if not DraftJob.objects.filter(study_id=job.study_id, state=DraftJob.State.DONE).exists():
            status = str(
                Study.Status.NOT_APPLICABLE if decision["verdict"] == "not_applicable" else Study.Status.OUT_OF_SCOPE
            )
            set_study_status(job.study_id, status, decision["reason"])
        audit(actor=None, action="draft.out_of_scope", obj=job, reason=decision["reason"][:500])
    logger.info("draft job %s not drafted: %s", job_id, decision["reason"])
    return job


@contextlib.contextmanager
def job_lock(job_id: int) -> Iterator[bool]:
    """Hold a session advisory lock on the job while it runs (PostgreSQL); yields False when
    another live worker holds it. Released when this process's connection ends, even by SIGKILL."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, job_id])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with contextlib.suppress(Exception), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, job_id])


def claim(job_id: int, note: str = "") -> DraftJob | None:
    """Start (or resume) a job; None when there is nothing to do. A job past its attempt limit
    is returned unchanged in state, for the caller to fail."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update(of=("self",)).select_related("study", "model_version").get(pk=job_id)
        if job.state in (DraftJob.State.DONE, DraftJob.State.FAILED):
            logger.info("draft job %s already %s; nothing to do", job_id, job.state)
            return None
        job.attempts += 1
        job.started_at = job.started_at or timezone.now()
        resumed = job.state in RUNNING
        if job.attempts > settings.SPINEREVIEW_DRAFT_MAX_ATTEMPTS:
            job.save(update_fields=["attempts", "started_at"])
            return job  # the caller fails it: a study that kills workers must not loop forever
        text = f"attempt {job.attempts}" + (" (resumed after a lost worker)" if resumed else "") + note
        log_state(job, DraftJob.State.FETCHING, text)
        job.reason = ""
        job.save()
        set_study_status(job.study_id, str(Study.Status.DRAFTING))
    return job


def gave_up(job: DraftJob) -> bool:
    """Whether a claimed job is past its attempt limit (a worker was lost each time)."""
    return job.attempts > settings.SPINEREVIEW_DRAFT_MAX_ATTEMPTS


def give_up(job: DraftJob) -> DraftJob | None:
    """Fail a job whose every attempt lost its worker."""
    return mark_failed(job_id=job.pk, reason=f"gave up after {job.attempts - 1} attempts (worker lost each time)")


def check_deadline(deadline: float | None, stage: str) -> None:
    """Raise DraftTimeLimit when the run is past its soft limit (checked between stages)."""
    if deadline is not None and time.monotonic() > deadline:
        raise DraftTimeLimit(f"time limit of {settings.SPINEREVIEW_DRAFT_SOFT_LIMIT_S:.0f} s exceeded while {stage}")
