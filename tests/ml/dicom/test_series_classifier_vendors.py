"""The series classifier on synthetic, vendor-style MR headers (GE, Siemens, Philips, Canon
naming and physics), one header per expected (class, subtype, plane)."""

from __future__ import annotations

import pytest

from ml.dicom.series_classifier import classify
from tests.ml.dicom.headers import AXIAL, CORONAL, SAGITTAL, mr

SYNTHETIC = [
    # (id, tags, expected class, subtype, plane)
    (
        "ge-sag-t2-fse",
        dict(
            SeriesDescription="SAG T2 FSE",
            Manufacturer="GE MEDICAL SYSTEMS",
            ScanningSequence="SE",
            RepetitionTime=3500,
            EchoTime=100,
            ImageOrientationPatient=SAGITTAL,
        ),
        "T2",
        "T2",
        "sagittal",
    ),
    (
        "ge-ax-t1-fse",
        dict(
            SeriesDescription="AX T1 FSE",
            ScanningSequence="SE",
            RepetitionTime=550,
            EchoTime=12,
            ImageOrientationPatient=AXIAL,
        ),
        "T1",
        "T1",
        "axial",
    ),
    ("ge-frfse", dict(SeriesDescription="Sag FRFSE", RepetitionTime=3000, EchoTime=90), "T2", "T2", "sagittal"),
    (
        "ge-post-contrast",
        dict(
            SeriesDescription="SAG T1 +C",
            ScanningSequence="SE",
            RepetitionTime=600,
            EchoTime=10,
            ImageOrientationPatient=SAGITTAL,
        ),
        "other",
        "T1_POSTCONTRAST",
        "sagittal",
    ),
    (
        "ge-3-plane-loc",
        dict(SeriesDescription="3-PLANE LOC", ImageOrientationPatient=CORONAL),
        "other",
        "LOCALIZER",
        "coronal",
    ),
    (
        "ge-ideal-water",
        dict(SeriesDescription="SAG T2 IDEAL WATER", ImageOrientationPatient=SAGITTAL),
        "T2",
        "DIXON_WATER",
        "sagittal",
    ),
    (
        "siemens-t2-tse-sag",
        dict(
            SeriesDescription="t2_tse_sag_384",
            Manufacturer="SIEMENS",
            ScanningSequence="SE",
            RepetitionTime=3200,
            EchoTime=95,
        ),
        "T2",
        "T2",
        "sagittal",
    ),
    (
        "siemens-t1-tse-tra",
        dict(ProtocolName="t1_tse_tra", RepetitionTime=650, EchoTime=9.5, ImageOrientationPatient=AXIAL),
        "T1",
        "T1",
        "axial",
    ),
    (
        "siemens-tirm",
        dict(
            SeriesDescription="t2_tirm_sag",
            ScanningSequence=["SE", "IR"],
            RepetitionTime=4000,
            EchoTime=60,
            InversionTime=160,
            MagneticFieldStrength=1.5,
        ),
        "T2",
        "STIR",
        "sagittal",
    ),
    (
        "siemens-t1-tirm-is-t1-flair",
        dict(
            SeriesDescription="t1_tirm_sag",
            ScanningSequence=["SE", "IR"],
            RepetitionTime=2000,
            EchoTime=9,
            InversionTime=860,
        ),
        "T1",
        "T1",
        "sagittal",
    ),
    (
        "siemens-dixon-fat",
        dict(SeriesDescription="t2_tse_dixon_sag_F", ImageType=["DERIVED", "PRIMARY", "DIXON", "FAT"]),
        "T2",
        "DIXON_FAT",
        "sagittal",
    ),
    ("siemens-dwi", dict(SeriesDescription="ep2d_diff_tra", ImageOrientationPatient=AXIAL), "other", "DWI", "axial"),
    (
        "siemens-adc",
        dict(SeriesDescription="ep2d_diff_tra_ADC", ImageType=["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]),
        "other",
        "ADC",
        "axial",
    ),
    ("siemens-medic", dict(SeriesDescription="t2_me2d_medic_tra", ScanningSequence="GR"), "other", "GRE", "axial"),
    (
        "philips-t2w-tse",
        dict(SeriesDescription="T2W_TSE SAG", Manufacturer="Philips", RepetitionTime=2800, EchoTime=110),
        "T2",
        "T2",
        "sagittal",
    ),
    ("philips-st2w", dict(SeriesDescription="sT2W_TSE", ImageOrientationPatient=AXIAL), "T2", "T2", "axial"),
    (
        "philips-t1w-se",
        dict(SeriesDescription="T1W_SE", ImageOrientationPatient=SAGITTAL, RepetitionTime=500, EchoTime=15),
        "T1",
        "T1",
        "sagittal",
    ),
    (
        "philips-mdixon-in-phase",
        dict(SeriesDescription="mDIXON_TSE_T2 IP", ImageOrientationPatient=SAGITTAL),
        "T2",
        "DIXON_IN_PHASE",
        "sagittal",
    ),
    (
        "philips-t1-mdixon-water",
        dict(SeriesDescription="T1W_mDIXON_TSE W", ImageOrientationPatient=SAGITTAL),
        "T1",
        "DIXON_WATER",
        "sagittal",
    ),
    ("philips-survey", dict(SeriesDescription="SURVEY"), "other", "LOCALIZER", "unknown"),
    ("philips-pd", dict(SeriesDescription="PDW_TSE COR", RepetitionTime=2500, EchoTime=30), "other", "PD", "coronal"),
    ("philips-diffusion-b-value", dict(SeriesDescription="sag", DiffusionBValue=800), "other", "DWI", "sagittal"),
    (
        "canon-t2w-fse",
        dict(SeriesDescription="T2W_FSE", Manufacturer="TOSHIBA_MEC", ImageOrientationPatient=SAGITTAL),
        "T2",
        "T2",
        "sagittal",
    ),
    ("canon-t2star-fe", dict(SeriesDescription="T2*W_FE AX", ScanningSequence="GR"), "other", "GRE", "axial"),
    ("flair-by-name", dict(SeriesDescription="AX T2 FLAIR", ImageOrientationPatient=AXIAL), "T2", "FLAIR", "axial"),
    (
        "agent-tag-wins",
        dict(SeriesDescription="t1_tse_sag", ContrastBolusAgent="Gadovist 7.5 ml"),
        "other",
        "T1_POSTCONTRAST",
        "sagittal",
    ),
    (
        "pre-contrast-is-not-post",
        dict(SeriesDescription="T1 PRE GAD SAG", RepetitionTime=500, EchoTime=10),
        "T1",
        "T1",
        "sagittal",
    ),
    (
        "localizer-image-type",
        dict(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SeriesDescription="t2_haste"),
        "other",
        "LOCALIZER",
        "unknown",
    ),
    ("canon-locator", dict(SeriesDescription="Locator", Manufacturer="CANON_MEC"), "other", "LOCALIZER", "unknown"),
    ("canon-wfs-fat", dict(SeriesDescription="T2W_FSE WFS FAT SAG"), "T2", "DIXON_FAT", "sagittal"),
    # physics only (no names)
    ("physics-t1", dict(ScanningSequence="SE", RepetitionTime=500, EchoTime=12), "T1", "T1", "unknown"),
    ("physics-t2", dict(ScanningSequence="SE", RepetitionTime=4000, EchoTime=110), "T2", "T2", "unknown"),
    ("physics-pd", dict(ScanningSequence="SE", RepetitionTime=3000, EchoTime=20), "other", "PD", "unknown"),
    (
        "physics-stir",
        dict(
            ScanningSequence=["SE", "IR"], RepetitionTime=5000, EchoTime=40, InversionTime=220, MagneticFieldStrength=3
        ),
        "T2",
        "STIR",
        "unknown",
    ),
    (
        "physics-flair",
        dict(ScanningSequence=["SE", "IR"], RepetitionTime=9000, EchoTime=120, InversionTime=2500),
        "T2",
        "FLAIR",
        "unknown",
    ),
    (
        "physics-gre",
        dict(ScanningSequence="GR", RepetitionTime=600, EchoTime=15, FlipAngle=20),
        "other",
        "GRE",
        "unknown",
    ),
    (
        "physics-mprage",
        dict(
            ScanningSequence=["GR", "IR"],
            SequenceVariant=["SP", "MP"],
            RepetitionTime=2000,
            EchoTime=3,
            InversionTime=900,
        ),
        "T1",
        "T1",
        "unknown",
    ),
    (
        "physics-intermediate",
        dict(ScanningSequence="SE", RepetitionTime=1200, EchoTime=50),
        "other",
        "UNKNOWN",
        "unknown",
    ),
    (
        "oblique-iop",
        dict(SeriesDescription="t2_tse_sag", ImageOrientationPatient=(0.7071, 0.7071, 0, 0, 0, -1)),
        "T2",
        "T2",
        "oblique",
    ),
    ("nothing-at-all", dict(), "other", "UNKNOWN", "unknown"),
]


@pytest.mark.parametrize(
    ("tags", "sequence_class", "subtype", "plane"),
    [pytest.param(t, c, s, p, id=i) for i, t, c, s, p in SYNTHETIC],
)
def test_synthetic_vendor_header_is_classified(tags, sequence_class, subtype, plane):
    result = classify(mr(**tags))
    assert (result.sequence_class, result.subtype, result.plane) == (sequence_class, subtype, plane), result.reasons
    assert 0.0 <= result.confidence <= 1.0
    assert result.reasons
