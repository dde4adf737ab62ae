"""Drafting: a stable study in Orthanc -> an AI draft, its 17 findings and an SR in Orthanc.

Who calls what::

    watcher (sync.py) / admin redraft ──request_draft()──▶ DraftJob (unique per study+pipeline)
        └─ on commit ─▶ Celery task ``draft_study(job_id)`` (queue ``gpu``) ──▶ run_draft_job()
             fetching: fetch.fetch_study (DICOMweb; corrupt instances skipped and named)
             encoding: ml_bridge.prepare_study (preprocess, classify) + pipeline (SpineFM)
             facts:    request attributes of the images + the patient's prior studies (QIDO-RS)
             drafting: pipeline agents -> grounded draft -> StudyAnalysis -> Draft + Findings
                       -> sr.write_ai_sr (STOW-RS) -> done; Study.status = draft_ready

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
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from reviewer import ml_bridge
from reviewer.models import Draft, DraftJob, Finding, ModelVersion, Series, Study
from reviewer.services.audit import audit
from reviewer.services.fetch import FetchedStudy, StudyNotInOrthanc, fetch_study
from reviewer.services.orthanc import dicomweb

logger = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x5350  # first key of pg_try_advisory_lock(int, int): "SP"
_RUNNING = (DraftJob.State.FETCHING, DraftJob.State.ENCODING, DraftJob.State.DRAFTING)


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


def active_pipeline() -> tuple[str, ModelVersion | None]:
    """The pipeline version new drafts use: the admin-activated ModelVersion if any."""
    active = ModelVersion.objects.filter(is_active=True).first()
    return (active.key, active) if active else (settings.DRAFT_PIPELINE_VERSION, None)


@transaction.atomic
def request_draft(
    *, study: Study, pipeline_version: str | None = None, retry_failed: bool = False, force_scope: bool = False
) -> tuple[DraftJob, bool]:
    """Ensure a draft job exists for the study; enqueue it (after commit) only if new.

    Returns (job, created). Duplicate stable-study events therefore produce one job.
    ``retry_failed`` (the admin's redraft) queues a failed job of the same version again.
    ``force_scope`` (admins) drafts it even if the scope check refuses the study.
    """
    from reviewer.tasks import draft_study

    model_version = None
    if pipeline_version is None:
        pipeline_version, model_version = active_pipeline()
    else:
        name, _, version = pipeline_version.partition("@")
        model_version = ModelVersion.objects.filter(name=name, version=version).first()
    job, created = DraftJob.objects.get_or_create(
        study=study,
        pipeline_version=pipeline_version,
        defaults={"model_version": model_version, "scope_override": force_scope},
    )
    if not created and (retry_failed or force_scope) and job.state == DraftJob.State.FAILED:
        job = DraftJob.objects.select_for_update().get(pk=job.pk)
        job.reason, job.attempts, job.finished_at = "", 0, None
        job.scope_override = job.scope_override or force_scope
        _log(
            job,
            DraftJob.State.QUEUED,
            "queued again after failure" + (" (scope check overridden)" if force_scope else ""),
        )
        job.save()
        created = True
    if created:
        job_id = job.pk
        transaction.on_commit(lambda: _enqueue(draft_study, job_id))
        logger.info("draft job %s queued for study %s (%s)", job_id, study.study_uid, pipeline_version)
    return job, created


def _enqueue(task, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Send the task; with in-process tasks (the demo) it runs right here, and an error in it
    must not take the caller (the Orthanc watcher) down: the job records it instead."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        task.delay(job_id)
        return
    try:
        task.delay(job_id)
    except Exception as exc:
        logger.exception("in-process draft job %s failed", job_id)
        mark_failed(job_id=job_id, reason=f"{type(exc).__name__}: {exc}")


def _log(job: DraftJob, state: str, note: str = "") -> None:
    job.state = state
    job.log = [*job.log, {"at": timezone.now().isoformat(), "state": state, "note": note}]


def _advance(job_id: int, state: str, note: str = "", *, delay: bool = True, **fields: object) -> DraftJob:
    """Commit a state change now (its own transaction), so readers see progress."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().get(pk=job_id)
        _log(job, state, note)
        for name, value in fields.items():
            setattr(job, name, value)
        job.save()
    if delay and settings.SPINEREVIEW_DRAFT_STAGE_DELAY_S:  # fault injection (tests, demos): widen each stage
        time.sleep(settings.SPINEREVIEW_DRAFT_STAGE_DELAY_S)
    return job


def _note(job_id: int, note: str) -> None:
    """Add a log line without changing the state (e.g. a transient fault before a retry)."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().get(pk=job_id)
        job.log = [*job.log, {"at": timezone.now().isoformat(), "state": job.state, "note": note}]
        job.reason = note
        job.save(update_fields=["log", "reason"])


def _set_study_status(study_id: int, status: str, reason: str = "") -> None:
    """Move the study's status along, never back from review or sign-off."""
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
        _log(job, DraftJob.State.FAILED, reason[:500])
        job.save()
        # the study agrees with its jobs: failed unless another job of it finished (a draft whose
        # SR could not be written is no finished draft)
        if not DraftJob.objects.filter(study_id=job.study_id, state=DraftJob.State.DONE).exists():
            _set_study_status(job.study_id, Study.Status.FAILED, f"draft failed ({job.pipeline_version}): {reason}")
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
        _log(job, DraftJob.State.FAILED, reason[:500])
        job.save()
        if not DraftJob.objects.filter(study_id=job.study_id, state=DraftJob.State.DONE).exists():
            status = (
                Study.Status.NOT_APPLICABLE if decision["verdict"] == "not_applicable" else Study.Status.OUT_OF_SCOPE
            )
            _set_study_status(job.study_id, status, decision["reason"])
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
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, job_id])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with contextlib.suppress(Exception), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, job_id])


