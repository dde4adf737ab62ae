"""Tests of the synthetic spine MRI generator: physics, truth, DICOM validity, determinism."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ml.conditions import CONDITION_KEYS
from ml.data.manifest import read_manifest
from ml.data.synthetic.cli import configs, generate_dataset, main
from ml.data.synthetic.ground_truth import THRESHOLD
from ml.data.synthetic.physics import protocol, signal_lut
from ml.data.synthetic.render import mask_sampler
from ml.data.synthetic.study import StudyConfig, generate_study
from ml.data.synthetic.tissues import DISC, T, relax_table


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    cfgs = configs(3, seed=7, fast=True, prevalence="enriched")  # one study per vendor
    generate_dataset(out, cfgs, workers=1)
    return out


@pytest.fixture(scope="module")
def all_conditions() -> object:
    """One fast lumbar study showing every condition, pixels kept in memory."""
    return generate_study(StudyConfig(seed=3, index=0, fast=True, force=CONDITION_KEYS), None, keep_pixels=True)


def test_signal_equations_give_textbook_contrast_per_sequence() -> None:
    tab = relax_table(marrow_ff=0.45, field_t=1.5)
    t1 = signal_lut(tab, protocol("sag_t1"))
    t2 = signal_lut(tab, protocol("sag_t2"))
    stir = signal_lut(tab, protocol("sag_stir"))
    post = signal_lut(tab, protocol("sag_t1_post"))
    water = signal_lut(tab, protocol("sag_dixon_w"))
    assert t2[T.CSF] > t2[T.CORD] > t2[T.LIGAMENT]
    assert t2[T.NUCLEUS] > t2[T.ANNULUS]
    assert t2[T.NUCLEUS] > t2[T.NUCLEUS_DEGEN]
    assert t1[T.FAT] > t1[T.MUSCLE] > t1[T.CSF]
    assert t1[T.MARROW] > t1[T.CSF]
    assert stir[T.FAT] < stir[T.MUSCLE]
    assert stir[T.EDEMA] > stir[T.MARROW]
    assert t1[T.EDEMA] < t1[T.MARROW]
    assert stir[T.CSF] > stir[T.FAT]
    assert t1[T.HEMANGIOMA] > t1[T.MUSCLE]
    assert t2[T.HEMANGIOMA] > t2[T.MARROW]
    assert t1[T.METASTASIS] < t1[T.MARROW]
    assert stir[T.METASTASIS] > stir[T.MARROW]
    assert post[T.INTRADURAL] > post[T.CORD]  # enhancing lesion
    assert water[T.FAT] < 0.2 * water[T.CSF]  # Dixon water image suppresses fat


def _full(grid) -> tuple[slice, slice, slice]:
    return tuple(slice(0, n) for n in grid.shape)


def _pure_median(study, key: str, tissue: T, k: int | None = None) -> float:
    """Median pixel value over pixels made (>=95 %) of one tissue on slice k of a series."""
    s = next(s for s in study.series if s.key == key)
    k = len(s.stack.slices) // 2 if k is None else k
    sampler = mask_sampler(study.spine.grid, _full(study.spine.grid), study.labels_volume == tissue)
    cov = sampler.slice(s.stack.slices[k])
    px = s.pixels[k][cov >= 0.95]
    assert px.size >= 5, f"no pure {tissue.name} pixels on {key}[{k}]"
    return float(np.median(px))


def test_rendered_images_keep_tissue_contrast_through_noise_and_bias(all_conditions) -> None:
    st = all_conditions
    assert _pure_median(st, "sag_t2", T.CSF) > _pure_median(st, "sag_t2", T.CORD)
    assert _pure_median(st, "sag_stir", T.FAT) < _pure_median(st, "sag_stir", T.MUSCLE)
    assert _pure_median(st, "sag_t1", T.FAT) > _pure_median(st, "sag_t1", T.CSF)
    assert _pure_median(st, "sag_t1", T.MARROW) > _pure_median(st, "sag_t1", T.CSF)


def test_every_condition_can_be_generated_and_localised(all_conditions) -> None:
    truth = all_conditions.truth
    assert all(truth["labels"][k] == 1 for k in CONDITION_KEYS)
    for f in truth["findings"]:
        if f["label"] != 1:
            continue
        assert f["voxels"] > 0, f
        n_key = sum(len(v) for v in f["key_slices"].values())
        assert n_key > 0, f"{f['condition']} at {f['level']} has no key slice"


def test_key_slice_boxes_cover_the_lesion_voxels(all_conditions) -> None:
    st = all_conditions
    grid = st.spine.grid
    by_key = {s.key: s for s in st.series}
    for f, fj in zip(st.patient.findings, st.truth["findings"], strict=True):
        for skey, slices in fj["key_slices"].items():
            for ks in slices[:2]:
                g = by_key[skey].stack.slices[ks["index"]]
                assert ks["sop_instance_uid"] == by_key[skey].sops[ks["index"]]
                cov = mask_sampler(grid, f.mask.sl, f.mask.m).slice(g)
                rr, cc = np.nonzero(cov >= THRESHOLD)
                x0, y0, x1, y1 = ks["box"]
                assert rr.size
                assert rr.min() >= y0
                assert rr.max() < y1
                assert cc.min() >= x0
                assert cc.max() < x1
                # voxel centres of the lesion that lie in the slice slab project into the box
                idx = np.argwhere(f.mask.m) + [s.start for s in f.mask.sl]
                pts = np.array(grid.origin) + idx * grid.voxel  # (n, 3) as (x, z, y)
                pts = pts[:, [0, 2, 1]]
                r, c, d = g.to_pixel(pts)
                inside = np.abs(d) < g.thickness / 4
                tol = grid.voxel / g.dr + 1
                if inside.any():
                    assert r[inside].min() >= y0 - tol
                    assert r[inside].max() <= y1 + tol
                    assert c[inside].min() >= x0 - tol
                    assert c[inside].max() <= x1 + tol
                assert 0 <= ks["box_norm"][0] < ks["box_norm"][2] <= 1


def test_axial_slices_cut_the_discs_they_claim(all_conditions) -> None:
    st = all_conditions
    sp = st.spine
    ax = next(s for s in st.series if s.key == "ax_t2")
    levels = [g.level for g in ax.stack.slices]
    assert set(levels) == set(sp.region.levels())
    for lv in set(levels):
        d = sp.disc(lv)
        depth = 0.5 * (sp.vert(d.upper).depth + sp.vert(d.lower).depth)
        centre = sp.patient_point(d.s, -0.5 * depth)  # middle of the disc
        ks = [k for k, g in enumerate(ax.stack.slices) if g.level == lv]
        g = ax.stack.slices[ks[len(ks) // 2]]
        r, c, dist = g.to_pixel(centre[None])
        assert abs(dist[0]) <= g.thickness, f"{lv}: disc centre {dist[0]:.1f} mm off its slice"
        cov = mask_sampler(sp.grid, _full(sp.grid), np.isin(st.labels_volume, DISC)).slice(g)
        assert cov[round(r[0]), round(c[0])] > 0.5, f"{lv}: slice does not pass through the disc"


def test_same_seed_gives_identical_bytes_and_labels(tmp_path: Path) -> None:
    cfg = configs(1, seed=11, fast=True, vendors=("Siemens",), prevalence="enriched")
    a, b = tmp_path / "a", tmp_path / "b"
    generate_dataset(a, cfg)
    generate_dataset(b, cfg)
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    assert len(fa) > 10
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = tmp_path / "c"
    generate_dataset(c, configs(1, seed=12, fast=True, vendors=("Siemens",)))
    first = next(iter(sorted((a / "studies").rglob("*.dcm"))))
    other = c / first.relative_to(a)
    assert pydicom.dcmread(first).PixelData != pydicom.dcmread(other).PixelData


def test_uids_follow_the_generator_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seed gives the same UIDs within one generator version and new ones under the next,
    so a set regenerated after a generator change never passes its new pixels off under old UIDs."""
    from ml.data.synthetic import dicom_writer

    cfg = StudyConfig(seed=5, index=0, fast=True, series=("sag_t2",))
    a = generate_study(cfg, None)
    again = generate_study(cfg, None)
    assert again.entry.study_uid == a.entry.study_uid
    assert again.series[0].sops == a.series[0].sops
    monkeypatch.setattr(dicom_writer, "GENERATOR_VERSION", dicom_writer.GENERATOR_VERSION + "-next")
    b = generate_study(cfg, None)
    assert b.entry.study_uid != a.entry.study_uid
    assert b.series[0].uid != a.series[0].uid
    assert not set(a.series[0].sops) & set(b.series[0].sops)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_dciodvfy_accepts_every_series_of_every_vendor(dataset: Path) -> None:
    files = [sorted(d.glob("*.dcm"))[0] for d in sorted((dataset / "studies").glob("*/*")) if d.is_dir()]
    assert len(files) == 12  # 3 vendors x 4 series
    for f in files:
        res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if "Error" in ln]
        assert res.returncode == 0, f"{f}: {errors}"
        assert not errors, f"{f}: {errors}"


