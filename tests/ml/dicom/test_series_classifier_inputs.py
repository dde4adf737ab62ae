"""The series classifier's inputs other than a pydicom dataset read from a file: Orthanc and
DICOMweb JSON metadata (the web app's path, no pixels), private tags under their creator, and the
command line over a folder of files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ml.dicom import cli
from ml.dicom.series_classifier import classify
from ml.dicom.tags import TagView
from tests.ml.dicom.headers import AXIAL, SAGITTAL, mr

# -- metadata mappings (web app path: Orthanc / DICOMweb JSON, no pixels) -----------------------


def test_keyword_mapping_with_backslash_values_matches_the_dataset_result():
    orthanc_simplified = {
        "Modality": "MR",
        "SeriesDescription": "t2_tse_sag",
        "RepetitionTime": "3200",
        "EchoTime": "95",
        "ScanningSequence": "SE",
        "ImageOrientationPatient": "0\\1\\0\\0\\0\\-1",
    }
    ds = mr(
        SeriesDescription="t2_tse_sag",
        RepetitionTime=3200,
        EchoTime=95,
        ScanningSequence="SE",
        ImageOrientationPatient=SAGITTAL,
    )
    from_mapping, from_dataset = classify(orthanc_simplified), classify(ds)
    assert (from_mapping.subtype, from_mapping.plane) == (from_dataset.subtype, from_dataset.plane)
    assert (from_mapping.subtype, from_mapping.plane) == ("T2", "sagittal")


def test_dicomweb_json_is_read_by_tag():
    dicom_json = Dataset()
    dicom_json.Modality = "MR"
    dicom_json.SeriesDescription = "AX T1 +C"
    dicom_json.ImageOrientationPatient = list(AXIAL)
    as_json = dicom_json.to_json_dict()
    assert "0008103E" in as_json
    result = classify(as_json)
    assert (result.subtype, result.plane) == ("T1_POSTCONTRAST", "axial")


def test_siemens_private_b_value_is_used_only_under_its_creator():
    ds = mr(SeriesDescription="sag")
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", "1000")
    assert classify(ds).subtype == "DWI"
    other = mr(SeriesDescription="sag")
    other.private_block(0x0019, "SOME OTHER VENDOR", create=True).add_new(0x0C, "IS", "1000")
    assert classify(other).subtype != "DWI"


def test_tag_view_rejects_other_types():
    with pytest.raises(TypeError):
        TagView(["not", "a", "dataset"])  # type: ignore[arg-type]


# -- CLI ------------------------------------------------------------------------------------------


def _write(path: Path, **tags: object) -> None:
    ds = mr(**tags)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def test_cli_groups_by_series_and_reports_bad_files(tmp_path, capsys):
    uid = generate_uid()
    for i in range(3):
        _write(
            tmp_path / f"t2_{i}.dcm",
            SeriesInstanceUID=uid,
            InstanceNumber=i + 1,
            SeriesDescription="SAG T2 FSE",
            Manufacturer="GE MEDICAL SYSTEMS",
        )
    _write(tmp_path / "loc.dcm", SeriesInstanceUID=generate_uid(), SeriesDescription="localizer")
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "truncated.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")

    assert cli.main([str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_desc = {row["series_description"]: row for row in out["series"]}
    assert by_desc["SAG T2 FSE"]["files"] == 3
    assert (by_desc["SAG T2 FSE"]["sequence_class"], by_desc["SAG T2 FSE"]["plane"]) == ("T2", "sagittal")
    assert by_desc["localizer"]["subtype"] == "LOCALIZER"
    skipped = {Path(p["file"]).name for p in out["skipped"]}
    assert skipped == {"notes.txt", "truncated.dcm"}


def test_cli_table_and_exit_code_when_nothing_is_found(tmp_path, capsys):
    _write(tmp_path / "a.dcm", SeriesDescription="t1_tse_tra", Manufacturer="SIEMENS", ImageOrientationPatient=AXIAL)
    assert cli.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "t1_tse_tra" in line)
    assert row.split()[3:6] == ["T1", "T1", "axial"]
    assert cli.main([str(tmp_path / "missing")]) == 1
