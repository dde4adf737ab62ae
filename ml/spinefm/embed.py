"""``embed_study``: per-slice, per-series and per-case SpineFM embeddings of one study.

This is what every agent consumes (diagnosis probes, localisation, retrieval, the report agent).
It is deterministic: eval mode, ``torch.inference_mode``, fixed seeds; on CUDA the encoders run
under bf16 autocast (outputs are returned in float32 on CPU).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ml.data.loader import StudyLoader
from ml.data.manifest import StudyEntry
from ml.data.types import StudyData
from ml.spinefm.model import SpineFM


@dataclass
class SeriesEmbedding:
    series_uid: str
    sequence_class: str
    route: str  # "T1" | "T2" | "synthesizer:conditioned" | "synthesizer:scalar"
    embedding: np.ndarray  # [E] in the shared image-text space
    slices: np.ndarray  # [S, D] encoder CLS features, sorted along the slice normal
    slice_weights: np.ndarray  # [S] MIL attention (key-slice saliency)
    route_weights: np.ndarray | None  # [S, depth+2, 2] synthesizer (T1, T2) weights, else None


@dataclass
class CaseEmbedding:
    study_uid: str
    case: np.ndarray  # [E] over all series, L2-normalised
    by_class: dict[str, np.ndarray]  # "T1" | "T2" | "other" -> [E] (only classes present)
    series: list[SeriesEmbedding]


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def embed_studies(
    studies: list[StudyData], model: SpineFM, batch_size: int = 256, seed: int = 0
) -> list[CaseEmbedding]:
    """Embed several loaded studies; slices of a class are encoded in batches of ``batch_size``."""
    torch.manual_seed(seed)
    model.eval()
    device = model.text_proj.weight.device
    out: list[CaseEmbedding] = []
    with torch.inference_mode(), _autocast(device):
        res = model(studies, chunk=batch_size)
    for i, st in enumerate(studies):
        rws = [None if w is None else w.float().cpu().numpy() for w in res.route_weights[i]]
        series = [
            SeriesEmbedding(
                series_uid=s.series_uid,
                sequence_class=s.sequence_class,
                route=res.routes[i][j],
                embedding=F.normalize(res.series[i][j].float(), dim=-1).cpu().numpy(),
                slices=res.slices[i][j].float().cpu().numpy(),
                slice_weights=res.slice_weights[i][j].float().cpu().numpy(),
                route_weights=rws[j],
            )
            for j, s in enumerate(st.series)
        ]
        by_class = {
            k: F.normalize(res.case[k][i].float(), dim=-1).cpu().numpy()
            for k in ("T1", "T2", "other")
            if bool(res.valid[k][i])
        }
        case = F.normalize(res.case["all"][i].float(), dim=-1).cpu().numpy()
        out.append(CaseEmbedding(st.study_uid, case, by_class, series))
    return out


def embed_study(
    study: StudyData | StudyEntry,
    model: SpineFM,
    loader: StudyLoader | None = None,
    base_dir: str | Path | None = None,
    batch_size: int = 256,
    max_slices: int | None = None,
) -> CaseEmbedding:
    """Embed one study: a loaded ``StudyData``, or a manifest entry (read via ``loader`` or
    a default loader on ``base_dir`` at the model's input size)."""
    if isinstance(study, StudyEntry):
        if loader is None:
            from ml.data.preprocess import PreprocessConfig

            loader = StudyLoader(base_dir or ".", PreprocessConfig(size=model.img_size))
        study = loader.load(study)
    if max_slices is not None:
        from ml.data.datasets import subsample_indices

        for s in study.series:
            s.pixels = s.pixels[subsample_indices(len(s.pixels), max_slices)]
    return embed_studies([study], model, batch_size=batch_size)[0]