def test_manifest_entries_point_at_real_series_and_truth(dataset: Path) -> None:
    entries = list(read_manifest(dataset / "manifest.jsonl"))
    assert {e.vendor for e in entries} == {"GE", "Siemens", "Philips"}
    for e in entries:
        truth = json.loads((dataset / e.ground_truth).read_text())
        assert truth["labels"] == e.labels
        assert e.report
        assert "IMPRESSION:" in e.report
        assert [s.sequence_class for s in e.series] == ["T1", "T2", "T2", "T2"]
        for s in e.series:
            files = sorted((dataset / s.path).glob("*.dcm"))
            ds = pydicom.dcmread(files[0])
            assert ds.SeriesInstanceUID == s.series_uid
            assert ds.SeriesDescription == s.description
            assert ds.StudyInstanceUID == e.study_uid
            assert ds.PatientID == e.patient_key
            assert str(ds.PatientName).startswith("SYNTHETIC^")


def test_vendor_naming_conventions_differ(dataset: Path) -> None:
    desc = {e.vendor: [s.description for s in e.series] for e in read_manifest(dataset / "manifest.jsonl")}
    assert desc["GE"][1] == "SAG T2 FSE"
    assert desc["Siemens"][1] == "t2_tse_sag"
    assert desc["Philips"][1] == "T2W_TSE_SAG"


