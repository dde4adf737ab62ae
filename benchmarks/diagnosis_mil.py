"""Diagnosis head comparison: the linear probe on mean-pooled slice features vs the MIL head
over the slices (``diagnosis.head: mil``), patient-level 5-fold CV on the same SpineFM features.

Uses the slice-feature cache written by ``benchmarks/report_agent_eval.py`` (T1 and T2 series, up
to 8 slices each, 220 generated studies), so no image is encoded here.

Only the patients SpineFM's training held out are cross-validated: alignment trains on the
reports, which carry the labels, so a study whose report SpineFM saw would leak its label into
its features (``ml.agents.evaluate`` has the same rule). The held-out set is recomputed from the
checkpoint's own recorded split (``train.data.test_fraction`` / ``split_seed`` in its
``config.json``)::

    .venv/bin/python benchmarks/diagnosis_mil.py [--cache .cache/bench/report_agent/embeddings_s8.pkl]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def study_features(rows: list[dict]) -> list:
    """Rows of the report benchmark's cache -> ``StudyFeatures`` (slices only; no pixels)."""
    from ml.agents.features import StudyFeatures
    from ml.data.types import SeriesData, StudyData, labels_vector
    from ml.spinefm.embed import CaseEmbedding, SeriesEmbedding

    out = []
    for i, r in enumerate(rows):
        series, embs = [], []
        for cls in ("T1", "T2"):
            for k, sl in enumerate(r[cls.lower()]):
                uid = f"{i}.{cls}.{k}"
                series.append(SeriesData(uid, cls, np.zeros((len(sl), 1, 1), np.float32), plane="sagittal"))
                embs.append(SeriesEmbedding(uid, cls, cls, np.zeros(1), sl, np.ones(len(sl)) / len(sl), None))
        study = StudyData(str(i), r["patient_key"], series, labels=labels_vector(r["labels"]))
        out.append(StudyFeatures(study, CaseEmbedding(str(i), np.zeros(1), {}, embs)))
    return out


def held_out_rows(rows: list[dict], spinefm: Path) -> tuple[list[int], dict]:
    """Indices of ``rows`` whose patients the checkpoint at ``spinefm`` never trained on."""
    import json

    from ml.data.splits import patient_fold

    cfg_path = spinefm / "config.json"
    if not cfg_path.exists():
        raise SystemExit(f"{cfg_path} not found: the held-out patients are defined by the checkpoint's split")
    data = json.loads(cfg_path.read_text()).get("train", {}).get("data", {})
    if "test_fraction" not in data:
        raise SystemExit(f"{cfg_path} records no data split: cannot tell which studies SpineFM saw")
    frac, seed = float(data["test_fraction"]), int(data.get("split_seed", 0))
    buckets = round(frac * 100)  # the rule of ml.data.splits.train_test_split
    keep = [i for i, r in enumerate(rows) if patient_fold(r["patient_key"], 100, seed) < buckets]
    return keep, {"test_fraction": frac, "split_seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=REPO / ".cache/bench/report_agent/embeddings_s8.pkl")
    ap.add_argument(
        "--spinefm",
        type=Path,
        default=REPO / ".cache/bench/spinefm_run2/synth_conditioned/final",
        help="the checkpoint that encoded the cache (its config.json records the held-out patients)",
    )
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    if not args.cache.exists():
        raise SystemExit(f"{args.cache} not found: run benchmarks/report_agent_eval.py first (it writes it)")

    from ml.agents.crossval import cv_fit_predict, kfold_keys, mil_fit_predict, probe_fit_predict
    from ml.agents.diagnosis import DiagnosisConfig, labels_matrix
    from ml.agents.metrics import auroc
    from ml.conditions import CONDITION_KEYS

    rows = pickle.loads(args.cache.read_bytes())
    keep, split = held_out_rows(rows, args.spinefm)
    print(f"{len(keep)} of {len(rows)} studies held out of SpineFM's training ({split}); CV over those only")
    feats = study_features([rows[i] for i in keep])
    keys = [f.study.patient_key for f in feats]
    y = labels_matrix(feats)
    folds = kfold_keys(keys, args.folds, 0)
    x = np.stack([f.diagnosis_vector("slices") for f in feats])  # per-class mean slice features
    runs = {
        "linear probe (mean slices)": probe_fit_predict(x, y, keys, DiagnosisConfig(feature="slices")),
        "MIL (gated attention)": mil_fit_predict(feats, DiagnosisConfig(head="mil")),
    }
    table = {}
    for name, fp in runs.items():
        t0 = time.perf_counter()
        p = cv_fit_predict(fp, len(feats), folds)
        table[name] = [auroc(y[y[:, j] >= 0, j], p[y[:, j] >= 0, j]) for j in range(len(CONDITION_KEYS))]
        print(
            f"{name}: mean AUROC {np.nanmean(table[name]):.3f} ({time.perf_counter() - t0:.1f} s, {len(feats)} studies)"
        )
    print(f"{'condition':<28}" + "".join(f"{n.split(' ')[0]:>10}" for n in runs))
    for j, k in enumerate(CONDITION_KEYS):
        print(f"{k:<28}" + "".join(f"{table[n][j]:>10.3f}" for n in runs))


if __name__ == "__main__":
    main()
