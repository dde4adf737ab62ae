"""Patient-level splits: a patient's studies never straddle train and test.

Folds are derived from a hash of (seed, patient_key), so they are deterministic across machines
and stable when studies are added (a patient never changes fold because another one arrived).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ml.data.manifest import StudyEntry


def patient_fold(patient_key: str, k: int, seed: int = 0) -> int:
    h = hashlib.sha256(f"{seed}:{patient_key}".encode()).digest()
    return int.from_bytes(h[:8], "big") % k


def kfold(studies: Sequence[StudyEntry], k: int = 5, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Return k (train_indices, test_indices) pairs over ``studies``, grouped by patient."""
    if k < 2:
        raise ValueError("k must be >= 2")
    folds = [patient_fold(s.patient_key, k, seed) for s in studies]
    return [([i for i, f in enumerate(folds) if f != j], [i for i, f in enumerate(folds) if f == j]) for j in range(k)]


def train_test_split(
    studies: Sequence[StudyEntry], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Single patient-level split; ``test_fraction`` is rounded to 1/100 buckets."""
    buckets = round(test_fraction * 100)
    test = [i for i, s in enumerate(studies) if patient_fold(s.patient_key, 100, seed) < buckets]
    test_set = set(test)
    return [i for i in range(len(studies)) if i not in test_set], test
