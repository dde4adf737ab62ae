"""``/api/health/``: is each part the app depends on reachable? 200 if all are, else 503.

Anyone may ask (load balancers and container health checks are anonymous), but only admins get
the details: the detail strings name internals (database engine, broker host, Orthanc version,
and on failure the Orthanc URL and the error), so anonymous callers and other roles see each
check's ``ok`` alone.
"""

from __future__ import annotations

import time

from celery import current_app  # the project's app (webapp/celery.py); reviewer/ does not import webapp/
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from reviewer.integrations.orthanc import ping
from reviewer.models import ModelVersion
from reviewer.roles import Role, has_role


def _check(fn) -> dict:
    start = time.perf_counter()
    try:
        detail = fn()
        ok = True
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - start) * 1000, 1)}


def _database() -> str:
    connection.ensure_connection()
    return connection.vendor


def _orthanc() -> str:
    system = ping()  # raises OrthancUnavailable with the URL and the cause
    return f"Orthanc {system.get('Version')} (DICOMweb root {settings.ORTHANC_DICOMWEB_ROOT})"


def _broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "in-process tasks (no broker)"
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return settings.CELERY_BROKER_URL.split("@")[-1]


def _models() -> str:
    active = ModelVersion.objects.filter(is_active=True).first()
    default = f"no active model version; pipeline {settings.DRAFT_PIPELINE_VERSION}"
    model = f"active: {active.key}" if active else default
    return f"{model}; drafting jobs: {_job_counts()}"


def _job_counts() -> str:
    """Queued / running / failed draft jobs: a stalled or missing GPU worker shows as a growing queue."""
    from django.db.models import Count

    from reviewer.models import DraftJob

    counts = dict(DraftJob.objects.values_list("state").annotate(n=Count("id")).order_by())
    running = sum(counts.get(s, 0) for s in ("fetching", "encoding", "drafting"))
    return f"{counts.get('queued', 0)} queued, {running} running, {counts.get('failed', 0)} failed"


def health(request: HttpRequest) -> JsonResponse:
    checks = {name: _check(fn) for name, fn in
              (("database", _database), ("orthanc", _orthanc), ("broker", _broker), ("models", _models))}  # fmt: skip
    ok = all(c["ok"] for c in checks.values())
    if not has_role(request.user, Role.ADMIN):
        checks = {name: {"ok": c["ok"]} for name, c in checks.items()}
    return JsonResponse({"ok": ok, "checks": checks}, status=200 if ok else 503)
