"""Study-level labels derived from a synthetic patient's findings, in the two forms the ground
truth carries: one ternary label per condition (``labels.json``, the manifest) and the RSNA 2024
lumbar grades per level and side (``--cohort rsna``).

Separate from ``findings`` (which decides what a patient has) because these are read by
everything that needs labels without images: the study writer, the report corpus, benchmarks.
"""

from __future__ import annotations

from ml.conditions import CONDITION_KEYS
from ml.data.synthetic.findings import SEVERITIES, Finding


def labels_from_findings(findings: list[Finding]) -> dict[str, int]:
    """Study-level ternary labels: 1 if any definite finding, -1 if only uncertain ones."""
    out = {k: 0 for k in CONDITION_KEYS}
    for f in findings:
        if f.label == 1:
            out[f.condition] = 1
        elif f.label == -1 and out[f.condition] == 0:
            out[f.condition] = -1
    return out


RSNA_GRADES = ("Normal/Mild", "Moderate", "Severe")


def rsna_grades(findings: list[Finding], levels: tuple[str, ...]) -> dict[str, str]:
    """RSNA 2024 lumbar grades per level (and side) for canal, foraminal, subarticular."""
    out: dict[str, str] = {}
    key_of = {
        "canal_stenosis": "spinal_canal_stenosis",
        "foraminal_narrowing": "neural_foraminal_narrowing",
        "subarticular_stenosis": "subarticular_stenosis",
    }
    for lv in levels:
        tag = lv.lower().replace("-", "_")
        tag = tag if "_s" in tag else tag.replace("_", "_l", 1)
        out[f"spinal_canal_stenosis_{tag}"] = RSNA_GRADES[0]
        for side in ("left", "right"):
            out[f"{side}_neural_foraminal_narrowing_{tag}"] = RSNA_GRADES[0]
            out[f"{side}_subarticular_stenosis_{tag}"] = RSNA_GRADES[0]
    for f in findings:
        if f.condition not in key_of or f.label != 1:
            continue
        grade = RSNA_GRADES[SEVERITIES.index(f.severity)] if f.severity != "mild" else RSNA_GRADES[0]
        tag = f.level.lower().replace("-", "_")
        tag = tag if "_s" in tag else tag.replace("_", "_l", 1)
        if f.condition == "canal_stenosis":
            out[f"spinal_canal_stenosis_{tag}"] = grade
        else:
            sides = ("left", "right") if f.side in ("bilateral", "central", None) else (f.side,)
            for s in sides:
                out[f"{s}_{key_of[f.condition]}_{tag}"] = grade
    return out
