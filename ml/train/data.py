"""Building the data side of a stage from ``DataConfig``: loader, patient split, DataLoaders."""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from ml.data.cache import SliceCache, default_cache_dir
from ml.data.dicomweb import DicomWebConfig, DicomWebSource
from ml.data.loader import StudyLoader, load_manifest
from ml.data.manifest import StudyEntry
from ml.data.preprocess import PreprocessConfig
from ml.data.splits import train_test_split
from ml.spinefm.distributed import get_rank, get_world_size
from ml.train.config import DataConfig


def build_loader(cfg: DataConfig, size: int) -> tuple[StudyLoader, list[StudyEntry], list[StudyEntry]]:
    """(study loader, train studies, held-out studies) — split by patient, never by study."""
    if not cfg.manifest:
        raise ValueError("data.manifest is required (path to manifest.jsonl)")
    studies, base = load_manifest(cfg.manifest)
    cache = SliceCache(cfg.cache_dir or default_cache_dir() / "slices")
    web = DicomWebSource(DicomWebConfig(url=cfg.dicomweb_url)) if cfg.dicomweb_url else None
    loader = StudyLoader(base, PreprocessConfig(size=size, p_low=cfg.p_low, p_high=cfg.p_high), cache, web)
    train_idx, test_idx = train_test_split(studies, cfg.test_fraction, cfg.split_seed)
    return loader, [studies[i] for i in train_idx], [studies[i] for i in test_idx]


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """Shuffled, drop-last loader; sharded by rank under torchrun (same batch count per rank).

    ``dataset`` is map-style (it has a length): samplers and ``drop_last`` need it.
    """
    sized = cast(Sized, dataset)  # torch's Dataset type declares no __len__; every stage's dataset has one
    sampler: Sampler[int]
    if get_world_size() > 1:
        distributed: DistributedSampler[int] = DistributedSampler(
            dataset, get_world_size(), get_rank(), shuffle=True, seed=seed
        )
        distributed.set_epoch(seed)
        sampler = distributed
    else:
        sampler = RandomSampler(sized, generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=len(sized) >= batch_size * get_world_size(),
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )
