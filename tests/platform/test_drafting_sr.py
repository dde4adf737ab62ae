"""The TID 1500 SR against a real Orthanc: a reader's boxes are stored by STOW-RS, come back by
WADO-RS with the same rectangles, pass dciodvfy, and a correction adds an SR (nothing replaced)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from reviewer.integrations.sr import load_sr, write_reader_sr
from reviewer.integrations.sr_dataset import RECTANGLE_TRACKING_ID, SRInputError, read_sr_boxes
from reviewer.models import StructuredReport
from tests.dicom_factory import LUMBAR_PROTOCOL, write_study
from tests.factories import StudyFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def dciodvfy(ds: pydicom.Dataset, path: Path) -> subprocess.CompletedProcess:
    """Run dciodvfy on a dataset; its exit code is the verdict (warnings are allowed)."""
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)


def upload(client, files) -> None:  # type: ignore[no-untyped-def]
    for f in files:
        assert client.post("/instances", content=Path(f).read_bytes()).status_code == 200


def sr_count(client, study_uid: str) -> int:  # type: ignore[no-untyped-def]
    found = client.post("/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid,
                                                                           "Modality": "SR"}}).json()  # fmt: skip
    return len(found)


def test_a_reader_sr_round_trips_through_orthanc_and_passes_dciodvfy(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    study_uid, files = write_study(tmp_path / "dcm")
    upload(empty_orthanc, files)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    study = StudyFactory(study_uid=study_uid)
    reader = UserFactory(role="radiologist", first_name="Ada", last_name="Reader")
    a, b = headers[1], headers[-1]
    boxes = [
        {"condition": "disc_herniation", "sop_uid": a.SOPInstanceUID, "xyxy": [10, 12, 30, 40]},
        {"condition": "foraminal_narrowing", "sop_uid": b.SOPInstanceUID, "series_uid": b.SeriesInstanceUID,
         "xyxy": [0, 0, 64, 64], "label": "whole image"},
    ]  # fmt: skip

    first = write_reader_sr(study=study, parent=None, author=reader, boxes=boxes)

    assert first.source == StructuredReport.Source.READER
    assert first.author == reader
    ds = load_sr(study_uid, first.series_instance_uid, first.sop_instance_uid)
    assert ds.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    assert ds.PatientID == a.PatientID
    assert ds.StudyInstanceUID == study_uid
    result = dciodvfy(ds, tmp_path / "reader.dcm")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Error" not in result.stderr
    back = read_sr_boxes(ds)
    assert [(r["condition"], r["sop_uid"], r["xyxy"]) for r in back] == [
        ("disc_herniation", a.SOPInstanceUID, [10.0, 12.0, 30.0, 40.0]),
        ("foraminal_narrowing", b.SOPInstanceUID, [0.0, 0.0, 64.0, 64.0]),
    ]
    assert len({r["tracking_uid"] for r in back}) == 2, "every box has its own tracking UID"
    polyline = ds.ContentSequence[-1].ContentSequence[0].ContentSequence
    assert RECTANGLE_TRACKING_ID in [i.TextValue for i in polyline if i.ValueType == "TEXT"]

    # a correction is a new SR instance with its parent; the first one stays in Orthanc
    second = write_reader_sr(study=study, parent=first, author=reader, boxes=boxes[:1])
    assert second.parent == first
    assert second.sop_instance_uid != first.sop_instance_uid
    assert sr_count(empty_orthanc, study_uid) == 2
    assert [r["condition"] for r in read_sr_boxes(load_sr(study_uid, second.series_instance_uid,
                                                          second.sop_instance_uid))] == ["disc_herniation"]  # fmt: skip


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ({"condition": "disc_herniation", "sop_uid": "1.2.3", "xyxy": [1, 1, 5, 5]}, "not part of this study"),
        ({"condition": "disc_herniation", "xyxy": [40, 40, 80, 50]}, "inside the 64x64 image"),
        ({"condition": "disc_herniation", "xyxy": [30, 30, 10, 40]}, "non-empty box"),
        ({"condition": "broken_leg", "xyxy": [1, 1, 5, 5]}, "unknown condition"),
        ({"condition": "disc_herniation", "xyxy": [1, 1]}, "needs condition, sop_uid and xyxy"),
    ],
)
def test_a_bad_box_is_refused_with_a_reason_and_nothing_is_stored(tmp_path, empty_orthanc, orthanc_settings, box,
                                                                     message):  # type: ignore[no-untyped-def]  # fmt: skip
    study_uid, files = write_study(tmp_path / "dcm", protocol=LUMBAR_PROTOCOL[:1])
    upload(empty_orthanc, files)
    sop_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID
    study = StudyFactory(study_uid=study_uid)
    with pytest.raises(SRInputError, match=message):
        write_reader_sr(study=study, parent=None, author=UserFactory(), boxes=[{"sop_uid": sop_uid, **box}])
    assert sr_count(empty_orthanc, study_uid) == 0
    assert not StructuredReport.objects.exists()
