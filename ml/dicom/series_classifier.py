"""MRI series classifier: sequence class (T1 / T2 / other), subtype and plane, with reasons.

SpineFM has a T1 encoder and a T2 encoder (T2 covers STIR, FLAIR and Dixon); every other series
(post-contrast, DWI, GRE, PD, localizers, unknown) goes through the Synthesizer. Routing a series
to the wrong encoder silently degrades every agent downstream, so each decision records why.

Evidence is layered, strongest first (see docs/series-classifier.md):

1. hard signals — localizer, diffusion, angiography, contrast agent, parametric maps, Dixon;
2. vendor naming conventions in SeriesDescription / ProtocolName / SequenceName
   (``ml.dicom.patterns``), then the Enhanced MR ``AcquisitionContrast`` attribute;
3. physics — TR / TE / TI and sequence family (``ml.dicom.physics``), which also checks 2.

Pure functions over a ``pydicom.Dataset`` or a metadata mapping (``ml.dicom.tags.TagView``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydicom.dataset import Dataset

from ml.dicom import patterns as P
from ml.dicom.physics import read_physics, weighting_from_physics
from ml.dicom.plane import classify_plane
from ml.dicom.tags import TagView

DicomSource = Dataset | Mapping[str, Any]

# Which SpineFM branch a subtype feeds. PD goes to "other" (the Synthesizer): its fluid is not
# bright, so it is not what the T2 encoder was pre-trained on. FLAIR and STIR are fluid-/fat-
# suppressed T2 contrasts, so they stay T2, as in the paper.
SUBTYPE_CLASS: dict[str, str] = {
    "T1": "T1",
    "T2": "T2",
    "STIR": "T2",
    "FLAIR": "T2",
    "DIXON_WATER": "T2",
    "DIXON_FAT": "T2",
    "DIXON_IN_PHASE": "T2",
    "DIXON_OPP_PHASE": "T2",
    "DIXON": "T2",
    "PD": "other",
    "T1_POSTCONTRAST": "other",
    "DWI": "other",
    "ADC": "other",
    "GRE": "other",
    "ANGIO": "other",
    "PARAMETRIC_MAP": "other",
    "LOCALIZER": "other",
    "UNKNOWN": "other",
}
_TEXT_FIELDS = ("SeriesDescription", "ProtocolName", "SequenceName", "PulseSequenceName")
_NO_AGENT = {"", "NONE", "NO", "N/A", "NA", "-", "0", "UNKNOWN"}
_ACQUISITION_CONTRAST = {
    "T1": "T1",
    "T2": "T2",
    "PROTON_DENSITY": "PD",
    "FLUID_ATTENUATED": "FLAIR",
    "T2_STAR": "GRE",
    "FLOW_ENCODED": "ANGIO",
}
_DIXON_IMAGE_TYPES = {
    "WATER": "DIXON_WATER",
    "W": "DIXON_WATER",
    "FAT": "DIXON_FAT",
    "F": "DIXON_FAT",
    "IN_PHASE": "DIXON_IN_PHASE",
    "IN": "DIXON_IN_PHASE",
    "IP": "DIXON_IN_PHASE",
    "OUT_PHASE": "DIXON_OPP_PHASE",
    "OPP_PHASE": "DIXON_OPP_PHASE",
    "OPP": "DIXON_OPP_PHASE",
    "OP": "DIXON_OPP_PHASE",
}
_UNAMBIGUOUS_DIXON = {"DIXON", "WATER", "FAT", "IN_PHASE", "OUT_PHASE", "OPP_PHASE"}


@dataclass(frozen=True)
class SeriesClass:
    """The classifier's answer for one series (or instance).

    ``confidence`` is for the sequence decision: ~0.95 hard signal, ~0.85-0.9 name (confirmed by
    physics), ~0.7 physics alone, lower on conflicts, 0.2 unknown.
    """

    sequence_class: str  # "T1" | "T2" | "other"
    subtype: str
    plane: str  # "sagittal" | "axial" | "coronal" | "oblique" | "unknown"
    confidence: float
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        return data


@dataclass(frozen=True)
class _Decision:
    subtype: str
    confidence: float
    sequence_class: str | None = None  # overrides SUBTYPE_CLASS (T1-weighted Dixon)


def classify(source: DicomSource | TagView) -> SeriesClass:
    """Classify one instance (a Dataset, a keyword/tag mapping, or a TagView)."""
    tags = source if isinstance(source, TagView) else TagView(source)
    reasons: list[str] = []
    modality = tags.text("Modality").upper()
    if modality and modality != "MR":
        reasons.append(f"Modality {modality} is not MR → not classified")
        decision = _Decision("UNKNOWN", 0.0)
    else:
        decision = _sequence(tags, reasons)
    plane, _, plane_reasons = classify_plane(tags)
    return SeriesClass(
        sequence_class=decision.sequence_class or SUBTYPE_CLASS[decision.subtype],
        subtype=decision.subtype,
        plane=plane,
        confidence=round(decision.confidence, 2),
        reasons=tuple(reasons + plane_reasons),
    )


def classify_series(datasets: Sequence[DicomSource]) -> SeriesClass:
    """Classify a series from all its instances.

    The middle instance (by InstanceNumber) is the representative, since the first and last
    slices of a stack are the most likely to be off-anatomy or mislabelled. Every instance is
    also classified so that disagreements (a 3-plane localizer, a mixed export) are reported and
    lower the confidence instead of passing silently.
    """
    views = [TagView(d) for d in datasets]
    if not views:
        raise ValueError("classify_series needs at least one instance")
    uids = {v.text("SeriesInstanceUID") for v in views} - {""}
    if len(uids) > 1:
        raise ValueError(f"instances belong to {len(uids)} different series: {sorted(uids)}")
    ordered = sorted(views, key=lambda v: v.number("InstanceNumber") or 0.0)
    middle = len(ordered) // 2
    result = classify(ordered[middle])
    if len(ordered) == 1:
        return result
    per_instance = [classify(v) for v in ordered]
    reasons = [f"representative: instance {middle + 1} of {len(ordered)} (middle by InstanceNumber)"]
    confidence = result.confidence
    subtypes = Counter(r.subtype for r in per_instance)
    if len(subtypes) > 1:
        share = subtypes[result.subtype] / len(per_instance)
        confidence *= share
        reasons.append(f"instances disagree on subtype {dict(subtypes)} → confidence × {share:.2f}")
    plane = result.plane
    planes = Counter(r.plane for r in per_instance)
    if len(planes) > 1:
        top, count = planes.most_common(1)[0]
        if count / len(per_instance) >= 0.8:
            plane = top
            reasons.append(f"planes across instances {dict(planes)} → majority {top}")
        else:
            plane = "unknown"
            reasons.append(f"instances span several planes {dict(planes)} (multi-plane) → plane unknown")
    return SeriesClass(
        sequence_class=result.sequence_class,
        subtype=result.subtype,
        plane=plane,
        confidence=round(confidence, 2),
        reasons=tuple(reasons) + result.reasons,
    )


# -- sequence evidence ------------------------------------------------------------------------


def _texts(tags: TagView) -> list[tuple[str, str]]:
    return [(field, text) for field in _TEXT_FIELDS if (text := tags.text(field))]


def _match(table: tuple[P.Pattern, ...], texts: list[tuple[str, str]]) -> tuple[P.Pattern, str, str] | None:
    """First (pattern, field, text) hit, fields in priority order, patterns in table order."""
    for field, text in texts:
        lowered = text.lower()
        for pattern in table:
            if pattern.regex.search(lowered):
                return pattern, field, text
    return None


def _hit_reason(hit: tuple[P.Pattern, str, str]) -> str:
    pattern, field, text = hit
    return f"{field} '{text}' matches {pattern.subtype} pattern ({pattern.note})"


def _sequence(tags: TagView, reasons: list[str]) -> _Decision:
    texts = _texts(tags)
    image_type = set(tags.texts("ImageType")) | set(tags.texts("FrameType"))
    for step in (_localizer, _diffusion, _angio, _contrast, _parametric_map):
        decision = step(tags, texts, image_type, reasons)
        if decision is not None:
            return decision
    physics = read_physics(tags)
    physics_subtype, physics_reason = weighting_from_physics(physics)
    dixon = _dixon(texts, image_type, reasons)
    named = _named_weighting(tags, texts, reasons)
    if dixon is not None:
        t1 = (named is not None and named.subtype == "T1") or (named is None and physics_subtype == "T1")
        if t1:
            reasons.append("Dixon acquisition is T1-weighted → class T1")
        return _Decision(dixon, 0.9, "T1" if t1 else None)
    if named is not None:
        return _check_with_physics(named, physics_subtype, physics_reason, reasons)
    reasons.append(physics_reason)
    if physics_subtype is not None:
        return _Decision(physics_subtype, 0.7)
    if not texts:
        reasons.append("no SeriesDescription/ProtocolName/SequenceName to read")
    return _Decision("UNKNOWN", 0.2)


def _localizer(tags: TagView, texts, image_type, reasons) -> _Decision | None:
    if "LOCALIZER" in image_type:
        reasons.append("ImageType contains LOCALIZER")
        return _Decision("LOCALIZER", 0.98)
    hit = _match(P.LOCALIZER_PATTERNS, texts)
    if hit:
        reasons.append(_hit_reason(hit))
        return _Decision("LOCALIZER", 0.9)
    return None


def _b_value(tags: TagView) -> float | None:
    """b-value from the standard tag or a vendor private tag (checked against its creator)."""
    candidates = (
        tags.raw("DiffusionBValue"),
        tags.private(0x0019, 0x0C, "SIEMENS MR HEADER"),
        tags.private(0x0043, 0x39, "GEMS_PARM_01"),
        tags.private(0x2001, 0x03, "Philips Imaging DD 001"),
    )
    for raw in candidates:
        if raw is None:
            continue
        first = TagView({"v": raw}).number("v")
        if first is not None:
            return first % 1e9  # GE stores b + 1e9 on some releases
    return None


def _diffusion(tags: TagView, texts, image_type, reasons) -> _Decision | None:
    if "ADC" in image_type:
        reasons.append("ImageType contains ADC")
        return _Decision("ADC", 0.97)
    hit = _match(P.DIFFUSION_PATTERNS, texts)
    if hit and hit[0].subtype == "ADC":
        reasons.append(_hit_reason(hit))
        return _Decision("ADC", 0.92)
    if "DIFFUSION" in image_type or tags.text("AcquisitionContrast").upper() == "DIFFUSION":
        reasons.append("ImageType/AcquisitionContrast says DIFFUSION")
        return _Decision("DWI", 0.97)
    b_value = _b_value(tags)
    if b_value is not None and b_value > 0:
        reasons.append(f"diffusion b-value {b_value:g} s/mm² → DWI")
        return _Decision("DWI", 0.95)
    if hit:
        reasons.append(_hit_reason(hit))
        return _Decision("DWI", 0.9)
    return None


def _angio(tags: TagView, texts, image_type, reasons) -> _Decision | None:
    hit = _match(P.ANGIO_PATTERNS, texts)
    if hit:
        reasons.append(_hit_reason(hit))
        if "PROJECTION IMAGE" in image_type:
            reasons.append("ImageType PROJECTION IMAGE (MIP)")
        return _Decision("ANGIO", 0.9)
    return None


def _contrast(tags: TagView, texts, image_type, reasons) -> _Decision | None:
    agent = tags.text("ContrastBolusAgent")
    if agent.upper() not in _NO_AGENT:
        reasons.append(f"ContrastBolusAgent '{agent}' → post-contrast")
        return _Decision("T1_POSTCONTRAST", 0.95)
    hit = _match(P.CONTRAST_PATTERNS, texts)
    if hit and not P.NO_CONTRAST.search(hit[2].lower()):
        reasons.append(_hit_reason(hit))
        return _Decision("T1_POSTCONTRAST", 0.88)
    return None


def _parametric_map(tags: TagView, texts, image_type, reasons) -> _Decision | None:
    hit = _match(P.MAP_PATTERNS, texts)
    if hit:
        reasons.append(_hit_reason(hit))
        return _Decision("PARAMETRIC_MAP", 0.85)
    return None


def _dixon(texts, image_type: set[str], reasons: list[str]) -> str | None:
    hit = _match(P.DIXON_PATTERNS, texts)
    if hit is None and not (image_type & _UNAMBIGUOUS_DIXON):
        return None
    reasons.append(_hit_reason(hit) if hit else f"ImageType {sorted(image_type)} marks a Dixon image")
    for value in sorted(image_type):
        if value in _DIXON_IMAGE_TYPES:
            reasons.append(f"ImageType value {value} → {_DIXON_IMAGE_TYPES[value]}")
            return _DIXON_IMAGE_TYPES[value]
    for field, text in texts[:2]:  # components are named in the description, not the sequence
        for pattern in P.DIXON_COMPONENTS:
            if pattern.regex.search(text.lower()):
                reasons.append(f"{field} '{text}' names the {pattern.note}")
                return pattern.subtype
    reasons.append("Dixon image with no component named")
    return "DIXON"


def _named_weighting(tags: TagView, texts, reasons: list[str]) -> _Decision | None:
    hit = _match(P.WEIGHTING_PATTERNS, texts)
    if hit:
        reasons.append(_hit_reason(hit))
        return _Decision(hit[0].subtype, 0.85)
    contrast = tags.text("AcquisitionContrast").upper()
    if contrast in _ACQUISITION_CONTRAST:
        subtype = _ACQUISITION_CONTRAST[contrast]
        reasons.append(f"Enhanced MR AcquisitionContrast {contrast} → {subtype}")
        return _Decision(subtype, 0.85)
    return None


def _check_with_physics(named: _Decision, physics: str | None, physics_reason: str, reasons) -> _Decision:
    """Names usually win (a T1 TSE may use TR 700 or 900), but physics confirms or flags them."""
    if physics is None:
        return named
    if SUBTYPE_CLASS[physics] == SUBTYPE_CLASS[named.subtype] and physics != "GRE":
        reasons.append(f"physics agrees: {physics_reason}")
        return _Decision(named.subtype, 0.92)
    if physics == "GRE" and named.subtype in {"T1", "GRE"}:
        reasons.append(f"physics compatible: {physics_reason}")
        return named
    reasons.append(f"physics disagrees ({physics_reason}); the name wins")
    return _Decision(named.subtype, 0.6)
