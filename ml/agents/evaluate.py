"""``python -m ml agents evaluate``: every agent family on held-out patients, metrics JSON + plots.

Protocol (all splits by patient, ``ml.data.splits``):

* **Diagnosis**: patient-level k-fold cross-validation of the probes (the probes, their
  temperatures and thresholds are fitted inside each training fold); out-of-fold probabilities
  pooled over folds; AUROC and AUPRC per condition with bootstrap 95 % CIs (patients resampled),
  labels -1 excluded. Repeated with the features restricted to each sequence set (T1 only,
  T2 only, other only, all); cross-manufacturer (train on one vendor's studies, test on each
  vendor; same vendor = CV inside it) and cross-cohort in the same way; baselines (random-init
  SpineFM of the same size, ImageNet MobileNetV2) through the same probes.
* **Localization**: the same folds; key-slice AUROC (slices of test studies, key slices of
  uncertain findings left out), box error (paper: mean |delta| of normalised coordinates) and
  IoU of the box head on the true key slices, top-1 key-slice hit rate, level and side accuracy
  of the end-to-end agent output.
* **Retrieval** (zero-shot, no training): every study queries the reports of all evaluated
  studies (and the reverse); Recall@1/5/10 and median rank; cross-orientation slice retrieval.

The cross-validation machinery (fit/predict per head, out-of-fold probabilities, per-condition
tables) is ``ml.agents.crossval``. The SpineFM checkpoint must not have seen these studies (use
data generated with another seed, or the patients its training held out): alignment trains on
reports, which carry the labels.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ml.agents.crossval import (
    FitPredict,
    condition_table,
    cv_fit_predict,
    cv_probabilities,
    dense_fit_predict,
    group_matrix,
    kfold_keys,
    mil_fit_predict,
    nanmean,
    probe_fit_predict,
)
from ml.agents.diagnosis import DiagnosisConfig, labels_matrix
from ml.agents.localization import norm_pre_box, truth_slices
from ml.agents.localization_train import slice_targets, train_localization
from ml.agents.metrics import auroc, box_error, box_iou, ranks_of_truth, recall_at
from ml.agents.retrieval import build_index
from ml.agents.slice_retrieval import axial_slices_through, cross_orientation_queries
from ml.agents.train import AgentsTrainConfig, Prepared, prepare
from ml.conditions import CONDITION_KEYS
from ml.data.splits import kfold

log = logging.getLogger(__name__)

SEQUENCE_SETS = {"T1 only": ("T1",), "T2 only": ("T2",), "other only": ("other",), "all": ("T1", "T2", "other")}


@dataclass
class EvalOptions:
    folds: int = 5
    test_fraction: float = 0.3
    split_seed: int = 0
    bootstrap_n: int = 1000
    baselines: list[str] = field(default_factory=lambda: ["random", "mobilenet"])
    quick: bool = False


# -- diagnosis ---------------------------------------------------------------------------------


def evaluate_diagnosis(prep: Prepared, cfg: DiagnosisConfig, opts: EvalOptions, folds) -> tuple[dict, np.ndarray]:
    feats, keys = prep.feats, [f.study.patient_key for f in prep.feats]
    y = labels_matrix(feats)

    def fitter(c: DiagnosisConfig, rows: list[int]) -> FitPredict:
        """The configured head on the studies ``rows`` (indices into the returned fit/predict are local)."""
        if c.head == "mil":
            return mil_fit_predict([feats[i] for i in rows], c)
        if c.head == "dense":
            return dense_fit_predict([feats[i] for i in rows], [prep.truths[i] for i in rows], c)
        xs = np.stack([feats[i].diagnosis_vector(c.feature, tuple(c.classes)) for i in rows])
        return probe_fit_predict(xs, y[rows], [keys[i] for i in rows], c)

    every = list(range(len(feats)))
    fp_all = fitter(cfg, every)
    p = cv_fit_predict(fp_all, len(feats), folds)
    res: dict = {
        "feature": {"linear": cfg.feature, "mil": "slices (MIL)", "dense": "MobileNetV2 cells (dense)"}[cfg.head],
        "head": cfg.head,
        "per_condition": condition_table(y, p, keys, opts.bootstrap_n),
    }
    res["mean_auroc"] = nanmean(v["auroc"] for v in res["per_condition"].values())
    res["mean_auprc"] = nanmean(v["auprc"] for v in res["per_condition"].values())
    res["mean_prevalence"] = nanmean(v["prevalence"] for v in res["per_condition"].values())
    if not opts.quick:
        res["sequence_sets"] = {}
        for name, classes in SEQUENCE_SETS.items():
            have = [i for i, f in enumerate(feats) if any(s.sequence_class in classes for s in f.study.series)]
            c2 = replace(cfg, classes=list(classes))
            sub_keys = [keys[i] for i in have]
            folds2 = kfold_keys(sub_keys, opts.folds, opts.split_seed)
            pf = cv_fit_predict(fitter(c2, have), len(have), folds2)
            table = condition_table(y[have], pf, sub_keys, 0)
            res["sequence_sets"][name] = {
                "n_studies": len(have),
                "mean_auroc": nanmean(v["auroc"] for v in table.values()),
                "per_condition": {k: v["auroc"] for k, v in table.items()},
            }
        vendors = [prep.entries[i].vendor or "?" for i in range(len(feats))]
        cohorts = [prep.entries[i].cohort or "?" for i in range(len(feats))]
        res["cross_vendor"] = group_matrix(fp_all, y, keys, vendors, opts.folds, opts.split_seed)
        res["cross_cohort"] = group_matrix(fp_all, y, keys, cohorts, opts.folds, opts.split_seed)
    return res, p


def evaluate_baselines(prep: Prepared, cfg: DiagnosisConfig, opts: EvalOptions, folds, studies) -> dict:
    """Mean CV AUROC of the same probes on other encoders' features."""
    from ml.agents.baselines import mobilenet_study_features, random_spinefm_features

    keys = [f.study.patient_key for f in prep.feats]
    y = labels_matrix(prep.feats)
    out: dict[str, dict] = {}

    def score(name: str, x: np.ndarray, seconds: float) -> None:
        p = cv_probabilities(x, y, keys, folds, cfg)
        table = condition_table(y, p, keys, 0)
        out[name] = {
            "mean_auroc": nanmean(v["auroc"] for v in table.values()),
            "per_condition": {k: v["auroc"] for k, v in table.items()},
            "feature_seconds": seconds,
        }
        log.info("baseline %s: mean AUROC %.3f", name, out[name]["mean_auroc"])

    for kind in ("case+slices", "slices", "case"):
        score(f"spinefm:{kind}", np.stack([f.diagnosis_vector(kind) for f in prep.feats]), 0.0)
    if "random" in opts.baselines:
        t = time.perf_counter()
        rf = random_spinefm_features(studies, prep.model)
        dt = time.perf_counter() - t
        for kind in ("case+slices", "slices"):
            score(f"random_init:{kind}", np.stack([f.diagnosis_vector(kind) for f in rf]), dt)
    if "mobilenet" in opts.baselines:
        t = time.perf_counter()
        xm = mobilenet_study_features(studies)
        score("mobilenet_v2_imagenet:slices", xm, time.perf_counter() - t)
    return out


