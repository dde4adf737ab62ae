"""Data preparation of ``report_agent_eval.py``: the studies' slice features (cached), the
diagnosis probes' cross-fitted calls, and the Localization Agents' levels and sides (cached), all
that the report variants are trained and drafted from.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("report_agent_eval")


def embed_all(data: Path, runs: Path, max_slices: int, cache: Path) -> list[dict]:
    """Per study: T1/T2 slice features, report, labels, region, patient key (cached)."""
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    import torch

    from ml.data.cache import SliceCache
    from ml.data.datasets import subsample_indices
    from ml.data.loader import StudyLoader, load_manifest
    from ml.data.preprocess import PreprocessConfig
    from ml.spinefm.embed import embed_studies
    from ml.spinefm.io import load_spinefm

    torch.set_num_threads(2)
    studies, base = load_manifest(data / "manifest.jsonl")
    model = load_spinefm(runs / "synth_conditioned" / "final")
    loader = StudyLoader(base, PreprocessConfig(size=model.img_size), SliceCache(runs / "cache"))
    out: list[dict] = []
    t0 = time.perf_counter()
    for i in range(0, len(studies), 16):
        chunk = []
        for st in studies[i : i + 16]:
            d = loader.load(st, classes=("T1", "T2"))
            for s in d.series:
                s.pixels = s.pixels[subsample_indices(len(s.pixels), max_slices)]
            chunk.append((st, d))
        embs = embed_studies([d for _, d in chunk], model, batch_size=256)
        for (st, _), e in zip(chunk, embs, strict=True):
            out.append(
                {
                    "patient_key": st.patient_key,
                    "region": st.region or "lumbar",
                    "report": st.report or "",
                    "labels": dict(st.labels),
                    "t1": [s.slices.astype(np.float32) for s in e.series if s.sequence_class == "T1"],
                    "t2": [s.slices.astype(np.float32) for s in e.series if s.sequence_class == "T2"],
                }
            )
        log.info("embedded %d/%d studies (%.1f s)", len(out), len(studies), time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def features(row: dict) -> np.ndarray:
    """Mean slice features of T1 and of T2, concatenated [2 * D]."""
    d = (row["t1"] or row["t2"])[0].shape[1]
    parts = [np.concatenate(row[c]).mean(0) if row[c] else np.zeros(d, np.float32) for c in ("t1", "t2")]
    return np.concatenate(parts)


def diagnosis_predictions(x: np.ndarray, y: np.ndarray, tr: list[int], te: list[int], seed: int = 0):
    """Cross-fitted probabilities for training rows, full-fit ones for test rows, thresholds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    n, k = y.shape
    prob = np.zeros((n, k))
    thr = np.full(k, 0.5)

    def fit_predict(a: list[int], b: list[int], j: int) -> np.ndarray:
        a = [i for i in a if y[i, j] >= 0]
        if len({int(y[i, j]) for i in a}) < 2:
            return np.full(len(b), float(np.mean([y[i, j] == 1 for i in a]) if a else 0.0))
        sc = StandardScaler().fit(x[a])
        clf = LogisticRegression(C=0.1, max_iter=3000).fit(sc.transform(x[a]), y[a, j])
        return clf.predict_proba(sc.transform(x[b]))[:, 1]

    folds = list(KFold(5, shuffle=True, random_state=seed).split(tr))
    for j in range(k):
        for a_idx, b_idx in folds:
            a = [tr[i] for i in a_idx]
            b = [tr[i] for i in b_idx]
            prob[b, j] = fit_predict(a, b, j)
        prob[te, j] = fit_predict(tr, te, j)
        m = [i for i in tr if y[i, j] >= 0]
        yy, pp = (y[m, j] == 1), prob[m, j]
        if 0 < yy.sum() < len(yy):
            cands = np.unique(pp)
            j_stat = [(pp[yy] >= t).mean() - (pp[~yy] >= t).mean() for t in cands]
            thr[j] = float(cands[int(np.argmax(j_stat))])
    return prob, thr


def conditions_from(prob_row: np.ndarray, thr: np.ndarray, sites: dict | None = None):  # type: ignore[no-untyped-def]
    """The diagnosis calls as the agents return them; ``sites`` (condition -> [level, side]) adds
    the localization agents' level and side to the conditions called present."""
    from ml.agents.analysis import ConditionResult
    from ml.conditions import CONDITION_KEYS

    out = [
        ConditionResult(k, float(prob_row[j]), bool(prob_row[j] >= thr[j]), float(thr[j]))
        for j, k in enumerate(CONDITION_KEYS)
    ]
    for c in out:
        if c.present and sites and c.condition in sites:
            c.level, c.side = sites[c.condition]
    return out


def localization_sites(
    data: Path, runs: Path, tr: list[int], prob: np.ndarray, thr: np.ndarray, cache: Path
) -> dict[str, list[dict[str, list[str]]]]:
    """Levels and sides for the <localization> tokens, per study: ``pred`` from the Localization
    Agents (``ml.agents.localization``, trained on the training studies' ground truth and applied to
    each study's conditions the probes call present, as the app's pipeline does) and ``truth``
    (the first present finding of each condition, for the ground-truth-token row). Cached as JSON:
    it needs every slice of every study encoded (the report rows keep only 8 per series)."""
    calls = (prob >= thr).astype(int).tolist()  # what gets localised: a changed probe run invalidates the cache
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("train") == list(tr) and saved.get("calls") == calls:
            return saved
        log.info("localization cache %s was made for other studies or calls: recomputing", cache)
    from ml.agents.localization_train import train_localization
    from ml.agents.train import prepare

    t0 = time.perf_counter()
    prep = prepare(data / "manifest.jsonl", runs / "synth_conditioned" / "final", cache_dir=runs / "cache")
    log.info("localization: %d studies encoded (%.1f s)", len(prep.feats), time.perf_counter() - t0)
    loc = train_localization([prep.feats[i] for i in tr], [prep.truths[i] for i in tr])
    log.info("localization agents trained on %d studies (%.1f s)", len(tr), time.perf_counter() - t0)
    pred, truth = [], []
    for i, feat in enumerate(prep.feats):
        called = [c for c in conditions_from(prob[i], thr) if c.present]
        loc.localize(feat, called)
        pred.append({c.condition: [c.level, c.side or ""] for c in called if c.level})
        first: dict[str, list[str]] = {}
        for f in (prep.truths[i] or {}).get("findings", []):
            if f["label"] == 1 and f.get("level"):
                first.setdefault(f["condition"], [f["level"], f.get("side") or ""])
        truth.append(first)
    out = {"pred": pred, "truth": truth, "train": list(tr), "calls": calls, "seconds": time.perf_counter() - t0}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out
