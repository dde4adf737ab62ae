"""Drafting end to end with the real parts: Orthanc (DIMSE in, DICOMweb out, STOW-RS of the SR),
PostgreSQL, Redis and real Celery worker processes running the tiny trained pipeline; and the
faults: Orthanc down during the fetch, a worker killed mid-task, duplicate events and deliveries."""

from __future__ import annotations

import os
import signal
import subprocess

import pydicom
import pytest
from django.core.management import call_command

from ml.conditions import CONDITION_KEYS
from reviewer.integrations.sr import AI_DEVICE_NAME, AI_SERIES_DESCRIPTION, load_sr, sr_pipeline_version
from reviewer.integrations.sr_dataset import read_sr_boxes, sr_observer_device
from reviewer.models import Draft, DraftJob, Finding, StructuredReport, Study
from tests.conftest import wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

STATES = ["queued", "fetching", "encoding", "drafting", "done"]


def job_of(study_uid: str) -> DraftJob:
    return wait_for(lambda: DraftJob.objects.filter(study__study_uid=study_uid).first(), 30, "draft job")  # type: ignore[return-value]


def wait_done(job: DraftJob, timeout: float = 240) -> DraftJob:
    def finished():  # type: ignore[no-untyped-def]
        j = DraftJob.objects.get(pk=job.pk)
        return j if j.state in (DraftJob.State.DONE, DraftJob.State.FAILED) else None

    done = wait_for(finished, timeout, f"draft job {job.pk}")
    assert done.state == DraftJob.State.DONE, f"{done.state}: {done.reason}\n{done.log}"  # type: ignore[attr-defined]
    return done  # type: ignore[return-value]


def sr_instances(client, study_uid: str) -> list[str]:  # type: ignore[no-untyped-def]
    query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"}}
    return client.post("/tools/find", json=query).json()


