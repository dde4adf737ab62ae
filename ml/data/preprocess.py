"""DICOM slice preprocessing: modality rescale, robust per-series window, pad to square, resize.

The paper rendered slices to PNG; we read DICOM directly. MR intensities have no physical unit
and differ by vendor, coil and sequence, so a *per-series* robust percentile window (not a fixed
window, not per slice) keeps the relative contrast between slices of a series intact while
making different scanners comparable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class PreprocessConfig:
    size: int = 224  # output side (the preset's img_size)
    p_low: float = 0.5  # percentile mapped to 0
    p_high: float = 99.5  # percentile mapped to 1
    max_sample: int = 2_000_000  # voxels sampled for the percentiles (speed on long series)

    def key(self) -> str:
        """Stable short hash of the parameters, part of every cache key."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def to_float(ds: Dataset) -> np.ndarray:
    """Stored pixels -> modality values (RescaleSlope/Intercept applied), float32 [H, W]."""
    arr = ds.pixel_array.astype(np.float32)
    if arr.ndim == 3:  # multi-frame objects are split by the loader; keep the first frame here
        arr = arr[0]
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return arr * slope + intercept


def slice_position(ds: Dataset) -> float:
    """Position along the slice normal (falls back to InstanceNumber)."""
    ipp = getattr(ds, "ImagePositionPatient", None)
    iop = getattr(ds, "ImageOrientationPatient", None)
    if ipp is not None and iop is not None and len(iop) == 6:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        return float(np.dot(normal, np.asarray(ipp, float)))
    return float(getattr(ds, "InstanceNumber", 0) or 0)


def sort_slices(datasets: Sequence[Dataset]) -> list[Dataset]:
    return sorted(datasets, key=slice_position)


def robust_window(arrays: Sequence[np.ndarray], p_low: float, p_high: float, max_sample: int) -> tuple:
    """(lo, hi) percentiles over all voxels of a series, subsampled deterministically."""
    flat = np.concatenate([a.ravel() for a in arrays])
    if flat.size > max_sample:
        flat = flat[:: int(np.ceil(flat.size / max_sample))]
    lo, hi = np.percentile(flat, [p_low, p_high])
    if hi <= lo:  # constant image
        hi = lo + 1.0
    return float(lo), float(hi)