# -- localization ------------------------------------------------------------------------------


def evaluate_localization(prep: Prepared, cfg, folds) -> dict:
    from ml.agents.analysis import ConditionResult

    nc = len(CONDITION_KEYS)
    slice_y: list[list[int]] = [[] for _ in range(nc)]
    slice_p: list[list[float]] = [[] for _ in range(nc)]
    errs, ious, err_cond = [], [], []
    top1_hits, level_hits, side_hits = [], [], []
    prior_errs, prior_ious = [], []
    for train, test in folds:
        agents = train_localization([prep.feats[i] for i in train], [prep.truths[i] for i in train], cfg)
        prior = _mean_boxes(prep, train)  # the box head's reference: the condition's mean training box
        for i in test:
            feat, truth = prep.feats[i], prep.truths[i]
            if truth is None:
                continue
            scores, boxes = agents.infer(agents.pre(feat))
            for si, (_, y) in enumerate(slice_targets(feat, truth)):
                for j in range(nc):
                    if not agents.trained[j]:
                        continue
                    keep = y[:, j] >= 0
                    slice_y[j] += y[keep, j].tolist()
                    slice_p[j] += scores[si][keep, j].tolist()
            ts = truth_slices(feat, truth)
            for (si, k, cond), item in ts.items():
                if item["label"] != 1:
                    continue
                s = feat.study.series[si]
                j = CONDITION_KEYS.index(cond)
                pre = boxes[si][k, j] * s.geometry.size
                pred = np.asarray(s.geometry.normalise(s.geometry.to_original(pre)))
                true = np.asarray(s.geometry.normalise(item["box"]))
                errs.append(float(box_error(pred[None], true[None])[0]))
                mean_box = prior.get(f"{cond}|{s.plane}", prior.get(cond, prior.get("*")))
                base = np.asarray(s.geometry.normalise(s.geometry.to_original(mean_box * s.geometry.size)))
                prior_errs.append(float(box_error(base[None], true[None])[0]))
                prior_ious.append(float(box_iou(base[None], true[None])[0]))
                ious.append(float(box_iou(pred[None], true[None])[0]))
                err_cond.append(cond)
            present = {f["condition"] for f in truth["findings"] if f["label"] == 1}
            for cond in present:
                j = CONDITION_KEYS.index(cond)
                if not agents.trained[j]:
                    continue
                keyset = {(si, k) for (si, k, c), it in ts.items() if c == cond and it["label"] == 1}
                best = max(
                    ((float(sc[k, j]), si, k) for si, sc in enumerate(scores) for k in range(sc.shape[0])),
                )
                top1_hits.append((best[1], best[2]) in keyset)
                r = agents.post(feat, scores, boxes, ConditionResult(cond, 1.0, True, 0.5))
                levels = {f["level"] for f in truth["findings"] if f["condition"] == cond and f["label"] == 1}
                level_hits.append(r.level in levels)
                sides = {f["side"] for f in truth["findings"] if f["condition"] == cond and f["label"] == 1}
                sides.discard(None)
                if sides and cond in agents.sided:
                    ok = r.side in sides or ("bilateral" in sides and r.side in ("left", "right"))
                    side_hits.append(ok)
    per = {}
    for j, key in enumerate(CONDITION_KEYS):
        e = [x for x, c in zip(errs, err_cond, strict=True) if c == key]
        u = [x for x, c in zip(ious, err_cond, strict=True) if c == key]
        per[key] = {
            "key_slice_auroc": auroc(np.array(slice_y[j]), np.array(slice_p[j])) if slice_y[j] else float("nan"),
            "key_slices_positive": int(np.sum(slice_y[j])) if slice_y[j] else 0,
            "box_error": float(np.mean(e)) if e else float("nan"),
            "iou": float(np.mean(u)) if u else float("nan"),
            "boxes": len(e),
        }
    ally = np.concatenate([np.array(v) for v in slice_y if v]) if any(slice_y) else np.zeros(0)
    allp = np.concatenate([np.array(v) for v in slice_p if v]) if any(slice_p) else np.zeros(0)
    return {
        "per_condition": per,
        "key_slice_auroc_mean": nanmean(v["key_slice_auroc"] for v in per.values()),
        "key_slice_auroc_pooled": auroc(ally, allp) if len(ally) else float("nan"),
        "box_error_mean": float(np.mean(errs)) if errs else float("nan"),
        "box_error_median": float(np.median(errs)) if errs else float("nan"),
        "iou_mean": float(np.mean(ious)) if ious else float("nan"),
        "iou_at_0.5": float(np.mean(np.array(ious) >= 0.5)) if ious else float("nan"),
        "n_boxes": len(errs),
        "mean_box_baseline": {
            "box_error_mean": float(np.mean(prior_errs)) if prior_errs else float("nan"),
            "iou_mean": float(np.mean(prior_ious)) if prior_ious else float("nan"),
        },
        "top1_key_slice_hit": float(np.mean(top1_hits)) if top1_hits else float("nan"),
        "level_accuracy": float(np.mean(level_hits)) if level_hits else float("nan"),
        "side_accuracy": float(np.mean(side_hits)) if side_hits else float("nan"),
        "n_present_findings": len(top1_hits),
        "_box_errors": errs,
        "_ious": ious,
    }


