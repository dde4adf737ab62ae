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


# condition key (ml.conditions) -> SNOMED CT disorder
CONDITION_SNOMED: dict[str, Coding] = {
    "canal_stenosis": Coding("76107001", "Spinal stenosis"),
    "spondylolisthesis": Coding("274152003", "Spondylolisthesis"),
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
