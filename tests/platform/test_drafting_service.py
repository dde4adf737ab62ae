"""The drafting service in-process against real Orthanc and PostgreSQL with the tiny pipeline:
bad data is skipped and named, a study with nothing usable fails visibly without retries, and a
redraft with another model version adds a draft and an SR while replacing nothing."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from reviewer.integrations.sr import AI_DEVICE_NAME, load_sr, sr_pipeline_version
from reviewer.integrations.sr_dataset import sr_observer_device
from reviewer.models import Draft, DraftJob, ModelVersion, StructuredReport, Study
from reviewer.services.drafting import request_draft, run_draft_job
from reviewer.services.sync import sync_study

pytestmark = [pytest.mark.services, pytest.mark.django_db, pytest.mark.slow]


def upload(client, files) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for f in files:
        response = client.post("/instances", content=Path(f).read_bytes())
        assert response.status_code == 200, response.text
        ids.append(response.json()["ParentStudy"])
    return ids


def truncated_copy(src: Path, dst: Path) -> str:
    """A copy of an instance whose pixel data lost its second half (a broken transfer)."""
    ds = pydicom.dcmread(src)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(dst, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def test_a_corrupt_instance_is_skipped_named_and_the_rest_is_drafted(tmp_path, empty_orthanc, pipeline_settings,
                                                                     synth_study):  # type: ignore[no-untyped-def]  # fmt: skip
    files = list(synth_study["files"])
    bad_sop = truncated_copy(files[3], tmp_path / "bad.dcm")
    files[3] = tmp_path / "bad.dcm"
    (orthanc_id,) = set(upload(empty_orthanc, files))
    study = sync_study(orthanc_study_id=orthanc_id)
    job = DraftJob.objects.get(study=study)

    job = run_draft_job(job_id=job.pk)

    assert job.state == DraftJob.State.DONE, job.reason
    assert bad_sop in job.reason
    assert "truncated pixel data" in job.reason
    draft = Draft.objects.get(job=job)
    assert [s["sop_uid"] for s in draft.analysis["skipped"]] == [bad_sop]
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT_READY
    assert bad_sop in study.status_reason


def test_a_study_with_no_usable_image_fails_with_a_visible_reason_and_no_retry(tmp_path, empty_orthanc,
                                                                               pipeline_settings, synth_study, api_as):  # type: ignore[no-untyped-def]  # fmt: skip
    files = [f for f in synth_study["files"] if f.parent.name == synth_study["files"][0].parent.name]
    broken = [tmp_path / f"{i}.dcm" for i in range(len(files))]
    for src, dst in zip(files, broken, strict=True):
        truncated_copy(src, dst)
    (orthanc_id,) = set(upload(empty_orthanc, broken))
    study = sync_study(orthanc_study_id=orthanc_id)

    job = run_draft_job(job_id=DraftJob.objects.get(study=study).pk)  # returns: nothing to retry

    assert job.state == DraftJob.State.FAILED
    assert "no usable series" in job.reason
    assert job.attempts == 1
    study.refresh_from_db()
    assert study.status == Study.Status.FAILED
    assert "no usable series" in study.status_reason
    assert not Draft.objects.filter(study=study).exists()
    assert run_draft_job(job_id=job.pk).attempts == 1, "a failed job is not run again by a redelivery"
    health = api_as("admin").get("/api/health/").json()
    assert "drafting jobs: 0 queued, 0 running, 1 failed" in health["checks"]["models"]["detail"]

    # an admin's redraft queues the failed job again, visibly
    response = api_as("admin").post(f"/api/studies/{study.pk}/redraft/", {}, format="json")
    assert response.status_code == 201
    assert response.json()["state"] == "queued"
    assert response.json()["id"] == job.pk
    assert response.json()["log"][-1]["note"] == "queued again after failure"


def test_a_redraft_with_another_model_version_adds_a_draft_and_an_sr_and_replaces_nothing(
    empty_orthanc, pipeline_settings, synth_study, tiny_pipeline
):  # type: ignore[no-untyped-def]
    (orthanc_id,) = set(upload(empty_orthanc, synth_study["files"]))
    study = sync_study(orthanc_study_id=orthanc_id)
    first = run_draft_job(job_id=DraftJob.objects.get(study=study).pk)
    first_draft = Draft.objects.get(job=first)
    first_sr = StructuredReport.objects.get(draft=first_draft)

    ModelVersion.objects.create(name="tiny", version="2", artifact_uri=str(tiny_pipeline), is_active=True)
    job, created = request_draft(study=study)  # the active version is now tiny@2
    assert created
    assert job.pipeline_version == "tiny@2"
    assert request_draft(study=study) == (job, False), "asking again is a no-op"
    second = run_draft_job(job_id=job.pk)

    assert second.state == DraftJob.State.DONE
    drafts = Draft.objects.filter(study=study)
    assert drafts.count() == 2
    assert drafts.get(job=second).model_version.key == "tiny@2"
    assert Draft.objects.get(pk=first_draft.pk).text == first_draft.text
    srs = StructuredReport.objects.filter(study=study, source=StructuredReport.Source.AI)
    assert srs.count() == 2
    second_sr = srs.exclude(pk=first_sr.pk).get()
    assert second_sr.series_instance_uid != first_sr.series_instance_uid
    assert second_sr.series_description == first_sr.series_description  # names no version (blinding)
    second_ds = load_sr(study.study_uid, second_sr.series_instance_uid, second_sr.sop_instance_uid)
    assert sr_observer_device(second_ds) == AI_DEVICE_NAME  # the DICOM names no version (blinding)
    assert "tiny@2" not in str(second_ds.to_json_dict())
    assert sr_pipeline_version(second_sr) == "tiny@2"  # the database keeps it
    query = {"Level": "Instance", "Query": {"StudyInstanceUID": study.study_uid, "Modality": "SR"}}
    assert len(empty_orthanc.post("/tools/find", json=query).json()) == 2


def test_a_job_past_its_time_limit_fails_with_the_stage_it_was_in(empty_orthanc, pipeline_settings, synth_study):  # type: ignore[no-untyped-def]
    pipeline_settings.SPINEREVIEW_DRAFT_SOFT_LIMIT_S = 0.001
    (orthanc_id,) = set(upload(empty_orthanc, synth_study["files"]))
    study = sync_study(orthanc_study_id=orthanc_id)

    job = run_draft_job(job_id=DraftJob.objects.get(study=study).pk)

    assert job.state == DraftJob.State.FAILED
    assert "time limit of 0 s exceeded while fetching" in job.reason
    assert not Draft.objects.filter(study=study).exists()


def test_the_solo_pool_soft_limit_interrupts_a_running_task() -> None:
    import time

    from celery.exceptions import SoftTimeLimitExceeded

    from reviewer.tasks import soft_time_limit

    start = time.monotonic()
    with pytest.raises(SoftTimeLimitExceeded), soft_time_limit(0.2):
        time.sleep(5)
    assert time.monotonic() - start < 2


def test_a_job_orphaned_between_its_draft_and_its_sr_is_finished_by_the_next_batched_run(
    empty_orthanc, pipeline_settings, synth_study
):  # type: ignore[no-untyped-def]
    first, second = synth_study["studies"][:2]
    (id_a,) = set(upload(empty_orthanc, first["files"]))
    (id_b,) = set(upload(empty_orthanc, second["files"]))
    job_b = DraftJob.objects.get(study=sync_study(orthanc_study_id=id_b))
    run_draft_job(job_id=job_b.pk)
    # the worker is lost after storing B's draft and before its SR: no SR row, job still drafting
    StructuredReport.objects.filter(draft__job=job_b).delete()
    DraftJob.objects.filter(pk=job_b.pk).update(state=DraftJob.State.DRAFTING)
    job_a = DraftJob.objects.get(study=sync_study(orthanc_study_id=id_a))

    run_draft_job(job_id=job_a.pk)

    job_b.refresh_from_db()
    assert job_b.state == DraftJob.State.DONE
    assert "batched with job" in job_b.log[-2]["note"]
    assert Draft.objects.filter(job=job_b).count() == 1
    assert StructuredReport.objects.filter(draft__job=job_b).count() == 1


def _stable_in_process(orthanc, synth_study, wait_stable, settings) -> list[dict]:  # type: ignore[no-untyped-def]
    """The demo's setting (in-process tasks, batches of 4) and the generated studies stable in Orthanc."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPINEREVIEW_DRAFT_BATCH_STUDIES = 4
    studies = synth_study["studies"]
    for s in studies:
        upload(orthanc, s["files"])
    for s in studies:
        wait_stable(orthanc, s["study_uid"])
    return studies


