"""Tiny DICOM studies + manifest for SpineFM tests (independent of the synthetic generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ml.conditions import CONDITION_KEYS
from ml.data.manifest import SeriesEntry, StudyEntry, write_manifest

SERIES = (("sag_t1", "SAG T1 TSE", "T1"), ("sag_t2", "SAG T2 TSE", "T2"), ("sag_t1_post", "SAG T1 FS POST GD", "other"))


def write_slice(path: Path, pixels: np.ndarray, study_uid: str, series_uid: str, index: int, desc: str) -> str:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality, ds.SeriesDescription, ds.InstanceNumber = "MR", desc, index + 1
    ds.ImagePositionPatient = [float(index) * 4.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2.0, -10.0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return sop


def make_dataset(root: Path, n_studies: int = 8, slices: int = 4, shape=(40, 32), seed: int = 0) -> Path:
    """Write ``n_studies`` studies (T1, T2, other series) whose pixels depend on two labels."""
    rng = np.random.default_rng(seed)
    studies = []
    for i in range(n_studies):
        key = f"PT-{i:03d}"
        study_uid = generate_uid()
        labels = {k: int(rng.integers(0, 2)) for k in CONDITION_KEYS[:3]}
        series = []
        for folder, desc, cls in SERIES:
            series_uid = generate_uid()
            d = root / "studies" / key / folder
            d.mkdir(parents=True, exist_ok=True)
            base = 300 if cls == "T1" else 600
            for k in range(slices):
                img = rng.normal(base, 30, shape).clip(0, 4000)
                if labels[CONDITION_KEYS[0]]:
                    img[10:20, 10:20] += 800  # a bright "lesion" the models can find
                write_slice(d / f"{k:03d}.dcm", img, study_uid, series_uid, k, desc)
            series.append(SeriesEntry(series_uid, f"studies/{key}/{folder}", desc, cls, "sagittal"))
        report = f"Findings: {'canal stenosis' if labels[CONDITION_KEYS[0]] else 'no stenosis'} at L4-5."
        studies.append(StudyEntry(study_uid, key, series, root=f"studies/{key}", report=report, labels=labels))
    write_manifest(root / "manifest.jsonl", studies)
    return root / "manifest.jsonl"
