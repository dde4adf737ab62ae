"""Metrics of the review workflow: edit distance between the AI draft and the signed report,
agreement (Cohen's kappa) and per-condition accuracy (sensitivity, specificity, AUROC).

Edit-distance normalisation (documented because it changes the numbers): both texts are
lower-cased and runs of whitespace (spaces, tabs, newlines) collapse to one space before
comparison; punctuation is kept, because a changed "no" or "," can change meaning. Character
and word Levenshtein distances (unit costs, rapidfuzz) are reported raw and divided by the
longer text's length (0 when both are empty); WER (jiwer) treats the draft as the hypothesis
and the signed report as the reference (an empty reference gives 0 if the draft is empty too,
else 1). Words are the whitespace-separated tokens of the normalised text.

Per-section distances split both texts with the report's one section splitter
(``ml.report_sections.split_report``: the viewer's section editor cuts the same way, and a level
line such as ``L4-5: ...`` stays inside its section, normally DISCS); sections are keyed by
``section_key`` of their title (``"impression"``), a section missing from one text compares
against the empty string, and text before the first header is the ``preamble`` section.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import jiwer
import numpy as np
from rapidfuzz.distance import Levenshtein

from ml.report_sections import section_key, split_report

NORMALISATION = "lowercase+collapse-whitespace"
# Bump when the numbers a stored edit distance holds would change for the same texts.
EDIT_DISTANCE_METHOD = "v3"  # v3: sections from ml.report_sections (known headers in any case, addenda)

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _WS.sub(" ", text.strip().lower())


def split_sections(text: str) -> dict[str, str]:
    """Split a report into ``{section_key: body}`` in order of appearance.

    A header that repeats appends to the earlier body, so no text is dropped.
    """
    sections: dict[str, str] = {}
    for s in split_report(text):
        key = section_key(s.title) if s.title else "preamble"
        body = s.body.strip()
        if not body and not s.title:
            continue
        sections[key] = f"{sections[key]}\n{body}".strip() if key in sections else body
    return sections


def _wer(reference_words: list[str], hypothesis: str, reference: str) -> float:
    if not reference_words:
        return float(bool(hypothesis))
    return float(jiwer.wer(reference, hypothesis))


def edit_distances(draft: str, final: str) -> dict[str, float | int | str]:
    """Whole-text distances of ``draft`` against ``final`` (see the module docstring)."""
    a, b = normalise(draft), normalise(final)
    wa, wb = a.split(), b.split()
    char = Levenshtein.distance(a, b)
    word = Levenshtein.distance(wa, wb)
    return {
        "normalisation": NORMALISATION,
        "char_levenshtein": char,
        "char_levenshtein_norm": char / max(len(a), len(b), 1),
        "word_levenshtein": word,
        "word_levenshtein_norm": word / max(len(wa), len(wb), 1),
        "wer": _wer(wb, a, b),
        "draft_chars": len(a),
        "final_chars": len(b),
        "draft_words": len(wa),
        "final_words": len(wb),
    }


def report_edit_distances(
    draft: str, final: str, *, draft_id: int | None = None, revision_id: int | None = None
) -> dict:
    """Whole-report distances (top-level keys, as ``edit_distances``) plus ``sections``
    (per section key) and the ids of the two text versions that were compared."""
    whole = edit_distances(draft, final)
    da, fb = split_sections(draft), split_sections(final)
    keys = list(dict.fromkeys([*fb, *da]))  # the signed report's order first
    sections = {}
    for key in keys:
        d = edit_distances(da.get(key, ""), fb.get(key, ""))
        d.pop("normalisation")
        sections[key] = d
    return {
        **whole,
        "method": EDIT_DISTANCE_METHOD,
        "draft_id": draft_id,
        "revision_id": revision_id,
        "sections": sections,
    }


# --- agreement and accuracy -----------------------------------------------------------------


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float:
    """Cohen's kappa of two raters' labels on the same items (unweighted).

    Matches ``sklearn.metrics.cohen_kappa_score``: NaN when chance agreement is 1 (both raters
    gave one and the same label to every item), NaN for no items.
    """
    if len(a) != len(b):
        raise ValueError(f"raters labelled different numbers of items: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    labels = sorted(set(a) | set(b))
    index = {label: i for i, label in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.float64)  # (k, k) confusion counts
    np.add.at(cm, ([index[x] for x in a], [index[y] for y in b]), 1)
    p_observed = np.trace(cm) / n
    p_expected = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if p_expected == 1.0:
        return math.nan
    return float((p_observed - p_expected) / (1.0 - p_expected))


def sensitivity_specificity(truth: Sequence[int], predicted: Sequence[int]) -> dict[str, float | int | None]:
    """Binary counts and rates (1 = present, 0 = absent). A rate without cases is None."""
    t = np.asarray(truth, dtype=np.int8)
    p = np.asarray(predicted, dtype=np.int8)
    tp = int(((t == 1) & (p == 1)).sum())
    fn = int(((t == 1) & (p == 0)).sum())
    tn = int(((t == 0) & (p == 0)).sum())
    fp = int(((t == 0) & (p == 1)).sum())
    return {
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
    }


def auroc(truth: Sequence[int], score: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann–Whitney U with tied ranks averaged); None if only one
    class is present."""
    from scipy.stats import rankdata

    t = np.asarray(truth, dtype=np.int8)
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int((t == 1).sum()), int((t == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
