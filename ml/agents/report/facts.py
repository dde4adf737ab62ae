"""The factual sections of a draft (CLINICAL HISTORY, TECHNIQUE, COMPARISON), from data only.

A decoder that imitates a corpus writes the corpus's histories ("Radiculopathy; 71 F.") and
comparisons ("None."): fluent, and not about this patient. These sections are therefore never
taken from the writer: they are composed here from what the study's DICOM and the archive say,
and a fact that is not in the data stays blank with a visible placeholder for the reader.

- CLINICAL HISTORY: the request attributes a modality worklist puts into the images
  (ReasonForTheRequestedProcedure, also inside RequestAttributesSequence, AdditionalPatientHistory,
  AdmittingDiagnosesDescription) plus PatientAge and PatientSex. Nothing else.
- TECHNIQUE: the classified series (plane, weighting from ``ml.dicom.series_classifier``) and
  whether a contrast agent is recorded (ContrastBolusAgent, or a post-contrast subtype).
- COMPARISON: the same patient's earlier studies found in the archive (date, description); the
  caller searches (``priors``), "None available." when it found none.

Plain Python on ``pydicom`` datasets; the platform gathers the priors and passes them in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

NO_HISTORY = "[No clinical history provided — please add]"
NO_PRIORS = "None available."
PRIORS_NOT_SEARCHED = "[Prior studies could not be searched — please check]"

_WEIGHTING = {
    "T1": "T1-weighted",
    "T2": "T2-weighted",
    "STIR": "STIR",
    "FLAIR": "T2 FLAIR",
    "PD": "proton-density-weighted",
    "T1_POSTCONTRAST": "post-contrast T1-weighted",
    "DWI": "diffusion-weighted",
    "ADC": "ADC map",
    "GRE": "gradient-echo",
    "DIXON": "Dixon",
    "DIXON_WATER": "Dixon water",
    "DIXON_FAT": "Dixon fat",
    "DIXON_IN_PHASE": "Dixon in-phase",
    "DIXON_OPP_PHASE": "Dixon opposed-phase",
}
_NO_AGENT = {"", "NONE", "NO", "N/A", "NA", "-", "0", "UNKNOWN"}


@dataclass
class SeriesFacts:
    """One image series as the series classifier saw it."""

    series_uid: str
    sequence_class: str  # "T1" | "T2" | "other"
    plane: str = ""  # "sagittal" | "axial" | "coronal" | "oblique" | "unknown" | ""
    subtype: str = ""  # classifier subtype ("STIR", "T1_POSTCONTRAST", ...); "" when not classified
    description: str = ""
    contrast: bool | None = None  # a contrast agent recorded; None = headers not seen


@dataclass
class PriorStudy:
    """An earlier study of the same patient in the archive."""

    study_uid: str
    date: str  # YYYYMMDD
    description: str = ""
    time: str = ""


@dataclass
class StudyFacts:
    """What the data says about the request, the acquisition and the archive (no images)."""

    study_uid: str = ""
    patient_id: str = ""
    patient_age: str = ""  # DICOM AS, e.g. "073Y"
    patient_sex: str = ""  # "M" | "F" | "O" | ""
    reason: str = ""  # ReasonForTheRequestedProcedure (top level or request item)
    additional_history: str = ""  # AdditionalPatientHistory
    admitting_diagnoses: str = ""  # AdmittingDiagnosesDescription
    procedure: str = ""  # RequestedProcedureDescription, else StudyDescription
    study_date: str = ""  # YYYYMMDD
    study_time: str = ""
    series: list[SeriesFacts] = field(default_factory=list)
    priors: list[PriorStudy] | None = None  # None: the archive was not (or could not be) searched

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyFacts:
        d = dict(data)
        d["series"] = [SeriesFacts(**s) for s in d.get("series", [])]
        if d.get("priors") is not None:
            d["priors"] = [PriorStudy(**p) for p in d["priors"]]
        return cls(**d)


class RequestFacts(TypedDict):
    """The ``StudyFacts`` fields that one instance's request and patient attributes give
    (``request_facts``); typed per key so they can be passed as ``StudyFacts(**facts)``."""

    study_uid: str
    patient_id: str
    patient_age: str
    patient_sex: str
    reason: str
    additional_history: str
    admitting_diagnoses: str
    procedure: str
    study_date: str
    study_time: str


def _text(value: object) -> str:
    """One attribute's value as clean text (multi-valued LO joined with '; ')."""
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "; ".join(_text(v) for v in value if _text(v))
    return re.sub(r"\s+", " ", str(value)).strip().strip("^").strip()


