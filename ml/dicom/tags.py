"""Read DICOM attributes the same way from a pydicom Dataset or from JSON metadata.

The web app classifies series from Orthanc/DICOMweb metadata without fetching pixels, while
training reads files with pydicom. ``TagView`` hides that difference so the classifier is one
set of pure functions. It also looks inside Enhanced MR functional groups, where the timing and
geometry of a multi-frame object live instead of the top level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

_HEX_TAG = re.compile(r"^([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})$")


def _unwrap(value: Any) -> Any:
    """DICOM JSON (``{"vr":..,"Value":[..]}``) and Orthanc full tags (``{"Value": ..}``) wrap values."""
    if isinstance(value, Mapping) and "Value" in value:
        return value["Value"]
    if isinstance(value, Mapping) and "vr" in value:
        return None  # DICOM JSON element present but empty
    return value


def _as_items(value: Any) -> tuple[Any, ...]:
    """Normalise a value to a tuple of items; backslash-joined strings are multi-valued."""
    value = _unwrap(value)
    if value is None:
        return ()
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace").strip("\x00 ")
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split("\\"))
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return tuple(value)
    return (value,)


def _to_float(item: Any) -> float | None:
    if isinstance(item, Mapping):  # DICOM JSON PersonName etc. are not numbers
        return None
    try:
        return float(str(item).strip())
    except (TypeError, ValueError):
        return None


class TagView:
    """Uniform, read-only access to attributes by keyword.

    Accepts a ``pydicom.Dataset``, a mapping keyed by keyword (Orthanc ``?simplify``), or a
    mapping keyed by tag (``"0008103E"`` DICOMweb JSON, ``"0008,103e"`` Orthanc full tags).
    Missing or malformed attributes read as empty; the classifier turns that into "unknown".
    """

    _source: Dataset | Mapping[str, Any]

    def __init__(self, source: Dataset | Mapping[str, Any]) -> None:
        if isinstance(source, TagView):
            source = source._source
        if not isinstance(source, Dataset | Mapping):
            raise TypeError(f"expected a pydicom Dataset or a mapping, got {type(source).__name__}")
        self._source = source
        self._by_tag: dict[int, Any] = {}
        if isinstance(source, Mapping):
            for key, value in source.items():
                match = _HEX_TAG.match(str(key))
                if match:
                    self._by_tag[int(match.group(1) + match.group(2), 16)] = value

    # -- raw access -------------------------------------------------------------------------
    def raw(self, keyword: str) -> Any:
        """The attribute's value, looking into Enhanced MR functional groups when absent."""
        source = self._source
        if isinstance(source, Dataset):
            element = source.data_element(keyword) if keyword in source else None
            if element is not None:
                return element.value
            return _functional_group_value(source, keyword)
        if keyword in source:
            return source[keyword]
        tag = tag_for_keyword(keyword)
        if tag is not None and tag in self._by_tag:
            return self._by_tag[tag]
        return None

    def private(self, group: int, offset: int, creator: str) -> Any:
        """A private element, only when its block belongs to ``creator`` (vendors reuse tags)."""
        source = self._source
        if isinstance(source, Dataset):
            try:
                return source.private_block(group, creator)[offset].value
            except (KeyError, ValueError):
                return None
        for block_number in range(0x10, 0x100):
            owner = self._by_tag.get((group << 16) | block_number)
            if owner is not None and creator.lower() in " ".join(map(str, _as_items(owner))).lower():
                return self._by_tag.get((group << 16) | (block_number << 8) | offset)
        return None

    # -- typed access -----------------------------------------------------------------------
    def text(self, keyword: str) -> str:
        """Single-line text ('' when missing); multi-valued attributes are joined by backslash."""
        items = _as_items(self.raw(keyword))
        return "\\".join(str(item) for item in items if item is not None).strip()

    def texts(self, keyword: str) -> tuple[str, ...]:
        """Upper-cased code strings such as ImageType or ScanningSequence values."""
        return tuple(str(item).strip().upper() for item in _as_items(self.raw(keyword)) if item is not None)

    def number(self, keyword: str) -> float | None:
        items = _as_items(self.raw(keyword))
        return _to_float(items[0]) if items else None

    def numbers(self, keyword: str) -> tuple[float, ...] | None:
        """All values as floats, or None when missing or any value is not a number."""
        items = _as_items(self.raw(keyword))
        floats = tuple(_to_float(item) for item in items)
        if not floats or any(value is None for value in floats):
            return None
        return tuple(value for value in floats if value is not None)


