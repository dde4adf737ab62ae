"""Codes for the outgoing formats: SNOMED CT for the conditions (only where the concept is
unambiguous), disc levels and laterality.

Why so few condition codes: a wrong SNOMED code in a patient's record is worse than none, so a
condition gets one only where its meaning is certain; every other condition goes out as text
(FHIR ``code.text``, the SR's private 99SPINEREVIEW code). Level and laterality codes are taken
from pydicom's copy of the DICOM content mapping resource rather than typed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes

SNOMED_SYSTEM = "http://snomed.info/sct"


@dataclass(frozen=True)
class Coding:
    code: str
    display: str
    system: str = SNOMED_SYSTEM
    scheme: str = "SCT"  # its DICOM coding scheme designator


# condition key (ml.conditions) -> SNOMED CT concept. Each entry names where its id and display were
# checked; a condition missing here goes out as text. A code is never added from memory or from
# unreviewed code that merely uses it: only from a SNOMED CT release, a SNOMED browser, or a
# terminology file that maps to SNOMED CT (NLM MedGen/UMLS, HPO cross-references, DICOM PS3.16).
CONDITION_SNOMED: dict[str, Coding] = {
    # checked against a SNOMED CT release before; this time only public cross-maps that agree
    # (76107001 -> ICD-10 M48.00 "Spinal stenosis, site unspecified") were found, no browser page
    "canal_stenosis": Coding("76107001", "Spinal stenosis"),
    # checked against a SNOMED CT release before; no browser page found this time
    "spondylolisthesis": Coding("274152003", "Spondylolisthesis"),
    # HPO HP:0003304 "Spondylolysis" (a defect of the pars interarticularis), xref SNOMEDCT_US:240221008
    "pars_defect": Coding("240221008", "Spondylolysis"),
    # NCBI MedGen 75497 (UMLS C0262431, HPO HP:0002953 "Vertebral compression fracture"): SNOMED CT
    # "Compression fracture of vertebral column (42942008)"
    "compression_deformity": Coding("42942008", "Compression fracture of vertebral column"),
    # unconfirmed, so text only: foraminal_narrowing, subarticular_stenosis, disc_herniation,
    # disc_height_loss, endplate_inflammation, synovial_cyst, acute_fracture, marrow_edema,
    # epidural_lipomatosis, perineural_cyst, intradural_lesion (no public SNOMED page or file found);
    # hemangioma (DICOM PS3.16 gives 400210000 as both "Hemangioma" and "Angioma": not certain
    # enough); osseous_lesion (a *suspicious* lesion: 94222008 "Secondary malignant neoplasm of
    # bone" would state a metastasis the reader did not)
}

LATERALITY: dict[str, Coding] = {
    side: Coding(code.value, code.meaning)
    for side, code in (("left", codes.SCT.Left), ("right", codes.SCT.Right), ("bilateral", codes.SCT.Bilateral))
}

_SPINE = Coding(codes.SCT.Spine.value, codes.SCT.Spine.meaning)


def level_coding(level: str) -> Coding | None:
    """SNOMED CT of a disc level in report vocabulary ("L4-5", "C7-T1", "L5-S1"), or None."""
    level = (level or "").strip().upper()
    if "-" not in level:
        return None
    upper, lower = level.split("-", 1)
    if lower.isdigit():  # "L4-5": the lower vertebra is in the same region
        lower = upper[0] + lower
    keyword = f"{upper}{lower}Disc"  # pydicom's keyword of "L4/L5 disc"
    code = getattr(codes.SCT, keyword, None) if keyword.isalnum() else None
    return Coding(code.value, code.meaning) if code is not None else None


def spine_coding() -> Coding:
    return _SPINE
