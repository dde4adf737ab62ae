"""Drafts through the real path (Orthanc, PostgreSQL, the tiny pipeline) are grounded: the
CLINICAL HISTORY is the study's DICOM request and age/sex or a placeholder, the COMPARISON lists
the patient's earlier studies found in Orthanc, and no condition the agents called absent is
stated (read back with the label extractor)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from ml.agents.labels import extract_labels
from reviewer.models import Draft, DraftJob, Finding
from reviewer.services.drafting import run_draft_job
from reviewer.services.sync import sync_study
from tests.dicom_factory import upload_study

pytestmark = [pytest.mark.services, pytest.mark.django_db, pytest.mark.slow]

NO_HISTORY = "[No clinical history provided — please add]"


def other_study(files: list[Path], out: Path, tag: str, date: str, description: str) -> list[Path]:
    """The first series of the study as another study of the same patient on ``date``."""
    folder = files[0].parent
    out.mkdir()
    study_uid = generate_uid(entropy_srcs=[tag, "study"])
    series_uid = generate_uid(entropy_srcs=[tag, "series"])
    written = []
    for i, f in enumerate(p for p in files if p.parent == folder):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[tag, str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = ds.SeriesDate = date
        ds.StudyDescription = description
        ds.AccessionNumber = tag[:16]
        ds.save_as(out / f"{i:04d}.dcm", enforce_file_format=True)
        written.append(out / f"{i:04d}.dcm")
    return written


def without_request(files: list[Path], out: Path) -> list[Path]:
    """The study as a modality without a worklist sends it: no reason, no history."""
    out.mkdir()
    written = []
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        for keyword in ("RequestAttributesSequence", "AdditionalPatientHistory", "ReasonForTheRequestedProcedure"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(out / f"{i:04d}.dcm", enforce_file_format=True)
        written.append(out / f"{i:04d}.dcm")
    return written


def draft_of(orthanc_id: str) -> Draft:
    study = sync_study(orthanc_study_id=orthanc_id)
    job = run_draft_job(job_id=DraftJob.objects.get(study=study).pk)
    assert job.state == DraftJob.State.DONE, job.reason
    return Draft.objects.get(job=job)


def assert_findings_grounded(draft: Draft) -> None:
    """The draft states exactly the conditions its findings call present (no contradiction)."""
    labels = extract_labels(draft.text).labels
    calls = {f.condition: f.present for f in Finding.objects.filter(draft=draft)}
    assert len(calls) == 17
    wrong = {k: (calls[k], labels[k]) for k in calls if calls[k] != (labels[k] != 0)}
    assert not wrong, (wrong, draft.text)
    check = draft.analysis["report_check"]
    assert check["residual"] == []
    assert all({"action", "section", "sentence", "condition", "reason"} <= set(c) for c in check["changes"])


def test_a_drafted_studys_history_is_its_dicom_request_and_age_sex_and_priors_are_compared(
    tmp_path, empty_orthanc, pipeline_settings, synth_study
):  # type: ignore[no-untyped-def]
    files = list(synth_study["files"])
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    age, sex = int(str(ds.PatientAge)[:-1]), {"F": "female", "M": "male"}[str(ds.PatientSex)]
    reason = str(ds.RequestAttributesSequence[0].get("ReasonForTheRequestedProcedure", ""))
    history = str(ds.get("AdditionalPatientHistory", ""))
    prior = other_study(files, tmp_path / "prior", "grounded-prior", "20190305", "MRI LUMBAR SPINE PRIOR")
    later = other_study(files, tmp_path / "later", "grounded-later", "20991231", "MRI LUMBAR SPINE LATER")
    upload_study(empty_orthanc, prior)
    upload_study(empty_orthanc, later)

    draft = draft_of(upload_study(empty_orthanc, files))

    who = f"{age}-year-old {sex}"
    expected = (
        " ".join(x if x.endswith(".") else x + "." for x in (reason, history) if x) + f" {who[0].upper()}{who[1:]}."
        if reason or history
        else f"{NO_HISTORY} Patient: {who}."
    )
    assert draft.sections["CLINICAL HISTORY"] == expected
    assert f"CLINICAL HISTORY: {expected}\n" in draft.text
    assert draft.sections["COMPARISON"] == "MRI LUMBAR SPINE PRIOR of 2019-03-05."
    assert "LATER" not in draft.text
    assert draft.analysis["report_facts"]["priors"][0]["date"] == "20190305"
    technique = draft.sections["TECHNIQUE"]
    assert technique.startswith("MRI of the lumbar spine: sagittal T1-weighted")
    assert technique.endswith("without intravenous contrast.")
    assert_findings_grounded(draft)


def test_a_study_without_an_indication_gets_the_placeholder_and_no_priors(
    tmp_path, empty_orthanc, pipeline_settings, synth_study
):  # type: ignore[no-untyped-def]
    files = without_request(list(synth_study["files"]), tmp_path / "bare")
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    age, sex = int(str(ds.PatientAge)[:-1]), {"F": "female", "M": "male"}[str(ds.PatientSex)]

    draft = draft_of(upload_study(empty_orthanc, files))

    assert draft.sections["CLINICAL HISTORY"] == f"{NO_HISTORY} Patient: {age}-year-old {sex}."
    assert draft.analysis["report_facts"]["history_sources"] == ["PatientAge", "PatientSex"]
    assert draft.sections["COMPARISON"] == "None available."
    assert_findings_grounded(draft)
