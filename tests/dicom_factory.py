"""Small but complete MR DICOM series for platform tests (Orthanc, proxy, sync).

The spine-realistic studies come from ``ml.data.synthetic``; these are deliberately tiny
(64×64) so that platform tests stay fast, and carry the vendor-style tags the series
classifier reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SAGITTAL_IOP = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
AXIAL_IOP = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


@dataclass(frozen=True)
class SeriesSpec:
    description: str
    tr: float
    te: float
    iop: tuple[float, ...] = tuple(SAGITTAL_IOP)
    n: int = 5
    ti: float | None = None
    manufacturer: str = "GE MEDICAL SYSTEMS"
    matrix: int = 64


LUMBAR_PROTOCOL = (
    SeriesSpec("SAG T1 FSE", tr=550, te=12),
    SeriesSpec("SAG T2 FSE", tr=3500, te=100),
    SeriesSpec("AX T2 FSE", tr=4000, te=105, iop=tuple(AXIAL_IOP), n=4),
)


def make_instance(
    *, study_uid: str, series_uid: str, spec: SeriesSpec, index: int, series_number: int, patient: str, seed: int = 0
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame-of-reference"])
    ds.PatientName, ds.PatientID = f"SYNTHETIC^{patient}", patient
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", f"ACC{patient}"
    ds.StudyDescription = "MRI LUMBAR SPINE"
    ds.SeriesDate, ds.SeriesTime = "20260101", f"12{series_number:02d}00"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.Manufacturer = "MR", spec.manufacturer
    ds.SeriesNumber, ds.InstanceNumber = series_number, index + 1
    ds.SeriesDescription = ds.ProtocolName = spec.description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.ScanningSequence, ds.SequenceVariant = ("IR" if spec.ti else "SE"), "SK"
    ds.ScanOptions, ds.MRAcquisitionType = "", "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = spec.tr, spec.te, 16
    if spec.ti:
        ds.InversionTime = spec.ti
    ds.MagneticFieldStrength = 1.5
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = list(spec.iop)
    normal = np.cross(spec.iop[:3], spec.iop[3:])
    ds.ImagePositionPatient = [float(v) for v in (normal * index * 4.0 + np.array([0.0, -100.0, 100.0]))]
    ds.SliceThickness, ds.PixelSpacing, ds.SliceLocation = 4.0, [1.0, 1.0], float(index * 4.0)
    rng = np.random.default_rng(seed * 1000 + series_number * 100 + index)
    pixels = rng.integers(0, 1000, size=(spec.matrix, spec.matrix), dtype=np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    return ds


def write_study(
    out: Path, *, patient: str = "SYN-0001", protocol: tuple[SeriesSpec, ...] = LUMBAR_PROTOCOL, seed: int = 0
) -> tuple[str, list[Path]]:
    """Write one study (one file per instance); returns (StudyInstanceUID, files)."""
    out.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    files: list[Path] = []
    for number, spec in enumerate(protocol, start=1):
        series_uid = generate_uid()
        for i in range(spec.n):
            ds = make_instance(
                study_uid=study_uid,
                series_uid=series_uid,
                spec=spec,
                index=i,
                series_number=number,
                patient=patient,
                seed=seed,
            )
            path = out / f"s{number:02d}_{i:03d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    return study_uid, files


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def upload_study(client, files) -> str:  # type: ignore[no-untyped-def]
    """POST each file to Orthanc's REST API (an httpx client on it); the Orthanc id of the one
    study they make up."""
    ids = set()
    for f in files:
        response = client.post("/instances", content=Path(f).read_bytes())
        assert response.status_code == 200, response.text
        ids.add(response.json()["ParentStudy"])
    (study_id,) = ids
    return study_id


def enhanced_copy(files: list[Path], out: Path) -> list[Path]:
    """Each series of a generated study converted to one Legacy Converted Enhanced MR object
    (highdicom's legacy-to-enhanced conversion), as a current scanner exports it."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    by_series: dict[str, list[pydicom.Dataset]] = {}
    for f in files:
        ds = pydicom.dcmread(f)
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    written = []
    for number, datasets in enumerate(by_series.values(), start=1):
        enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
            datasets, series_instance_uid=generate_uid(), series_number=number,
            sop_instance_uid=generate_uid(), instance_number=1,
        )  # fmt: skip
        path = out / f"enhanced_{number:02d}.dcm"
        enhanced.save_as(path, enforce_file_format=True)
        written.append(path)
    return written
