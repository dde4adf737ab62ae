"""Imaging plane from ImageOrientationPatient, with the series description as a fallback.

The slice normal (row × column direction cosines) points along the patient axis the slices are
stacked on: x (left-right) → sagittal, y (anterior-posterior) → coronal, z (head-foot) → axial.
Spine axials are routinely angled along a disc (15-30°), so a plane keeps its name up to
``OBLIQUE_COS`` (≈37° tilt); beyond that no axis dominates and the series is "oblique".
"""

from __future__ import annotations

import math
import re

from ml.dicom.patterns import B, E
from ml.dicom.tags import TagView

OBLIQUE_COS = 0.8  # |normal component| needed to call a plane: cos(36.9°)
_AXIS_PLANE = {0: "sagittal", 1: "coronal", 2: "axial"}
_AXIS_NAME = "xyz"
_DESCRIPTION_PLANES = (
    (re.compile(rf"{B}(sag|sagittal|sagital)"), "sagittal"),
    (re.compile(rf"{B}(ax|axial|tra|trans|transverse|transversal)(?![a-z])"), "axial"),
    (re.compile(rf"{B}(cor|coronal){E}|{B}cor(?![a-z])"), "coronal"),
)


def slice_normal(iop: tuple[float, ...]) -> tuple[float, float, float] | None:
    """Unit normal of the slice plane, or None if IOP is not two usable direction cosines."""
    if len(iop) != 6:
        return None
    rx, ry, rz, cx, cy, cz = iop
    n = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    length = math.sqrt(sum(c * c for c in n))
    if length < 1e-3:  # row and column parallel: broken geometry
        return None
    return (n[0] / length, n[1] / length, n[2] / length)


def plane_from_orientation(iop: tuple[float, ...]) -> tuple[str, str] | None:
    """(plane, reason) from IOP, or None when IOP is unusable."""
    normal = slice_normal(iop)
    if normal is None:
        return None
    magnitudes = [abs(c) for c in normal]
    axis = max(range(3), key=magnitudes.__getitem__)
    tilt = math.degrees(math.acos(min(1.0, magnitudes[axis])))
    shown = ", ".join(f"{round(c, 2) + 0.0:.2f}" for c in normal)
    if magnitudes[axis] < OBLIQUE_COS:
        return (
            "oblique",
            f"IOP normal ({shown}) is {tilt:.0f}° off the nearest axis ({_AXIS_NAME[axis]}) → oblique",
        )
    plane = _AXIS_PLANE[axis]
    return plane, f"IOP normal ({shown}) along {_AXIS_NAME[axis]} (tilt {tilt:.0f}°) → {plane}"


def plane_from_description(text: str) -> str | None:
    """Plane named in a description ('SAG T2', 't1_tse_tra', 'AX'), or None."""
    lowered = text.lower()
    for regex, plane in _DESCRIPTION_PLANES:
        if regex.search(lowered):
            return plane
    return None


def classify_plane(tags: TagView) -> tuple[str, float, list[str]]:
    """(plane, confidence, reasons): geometry first, description words second."""
    reasons: list[str] = []
    description = " ".join(t for t in (tags.text("SeriesDescription"), tags.text("ProtocolName")) if t)
    named = plane_from_description(description)
    iop = tags.numbers("ImageOrientationPatient")
    from_iop = plane_from_orientation(iop) if iop is not None else None
    if from_iop is not None:
        plane, reason = from_iop
        reasons.append(reason)
        if named is not None and named != plane and plane != "oblique":
            reasons.append(f"description says {named} but geometry says {plane}: geometry wins")
        return plane, 0.95, reasons
    reasons.append("no usable ImageOrientationPatient" if iop is None else f"malformed IOP {iop}")
    if named is not None:
        reasons.append(f"description '{description}' names the {named} plane")
        return named, 0.7, reasons
    reasons.append("no plane word in the description → plane unknown")
    return "unknown", 0.0, reasons
