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
    """Rank correlation between RADPEER severity (1 < 2a < 2b < 3a < 3b) and an edit distance."""
    from scipy.stats import spearmanr

    pairs = [(RADPEER_SCORES.index(r.radpeer), getattr(r, key)) for r in rows if getattr(r, key) is not None]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return None
    rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return None if math.isnan(rho) else float(rho)


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


def distance_tables(packed: np.ndarray) -> tuple[dict, float | None, dict]:
    """(``edit_distance_by_radpeer``, ``spearman_radpeer_vs_distance``, plot data) from the
    packed columns, computed by the same code as the row functions."""
    from matplotlib import cbook

    code = packed["radpeer"].astype(np.int64)
    edit: dict[str, dict[str, dict]] = {}
    boxes: dict[str, list[dict]] = {}
    for key in DISTANCE_KEYS:
        values = packed[key].astype(np.float64)
        present = ~np.isnan(values)
        per = {s: np.sort(values[present & (code == i)]) for i, s in enumerate(RADPEER_SCORES)}
        edit[key] = {s: _describe(per[s].tolist()) for s in RADPEER_SCORES}
        edit[key]["all"] = _describe(np.sort(values[present]).tolist())
        boxes[key] = []
        for s in RADPEER_SCORES:
            if per[s].size:  # what ``Axes.boxplot`` computes, without the outliers (not drawn)
                (box,) = cbook.boxplot_stats(per[s], labels=[s])
                boxes[key].append({**box, "fliers": np.empty(0)})
    word = packed["word_levenshtein_norm"].astype(np.float64)
    chosen = ~np.isnan(word) & (code >= 0)
    x, y = code[chosen], word[chosen]
    rho = None
    if x.size >= 3 and np.unique(x).size >= 2 and np.unique(y).size >= 2:
        from scipy.stats import spearmanr

        statistic = spearmanr(x.tolist(), y.tolist()).statistic
        rho = None if math.isnan(statistic) else float(statistic)
    histogram = {
        s: np.histogram(word[~np.isnan(word) & (code == i)], bins=HISTOGRAM_BINS, range=(0, 1))[0].tolist()
        for i, s in enumerate(RADPEER_SCORES)
    }
    return edit, rho, {"boxes": boxes, "histogram": histogram}
