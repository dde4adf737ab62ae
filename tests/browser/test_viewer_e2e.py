"""The radiologist's whole review in the real viewer, end to end (docs/viewer.md)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from PIL import Image

from ml.report_sections import split_report
from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

ADDITION = " Reviewed in the viewer: agree."
ADDITION2 = " Second thought added."
OTHER = " Note saved from another tab."


def _present_finding_with_boxes(draft) -> tuple[str, list[dict]]:  # type: ignore[no-untyped-def]
    """A present finding with a box, and where clicking it must put each of its series: the image
    of its first box in that series, else its first key slice there."""
    for finding in draft.findings.filter(present=True).order_by("condition"):
        if finding.boxes:
            first: dict[str, dict] = {}
            for ref, has_box in [*((b, True) for b in finding.boxes), *((k, False) for k in finding.key_slices)]:
                first.setdefault(ref["series_uid"], {"series_uid": ref["series_uid"], "sop_uid": ref["sop_uid"],
                                                     "box": has_box})  # fmt: skip
            return finding.condition, list(first.values())
    raise AssertionError("the draft has no present finding with a box")


def _canvas_has_image(path: str) -> bool:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)  # [H, W]
    return float(pixels.std()) > 10.0 and float((pixels > 20).mean()) > 0.05


def test_radiologist_opens_reads_edits_scores_and_signs_a_study_in_the_viewer(
    viewer_build,
    viewer_urls,
    orthanc_settings,
    empty_orthanc,
    synthetic_study_dir,
    role_user,
    screenshots_dir,
    settings,
):  # type: ignore[no-untyped-def]
    from rest_framework.authtoken.models import Token

    from ml.conditions import CONDITION_KEYS
    from reviewer.services import reports

    study = support.import_study(synthetic_study_dir)  # as the Orthanc watcher does: rows + queued draft job
    draft, sr = support.draft_with_pipeline(study, settings)  # the drafting service with the trained pipeline
    finding, expected = _present_finding_with_boxes(draft)
    last_section = split_report(draft.text)[-1].title  # the viewer's last section: edits append to it
    present = [c for c in CONDITION_KEYS if draft.findings.get(condition=c).present]  # canonical order
    absent = [c for c in CONDITION_KEYS if c not in present]
    user = role_user("radiologist", username="reader-e2e")

    def someone_else_saves() -> None:  # the same reader saves from another tab (each reader has their own chain)
        head = reports.head_revision(study, author=user)
        reports.save_revision(study=study, author=user, text=head.text + OTHER, parent_id=head.pk)

    seen = support.run_node(
        support.ROOT / "tests" / "browser" / "e2e_review.cjs",
        {
            "app_url": viewer_urls["app"], "viewer_url": viewer_urls["viewer"], "study_uid": study.study_uid,
            "username": user.username, "password": "pw", "screenshots": str(screenshots_dir),
            "finding": finding, "expected_slices": expected, "absent_finding": absent[0], "section": last_section,
            "addition": ADDITION, "addition2": ADDITION2, "comment": "Minor wording change in the impression.",
        },
        on_phase={"first-save": someone_else_saves},
    )  # fmt: skip
    assert seen["ok"], f"{seen.get('error')}\nconsole: {seen.get('console_errors')}\nhttp: {seen.get('http_errors')}"
    assert seen["viewer_location"].startswith(f"{viewer_urls['viewer']}/spine-review?StudyInstanceUIDs=")
    assert seen["worklist_href"] == f"{viewer_urls['app']}/"  # back to the app's worklist

    # the hanging protocol put the 4 series side by side, and each canvas shows an image
    shown = {v["series_uid"] for v in seen["viewports_initial"]}
    assert shown == set(study.series.values_list("series_uid", flat=True))
    assert len(seen["canvases"]) == 4
    assert all(_canvas_has_image(c) for c in seen["canvases"]), seen["canvases"]
    assert seen["box_status"].startswith(f"{len(sr.boxes)} box(es) from the AI SR")

    # the finding moved every viewport of its key-slice series to the key slice, box drawn there
    after = {v["series_uid"]: v for v in seen["viewports_after_click"]}
    for slice_ in expected:
        viewport = after[slice_["series_uid"]]
        assert viewport["sop_uid"] == slice_["sop_uid"], (finding, viewport, slice_)
        if slice_["box"]:
            assert viewport["visibleBoxes"] >= 1, viewport
    assert seen["selected_after_n"] == present[0]  # the "n" shortcut
    hidden = {v["series_uid"]: v for v in seen["viewports_boxes_hidden"]}
    assert any(s["box"] for s in expected)
    assert all(hidden[s["series_uid"]]["visibleBoxes"] == 0 for s in expected)

    # the boxes went image -> Cornerstone world coordinates -> image and back into a new SR version
    from reviewer.models import StructuredReport

    reader_sr = StructuredReport.objects.get(study=study, source=StructuredReport.Source.READER)
    assert reader_sr.parent_id == sr.pk
    assert reader_sr.author_id == user.pk
    assert seen["box_save_status"].startswith(f"Saved {len(sr.boxes)} box(es)")
    # the dragged corner moved (x1 up, y0 down), and the saved SR has the box where the reader left it
    edit = seen["edited_box"]
    assert edit["after"][2] > edit["before"][2] + 2, edit
    assert edit["after"][1] < edit["before"][1] - 2, edit
    assert np.allclose([edit["after"][0], edit["after"][3]], [edit["before"][0], edit["before"][3]], atol=0.5)
    expected_boxes = []
    for b in sr.boxes:
        moved = b["sop_uid"] == edit["sop_uid"] and np.allclose(b["xyxy"], edit["before"], atol=0.5)
        expected_boxes.append((b["condition"], b["sop_uid"], edit["after"] if moved else b["xyxy"]))
    saved = sorted((b["condition"], b["sop_uid"], b["xyxy"]) for b in reader_sr.boxes)
    expected_boxes.sort()
    extra = [s for s in saved if s[:2] not in {e[:2] for e in expected_boxes}]
    missing = [e for e in expected_boxes if e[:2] not in {s[:2] for s in saved}]
    assert [s[:2] for s in saved] == [e[:2] for e in expected_boxes], {
        "extra": extra,
        "missing": missing,
        "n": (len(saved), len(expected_boxes)),
    }
    assert np.allclose([s[2] for s in saved], [e[2] for e in expected_boxes], atol=0.5)
    assert not np.allclose(sorted(b["xyxy"] for b in reader_sr.boxes), sorted(b["xyxy"] for b in sr.boxes), atol=0.5)

    assert ADDITION.strip() in "".join(seen["diff_insertions"])
    similar = draft.analysis["similar_cases"]
    assert len(seen["similar"]) == len(similar) > 0
    assert similar[0]["report"].strip().splitlines()[0] in seen["similar"][0]
    assert "RADPEER 2a" in seen["signed_text"]

    # what was stored, read back through the API
    token = Token.objects.create(user=user)
    with httpx.Client(base_url=viewer_urls["app"], headers={"Authorization": f"Token {token.key}"}) as api:
        revisions = api.get(f"/api/studies/{study.pk}/revisions/").json()
        reviews = api.get(f"/api/studies/{study.pk}/reviews/").json()
    # the conflicting save was shown with both texts and kept; "keep mine" saved on top of the other's
    assert "Someone saved this report meanwhile" in seen["conflict_text"]
    assert OTHER.strip() in seen["conflict_text"]
    assert seen["conflict_deleted"].split() == OTHER.split()  # the diff current -> mine names the change
    assert seen["conflict_inserted"].split() == ADDITION2.split()
    conflicts = [r for r in revisions if r["is_conflict"]]
    assert len(conflicts) == 1
    assert conflicts[0]["text"] == draft.text + ADDITION + ADDITION2
    theirs = next(r for r in revisions if not r["is_conflict"] and r["text"].endswith(OTHER))
    head = max((r for r in revisions if not r["is_conflict"]), key=lambda r: r["number"])
    assert head["parent"] == theirs["id"]
    # sections are edited in place: the rest of the text is byte-identical to the draft
    assert head["text"] == draft.text + ADDITION + ADDITION2, json.dumps(head)[-300:]
    (review,) = reviews
    assert review["radpeer"] == "2a"
    assert review["signed_revision"] == head["id"]
    assert review["in_scope"] is False
    assert review["edit_distance"]["char_levenshtein"] == len(ADDITION + ADDITION2)
    assert review["edit_distance"]["word_levenshtein"] >= 1


def test_viewer_refuses_another_ohif_build_shows_api_errors_and_refreshes_when_the_draft_arrives(
    viewer_build,
    viewer_urls,
    orthanc_settings,
    empty_orthanc,
    synthetic_study_dir,
    role_user,
    screenshots_dir,
    settings,
):  # type: ignore[no-untyped-def]
    from reviewer.models import Study
    from reviewer.services.sync import sync_study

    orthanc_id = support.store_in_orthanc(synthetic_study_dir)  # in Orthanc, unknown to the app
    study_uid = json.loads((synthetic_study_dir / "ground_truth.json").read_text())["study_uid"]
    user = role_user("radiologist", username="reader-pending")
    app_bundle = next(p.name for p in settings.VIEWER_OHIF_DIST.glob("app.bundle.*.js"))

    def draft_arrives() -> None:
        support.draft_from_truth(Study.objects.get(study_uid=study_uid), synthetic_study_dir)

    seen = support.run_node(
        support.ROOT / "tests" / "browser" / "e2e_pending.cjs",
        {
            "viewer_url": viewer_urls["viewer"], "study_uid": study_uid, "username": user.username,
            "password": "pw", "screenshots": str(screenshots_dir), "app_bundle": app_bundle,
        },
        on_phase={"unknown-study": lambda: sync_study(orthanc_study_id=orthanc_id), "awaiting-draft": draft_arrives},
    )  # fmt: skip
    assert seen["ok"], seen.get("error")
    assert "differs from the pinned 3.13.2" in seen["refusal"]
    assert not seen["panel_when_refused"]
    assert "HTTP 404" in seen["api_error"]
    assert seen["status"] == "Awaiting draft"
    assert "No AI draft yet" in seen["no_draft"]
    assert not seen["error_after_sync"]
    assert seen["findings"] == 17
    assert seen["status_after"] == "Draft ready"