def _mean_boxes(prep: Prepared, idx) -> dict[str, np.ndarray]:
    """Mean normalised preprocessed box per (condition, plane), per condition and overall ("*")
    over the key slices of present findings in the studies ``idx``."""
    acc: dict[str, list[np.ndarray]] = {}
    for i in idx:
        for (si, _, cond), item in truth_slices(prep.feats[i], prep.truths[i]).items():
            if item["label"] == 1:
                box = norm_pre_box(prep.feats[i].study.series[si], item["box"])
                plane = prep.feats[i].study.series[si].plane
                for key in (f"{cond}|{plane}", cond, "*"):
                    acc.setdefault(key, []).append(box)
    return {k: np.mean(v, 0) for k, v in acc.items()}


# -- retrieval ---------------------------------------------------------------------------------


def evaluate_retrieval(prep: Prepared, cfg) -> dict:
    index = build_index(prep.feats, prep.model, cfg)
    keep = [f for f in prep.feats if f.study.report]
    s2r = index.report_scores(keep)  # [N, N]
    r2s = index.study_scores(index.report_emb)  # [N, N]
    truth = list(range(len(keep)))
    ranks_s2r = ranks_of_truth(s2r, truth)
    ranks_r2s = ranks_of_truth(r2s, truth)
    n = len(keep)
    chance = {f"R@{k}": min(1.0, k / n) for k in (1, 5, 10)}
    # sagittal -> axial: a finding's point on its sagittal T2 key slice -> the axial slices of the
    # study by geometry (what the agents serve), beside the zero-shot cosine of SpineFM's slice
    # features of the whole sagittal slice (the reference: a slice shows every level)
    hits_geo, hits_feat, chance_co, ranks_co = [], [], [], []
    for f, t in zip(prep.feats, prep.truths, strict=True):
        for q in cross_orientation_queries(f.study, t):
            is_same = np.asarray(q.same)
            ranked = [k for si, k, _ in axial_slices_through(f.study.series, q.point_mm) if si == q.axial]
            if not ranked:  # the axial series has no geometry
                continue
            hits_geo.append(bool(is_same[ranked[0]]))
            ranks_co.append(int(np.flatnonzero(is_same[ranked])[0]) + 1)
            qf = f.embedding.series[q.sagittal].slices[q.slice]
            cands = f.embedding.series[q.axial].slices
            sc = (cands / np.maximum(np.linalg.norm(cands, axis=1, keepdims=True), 1e-12)) @ (
                qf / max(np.linalg.norm(qf), 1e-12)
            )
            hits_feat.append(bool(is_same[int(np.argmax(sc))]))
            chance_co.append(float(is_same.mean()))
    return {
        "candidates": n,
        "study_to_report": recall_at(ranks_s2r),
        "report_to_study": recall_at(ranks_r2s),
        "chance": chance,
        "cross_orientation": {
            "queries": len(hits_geo),
            "top1_same_level": float(np.mean(hits_geo)) if hits_geo else float("nan"),
            "top1_same_level_features": float(np.mean(hits_feat)) if hits_feat else float("nan"),
            "chance_top1": float(np.mean(chance_co)) if chance_co else float("nan"),
            "median_rank_first_same_level": float(np.median(ranks_co)) if ranks_co else float("nan"),
        },
        "_ranks_s2r": ranks_s2r.tolist(),
        "_ranks_r2s": ranks_r2s.tolist(),
    }


