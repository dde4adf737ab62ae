"""Core data types of ``ml/``: a preprocessed study and its series, and the label vector.

Most of ``ml/`` (agents, heads, evaluation) only passes these around, so this module imports
numpy and the condition table and nothing heavier: no torch, no pydicom. Loading studies is
``ml.data.loader`` (manifest studies) or ``ml.data.dicom_adapter`` (fetched DICOM); the torch
datasets are ``ml.data.datasets``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ml.conditions import CONDITION_KEYS

if TYPE_CHECKING:
    from ml.data.preprocess import SeriesGeometry

SEQUENCE_CLASSES = ("T1", "T2", "other")


@dataclass
class SeriesData:
    series_uid: str
    sequence_class: str  # "T1" | "T2" | "other"
    pixels: np.ndarray  # [S, H, W] float32 in [0, 1], sorted along the slice normal
    plane: str | None = None
    description: str = ""
    sop_uids: list[str] = field(default_factory=list)  # [S] SOP Instance UID of each sorted slice
    geometry: SeriesGeometry | None = None  # preprocessed box -> original pixels / patient mm
    instance_numbers: list[int] = field(default_factory=list)  # [S] InstanceNumber of each sorted slice
    # [S] 1-based frame of each sorted slice in its multi-frame object (Enhanced MR); None for single-frame
    frame_numbers: list[int | None] = field(default_factory=list)


@dataclass
class StudyData:
    study_uid: str
    patient_key: str
    series: list[SeriesData]
    report: str = ""
    labels: np.ndarray = field(default_factory=lambda: np.full(len(CONDITION_KEYS), -1, np.int64))
    vendor: str | None = None
    region: str | None = None


def labels_vector(labels: dict[str, int]) -> np.ndarray:
    """Condition dict -> [17] int64 in canonical order; absent keys are -1 (excluded)."""
    return np.array([labels.get(k, -1) for k in CONDITION_KEYS], dtype=np.int64)
