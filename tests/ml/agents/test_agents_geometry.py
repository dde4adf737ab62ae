"""Boxes on preprocessed slices map back to the original DICOM pixels and to patient mm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ml.data.dicom_adapter import NoUsableSeries, study_from_datasets
from ml.data.preprocess import PreprocessConfig


def _read_study(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    series: dict[str, list[pydicom.Dataset]] = {}
    for f in sorted(folder.glob("*/*.dcm")):
        ds = pydicom.dcmread(f)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return series


def _truth(folder: Path) -> dict:
    return json.loads((folder / "ground_truth.json").read_text())


def test_key_slice_boxes_round_trip_and_agree_in_patient_space(agents_synth_dir):
    folder = agents_synth_dir / "studies" / "SYN-0001"
    truth = _truth(folder)
    study, skipped = study_from_datasets(truth["study_uid"], _read_study(folder), PreprocessConfig(size=64))
    assert skipped == []
    by_key = {s["key"]: s["series_uid"] for s in truth["series"]}
    series = {s.series_uid: s for s in study.series}
    assert {s.sequence_class for s in study.series} == {"T1", "T2"}  # classified from the headers
    centres = []
    for finding in truth["findings"]:
        per_plane = {}
        for key in ("sag_t2", "ax_t2"):
            ks = finding["key_slices"].get(key)
            if not ks:
                continue
            best = ks[0]
            s = series[by_key[key]]
            idx = s.sop_uids.index(best["sop_instance_uid"])  # the SOP UID names the sorted slice
            g = s.geometry
            pre = g.to_preprocessed(best["box"])
            np.testing.assert_allclose(g.to_original(pre), best["box"], atol=1e-6)
            np.testing.assert_allclose(g.normalise(best["box"]), best["box_norm"], atol=1e-4)
            corners = np.asarray(g.box_to_patient(idx, best["box"]))  # [4, 3]
            # independent: the same corner from the instance's own pydicom header
            ds = next(d for d in _read_study(folder)[s.series_uid] if d.SOPInstanceUID == best["sop_instance_uid"])
            x0, y0 = best["box"][:2]
            iop = np.asarray(ds.ImageOrientationPatient, float)
            dy, dx = (float(v) for v in ds.PixelSpacing)
            expect = np.asarray(ds.ImagePositionPatient, float) + (x0 - 0.5) * dx * iop[:3] + (y0 - 0.5) * dy * iop[3:]
            np.testing.assert_allclose(corners[0], expect, atol=1e-4)
            per_plane[key] = corners.mean(0)
        if len(per_plane) == 2:
            centres.append(np.linalg.norm(per_plane["sag_t2"] - per_plane["ax_t2"]))
    # one finding seen on a sagittal and on an axial slice sits at (nearly) the same place in mm
    assert centres, "no finding with both a sagittal and an axial key slice"
    assert np.median(centres) < 15.0, centres


def test_non_square_image_box_maps_back_through_padding(agents_synth_dir):
    folder = agents_synth_dir / "studies" / "SYN-0001"
    truth = _truth(folder)
    all_series = _read_study(folder)
    uid = next(s["series_uid"] for s in truth["series"] if s["key"] == "sag_t2")
    cropped = []
    for ds in all_series[uid]:
        arr = ds.pixel_array[:, 20:110].copy()  # 128 rows x 90 columns
        arr[:] = 0
        arr[70, 30] = 4000  # one bright pixel at column 30, row 70 (12 bits stored)
        ds.Columns = arr.shape[1]
        ds.PixelData = arr.tobytes()
        cropped.append(ds)
    study, _ = study_from_datasets("1.2.3", {uid: cropped}, PreprocessConfig(size=64), sequence_classes={uid: "T2"})
    s = study.series[0]
    g = s.geometry
    assert (g.rows, g.columns, g.offset) == (128, 90, (19, 0))
    r, c = np.unravel_index(np.argmax(s.pixels[0]), s.pixels[0].shape)
    back = g.to_original([c, r, c + 1, r + 1])  # the brightest preprocessed pixel, as a box
    assert back[0] - 1 <= 30 < back[2] + 1, back
    assert back[1] - 1 <= 70 < back[3] + 1, back


def test_unreadable_instances_are_skipped_and_an_empty_study_raises(agents_synth_dir):
    folder = agents_synth_dir / "studies" / "SYN-0002"
    series = _read_study(folder)
    uids = list(series)
    broken = series[uids[0]][0]
    del broken.PixelData
    study, skipped = study_from_datasets("1.2.3", series, PreprocessConfig(size=32))
    assert len(study.series) == len(uids)
    assert skipped[0]["series_uid"] == uids[0]
    assert skipped[0]["sop_uid"] == str(broken.SOPInstanceUID)
    assert "pixel data" in skipped[0]["reason"]
    assert len(study.series[0].sop_uids) == len(series[uids[0]]) - 1
    sr = pydicom.Dataset()
    sr.Modality = "SR"
    with pytest.raises(NoUsableSeries) as err:
        study_from_datasets("1.2.3", {"9.9": [sr], "9.8": []}, PreprocessConfig(size=32))
    assert {d["series_uid"] for d in err.value.skipped} == {"9.9", "9.8"}
    assert isinstance(err.value, ValueError)