def request_facts(ds: Dataset) -> RequestFacts:
    """The request and patient attributes of one instance (every series repeats them).

    The reason is read at the top level and from each RequestAttributesSequence item (a study
    scheduled as several requested procedures lists each distinct reason once).
    """
    reasons: list[str] = []
    procedures: list[str] = []
    top = _text(ds.get("ReasonForTheRequestedProcedure"))
    if top:
        reasons.append(top)
    for item in ds.get("RequestAttributesSequence", None) or []:
        for keyword, out in (
            ("ReasonForTheRequestedProcedure", reasons),
            ("RequestedProcedureDescription", procedures),
        ):
            v = _text(item.get(keyword))
            if v and v not in out:
                out.append(v)
    top_proc = _text(ds.get("RequestedProcedureDescription"))
    if top_proc and top_proc not in procedures:
        procedures.insert(0, top_proc)
    return {
        "study_uid": _text(ds.get("StudyInstanceUID")),
        "patient_id": _text(ds.get("PatientID")),
        "patient_age": _text(ds.get("PatientAge")),
        "patient_sex": _text(ds.get("PatientSex")).upper(),
        "reason": "; ".join(reasons),
        "additional_history": _text(ds.get("AdditionalPatientHistory")),
        "admitting_diagnoses": _text(ds.get("AdmittingDiagnosesDescription")),
        "procedure": "; ".join(procedures) or _text(ds.get("StudyDescription")),
        "study_date": _text(ds.get("StudyDate")),
        "study_time": _text(ds.get("StudyTime")),
    }


def _contrast(datasets: Sequence[Dataset]) -> bool:
    return any(_text(ds.get("ContrastBolusAgent")).upper() not in _NO_AGENT for ds in datasets[:3])


def study_facts_from_datasets(
    series: Mapping[str, Sequence[Dataset]], priors: Iterable[PriorStudy] | None = None
) -> StudyFacts:
    """Facts of one study from its instances (series UID -> datasets; pixels not needed).

    ``priors``: the patient's studies the archive returned (None: not searched); only those
    acquired before this study are kept, so a search that also returns this study or a later
    one is harmless.

    Each series is classified from its headers (``ml.dicom.series_classifier``), so TECHNIQUE
    names what was acquired whatever the series descriptions say.
    """
    from ml.dicom.series_classifier import classify_series

    first = next((v[0] for v in series.values() if v), None)
    facts = StudyFacts(**request_facts(first)) if first is not None else StudyFacts()
    for uid, datasets in series.items():
        if not datasets:
            continue
        c = classify_series(list(datasets))
        facts.series.append(
            SeriesFacts(
                series_uid=uid,
                sequence_class=c.sequence_class,
                plane=c.plane,
                subtype=c.subtype,
                description=_text(datasets[0].get("SeriesDescription")),
                contrast=_contrast(datasets) or c.subtype == "T1_POSTCONTRAST",
            )
        )
    if priors is not None:  # the archive's answer: keep this patient's studies acquired before this one
        facts.priors = [
            p
            for p in priors
            if p.study_uid != facts.study_uid and earlier_than(p.date, p.time, facts.study_date, facts.study_time)
        ]
    return facts


# ----- the three sections -------------------------------------------------------------------------


def age_sex_phrase(age: str, sex: str) -> str:
    """ "73-year-old female" from PatientAge "073Y" and PatientSex "F" (either may be missing)."""
    m = re.fullmatch(r"0*(\d+)([DWMY])", age.strip().upper()) if age else None
    unit = {"D": "day", "W": "week", "M": "month", "Y": "year"}
    a = f"{int(m.group(1))}-{unit[m.group(2)]}-old" if m else ""
    s = {"F": "female", "M": "male"}.get(sex.strip().upper(), "")
    return " ".join(x for x in (a, s) if x)


