"""Is this study a spine MRI the drafting pipeline can read? Decided from DICOM headers alone.

Why: the pipeline drafts a spine report for whatever it is given. A brain MR, a localizer-only
exam, a single slice or a CT would get a confident lumbar-spine draft, which is worse than no
draft. So before any pixel work the study is checked, in this order, and the first failing
check is the reason shown in the worklist:

1. modality: some image series must be MR ("not MR: CT"); other modalities are *not applicable*;
2. usable series: localizers / scouts / pilots, diffusion, mosaics, projections (MIP) and
   series of fewer than ``MIN_SLICES`` slices are not diagnostic stacks ("localizer only",
   "diffusion only", "single image");
3. anatomy: BodyPartExamined, StudyDescription, Series/ProtocolName words. A spine word makes
   the region (cervical / thoracic / lumbar); a word for another body part and no spine word
   refuses it ("not a spine MRI: brain");
4. sequences: a sagittal T2-weighted stack (T2, STIR, Dixon) is what the model reads first; without
   one the study is refused ("no sagittal T2"). Sagittal T1 and axial T2 are wanted too; when
   missing, the study is drafted and the missing ones are named (``missing``).

An admin can force a draft of a refused study; the decision is then kept with the draft.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from pydicom.dataset import Dataset

from ml.dicom.decode import frame_headers, mosaic_count, number_of_frames

IN_SCOPE = "in_scope"
OUT_OF_SCOPE = "out_of_scope"
NOT_APPLICABLE = "not_applicable"

MIN_SLICES = 3  # a stack: a single slice or a pair is no series to read a spine from
NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "SEG", "DOC", "RWV", "REG", "RTSTRUCT", "RTPLAN"})

_SPINE = {
    "cervical": r"C[- ]?SPINE|CSPINE|CERVICAL|HWS|C[- ]?WS",
    "thoracic": r"T[- ]?SPINE|TSPINE|THORACIC SPINE|DORSAL SPINE|BWS",
    "lumbar": r"L[- ]?SPINE|LSPINE|LUMBAR|LUMBOSACRAL|LWS|SACRUM|SACRAL|SSPINE",
    "spine": r"SPINE|SPINAL|WHOLE ?SPINE|WIRBELS[AÄ]ULE|COLUMNA|RACHIS|MYELO",
}
_OTHER = {
    "brain": r"BRAIN|HEAD|SKULL|CEREBR\w*|CRAN\w*|NEURO|PITUITARY|SELLA|IAC|ORBITS?|FLAIR BRAIN|STROKE",
    "head and neck vessels": r"CAROTIDS?|CIRCLE OF WILLIS",
    "knee": r"KNEE",
    "shoulder": r"SHOULDER",
    "hip": r"HIPS?",
    "ankle or foot": r"ANKLE|FOOT|FEET",
    "wrist or hand": r"WRIST|HAND|FINGER",
    "elbow": r"ELBOW",
    "abdomen": r"ABDOMEN|ABDO|LIVER|KIDNEYS?|RENAL|PANCREAS|MRCP",
    "pelvis": r"PELVIS|PROSTATE|UTERUS|RECTUM",
    "breast": r"BREAST|MAMMA",
    "heart": r"HEART|CARDIAC|CARDIO",
    "chest": r"CHEST|THORAX|LUNG",
}
_LOCALIZER = re.compile(r"LOCALI[SZ]ER|SCOUT|PILOT|SURVEY|3[- ]?PLANE|TRI[- ]?PLANE|\bLOC\b|PLANSCAN|AAHEAD", re.I)
_DIFFUSION = re.compile(r"\bDWI\b|\bDTI\b|DIFFUSION|\bADC\b|TRACEW|\bEP_B\d|\bB\d{3,4}\b", re.I)


def _words(text: str) -> str:
    return " " + re.sub(r"[^A-ZÄÖÜ0-9]+", " ", text.upper()) + " "


def _match(patterns: Mapping[str, str], text: str) -> list[str]:
    return [name for name, pattern in patterns.items() if re.search(rf"(?<![A-Z0-9])(?:{pattern})(?![A-Z0-9])", text)]


@dataclass
class SeriesScope:
    series_uid: str
    description: str
    slices: int
    role: str  # "stack" | "localizer" | "diffusion" | "mosaic" | "projection" | "too few slices"
    sequence_class: str = ""
    plane: str = ""

    @property
    def label(self) -> str:
        return f"{self.plane} {self.sequence_class}".strip() or self.role


@dataclass
class ScopeDecision:
    """What the scope check found; ``verdict`` decides whether the study is drafted."""

    verdict: str  # IN_SCOPE | OUT_OF_SCOPE | NOT_APPLICABLE
    reason: str  # "" when in scope; else the worklist text ("not a spine MRI: brain", ...)
    region: str | None = None  # "cervical" | "thoracic" | "lumbar" | "spine" (region not stated)
    sequences: list[str] = field(default_factory=list)  # usable stacks, e.g. "sagittal T2"
    missing: list[str] = field(default_factory=list)  # wanted sequences not found (drafted anyway)
    series: list[SeriesScope] = field(default_factory=list)

    @property
    def draftable(self) -> bool:
        return self.verdict == IN_SCOPE

    def to_dict(self) -> dict:
        return asdict(self)


def _role(datasets: Sequence[Dataset]) -> tuple[str, int]:
    first = datasets[0]
    slices = sum(number_of_frames(d) for d in datasets)
    image_type = " ".join(str(v) for v in (getattr(first, "ImageType", None) or [])).upper()
    text = " ".join(str(getattr(first, kw, "") or "") for kw in ("SeriesDescription", "ProtocolName", "SequenceName"))
    if "LOCALIZER" in image_type or _LOCALIZER.search(text):
        return "localizer", slices
    if any(mosaic_count(d) for d in datasets):
        return "mosaic", slices
    if "DIFFUSION" in image_type or _DIFFUSION.search(text):
        return "diffusion", slices
    if "PROJECTION IMAGE" in image_type or "MIP" in image_type.split():
        return "projection", slices
    if slices < MIN_SLICES:
        return "too few slices", slices
    return "stack", slices


def _classify(datasets: Sequence[Dataset]) -> tuple[str, str]:
    from ml.dicom.series_classifier import classify_series

    try:
        result = classify_series(datasets)
    except Exception:  # odd headers: no class, which the sequence check then reports
        return "", "unknown"
    plane = result.plane
    if plane in ("unknown", "", None):
        plane = _plane_of_frames(datasets[0])
    return result.sequence_class, plane


def _plane_of_frames(ds: Dataset) -> str:
    from ml.dicom.plane import plane_from_orientation

    iop = getattr(frame_headers(ds)[0][0], "ImageOrientationPatient", None)
    found = plane_from_orientation(tuple(float(v) for v in iop)) if iop is not None and len(iop) == 6 else None
    return found[0] if found else "unknown"


def check_scope(series: Mapping[str, Sequence[Dataset]]) -> ScopeDecision:
    """Decide from the headers of a study's series (keyed by Series Instance UID; datasets with
    or without pixels) whether it is a spine MRI the pipeline can draft."""
    image = {uid: ds for uid, ds in series.items() if ds and _modality(ds[0]) not in NON_IMAGE_MODALITIES}
    modalities = sorted({_modality(ds[0]) for ds in image.values()})
    if "MR" not in modalities:
        return ScopeDecision(NOT_APPLICABLE, f"not MR: {', '.join(modalities) or 'no images'}")
    mr = {uid: ds for uid, ds in image.items() if _modality(ds[0]) == "MR"}

    found: list[SeriesScope] = []
    for uid, datasets in mr.items():
        role, slices = _role(datasets)
        entry = SeriesScope(uid, str(getattr(datasets[0], "SeriesDescription", "") or ""), slices, role)
        if role == "stack":
            entry.sequence_class, entry.plane = _classify(datasets)
        found.append(entry)
    stacks = [s for s in found if s.role == "stack"]
    if not stacks:
        roles = {s.role for s in found}
        if roles == {"localizer"}:
            reason = "localizer only"
        elif roles <= {"diffusion", "mosaic"}:
            reason = "diffusion only" if "diffusion" in roles else "Siemens mosaic only (not unpacked)"
        elif roles == {"too few slices"}:
            n = max(s.slices for s in found)
            reason = f"single image: {n} slice{'s' if n != 1 else ''}, too few for a spine series"
        else:
            reason = "no diagnostic series: " + ", ".join(sorted(roles))
        return ScopeDecision(OUT_OF_SCOPE, reason, series=found)
    study_text = _words(" ".join(
        str(getattr(d[0], kw, "") or "")
        for d in mr.values()
        for kw in ("BodyPartExamined", "StudyDescription", "RequestedProcedureDescription", "SeriesDescription",
                   "ProtocolName")
    ))  # fmt: skip
    spine = _match(_SPINE, study_text)
    other = _match(_OTHER, study_text)
    region = next((r for r in ("cervical", "thoracic", "lumbar") if r in spine), "spine" if spine else None)
    if not spine and other:
        return ScopeDecision(OUT_OF_SCOPE, f"not a spine MRI: {other[0]}", series=found)

    sequences = sorted({s.label for s in stacks})
    have = {(s.plane, s.sequence_class) for s in stacks}
    if ("sagittal", "T2") not in have:
        return ScopeDecision(OUT_OF_SCOPE, f"no sagittal T2 (has: {', '.join(sequences)})", region, sequences,
                             ["sagittal T2"], found)  # fmt: skip
    missing = [f"{p} {c}" for p, c in (("sagittal", "T1"), ("axial", "T2")) if (p, c) not in have]
    return ScopeDecision(IN_SCOPE, "", region or "spine", sequences, missing, found)


def _modality(ds: Dataset) -> str:
    return str(getattr(ds, "Modality", "") or "").upper() or "unknown"
