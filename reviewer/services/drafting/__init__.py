"""Drafting: a stable study in Orthanc -> an AI draft, its 17 findings and an SR in Orthanc.

Who calls what::

    watcher (sync.py) / admin redraft ──request_draft()──▶ DraftJob (unique per study+pipeline)
        └─ on commit ─▶ Celery task ``reviewer.tasks.draft_study(job_id)`` (queue ``gpu``),
           sent by name ──▶ run_draft_job()
             fetching: fetch.fetch_study (DICOMweb; corrupt instances skipped and named)
             encoding: ml_bridge.prepare_study (preprocess, classify) + pipeline (SpineFM)
             facts:    request attributes of the images + the patient's prior studies (QIDO-RS)
             drafting: pipeline agents -> grounded draft -> StudyAnalysis -> Draft + Findings
                       -> sr.write_ai_sr (STOW-RS) -> done; Study.status = draft_ready

The modules, each importing only those above it in this list:

- ``jobs``: the job's state machine (states, transitions and their log lines, the study's
  status, failing, the per-job lock, claiming a job for a run);
- ``storage``: the draft and its findings in one transaction, its SR, finishing the job;
- ``requesting``: which pipeline drafts, creating the job, sending the task by name;
- ``compute``: fetching, preprocessing and the pipeline calls (through ``reviewer.ml_bridge``);
- ``batching``: claiming waiting jobs of the same pipeline version, settling them;
- ``runner``: ``run_draft_job``, what the worker runs.

Every state change is committed as it happens, so the API and the worklist show progress.

Exactly once, whatever the broker does: the job row is unique per (study, pipeline version),
a draft is one-to-one with its job, and while a worker runs a job it holds a PostgreSQL
session advisory lock on it. A duplicate delivery (a second event, a redelivered message, a
second worker) finds the lock held and leaves; a worker that dies loses its connection and
thereby the lock, so the redelivered message runs the job again from the last committed state
(a stored draft is never recomputed; the SR has a UID derived from the draft, so storing it
again is harmless). SQLite (the demo, in-process tasks) has no concurrency and no lock.

Faults: Orthanc unreachable -> OrthancUnavailable, the task retries with backoff and the job
notes it; bad input (no usable series, study gone from Orthanc, no pipeline configured) ->
the job and the study are marked failed with a reason, no retry.

This package never imports ``reviewer.tasks`` (the tasks import it): it queues the task by its
registered name (``reviewer.task_queue``).
"""

from __future__ import annotations

from reviewer.services.drafting.compute import patient_studies, pipeline_folder, preload_pipeline
from reviewer.services.drafting.jobs import (
    BadInput,
    DraftTimeLimit,
    OutOfScope,
    add_note,
    job_lock,
    mark_failed,
    mark_out_of_scope,
)
from reviewer.services.drafting.requesting import DRAFT_TASK, drafts_together, request_draft, resume_queued
from reviewer.services.drafting.runner import run_draft_job
from reviewer.services.drafting.storage import store_draft

__all__ = [
    "DRAFT_TASK",
    "BadInput",
    "DraftTimeLimit",
    "OutOfScope",
    "add_note",
    "drafts_together",
    "job_lock",
    "mark_failed",
    "mark_out_of_scope",
    "patient_studies",
    "pipeline_folder",
    "preload_pipeline",
    "request_draft",
    "resume_queued",
    "run_draft_job",
    "store_draft",
]
