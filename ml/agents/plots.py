"""Plots of ``python -m ml agents evaluate``: ROC curves per condition, box-error histogram,
Recall@K bars, baseline comparison (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.conditions import CONDITION_KEYS


def write_plots(out: Path, metrics: dict, y: np.ndarray, p: np.ndarray) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    written = []
    fig, axes = plt.subplots(3, 6, figsize=(18, 9))
    per = metrics["diagnosis"]["per_condition"]
    for j, (ax, key) in enumerate(zip(axes.flat, CONDITION_KEYS, strict=False)):
        ok = (y[:, j] >= 0) & ~np.isnan(p[:, j])
        if len(np.unique(y[ok, j])) == 2:
            fpr, tpr, _ = roc_curve(y[ok, j], p[ok, j])
            ax.plot(fpr, tpr, lw=1.5)
        ax.plot([0, 1], [0, 1], "k--", lw=0.5)
        v = per[key]
        ax.set_title(
            f"{key}\nAUROC {v['auroc']:.2f} [{v['auroc_ci'][0]:.2f}, {v['auroc_ci'][1]:.2f}] n+={v['positives']}",
            fontsize=8,
        )
        ax.tick_params(labelsize=6)
    axes.flat[-1].axis("off")
    fig.suptitle(f"Diagnosis agents, {metrics['options']['folds']}-fold patient-level CV (out-of-fold ROC)")
    fig.tight_layout()
    written.append(out / "agents_roc.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    loc = metrics["localization"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].hist(loc["_box_errors"], bins=30)
    axes[0].set_xlabel("normalised box error (mean |delta| of x0, y0, x1, y1)")
    axes[0].set_title(f"box error, mean {loc['box_error_mean']:.3f} (n={loc['n_boxes']})")
    axes[1].hist(loc["_ious"], bins=30)
    axes[1].set_xlabel("IoU")
    axes[1].set_title(f"IoU, mean {loc['iou_mean']:.3f}")
    fig.tight_layout()
    written.append(out / "agents_box_error.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    ret = metrics["retrieval"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ks = ["R@1", "R@5", "R@10"]
    xs = np.arange(len(ks))
    for off, (name, vals) in zip(
        (-0.27, 0.0, 0.27),
        (
            ("study->report", ret["study_to_report"]),
            ("report->study", ret["report_to_study"]),
            ("chance", ret["chance"]),
        ),
        strict=True,
    ):
        ax.bar(xs + off, [vals[k] for k in ks], width=0.27, label=name)
    ax.set_xticks(xs, ks)
    ax.set_ylabel("recall")
    ax.set_title(f"zero-shot retrieval over {ret['candidates']} studies")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "agents_recall.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    if "baselines" in metrics:
        b = metrics["baselines"]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        names = list(b)
        ax.barh(names, [b[n]["mean_auroc"] for n in names])
        ax.axvline(0.5, color="k", lw=0.5, ls="--")
        ax.set_xlim(0.4, max(0.8, max(b[n]["mean_auroc"] for n in names) + 0.02))
        ax.set_xlabel("mean AUROC over 17 conditions (same probes, same folds)")
        fig.tight_layout()
        written.append(out / "agents_baselines.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    return written