def _functional_group_value(ds: Dataset, keyword: str) -> Any:
    """Find ``keyword`` in the shared group, then in the middle frame's per-frame group.

    Only public macros are searched: vendors also copy classic attributes into private
    sequences, and those copies are not guaranteed to describe the frame.
    """
    groups: list[Dataset] = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        groups.append(per_frame[len(per_frame) // 2])
    for group in groups:
        for macro in group:
            if macro.VR != "SQ" or not macro.value or macro.tag.is_private:
                continue
            item = macro.value[0]
            if keyword in item:
                return item.data_element(keyword).value
    return None


# Patient and General Study attributes that are type 2 (must be present, may be empty) in every
# composite object. Scanners and anonymisers drop them; code that copies them into a new object
# (an SR's evidence, highdicom) then fails on a missing attribute for want of an empty one.
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def with_type2_patient_study(ds: Dataset) -> Dataset:
    """``ds`` itself when every type 2 patient/study attribute is there, else a shallow copy with
    the missing ones added empty (the source is left untouched)."""
    missing = [kw for kw in TYPE2_PATIENT_STUDY if kw not in ds]
    if not missing:
        return ds
    out = Dataset()
    out.update(ds)
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    for kw in missing:
        setattr(out, kw, "")
    return out


# patient identity attributes highdicom's SR / KOS constructors do not copy from the evidence
PATIENT_IDENTITY = ("IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence")


def copy_patient_identity(target: Dataset, source: Dataset) -> Dataset:
    """Copy the issuer of the PatientID from an image of the study into a document written into it.

    Why: a PatientID means one person only together with its issuer, and every instance of a
    study must carry the same patient module; a document without the issuer makes the archive's
    study-level answer (taken from any instance) lose it, and the study stops matching its own
    patient when priors are searched by PatientID and issuer."""
    for kw in PATIENT_IDENTITY:
        if kw in source and kw not in target:
            setattr(target, kw, source.get(kw))
    return target


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def checked_frame(
    value: object, ds: Dataset, *, what: str = "image", error: type[ValueError] = ValueError
) -> int | None:
    """A 1-based frame number of ``ds`` (``error`` saying why not, prefixed by ``what``): required
    for a multi-frame image, whose SOP instance alone names no slice (a viewer opens frame 1);
    None for a single-frame image."""
    frames = frame_count(ds)
    if value is None:
        if frames > 1:
            raise error(f"{what}: image {ds.SOPInstanceUID} has {frames} frames; say which (frame)")
        return None
    try:
        frame = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise error(f"{what}: frame {value!r} is not a number") from exc
    if not 1 <= frame <= frames:
        raise error(f"{what}: frame {frame} is not one of the {frames} frame(s) of {ds.SOPInstanceUID}")
    return frame if frames > 1 else None


def pixel_spacing(ds: Dataset, frame: int | None = None) -> list[float]:
    """(row, column) mm: the image's PixelSpacing or, for a multi-frame image, that of its frame's
    (else the shared) Pixel Measures functional group; [1, 1] when none is given."""
    if "PixelSpacing" in ds:
        return [float(v) for v in ds.PixelSpacing]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    groups = [per_frame[frame - 1]] if frame is not None and frame <= len(per_frame) else []
    for group in groups + list(ds.get("SharedFunctionalGroupsSequence") or [])[:1]:
        measures = group.get("PixelMeasuresSequence") or []
        if measures and "PixelSpacing" in measures[0]:
            return [float(v) for v in measures[0].PixelSpacing]
    return [1.0, 1.0]
