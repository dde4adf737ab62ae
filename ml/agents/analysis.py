"""``StudyAnalysis``: what ``analyze_study`` returns and what the review app stores.

It is the one contract between ``ml/`` and the platform, so it is plain dataclasses that
round-trip through JSON (``to_dict`` / ``from_dict``) and carry their own schema version.
Coordinates: ``xyxy`` are pixel coordinates (column, row) of the *original* DICOM image
(``Columns`` x ``Rows``), ``xyxy_norm`` the same divided by (Columns, Rows); ``patient_mm``
are the four corners in the DICOM patient coordinate system (mm), computed from
ImagePositionPatient / ImageOrientationPatient / PixelSpacing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass
class SliceRef:
    """A key slice: ``index`` is the slice's position in its series sorted along the normal;
    ``frame`` its 1-based frame number in a multi-frame object (Enhanced MR: the SOP instance
    alone does not say which slice), None for a single-frame image."""

    series_uid: str
    sop_uid: str
    index: int
    score: float
    frame: int | None = None


@dataclass
class BoxResult:
    series_uid: str
    sop_uid: str
    index: int
    xyxy: list[float]  # [x0, y0, x1, y1] pixels of the original image (column, row)
    xyxy_norm: list[float]  # [x0, y0, x1, y1] in [0, 1]
    score: float
    patient_mm: list[list[float]] | None = None  # 4 corners [x, y, z] (mm), clockwise from (x0, y0)
    frame: int | None = None  # 1-based frame in a multi-frame object, None for a single-frame image


@dataclass
class ConditionResult:
    condition: str  # a key of ml.conditions.CONDITION_KEYS
    probability: float  # calibrated
    present: bool  # probability >= threshold
    threshold: float  # the condition's operating point
    level: str = ""  # e.g. "L4-5" or a vertebra "L1"; "" when not localised
    side: str = ""  # "left" | "right" | "central" | "bilateral" | ""
    key_slices: list[SliceRef] = field(default_factory=list)  # best first
    boxes: list[BoxResult] = field(default_factory=list)


@dataclass
class SimilarCase:
    study_uid: str  # the index study's UID (or its de-identified key)
    # higher is closer: the cosine in the aligned space, or, with diagnosis calls, the log-likelihood
    # of this report's findings under the study's calls plus the scaled cosine (nats; docs/retrieval.md)
    score: float
    report: str


@dataclass
class SeriesSummary:
    series_uid: str
    sequence_class: str  # "T1" | "T2" | "other"
    plane: str | None
    route: str  # which encoder or synthesizer route embedded it
    n_slices: int
    description: str = ""


@dataclass
class AgentRun:
    """One agent family's run: timings, the version of its artifact, and its error if it failed."""

    name: str  # "embedding" | "diagnosis" | "localization" | "retrieval" | "report"
    version: str
    seconds: float
    ok: bool = True
    error: str = ""


@dataclass
class StudyAnalysis:
    study_uid: str
    pipeline_version: str
    conditions: list[ConditionResult] = field(default_factory=list)
    similar_cases: list[SimilarCase] = field(default_factory=list)
    report_text: str = ""
    report_sections: dict[str, str] = field(default_factory=dict)  # section title -> text
    series: list[SeriesSummary] = field(default_factory=list)
    agents: list[AgentRun] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"series_uid", "sop_uid", "reason"}]
    model_versions: dict[str, str] = field(default_factory=dict)  # agent family -> artifact version
    report_source: str = ""  # "report_agent" | "template" (structured fallback draft) | "" (none)
    # what the consistency check changed in the writer's draft and why: {"changes": [{action,
    # section, sentence, condition, reason, replacement}], "residual": [...], "extractor": ...}
    report_check: dict[str, Any] = field(default_factory=dict)
    # where CLINICAL HISTORY / TECHNIQUE / COMPARISON came from (DICOM attributes, priors)
    report_facts: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.agents)

    @property
    def errors(self) -> dict[str, str]:
        return {a.name: a.error for a in self.agents if not a.ok}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyAnalysis:
        data = dict(data)
        if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"StudyAnalysis schema {data['schema_version']} != {SCHEMA_VERSION}")
        conditions = [
            ConditionResult(
                **{
                    **c,
                    "key_slices": [SliceRef(**k) for k in c.get("key_slices", [])],
                    "boxes": [BoxResult(**b) for b in c.get("boxes", [])],
                }
            )
            for c in data.pop("conditions", [])
        ]
        return cls(
            conditions=conditions,
            similar_cases=[SimilarCase(**s) for s in data.pop("similar_cases", [])],
            series=[SeriesSummary(**s) for s in data.pop("series", [])],
            agents=[AgentRun(**a) for a in data.pop("agents", [])],
            **data,
        )