def pipeline_folder(model_version: ModelVersion | None) -> str:
    """Where the worker finds the pipeline: the job's ModelVersion.artifact_uri, else
    SPINEREVIEW_PIPELINE_DIR, else (demo/test, SPINEREVIEW_PIPELINE_BOOTSTRAP) the cached tiny
    pipeline, trained on first use."""
    uri = model_version.artifact_uri if model_version else ""
    if uri:
        path = Path(uri.removeprefix("file://"))
        if not path.is_dir():
            raise BadInput(f"model version {model_version}: artifact folder {path} does not exist")
        return str(path)
    if settings.SPINEREVIEW_PIPELINE_DIR:
        path = Path(settings.SPINEREVIEW_PIPELINE_DIR)
        if not path.is_dir():
            raise BadInput(f"SPINEREVIEW_PIPELINE_DIR {path} does not exist")
        return str(path)
    if settings.SPINEREVIEW_PIPELINE_BOOTSTRAP:
        return ml_bridge.ensure_tiny_pipeline()
    raise BadInput("no drafting pipeline configured: set SPINEREVIEW_PIPELINE_DIR or a model version's artifact")


def _claim(job_id: int, note: str = "") -> DraftJob | None:
    """Start (or resume) a job; None when there is nothing to do."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update(of=("self",)).select_related("study", "model_version").get(pk=job_id)
        if job.state in (DraftJob.State.DONE, DraftJob.State.FAILED):
            logger.info("draft job %s already %s; nothing to do", job_id, job.state)
            return None
        job.attempts += 1
        job.started_at = job.started_at or timezone.now()
        resumed = job.state in _RUNNING
        if job.attempts > settings.SPINEREVIEW_DRAFT_MAX_ATTEMPTS:
            job.save(update_fields=["attempts", "started_at"])
            return job  # the caller fails it: a study that kills workers must not loop forever
        text = f"attempt {job.attempts}" + (" (resumed after a lost worker)" if resumed else "") + note
        _log(job, DraftJob.State.FETCHING, text)
        job.reason = ""
        job.save()
        _set_study_status(job.study_id, Study.Status.DRAFTING)
    return job


def _check_deadline(deadline: float | None, stage: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DraftTimeLimit(f"time limit of {settings.SPINEREVIEW_DRAFT_SOFT_LIMIT_S:.0f} s exceeded while {stage}")


_BAD_INPUT = (BadInput, DraftTimeLimit, StudyNotInOrthanc, ml_bridge.NoUsableSeries)


def run_draft_job(*, job_id: int) -> DraftJob:
    """Run one draft job to done or failed. Idempotent; raises OrthancUnavailable for a retry.

    When other jobs of the same pipeline version wait (queued, or orphaned by a lost worker),
    up to SPINEREVIEW_DRAFT_BATCH_STUDIES - 1 of them are drafted in the same run: one
    ``analyze_many`` call encodes the slices of all their studies in shared batches. Their own
    messages then find them done. A batched job that hits a transient fault is put back in
    the queue (and sent again) rather than failed.
    """
    requeue: list[int] = []
    try:
        with contextlib.ExitStack() as held:
            if not held.enter_context(job_lock(job_id)):
                logger.info("draft job %s is running in another worker; leaving it to that worker", job_id)
                return DraftJob.objects.get(pk=job_id)
            job = _claim(job_id)
            if job is None:
                return DraftJob.objects.get(pk=job_id)
            if job.attempts > settings.SPINEREVIEW_DRAFT_MAX_ATTEMPTS:
                reason = f"gave up after {job.attempts - 1} attempts (worker lost each time)"
                return mark_failed(job_id=job_id, reason=reason)
            deadline = time.monotonic() + settings.SPINEREVIEW_DRAFT_SOFT_LIMIT_S
            draft = Draft.objects.filter(job_id=job_id).first()
            try:
                if draft is None:
                    extras = _claim_waiting(job, held)
                    stored: dict[int, Draft | BaseException] = {
                        d.job_id: d for d in Draft.objects.filter(job__in=[e.pk for e in extras])
                    }  # orphans whose draft exists: only their SR is missing
                    outcomes = _compute_drafts([job, *[e for e in extras if e.pk not in stored]], deadline)
                    outcomes.update(stored)
                    for extra in extras:
                        requeue += _settle_extra(extra.pk, outcomes[extra.pk])
                    if isinstance(outcomes[job_id], BaseException):
                        raise outcomes[job_id]
                    draft = outcomes[job_id]
                else:
                    _advance(job_id, DraftJob.State.DRAFTING, f"draft {draft.pk} already stored; writing its SR")
                _write_sr(draft)
            except OutOfScope as exc:
                return mark_out_of_scope(job_id=job_id, decision=exc.decision)
            except _BAD_INPUT as exc:
                return mark_failed(job_id=job_id, reason=str(exc))
            return _finish(job_id, draft)
    finally:
        # sent only now that the locks are released, so the next worker can take them
        from reviewer.tasks import draft_study

        for extra_id in requeue:
            draft_study.delay(extra_id)


def _claim_waiting(primary: DraftJob, held: contextlib.ExitStack) -> list[DraftJob]:
    """Claim (lock) other jobs of the same pipeline version for one batched run."""
    limit = settings.SPINEREVIEW_DRAFT_BATCH_STUDIES - 1
    if limit <= 0 or connection.vendor != "postgresql":
        return []
    candidates = (
        DraftJob.objects.filter(pipeline_version=primary.pipeline_version, state__in=(DraftJob.State.QUEUED, *_RUNNING))
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
        job = _claim(pk, note=f" (batched with job {primary.pk})")
        if job is None:
            continue
        if job.attempts > settings.SPINEREVIEW_DRAFT_MAX_ATTEMPTS:
            mark_failed(job_id=pk, reason=f"gave up after {job.attempts - 1} attempts (worker lost each time)")
            continue
        extras.append(job)
    if extras:
        logger.info("draft job %s: batching %d waiting job(s) with it", primary.pk, len(extras))
    return extras


def _settle_extra(job_id: int, outcome: Draft | BaseException) -> list[int]:
    """Finish a batched job, fail it (bad input) or put it back (transient). Returns [id] to resend."""
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        _write_sr(outcome)
        _finish(job_id, outcome)
        return []
    except OutOfScope as exc:
        mark_out_of_scope(job_id=job_id, decision=exc.decision)
        return []
    except _BAD_INPUT as exc:
        mark_failed(job_id=job_id, reason=str(exc))
        return []
    except Exception as exc:  # transient or unexpected: its own run will try again
        with transaction.atomic():
            job = DraftJob.objects.select_for_update().get(pk=job_id)
            _log(job, DraftJob.State.QUEUED, f"batched run could not finish it, queued again: {exc}"[:500])
            job.save()
        return [job_id]


def fetch(job: DraftJob) -> FetchedStudy:
    return fetch_study(job.study.study_uid)


@dataclass
class _Prepared:
    job: DraftJob
    fetched: FetchedStudy
    study: object  # ml StudyData
    skipped: list[dict[str, str]]
    prep_s: float
    facts: object = None  # ml StudyFacts: request attributes, classified series, prior studies
    scope: dict | None = None  # the scope check's decision (region, sequences found and missing)


def _first(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def patient_studies(fetched: FetchedStudy) -> list[dict[str, str]] | None:
    """The same patient's studies in Orthanc up to this study's date (QIDO-RS by PatientID with a
    StudyDate range), for the draft's COMPARISON; the bridge keeps those acquired before this
    one. [] when the study has no PatientID or date to search by; None when the search failed
    (the draft then says the priors could not be searched, rather than "none")."""
    first = next((v[0] for v in fetched.series.values() if v), None)
    patient_id = str(getattr(first, "PatientID", "") or "")
    study_date = str(getattr(first, "StudyDate", "") or "")
    if not patient_id or not study_date or any(c in patient_id for c in "*?\\"):
        return []
    try:
        hits = dicomweb().search_for_studies(
            search_filters={"PatientID": patient_id, "StudyDate": f"-{study_date}"},
            fields=["StudyDescription", "StudyTime", "PatientID"],
        )
    except Exception as exc:
        logger.warning("study %s: searching the patient's prior studies failed: %s", fetched.study_uid, exc)
        return None
    return [
        {"study_uid": _first(h, "0020000D"), "date": _first(h, "00080020"), "time": _first(h, "00080030"),
         "description": _first(h, "00081030")}
        for h in hits
        if _first(h, "00100020") == patient_id
    ]  # fmt: skip


def _compute_drafts(jobs: list[DraftJob], deadline: float | None) -> dict[int, Draft | BaseException]:
    """Fetch and preprocess each job's study, run the agents on all of them at once, store the
    drafts. A job's own failure is its outcome; it does not stop the others."""
    outcomes: dict[int, Draft | BaseException] = {}
    try:
        folder = pipeline_folder(jobs[0].model_version)
        t0 = time.perf_counter()
        pipeline = ml_bridge.load_pipeline(folder)
        load_s = time.perf_counter() - t0
    except Exception as exc:
        return {job.pk: exc for job in jobs}
    ready: list[_Prepared] = []
    for job in jobs:
        try:
            ready.append(_prepare(job, pipeline, deadline))
        except Exception as exc:
            outcomes[job.pk] = exc
    if not ready:
        return outcomes
    for p in ready:
        note = f"preprocessed in {p.prep_s:.1f} s; running the agents" + (
            f" on a batch of {len(ready)} studies" if len(ready) > 1 else ""
        )
        _advance(p.job.pk, DraftJob.State.DRAFTING, note, delay=p is ready[-1])
    t0 = time.perf_counter()
    try:
        analyses = ml_bridge.analyze_studies(pipeline, [p.study for p in ready],
                                             [[*p.fetched.skipped, *p.skipped] for p in ready],
                                             [p.facts for p in ready])  # fmt: skip
        _check_deadline(deadline, "running the agents")
    except Exception as exc:
        return {**outcomes, **{p.job.pk: exc for p in ready}}
    analyze_s = time.perf_counter() - t0
    for p, analysis in zip(ready, analyses, strict=True):
        analysis["platform_timings"] = {
            "fetch_s": round(p.fetched.seconds, 3), "pipeline_load_s": round(load_s, 3),
            "preprocess_s": round(p.prep_s, 3), "analyze_s": round(analyze_s, 3), "batch_studies": len(ready),
        }  # fmt: skip
        analysis["pipeline_folder"] = folder
        analysis["scope"] = p.scope  # "forced": True when an admin overrode a refusal
        outcomes[p.job.pk] = store_draft(job_id=p.job.pk, analysis=analysis)
    return outcomes


