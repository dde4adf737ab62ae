"""Torch datasets over manifest studies: single slices for self-supervised pretraining
(``SliceDataset``) and whole studies with report and labels for alignment and probes
(``StudyDataset``). The only module of ``ml.data`` that imports torch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from ml.data.loader import StudyLoader
from ml.data.manifest import StudyEntry
from ml.data.types import SEQUENCE_CLASSES, StudyData


def subsample_indices(n: int, k: int | None) -> np.ndarray:
    """Up to k evenly spaced indices of n slices (the centre of the stack is always covered)."""
    if k is None or n <= k:
        return np.arange(n)
    return np.linspace(0, n - 1, k).round().astype(int)


class SliceDataset(TorchDataset):
    """Single slices of one sequence class (e.g. every T2 slice of every study), for SSL.

    Indexing loads the whole series once per worker (small LRU) and returns one slice through
    ``transform`` (e.g. ``MultiCrop``); without transform, a [1, H, W] tensor.
    """

    def __init__(
        self,
        loader: StudyLoader,
        studies: Sequence[StudyEntry],
        sequence_classes: Sequence[str],
        transform: Callable | None = None,
        lru_series: int = 16,
    ) -> None:
        self.loader = loader
        self.transform = transform
        self.lru_series = lru_series
        self._lru: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.index: list[tuple[int, int, int]] = []  # (study, series, slice)
        self.studies = list(studies)
        for si, st in enumerate(self.studies):
            for ri, se in enumerate(st.series):
                if loader.sequence_class(st, se) in sequence_classes:
                    self.index += [(si, ri, k) for k in range(loader.slice_count(st, se))]
        if not self.index:
            raise ValueError(f"no slices of class {list(sequence_classes)} in {len(self.studies)} studies")

    def _pixels(self, si: int, ri: int) -> np.ndarray:
        key = (si, ri)
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        arr = self.loader.series_pixels(self.studies[si], self.studies[si].series[ri])
        self._lru[key] = arr
        if len(self._lru) > self.lru_series:
            self._lru.popitem(last=False)
        return arr

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        si, ri, k = self.index[i]
        x = torch.from_numpy(np.ascontiguousarray(self._pixels(si, ri)[k]))[None]  # [1, H, W]
        return self.transform(x) if self.transform is not None else x


class StudyDataset(TorchDataset):
    """Whole studies (all series, up to ``max_slices`` per series) + report + labels."""

    def __init__(
        self,
        loader: StudyLoader,
        studies: Sequence[StudyEntry],
        max_slices: int | None = 16,
        classes: Sequence[str] = SEQUENCE_CLASSES,
    ) -> None:
        self.loader = loader
        self.studies = list(studies)
        self.max_slices = max_slices
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self.studies)

    def __getitem__(self, i: int) -> StudyData:
        data = self.loader.load(self.studies[i], self.classes)
        for s in data.series:
            s.pixels = s.pixels[subsample_indices(len(s.pixels), self.max_slices)]
        return data


def collate_studies(batch: list[StudyData]) -> list[StudyData]:
    """Studies have variable numbers of series and slices: keep them as a list."""
    return batch
