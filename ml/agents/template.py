"""A structured draft from the other agents' outputs, used when the Medical Report Agent is
disabled, missing or fails: every study still gets a draft the radiologist can edit.

Sections and their order are the report format in docs/paper.md (the same titles the Medical
Report Agent writes). Each present condition goes to its section with level, side and the
calibrated probability; sections without a finding say so; the IMPRESSION numbers the present
conditions, most probable first.
"""

from __future__ import annotations

from ml.agents.analysis import ConditionResult
from ml.conditions import BY_KEY, DISC_LEVELS, REPORT_SECTIONS

SECTIONS = REPORT_SECTIONS

SECTION_OF = {
    "spondylolisthesis": "ALIGNMENT",
    "pars_defect": "ALIGNMENT",
    "compression_deformity": "VERTEBRAL BODIES/MARROW",
    "acute_fracture": "VERTEBRAL BODIES/MARROW",
    "marrow_edema": "VERTEBRAL BODIES/MARROW",
    "hemangioma": "VERTEBRAL BODIES/MARROW",
    "osseous_lesion": "VERTEBRAL BODIES/MARROW",
    "endplate_inflammation": "VERTEBRAL BODIES/MARROW",
    "disc_herniation": "DISCS",
    "disc_height_loss": "DISCS",
    "canal_stenosis": "SPINAL CANAL",
    "subarticular_stenosis": "SPINAL CANAL",
    "epidural_lipomatosis": "SPINAL CANAL",
    "foraminal_narrowing": "NEURAL FORAMINA",
    "synovial_cyst": "NEURAL FORAMINA",
    "intradural_lesion": "CORD/CONUS/CAUDA EQUINA",
    "perineural_cyst": "PARASPINAL/OTHER",
}

NORMAL = {
    "ALIGNMENT": "No listhesis detected.",
    "VERTEBRAL BODIES/MARROW": "No fracture, marrow edema or suspicious lesion detected.",
    "DISCS": "No disc herniation or height loss detected.",
    "SPINAL CANAL": "No canal stenosis detected.",
    "NEURAL FORAMINA": "No foraminal narrowing detected.",
    "CORD/CONUS/CAUDA EQUINA": "No intradural lesion detected.",
    "PARASPINAL/OTHER": "No other finding detected.",
}


def _phrase(c: ConditionResult) -> str:
    """One finding as a sentence, e.g. "Disc herniation (...) at L4-5, left (AI probability 0.91)."."""
    where = f" at {c.level}" if c.level else ""
    side = f", {c.side}" if c.side and c.side != "central" else ""
    return f"{BY_KEY[c.condition].name}{where}{side} (AI probability {c.probability:.2f})."


def template_report(
    conditions: list[ConditionResult], region: str | None = None, technique: str = "", history: str = ""
) -> tuple[str, dict[str, str]]:
    """(text, sections) of a structured draft from the agents' condition results."""
    present = sorted((c for c in conditions if c.present), key=lambda c: -c.probability)
    body: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for c in present:
        body[SECTION_OF.get(c.condition, "PARASPINAL/OTHER")].append(_phrase(c))
    sections: dict[str, str] = {
        "CLINICAL HISTORY": history or "Not provided.",
        "TECHNIQUE": technique or "MRI of the spine.",
        "COMPARISON": "None.",
    }
    for s in SECTIONS[3:-1]:
        lines = body[s]
        if s == "DISCS" and region in DISC_LEVELS and not lines:
            lines = [f"{lv}: No significant abnormality detected." for lv in DISC_LEVELS[region]]
        sections[s] = " ".join(lines) if lines else NORMAL[s]
    if present:
        sections["IMPRESSION"] = "\n".join(f"{i}. {_phrase(c)}" for i, c in enumerate(present, 1))
    elif conditions:
        sections["IMPRESSION"] = "1. No abnormality detected by the AI agents."
    else:
        sections["IMPRESSION"] = "1. AI diagnosis unavailable; please report from the images."
    text = "\n".join(f"{s}: {sections[s]}" if "\n" not in sections[s] else f"{s}:\n{sections[s]}" for s in SECTIONS)
    return "AI DRAFT (structured template; not reviewed)\n" + text, sections