@pytest.mark.django_db(transaction=True)  # the jobs are sent on commit, as in the demo
def test_in_process_drafting_drafts_the_stable_studies_of_one_pass_together(
    empty_orthanc, pipeline_settings, synth_study, wait_stable, settings
):  # type: ignore[no-untyped-def]
    """The demo (in-process tasks): the watcher's pass syncs every stable study first, then drafts
    them in one run (one ``analyze_many``, the writer's drafts in one batch), not one by one."""
    from reviewer.services.sync import process_changes

    studies = _stable_in_process(empty_orthanc, synth_study, wait_stable, settings)

    assert process_changes() == len(studies)

    jobs = [DraftJob.objects.get(study__study_uid=s["study_uid"]) for s in studies]
    assert [j.state for j in jobs] == [DraftJob.State.DONE] * len(studies), [j.reason for j in jobs]
    assert [j.attempts for j in jobs] == [1] * len(studies)
    assert sum("batched with job" in e["note"] for j in jobs for e in j.log) == len(studies) - 1
    drafts = [Draft.objects.get(job=j) for j in jobs]
    assert [d.analysis["platform_timings"]["batch_studies"] for d in drafts] == [len(studies)] * len(studies)
    assert {d.analysis["report_source"] for d in drafts} == {"report_agent"}  # the writer's batch, not the template
    assert StructuredReport.objects.filter(draft__in=drafts).count() == len(studies)