# -- driver ------------------------------------------------------------------------------------


def evaluate(manifest, spinefm, out: str | Path, cfg: AgentsTrainConfig, opts: EvalOptions) -> dict:
    from ml.agents.plots import write_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    prep = prepare(manifest, spinefm, keep_pixels="mobilenet" in opts.baselines, diagnosis=cfg.diagnosis)
    times["encode"] = time.perf_counter() - t
    folds = kfold(prep.entries, opts.folds, opts.split_seed)
    metrics: dict = {"manifest": str(manifest), "spinefm": str(spinefm), "n_studies": len(prep.feats)}
    metrics["options"] = asdict(opts)
    metrics["config"] = {"diagnosis": asdict(cfg.diagnosis), "localization": asdict(cfg.localization)}
    fold_keys = [{prep.entries[i].patient_key for i in te} for _, te in folds]
    metrics["folds_patient_disjoint"] = all(not (a & b) for i, a in enumerate(fold_keys) for b in fold_keys[i + 1 :])

    t = time.perf_counter()
    metrics["diagnosis"], p_oof = evaluate_diagnosis(prep, cfg.diagnosis, opts, folds)
    times["diagnosis"] = time.perf_counter() - t
    if opts.baselines is not None:
        t = time.perf_counter()
        metrics["baselines"] = evaluate_baselines(prep, cfg.diagnosis, opts, folds, [f.study for f in prep.feats])
        times["baselines"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics["localization"] = evaluate_localization(prep, cfg.localization, folds)
    times["localization"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics["retrieval"] = evaluate_retrieval(prep, cfg.retrieval)
    times["retrieval"] = time.perf_counter() - t
    metrics["seconds"] = times
    write_plots(out, metrics, labels_matrix(prep.feats), p_oof)
    metrics["summary"] = {
        "studies": len(prep.feats),
        "diagnosis_mean_auroc": metrics["diagnosis"]["mean_auroc"],
        "key_slice_auroc_mean": metrics["localization"]["key_slice_auroc_mean"],
        "box_error_mean": metrics["localization"]["box_error_mean"],
        "iou_mean": metrics["localization"]["iou_mean"],
        "study_to_report_R@5": metrics["retrieval"]["study_to_report"]["R@5"],
        "report_to_study_R@5": metrics["retrieval"]["report_to_study"]["R@5"],
        "seconds": times,
    }
    clean = json.loads(json.dumps(metrics, default=float))
    for fam in ("localization", "retrieval"):
        for k in [k for k in clean[fam] if k.startswith("_")]:
            del clean[fam][k]
    (out / "metrics.json").write_text(json.dumps(clean, indent=1, allow_nan=True))
    return clean
