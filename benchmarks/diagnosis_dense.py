"""Dense diagnosis head (``diagnosis.head: dense``) on held-out generated studies: whole slices
against spine crops, every axial slice against one per disc, chosen by cross-validation inside
the training set; the test sets only score the rows (every row is printed, none is picked on them).

Train and test sets are separate ``ml synth`` datasets (different seeds, so disjoint patients)::

    python -m ml synth --studies 140 --seed 7201 --prevalence enriched --id-prefix RTR --matrix-scale 0.5 \\
        --series sag_t1,sag_t2,sag_stir,ax_t2 --out .cache/agents_dense/rtrain --workers 2
    python -m ml synth --studies 100 --seed 7303 --prevalence enriched --id-prefix RTF --matrix-scale 0.5 \\
        --series sag_t1,sag_t2,sag_stir,ax_t2 --out .cache/agents_dense/rtest2 --workers 2
    nice -n 10 .venv/bin/python benchmarks/diagnosis_dense.py --train .cache/agents_dense/rtrain \\
        --test .cache/agents_dense/rtest2 --cv 3

Variants (``--variants``): ``full`` (whole preprocessed slices, all axial slices: the previous
default), ``full+disc`` (one axial slice per disc), ``crop`` (spine crops, ``dense_crop``),
``crop+disc``; ``+s16`` adds stride-16 cells. Trunk cells are cached next to each dataset
(``dense_cells_*.pkl``); the disc variants reuse the cells of their parent. AUROC per condition
with patient-bootstrap 95 % CIs; JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def base_cfg(crop: bool, size: int):
    from ml.agents.diagnosis import DiagnosisConfig

    return DiagnosisConfig(head="dense", dense_size=size, dense_crop=crop, dense_axial="all")


def variant_cfg(name: str, size: int):
    from dataclasses import replace

    parts = name.split("+")
    return replace(
        base_cfg(parts[0] == "crop", size),
        dense_axial="disc" if "disc" in parts else "all",
        dense_stride=16 if "s16" in parts else 32,
    )


def load(data: Path, cfg) -> tuple[list, list, dict]:
    """StudyFeatures with the dense cells of ``cfg`` (cached) and no SpineFM embedding; ground
    truths; per study the views of one axial slice per disc (indices into the cells)."""
    import torch

    from ml.agents.dense import dense_cells, load_trunk, view_key
    from ml.agents.dense_views import axial_indices
    from ml.agents.features import StudyFeatures
    from ml.agents.localization import load_truth
    from ml.data.loader import StudyLoader, load_manifest
    from ml.data.preprocess import PreprocessConfig

    torch.set_num_threads(1)  # on the shared 2 cores one thread is 2-3x faster than two (oversubscription)
    entries, base = load_manifest(data / "manifest.jsonl")
    # keyed by every setting that decides which pixels the trunk saw (the axial mode included)
    cache = data / f"dense_cells_v4_{re.sub(r'[^0-9A-Za-z.]+', '_', view_key(cfg))}.pkl"
    cells = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    loader = StudyLoader(base, PreprocessConfig(size=cfg.dense_size))
    disc_cfg = variant_cfg("x+disc", cfg.dense_size)
    trunk = None
    feats, truths, disc = [], [], {}
    t0 = time.perf_counter()
    for e in entries:
        st = loader.load(e, geometry=True)
        f = StudyFeatures(st, None)  # type: ignore[arg-type]
        if e.study_uid in cells:
            f.extras["dense"] = cells[e.study_uid]
        else:
            trunk = trunk or load_trunk()
            cells[e.study_uid] = dense_cells(f, cfg, trunk)
        chosen = {(si, k) for si, s in enumerate(st.series) if s.plane == "axial" for k in axial_indices(s, disc_cfg)}
        views = f.extras["dense"]["views"]
        disc[e.study_uid] = [i for i, (p, si, k) in enumerate(views) if p == 0 or (si, k) in chosen]
        for s in st.series:  # a new empty array: a view ([:0]) would keep the whole volume alive
            s.pixels = np.empty((0, *s.pixels.shape[1:]), s.pixels.dtype)
        feats.append(f)
        truths.append(load_truth(base / e.ground_truth) if e.ground_truth else None)
    if trunk is not None:
        cache.write_bytes(pickle.dumps(cells))
    logging.info("%s (%s): %d studies in %.0f s", data, cache.name, len(feats), time.perf_counter() - t0)
    return feats, truths, disc


def with_views(feats: list, disc: dict, cfg) -> list:
    """The same studies seeing only the disc views (``cfg.dense_axial == 'disc'``) or all."""
    from ml.agents.dense import subset_views
    from ml.agents.features import StudyFeatures

    if cfg.dense_axial != "disc":
        return feats
    out = []
    for f in feats:
        g = StudyFeatures(f.study, None)  # type: ignore[arg-type]
        g.extras["dense"] = subset_views(f.extras["dense"], disc[f.study.study_uid], cfg)
        out.append(g)
    return out


def table(y: np.ndarray, p: np.ndarray, keys: list[str], n_boot: int) -> dict:
    from ml.agents.crossval import condition_table

    t = condition_table(y, p, keys, n_boot)
    mean = float(np.nanmean([v["auroc"] for v in t.values()]))
    boot = boot_mean(y, p, n_boot)
    return {"mean_auroc": mean, "mean_auroc_ci": boot, "per_condition": t}


def boot_means(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """Mean AUROC over conditions on ``n_boot`` patient-bootstrap resamples (studies resampled
    together; the same resamples for the same ``seed``, so two variants can be paired)."""
    from ml.agents.metrics import auroc

    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        vals = []
        for j in range(y.shape[1]):
            known = y[i, j] >= 0
            yy = y[i, j][known]
            if 0 < yy.sum() < len(yy):
                vals.append(auroc(yy, p[i, j][known]))
        means.append(np.mean(vals))
    return np.asarray(means)


def boot_mean(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int = 0) -> list[float]:
    """Patient-bootstrap 95 % CI of the mean AUROC over conditions."""
    means = boot_means(y, p, n_boot, seed)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def cv_score(feats: list, truths: list, cfg, k: int) -> float:
    """Mean AUROC of ``k``-fold patient cross-validation inside the training set."""
    from ml.agents.dense_train import train_dense
    from ml.agents.diagnosis import labels_matrix
    from ml.agents.metrics import auroc
    from ml.data.splits import patient_fold

    fold = np.array([patient_fold(f.study.patient_key, k, 11) for f in feats])
    y = labels_matrix(feats)
    p = np.zeros(y.shape)
    for i in range(k):
        tr, te = np.flatnonzero(fold != i), np.flatnonzero(fold == i)
        agents = train_dense([feats[j] for j in tr], cfg, [truths[j] for j in tr])
        p[te] = agents.probabilities([feats[j] for j in te])
    vals = []
    for j in range(y.shape[1]):
        known = y[:, j] >= 0
        if 0 < y[known, j].sum() < known.sum():
            vals.append(auroc(y[known, j], p[known, j]))
    return float(np.mean(vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, nargs="+", default=[REPO / ".cache/agents_dense/rtrain"])
    ap.add_argument("--test", type=Path, nargs="+", default=[REPO / ".cache/agents_dense/rtest2"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--variants", default="full,full+disc,crop,crop+disc")
    ap.add_argument("--cv", type=int, default=0, help="k-fold CV inside the training set to rank the variants")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / ".cache/agents_dense/metrics_crops.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from ml.agents.dense_train import train_dense
    from ml.agents.diagnosis import labels_matrix
    from ml.conditions import CONDITION_KEYS

    names = args.variants.split(",")
    data: dict[bool, dict] = {}
    for crop in sorted({n.startswith("crop") for n in names}):
        cfg = base_cfg(crop, args.size)
        parts = [load(t, cfg) for t in args.train]
        train = (
            [f for p in parts for f in p[0]],
            [t for p in parts for t in p[1]],
            {k: v for p in parts for k, v in p[2].items()},
        )
        data[crop] = {"train": train, "test": [load(t, cfg) for t in args.test]}
    tr_keys = {f.study.patient_key for f in data[next(iter(data))]["train"][0]}
    for t in data[next(iter(data))]["test"]:
        if tr_keys & {f.study.patient_key for f in t[0]}:
            raise SystemExit("train and test share patients: use different --id-prefix / seeds")
    out: dict = {
        "train": [str(t) for t in args.train],
        "test": [str(t) for t in args.test],
        "cv_folds": args.cv,
        "rows": {},
    }
    probs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for name in names:
        cfg = variant_cfg(name, args.size)
        tr, tr_truth, tr_disc = data[cfg.dense_crop]["train"]
        tr = with_views(tr, tr_disc, cfg)
        row: dict = {"n_train": len(tr)}
        if args.cv:
            t0 = time.perf_counter()
            row["cv_mean_auroc"] = cv_score(tr, tr_truth, cfg, args.cv)
            logging.info(
                "%s: %d-fold CV mean AUROC %.3f (%.0f s)", name, args.cv, row["cv_mean_auroc"], time.perf_counter() - t0
            )
        t0 = time.perf_counter()
        agents = train_dense(tr, cfg, tr_truth)
        row["train_seconds"] = round(time.perf_counter() - t0, 1)
        row["test"] = {}
        for path, (te, _, te_disc) in zip(args.test, data[cfg.dense_crop]["test"], strict=True):
            te = with_views(te, te_disc, cfg)
            y = labels_matrix(te)
            p = agents.probabilities(te)
            probs.setdefault(path.name, {})[name] = (y, p)
            row["test"][path.name] = table(y, p, [f.study.patient_key for f in te], args.boot)
            row["test"][path.name]["n_test"] = len(te)
            logging.info("%s on %s: mean AUROC %.3f", name, path.name, row["test"][path.name]["mean_auroc"])
        out["rows"][name] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=float))
    for test, by in probs.items():  # paired: each variant minus the first, on the same resamples
        y0, p0 = by[names[0]]
        base = boot_means(y0, p0, args.boot, seed=1)
        for n in names[1:]:
            d = boot_means(*by[n], args.boot, seed=1) - base
            out["rows"][n]["test"][test]["delta_vs_" + names[0]] = [
                float(np.mean(d)),
                float(np.percentile(d, 2.5)),
                float(np.percentile(d, 97.5)),
            ]
    args.out.write_text(json.dumps(out, indent=1, default=float))
    if args.cv:
        out["chosen_by_cv"] = max(names, key=lambda n: out["rows"][n]["cv_mean_auroc"])
        args.out.write_text(json.dumps(out, indent=1, default=float))
        print("chosen by CV inside the training set:", out["chosen_by_cv"])
    for path in args.test:
        print(f"\n{path}")
        print(f"{'condition':<24}" + "".join(f"{n:>22}" for n in names))
        for k in CONDITION_KEYS:
            cells = []
            for n in names:
                v = out["rows"][n]["test"][path.name]["per_condition"][k]
                cells.append(f"{v['auroc']:.2f} [{v['auroc_ci'][0]:.2f},{v['auroc_ci'][1]:.2f}]")
            print(f"{k:<24}" + "".join(f"{c:>22}" for c in cells))
        means = []
        for n in names:
            r = out["rows"][n]["test"][path.name]
            means.append(f"{r['mean_auroc']:.3f} [{r['mean_auroc_ci'][0]:.3f},{r['mean_auroc_ci'][1]:.3f}]")
        print(f"{'mean':<24}" + "".join(f"{m:>22}" for m in means))
        deltas = [out["rows"][n]["test"][path.name].get("delta_vs_" + names[0]) for n in names]
        cells = [f"{d[0]:+.3f} [{d[1]:+.3f},{d[2]:+.3f}]" if d else "" for d in deltas]
        print(f"{'paired delta vs ' + names[0]:<24}" + "".join(f"{c:>22}" for c in cells))
    if args.cv:
        print(f"{'CV (train)':<24}" + "".join(f"{out['rows'][n]['cv_mean_auroc']:>22.3f}" for n in names))


if __name__ == "__main__":
    main()
