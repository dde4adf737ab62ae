"""Provenance and priors in the real viewer: the report panel's check note, the sources view
(AI and typed sentences after an edit of another section), a finding sentence that moves the
viewports to its key slice and box on hover and on click, the prior's signed report beside the
draft and the prior opened side by side with the current study (OHIF's comparison protocol)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

PRIOR_REPORT = "IMPRESSION:\n1. Small disc bulge at L4-5. No canal stenosis (prior, signed)."
HISTORY_ADDITION = " Reader note: pain since March."


def _prior_copy(study_dir: Path, out: Path) -> list[Path]:
    """The review series as an earlier study of the same patient (new UIDs, a 2015 date)."""
    import pydicom
    from pydicom.uid import generate_uid

    study_uid = generate_uid(entropy_srcs=["prior", str(study_dir)])
    written = []
    for k, folder in enumerate(support.review_series_dirs(study_dir)):
        series_uid = generate_uid(entropy_srcs=["prior", str(folder)])
        for i, f in enumerate(sorted(folder.glob("*.dcm"))):
            ds = pydicom.dcmread(f)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = generate_uid(entropy_srcs=["prior", str(f)])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.StudyDate = ds.SeriesDate = "20150310"
            ds.StudyDescription = "MRI LUMBAR SPINE 2015"
            ds.AccessionNumber = "PRIOR2015"
            (out / str(k)).mkdir(parents=True, exist_ok=True)
            ds.save_as(out / str(k) / f"{i:04d}.dcm", enforce_file_format=True)
            written.append(out / str(k) / f"{i:04d}.dcm")
    return written


def _grounded(draft) -> str:  # type: ignore[no-untyped-def]
    """The draft's text grounded on its findings, as the drafting service stores it."""
    from ml.agents.analysis import ConditionResult
    from ml.agents.report.grounding import ground_draft
    from reviewer.models import Draft

    calls = [ConditionResult(f.condition, f.probability, f.present, 0.5, f.level, f.side) for f in draft.findings.all()]
    g = ground_draft(draft.text, calls, "lumbar")
    Draft.objects.filter(pk=draft.pk).update(text=g.text, analysis={**draft.analysis, "report_check": g.check})
    return g.text


def test_sentence_jumps_to_its_finding_and_prior_opens_side_by_side(
    viewer_build, viewer_urls, orthanc_settings, empty_orthanc, synthetic_study_dir, role_user, screenshots_dir,
    tmp_path,
):  # type: ignore[no-untyped-def]  # fmt: skip
    import pydicom

    from ml.agents.analysis import ConditionResult
    from ml.agents.report.provenance import sentence_links
    from reviewer.integrations.ingest import import_paths
    from reviewer.integrations.orthanc import orthanc
    from reviewer.models import Study
    from reviewer.services.reports import save_revision, sign_review
    from reviewer.services.sync import sync_study

    study = support.import_study(synthetic_study_dir)
    draft, _sr = support.draft_from_truth(study, synthetic_study_dir)
    text = _grounded(draft)
    draft.refresh_from_db()
    files = _prior_copy(synthetic_study_dir, tmp_path / "prior")
    summary = import_paths([tmp_path / "prior"], client=orthanc())
    assert not [r for r in summary.results if r.status == "rejected"]
    prior_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    orthanc_id = next(r["ID"] for r in orthanc().post_tools_lookup(prior_uid) if r["Type"] == "Study")
    prior = sync_study(orthanc_study_id=orthanc_id)
    assert prior.patient_id
    assert prior.patient_id == study.patient_id
    signer = role_user("radiologist", username="prior-reader")
    revision = save_revision(study=prior, author=signer, text=PRIOR_REPORT, parent_id=None)
    sign_review(study=prior, reader=signer, radpeer="1", revision_id=revision.pk)

    # the finding sentence the browser hovers and clicks: a present finding with a box on a series
    # the hanging protocol shows, stated in a section the reader does not edit
    findings = {f.condition: f for f in draft.findings.filter(present=True)}
    calls = [ConditionResult(f.condition, f.probability, True, 0.5, f.level, f.side) for f in findings.values()]
    links = [x for x in sentence_links(text, calls) if findings[x.condition].boxes and x.section != "CLINICAL HISTORY"]
    assert links, text
    target = findings[links[0].condition]
    box = target.boxes[0]
    user = role_user("radiologist", username="reader-provenance")

    seen = support.run_node(
        support.ROOT / "tests" / "browser" / "e2e_provenance.cjs",
        {
            "app_url": viewer_urls["app"], "viewer_url": viewer_urls["viewer"], "username": user.username,
            "password": "pw", "screenshots": str(screenshots_dir), "study_uid": study.study_uid,
            "prior_uid": prior.study_uid, "condition": target.condition, "series_uid": box["series_uid"],
            "sop_uid": box["sop_uid"], "history_addition": HISTORY_ADDITION,
        },
        timeout=300,
    )  # fmt: skip
    assert seen["ok"], f"{seen.get('error')}\nconsole: {seen.get('console_errors')}\nhttp: {seen.get('http_errors')}"

    # the check note and its changes
    assert seen["check_summary"].startswith("AI draft checked:"), seen["check_summary"]
    # the sources view after the edit of CLINICAL HISTORY: the reader's sentence typed, the rest AI
    assert any("Reader note: pain since March." in t for t in seen["typed"]), seen["typed"]
    assert seen["ai_count"] > 5
    assert target.condition in " ".join(seen["linked"])
    # hover, then click: the viewport showing the box's series goes to the box's image
    assert seen["before_hover"] != box["sop_uid"]
    assert box["sop_uid"] in seen["after_hover"], seen["after_hover"]
    assert seen["before_click"] != box["sop_uid"], seen.get("scroll_log")
    assert box["sop_uid"] in seen["after_click"], seen["after_click"]
    assert seen["probability_tag"].strip() == f"{target.probability * 100:.0f}%"
    # the prior beside the draft, and both studies side by side
    assert "No canal stenosis (prior, signed)" in seen["prior_report"]
    assert "prior-reader" in seen["prior_report"]
    prior_series = set(Study.objects.get(pk=prior.pk).series.values_list("series_uid", flat=True))
    current_series = set(study.series.values_list("series_uid", flat=True))
    shown = {v["series_uid"] for v in seen["compare_viewports"]}
    assert shown & prior_series, seen["compare_viewports"]
    assert shown & current_series, seen["compare_viewports"]
    assert seen["compare_panel_study"] == study.study_uid
