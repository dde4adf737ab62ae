"""A generated patient with a prior study, both in a real Orthanc and both drafted (the tiny
pipeline, PostgreSQL): the current study's draft COMPARISON names the prior by its date (found
by the drafting service's archive search, not told), and the prior's draft compares with nothing
(the later study is not a prior)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from ml.data.synthetic.priors import prior_plan
from ml.data.synthetic.study import Study, StudyConfig, generate_study
from tests.dicom_factory import upload_study
from tests.platform.test_drafting_grounded import assert_findings_grounded, draft_of

pytestmark = [pytest.mark.services, pytest.mark.django_db, pytest.mark.slow]


def files_of(study: Study, root: Path) -> list[Path]:
    return sorted(f for e in study.entry.series for f in (root / e.path).glob("*.dcm"))


def test_the_current_draft_compares_with_the_generated_prior_by_its_date(tmp_path, empty_orthanc, pipeline_settings):  # type: ignore[no-untyped-def]
    index = next(i for i in range(50) if prior_plan(11, i, 1.0) is not None)
    cfg = StudyConfig(seed=11, index=index, fast=True, prevalence="enriched", series=("sag_t1", "sag_t2", "ax_t2"))
    current = generate_study(cfg, tmp_path, prior=prior_plan(11, index, 1.0))
    assert current.prior is not None
    now_files, prior_files = (files_of(s, tmp_path) for s in (current, current.prior))
    then = pydicom.dcmread(prior_files[0], stop_before_pixels=True)

    prior_draft = draft_of(upload_study(empty_orthanc, prior_files))
    # the prior now also holds our AI SR and key-object document: they must carry the patient's
    # issuer, or the archive's study-level answer (from any instance) loses it and the prior
    # stops matching its own patient
    draft = draft_of(upload_study(empty_orthanc, now_files))

    iso = f"{then.StudyDate[:4]}-{then.StudyDate[4:6]}-{then.StudyDate[6:]}"
    assert draft.sections["COMPARISON"] == f"{then.StudyDescription} of {iso}."
    assert f"COMPARISON: {then.StudyDescription} of {iso}.\n" in draft.text
    assert [p["study_uid"] for p in draft.analysis["report_facts"]["priors"]] == [then.StudyInstanceUID]
    assert prior_draft.sections["COMPARISON"] == "None available."
    assert_findings_grounded(draft)
