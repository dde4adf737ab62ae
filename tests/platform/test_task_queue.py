"""Services send Celery tasks by their registered names (``reviewer/task_queue.py``) instead of
importing ``reviewer.tasks``: the names must be those the tasks register (a wrong one would
queue messages no worker runs), a process that has not imported the tasks yet must still find
them, and with in-process tasks (the demo) a task sent by name must run right there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reviewer.integrations.outbox import SEND_TASK
from reviewer.services.drafting import DRAFT_TASK

ROOT = Path(__file__).resolve().parents[2]


def test_the_names_the_services_send_are_the_tasks_the_app_registers(settings) -> None:  # type: ignore[no-untyped-def]
    from reviewer import tasks

    assert tasks.draft_study.name == DRAFT_TASK
    assert tasks.send_outbox_message.name == SEND_TASK
    assert DRAFT_TASK in settings.CELERY_TASK_ROUTES  # the gpu queue is chosen by this name


def test_a_process_that_never_imported_the_tasks_finds_them_by_name() -> None:
    """As the web process and the watcher: nothing there imports ``reviewer.tasks``."""
    code = (
        "import sys, django; django.setup()\n"
        "from reviewer.task_queue import registered_task\n"
        "print('reviewer.tasks' in sys.modules)\n"
        f"print(registered_task({DRAFT_TASK!r}).name, registered_task({SEND_TASK!r}).name)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "webapp.settings.test")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["False", f"{DRAFT_TASK} {SEND_TASK}"]


@pytest.mark.django_db
def test_with_in_process_tasks_a_draft_request_runs_its_job_right_there(  # type: ignore[no-untyped-def]
    settings, django_capture_on_commit_callbacks
):
    from reviewer.models import DraftJob, Study
    from reviewer.services.drafting import request_draft

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPINEREVIEW_PIPELINE_BOOTSTRAP = False
    settings.SPINEREVIEW_PIPELINE_DIR = ""
    study = Study.objects.create(study_uid="1.2.826.0.1.3680043.8.498.17", orthanc_id="eager-study")
    with django_capture_on_commit_callbacks(execute=True):
        job, created = request_draft(study=study)
    job.refresh_from_db()
    study.refresh_from_db()
    # the task ran inside the commit: claimed, then failed for want of a pipeline (not left queued)
    assert created
    assert job.state == DraftJob.State.FAILED
    assert job.reason.startswith("no drafting pipeline configured")
    assert [line["state"] for line in job.log] == ["fetching", "failed"]
    assert study.status == Study.Status.FAILED
