"""Send a Celery task by its registered name.

Services queue work (a draft job, an outbox message) but do not import ``reviewer.tasks``: the
tasks import the services, so an import the other way would close a circle. They name the task
instead (``reviewer.tasks.<function>``, the name ``@shared_task`` registers) and the Celery app
resolves it.
"""

from __future__ import annotations

from celery import Task, current_app
from celery.result import AsyncResult


def registered_task(name: str) -> Task:
    """The task registered as ``name``. A process that has not imported the task modules yet
    (the web process, the watcher) has the Celery app discover them first (each installed
    app's ``tasks`` module); an unknown name raises ``celery.exceptions.NotRegistered``."""
    if name not in current_app.tasks:
        current_app.autodiscover_tasks(force=True)
    return current_app.tasks[name]


def send_task(
    name: str, *args: object, countdown: float | None = None, kwargs: dict[str, object] | None = None
) -> AsyncResult:
    """Queue the task registered as ``name`` with ``args`` (and ``kwargs``), exactly as
    ``task.apply_async``: its options and routes apply, and with ``CELERY_TASK_ALWAYS_EAGER`` (the
    demo's in-process tasks) it runs right here, its errors raised to the caller."""
    return registered_task(name).apply_async(args, kwargs=kwargs, countdown=countdown)
