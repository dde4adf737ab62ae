"""Write rendered series as MR Image Storage instances that ``dciodvfy`` accepts.

One file per slice, Explicit VR Little Endian, uncompressed. UIDs are derived from the
generator seed (pydicom ``generate_uid`` with deterministic entropy), so regenerating a
dataset reproduces the same studies byte for byte and Orthanc de-duplicates them.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ml.data.synthetic.physics import Sequence
from ml.data.synthetic.render import SliceGeom
from ml.data.synthetic.vendors import Vendor

IMPLEMENTATION_UID = PYDICOM_IMPLEMENTATION_UID
IMPLEMENTATION_VERSION = "SPINEREVIEW_SY1"


# The generator's output version. Bump it whenever what a seed produces changes (pixels, headers,
# ground truth): every UID is derived from it, so a changed study never reuses an old study's
# UIDs. Why: a SOP Instance UID names its content; the slice cache (``ml/data/cache.py``) and
# Orthanc both take an instance with a known UID as the one they already hold, and would serve
# the old pixels of a set regenerated after a generator fix.
GENERATOR_VERSION = "2"


def uid(*parts: object) -> str:
    """Deterministic UID (pydicom root + SHA-512 of the description of the object and the
    generator's version).

    ``prefix=None`` would give random 2.25 UUID UIDs and ignore the entropy sources.
    """
    return generate_uid(entropy_srcs=["spinereview-synth", GENERATOR_VERSION, *map(str, parts)])


@dataclass(frozen=True)
class StudyInfo:
    """Patient/study level attributes shared by every series of a study."""

    study_uid: str
    frame_uid: str
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    age: int
    study_date: str
    study_time: str
    accession: str
    study_id: str
    description: str
    weight_kg: float
    # The referrer's reason for the examination, as a modality worklist delivers it: None = drawn
    # from the study UID (``worklist_request``); "" = the request carried no reason.
    indication: str | None = None


# Reasons for the examination as referrers write them, per region (no finding names: the
# request precedes the images). About one request in five carries no reason at all, as in
# practice, so the drafts' "no clinical history" placeholder is exercised by the demo too.
_INDICATIONS: dict[str, tuple[str, ...]] = {
    "LUMBAR": (
        "Low back pain radiating to the left leg",
        "Low back pain radiating to the right leg",
        "Chronic low back pain, failed conservative therapy",
        "Low back pain, evaluate for disc herniation",
        "Bilateral leg pain on walking",
        "Low back pain after a fall",
    ),
    "CERVICAL": (
        "Neck pain radiating to the right arm",
        "Neck pain with paraesthesia of both hands",
        "Chronic neck pain, failed conservative therapy",
        "Neck pain after a fall",
    ),
    "THORACIC": (
        "Mid back pain, rule out fracture",
        "Thoracic back pain for several months",
        "Mid back pain after a fall",
    ),
}
_HISTORY = ("Symptoms for 6 weeks.", "Symptoms for 3 months.", "Symptoms for over a year.")
_NO_REASON_SHARE = 0.2


@dataclass(frozen=True)
class WorklistRequest:
    """What the scheduled procedure step carried: the indication and the patient history."""

    procedure: str  # RequestedProcedureDescription
    reason: str  # ReasonForTheRequestedProcedure ("" = none given)
    history: str  # AdditionalPatientHistory ("" = none given)


def worklist_request(st: StudyInfo) -> WorklistRequest:
    """The request of one study, deterministic in its UID (regenerating keeps the bytes).

    ``st.indication`` wins when set; otherwise the reason is drawn from the region's bank (the
    region is read from the study description, "MRI LUMBAR SPINE").
    """
    h = int.from_bytes(hashlib.sha256(f"request:{st.study_uid}".encode()).digest()[:8], "big")
    if st.indication is not None:
        reason = st.indication
    elif (h % 1000) / 1000 < _NO_REASON_SHARE:
        reason = ""
    else:
        region = next((r for r in _INDICATIONS if r in st.description.upper()), "LUMBAR")
        bank = _INDICATIONS[region]
        reason = bank[(h // 1000) % len(bank)]
    history = _HISTORY[(h // 100_000) % len(_HISTORY)] if reason and (h // 10_000_000) % 2 else ""
    return WorklistRequest(procedure=st.description, reason=reason, history=history)


def _fmt(v: float) -> str:
    """DS value within 16 characters."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"


