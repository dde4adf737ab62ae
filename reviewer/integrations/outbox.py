"""The outbox: every outgoing message of a signed report is a row before it is a network call.

``enqueue_report_messages`` runs inside the transaction that signs (or adds an addendum): it
writes one ``OutboxMessage`` per configured destination and, once that transaction commits,
queues ``reviewer.tasks.send_outbox_message`` for each. ``send_message`` makes one attempt: on
success the row is ``sent`` with the destination's answer; on failure it stays ``pending`` with
the error, the attempt count and the time of its next attempt (exponential backoff), and after
``SPINEREVIEW_OUTBOX_MAX_ATTEMPTS`` it is ``failed`` until an admin re-sends it
(``resend``). ``flush_due`` re-queues every pending row whose time has come, so a message whose
Celery retry was lost (broker restart, worker killed) is still delivered. Nothing is deleted.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from reviewer.integrations import fhir, hl7, report_sr
from reviewer.integrations.content import signed_report
from reviewer.integrations.orthanc import OrthancUnavailable, orthanc
from reviewer.models import OutboxMessage, ReportRevision
from reviewer.services.audit import audit
from reviewer.task_queue import send_task

logger = logging.getLogger(__name__)

ORTHANC = "orthanc"
SEND_TASK = "reviewer.tasks.send_outbox_message"  # sent by name: reviewer.tasks imports this module


class SendError(RuntimeError):
    """One attempt failed; the message is kept and retried."""


def destinations() -> list[tuple[str, str]]:
    """(kind, destination) of every message a signed report produces under the settings."""
    # Kind members are str at runtime; without Django's stubs mypy types them as their class-body tuples.
    kind = OutboxMessage.Kind
    out: list[tuple[str, str]] = []
    if settings.SPINEREVIEW_SR_TO_ORTHANC:
        out.append((cast(str, kind.SR_STORE), ORTHANC))
        out += [(cast(str, kind.SR_FORWARD), m) for m in settings.SPINEREVIEW_SR_FORWARD_MODALITIES]
    if settings.SPINEREVIEW_FHIR_URL:
        out.append((cast(str, kind.FHIR_PUSH), settings.SPINEREVIEW_FHIR_URL))
    if settings.SPINEREVIEW_HL7_HOST:
        out.append((cast(str, kind.HL7_ORU), f"{settings.SPINEREVIEW_HL7_HOST}:{settings.SPINEREVIEW_HL7_PORT}"))
    return out


def enqueue_report_messages(*, revision: ReportRevision) -> list[OutboxMessage]:
    """The outbox rows of a signed revision or an addendum (idempotent), sent after commit.

    Called inside the signing transaction: if it rolls back, no row and no message exist."""
    rows = []
    for kind, destination in destinations():
        row, _ = OutboxMessage.objects.get_or_create(
            revision=revision, kind=kind, destination=destination, defaults={"study_id": revision.study_id}
        )
        rows.append(row)
    ids = [r.pk for r in rows if r.state == OutboxMessage.State.PENDING]
    if ids:
        transaction.on_commit(lambda: _queue(ids), robust=True)
    return rows


def _queue(ids: list[int], countdown: float = 0) -> None:
    for message_id in ids:
        send_task(SEND_TASK, message_id, countdown=countdown)


def backoff_s(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: base * 2^(attempts - 1), capped."""
    delay = settings.SPINEREVIEW_OUTBOX_BACKOFF_S * 2 ** max(attempts - 1, 0)
    return min(delay, settings.SPINEREVIEW_OUTBOX_BACKOFF_MAX_S)


def send_message(*, message_id: int, force: bool = False) -> OutboxMessage | None:
    """One attempt at one message. Returns the row (sent, pending with a next attempt, or failed),
    or None when the row no longer exists (deleted with its study).

    A row already sent, failed, or not yet due is left alone unless ``force``; two workers
    never send the same row at once (row lock, skip if taken)."""
    with transaction.atomic():
        row = OutboxMessage.objects.select_for_update(skip_locked=True).filter(pk=message_id).first()
        if row is None:  # another worker is sending it (or it was deleted with its study)
            return OutboxMessage.objects.filter(pk=message_id).first()
        if not force and (
            row.state != OutboxMessage.State.PENDING or (row.next_attempt_at and row.next_attempt_at > timezone.now())
        ):
            return row
        row.attempts += 1
        try:
            response = _deliver(row)
        except Exception as exc:  # every failure is kept on the row; the message is never dropped
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if row.attempts >= settings.SPINEREVIEW_OUTBOX_MAX_ATTEMPTS:
                row.state, row.next_attempt_at = OutboxMessage.State.FAILED, None
            else:
                row.state = OutboxMessage.State.PENDING
                row.next_attempt_at = timezone.now() + timedelta(seconds=backoff_s(row.attempts))
            logger.warning("outbox %s (%s -> %s) attempt %d failed: %s", row.pk, row.kind, row.destination,
                           row.attempts, row.last_error)  # fmt: skip
        else:
            row.state, row.sent_at, row.next_attempt_at, row.response = (
                OutboxMessage.State.SENT, timezone.now(), None, response
            )  # fmt: skip
            row.last_error = ""
        row.save()
    return row


