"""Header builders shared by the series classifier's tests: a minimal MR dataset from keyword
tags, and the three standard orientations."""

from __future__ import annotations

from pydicom.dataset import Dataset

AXIAL = (1, 0, 0, 0, 1, 0)
SAGITTAL = (0, 1, 0, 0, 0, -1)
CORONAL = (1, 0, 0, 0, 0, -1)


def mr(**tags: object) -> Dataset:
    """A minimal MR header; tags by keyword."""
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesInstanceUID = "1.2.3"
    for keyword, value in tags.items():
        setattr(ds, keyword, list(value) if isinstance(value, tuple) else value)
    return ds
