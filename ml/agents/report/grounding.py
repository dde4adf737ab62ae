"""The draft a reader sees: the writer's text, its factual sections replaced by the data's
(``facts``) and its findings checked against the agents' calls (``consistency``).

The pipeline calls ``ground_draft`` on every draft, from the Medical Report Agent or from the
structured template alike, so whatever the writer does, what reaches the reader is grounded;
``GroundedDraft.check`` records each change and why (stored in ``StudyAnalysis.report_check``
for the viewer), ``GroundedDraft.facts`` where each factual section came from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ml.agents.analysis import ConditionResult
from ml.agents.report.consistency import check_draft
from ml.agents.report.facts import SeriesFacts, StudyFacts, age_sex_phrase, clinical_history, comparison, technique
from ml.agents.report.prompt import split_sections
from ml.agents.report.sentences import render_sections
from ml.conditions import FACT_SECTIONS, REPORT_SECTIONS


@dataclass
class GroundedDraft:
    text: str
    sections: dict[str, str]
    check: dict[str, object] = field(default_factory=dict)  # changes, residual, extractor, written, seconds
    facts: dict[str, object] = field(default_factory=dict)  # the three sections, their sources, the priors


def _history_sources(facts: StudyFacts | None) -> list[str]:
    if facts is None:
        return []
    named = (
        ("ReasonForTheRequestedProcedure", facts.reason),
        ("AdditionalPatientHistory", facts.additional_history),
        ("AdmittingDiagnosesDescription", facts.admitting_diagnoses),
        ("PatientAge", facts.patient_age),
        ("PatientSex", facts.patient_sex if age_sex_phrase("", facts.patient_sex) else ""),
    )
    return [name for name, value in named if value]


def ground_draft(
    text: str,
    conditions: Sequence[ConditionResult],
    region: str | None,
    facts: StudyFacts | None = None,
    series: Sequence[SeriesFacts] = (),
    header: str = "",
    record_facts: bool = True,
) -> GroundedDraft:
    """Ground one draft. ``series`` describes the acquisition when ``facts`` has none (the
    pipeline without DICOM headers); ``header`` is a first line kept as is ("AI DRAFT ...");
    ``record_facts=False`` leaves the replacement of the factual sections out of the changes
    (the template writes placeholders there, not claims)."""
    from ml.agents.labels import extract_labels

    t0 = time.perf_counter()
    written = split_sections(text)
    order = [k for k in written if k]
    result = check_draft(written, conditions, last_section=order[-1] if order else "", region=region)
    changes = [c.to_dict() for c in result.changes]
    if written.get("", "").strip() and written[""].strip() != header.strip():
        changes.insert(
            0,
            {"action": "removed", "section": "", "sentence": written[""].strip(), "condition": "",
             "reason": "text outside the report's sections", "replacement": ""},
        )  # fmt: skip
    own = {
        "CLINICAL HISTORY": clinical_history(facts),
        "TECHNIQUE": technique(facts, region, series),
        "COMPARISON": comparison(facts),
    }
    why = {
        "CLINICAL HISTORY": "the clinical history is taken from the DICOM request attributes only",
        "TECHNIQUE": "the technique is taken from the classified series",
        "COMPARISON": "the comparison lists the patient's earlier studies in the archive",
    }
    for s in FACT_SECTIONS:
        before = written.get(s, "").strip()
        if record_facts and before and before != own[s]:
            changes.insert(
                0,
                {"action": "replaced", "section": s, "sentence": before, "condition": "", "reason": why[s],
                 "replacement": own[s]},
            )  # fmt: skip
    sections = {**own, **result.sections}
    body = render_sections(sections, REPORT_SECTIONS)
    facts_doc: dict[str, object] = {
        "clinical_history": own["CLINICAL HISTORY"],
        "history_sources": _history_sources(facts),
        "technique": own["TECHNIQUE"],
        "comparison": own["COMPARISON"],
        "priors": None if facts is None or facts.priors is None else [p.__dict__ for p in facts.priors],
    }
    check = {
        "changes": changes,
        "residual": result.residual,
        "extractor": extract_labels("").extractor,
        "written": text,  # the writer's draft as it came, for audit and the viewer's "what changed"
        "seconds": round(time.perf_counter() - t0, 4),
    }
    return GroundedDraft((header.strip() + "\n" if header.strip() else "") + body, sections, check, facts_doc)


__all__ = ["GroundedDraft", "ground_draft"]
