"""Batching: a run takes other waiting jobs of its pipeline version along, so one ``analyze_many``
call encodes the slices of all their studies in shared batches.

Waiting means queued, or orphaned by a lost worker (a running state whose lock nobody holds).
A batched job is claimed and locked like the run's own; its own message then finds it done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from django.conf import settings
from django.db import connection, transaction

from reviewer.models import Draft, DraftJob
from reviewer.services.drafting.compute import BAD_INPUT
from reviewer.services.drafting.jobs import (
    RUNNING,
    OutOfScope,
    claim,
    gave_up,
    give_up,
    job_lock,
    log_state,
    mark_failed,
    mark_out_of_scope,
)
from reviewer.services.drafting.storage import finish, write_sr

logger = logging.getLogger(__name__)


def claim_waiting(primary: DraftJob, held: contextlib.ExitStack, only: Sequence[int] | None = None) -> list[DraftJob]:
    """Claim (lock, in ``held``) up to SPINEREVIEW_DRAFT_BATCH_STUDIES - 1 other jobs of the same
    pipeline version for one batched run (PostgreSQL only: the lock is what makes it safe).

    ``only``: exactly these jobs, on any database: jobs this very process queued and has not
    sent anywhere (in-process tasks, ``requesting.drafts_together``), so no one else runs them."""
    if only is not None:
        candidates: Sequence[int] = [pk for pk in only if pk != primary.pk]
        limit = len(candidates)
    else:
        limit = settings.SPINEREVIEW_DRAFT_BATCH_STUDIES - 1
        if limit <= 0 or connection.vendor != "postgresql":
            return []
        candidates = (
            DraftJob.objects.filter(
                pipeline_version=primary.pipeline_version, state__in=(DraftJob.State.QUEUED, *RUNNING)
            )
            .exclude(pk=primary.pk)
            .order_by("queued_at")
            .values_list("pk", flat=True)[: limit * 4]
        )
    extras: list[DraftJob] = []
    for pk in candidates:
        if len(extras) >= limit:
            break
        if not held.enter_context(job_lock(pk)):
            continue  # a live worker has it
        job = claim(pk, note=f" (batched with job {primary.pk})")
        if job is None:
            continue
        if gave_up(job):
            give_up(job)
            continue
        extras.append(job)
    if extras:
        logger.info("draft job %s: batching %d waiting job(s) with it", primary.pk, len(extras))
    return extras


def settle_extra(job_id: int, outcome: Draft | BaseException) -> list[int]:
    """Finish a batched job, fail it (bad input) or put it back (transient). Returns [id] to resend."""
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        write_sr(outcome)
        finish(job_id, outcome)
        return []
    except OutOfScope as exc:
        mark_out_of_scope(job_id=job_id, decision=exc.decision)
        return []
    except BAD_INPUT as exc:
        mark_failed(job_id=job_id, reason=str(exc))
        return []
    except Exception as exc:  # transient or unexpected: its own run will try again
        with transaction.atomic():
            job = DraftJob.objects.select_for_update().get(pk=job_id)
            log_state(job, DraftJob.State.QUEUED, f"batched run could not finish it, queued again: {exc}"[:500])
            job.save()
        return [job_id]
