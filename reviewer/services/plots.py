"""Plots of the research statistics (matplotlib, Agg, no pyplot state: safe in a web worker).

Each plot is a function of the review rows (and, for agreement and accuracy, of the label
tables) returning a matplotlib Figure; ``render`` turns it into PNG or SVG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from matplotlib.figure import Figure

from ml.conditions import CONDITION_KEYS
from reviewer.services import stats
from reviewer.services.stats import RADPEER_SCORES, ReviewRow

RADPEER_COLOURS = {"1": "#4c9f70", "2a": "#d9b44a", "2b": "#e07b39", "3a": "#c85a5a", "3b": "#8f2d56"}
FORMATS = ("png", "svg")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig


def radpeer_distribution(rows: list[ReviewRow]) -> Figure:
    """Share of each RADPEER score, overall and per model version."""
    groups = {
        "all": rows,
        **{k: [r for r in rows if r.model_version == k] for k in sorted({r.model_version for r in rows})},
    }
    fig = _figure(7, 3.4)
    ax = fig.add_subplot()
    names = list(groups)
    left = [0.0] * len(names)
    for score in RADPEER_SCORES:
        share = [stats.radpeer_summary(groups[n])["share"][score] or 0.0 for n in names]
        ax.barh(names, share, left=left, color=RADPEER_COLOURS[score], label=score)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of signed reviews")
    ax.invert_yaxis()
    ax.legend(title="RADPEER", ncols=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    for i, n in enumerate(names):
        ax.text(1.0, i, f"  n={len(groups[n])}", va="center", fontsize=8)
    return fig


def edit_distance_by_radpeer(rows: list[ReviewRow]) -> Figure:
    """Box plots of the normalised edit distances per RADPEER score (paper Fig. 6c/6d)."""
    fig = _figure(9, 3.2)
    titles = {"char_levenshtein_norm": "character Levenshtein / max length",
              "word_levenshtein_norm": "word Levenshtein / max length", "wer": "WER"}  # fmt: skip
    for i, key in enumerate(stats.DISTANCE_KEYS):
        ax = fig.add_subplot(1, 3, i + 1)
        data = [
            [getattr(r, key) for r in rows if r.radpeer == s and getattr(r, key) is not None] for s in RADPEER_SCORES
        ]
        present = [(s, d) for s, d in zip(RADPEER_SCORES, data, strict=True) if d]
        if present:
            box = ax.boxplot([d for _, d in present], tick_labels=[s for s, _ in present], patch_artist=True,
                             showfliers=False, medianprops={"color": "black"})  # fmt: skip
            for patch, (s, _) in zip(box["boxes"], present, strict=True):
                patch.set_facecolor(RADPEER_COLOURS[s])
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel("RADPEER")
    return fig


def edit_distance_histogram(rows: list[ReviewRow]) -> Figure:
    """Distribution of the normalised word edit distance, stacked by RADPEER score."""
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    data = [[r.word_levenshtein_norm for r in rows if r.radpeer == s and r.word_levenshtein_norm is not None]
            for s in RADPEER_SCORES]  # fmt: skip
    ax.hist(data, bins=20, range=(0, 1), stacked=True, color=[RADPEER_COLOURS[s] for s in RADPEER_SCORES],
            label=list(RADPEER_SCORES))  # fmt: skip
    ax.set_xlabel("word Levenshtein distance / max length (draft vs signed)")
    ax.set_ylabel("reviews")
    ax.legend(title="RADPEER", frameon=False)
    return fig


def _per_condition(ax, keys: list[str], series: dict[str, list[float | None]], xlabel: str) -> None:  # type: ignore[no-untyped-def]
    y = list(range(len(keys)))
    markers = ["o", "s", "^", "D"]
    for i, (name, values) in enumerate(series.items()):
        pts = [(v, yy) for v, yy in zip(values, y, strict=True) if v is not None]
        ax.scatter([p[0] for p in pts], [p[1] + (i - 1) * 0.18 for p in pts], marker=markers[i % 4], label=name, s=22)
    ax.set_yticks(y, keys, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="lower left")


def label_agreement(rows: list[ReviewRow]) -> Figure:
    """Cohen's kappa per condition: extractor vs annotator, and between annotators."""
    table = stats.cached_label_tables()[0]
    fig = _figure(7, 5.2)
    ax = fig.add_subplot()
    _per_condition(
        ax, [r["condition"] for r in table],
        {"extractor vs annotator": [r["extractor_kappa"] for r in table],
         "annotator vs annotator": [r["inter_annotator_kappa"] for r in table]},
        "Cohen's kappa",
    )  # fmt: skip
    ax.set_xlim(-0.2, 1.05)
    return fig


def draft_accuracy(rows: list[ReviewRow]) -> Figure:
    """Per-condition AUROC and sensitivity of the draft, in scope vs out of scope (Fig. 6e)."""
    table = [r for r in stats.cached_label_tables()[1] if r["scope"] != "all"]
    fig = _figure(9, 5.2)
    for i, metric in enumerate(("auroc", "sensitivity", "specificity")):
        ax = fig.add_subplot(1, 3, i + 1)
        series = {
            scope.replace("_", " "): [next(r[metric] for r in table if r["condition"] == k and r["scope"] == scope)
                                      for k in CONDITION_KEYS]
            for scope in ("in_scope", "out_of_scope")
        }  # fmt: skip
        _per_condition(ax, list(CONDITION_KEYS) if i == 0 else [""] * len(CONDITION_KEYS), series, metric)
        ax.set_xlim(-0.05, 1.05)
    return fig


PLOTS: dict[str, Callable[[list[ReviewRow]], Figure]] = {
    "radpeer_distribution": radpeer_distribution,
    "edit_distance_by_radpeer": edit_distance_by_radpeer,
    "edit_distance_histogram": edit_distance_histogram,
    "label_agreement": label_agreement,
    "draft_accuracy": draft_accuracy,
}


def render(name: str, fmt: str, *, rows: list[ReviewRow] | None = None) -> bytes:
    if name not in PLOTS:
        raise ValueError(f"unknown plot {name!r}; known: {', '.join(PLOTS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt!r}; known: {', '.join(FORMATS)}")
    fig = PLOTS[name](stats.review_rows() if rows is None else rows)
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()
