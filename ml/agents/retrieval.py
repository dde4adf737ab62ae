"""The 2 Retrieval Agents, zero-shot in SpineFM's image-text space, and cross-orientation slices.

* study -> report: the case embedding (L2-normalised) is compared by cosine with the projected,
  normalised report embeddings of an index of prior studies; the top hits are the
  ``similar_cases`` of a ``StudyAnalysis`` (and the Medical Report Agent's similar-case report).
* report -> study: a report text, encoded by the frozen text encoder (MiniLM by default) and
  ``SpineFM.encode_text``, against the index's case embeddings.

Search is exact: one matrix product over the index (``[Q, E] @ [E, N]``), O(N x E) per query:
~0.3 ms for 10^4 studies at E = 256 on a CPU, ~30 ms for 10^6 (and 1 GB of float32). Beyond a
few hundred thousand studies, or with many queries per second, switch to FAISS (``IndexFlatIP``
gives the same answers; ``IndexHNSWFlat`` / IVF-PQ trade recall for speed and memory).

* cross-orientation slice retrieval (evaluation only): a sagittal key slice of a disc-level
  finding is the query, the axial slices of the same study the candidates (cosine of SpineFM slice
  features, both from the T2 encoder); a hit is an axial slice whose level (the generator's
  ``slice_levels``) equals the finding's level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ml.agents.analysis import SimilarCase
from ml.agents.artifact import load_artifact, save_artifact
from ml.agents.features import StudyFeatures

if TYPE_CHECKING:  # loads transformers: only when a text query needs it
    from ml.spinefm.text import TextEncoder

FAMILY = "retrieval"


@dataclass
class RetrievalConfig:
    top_k: int = 3  # similar cases returned per study
    exclude_same_patient: bool = True  # never return the query patient's own prior as "similar"
    text_encoder: str = "minilm"  # must be the encoder SpineFM was aligned with
    text_pooling: str = "mean"
    text_max_length: int = 256


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def encode_reports(texts: list[str], model, text_encoder) -> np.ndarray:
    """Reports -> [N, E] normalised embeddings in the aligned space."""
    with torch.inference_mode():
        feats = text_encoder(texts).to(model.text_proj.weight.device)
        return F.normalize(model.encode_text(feats).float(), dim=-1).cpu().numpy()


class RetrievalIndex:
    """Reports and case embeddings of prior studies: both directions of retrieval."""

    def __init__(self, cfg: RetrievalConfig, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.cfg = cfg
        self.report_emb = arrays["report_emb"]  # [N, E]
        self.study_emb = arrays["study_emb"]  # [N, E]
        self.meta = meta
        self.study_uids: list[str] = meta["study_uids"]
        self.patient_keys: list[str] = meta["patient_keys"]
        self.reports: list[str] = meta["reports"]
        self.version = meta.get("version", "")
        self._text: TextEncoder | None = None  # loaded on the first text query

    def __len__(self) -> int:
        return len(self.study_uids)

    # -- study -> report -----------------------------------------------------------------------
    def report_scores(self, feats: list[StudyFeatures]) -> np.ndarray:
        q = _normalise(np.stack([f.embedding.case for f in feats]))  # [Q, E]
        return q @ self.report_emb.T  # [Q, N]

    def similar(self, feats: list[StudyFeatures]) -> list[list[SimilarCase]]:
        scores = self.report_scores(feats)
        out = []
        for f, row in zip(feats, scores, strict=True):
            order = np.argsort(-row)
            hits = []
            for i in order:
                if self.study_uids[i] == f.study.study_uid:
                    continue
                if self.cfg.exclude_same_patient and self.patient_keys[i] == f.study.patient_key:
                    continue
                hits.append(SimilarCase(self.study_uids[i], round(float(row[i]), 4), self.reports[i]))
                if len(hits) >= self.cfg.top_k:
                    break
            out.append(hits)
        return out

    # -- report -> study -----------------------------------------------------------------------
    def study_scores(self, report_emb: np.ndarray) -> np.ndarray:
        return _normalise(report_emb) @ self.study_emb.T  # [Q, N]

    def search_studies(self, texts: list[str], model, k: int = 5) -> list[list[tuple[str, float]]]:
        """Report texts -> top-k (study_uid, cosine) of the index (loads the text encoder once)."""
        if self._text is None:
            from ml.spinefm.text import TextEncoder

            self._text = TextEncoder(self.cfg.text_encoder, self.cfg.text_pooling, self.cfg.text_max_length)
        scores = self.study_scores(encode_reports(texts, model, self._text))
        return [[(self.study_uids[i], float(row[i])) for i in np.argsort(-row)[:k]] for row in scores]

    # -- artifact ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> str:
        arrays = {"report_emb": self.report_emb.astype(np.float32), "study_emb": self.study_emb.astype(np.float32)}
        meta = {k: v for k, v in self.meta.items() if k != "version"}
        self.version = save_artifact(folder, FAMILY, self.cfg, arrays, meta)
        self.meta["version"] = self.version
        return self.version

    @classmethod
    def load(cls, folder: str | Path) -> RetrievalIndex:
        cfg, arrays, doc = load_artifact(folder, FAMILY, RetrievalConfig)
        return cls(cfg, arrays, {**doc["meta"], "version": doc["version"]})


def build_index(
    feats: list[StudyFeatures], model, cfg: RetrievalConfig | None = None, text_encoder=None
) -> RetrievalIndex:
    """Index the studies' reports (frozen text encoder + ``model.encode_text``) and case embeddings."""
    cfg = cfg or RetrievalConfig()
    if text_encoder is None:
        from ml.spinefm.text import TextEncoder

        text_encoder = TextEncoder(cfg.text_encoder, cfg.text_pooling, cfg.text_max_length)
    keep = [f for f in feats if f.study.report]
    if not keep:
        raise ValueError("no study with a report to index")
    reports = [f.study.report for f in keep]
    arrays = {
        "report_emb": encode_reports(reports, model, text_encoder),
        "study_emb": _normalise(np.stack([f.embedding.case for f in keep])),
    }
    meta = {
        "study_uids": [f.study.study_uid for f in keep],
        "patient_keys": [f.study.patient_key for f in keep],
        "reports": reports,
    }
    index = RetrievalIndex(cfg, arrays, meta)
    index._text = text_encoder
    return index