def test_sagittal_geometry_steps_left_right_and_axials_follow_the_disc(dataset: Path) -> None:
    e = next(read_manifest(dataset / "manifest.jsonl"))
    sag = [pydicom.dcmread(p) for p in sorted((dataset / e.series[1].path).glob("*.dcm"))]
    xs = [float(d.ImagePositionPatient[0]) for d in sag]
    assert len(set(np.sign(np.diff(xs)))) == 1
    assert all(abs(np.diff(xs)) > 3)
    assert [float(v) for v in sag[0].ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    ax = pydicom.dcmread(sorted((dataset / e.series[3].path).glob("*.dcm"))[0])
    row = np.array(ax.ImageOrientationPatient[:3], float)
    col = np.array(ax.ImageOrientationPatient[3:], float)
    assert np.allclose(row, [1, 0, 0])
    assert abs(np.cross(row, col)[2]) > 0.7


def test_report_impression_names_every_positive_condition(dataset: Path) -> None:
    words = {
        "canal_stenosis": "canal stenosis",
        "foraminal_narrowing": "foraminal",
        "subarticular_stenosis": "subarticular",
        "disc_herniation": "herniation",
        "disc_height_loss": "height loss",
        "endplate_inflammation": "modic",
        "synovial_cyst": "synovial",
        "spondylolisthesis": "spondylolisthesis",
        "pars_defect": "pars",
        "compression_deformity": "compression",
        "acute_fracture": "fracture",
        "marrow_edema": "edema",
        "hemangioma": "hemangioma",
        "osseous_lesion": "osseous",
        "epidural_lipomatosis": "lipomatosis",
        "perineural_cyst": "tarlov",
        "intradural_lesion": "intradural",
    }
    for e in read_manifest(dataset / "manifest.jsonl"):
        impression = e.report.split("IMPRESSION:")[1].lower()
        for k, v in e.labels.items():
            if v != 0:
                assert words[k] in impression, (k, impression)


@pytest.mark.parametrize("region", ["cervical", "thoracic"])
def test_other_regions_generate_with_their_level_names(region: str) -> None:
    st = generate_study(StudyConfig(seed=1, index=0, region=region, fast=True, force=CONDITION_KEYS), None)
    ax = next(s for s in st.series if s.key == "ax_t2")
    assert {g.level for g in ax.stack.slices} == set(st.spine.region.levels())
    assert all(v == 1 for v in st.truth["labels"].values())


def test_rsna_cohort_has_grades_per_level_and_side() -> None:
    st = generate_study(StudyConfig(seed=2, index=0, cohort="rsna", fast=True, force=("canal_stenosis",)), None)
    grades = st.truth["rsna"]
    assert len(grades) == 25
    assert grades["spinal_canal_stenosis_l4_l5"] == "Moderate"
    assert set(grades.values()) <= {"Normal/Mild", "Moderate", "Severe"}


def test_cli_writes_a_dataset(tmp_path: Path) -> None:
    rc = main(
        [
            "--studies",
            "1",
            "--seed",
            "5",
            "--out",
            str(tmp_path),
            "--fast",
            "--series",
            "sag_t2,sag_t1_post",
            "--vendors",
            "Philips",
        ]
    )
    assert rc == 0
    (e,) = read_manifest(tmp_path / "manifest.jsonl")
    assert [s.sequence_class for s in e.series] == ["T2", "other"]
    ds = pydicom.dcmread(sorted((tmp_path / e.series[1].path).glob("*.dcm"))[0])
    assert ds.ContrastBolusAgent
    assert "FS" in ds.ScanOptions


def test_windowed_key_slices_match_full_slice_sampling(all_conditions) -> None:
    """Key slices are sampled only near each finding; the result equals full-slice sampling."""
    st = all_conditions
    grid = st.spine.grid
    by_key = {s.key: s for s in st.series}
    for f, fj in zip(st.patient.findings, st.truth["findings"], strict=True):
        sampler = mask_sampler(grid, f.mask.sl, f.mask.m)
        for skey, s in by_key.items():
            expected = {}
            for k, g in enumerate(s.stack.slices):
                hit = sampler.slice(g) >= THRESHOLD
                if hit.sum() >= 4:
                    rr, cc = np.nonzero(hit)
                    expected[k] = (int(hit.sum()), [int(cc.min()), int(rr.min()), int(cc.max()) + 1, int(rr.max()) + 1])
            got = {ks["index"]: (ks["pixels"], ks["box"]) for ks in fj["key_slices"][skey]}
            assert got == expected, (f.condition, skey)