def _sentence(s: str) -> str:
    s = s.strip()
    return s if not s or s[-1] in ".!?" else s + "."


def clinical_history(facts: StudyFacts | None) -> str:
    """CLINICAL HISTORY from the request attributes and the patient's age and sex, nothing else.

    Without a reason, a history or an admitting diagnosis the placeholder asks the reader to add
    one; age and sex, when recorded, follow as "Patient: 73-year-old female.".
    """
    if facts is None:
        return NO_HISTORY
    parts = [_sentence(x) for x in (facts.reason, facts.additional_history) if x]
    if facts.admitting_diagnoses:
        parts.append(_sentence(f"Admitting diagnosis: {facts.admitting_diagnoses}"))
    who = age_sex_phrase(facts.patient_age, facts.patient_sex)
    if not parts:
        return NO_HISTORY + (f" Patient: {who}." if who else "")
    return " ".join(parts) + (f" {who[0].upper()}{who[1:]}." if who else "")


def _series_phrase(s: SeriesFacts) -> str:
    plane = s.plane if s.plane and s.plane not in ("unknown", "oblique") else ""
    weighting = _WEIGHTING.get(s.subtype) or {"T1": "T1-weighted", "T2": "T2-weighted"}.get(s.sequence_class, "")
    if not weighting:
        weighting = s.description or "additional"
    return " ".join(x for x in (plane, weighting) if x)


def technique(facts: StudyFacts | None, region: str | None, series: Sequence[SeriesFacts] = ()) -> str:
    """TECHNIQUE from the classified series, in acquisition order, and the contrast record.

    ``series`` stands in when there are no facts (the pipeline without DICOM headers): plane and
    class only, and nothing said about contrast (it was not seen).
    """
    items = list(facts.series) if facts is not None and facts.series else list(series)
    if not region and facts is not None:  # the requested procedure names it ("MRI LUMBAR SPINE")
        region = next((r for r in ("cervical", "thoracic", "lumbar") if r in facts.procedure.lower()), None)
    where = f"the {region} spine" if region else "the spine"
    if not items:
        return f"MRI of {where}."
    phrases: list[str] = []
    for s in items:
        p = _series_phrase(s)
        if p not in phrases:
            phrases.append(p)
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    text = f"MRI of {where}: {listed} images"
    known = [s.contrast for s in items if s.contrast is not None]
    if known and any(known):
        text += ", before and after intravenous contrast"
    elif known and len(known) == len(items):
        text += ", without intravenous contrast"
    return text + "."


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if re.fullmatch(r"\d{8}", d or "") else d or "date unknown"


def comparison(facts: StudyFacts | None) -> str:
    """COMPARISON: the patient's earlier studies (most recent first), else "None available."."""
    if facts is None or facts.priors is None:
        return NO_PRIORS if facts is None else PRIORS_NOT_SEARCHED
    if not facts.priors:
        return NO_PRIORS
    priors = sorted(facts.priors, key=lambda p: (p.date, p.time), reverse=True)
    return "; ".join(f"{p.description or 'Study'} of {_date(p.date)}" for p in priors) + "."


def earlier_than(prior_date: str, prior_time: str, date: str, time: str) -> bool:
    """Whether a study on (prior_date, prior_time) precedes one on (date, time) (YYYYMMDD, HHMMSS)."""
    if not prior_date or not date:
        return False
    if prior_date != date:
        return prior_date < date
    return bool(prior_time and time) and prior_time.split(".")[0] < time.split(".")[0]


__all__ = [
    "NO_HISTORY",
    "NO_PRIORS",
    "PRIORS_NOT_SEARCHED",
    "PriorStudy",
    "RequestFacts",
    "SeriesFacts",
    "StudyFacts",
    "age_sex_phrase",
    "clinical_history",
    "comparison",
    "earlier_than",
    "request_facts",
    "study_facts_from_datasets",
    "technique",
]