@pytest.mark.django_db(transaction=True)
def test_a_demo_stopped_between_its_pass_and_the_drafts_drafts_them_when_the_watcher_starts_again(
    empty_orthanc, pipeline_settings, synth_study, wait_stable, settings
):  # type: ignore[no-untyped-def]
    """In-process tasks: Ctrl-C after a pass queued its jobs and before their drafts ran leaves
    them queued (no broker keeps them); the next ``watch_orthanc`` start drafts them together,
    where nothing else would (their studies' jobs exist, so the watcher does not request them)."""
    from django.core.management import call_command

    from reviewer.services.drafting import drafts_together
    from reviewer.services.sync import process_changes

    studies = _stable_in_process(empty_orthanc, synth_study, wait_stable, settings)

    def stopped_pass() -> None:
        with drafts_together():  # the pass's own block is nested in it: its drafts wait for this one
            process_changes()
            raise KeyboardInterrupt  # Ctrl-C before the drafts

    with pytest.raises(KeyboardInterrupt):
        stopped_pass()

    jobs = [DraftJob.objects.get(study__study_uid=s["study_uid"]) for s in studies]
    assert [j.state for j in jobs] == [DraftJob.State.QUEUED] * len(studies)
    assert process_changes() == 0  # nothing new in Orthanc: the watcher alone would leave them

    call_command("watch_orthanc", "--once")

    jobs = [DraftJob.objects.get(pk=j.pk) for j in jobs]
    assert [j.state for j in jobs] == [DraftJob.State.DONE] * len(studies), [j.reason for j in jobs]
    assert sum("batched with job" in e["note"] for j in jobs for e in j.log) == len(studies) - 1
    assert StructuredReport.objects.filter(draft__job__in=jobs).count() == len(studies)