def _encode(ds: Dataset) -> list[tuple[int, bytes]]:
    """Explicit VR Little Endian encoding of each element of ds, in tag order."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    out = []
    for elem in ds:
        start = fp.tell()
        write_data_element(fp, elem)
        out.append((int(elem.tag), fp.getvalue()[start:]))
    return out


def _file_meta(sop: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + fp.getvalue()


def _pixel_element(img: np.ndarray) -> bytes:
    """(7FE0,0010) OW, native little-endian 16-bit pixels (even length by construction)."""
    data = np.ascontiguousarray(img, dtype="<u2").tobytes()
    return b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", len(data)) + data


def write_series(
    folder: Path,
    pixels: np.ndarray,
    geoms: list[SliceGeom],
    seq: Sequence,
    ven: Vendor,
    st: StudyInfo,
    series_uid: str,
    series_number: int,
    description: str,
) -> list[str]:
    """Write pixels (n, rows, cols) uint16 as NNNN.dcm files; returns SOP Instance UIDs.

    The attributes shared by the series are encoded once (a template); each file adds
    only its own elements (UIDs, position, window, pixels), merged in tag order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    scan_seq, variant, options = ven.seq_ir if seq.kind == "IR" else ven.seq_se
    if seq.fat_sat:
        options = (options + "\\FS") if options else "FS"
    sops: list[str] = []
    acq_rows = round(geoms[0].rows * ven.degradation.acq_frac)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"] if ven.key != "Siemens" else ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = st.study_date
    ds.SeriesDate = st.study_date
    ds.AcquisitionDate = st.study_date
    ds.ContentDate = st.study_date
    ds.StudyTime = st.study_time
    ds.SeriesTime = st.study_time
    ds.AcquisitionTime = st.study_time
    ds.ContentTime = st.study_time
    ds.AccessionNumber = st.accession
    ds.Modality = "MR"
    ds.Manufacturer = ven.manufacturer
    ds.InstitutionName = "SpineReview Synthetic Hospital"
    ds.ReferringPhysicianName = "SYNTHETIC^REFERRER"
    ds.StationName = f"SYN{ven.key.upper()[:5]}"
    ds.StudyDescription = st.description
    ds.SeriesDescription = description
    ds.ManufacturerModelName = ven.model
    ds.PatientName = st.patient_name
    ds.PatientID = st.patient_id
    ds.IssuerOfPatientID = "SPINEREVIEW-SYNTHETIC"  # a PatientID means a patient only with its issuer
    ds.PatientBirthDate = st.birth_date
    ds.PatientSex = st.sex
    ds.PatientAge = f"{st.age:03d}Y"
    ds.PatientWeight = _fmt(st.weight_kg)
    ds.PatientIdentityRemoved = "NO"
    request = worklist_request(st)
    if request.history:
        ds.AdditionalPatientHistory = request.history
    item = Dataset()  # Request Attributes Sequence of the General Series module, one item
    item.RequestedProcedureID = f"RP{st.study_id}"
    item.ScheduledProcedureStepID = f"SPS{st.study_id}"
    item.RequestedProcedureDescription = request.procedure
    if request.reason:
        item.ReasonForTheRequestedProcedure = request.reason
    ds.RequestAttributesSequence = [item]
    ds.BodyPartExamined = "SPINE"
    ds.ScanningSequence = scan_seq
    ds.SequenceVariant = variant
    ds.ScanOptions = options
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = {"GE": "fse", "Siemens": "*tse2d1", "Philips": "TSE"}[ven.key] + (
        "_ir" if seq.kind == "IR" else ""
    )
    ds.AngioFlag = "N"
    ds.RepetitionTime = _fmt(seq.tr)
    ds.EchoTime = _fmt(seq.te)
    if seq.kind == "IR":
        ds.InversionTime = _fmt(seq.ti or 150.0)
    ds.NumberOfAverages = "1" if ven.key != "Philips" else "2"
    ds.ImagingFrequency = _fmt(42.577478 * ven.field_t)
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = _fmt(ven.field_t)
    ds.EchoTrainLength = str(seq.etl)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = {"GE": "122.07", "Siemens": "190", "Philips": "215.3"}[ven.key]
    ds.DeviceSerialNumber = "SYN0001"
    ds.SoftwareVersions = ven.software
    ds.ProtocolName = ven.protocol_prefix + description
    ds.FlipAngle = "90" if ven.key != "Siemens" else "150"
    ds.SAR = "0.5"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = st.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = st.study_id
    ds.SeriesNumber = str(series_number)
    ds.AcquisitionNumber = "1"
    ds.FrameOfReferenceUID = st.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if ven.key == "Philips" else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if ven.rescale_slope:
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = _fmt(ven.rescale_slope)
        ds.RescaleType = "US"
    if seq.contrast:
        ds.ContrastBolusAgent = "GADOLINIUM (SYNTHETIC)"
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "15"
    grp, creator = ven.private_creator
    block = ds.private_block(grp, creator, create=True)
    block.add_new(0xF0, "LO", f"synthetic {seq.key}")
    block.add_new(0xF1, "DS", _fmt(seq.tr))
    template = _encode(ds)
    for k, (img, g) in enumerate(zip(pixels, geoms, strict=True)):
        sop = uid(series_uid, k)
        sops.append(sop)
        ds = Dataset()
        ds.SOPInstanceUID = sop
        ds.SliceThickness = _fmt(g.thickness)
        if len(geoms) > 1:
            ds.SpacingBetweenSlices = _fmt(
                float(np.linalg.norm(geoms[1].origin - geoms[0].origin)) if g.level is None else g.thickness + 0.4
            )
        ds.AcquisitionMatrix = [0, acq_rows, acq_rows, 0] if g.level is None else [acq_rows, 0, 0, acq_rows]
        ds.InPlanePhaseEncodingDirection = "COL" if g.level is None else "ROW"
        ds.InstanceNumber = str(k + 1)
        ds.ImagePositionPatient = [_fmt(c) for c in g.origin]
        ds.ImageOrientationPatient = [_fmt(c) for c in (*g.row_dir, *g.col_dir)]
        ds.SliceLocation = _fmt(float(np.dot(g.center, g.normal)))
        ds.Rows = int(g.rows)
        ds.Columns = int(g.cols)
        ds.PixelSpacing = [_fmt(g.dr), _fmt(g.dc)]
        ds.WindowCenter = _fmt(float(img.mean()) * (ven.rescale_slope or 1.0) * 1.4)
        ds.WindowWidth = _fmt(float(img.mean()) * (ven.rescale_slope or 1.0) * 2.6 + 1)
        parts = sorted(template + _encode(ds))
        with open(folder / f"{k + 1:04d}.dcm", "wb") as fh:
            fh.write(_file_meta(sop))
            fh.write(b"".join(b for _, b in parts))
            fh.write(_pixel_element(img))
    return sops
