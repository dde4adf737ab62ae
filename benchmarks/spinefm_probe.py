"""Measure what SpineFM learnt: linear probes of case embeddings for the 17 conditions.

    .venv/bin/python benchmarks/spinefm_probe.py .cache/bench/spinefm

Reads the runs written by ``benchmarks/spinefm_cpu_train.py``. Probes are logistic regressions
trained on embeddings of the training patients and scored (AUROC) on held-out patients that no
training stage saw (same patient-level split as training). Uncertain labels (-1) are excluded.
Compares: SpineFM vs a randomly initialised SpineFM of the same size; T1-only vs T2-only case
embeddings per condition (the paper's Fig. 3c analogue); and, on other-class series only, the
synthesizer ablation (T1 alone, T2 alone, scalar router, input-conditioned router).
Writes OUT/probe.json and docs/images/spinefm_probe.png, docs/images/spinefm_synth_ablation.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def auroc_per_condition(xtr, ytr, xte, yte) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from ml.conditions import CONDITION_KEYS

    out = {}
    for j, key in enumerate(CONDITION_KEYS):
        tr, te = ytr[:, j] >= 0, yte[:, j] >= 0
        if len(set(ytr[tr, j])) < 2 or len(set(yte[te, j])) < 2:
            continue  # not evaluable: one class only
        scaler = StandardScaler().fit(xtr[tr])
        clf = LogisticRegression(C=0.1, max_iter=3000).fit(scaler.transform(xtr[tr]), ytr[tr, j])
        out[key] = float(roc_auc_score(yte[te, j], clf.predict_proba(scaler.transform(xte[te]))[:, 1]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default RUNS/data)")
    ap.add_argument("--random-seeds", type=int, default=3, help="random-init baselines to average")
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--max-slices", type=int, default=8)
    ap.add_argument("--images", type=Path, default=REPO / "docs" / "images")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)
    from ml.data.cache import SliceCache
    from ml.data.datasets import subsample_indices
    from ml.data.loader import StudyLoader, load_manifest
    from ml.data.preprocess import PreprocessConfig
    from ml.data.splits import train_test_split
    from ml.spinefm.embed import embed_studies
    from ml.spinefm.io import load_spinefm
    from ml.spinefm.model import SpineFM

    t0 = time.time()
    studies, base = load_manifest((args.data or args.runs / "data") / "manifest.jsonl")
    tr_idx, te_idx = train_test_split(studies, args.test_fraction, 0)
    main_model = load_spinefm(args.runs / "synth_conditioned" / "final")
    loader = StudyLoader(base, PreprocessConfig(size=main_model.img_size), SliceCache(args.runs / "cache"))
    loaded = []
    for st in studies:
        d = loader.load(st)
        for s in d.series:
            s.pixels = s.pixels[subsample_indices(len(s.pixels), args.max_slices)]
        loaded.append(d)
    y = np.stack([d.labels for d in loaded])

    def embed(model, classes=None):
        data = loaded
        if classes is not None:
            import copy

            data = [copy.copy(d) for d in loaded]
            for d in data:
                d.series = [s for s in d.series if s.sequence_class in classes]
        out = []
        for i in range(0, len(data), 16):
            out += embed_studies(data[i : i + 16], model, batch_size=256)
        return out

    def probe(feats: np.ndarray) -> dict[str, float]:
        return auroc_per_condition(feats[tr_idx], y[tr_idx], feats[te_idx], y[te_idx])

    def mean_slice(embs, classes=("T1", "T2", "other")) -> np.ndarray:
        return np.stack(
            [np.concatenate([s.slices for s in e.series if s.sequence_class in classes]).mean(0) for e in embs]
        )

    results: dict[str, dict[str, float]] = {}
    trained = embed(main_model)
    # several random initialisations: their spread is the noise floor of the comparison
    spread, slice_spread, rands = [], [], []
    for seed in range(args.random_seeds):
        torch.manual_seed(seed)
        rands.append(embed(SpineFM(main_model.cfg).eval()))
        spread.append(np.mean(list(probe(np.stack([e.case for e in rands[-1]])).values())))
        slice_spread.append(np.mean(list(probe(mean_slice(rands[-1])).values())))
    rand = rands[0]  # seed 0 is the one shown per condition
    random_spread = {
        "case_mean": float(np.mean(spread)), "case_std": float(np.std(spread)), "case_values": spread,
        "slice_mean": float(np.mean(slice_spread)), "slice_std": float(np.std(slice_spread)),
        "slice_values": slice_spread,
    }  # fmt: skip
    # SSL only (pretrain + gram, before alignment): the exported EMA teachers, mean slice features
    if (args.runs / "gram_t1" / "encoder").exists():
        from ml.train.pretrain import load_encoder_folder

        ssl_model = SpineFM(main_model.cfg).eval()
        for cls in ("T1", "T2"):
            enc = load_encoder_folder(args.runs / f"gram_{cls.lower()}" / "encoder")
            ssl_model.encoders[cls].load_state_dict(enc.state_dict())
        results["SSL-only encoders mean slice features"] = probe(mean_slice(embed(ssl_model)))
    results["SpineFM case (all series)"] = probe(np.stack([e.case for e in trained]))
    results["random init case (all series)"] = probe(np.stack([e.case for e in rand]))
    results["SpineFM mean slice features"] = probe(mean_slice(trained))
    results["random init mean slice features"] = probe(mean_slice(rand))
    results["SpineFM T1 case"] = probe(np.stack([e.by_class["T1"] for e in trained]))
    results["SpineFM T2 case"] = probe(np.stack([e.by_class["T2"] for e in trained]))
    results["random init T1 case"] = probe(np.stack([e.by_class["T1"] for e in rand]))
    results["random init T2 case"] = probe(np.stack([e.by_class["T2"] for e in rand]))
    # synthesizer ablation: other-class series only
    ablation = {
        "T1 encoder alone": "synth_none_t1",
        "T2 encoder alone": "synth_none_t2",
        "scalar router": "synth_scalar",
        "conditioned router": "synth_conditioned",
    }
    routing = {}
    for label, run in ablation.items():
        folder = args.runs / run / "final"
        if not folder.exists():
            continue
        model = main_model if run == "synth_conditioned" else load_spinefm(folder)
        embs = embed(model, classes=("other",))
        results[f"other series: {label}"] = probe(np.stack([e.by_class["other"] for e in embs]))
        rw = [s.route_weights for e in embs for s in e.series if s.route_weights is not None]
        if rw:  # mean T1 weight per mixing point, and its spread across studies
            w = np.concatenate(rw)[:, :, 0]
            routing[label] = {"mean_t1_weight": w.mean(0).round(3).tolist(), "std": w.std(0).round(3).tolist()}

    summary = {k: (float(np.mean(list(v.values()))) if v else float("nan"), len(v)) for k, v in results.items()}
    print(f"held-out patients: {len(te_idx)}, probe-training patients: {len(tr_idx)}")
    for kind in ("case", "slice"):
        print(
            f"random init {kind} features, {args.random_seeds} seeds: mean AUROC "
            f"{random_spread[kind + '_mean']:.3f} ± {random_spread[kind + '_std']:.3f} "
            f"(values {np.round(random_spread[kind + '_values'], 3).tolist()})"
        )
    print(f"{'embedding':40s} {'mean AUROC':>10s} {'#cond':>6s}")
    for k, (m, n) in summary.items():
        print(f"{k:40s} {m:10.3f} {n:6d}")
    print("\nper condition (held-out AUROC):")
    keys = list(results["SpineFM case (all series)"])
    cols = ["SpineFM case (all series)", "random init case (all series)", "SpineFM T1 case", "SpineFM T2 case"]
    print(f"{'condition':24s} " + " ".join(f"{c[:14]:>14s}" for c in cols) + f" {'T1-T2':>7s}")
    for key in keys:
        vals = [results[c].get(key, float("nan")) for c in cols]
        print(f"{key:24s} " + " ".join(f"{v:14.3f}" for v in vals) + f" {vals[2] - vals[3]:7.3f}")
    if routing:
        print("\nsynthesizer routing (mean T1 weight per mixing point, std across slices):")
        for k, v in routing.items():
            print(f"  {k}: {v['mean_t1_weight']}  std {v['std']}")
    report = {"results": results, "summary": summary, "routing": routing, "n_test": len(te_idx),
              "random_init_spread": random_spread,
              "n_train": len(tr_idx), "seconds": time.time() - t0}  # fmt: skip
    (args.runs / "probe.json").write_text(json.dumps(report, indent=2))
    plot(results, keys, args.images)
    print(f"probe done in {time.time() - t0:.0f} s")
    return 0


def plot(results: dict[str, dict[str, float]], keys: list[str], images: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images.mkdir(parents=True, exist_ok=True)
    series = ["SpineFM T1 case", "SpineFM T2 case", "SpineFM case (all series)", "random init case (all series)"]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.7), 4.5))
    width = 0.2
    for i, name in enumerate(series):
        ax.bar(x + (i - 1.5) * width, [results[name].get(k, np.nan) for k in keys], width, label=name)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, keys, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("held-out AUROC (linear probe)")
    ax.set_ylim(0.2, 1.0)
    ax.set_title("SpineFM tiny (CPU) vs random init; T1 vs T2 encoder per condition")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(images / "spinefm_probe.png", dpi=120)
    plt.close(fig)

    abl = [k for k in results if k.startswith("other series: ")]
    if abl:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        means = [np.mean(list(results[k].values())) for k in abl]
        ax.bar(range(len(abl)), means, color=["#999", "#bbb", "#69c", "#36a"][: len(abl)])
        ax.set_xticks(range(len(abl)), [k.removeprefix("other series: ") for k in abl], fontsize=8)
        ax.set_ylim(0.4, max(0.8, max(means) + 0.05))
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("mean held-out AUROC")
        ax.set_title("Synthesizer ablation (other-class series only)")
        fig.tight_layout()
        fig.savefig(images / "spinefm_synth_ablation.png", dpi=120)
        plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