def _prepare(job: DraftJob, pipeline: object, deadline: float | None) -> _Prepared:
    fetched = fetch(job)
    _check_deadline(deadline, "fetching")
    if not fetched.series:
        reasons = "; ".join(f"{s['sop_uid']}: {s['reason']}" for s in fetched.skipped[:5])
        raise BadInput(f"no usable series: all {len(fetched.skipped)} image(s) were skipped ({reasons})")
    skipped_note = f"; skipped {len(fetched.skipped)} instance(s)" if fetched.skipped else ""
    _advance(job.pk, DraftJob.State.ENCODING,
             f"fetched {fetched.n_instances} instances of {len(fetched.series)} series in {fetched.seconds:.1f} s"
             + skipped_note)  # fmt: skip
    scope = ml_bridge.check_scope(fetched.series)
    if scope["verdict"] != "in_scope":
        if not job.scope_override:
            raise OutOfScope(scope)
        scope["forced"] = True
    classes = dict(
        Series.objects.filter(study_id=job.study_id)
        .exclude(sequence_class="")
        .values_list("series_uid", "sequence_class")
    )
    t0 = time.perf_counter()
    study_data, skipped = ml_bridge.prepare_study(pipeline, job.study.study_uid, fetched.series, classes)
    facts = ml_bridge.study_facts(fetched.series, patient_studies(fetched))
    _check_deadline(deadline, "preprocessing")
    return _Prepared(job, fetched, study_data, skipped, time.perf_counter() - t0, facts, scope)


