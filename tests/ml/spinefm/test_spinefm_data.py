"""DICOM preprocessing, slice cache, manifest datasets and patient-level splits."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from dicom_fixtures import make_dataset

from ml.data.cache import SliceCache
from ml.data.datasets import SliceDataset, StudyDataset
from ml.data.loader import StudyLoader, load_manifest
from ml.data.manifest import SeriesEntry, StudyEntry
from ml.data.preprocess import PreprocessConfig, pad_to_square, preprocess_series, robust_window, to_float
from ml.data.splits import kfold, train_test_split


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    make_dataset(root, n_studies=6, slices=3)
    return root


def test_rescale_slope_and_intercept_are_applied(dataset_dir):
    f = next((dataset_dir / "studies" / "PT-000" / "sag_t1").glob("*.dcm"))
    ds = pydicom.dcmread(f)
    np.testing.assert_allclose(to_float(ds), ds.pixel_array.astype(np.float32) * 2.0 - 10.0)


def test_robust_window_ignores_outliers_and_pad_centres():
    arr = np.zeros((100, 100), np.float32)
    arr[5, 5] = 1e6  # one hot voxel must not set the window
    arr[:, :50] = 100.0
    _lo, hi = robust_window([arr], 0.5, 99.5, 10**6)
    assert hi <= 100.0 + 1e-3
    padded = pad_to_square(np.ones((2, 4), np.float32))
    assert padded.shape == (4, 4)
    assert padded[0].sum() == 0
    assert padded[1].sum() == 4


def test_series_preprocessing_sorts_along_the_normal_and_resizes(dataset_dir):
    folder = dataset_dir / "studies" / "PT-001" / "sag_t2"
    datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"), reverse=True)]
    arr = preprocess_series(datasets, PreprocessConfig(size=48))
    assert arr.shape == (3, 48, 48)
    assert arr.dtype == np.float32
    assert arr.min() >= 0.0
    assert arr.max() <= 1.0
    in_order = preprocess_series(sorted(datasets, key=lambda d: d.InstanceNumber), PreprocessConfig(size=48))
    np.testing.assert_array_equal(arr, in_order)


def test_cache_key_includes_parameters_and_serves_hits(dataset_dir, tmp_path):
    studies, base = load_manifest(dataset_dir / "manifest.jsonl")
    cache = SliceCache(tmp_path / "c")
    loader = StudyLoader(base, PreprocessConfig(size=32), cache)
    first = loader.series_pixels(studies[0], studies[0].series[0])
    n_files = len(list((tmp_path / "c").rglob("*.npy")))
    assert n_files == 3
    again = loader.series_pixels(studies[0], studies[0].series[0])
    np.testing.assert_allclose(first, again, atol=1e-3)  # float16 storage
    StudyLoader(base, PreprocessConfig(size=40), cache).series_pixels(studies[0], studies[0].series[0])
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 6  # new size -> new keys


def test_slice_dataset_takes_only_the_requested_class(dataset_dir):
    studies, base = load_manifest(dataset_dir / "manifest.jsonl")
    ds = SliceDataset(StudyLoader(base, PreprocessConfig(size=32)), studies, ["T1"])
    assert len(ds) == 6 * 3
    assert ds[0].shape == (1, 32, 32)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    assert next(iter(loader)).shape == (4, 1, 32, 32)


def test_study_dataset_returns_series_report_and_labels(dataset_dir):
    studies, base = load_manifest(dataset_dir / "manifest.jsonl")
    ds = StudyDataset(StudyLoader(base, PreprocessConfig(size=32)), studies, max_slices=2)
    st = ds[0]
    assert [s.sequence_class for s in st.series] == ["T1", "T2", "other"]
    assert st.series[0].pixels.shape == (2, 32, 32)
    assert st.labels.shape == (17,)
    assert set(st.labels[3:].tolist()) == {-1}  # unlabelled conditions are excluded (-1)
    assert "stenosis" in st.report


def test_unclassified_series_go_through_the_series_classifier(dataset_dir):
    studies, base = load_manifest(dataset_dir / "manifest.jsonl")
    entry = studies[0]
    bare = StudyEntry(entry.study_uid, entry.patient_key, [SeriesEntry(s.series_uid, s.path) for s in entry.series])
    seen = []
    loader = StudyLoader(base, PreprocessConfig(size=32), classifier=lambda dss: seen.append(len(dss)) or "T2")
    assert {s.sequence_class for s in loader.load(bare).series} == {"T2"}
    assert seen == [3, 3, 3]


def test_series_without_path_needs_dicomweb():
    loader = StudyLoader(".", PreprocessConfig(size=32))
    entry = StudyEntry("1.2", "p", [SeriesEntry("1.2.3", None, sequence_class="T1")])
    with pytest.raises(ValueError, match="DICOMweb"):
        loader.load(entry)


def test_dicomweb_source_reads_series_through_the_client(dataset_dir):
    from ml.data.dicomweb import DicomWebSource

    files = sorted((dataset_dir / "studies" / "PT-002" / "sag_t1").glob("*.dcm"))

    asked: list = []

    class FakeClient:  # dicomweb-client's signature; the real path is tested against Orthanc
        def retrieve_series(self, study_uid, series_uid, media_types=None):
            asked.append(media_types)
            return [pydicom.dcmread(f) for f in files]

    loader = StudyLoader(".", PreprocessConfig(size=32), dicomweb=DicomWebSource(client=FakeClient()))
    entry = StudyEntry("1.2", "p", [SeriesEntry("1.2.3", None, sequence_class="T1")])
    assert loader.load(entry).series[0].pixels.shape == (3, 32, 32)
    # as stored: Orthanc without a transcoding plugin answers 500 for JPEG 2000 otherwise
    assert asked == [(("application/dicom", "*"),)]


def _entries(n):
    return [StudyEntry(f"1.{i}", f"patient-{i // 2}", []) for i in range(n)]  # 2 studies per patient


def test_kfold_never_splits_a_patient_and_is_deterministic():
    studies = _entries(40)
    folds = kfold(studies, k=5, seed=3)
    assert folds == kfold(studies, k=5, seed=3)
    all_test = []
    for train, test in folds:
        assert not {studies[i].patient_key for i in train} & {studies[i].patient_key for i in test}
        all_test += test
    assert sorted(all_test) == list(range(40))


def test_train_test_split_is_patient_level():
    studies = _entries(50)
    train, test = train_test_split(studies, 0.3)
    assert test
    assert not {studies[i].patient_key for i in train} & {studies[i].patient_key for i in test}
