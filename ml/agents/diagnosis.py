"""The 17 Diagnosis Agents: one calibrated linear probe per condition on the frozen SpineFM
case features (paper: linear probe on the case embedding, frozen backbone).

Per condition: logistic regression on standardised study features (labels 1/0; -1 "uncertain"
excluded from fitting and from every metric), fitted on a patient-level *fit* split of the
training studies; on the remaining *validation* patients a temperature T is fitted
(minimum negative log-likelihood of sigmoid(z / T), Guo et al. 2017) and the operating
threshold is chosen on the calibrated probabilities by Youden's J (or, with
``threshold_rule: sensitivity``, the highest threshold that reaches ``target_sensitivity``).
A condition with fewer than ``min_positives`` positive (or negative) training studies gets no
probe: it predicts its training prevalence and is reported ``trained: false``.

Artifact (``ml.agents.artifact``): W [17, F], b [17], temperature [17], threshold [17], feature
mean/std [F], trained [17].
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve

from ml.agents.analysis import ConditionResult, StudyAnalysis
from ml.agents.artifact import load_artifact, save_artifact
from ml.agents.features import StudyFeatures
from ml.conditions import CONDITION_KEYS
from ml.data.splits import patient_fold
from ml.data.types import SEQUENCE_CLASSES

if TYPE_CHECKING:
    from ml.agents.protocol import RunContext

log = logging.getLogger(__name__)
FAMILY = "diagnosis"


@dataclass
class DiagnosisConfig:
    feature: str = "case+slices"  # "case" | "slices" | "case+slices" (see features.diagnosis_vector)
    classes: list[str] = field(default_factory=lambda: list(SEQUENCE_CLASSES))  # series classes used
    C: float = 0.5  # inverse L2 strength of the logistic regression
    class_weight: str | None = "balanced"  # rare conditions: balance the two classes
    val_fraction: float = 0.25  # patients held out of fitting for temperature + threshold
    threshold_rule: str = "youden"  # "youden" | "sensitivity"
    target_sensitivity: float = 0.9  # for threshold_rule = sensitivity
    min_positives: int = 3  # fewer positive (or negative) fit studies: no probe
    seed: int = 0
    # "linear" (probe on ``feature``) | "mil" (gated attention over slices, ml/agents/mil.py) |
    # "dense" (frozen generic CNN cells at near-native resolution + box-supervised head, ml/agents/dense.py)
    head: str = "linear"
    mil_hidden: int = 32  # MIL: width of the shared slice projection
    mil_epochs: int = 60
    mil_batch: int = 32
    mil_lr: float = 3e-3
    mil_weight_decay: float = 0.1
    dense_size: int = 256  # px of each view (the preprocessed square is resized to it)
    dense_sag_slices: int = 7  # central sagittal slices (T1/T2/STIR fused as channels)
    dense_max_axial: int = 15  # axial slices, evenly spaced
    # spine crops: each view is cut to a window around the spine found in the image (the CSF
    # column of the sagittal fluid-weighted series; axials through the geometry) before resizing.
    # Crops + one axial per disc: chosen by CV inside the training set (docs/agents.md)
    dense_crop: bool = True
    dense_sag_crop_mm: float = 160.0  # sagittal: square tiles this wide down the spine
    dense_ax_crop_mm: float = 110.0  # axial: a square this wide around the canal
    # canal tiles: the dense_canal_slices central sagittal slices also cut to squares of this many
    # mm stepping down the canal (``dense_views.canal_tiles``): the canal's contents at twice the
    # spine tile's scale, for the lesions inside it; 0: none
    dense_canal_mm: float = 0.0
    dense_canal_slices: int = 3
    dense_axial: str = "disc"  # "disc" (the middle slice of each per-disc block) | "all" (up to dense_max_axial)
    dense_stride: int = 16  # cells: 16 (block 13 + the block-17 cell above it; 10 mm on a spine tile) or 32
    dense_hidden: int = 64
    dense_epochs: int = 25
    dense_batch: int = 16
    dense_lr: float = 1e-3
    dense_weight_decay: float = 1e-2
    dense_box_weight: float = 1.0  # weight of the cell (box) loss next to the study (MIL) loss
    dense_box_pos_weight: float = 5.0  # cells under a box are few: up-weight them
    # the cell loss: "study" (the mean over a study's known cells: a small lesion's box cells are
    # ~1e-4 of it) | "balanced" (per study and condition, the mean over the cells under its boxes
    # plus the mean over its negative cells; ``dense_train._balanced_cell_loss``)
    dense_cell_loss: str = "study"
    dense_key_negatives: bool = False  # rest of a key slice as negatives (measured worse: docs/agents.md)
    # cells away from every finding of a present condition as its negatives (``complete_negatives``)
    dense_complete_negatives: bool = False
    dense_box_alpha: float = 100.0  # ridge L2 of the box regressor (``ml/agents/dense_boxes.py``)
    dense_folds: int = 0  # >=2: k patient folds, one head each, served as their mean, calibrated out-of-fold
    dense_average_from: int = 0  # >0: the head's weights averaged over the epochs from this one on (SWA)
    dense_refit_all: bool = False  # after calibrating on the held-out quarter, refit the head on every study
    dense_box_stride: int = 16  # the box regressor's cells (16: block 13 + the cell above; 32: the head's)
    # spine adaptation of the trunk (``ml/agents/dense_adapt.py``): 0 keeps it frozen (generic
    # ImageNet); N in 1..4 fine-tunes its last N blocks (of 14-17, fed by the cached block-13
    # cells) jointly with the head for ``dense_adapt_epochs`` at ``dense_adapt_lr``, after the
    # head's own training on the frozen cells; the adapted blocks are saved with the head
    dense_adapt_blocks: int = 0
    dense_adapt_epochs: int = 5
    dense_adapt_lr: float = 1e-4
    # vertical context: a cell's logits also read the hidden features of the cells above and
    # below it in its view (``dense.DenseHead``)
    dense_context: bool = False
    # slice contrast: each cell's features also minus their mean over the sagittal slices at the
    # same place (``dense.cell_design``): a focal finding against one seen on every slice
    dense_slice_contrast: bool = False
    # with the slice contrast: an axial cell's contrast is against the cell at the mirrored column
    # (the other side of the canal) instead of zero (``dense.cell_design``)
    dense_axial_mirror: bool = False
    # >1: that many heads trained with consecutive seeds on the same studies, served as their mean
    # (variance: one rare condition moved 0.08 with the seed alone); the training time times that
    dense_seeds: int = 1
    # threads of the head's training (at most the cores torch sees): 2 is 1.6x faster than 1 on an
    # idle 2-core machine (benchmarks/dense_head_speed.py); 1 where other jobs share the cores
    # (OpenMP's spin-waits then cost more than the second thread gives). The trained weights
    # differ between thread counts by float rounding (~6e-5 after five steps), not in kind
    dense_threads: int = 2
    # the head's training arithmetic: "float32", or "auto" (bfloat16 autocast where it is native:
    # AMX / AVX-512 BF16 CPUs, CUDA; float32 elsewhere). The served head is float32 either way
    dense_precision: str = "float32"
    # from this many training studies on, the head's designs are kept in float16 (half the memory,
    # 1.46x the head's training time: ``ml/agents/dense_designs.py``); 0: always float32
    dense_half_from: int = 400

    def __post_init__(self) -> None:
        if self.threshold_rule not in ("youden", "sensitivity"):
            raise ValueError("threshold_rule must be 'youden' or 'sensitivity'")
        if self.dense_axial_mirror and not self.dense_slice_contrast:
            raise ValueError("diagnosis.dense_axial_mirror needs dense_slice_contrast (it fills its axial half)")
        if self.dense_half_from < 0:
            raise ValueError("diagnosis.dense_half_from must be >= 0 (0: always float32)")
        if self.dense_canal_mm < 0 or self.dense_canal_slices < 1:
            raise ValueError("diagnosis.dense_canal_mm must be >= 0 (0: none) and dense_canal_slices >= 1")
        if self.dense_precision not in ("float32", "auto"):
            raise ValueError("diagnosis.dense_precision must be 'float32' or 'auto'")
        if self.dense_threads < 1:
            raise ValueError("diagnosis.dense_threads must be >= 1")
        if self.dense_stride not in (16, 32) or self.dense_box_stride not in (16, 32):
            raise ValueError("diagnosis.dense_stride and dense_box_stride must be 16 or 32")
        if self.dense_box_stride > self.dense_stride:
            raise ValueError("diagnosis.dense_box_stride cannot be coarser than dense_stride")
        if not 0 <= self.dense_adapt_blocks <= 4:
            raise ValueError("diagnosis.dense_adapt_blocks must be 0..4 (of the trunk's blocks 14-17)")
        if self.dense_cell_loss not in ("study", "balanced"):
            raise ValueError("diagnosis.dense_cell_loss must be 'study' or 'balanced'")
        if self.dense_axial not in ("all", "disc"):
            raise ValueError("diagnosis.dense_axial must be 'all' or 'disc'")
        if self.head not in ("linear", "mil", "dense"):
            raise ValueError("diagnosis head must be 'linear', 'mil' or 'dense'")


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the binary NLL of sigmoid(z / T) (searched on log T in [-3, 3])."""
    if len(np.unique(y)) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        p = np.clip(expit(z / np.exp(log_t)), 1e-7, 1 - 1e-7)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def fit_shifted_temperature(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(T, shift) with sigmoid((z - shift) / T) of minimum NLL (Platt scaling); temperature alone
    (shift 0, ``fit_temperature``) where the fit does not rank positives higher.

    Why a shift for the balanced cell loss: box cells weigh as much as the rest of their study,
    so a cell that resembles a lesion scores near 0 and the max over a negative study's thousands
    of cells lands above 0 (median +0.6 for intradural lesions on 100 held-out studies):
    temperature alone keeps 0 as the 50 % point and every probability too high."""
    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None].astype(np.float64), y)
    a, c = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 1e-3:
        return fit_temperature(z, y), 0.0
    return 1.0 / a, -c / a


def choose_threshold(p: np.ndarray, y: np.ndarray, rule: str, target_sensitivity: float = 0.9) -> float:
    """Operating point on calibrated probabilities (0.5 when the validation set has one class)."""
    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.clip(thr, 0.0, 1.0)
    if rule == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    ok = np.flatnonzero(tpr >= target_sensitivity)
    return float(thr[ok[0]]) if len(ok) else float(thr[-1])


class DiagnosisHead(ABC):
    """What the three heads (linear probes here, ``mil.MILDiagnosisAgents``,
    ``dense.DenseDiagnosisAgents``) share as the diagnosis agent family
    (``ml.agents.protocol.AgentFamily``): the pipeline runs whichever head the artifact holds the
    same way, and each head loads only its own artifacts (``heads.load_diagnosis`` loads any)."""

    name = FAMILY
    per_study = False  # one batched pass over all studies
    head: ClassVar[str]  # the DiagnosisConfig.head a subclass implements

    def __init__(self, cfg: DiagnosisConfig, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        self.cfg = cfg
        self.meta = meta or {}
        self.version: str = self.meta.get("version", "")

    @abstractmethod
    def predict(self, feats: list[StudyFeatures]) -> list[list[ConditionResult]]: ...

    @abstractmethod
    def save(self, folder: str | Path) -> str: ...

    def run(self, results: list[StudyAnalysis], feats: list[StudyFeatures], context: RunContext) -> None:
        """The 17 calls of each study are its ``conditions``."""
        for r, conds in zip(results, self.predict(feats), strict=True):
            r.conditions = conds

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        cfg, arrays, doc = load_artifact(folder, FAMILY, DiagnosisConfig)
        if cfg.head != cls.head:
            raise ValueError(f"{folder} holds a {cfg.head!r} diagnosis head, not {cls.head!r}")
        return cls.from_artifact(cfg, arrays, doc)

    @classmethod
    def from_artifact(cls, cfg: DiagnosisConfig, arrays: dict[str, np.ndarray], doc: dict) -> Self:
        """The head from a read artifact (``artifact.load_artifact``: config, arrays, document)."""
        return cls(cfg, arrays, {**doc["meta"], "version": doc["version"]})


class DiagnosisAgents(DiagnosisHead):
    """All 17 probes (one row each); ``predict`` is the batched inference entry point."""

    head = "linear"

    def __init__(self, cfg: DiagnosisConfig, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        super().__init__(cfg, arrays, meta)
        self.W = arrays["weight"]  # [17, F]
        self.b = arrays["bias"]  # [17]
        self.temperature = arrays["temperature"]  # [17]
        self.threshold = arrays["threshold"]  # [17]
        self.mean, self.std = arrays["mean"], arrays["std"]  # [F]
        self.trained = arrays["trained"].astype(bool)  # [17]
        self.prior = arrays["prior"]  # [17] training prevalence (untrained conditions)

    # -- pre -> infer -> post --------------------------------------------------------------------
    def pre(self, feats: list[StudyFeatures]) -> np.ndarray:
        """Studies -> standardised features [N, F]."""
        x = np.stack([f.diagnosis_vector(self.cfg.feature, tuple(self.cfg.classes)) for f in feats])
        return (x - self.mean) / self.std

    def infer(self, x: np.ndarray) -> np.ndarray:
        """[N, F] -> calibrated probabilities [N, 17]."""
        z = x @ self.W.T + self.b  # [N, 17]
        p = expit(z / self.temperature)
        return np.where(self.trained, p, self.prior)

    def post(self, p: np.ndarray) -> list[list[ConditionResult]]:
        return [
            [
                ConditionResult(
                    condition=k,
                    probability=float(row[j]),
                    present=bool(row[j] >= self.threshold[j]),
                    threshold=float(self.threshold[j]),
                )
                for j, k in enumerate(CONDITION_KEYS)
            ]
            for row in p
        ]

    def predict(self, feats: list[StudyFeatures]) -> list[list[ConditionResult]]:
        return self.post(self.infer(self.pre(feats)))

    def probabilities(self, feats: list[StudyFeatures]) -> np.ndarray:
        return self.infer(self.pre(feats))

    # -- artifact --------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "weight": self.W.astype(np.float32),
            "bias": self.b.astype(np.float32),
            "temperature": self.temperature.astype(np.float32),
            "threshold": self.threshold.astype(np.float32),
            "mean": self.mean.astype(np.float32),
            "std": self.std.astype(np.float32),
            "trained": self.trained.astype(np.uint8),
            "prior": self.prior.astype(np.float32),
        }

    def save(self, folder: str | Path) -> str:
        self.version = save_artifact(folder, FAMILY, self.cfg, self.arrays(), self.meta)
        self.meta["version"] = self.version
        return self.version


def labels_matrix(feats: list[StudyFeatures]) -> np.ndarray:
    return np.stack([f.study.labels for f in feats])  # [N, 17] in {-1, 0, 1}


def fit_probes(x: np.ndarray, y: np.ndarray, patient_keys: list[str], cfg: DiagnosisConfig) -> DiagnosisAgents:
    """The 17 probes on any study feature matrix x [N, F] with ternary labels y [N, 17] (also used
    for the baseline encoders, whose features are not ``StudyFeatures``)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    buckets = round(cfg.val_fraction * 100)
    is_val = np.array([patient_fold(k, 100, cfg.seed + 7) < buckets for k in patient_keys])
    n_feat = x.shape[1]
    W = np.zeros((len(CONDITION_KEYS), n_feat))
    b = np.zeros(len(CONDITION_KEYS))
    temp = np.ones(len(CONDITION_KEYS))
    thr = np.full(len(CONDITION_KEYS), 0.5)
    trained = np.zeros(len(CONDITION_KEYS), bool)
    prior = np.zeros(len(CONDITION_KEYS))
    counts = {}
    for j, key in enumerate(CONDITION_KEYS):
        known = y[:, j] >= 0
        prior[j] = float(y[known, j].mean()) if known.any() else 0.0
        fit = known & ~is_val
        val = known & is_val
        n_pos, n_neg = int((y[fit, j] == 1).sum()), int((y[fit, j] == 0).sum())
        counts[key] = {"fit_pos": n_pos, "fit_neg": n_neg, "val": int(val.sum()), "uncertain": int((~known).sum())}
        if min(n_pos, n_neg) < cfg.min_positives:
            log.info("diagnosis %s: %d positive / %d negative fit studies: no probe (prior)", key, n_pos, n_neg)
            continue
        lr = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=2000, solver="liblinear")
        lr.fit(xs[fit], y[fit, j])
        W[j], b[j] = lr.coef_[0], lr.intercept_[0]
        trained[j] = True
        if val.any():
            z = xs[val] @ W[j] + b[j]
            temp[j] = fit_temperature(z, y[val, j])
            thr[j] = choose_threshold(expit(z / temp[j]), y[val, j], cfg.threshold_rule, cfg.target_sensitivity)
    meta = {"counts": counts, "n_studies": len(x), "n_features": n_feat, "conditions": list(CONDITION_KEYS)}
    arrays = {
        "weight": W,
        "bias": b,
        "temperature": temp,
        "threshold": thr,
        "mean": mean,
        "std": std,
        "trained": trained.astype(np.uint8),
        "prior": prior,
    }
    return DiagnosisAgents(cfg, arrays, meta)