def cross_orientation_queries(
    feat: StudyFeatures, truth: dict | None
) -> list[tuple[np.ndarray, np.ndarray, list[bool]]]:
    """(query slice feature [D], axial candidates [A, D], is-same-level [A]) per disc-level
    finding with a sagittal T2 key slice and an axial series with known slice levels."""
    if not truth:
        return []
    by_key = {s["key"]: s for s in truth.get("series", [])}
    uid_pos = {s.series_uid: i for i, s in enumerate(feat.study.series)}
    axial = [s for s in truth.get("series", []) if s.get("slice_levels") and s["series_uid"] in uid_pos]
    if not axial:
        return []
    ax = axial[0]
    ai = uid_pos[ax["series_uid"]]
    ax_series = feat.study.series[ai]
    ax_feats = feat.embedding.series[ai].slices
    sag = by_key.get("sag_t2")
    if sag is None or sag["series_uid"] not in uid_pos:
        return []
    si = uid_pos[sag["series_uid"]]
    levels_by_instance = ax["slice_levels"]
    out = []
    for f in truth.get("findings", []):
        if f.get("label") != 1 or "-" not in (f.get("level") or ""):
            continue
        ks = f.get("key_slices", {}).get("sag_t2")
        if not ks:
            continue
        try:
            k = feat.study.series[si].sop_uids.index(ks[0]["sop_instance_uid"])
        except ValueError:
            continue
        # slice_levels follow the generator's order (InstanceNumber - 1), ours is along the normal
        same = [
            0 < n <= len(levels_by_instance) and levels_by_instance[n - 1] == f["level"]
            for n in ax_series.instance_numbers
        ]
        if any(same):
            out.append((feat.embedding.series[si].slices[k], ax_feats, same))
    return out
