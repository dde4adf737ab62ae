"""Send a Celery task by its registered name.

Services queue work (a draft job, an outbox message) but do not import ``reviewer.tasks``: the
tasks import the services, so an import the other way would close a circle. They name the task
instead (``reviewer.tasks.<function>``, the name ``@shared_task`` registers) and the Celery app
resolves it.
"""

from __future__ import annotations

from celery import current_app


def send_task(name: str, *args: object, countdown: float | None = None) -> None:
    """Queue the task registered as ``name`` with ``args``, as ``task.apply_async`` would.

    The call goes through the registered task, so its options and routes apply and, with
    ``CELERY_TASK_ALWAYS_EAGER`` (the demo's in-process tasks), it runs right here, its errors
    raised to the caller. A process that has not imported the task modules yet (the web
    process) imports them first, through the app's autodiscovery of the installed apps.
    """
    app = current_app._get_current_object()
    if name not in app.tasks:
        app.autodiscover_tasks(force=True)
    app.signature(name, args=args).apply_async(countdown=countdown)