def _deliver(row: OutboxMessage) -> dict:
    report = signed_report(row.revision_id)
    if row.kind == OutboxMessage.Kind.SR_STORE:
        sr = report_sr.store_report_sr(report)
        return {"sop_instance_uid": sr.sop_instance_uid}
    if row.kind == OutboxMessage.Kind.SR_FORWARD:
        return forward_sr(report.revision, modality=row.destination)
    if row.kind == OutboxMessage.Kind.FHIR_PUSH:
        return fhir.push_bundle(report, url=row.destination)
    if row.kind == OutboxMessage.Kind.HL7_ORU:
        host, _, port = row.destination.rpartition(":")
        return hl7.send_report(report, control_id=f"SR{row.pk}", host=host, port=int(port), created=row.created_at)
    raise SendError(f"unknown message kind {row.kind!r}")


def forward_sr(revision: ReportRevision, *, modality: str) -> dict:
    """C-STORE the revision's report SR from Orthanc to one of Orthanc's modalities (Orthanc's
    own SCU: ``POST /modalities/<name>/store``, synchronous, so a refusal is seen here)."""
    _, sop_uid = report_sr.report_uids(revision)
    client = orthanc()
    try:
        found = client.post(f"{settings.ORTHANC_URL}/tools/lookup", content=sop_uid)
        found.raise_for_status()
        ids = [r["ID"] for r in found.json() if r.get("Type") == "Instance"]
        if not ids:
            raise SendError(f"report SR {sop_uid} is not in Orthanc yet (its store message goes first)")
        answer = client.post(
            f"{settings.ORTHANC_URL}/modalities/{modality}/store",
            json={"Resources": ids, "Synchronous": True, "Timeout": int(settings.SPINEREVIEW_INTEROP_TIMEOUT_S)},
            timeout=settings.SPINEREVIEW_INTEROP_TIMEOUT_S + 5,
        )
    except httpx.HTTPError as exc:
        raise OrthancUnavailable(f"Orthanc at {settings.ORTHANC_URL}: {exc}") from exc
    if answer.status_code != 200:
        raise SendError(f"C-STORE to modality {modality!r} failed: HTTP {answer.status_code} {answer.text[:300]}")
    body = answer.json()
    failed = int(body.get("FailedInstancesCount", 0) or 0)
    if failed:
        raise SendError(f"C-STORE to modality {modality!r}: {failed} instance(s) refused")
    return {"sop_instance_uid": sop_uid, "instances": int(body.get("InstancesCount", len(ids)) or len(ids))}


def flush_due(*, limit: int = 200) -> int:
    """Queue every pending message that is due (or never tried); returns how many."""
    now = timezone.now()
    ids = list(
        OutboxMessage.objects.filter(state=OutboxMessage.State.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    _queue(ids)
    return len(ids)


@transaction.atomic
def resend(*, message_ids: list[int], actor: Any) -> int:
    """An admin's re-send: failed (or sent) messages go back to pending and are queued now. The
    attempt count goes on (it is the message's history): past the maximum, each re-send is one
    more attempt, and a failure is ``failed`` again at once."""
    rows = list(OutboxMessage.objects.select_for_update().filter(pk__in=message_ids))
    for row in rows:
        row.state, row.next_attempt_at = OutboxMessage.State.PENDING, None
        row.save(update_fields=["state", "next_attempt_at", "updated_at"])
        audit(actor=actor, action="outbox.resend", obj=row, kind=row.kind, destination=row.destination)
    ids = [r.pk for r in rows]
    transaction.on_commit(lambda: _queue(ids), robust=True)
    return len(rows)


__all__ = ["SendError", "backoff_s", "enqueue_report_messages", "flush_due", "forward_sr", "resend", "send_message"]
