"""The 2 Retrieval Agents, in SpineFM's image-text space and in finding space, and cross-orientation slices.

* study -> report: each index report is scored by two log-likelihoods in nats, added up:
  the *finding* term, how likely the report's labels (the rule extractor's, read once at index
  time) are under the study's calibrated diagnosis probabilities, plus a bonus where a present
  call's localised level is one the report names for that condition; and the *aligned* term, the
  cosine between the study's case embedding and the report's projected embedding times SpineFM's
  learned logit scale (the contrastive model's own log-odds). A weakly aligned SpineFM gives
  near-constant cosines, so the findings decide; a well aligned one adds its evidence on the same
  scale. Without usable diagnosis calls (none given, all failed) or with an index built before the
  finding arrays existed, the score is the plain cosine. The top hits are the ``similar_cases`` of
  a ``StudyAnalysis`` (and the Medical Report Agent's similar-case report).
* report -> study: a report text, encoded by the frozen text encoder (MiniLM by default) and
  ``SpineFM.encode_text``, against the index's case embeddings (aligned space only: the index
  holds no diagnosis calls of its studies to compare a report's labels with).

Search is exact: one matrix product over the index (``[Q, E] @ [E, N]``) plus one over the
labels (``[17] @ [17, N]`` per query) and an [N, K] level comparison for its K localised present
calls, O(N x (E + 17)) per query: ~1 ms for 10^4 studies at E = 256 on a CPU (~5 ms with eight
localised calls), ~0.3 s for 10^6 (and 1 GB of float32). Beyond a few hundred thousand studies,
or with many queries per second, take candidates from FAISS over the embeddings or the label
vectors (``IndexFlatIP`` gives exact answers; ``IndexHNSWFlat`` / IVF-PQ trade recall for speed
and memory) and re-score them with both terms.

* sagittal -> axial slice retrieval: ``ml.agents.slice_retrieval`` (from the DICOM geometry).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ml.agents.analysis import ConditionResult, SimilarCase, StudyAnalysis
from ml.agents.artifact import load_artifact, save_artifact
from ml.agents.features import StudyFeatures
from ml.conditions import CONDITION_KEYS

if TYPE_CHECKING:
    from ml.agents.protocol import RunContext
    from ml.spinefm.text import TextEncoder  # loads transformers: only when a text query needs it

FAMILY = "retrieval"


@dataclass
class RetrievalConfig:
    top_k: int = 3  # similar cases returned per study
    exclude_same_patient: bool = True  # never return the query patient's own prior as "similar"
    text_encoder: str = "minilm"  # must be the encoder SpineFM was aligned with
    text_pooling: str = "mean"
    text_max_length: int = 256
    # Finding term. The weights are in nats, so the two terms add as log-likelihoods: 1.0 and 1.0
    # trust the diagnosis calibration and SpineFM's own temperature as they are.
    finding_weight: float = 1.0  # 0 = aligned cosine only
    aligned_weight: float = 1.0  # multiplies cosine x logit scale
    # P(a report's label disagrees with the study's true state): extractor misses and the
    # radiologist's own wording. Caps one label's penalty at log(1 / label_noise), so a single
    # wrong call or misread sentence cannot bury the right report.
    label_noise: float = 0.05
    # Log-likelihood ratio of "the report names the level a present call was localised at":
    # ~log(0.6 / 0.3), localisation right about 60% of the time against ~30% of reports with the
    # condition naming any given lumbar level by chance.
    level_bonus: float = 0.7


# Vertebrae a level is keyed by (its upper vertebra), one bit each in ``report_levels``.
LEVEL_VERTEBRAE: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    *(f"S{i}" for i in range(1, 6)),
)
_LEVEL_BIT = {v: 1 << i for i, v in enumerate(LEVEL_VERTEBRAE)}  # 29 bits: fits int32
# "T1 and T2 hyperintense", "T2 signal": sequence names, not the vertebrae T1 / T2
_SEQUENCE_AFTER = re.compile(r"\s*(?:-?\s*weighted|w\b|signal|hyper|hypo|images?|sequences?|and\s+T\d)", re.I)


def level_bits(text: str) -> int:
    """Bitmask of the vertebrae (``LEVEL_VERTEBRAE``) that the levels in ``text`` start at.

    A disc level is keyed by its upper vertebra ("L4-5", "L4/L5", "L4 on L5" -> L4), as is a
    vertebra ("L4"): the same equivalence the report consistency check uses to match a stated
    level with an agent's, so "anterolisthesis of L4" matches a listhesis localised at L4-5."""
    from ml.agents.report.sentences import level_spans

    bits = 0
    for _, end, level in level_spans(text):
        if level in ("T1", "T2") and _SEQUENCE_AFTER.match(text, end):
            continue
        bits |= _LEVEL_BIT.get(level.split("-")[0], 0)
    return bits


