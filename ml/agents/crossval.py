"""Patient-level cross-validation of the diagnosis heads, shared by ``python -m ml agents evaluate``
(``ml.agents.evaluate``) and the benchmarks that compare heads: one fit/predict closure per head
(linear probes, MIL, dense), out-of-fold probabilities, the per-condition AUROC / AUPRC table
with patient-bootstrap CIs, and train-on-one-group / test-on-each matrices (vendor, cohort).

Every fit sees only its training rows: the probes, their temperatures and thresholds are fitted
inside the fold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ml.agents.diagnosis import DiagnosisConfig, fit_probes
from ml.agents.metrics import auprc, auroc, bootstrap_ci
from ml.conditions import CONDITION_KEYS
from ml.data.splits import kfold


def nanmean(v) -> float:
    """The mean of the values that are not NaN (NaN when none is)."""
    v = np.asarray([x for x in v if x == x], float)
    return float(v.mean()) if len(v) else float("nan")


FitPredict = Callable[[list[int], list[int]], np.ndarray]  # (train rows, test rows) -> p [len(test), 17]


def probe_fit_predict(x: np.ndarray, y: np.ndarray, keys: list[str], cfg: DiagnosisConfig) -> FitPredict:
    """Linear probes on study vectors x [N, F]."""

    def run(train: list[int], test: list[int]) -> np.ndarray:
        agents = fit_probes(x[train], y[train], [keys[i] for i in train], cfg)
        return agents.infer((x[test] - agents.mean) / agents.std)

    return run


def mil_fit_predict(feats: list, cfg: DiagnosisConfig) -> FitPredict:
    """MIL heads on the studies' slices (``diagnosis.head: mil``)."""
    from ml.agents.mil import train_mil

    def run(train: list[int], test: list[int]) -> np.ndarray:
        return train_mil([feats[i] for i in train], cfg).probabilities([feats[i] for i in test])

    return run


def dense_fit_predict(feats: list, truths: list, cfg: DiagnosisConfig) -> FitPredict:
    """The dense head (``diagnosis.head: dense``); the generator's boxes of the training rows only."""
    from ml.agents.dense_train import train_dense

    def run(train: list[int], test: list[int]) -> np.ndarray:
        agents = train_dense([feats[i] for i in train], cfg, [truths[i] for i in train])
        return agents.probabilities([feats[i] for i in test])

    return run


def cv_fit_predict(fit_predict: FitPredict, n: int, folds) -> np.ndarray:
    """Out-of-fold calibrated probabilities [N, 17] (NaN where a study was never tested)."""
    p = np.full((n, len(CONDITION_KEYS)), np.nan)
    for train, test in folds:
        if train and test:
            p[test] = fit_predict(list(train), list(test))
    return p


def cv_probabilities(x: np.ndarray, y: np.ndarray, keys: list[str], folds, cfg: DiagnosisConfig) -> np.ndarray:
    """Out-of-fold probabilities of linear probes on x [N, F] (also used for the baselines)."""
    return cv_fit_predict(probe_fit_predict(x, y, keys, cfg), len(x), folds)


def condition_table(y: np.ndarray, p: np.ndarray, keys: list[str], n_boot: int) -> dict[str, dict]:
    """Per condition: n, positives, AUROC and AUPRC with patient-bootstrap 95 % CIs."""
    out = {}
    groups = np.asarray(keys)
    for j, key in enumerate(CONDITION_KEYS):
        ok = (y[:, j] >= 0) & ~np.isnan(p[:, j])
        yj, pj = y[ok, j], p[ok, j]
        a = bootstrap_ci(yj, pj, auroc, n_boot, seed=j, groups=groups[ok])
        b = bootstrap_ci(yj, pj, auprc, n_boot, seed=j, groups=groups[ok])
        out[key] = {
            "n": int(ok.sum()),
            "positives": int((yj == 1).sum()),
            "auroc": a[0],
            "auroc_ci": [a[1], a[2]],
            "auprc": b[0],
            "auprc_ci": [b[1], b[2]],
            "prevalence": float((yj == 1).mean()) if len(yj) else float("nan"),
        }
    return out


def mean_auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over conditions of the AUROC on the rows with a label (not -1) and a probability."""
    return nanmean(
        auroc(y[(y[:, j] >= 0) & ~np.isnan(p[:, j]), j], p[(y[:, j] >= 0) & ~np.isnan(p[:, j]), j])
        for j in range(y.shape[1])
    )


def group_matrix(fit_predict: FitPredict, y, keys, attr: list[str], k: int, seed: int) -> dict[str, dict[str, float]]:
    """Train on the studies of one group value, test on each group (same group: k-fold CV inside)."""
    values = sorted(set(attr))
    out: dict[str, dict[str, float]] = {}
    for a in values:
        tr = [i for i, v in enumerate(attr) if v == a]
        out[a] = {}
        for b in values:
            te = [i for i, v in enumerate(attr) if v == b]
            if a == b:
                folds = [
                    ([tr[i] for i in f_tr], [tr[i] for i in f_te])
                    for f_tr, f_te in kfold_keys([keys[i] for i in tr], k, seed)
                ]
                p = cv_fit_predict(fit_predict, len(y), folds)
                out[a][b] = mean_auroc(y[te], p[te])
            else:
                out[a][b] = mean_auroc(y[te], fit_predict(tr, te))
    return out


def kfold_keys(keys: list[str], k: int, seed: int):
    """``kfold`` over bare patient keys (row i of the result's folds = ``keys[i]``)."""
    from ml.data.manifest import StudyEntry

    return kfold([StudyEntry(study_uid=str(i), patient_key=p, series=[]) for i, p in enumerate(keys)], k, seed)
