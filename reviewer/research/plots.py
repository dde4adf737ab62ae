"""Plots of the research statistics (matplotlib, Agg, no pyplot state: safe in a web worker).

Each plot is a function of the statistics bundle (``stats.cached_bundle``: summaries, label
tables, and the box-plot statistics and histogram counts computed with it) returning a
matplotlib Figure; ``render`` turns it into PNG or SVG bytes. No plot reads the reviews itself,
so a plot costs its drawing, however many reviews there are.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ml.conditions import CONDITION_KEYS
from reviewer.research import stats
from reviewer.research.stats import RADPEER_SCORES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RADPEER_COLOURS = {"1": "#4c9f70", "2a": "#d9b44a", "2b": "#e07b39", "3a": "#c85a5a", "3b": "#8f2d56"}
FORMATS = ("png", "svg")


def _figure(width: float, height: float) -> Figure:
    """A figure without pyplot state; matplotlib is imported here, at the first drawing, not
    with the module (the statistics page and API import this module but draw nothing)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig


def radpeer_distribution(data: dict) -> Figure:
    """Share of each RADPEER score, overall and per model version."""
    groups = {"all": data["radpeer"], **data["by_model"]}
    fig = _figure(7, 3.4)
    ax = fig.add_subplot()
    names = list(groups)
    left = [0.0] * len(names)
    for score in RADPEER_SCORES:
        share = [groups[n]["share"][score] or 0.0 for n in names]
        ax.barh(names, share, left=left, color=RADPEER_COLOURS[score], label=score)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of signed reviews")
    ax.invert_yaxis()
    ax.legend(title="RADPEER", ncols=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    for i, n in enumerate(names):
        ax.text(1.0, i, f"  n={groups[n]['n']}", va="center", fontsize=8)
    return fig


def edit_distance_by_radpeer(data: dict) -> Figure:
    """Box plots of the normalised edit distances per RADPEER score (paper Fig. 6c/6d); the box
    statistics are ``Axes.boxplot``'s, computed with the bundle."""
    fig = _figure(9, 3.2)
    titles = {"char_levenshtein_norm": "character Levenshtein / max length",
              "word_levenshtein_norm": "word Levenshtein / max length", "wer": "WER"}  # fmt: skip
    for i, key in enumerate(stats.DISTANCE_KEYS):
        ax = fig.add_subplot(1, 3, i + 1)
        present = data["plot"]["boxes"][key]
        if present:
            box = ax.bxp(present, patch_artist=True, showfliers=False, medianprops={"color": "black"})
            for patch, b in zip(box["boxes"], present, strict=True):
                patch.set_facecolor(RADPEER_COLOURS[b["label"]])
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel("RADPEER")
    return fig


def edit_distance_histogram(data: dict) -> Figure:
    """Distribution of the normalised word edit distance, stacked by RADPEER score (bin counts
    computed with the bundle, as ``Axes.hist`` would)."""
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    edges = np.linspace(0, 1, stats.HISTOGRAM_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    counts = [data["plot"]["histogram"][s] for s in RADPEER_SCORES]
    # matplotlib's stub types bins as a Sequence[float], which an ndarray is not; hist takes arrays.
    ax.hist([centres] * len(RADPEER_SCORES), bins=edges, weights=counts, stacked=True,  # type: ignore[arg-type]
            color=[RADPEER_COLOURS[s] for s in RADPEER_SCORES], label=list(RADPEER_SCORES))  # fmt: skip
    ax.set_xlabel("word Levenshtein distance / max length (draft vs signed)")
    ax.set_ylabel("reviews")
    ax.legend(title="RADPEER", frameon=False)
    return fig


def _per_condition(ax: Axes, keys: list[str], series: dict[str, list[float | None]], xlabel: str) -> None:
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


def label_agreement(data: dict) -> Figure:
    """Cohen's kappa per condition: extractor vs annotator, and between annotators."""
    table = data["label_agreement"]
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


def draft_accuracy(data: dict) -> Figure:
    """Per-condition AUROC and sensitivity of the draft, in scope vs out of scope (Fig. 6e)."""
    table = [r for r in data["draft_accuracy"] if r["scope"] != "all"]
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


PLOTS: dict[str, Callable[[dict], Figure]] = {
    "radpeer_distribution": radpeer_distribution,
    "edit_distance_by_radpeer": edit_distance_by_radpeer,
    "edit_distance_histogram": edit_distance_histogram,
    "label_agreement": label_agreement,
    "draft_accuracy": draft_accuracy,
}


def render(name: str, fmt: str, *, data: dict | None = None) -> bytes:
    """The plot as PNG or SVG bytes, from ``data``; by default from the cached statistics bundle,
    and the bytes are cached too, under the same fingerprint of the data (drawing costs 0.1 to
    0.3 s; a plot changes only when the statistics do)."""
    if name not in PLOTS:
        raise ValueError(f"unknown plot {name!r}; known: {', '.join(PLOTS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt!r}; known: {', '.join(FORMATS)}")
    if data is not None:
        return _draw(name, fmt, data)
    from django.core.cache import cache

    key = f"spinereview:stats:plot:{stats.fingerprint_digest()}:{name}.{fmt}"
    found = cache.get(key)
    if found is None:
        found = _draw(name, fmt, stats.cached_bundle())
        cache.set(key, found, stats.CACHE_SECONDS)
    return found


def _draw(name: str, fmt: str, data: dict) -> bytes:
    fig = PLOTS[name](data)
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()
