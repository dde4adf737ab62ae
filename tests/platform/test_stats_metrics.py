"""Edit distances against hand-computed examples; kappa and AUROC against scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from reviewer.research.metrics import (
    auroc,
    cohen_kappa,
    edit_distances,
    report_edit_distances,
    sensitivity_specificity,
    split_sections,
)


def test_one_changed_word_is_counted_by_hand():
    d = edit_distances("No stenosis.", "Mild stenosis.")
    # "no stenosis." vs "mild stenosis.": no->mild shares no letter -> 2 substitutions + 2 insertions
    assert d["char_levenshtein"] == 4
    assert d["char_levenshtein_norm"] == pytest.approx(4 / 14)
    assert d["word_levenshtein"] == 1
    assert d["word_levenshtein_norm"] == pytest.approx(1 / 2)
    assert d["wer"] == pytest.approx(1 / 2)


def test_inserted_words_give_wer_against_the_signed_length():
    d = edit_distances("a b c", "a x b c d")
    assert d["word_levenshtein"] == 2
    assert d["word_levenshtein_norm"] == pytest.approx(2 / 5)
    assert d["wer"] == pytest.approx(2 / 5)  # 2 insertions / 5 reference words
    assert d["char_levenshtein"] == 4  # " x" and " d"


def test_deleted_words_are_normalised_by_the_longer_text():
    d = edit_distances("a x b c d", "a b c")
    assert d["word_levenshtein"] == 2
    assert d["word_levenshtein_norm"] == pytest.approx(2 / 5)
    assert d["wer"] == pytest.approx(2 / 3)  # 2 deletions / 3 reference words


def test_case_and_whitespace_do_not_count():
    d = edit_distances("IMPRESSION:\n  1.  Disc   bulge\t", "impression: 1. disc bulge")
    assert d["char_levenshtein"] == d["word_levenshtein"] == 0
    assert d["wer"] == 0.0


def test_punctuation_counts():
    assert edit_distances("no stenosis.", "no stenosis")["char_levenshtein"] == 1


def test_empty_texts():
    assert edit_distances("", "")["char_levenshtein_norm"] == 0.0
    assert edit_distances("", "")["wer"] == 0.0
    grown = edit_distances("", "abc")
    assert (grown["char_levenshtein"], grown["char_levenshtein_norm"], grown["wer"]) == (3, 1.0, 1.0)
    assert edit_distances("abc", "")["wer"] == 1.0


def test_sections_split_on_headers_not_on_levels():
    text = "CLINICAL HISTORY: pain.\nDISCS:\n  L4-5: Mild bulge.\n  L5-S1: Normal.\nIMPRESSION:\n1. Bulge."
    sections = split_sections(text)
    assert list(sections) == ["clinical_history", "discs", "impression"]
    assert "L5-S1: Normal." in sections["discs"]
    assert sections["impression"] == "1. Bulge."


def test_per_section_distances_and_compared_versions():
    draft = "FINDINGS: Normal.\nIMPRESSION: No stenosis."
    final = "FINDINGS: Normal.\nIMPRESSION: Mild stenosis.\nRECOMMENDATION: Follow up."
    d = report_edit_distances(draft, final, draft_id=7, revision_id=9)
    assert (d["draft_id"], d["revision_id"]) == (7, 9)
    assert d["sections"]["findings"]["word_levenshtein"] == 0
    assert d["sections"]["impression"]["word_levenshtein"] == 1
    assert d["sections"]["impression"]["wer"] == pytest.approx(0.5)
    assert d["sections"]["recommendation"]["word_levenshtein"] == 2  # absent from the draft
    assert d["sections"]["recommendation"]["wer"] == 1.0
    assert d["word_levenshtein"] == 4  # whole report: mild for no, + "recommendation:", "follow", "up."


@pytest.mark.parametrize("seed", range(6))
def test_kappa_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = rng.choice([-1, 0, 1], size=int(rng.integers(5, 200)), p=[0.1, 0.6, 0.3])
    flip = rng.random(a.size) < 0.3
    b = np.where(flip, rng.choice([-1, 0, 1], size=a.size), a)
    assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_kappa_edge_cases_match_scikit_learn():
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(cohen_kappa_score([1, 0, 1, 0], [1, 0, 1, 0]))
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(cohen_kappa_score([1, 0, 1, 0], [0, 1, 0, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that kappa is undefined here
        expected = cohen_kappa_score([0, 0, 0], [0, 0, 0])
    assert math.isnan(expected)
    assert math.isnan(cohen_kappa([0, 0, 0], [0, 0, 0]))
    with pytest.raises(ValueError, match="different numbers"):
        cohen_kappa([0, 1], [0])


@pytest.mark.parametrize("seed", range(4))
def test_auroc_matches_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, size=80)
    score = np.round(rng.random(80) * 0.5 + truth * 0.3, 1)  # rounded: many ties
    assert auroc(truth.tolist(), score.tolist()) == pytest.approx(roc_auc_score(truth, score))
    assert auroc([1, 1], [0.2, 0.3]) is None


def test_sensitivity_and_specificity_by_hand():
    out = sensitivity_specificity([1, 1, 1, 0, 0], [1, 0, 1, 0, 1])
    assert (out["tp"], out["fn"], out["tn"], out["fp"]) == (2, 1, 1, 1)
    assert out["sensitivity"] == pytest.approx(2 / 3)
    assert out["specificity"] == pytest.approx(1 / 2)
    assert sensitivity_specificity([0], [0])["sensitivity"] is None


@pytest.mark.parametrize("seed", range(6))
def test_auroc_of_presorted_scores_is_the_same_float(seed):
    from reviewer.research.stats import auroc_presorted

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    truth = rng.integers(0, 2, size=n)
    score = np.round(rng.random(n) * 0.5 + truth * 0.2, int(rng.integers(1, 4)))  # many ties
    order = np.argsort(score, kind="stable")
    assert auroc_presorted(truth[order], score[order]) == auroc(truth.tolist(), score.tolist())  # exactly
    # ties in any order (numpy's default sort is not stable): the same float
    shuffled = rng.permutation(n)
    order = shuffled[np.argsort(score[shuffled])]
    assert auroc_presorted(truth[order], score[order]) == auroc(truth.tolist(), score.tolist())
    assert auroc_presorted(np.ones(3, dtype=int), np.array([0.1, 0.2, 0.3])) is None


@pytest.mark.parametrize("seed", range(6))
def test_rank_correlation_is_scipys_spearman_to_the_last_bit(seed):
    from scipy.stats import spearmanr

    from reviewer.research.stats.distances import rank_correlation

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 5000))
    x = rng.integers(0, 5, size=n)  # five severities: many ties
    y = np.round(rng.random(n) * 0.5 + x * 0.1, int(rng.integers(1, 4)))  # rounded: ties too
    expected = spearmanr(x.tolist(), y.tolist()).statistic
    assert rank_correlation(x.astype(np.float64), y) == expected  # exactly
    counts = np.bincount(x, minlength=5)
    before = np.cumsum(counts) - counts
    x_ranks = ((2 * before + 1 + counts) / 2.0)[x]  # ranks from the counts, as the statistics pass them
    assert rank_correlation(x.astype(np.float64), y, x_ranks=x_ranks) == expected


@pytest.mark.parametrize("seed", range(6))
def test_box_and_quartiles_are_matplotlibs_and_the_statistics_modules(seed):
    from matplotlib import cbook

    from reviewer.research.stats.distances import _describe, box_stats, describe_sorted

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = np.sort(np.round(rng.gamma(2.0, 0.1, size=n), int(rng.integers(1, 5))))  # skewed: outliers
    (expected,) = cbook.boxplot_stats(values, labels=["2a"])
    box = box_stats(values, "2a")
    assert {k: box[k] for k in expected if k != "fliers"} == {k: v for k, v in expected.items() if k != "fliers"}
    assert describe_sorted(values) == _describe(values.tolist())  # statistics.quantiles and fmean, exactly
    assert describe_sorted(np.empty(0)) == _describe([])


def test_the_statistics_import_neither_scipy_nor_matplotlib():
    """The statistics page and API, the exports and the plots module load without them (their
    import took 2.4 s of a fresh worker's first statistics view); a plot imports matplotlib."""
    import os
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup()\n"
        "from reviewer.api import stats\n"
        "from reviewer.research import exports, plots, stats\n"
        "print(sorted(m for m in ('scipy', 'matplotlib') if m in sys.modules))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings.test"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stderr
