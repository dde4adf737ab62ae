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
