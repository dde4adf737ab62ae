"""The Celery application. Tasks live in ``reviewer/tasks.py`` and take ids only.

Drafting workers load the pipeline once, at start, and keep it warm: a solo-pool worker (one
per GPU, ``CUDA_VISIBLE_DEVICES`` set per worker) loads it in its only process when it is
ready; a prefork worker loads it in each child after the fork, so CUDA is never initialised
in a process that forks. Workers that do not consume the drafting queue load nothing.
"""

import logging
import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.local")

app = Celery("spinereview")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("reviewer.worker")


def _drafting_queue() -> str:
    route = (app.conf.task_routes or {}).get("reviewer.tasks.draft_study", {})
    return route.get("queue", app.conf.task_default_queue)


def _preload(consumed: set[str]) -> None:
    from django.conf import settings

    if not settings.SPINEREVIEW_PRELOAD_PIPELINE or _drafting_queue() not in consumed:
        return
    from reviewer.services.drafting import preload_pipeline

    try:
        preload_pipeline()
    except Exception:  # a missing model must not stop the worker: the job will fail with the reason
        logger.exception("pipeline preload failed; jobs will load it (and report the error) themselves")


def _consumed_queues() -> set[str]:
    return set(app.amqp.queues.consume_from or app.amqp.queues)


@worker_ready.connect
def _preload_in_solo_worker(sender=None, **_kwargs):  # type: ignore[no-untyped-def]
    pool = getattr(getattr(sender, "controller", None), "pool", None)
    if pool is not None and type(pool).__module__.endswith(("solo", "threads")):
        _preload(_consumed_queues())


@worker_process_init.connect
def _preload_in_prefork_child(**_kwargs):  # type: ignore[no-untyped-def]
    _preload(_consumed_queues())