@transaction.atomic
def store_draft(*, job_id: int, analysis: dict) -> Draft:
    """Draft + 17 findings from a StudyAnalysis dict, in one transaction (all or nothing)."""
    job = DraftJob.objects.select_for_update(of=("self",)).select_related("study").get(pk=job_id)
    existing = Draft.objects.filter(job=job).first()
    if existing is not None:
        return existing
    draft = Draft.objects.create(
        study=job.study,
        job=job,
        model_version=job.model_version,
        text=analysis.get("report_text", ""),
        sections=analysis.get("report_sections", {}),
        analysis=analysis,
    )
    Finding.objects.bulk_create(
        [
            Finding(
                draft=draft,
                condition=c["condition"],
                probability=float(c["probability"]),
                present=bool(c["present"]),
                level=c.get("level", "") or "",
                side=c.get("side", "") or "",
                key_slices=[
                    {
                        "series_uid": k["series_uid"],
                        "sop_uid": k["sop_uid"],
                        "index": k["index"],
                        "score": k.get("score"),
                        "frame": k.get("frame"),
                    }
                    for k in c.get("key_slices", [])
                ],
                boxes=[
                    {
                        "series_uid": b["series_uid"],
                        "sop_uid": b["sop_uid"],
                        "index": b.get("index"),
                        "xyxy": b["xyxy"],
                        "xyxy_norm": b["xyxy_norm"],
                        "score": b.get("score"),
                        "frame": b.get("frame"),
                    }
                    for b in c.get("boxes", [])
                ],
            )
            for c in analysis.get("conditions", [])
        ]
    )
    n_skipped = len(analysis.get("skipped", []))
    _log(job, DraftJob.State.DRAFTING, f"draft {draft.pk} stored ({len(analysis.get('conditions', []))} findings"
         + (f", {n_skipped} skipped instance(s)/series" if n_skipped else "") + "); writing the SR")  # fmt: skip
    job.save()
    return draft


