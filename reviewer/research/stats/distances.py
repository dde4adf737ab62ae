"""Edit distances per RADPEER score (the paper's Fig. 6c/6d): quartiles per score, the rank
correlation of severity with the word distance, and the box-plot statistics and histogram
counts the plots draw.

From review rows (``edit_distance_by_radpeer``, ``spearman_radpeer_vs_distance``: the reference)
or from packed columns (``distance_tables``), with the same arithmetic, so the numbers are equal
to the last bit."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import cast

import numpy as np

from reviewer.models import Review
from reviewer.research import aggregates
from reviewer.research.stats.db import table
from reviewer.research.stats.rows import DISTANCE_KEYS, RADPEER_SCORES, ReviewRow

radpeer_code_sql = aggregates.radpeer_code_sql


HISTOGRAM_BINS = 20


def _describe(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "mean": None, "median": None, "q1": None, "q3": None, "min": None, "max": None}
    values = sorted(values)
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "median": q[1],
        "q1": q[0],
        "q3": q[2],
        "min": values[0],
        "max": values[-1],
    }


def edit_distance_by_radpeer(rows: Iterable[ReviewRow]) -> dict[str, dict[str, dict]]:
    """Distribution of each normalised distance per RADPEER score (the paper's Fig. 6c/6d),
    plus ``all``."""
    rows = list(rows)
    out: dict[str, dict[str, dict]] = {}
    for key in DISTANCE_KEYS:
        per: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            value = getattr(r, key)
            if value is not None:
                per[r.radpeer].append(float(value))
                per["all"].append(float(value))
        out[key] = {s: _describe(per.get(s, [])) for s in (*RADPEER_SCORES, "all")}
    return out


def spearman_radpeer_vs_distance(rows: Iterable[ReviewRow], key: str = "word_levenshtein_norm") -> float | None:
    """Rank correlation (Spearman) between RADPEER severity (1 < 2a < 2b < 3a < 3b) and an edit
    distance; ``rank_correlation`` gives scipy's value (asserted in the tests)."""
    pairs = [(RADPEER_SCORES.index(r.radpeer), getattr(r, key)) for r in rows if getattr(r, key) is not None]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return None
    x = np.array([p[0] for p in pairs], dtype=np.float64)
    rho = rank_correlation(x, np.array([p[1] for p in pairs], dtype=np.float64))
    return None if math.isnan(rho) else rho


DISTANCE_DTYPE = np.dtype([("radpeer", ">i2"), *((k, ">f8") for k in DISTANCE_KEYS)])


def distance_sql() -> str:
    """(radpeer index, char norm, word norm, WER) per signed review in id order, packed; NaN
    where a review has no stored distance."""
    values = " || ".join(
        f"float8send(coalesce((edit_distance ->> '{k}')::double precision, 'NaN'))" for k in DISTANCE_KEYS
    )
    return (
        f"SELECT string_agg(int2send(({radpeer_code_sql('radpeer')})::smallint) || {values}, ''::bytea ORDER BY id)"
        f" FROM {table(Review)} WHERE signed_at IS NOT NULL"
    )


def describe_sorted(values: np.ndarray) -> dict:
    """``_describe`` of values already sorted ascending (a float64 array), without a Python list per
    score: the inclusive quartiles by ``statistics.quantiles``' own integer arithmetic and the mean
    by ``math.fsum`` as ``statistics.fmean`` sums, so every number is the same float."""
    n = int(values.size)
    if n == 0:
        return _describe([])
    if n == 1:
        q = [float(values[0])] * 3
    else:
        q = []
        for i in (1, 2, 3):
            j, delta = divmod(i * (n - 1), 4)
            q.append((float(values[j]) * (4 - delta) + float(values[j + 1]) * delta) / 4)
    return {
        "n": n,
        "mean": math.fsum(np.ascontiguousarray(values, dtype=np.float64).data) / n,  # Python floats, no list
        "median": q[1],
        "q1": q[0],
        "q3": q[2],
        "min": float(values[0]),
        "max": float(values[-1]),
    }


def box_stats(values: np.ndarray, label: str) -> dict:
    """The statistics ``Axes.bxp`` draws for one box, as ``matplotlib.cbook.boxplot_stats`` defines
    them (Tukey whiskers at 1.5 IQR, the notch at 1.57 IQR / sqrt(n)), with no outliers (the plot
    does not draw them). Computed here with numpy so that the statistics need no matplotlib
    import (seconds in a fresh worker); equality with matplotlib's is asserted in the tests."""
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    notch = 1.57 * iqr / np.sqrt(len(values))
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside_high, inside_low = values[values <= high], values[values >= low]
    whishi = q3 if len(inside_high) == 0 or np.max(inside_high) < q3 else np.max(inside_high)
    whislo = q1 if len(inside_low) == 0 or np.min(inside_low) > q1 else np.min(inside_low)
    return {"label": label, "mean": np.mean(values), "iqr": iqr, "cilo": med - notch, "cihi": med + notch,
            "whishi": whishi, "whislo": whislo, "fliers": np.empty(0), "q1": q1, "med": med, "q3": q3}  # fmt: skip


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (``scipy.stats.rankdata``'s default):
    half-integers, so exact in float64 whatever the sort."""
    order = np.argsort(values)  # ties in any order: they share one rank
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], values.size)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def rank_correlation(x: np.ndarray, y: np.ndarray, *, x_ranks: np.ndarray | None = None) -> float:
    """Spearman's rho of two equally long arrays as ``scipy.stats.spearmanr`` computes it: the
    Pearson correlation (``np.corrcoef``) of the average ranks, laid out as scipy lays them out
    ((2, n), one row per variable), so the float is the same to the last bit without importing
    scipy (a second of a fresh worker's first statistics view). ``x_ranks``: the ranks of ``x``,
    where the caller has them."""
    ranked = np.empty((2, x.size), dtype=np.float64)
    ranked[0] = average_ranks(x) if x_ranks is None else x_ranks
    ranked[1] = average_ranks(y)
    correlation = cast(np.ndarray, np.corrcoef(ranked))  # (2, 2): a matrix for two variables
    return float(correlation[1, 0])


def distance_tables(packed: np.ndarray) -> tuple[dict, float | None, dict]:
    """(``edit_distance_by_radpeer``, ``spearman_radpeer_vs_distance``, plot data) from the
    packed columns, with the row functions' arithmetic (numpy only). The reviews are put in
    score order once (a radix sort of small integers), so each distance is split by score by
    slicing, and each score's values sorted once serve its quartiles, box and histogram."""
    code = packed["radpeer"].astype(np.int16)
    by_code = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[by_code], np.arange(-1, len(RADPEER_SCORES) + 1))  # code -1 (none) first
    edit: dict[str, dict[str, dict]] = {}
    boxes: dict[str, list[dict]] = {}
    sorted_by_score: dict[str, dict[str, np.ndarray]] = {}
    for key in DISTANCE_KEYS:
        values = packed[key].astype(np.float64)[by_code]
        per = {}
        for i, s in enumerate(RADPEER_SCORES):
            segment = values[bounds[i + 1] : bounds[i + 2]]
            per[s] = np.sort(segment[~np.isnan(segment)])
        every = values[~np.isnan(values)]
        per["all"] = np.sort(every)
        sorted_by_score[key] = per
        edit[key] = {s: describe_sorted(per[s]) for s in (*RADPEER_SCORES, "all")}
        # what ``Axes.boxplot`` computes, without the outliers (not drawn)
        boxes[key] = [box_stats(per[s], s) for s in RADPEER_SCORES if per[s].size]
    word = sorted_by_score["word_levenshtein_norm"]
    rho = _spearman(packed["radpeer"].astype(np.int16), packed["word_levenshtein_norm"].astype(np.float64))
    histogram = {s: np.histogram(word[s], bins=HISTOGRAM_BINS, range=(0, 1))[0].tolist() for s in RADPEER_SCORES}
    return edit, rho, {"boxes": boxes, "histogram": histogram}


def _spearman(code: np.ndarray, word: np.ndarray) -> float | None:
    """``spearman_radpeer_vs_distance`` from the packed columns, in review id order (as the row
    functions: ``np.corrcoef`` sums in input order, so the order is part of the float); the
    severity ranks come from the counts per score (five values: no sort)."""
    chosen = ~np.isnan(word) & (code >= 0)
    x, y = code[chosen], word[chosen]
    if x.size < 3:
        return None
    counts = np.bincount(x, minlength=len(RADPEER_SCORES))
    if np.count_nonzero(counts) < 2 or y.min() == y.max():
        return None
    before = np.cumsum(counts) - counts
    x_ranks = ((before + 1 + before + counts) / 2.0)[x]
    rho = rank_correlation(x.astype(np.float64), y, x_ranks=x_ranks)
    return None if math.isnan(rho) else rho


def plot_data_from_rows(rows: list[ReviewRow]) -> dict:
    """The plot data of ``distance_tables`` from review rows (SQLite, ``overview(rows=...)``)."""
    boxes: dict[str, list[dict]] = {}
    for key in DISTANCE_KEYS:
        boxes[key] = []
        for s in RADPEER_SCORES:
            values = [getattr(r, key) for r in rows if r.radpeer == s and getattr(r, key) is not None]
            if values:
                boxes[key].append(box_stats(np.sort(np.asarray(values, dtype=np.float64)), s))
    histogram = {
        s: np.histogram(
            [r.word_levenshtein_norm for r in rows if r.radpeer == s and r.word_levenshtein_norm is not None],
            bins=HISTOGRAM_BINS, range=(0, 1),
        )[0].tolist()
        for s in RADPEER_SCORES
    }  # fmt: skip
    return {"boxes": boxes, "histogram": histogram}