def test_a_study_sent_by_storescu_gets_a_draft_findings_and_a_valid_sr_from_a_real_worker(
    tmp_path, empty_orthanc, orthanc_settings, celery_worker_process, synth_study, storescu, wait_stable, api_as
):  # type: ignore[no-untyped-def]
    study_uid = synth_study["study_uid"]
    storescu(synth_study["files"])
    wait_stable(empty_orthanc, study_uid)
    celery_worker_process()
    call_command("watch_orthanc", "--once")  # stable study -> Study + job, queued on commit
    job = wait_done(job_of(study_uid))

    assert [e["state"] for e in job.log if e["state"] != "done"][:1] == ["fetching"]
    seen = [s for s in STATES if any(e["state"] == s for e in job.log)]
    assert seen == STATES[1:], job.log
    study = Study.objects.get(study_uid=study_uid)
    assert study.status == Study.Status.DRAFT_READY
    draft = Draft.objects.get(job=job)
    assert draft.text.strip()
    assert {f.condition for f in draft.findings.all()} == set(CONDITION_KEYS)
    timings = {a["name"]: a["seconds"] for a in draft.analysis["agents"]}
    assert timings
    assert all(s >= 0 for s in timings.values())
    assert draft.analysis["model_versions"]
    headers = {}
    for f in synth_study["files"]:
        h = pydicom.dcmread(f, stop_before_pixels=True)
        headers[str(h.SOPInstanceUID)] = h
    sop_uids = set(headers)
    for finding in draft.findings.all():
        assert {k["sop_uid"] for k in finding.key_slices} <= sop_uids
        for box in finding.boxes:
            assert box["sop_uid"] in sop_uids
            assert len(box["xyxy"]) == 4
            assert all(0.0 <= v <= 1.0 for v in box["xyxy_norm"])

    # the AI SR: stored in Orthanc, retrievable by DICOMweb, dciodvfy-clean, boxes = findings' boxes
    (sr_row,) = StructuredReport.objects.filter(study=study)
    assert sr_row.source == StructuredReport.Source.AI
    assert sr_row.draft == draft
    assert sr_row.series_description == AI_SERIES_DESCRIPTION  # OHIF shows it, blinded readers too
    ds = load_sr(study_uid, sr_row.series_instance_uid, sr_row.sop_instance_uid)
    # blinded readers can fetch the SR through the proxy: nothing in it names the model
    assert sr_observer_device(ds) == AI_DEVICE_NAME
    assert job.pipeline_version not in str(ds.to_json_dict())
    assert sr_pipeline_version(sr_row) == job.pipeline_version  # kept in the database
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(tmp_path / "ai-sr.dcm", enforce_file_format=True)
    check = subprocess.run(["dciodvfy", str(tmp_path / "ai-sr.dcm")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "Error" not in check.stderr

    def clipped(b: dict) -> list[float]:  # the SR holds the box clipped to its image
        h = headers[b["sop_uid"]]
        limits = (h.Columns, h.Rows, h.Columns, h.Rows)
        return [round(min(max(float(v), 0.0), lim), 1) for v, lim in zip(b["xyxy"], limits, strict=True)]

    expected = sorted(
        (f.condition, b["sop_uid"], clipped(b))
        for f in Finding.objects.filter(draft=draft, present=True)
        for b in f.boxes
    )
    assert expected, "the pipeline called nothing present on this enriched study: the SR check would be empty"
    got = sorted((b["condition"], b["sop_uid"], [round(v, 1) for v in b["xyxy"]]) for b in read_sr_boxes(ds))
    assert got == expected

    # visible in the API
    client = api_as("radiologist")
    jobs = client.get(f"/api/studies/{study.pk}/jobs/").json()
    assert jobs[0]["state"] == "done"
    drafts = client.get(f"/api/studies/{study.pk}/drafts/").json()
    assert len(drafts[0]["findings"]) == len(CONDITION_KEYS)


def test_duplicate_events_and_deliveries_make_one_draft_even_with_two_workers(
    empty_orthanc, orthanc_settings, celery_worker_process, synth_study, storescu, wait_stable
):  # type: ignore[no-untyped-def]
    from reviewer.services.sync import sync_study
    from reviewer.tasks import draft_study

    study_uid = synth_study["study_uid"]
    storescu(synth_study["files"])
    orthanc_id = wait_stable(empty_orthanc, study_uid)
    call_command("watch_orthanc", "--once")
    for _ in range(3):  # the same stable-study event again, and replays of the feed
        sync_study(orthanc_study_id=orthanc_id)
    call_command("watch_orthanc", "--once")
    job = job_of(study_uid)
    for _ in range(2):  # redeliveries of the same message
        draft_study.delay(job.pk)
    celery_worker_process()
    celery_worker_process()
    wait_done(job)
    wait_for(lambda: not _busy(), 60, "workers to drain the duplicate messages")
    assert DraftJob.objects.filter(study__study_uid=study_uid).count() == 1
    assert Draft.objects.filter(study__study_uid=study_uid).count() == 1
    assert StructuredReport.objects.filter(study__study_uid=study_uid).count() == 1
    assert len(sr_instances(empty_orthanc, study_uid)) == 1
    assert DraftJob.objects.get(pk=job.pk).attempts == 1


def _busy() -> bool:
    """Messages still in the broker's drafting queue (Redis list) or unacknowledged."""
    import redis

    r = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    return bool(r.llen("gpu") or r.hlen("unacked"))


def test_orthanc_unreachable_during_the_fetch_is_retried_until_it_is_back(
    tmp_path, settings, celery_worker_process, synth_study, storescu, wait_stable
):  # type: ignore[no-untyped-def]
    import httpx

    from reviewer.integrations.orthanc import orthanc
    from reviewer.services.sync import sync_study
    from scripts.services import start_orthanc

    private = start_orthanc(tmp_path / "orthanc")
    try:
        env = private.env
        auth = (env["SPINEREVIEW_ORTHANC_USERNAME"], env["SPINEREVIEW_ORTHANC_PASSWORD"])
        http = httpx.Client(base_url=env["SPINEREVIEW_ORTHANC_URL"], timeout=30, auth=auth)
        storescu(synth_study["files"], port=env["SPINEREVIEW_ORTHANC_DICOM_PORT"])
        orthanc_id = wait_stable(http, synth_study["study_uid"])
        settings.ORTHANC_URL = env["SPINEREVIEW_ORTHANC_URL"]
        settings.ORTHANC_USERNAME = env["SPINEREVIEW_ORTHANC_USERNAME"]
        settings.ORTHANC_PASSWORD = env["SPINEREVIEW_ORTHANC_PASSWORD"]
        orthanc.cache_clear()
        sync_study(orthanc_study_id=orthanc_id)  # commits: the task is in Redis
        job = job_of(synth_study["study_uid"])
        private.stop()  # Orthanc goes away before the worker fetches
        celery_worker_process(env={**env, "SPINEREVIEW_DRAFT_RETRY_BACKOFF_S": "2"})
        wait_for(lambda: "transient fault" in DraftJob.objects.get(pk=job.pk).reason, 120, "a retry")
        assert DraftJob.objects.get(pk=job.pk).state == DraftJob.State.FETCHING
        http_port = int(env["SPINEREVIEW_ORTHANC_URL"].rsplit(":", 1)[1])
        private = start_orthanc(tmp_path / "orthanc", http_port=http_port,
                                dicom_port=int(env["SPINEREVIEW_ORTHANC_DICOM_PORT"]),
                                password=env["SPINEREVIEW_ORTHANC_PASSWORD"])  # fmt: skip
        job = wait_done(job)
    finally:
        private.stop()
        orthanc.cache_clear()
    assert job.attempts >= 2
    assert any("transient fault" in e["note"] for e in job.log)
    assert Draft.objects.filter(job=job).count() == 1
    assert StructuredReport.objects.filter(draft__job=job).count() == 1


def test_a_worker_killed_mid_task_leaves_the_study_drafted_exactly_once_by_the_next_worker(
    empty_orthanc, orthanc_settings, celery_worker_process, synth_study, storescu, wait_stable
):  # type: ignore[no-untyped-def]
    study_uid = synth_study["study_uid"]
    storescu(synth_study["files"])
    wait_stable(empty_orthanc, study_uid)
    # a short broker visibility timeout so the lost message comes back within the test
    env = {"SPINEREVIEW_BROKER_VISIBILITY_TIMEOUT_S": "5", "SPINEREVIEW_DRAFT_STAGE_DELAY_S": "4"}
    first = celery_worker_process(env=env)
    call_command("watch_orthanc", "--once")
    job = job_of(study_uid)
    wait_for(lambda: DraftJob.objects.get(pk=job.pk).state == DraftJob.State.ENCODING, 120, "the job mid-way")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert DraftJob.objects.get(pk=job.pk).state == DraftJob.State.ENCODING, "killed before it could finish"
    celery_worker_process(env={**env, "SPINEREVIEW_DRAFT_STAGE_DELAY_S": "0"})
    job = wait_done(job)
    assert job.attempts == 2
    assert any("resumed after a lost worker" in e["note"] for e in job.log)
    assert Draft.objects.filter(study__study_uid=study_uid).count() == 1
    assert len(sr_instances(empty_orthanc, study_uid)) == 1


def test_jobs_waiting_together_are_drafted_in_one_batched_run(
    empty_orthanc, orthanc_settings, celery_worker_process, synth_study, storescu, wait_stable
):  # type: ignore[no-untyped-def]
    studies = synth_study["studies"]
    storescu([f for s in studies for f in s["files"]])
    for s in studies:
        wait_stable(empty_orthanc, s["study_uid"])
    call_command("watch_orthanc", "--once")  # three jobs wait in the queue before any worker runs
    jobs = [job_of(s["study_uid"]) for s in studies]
    celery_worker_process()
    done = [wait_done(j) for j in jobs]
    wait_for(lambda: not _busy(), 60, "the worker to drain the other messages")
    drafts = [Draft.objects.get(job=j) for j in done]
    assert [d.analysis["platform_timings"]["batch_studies"] for d in drafts] == [3, 3, 3]
    assert [DraftJob.objects.get(pk=j.pk).attempts for j in jobs] == [1, 1, 1]
    assert sum("batched with job" in e["note"] for j in done for e in j.log) == 2
    for s in studies:
        assert len(sr_instances(empty_orthanc, s["study_uid"])) == 1


def test_a_message_for_a_deleted_job_is_dropped_and_the_worker_keeps_serving(
    empty_orthanc, orthanc_settings, celery_worker_process
):  # type: ignore[no-untyped-def]
    """A study deleted while its message waited must not become a poison message that stops every
    worker it is re-delivered to (acks_late + an exception outside the task body did exactly that)."""
    import time
    from pathlib import Path

    from reviewer.tasks import draft_study

    proc = celery_worker_process()
    draft_study.delay(2_000_000_000)  # no such job
    log = Path(proc.log_path)
    wait_for(lambda: "no longer exists; message dropped" in log.read_text(errors="replace"), 180, "dropped message")
    time.sleep(2)
    assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    assert "Unrecoverable error" not in log.read_text(errors="replace")
