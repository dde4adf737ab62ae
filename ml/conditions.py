"""The 17 spine MRI conditions of SpineReview (docs/paper.md).

Keys are stable identifiers: they appear in DICOM SR, the database, exports and model
heads, so they must never be renamed. Order is the canonical column order of every
17-way tensor (diagnosis logits, label vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Label(IntEnum):
    """Ternary label of a condition in a report (paper convention)."""

    UNCERTAIN = -1  # hedged or borderline: excluded from training and AUROC
    ABSENT = 0
    PRESENT = 1


@dataclass(frozen=True)
class Condition:
    key: str
    name: str
    category: str


CONDITIONS: tuple[Condition, ...] = (
    Condition("canal_stenosis", "Spinal canal stenosis", "Canal / foraminal narrowing"),
    Condition("foraminal_narrowing", "Neural foraminal narrowing", "Canal / foraminal narrowing"),
    Condition("subarticular_stenosis", "Subarticular (lateral recess) stenosis", "Canal / foraminal narrowing"),
    Condition("disc_herniation", "Disc herniation (protrusion/extrusion)", "Degenerative / structural"),
    Condition("disc_height_loss", "Disc height loss / degeneration", "Degenerative / structural"),
    Condition("endplate_inflammation", "Modic type 1 / inflammatory endplate change", "Degenerative / structural"),
    Condition("synovial_cyst", "Facet synovial cyst", "Degenerative / structural"),
    Condition("spondylolisthesis", "Spondylolisthesis", "Alignment"),
    Condition("pars_defect", "Pars interarticularis defect", "Alignment"),
    Condition("compression_deformity", "Vertebral compression deformity", "Trauma / compression"),
    Condition("acute_fracture", "Acute vertebral fracture", "Trauma / compression"),
    Condition("marrow_edema", "Bone marrow edema", "Trauma / compression"),
    Condition("hemangioma", "Vertebral hemangioma", "Lesion or mass"),
    Condition("osseous_lesion", "Suspicious osseous lesion (e.g. metastasis)", "Lesion or mass"),
    Condition("epidural_lipomatosis", "Epidural lipomatosis", "Lesion or mass"),
    Condition("perineural_cyst", "Perineural (Tarlov) cyst", "Lesion or mass"),
    Condition("intradural_lesion", "Intradural lesion (intramedullary or extramedullary)", "Lesion or mass"),
)

CONDITION_KEYS: tuple[str, ...] = tuple(c.key for c in CONDITIONS)
BY_KEY: dict[str, Condition] = {c.key: c for c in CONDITIONS}

# Clinical priority: the order in which a report's IMPRESSION lists findings (urgent first, then
# the degenerative cascade, incidental last). The report writer and the report agent's prompt
# share it, so "likely" findings reach the decoder in the order it will write them.
IMPRESSION_ORDER: tuple[str, ...] = (
    "acute_fracture",
    "osseous_lesion",
    "intradural_lesion",
    "disc_herniation",
    "canal_stenosis",
    "subarticular_stenosis",
    "foraminal_narrowing",
    "spondylolisthesis",
    "pars_defect",
    "compression_deformity",
    "marrow_edema",
    "endplate_inflammation",
    "synovial_cyst",
    "epidural_lipomatosis",
    "disc_height_loss",
    "hemangioma",
    "perineural_cyst",
)
assert sorted(IMPRESSION_ORDER) == sorted(CONDITION_KEYS)

REGIONS: tuple[str, ...] = ("cervical", "thoracic", "lumbar", "sacral")

# Disc levels per region, cranial to caudal (report and ground-truth vocabulary).
DISC_LEVELS: dict[str, tuple[str, ...]] = {
    "cervical": ("C2-3", "C3-4", "C4-5", "C5-6", "C6-7", "C7-T1"),
    "thoracic": (*(f"T{i}-{i + 1}" for i in range(1, 12)), "T12-L1"),
    "lumbar": ("L1-2", "L2-3", "L3-4", "L4-5", "L5-S1"),
}


def condition(key: str) -> Condition:
    """Look a condition up by key, with a clear error for unknown keys."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown condition {key!r}; known: {', '.join(CONDITION_KEYS)}") from None


# Section titles of a spine MRI report, in order (docs/paper.md). The template draft, the Medical
# Report Agent's prompt and the section-aware tools share them.
REPORT_SECTIONS: tuple[str, ...] = (
    "CLINICAL HISTORY",
    "TECHNIQUE",
    "COMPARISON",
    "ALIGNMENT",
    "VERTEBRAL BODIES/MARROW",
    "DISCS",
    "SPINAL CANAL",
    "NEURAL FORAMINA",
    "CORD/CONUS/CAUDA EQUINA",
    "PARASPINAL/OTHER",
    "IMPRESSION",
)
# The first three are facts of the request, the acquisition and the archive: grounding writes them
# from the DICOM data; the rest say what the images show: the Medical Report Agent writes them and
# grounding checks them against the agents' calls.
FACT_SECTIONS: tuple[str, ...] = REPORT_SECTIONS[:3]
WRITER_SECTIONS: tuple[str, ...] = REPORT_SECTIONS[3:]