def apply_window(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def pad_to_square(arr: np.ndarray) -> np.ndarray:
    """Centre-pad [H, W] with zeros (background) to [S, S], S = max(H, W)."""
    h, w = arr.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    out = np.zeros((s, s), dtype=arr.dtype)
    out[top : top + h, left : left + w] = arr
    return out


def resize(arr: np.ndarray, size: int) -> np.ndarray:
    if arr.shape == (size, size):
        return arr
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def preprocess_series(datasets: Sequence[Dataset], cfg: PreprocessConfig) -> np.ndarray:
    """Slices of one series (any order) -> float32 [S, size, size] in [0, 1], sorted along the normal."""
    ordered = sort_slices(datasets)
    raw = [to_float(ds) for ds in ordered]
    lo, hi = robust_window(raw, cfg.p_low, cfg.p_high, cfg.max_sample)
    return np.stack([resize(pad_to_square(apply_window(a, lo, hi)), cfg.size) for a in raw])


# -- geometry: preprocessed slice <-> original pixels <-> patient mm ----------------------------------


@dataclass
class SeriesGeometry:
    """What it takes to map a box on a preprocessed slice back to the original DICOM image and to
    the patient coordinate system, so that boxes found by the agents can be drawn in the viewer
    (pixels) and written into a DICOM SR (patient mm).

    Pixel coordinates follow the DICOM SCOORD convention: (0, 0) is the top-left *corner* of the
    top-left pixel, so pixel (column c, row r) covers [c, c+1) x [r, r+1) and its centre is
    (c + 0.5, r + 0.5). ``ImagePositionPatient`` is the centre of the first pixel.
    """

    rows: int  # original Rows
    columns: int  # original Columns
    size: int  # side of the preprocessed (padded, resized) square slice
    positions: list[list[float]] | None = None  # [S][3] ImagePositionPatient per sorted slice (mm)
    # [S][6] ImageOrientationPatient per sorted slice: row cosines (3), column cosines (3). Per
    # slice because axial stacks are often planned per disc, each block with its own tilt.
    orientations: list[list[float]] | None = None
    spacing: list[float] | None = None  # PixelSpacing: [between rows (dy), between columns (dx)] (mm)

    @property
    def side(self) -> int:
        return max(self.rows, self.columns)

    @property
    def offset(self) -> tuple[int, int]:
        """(left, top) zero padding added by ``pad_to_square`` (original pixels)."""
        s = self.side
        return (s - self.columns) // 2, (s - self.rows) // 2

    def to_original(self, xyxy: Sequence[float]) -> list[float]:
        """Box [x0, y0, x1, y1] in preprocessed pixels -> original pixels (undo resize and pad),
        clipped to the image."""
        scale = self.side / self.size
        left, top = self.offset
        x0, y0, x1, y1 = (float(v) * scale for v in xyxy)
        return [
            float(np.clip(x0 - left, 0, self.columns)),
            float(np.clip(y0 - top, 0, self.rows)),
            float(np.clip(x1 - left, 0, self.columns)),
            float(np.clip(y1 - top, 0, self.rows)),
        ]

    def to_preprocessed(self, xyxy: Sequence[float]) -> list[float]:
        """Box in original pixels -> preprocessed pixels (apply pad and resize)."""
        scale = self.size / self.side
        left, top = self.offset
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        return [(x0 + left) * scale, (y0 + top) * scale, (x1 + left) * scale, (y1 + top) * scale]

    def normalise(self, xyxy: Sequence[float]) -> list[float]:
        """Original pixels -> [0, 1] by (Columns, Rows) (the generator's ``box_norm``)."""
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        return [x0 / self.columns, y0 / self.rows, x1 / self.columns, y1 / self.rows]

    def pixel_to_patient(self, index: int, x: float, y: float) -> list[float] | None:
        """Continuous original pixel coordinate (x = column, y = row; SCOORD convention) on sorted
        slice ``index`` -> [x, y, z] patient mm; None without the geometry tags."""
        if self.positions is None or self.orientations is None or self.spacing is None:
            return None
        ipp = np.asarray(self.positions[index], float)
        iop = self.orientations[index]
        row_dir = np.asarray(iop[:3], float)  # direction of increasing column
        col_dir = np.asarray(iop[3:], float)  # direction of increasing row
        dy, dx = (float(v) for v in self.spacing)
        p = ipp + (x - 0.5) * dx * row_dir + (y - 0.5) * dy * col_dir
        return [float(v) for v in p]

    def plane_distance(self, index: int, point: np.ndarray | Sequence[float]) -> float | None:
        """Distance (mm) from a patient-space ``point`` [x, y, z] to the plane of sorted slice
        ``index``; None without the geometry tags."""
        if self.positions is None or self.orientations is None:
            return None
        iop = np.asarray(self.orientations[index], float)
        normal = np.cross(iop[:3], iop[3:])
        return abs(float((np.asarray(point, float) - np.asarray(self.positions[index], float)) @ normal))

    def box_to_patient(self, index: int, xyxy: Sequence[float]) -> list[list[float]] | None:
        """Four corners of an original-pixel box in patient mm, clockwise from (x0, y0)."""
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        corners = [self.pixel_to_patient(index, x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        return None if any(c is None for c in corners) else corners  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return asdict(self)


def series_geometry(ordered: Sequence[Dataset], size: int) -> SeriesGeometry:
    """Geometry of a series whose instances are already sorted (``sort_slices``). The patient
    part is left out (None) when any slice lacks ImagePositionPatient, ImageOrientationPatient or
    PixelSpacing: pixel boxes still work, patient mm do not."""
    first = ordered[0]
    rows, cols = int(first.Rows), int(first.Columns)
    spacing = getattr(first, "PixelSpacing", None)
    positions = [getattr(d, "ImagePositionPatient", None) for d in ordered]
    iops = [getattr(d, "ImageOrientationPatient", None) for d in ordered]
    complete = (
        spacing is not None
        and all(p is not None and len(p) == 3 for p in positions)
        and all(o is not None and len(o) == 6 for o in iops)
    )
    return SeriesGeometry(
        rows=rows,
        columns=cols,
        size=size,
        positions=[[float(v) for v in p] for p in positions] if complete else None,  # type: ignore[union-attr]
        orientations=[[float(v) for v in o] for o in iops] if complete else None,  # type: ignore[union-attr]
        spacing=[float(v) for v in spacing] if complete else None,  # type: ignore[union-attr]
    )