def report_findings(reports: Sequence[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """(labels [N, 17] float32 in ``CONDITION_KEYS`` order, 1 present / 0.5 uncertain / 0 absent;
    levels [N, 17] int32, ``level_bits`` of the sentence that decided each non-absent label;
    the extractor's name) of report texts, read by the rule-based label extractor."""
    from ml.agents.labels import extract_labels

    labels = np.zeros((len(reports), len(CONDITION_KEYS)), np.float32)  # [N, 17]
    levels = np.zeros((len(reports), len(CONDITION_KEYS)), np.int32)  # [N, 17]
    extractor = ""
    for i, text in enumerate(reports):
        res = extract_labels(text)
        extractor = res.extractor
        for c, key in enumerate(CONDITION_KEYS):
            value = res.labels[key]
            if value == 0:
                continue
            labels[i, c] = 1.0 if value == 1 else 0.5
            levels[i, c] = level_bits(res.evidence.get(key, ""))
    return labels, levels, extractor


def _calls(conditions: Sequence[ConditionResult] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities [17], valid [17] bool, present-call level bits [17] int) of one study's
    diagnosis; a condition missing or with probability -1 (its agent failed) is not valid."""
    p = np.zeros(len(CONDITION_KEYS), np.float64)
    valid = np.zeros(len(CONDITION_KEYS), bool)
    bits = np.zeros(len(CONDITION_KEYS), np.int32)
    pos = {k: i for i, k in enumerate(CONDITION_KEYS)}
    for c in conditions or []:
        i = pos.get(c.condition)
        if i is None or not 0.0 <= c.probability <= 1.0:
            continue
        p[i], valid[i] = c.probability, True
        if c.present and c.level:
            bits[i] = level_bits(c.level)
    return p, valid, bits


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def encode_reports(texts: list[str], model, text_encoder) -> np.ndarray:
    """Reports -> [N, E] normalised embeddings in the aligned space."""
    with torch.inference_mode():
        feats = text_encoder(texts).to(model.text_proj.weight.device)
        return F.normalize(model.encode_text(feats).float(), dim=-1).cpu().numpy()


class RetrievalIndex:
    """Reports and case embeddings of prior studies: both directions of retrieval; the retrieval
    family of the pipeline (``ml.agents.protocol.AgentFamily``)."""

    name = FAMILY
    per_study = False  # one matrix product for all studies

    def __init__(self, cfg: RetrievalConfig, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.cfg = cfg
        self.report_emb = arrays["report_emb"]  # [N, E]
        self.study_emb = arrays["study_emb"]  # [N, E]
        # [N, 17] labels and level bits of the reports; None in an index built before them
        self.report_findings: np.ndarray | None = arrays.get("report_findings")
        self.report_levels: np.ndarray | None = arrays.get("report_levels")
        self.meta = meta
        self.study_uids: list[str] = meta["study_uids"]
        self.patient_keys: list[str] = meta["patient_keys"]
        self.reports: list[str] = meta["reports"]
        self.version = meta.get("version", "")
        self._text: TextEncoder | None = None  # loaded on the first text query

    def __len__(self) -> int:
        return len(self.study_uids)

    # -- study -> report -----------------------------------------------------------------------
    def report_scores(
        self, feats: list[StudyFeatures], conditions: Sequence[Sequence[ConditionResult] | None] | None = None
    ) -> np.ndarray:
        """[Q, N] scores of the index reports for the studies (higher = more similar).

        ``conditions``: each study's diagnosis calls. A study with usable calls gets the finding
        log-likelihood plus the scaled cosine (nats); one without, or an index without finding
        arrays, the plain cosine. Rows are comparable within themselves only."""
        q = _normalise(np.stack([f.embedding.case for f in feats]))  # [Q, E]
        cos = q @ self.report_emb.T  # [Q, N]
        if conditions is None or self.report_findings is None or self.cfg.finding_weight == 0:
            return cos
        out = cos.astype(np.float64)
        for qi, conds in enumerate(conditions):
            p, valid, bits = _calls(conds)
            if valid.any():
                out[qi] = self.cfg.finding_weight * self._finding_scores(p, valid, bits) + (
                    self.cfg.aligned_weight * self.logit_scale * cos[qi]
                )
        return out

    @property
    def logit_scale(self) -> float:
        """SpineFM's learned inverse temperature, stored at build time (CLIP's initial 1 / 0.07 otherwise)."""
        return float(self.meta.get("logit_scale", 1.0 / 0.07))

    def _finding_scores(self, p: np.ndarray, valid: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """[N] log-likelihood of each report's labels under one study's probabilities ``p`` [17]
        (noisy-label channel, invalid conditions skipped) plus the level bonus."""
        y = self.report_findings
        assert y is not None
        eps = self.cfg.label_noise
        q = eps + (1.0 - 2.0 * eps) * p  # [17] P(report says present)
        log_yes = np.where(valid, np.log(q), 0.0)  # [17]
        log_no = np.where(valid, np.log1p(-q), 0.0)  # [17]
        # sum_c y log q + (1 - y) log(1 - q), without an [N, 17] temporary for 1 - y
        score = y @ (log_yes - log_no).astype(y.dtype) + log_no.sum()  # [N]
        cols = np.flatnonzero(bits)  # present calls with a level
        if self.report_levels is not None and len(cols):
            hit = (self.report_levels[:, cols] & bits[cols].astype(self.report_levels.dtype)) != 0  # [N, K]
            score = score + self.cfg.level_bonus * (hit * y[:, cols]).sum(1)
        return score

    def similar(
        self, feats: list[StudyFeatures], conditions: Sequence[Sequence[ConditionResult] | None] | None = None
    ) -> list[list[SimilarCase]]:
        """Top-k index reports per study, never the study itself nor (by default) its patient's other
        studies; ``conditions`` as in ``report_scores``."""
        scores = self.report_scores(feats, conditions)
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

    def run(self, results: list[StudyAnalysis], feats: list[StudyFeatures], context: RunContext) -> None:
        """Each study's ``similar_cases``, ranked with the diagnosis and localization calls already
        in ``results`` (the pipeline runs retrieval after both)."""
        for r, hits in zip(results, self.similar(feats, [x.conditions for x in results]), strict=True):
            r.similar_cases = hits

    # -- report -> study -----------------------------------------------------------------------
    def study_scores(self, report_emb: np.ndarray) -> np.ndarray:
        return _normalise(report_emb) @ self.study_emb.T  # [Q, N]

    def search_studies(self, texts: list[str], model, k: int = 5) -> list[list[tuple[str, float]]]:
        """Report texts -> top-k (study_uid, cosine) of the index (loads the text encoder once).

        Aligned space only: the index keeps no diagnosis calls of its studies to score the text's
        labels against, so this direction improves only as SpineFM's alignment does."""
        if self._text is None:
            from ml.spinefm.text import TextEncoder

            self._text = TextEncoder(self.cfg.text_encoder, self.cfg.text_pooling, self.cfg.text_max_length)
        scores = self.study_scores(encode_reports(texts, model, self._text))
        return [[(self.study_uids[i], float(row[i])) for i in np.argsort(-row)[:k]] for row in scores]

    # -- artifact ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> str:
        arrays = {"report_emb": self.report_emb.astype(np.float32), "study_emb": self.study_emb.astype(np.float32)}
        if self.report_findings is not None:
            arrays["report_findings"] = self.report_findings.astype(np.float32)
        if self.report_levels is not None:
            arrays["report_levels"] = self.report_levels.astype(np.int32)
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
    """Index the studies' reports (frozen text encoder + ``model.encode_text``; labels and levels by
    the rule extractor, ~15 ms a report) and case embeddings."""
    cfg = cfg or RetrievalConfig()
    if text_encoder is None:
        from ml.spinefm.text import TextEncoder

        text_encoder = TextEncoder(cfg.text_encoder, cfg.text_pooling, cfg.text_max_length)
    keep = [f for f in feats if f.study.report]
    if not keep:
        raise ValueError("no study with a report to index")
    reports = [f.study.report for f in keep]
    labels, levels, extractor = report_findings(reports)
    arrays = {
        "report_emb": encode_reports(reports, model, text_encoder),
        "study_emb": _normalise(np.stack([f.embedding.case for f in keep])),
        "report_findings": labels,
        "report_levels": levels,
    }
    meta = {
        "study_uids": [f.study.study_uid for f in keep],
        "patient_keys": [f.study.patient_key for f in keep],
        "reports": reports,
        "label_extractor": extractor,
        "logit_scale": float(model.contrastive.scale.detach().cpu()),
    }
    index = RetrievalIndex(cfg, arrays, meta)
    index._text = text_encoder
    return index
