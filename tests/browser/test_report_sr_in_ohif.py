"""The signed report's DICOM SR in OHIF's own SR viewer: the report SR (Enhanced SR, TID 2000
sections as containers, COMPLETE/VERIFIED) stored into the real Orthanc through the outbox is
listed in OHIF's study browser (modality SR, our series description) and, loaded into a viewport,
rendered by OHIF 3.13's dicom-sr extension as text (its text viewport renders any SR that is not a
TID 1500 measurement report): the section headings and the IMPRESSION sentence are on screen."""

from __future__ import annotations

import pytest

from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

IMPRESSION = "Moderate spinal canal stenosis at L4-5, signed for the SR viewer."
REPORT = (
    "CLINICAL HISTORY: Low back pain.\nTECHNIQUE: Sagittal T1, T2 and STIR.\nCOMPARISON: None.\n"
    "DISCS: L4-5 disc protrusion with moderate spinal canal stenosis.\n"
    f"IMPRESSION: {IMPRESSION}"
)


def test_signed_report_sr_is_listed_and_rendered_by_ohif(
    viewer_build, viewer_urls, orthanc_settings, empty_orthanc, synthetic_study_dir, role_user, screenshots_dir,
):  # type: ignore[no-untyped-def]  # fmt: skip
    from reviewer.integrations.outbox import send_message
    from reviewer.integrations.report_sr import REPORT_SERIES_DESCRIPTION, REPORT_SERIES_NUMBER, report_uids
    from reviewer.integrations.sr import load_sr
    from reviewer.models import OutboxMessage
    from reviewer.services import reports
    from tests.factories import DraftFactory

    study = support.import_study(synthetic_study_dir)
    DraftFactory(study=study, text=REPORT)
    reader = role_user("radiologist", username="sr-viewer-reader", first_name="Ada", last_name="Reader")
    revision = reports.save_revision(study=study, author=reader, text=REPORT, parent_id=None)
    reports.sign_review(study=study, reader=reader, radpeer="1")
    row = send_message(message_id=OutboxMessage.objects.get(revision=revision, kind=OutboxMessage.Kind.SR_STORE).pk)
    assert row.state == OutboxMessage.State.SENT, row.last_error
    series_uid, sop_uid = report_uids(revision)
    stored = load_sr(study.study_uid, series_uid, sop_uid)
    assert (stored.CompletionFlag, stored.VerificationFlag) == ("COMPLETE", "VERIFIED")

    seen = support.run_node(
        support.ROOT / "tests" / "browser" / "e2e_report_sr.cjs",
        {
            "app_url": viewer_urls["app"], "viewer_url": viewer_urls["viewer"], "username": reader.username,
            "password": "pw", "screenshots": str(screenshots_dir), "study_uid": study.study_uid,
            "series_number": REPORT_SERIES_NUMBER, "series_uid": series_uid, "impression": IMPRESSION,
        },
        timeout=240,
    )  # fmt: skip
    assert seen["ok"], f"{seen.get('error')}\nconsole: {seen.get('console_errors')}\nhttp: {seen.get('http_errors')}"

    # the study browser lists the report SR: modality SR, our series description
    assert seen["thumbnail_kind"] == "study-browser-thumbnail-no-image", seen["thumbnail_text"]
    assert seen["thumbnail_modality"].strip() == "SR", seen["thumbnail_modality"]
    assert seen["thumbnail_description"].strip() == REPORT_SERIES_DESCRIPTION, seen["thumbnail_description"]
    # OHIF's display set of it: an SR that is not a TID 1500 measurement report
    sr_sets = [d for d in seen["display_sets"] if d["series_uid"] == series_uid]
    assert [d["modality"] for d in sr_sets] == ["SR"], seen["display_sets"]
    # loaded into a viewport, the SR viewer renders the report as text: title, sections, impression
    text = seen["sr_viewport_text"]
    assert IMPRESSION in text, text
    assert "Diagnostic Imaging Report" in text, text
    for heading in ("History", "Findings", "Impressions"):
        assert heading in text, text
    assert "L4-5 disc protrusion with moderate spinal canal stenosis." in text, text
    assert IMPRESSION not in seen["viewports_text_before"], "the sentence came from the SR viewport, not before it"
