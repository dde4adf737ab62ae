"""``run_draft_job``: what the worker's ``draft_study`` task runs, from the lock to done or failed."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

from django.conf import settings

from reviewer.models import Draft, DraftJob
from reviewer.services.drafting.batching import claim_waiting, settle_extra
from reviewer.services.drafting.compute import BAD_INPUT, compute_drafts
from reviewer.services.drafting.jobs import (
    OutOfScope,
    advance,
    claim,
    gave_up,
    give_up,
    job_lock,
    mark_failed,
    mark_out_of_scope,
)
from reviewer.services.drafting.requesting import send_draft_task
from reviewer.services.drafting.storage import finish, write_sr

logger = logging.getLogger(__name__)


def run_draft_job(*, job_id: int, batch_with: Sequence[int] | None = None) -> DraftJob | None:
    """Run one draft job to done or failed. Idempotent; raises OrthancUnavailable for a retry.
    Returns the job, or None when it was deleted (with its study) while it ran.

    When other jobs of the same pipeline version wait (queued, or orphaned by a lost worker),
    up to SPINEREVIEW_DRAFT_BATCH_STUDIES - 1 of them are drafted in the same run: one
    ``analyze_many`` call encodes the slices of all their studies in shared batches. Their own
    messages then find them done. A batched job that hits a transient fault is put back in
    the queue (and sent again) rather than failed. ``batch_with``: exactly the jobs to draft
    with it instead (in-process tasks: jobs this process queued together, on any database).
    """
    requeue: list[int] = []
    try:
        with contextlib.ExitStack() as held:
            if not held.enter_context(job_lock(job_id)):
                logger.info("draft job %s is running in another worker; leaving it to that worker", job_id)
                return DraftJob.objects.get(pk=job_id)
            job = claim(job_id)
            if job is None:
                return DraftJob.objects.get(pk=job_id)
            if gave_up(job):
                return give_up(job)
            deadline = time.monotonic() + settings.SPINEREVIEW_DRAFT_SOFT_LIMIT_S
            draft = Draft.objects.filter(job_id=job_id).first()
            try:
                if draft is None:
                    extras = claim_waiting(job, held, only=batch_with)
                    stored: dict[int, Draft | BaseException] = {
                        d.job_id: d for d in Draft.objects.filter(job__in=[e.pk for e in extras])
                    }  # orphans whose draft exists: only their SR is missing
                    outcomes = compute_drafts([job, *[e for e in extras if e.pk not in stored]], deadline)
                    outcomes.update(stored)
                    for extra in extras:
                        requeue += settle_extra(extra.pk, outcomes[extra.pk])
                    if isinstance(outcomes[job_id], BaseException):
                        raise outcomes[job_id]
                    draft = outcomes[job_id]
                else:
                    advance(job_id, DraftJob.State.DRAFTING, f"draft {draft.pk} already stored; writing its SR")
                write_sr(draft)
            except OutOfScope as exc:
                return mark_out_of_scope(job_id=job_id, decision=exc.decision)
            except BAD_INPUT as exc:
                return mark_failed(job_id=job_id, reason=str(exc))
            return finish(job_id, draft)
    finally:
        # sent only now that the locks are released, so the next worker can take them
        for extra_id in requeue:
            send_draft_task(extra_id)
