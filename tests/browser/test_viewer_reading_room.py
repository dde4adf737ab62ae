"""The reading room in the real viewer: the hanging protocol fills its four viewports from the
app's series classes for GE-, Siemens-, Philips- and Canon-named studies (Dixon, post-contrast and
a missing STIR included), sagittal viewports open mid-stack, AI boxes carry their condition and
level in their condition's colour, and a review is done from the keyboard (OHIF hotkeys) with
finding verdicts stored per finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import support
from tests.dicom_factory import AXIAL_IOP, SeriesSpec, write_study

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

AX = tuple(AXIAL_IOP)
# (description, TR, TE, TI, axial?) per vendor; the slot each series must land in (None: in no slot)
VENDORS: dict[str, list[tuple[str, float, float, float | None, bool, str | None]]] = {
    "GE": [
        ("SAG T1 FSE", 550, 12, None, False, "sagT1"),
        ("SAG T2 FSE", 3500, 100, None, False, "sagT2"),
        ("SAG T2 FLEX WATER", 3500, 100, None, False, "sagSTIR"),  # Dixon water: the fat-suppressed T2
        ("SAG T2 FLEX FAT", 3500, 100, None, False, None),
        ("AX T2 FSE", 4000, 105, None, True, "axT2"),
    ],
    "Siemens": [
        ("t1_tse_sag", 550, 12, None, False, "sagT1"),
        ("t2_tse_sag", 3500, 100, None, False, "sagT2"),
        ("t2_tirm_sag", 4000, 60, 150, False, "sagSTIR"),
        ("t2_tse_tra", 4000, 105, None, True, "axT2"),
    ],
    "Philips": [
        ("T1W_TSE_SPIR_SAG_GD", 550, 12, None, False, None),  # post-contrast: not the T1 slot while a plain T1 exists
        ("T1W_TSE_SAG", 550, 12, None, False, "sagT1"),
        ("T2W_TSE_SAG", 3500, 100, None, False, "sagT2"),
        ("STIR_SAG", 4000, 60, 150, False, "sagSTIR"),
        ("T2W_TSE_TRA", 4000, 105, None, True, "axT2"),
    ],
    "Canon": [
        ("Sag T1W FSE", 550, 12, None, False, "sagT1"),
        ("Sag T2W FSE", 3500, 100, None, False, "sagT2"),
        ("Sag FST2 FSE", 3500, 90, None, False, "sagSTIR"),  # fat-suppressed T2 by name
        ("Ax T2W FSE", 4000, 105, None, True, "axT2"),
    ],
    "Siemens-no-STIR": [
        ("t1_tse_sag", 550, 12, None, False, "sagT1"),
        ("t2_tse_sag", 3500, 100, None, False, "sagT2"),
        ("t2_tse_tra", 4000, 105, None, True, "axT2"),
    ],
}
N_SLICES = 7
NEW_BOX_CONDITION = "synovial_cyst"  # a condition the generated study does not have


def _nearest_axial_sop(study_dir: Path, finding, axial_uids: set[str]) -> str:  # type: ignore[no-untyped-def]
    """The axial image whose plane passes nearest the centre of the finding's first box on a
    non-axial image (world coordinates from ImagePositionPatient, ImageOrientationPatient and
    PixelSpacing of the stored files)."""
    import numpy as np
    import pydicom

    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in study_dir.rglob("*.dcm")]
    by_sop = {ds.SOPInstanceUID: ds for ds in datasets}
    box = next(b for b in finding.boxes if b["series_uid"] not in axial_uids)
    ds = by_sop[box["sop_uid"]]
    row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    x, y = (box["xyxy"][0] + box["xyxy"][2]) / 2, (box["xyxy"][1] + box["xyxy"][3]) / 2
    point = (
        np.array(ds.ImagePositionPatient, float)
        + x * float(ds.PixelSpacing[1]) * row
        + y * float(ds.PixelSpacing[0]) * col
    )

    def distance(a) -> float:  # type: ignore[no-untyped-def]
        normal = np.cross(
            np.array(a.ImageOrientationPatient[:3], float), np.array(a.ImageOrientationPatient[3:], float)
        )
        return abs(float(np.dot(point - np.array(a.ImagePositionPatient, float), normal)))

    return min((a for a in datasets if a.SeriesInstanceUID in axial_uids), key=distance).SOPInstanceUID


def _import(folder: Path, name: str):  # type: ignore[no-untyped-def]
    from reviewer.integrations.ingest import import_paths
    from reviewer.integrations.orthanc import orthanc
    from reviewer.services.sync import sync_study

    protocol = tuple(
        SeriesSpec(d, tr=tr, te=te, ti=ti, iop=AX if axial else SeriesSpec(d, 1, 1).iop, n=N_SLICES)
        for d, tr, te, ti, axial, _ in VENDORS[name]
    )
    study_uid, _ = write_study(folder / name, patient=f"RR-{name}", protocol=protocol, seed=len(name))
    client = orthanc()
    summary = import_paths([folder / name], client=client)
    assert not [r for r in summary.results if r.status == "rejected"]
    orthanc_id = next(r["ID"] for r in client.post_tools_lookup(study_uid) if r["Type"] == "Study")
    return sync_study(orthanc_study_id=orthanc_id)


# "auto": what a reader gets by default, here the CPU path (headless Chromium's WebGL is software);
# "gpu": the WebGL path a reader's workstation with a graphics card takes, kept under test too
@pytest.mark.parametrize("rendering", ["auto", "gpu"])
def test_hanging_protocol_labels_and_keyboard_review(
    viewer_build, viewer_urls, orthanc_settings, empty_orthanc, synthetic_study_dir, role_user, screenshots_dir,
    tmp_path, settings, rendering,
):  # type: ignore[no-untyped-def]  # fmt: skip
    from ml.conditions import BY_KEY, CONDITION_KEYS
    from reviewer.models import FindingFeedback, Review, StructuredReport
    from reviewer.services.feedback import LEVELS
    from tests.factories import DraftFactory, FindingFactory

    studies = {name: _import(tmp_path, name) for name in VENDORS}
    expected = {}
    for name, study in studies.items():
        by_description = {s.description: s.series_uid for s in study.series.all()}
        expected[name] = {slot: by_description[d] for d, *_, slot in VENDORS[name] if slot}
    review_study = support.import_study(synthetic_study_dir)
    draft, sr = support.draft_from_truth(review_study, synthetic_study_dir)
    present = list(draft.findings.filter(present=True).order_by("condition"))
    assert present  # "n" selects the first; Shift+A agrees with the others (the clean study checks several)
    clean = studies["GE"]
    clean_draft = DraftFactory(study=clean)
    for key, is_present in (("disc_herniation", True), ("canal_stenosis", True), ("hemangioma", False)):
        FindingFactory(draft=clean_draft, condition=key, present=is_present, level="L4-5" if is_present else "")
    clean.status = clean.Status.DRAFT_READY
    clean.save(update_fields=["status"])
    user = role_user("radiologist", username="reader-room")
    first = min(present, key=lambda f: CONDITION_KEYS.index(f.condition))  # what "n" selects
    at = LEVELS.index(first.level) if first.level in LEVELS else -1
    level_key = "[" if at == len(LEVELS) - 1 else "]"  # one disc down, or up from the last one
    planes = dict(review_study.series.values_list("series_uid", "plane"))
    sagittal_uids = {uid for uid, plane in planes.items() if plane == "sagittal"}
    axial_uids = {uid for uid, plane in planes.items() if plane == "axial"}
    expected_level = LEVELS[at + (-1 if level_key == "[" else 1)] if at >= 0 else "L4-5"

    # click-to-level by geometry: the first finding with a box on a sagittal image; the axial slice
    # nearest that box's centre, from the DICOM geometry of the files themselves
    level_finding = next(f for f in present if any(b["series_uid"] in sagittal_uids for b in f.boxes))
    expected_axial_sop = _nearest_axial_sop(synthetic_study_dir, level_finding, axial_uids)

    settings.VIEWER_RENDERING = rendering
    seen = support.run_node(
        support.ROOT / "tests" / "browser" / "e2e_reading_room.cjs",
        {
            "app_url": viewer_urls["app"], "viewer_url": viewer_urls["viewer"], "username": user.username,
            "password": "pw", "screenshots": str(screenshots_dir),
            "studies": [{"name": n, "study_uid": s.study_uid} for n, s in studies.items()],
            "review_uid": review_study.study_uid, "review_present": len(present), "level_key": level_key,
            "clean_uid": clean.study_uid, "clean_present": 2,
            "level_condition": level_finding.condition, "new_box_condition": NEW_BOX_CONDITION,
        },
        timeout=420,
    )  # fmt: skip
    assert seen["ok"], f"{seen.get('error')}\nconsole: {seen.get('console_errors')}\nhttp: {seen.get('http_errors')}"

    # every viewport shows its expected series, none blank, sagittal ones mid-stack
    for name, slots in expected.items():
        shown = {v["viewportId"]: v for v in seen["hanging"][name]}
        assert set(shown) == {"sagT2", "sagT1", "sagSTIR", "axT2"}, (name, shown)
        assert all(v["sop_uid"] for v in shown.values()), (name, shown)
        for slot, series_uid in slots.items():
            assert shown[slot]["series_uid"] == series_uid, (name, slot, shown[slot])
        for slot in ("sagT2", "sagT1"):
            assert shown[slot]["index"] == N_SLICES // 2, (name, slot, shown[slot])
    # the study without a STIR: its STIR viewport takes the sagittal T2 (a fat-suppressed slot's next
    # best is T2-weighted), not the T1 that has the lower series number, instead of staying blank
    no_stir = {v["viewportId"]: v for v in seen["hanging"]["Siemens-no-STIR"]}
    assert no_stir["sagSTIR"]["series_uid"] == expected["Siemens-no-STIR"]["sagT2"], no_stir["sagSTIR"]
    assert no_stir["sagSTIR"]["sop_uid"]

    # boxes: condition and level as text, one colour per condition, per-condition toggle
    # "the first image" is an image: a canvas shows pixels in the task that marks it, and the
    # AI boxes are drawn after it, never competing with it for the main thread
    first_image = seen["first_image"]
    assert len(first_image["marks"]) == 1, first_image
    assert first_image["marks"][0][1] in {"sagT2", "sagT1", "sagSTIR", "axT2"}, first_image
    assert (first_image["lit"] or 0) >= 1, first_image
    assert first_image["boxes"], first_image
    assert min(first_image["boxes"]) > first_image["marks"][0][0], first_image
    # headless Chromium's WebGL is software here: on "auto" the viewer draws on the CPU, no dialog in the way
    assert first_image["rendering"] == ("cpu" if rendering == "auto" else "gpu"), first_image
    assert not first_image["fallbackDialog"], first_image
    # ...and every viewport still shows where anterior and head are (a CPU-drawn viewport announces no
    # camera of its own; the mode announces it)
    markers = dict(seen["orientation_markers"])
    assert set(markers) >= {"sagT2", "sagT1", "sagSTIR", "axT2"}, markers
    for viewport_id in ("sagT2", "sagT1", "sagSTIR", "axT2"):
        assert len(markers[viewport_id]) == 2, markers  # top and left
        assert all(markers[viewport_id]), markers
    boxes = [b for b in seen["box_labels"] if b["condition"]]
    assert len(boxes) == len(sr.boxes)
    levels = {f.condition: f.level for f in draft.findings.all()}
    for b in boxes:
        name = BY_KEY[b["condition"]].name
        assert b["label"] == (f"{name} {levels[b['condition']]}" if levels[b["condition"]] else name), b
    colours = {b["condition"]: b["colour"] for b in boxes}
    assert all(colours.values())
    assert len(set(colours.values())) == len(colours)
    toggled = seen["toggles"][0]
    assert all(not b["visible"] for b in seen["box_labels_toggled"] if b["condition"] == toggled)
    assert any(b["visible"] for b in seen["box_labels_toggled"] if b["condition"] != toggled) or len(colours) == 1

    # sagittal and axial linked: reference lines follow the active viewport
    assert seen["ref_initial"]["mode"] == "Enabled", seen["ref_initial"]
    assert seen["ref_axial"]["sourceViewportId"] == "axT2", seen["ref_axial"]
    assert {"sagT2", "sagT1", "sagSTIR"} <= set(seen["ref_axial"]["drawnIn"]), seen["ref_axial"]
    assert seen["ref_sagittal"]["sourceViewportId"] == "sagT2", seen["ref_sagittal"]
    assert "axT2" in seen["ref_sagittal"]["drawnIn"], seen["ref_sagittal"]
    # click-to-level: the axial viewport goes to the slice through the finding's sagittal box
    assert seen["level_moved"] == ["axT2"], seen["level_moved"]
    axial = next(v for v in seen["level_viewports"] if v["viewportId"] == "axT2")
    assert axial["sop_uid"] == expected_axial_sop, (axial, expected_axial_sop)
    # the reader's own box: the condition chosen in the panel, labelled and coloured at once, saved with it
    drawn = [b for b in seen["new_box_labels"] if b["condition"] == NEW_BOX_CONDITION]
    assert len(drawn) == 1, seen["new_box_labels"]
    assert drawn[0]["label"] == BY_KEY[NEW_BOX_CONDITION].name
    assert drawn[0]["colour"]
    assert drawn[0]["colour"] not in {b["colour"] for b in boxes}
    saved = StructuredReport.objects.filter(study=review_study, source="reader", author=user).latest("created_at")
    mine = [b for b in saved.boxes if b["condition"] == NEW_BOX_CONDITION]
    assert len(mine) == 1, saved.boxes
    assert planes[mine[0]["series_uid"]] == "sagittal"
    assert sorted(b["condition"] for b in saved.boxes if b["condition"] != NEW_BOX_CONDITION) == sorted(
        b.get("condition") for b in sr.boxes
    )

    # the keyboard review: one corrected level, the rest agreed, RADPEER 1, signed
    assert seen["corrected_finding"] == first.condition
    assert seen["keys"]["corrected"] <= 20
    assert seen["keys"]["clean"] <= 8
    corrected = draft.findings.get(condition=seen["corrected_finding"])
    rows = FindingFeedback.objects.filter(study=review_study, reader=user)
    correction = rows.get(finding=corrected)
    assert correction.verdict == "correct"
    assert correction.level == expected_level, (corrected.level, correction.level)
    agreed = set(rows.filter(verdict="agree").values_list("finding__condition", flat=True))
    assert agreed == {f.condition for f in present} - {corrected.condition}
    if corrected.boxes:
        relabelled = [b for b in seen["box_labels_after_correction"] if b["condition"] == corrected.condition]
        assert all(b["label"].endswith(correction.level) for b in relabelled), relabelled
    assert Review.objects.get(study=review_study, reader=user).radpeer == "1"
    assert Review.objects.get(study=clean, reader=user).radpeer == "1"
    clean_rows = FindingFeedback.objects.filter(study=clean, reader=user)
    assert sorted(clean_rows.values_list("finding__condition", "verdict")) == [
        ("canal_stenosis", "agree"),
        ("disc_herniation", "agree"),
    ]
