"""The dense head's training inputs: every training study's standardised cell design and cell
targets, held in memory for the epochs (``dense_train.train_dense``).

Why a module of its own: memory bounds how many studies the head can learn from on a 24 GB
machine, and once the encoded volumes are freed (``train.prepare``) the designs are the largest
thing training holds: at stride 16 with the slice contrast a study's design is [~4,900 cells, 834],
~15 MB in float32. From ``DiagnosisConfig.dense_half_from`` studies on they are therefore kept in
float16, half the memory (15.2 -> 7.0 MB a further study, ``benchmarks/dense_head_memory.py``);
the head casts each study back to float32 as it reads it, which with the second pass below makes
the training 1.46x slower there, so small sets such as the demo's stay in float32. In float16 the
designs are made twice: once for the statistics of the fitting studies, once standardised, so no
float32 copy of the whole set ever exists. Standardised values are clipped to float16's range
first: a feature that is constant on the fitting studies has a standard deviation of 1e-4 and may
be large elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ml.agents.dense import PLANES, dense_cells, head_design
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures

F16_MAX = 65000.0  # just inside float16's largest finite value (65504)


def design_pool(cfg: DiagnosisConfig) -> ThreadPoolExecutor:
    """Threads for making the studies' designs: numpy's copies and products release the GIL (two
    threads make the 260 demo studies' designs in 7-8 s instead of 12-18 s); the results and
    their order are the same as on one thread."""
    return ThreadPoolExecutor(max(1, min(cfg.dense_threads, torch.get_num_threads())), thread_name_prefix="designs")


def keeps_half(n_studies: int, cfg: DiagnosisConfig) -> bool:
    """Whether a training set of ``n_studies`` keeps its designs in float16."""
    return 0 < cfg.dense_half_from <= n_studies


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-feature sum and sum of squares (float64) and the row count of a design [C, F]."""
    x64 = x.astype(np.float64)
    return x64.sum(0), (x64 * x64).sum(0), len(x)


def _mean_std(moments: Iterable[tuple[np.ndarray, np.ndarray, int]], n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation [F] from per-study moments; the plane one-hot stays as it is."""
    s1, s2, count = np.zeros(n_in), np.zeros(n_in), 0
    for a, b, n in moments:
        s1, s2, count = s1 + a, s2 + b, count + n
    mean = (s1 / max(count, 1)).astype(np.float32)
    std = (np.sqrt(np.maximum(s2 / max(count, 1) - mean.astype(np.float64) ** 2, 0)) + 1e-4).astype(np.float32)
    mean[-len(PLANES) :], std[-len(PLANES) :] = 0.0, 1.0
    return mean, std


def _standardised(x: np.ndarray, mean: np.ndarray, std: np.ndarray, half: bool) -> np.ndarray:
    """A design [C, F] standardised in place; clipped to float16's range with ``half``."""
    x -= mean
    x /= std
    return np.clip(x, -F16_MAX, F16_MAX, out=x) if half else x


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray, half: bool) -> torch.Tensor:
    """A design [C, F] standardised in place -> a tensor [C, F], float16 (clipped) with ``half``."""
    x = _standardised(x, mean, std, half)
    return torch.from_numpy(x.astype(np.float16) if half else x)


def training_designs(
    feats: list[StudyFeatures],
    fit: np.ndarray,
    cfg: DiagnosisConfig,
    trunk: Any,
    targets: Callable[[int, dict[str, Any]], np.ndarray],
) -> tuple[list[torch.Tensor], list[torch.Tensor], np.ndarray, np.ndarray]:
    """(designs [C_i, F] standardised with the statistics of the studies ``fit``, cell targets
    [C_i, 17] float32, mean [F], std [F]). ``targets(i, d)`` gives study i's targets from its cells."""
    half = keeps_half(len(feats), cfg)
    in_fit = np.zeros(len(feats), bool)
    in_fit[fit] = True

    def first(i: int) -> tuple[Any, tuple[int, int], torch.Tensor]:
        d = dense_cells(feats[i], cfg, trunk)
        x = head_design(d, cfg)
        t = torch.from_numpy(targets(i, d).astype(np.float32))
        # float32: the design itself (kept, standardised in place below); float16: its moments only
        return (_moments(x) if in_fit[i] else None) if half else x, x.shape, t

    with design_pool(cfg) as pool:
        made = list(pool.map(first, range(len(feats))))
        tt = [t for _, _, t in made]
        n_in = made[0][1][1]
        if not half:
            designs = [x for x, _, _ in made]
            del made
            mean, std = _mean_std((_moments(designs[i]) for i in fit), n_in)
            return [standardise(x, mean, std, False) for x in designs], tt, mean, std
        mean, std = _mean_std((m for m, _, _ in made if m is not None), n_in)
        # one float16 block for every study's rows, written in place by the threads (one allocation
        # for the set, not one per study)
        ends = np.cumsum([shape[0] for _, shape, _ in made])
        starts = np.concatenate([[0], ends[:-1]]).astype(int)
        del made
        block = np.empty((int(ends[-1]) if len(ends) else 0, n_in), np.float16)

        def second(i: int) -> None:
            x = head_design(dense_cells(feats[i], cfg, trunk), cfg)
            block[starts[i] : ends[i]] = _standardised(x, mean, std, True)

        list(pool.map(second, range(len(feats))))
    return [torch.from_numpy(block[a:b]) for a, b in zip(starts, ends, strict=True)], tt, mean, std


def float32_designs(
    feats: list[StudyFeatures], cfg: DiagnosisConfig, trunk: Any, mean: np.ndarray, std: np.ndarray
) -> Iterator[torch.Tensor]:
    """The studies' standardised designs [C_i, F] in float32, one at a time: the served logits of a
    head trained on float16 designs are computed on these, as inference computes them."""
    for f in feats:
        yield standardise(head_design(dense_cells(f, cfg, trunk), cfg), mean, std, False)