def _write_sr(draft: Draft) -> None:
    from reviewer.services.sr import write_ai_sr

    write_ai_sr(draft=draft)


def _finish(job_id: int, draft: Draft) -> DraftJob:
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().get(pk=job_id)
        skipped = draft.analysis.get("skipped", [])
        job.reason = (f"{len(skipped)} instance(s)/series skipped: "
                      + "; ".join(f"{s.get('sop_uid') or s.get('series_uid')}: {s.get('reason')}" for s in skipped[:5])
                      if skipped else "")  # fmt: skip
        job.finished_at = timezone.now()
        _log(job, DraftJob.State.DONE, f"draft {draft.pk} ready")
        job.save()
        _set_study_status(job.study_id, Study.Status.DRAFT_READY, job.reason)
        audit(actor=None, action="draft.ready", obj=draft, job=job.pk, pipeline=job.pipeline_version)
    logger.info("draft job %s done: draft %s", job_id, draft.pk)
    return job


def preload_pipeline() -> str | None:
    """Load the active pipeline into this worker process (called once at worker start)."""
    _, model_version = active_pipeline()
    folder = pipeline_folder(model_version)
    t0 = time.perf_counter()
    ml_bridge.load_pipeline(folder)
    logger.info("pipeline %s loaded in %.1f s", folder, time.perf_counter() - t0)
    return folder
