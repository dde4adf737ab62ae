"""Research statistics: RADPEER, edit distances, label agreement, per-condition draft accuracy.

Reads only (no writes). Two implementations of every figure:

- the row functions (``review_rows``, ``radpeer_summary``, ``edit_distance_by_radpeer``,
  ``label_agreement``, ``draft_accuracy`` on SQLite) compute in Python from one row per review;
  they are the plain reference and serve the embedded demo database;
- on PostgreSQL, ``overview`` reads the statistics rows (``reviewer.research.aggregates``): per
  signed review and per confirmation the numbers the figures need, kept by the services in the
  transaction of each write. RADPEER counts by GROUP BY over them, and the per-review values
  that quantiles, rank correlations and AUROCs need (order statistics: no counter gives them)
  as one packed binary value, unpacked by numpy without a Python object per review. The result
  is cached under a fingerprint of everything it depends on, so only the first view after a
  change pays even that. ``_compute_bundle_from_tables`` computes the same from the base tables.

All give the same numbers (asserted on random data in tests/platform/test_stats_aggregates.py and,
for rows kept through random sequences of writes, tests/platform/test_stats_incremental.py).
Definitions (also in docs/workflow.md):

- discrepancy rate: share of signed reviews scored 2a, 2b, 3a or 3b (RADPEER ≥ 2);
- clinically significant rate: share scored 2b or 3b;
- the reader's own score is used; an arbitration decision is reported next to it;
- label agreement compares, per condition, the extractor's ternary label with each annotator's
  (accuracy, Cohen's kappa over the three classes), and two annotators of the same report with
  each other (inter-annotator kappa; the first two annotators by id where more exist);
- draft accuracy takes the labels extracted from the signed report as the reference and those
  extracted from the draft text as the prediction; uncertain (-1) on either side is excluded
  (paper convention); AUROC uses ``Finding.probability`` of the draft.

The modules, by responsibility: ``rows`` (one row per signed review), ``radpeer`` (score
summaries), ``distances`` (edit distances per score, plot data), ``agreement`` (label agreement),
``accuracy`` (per-condition draft accuracy), ``db`` (packed reads from PostgreSQL) and
``bundle`` (the cached overview). Callers import from ``reviewer.research.stats``.
"""

from reviewer.research.stats.accuracy import SCOPES, auroc_presorted, draft_accuracy, draft_label_pairs
from reviewer.research.stats.agreement import MISSING, label_agreement, label_agreement_from_rows
from reviewer.research.stats.bundle import (
    CACHE_SECONDS,
    _compute_bundle,
    _compute_bundle_from_tables,
    cached_bundle,
    cached_label_tables,
    fingerprint_digest,
    overview,
    reader_names,
    stats_fingerprint,
)
from reviewer.research.stats.distances import (
    HISTOGRAM_BINS,
    edit_distance_by_radpeer,
    spearman_radpeer_vs_distance,
)
from reviewer.research.stats.radpeer import radpeer_by, radpeer_by_value, radpeer_summary
from reviewer.research.stats.rows import (
    DISCREPANT,
    DISTANCE_KEYS,
    RADPEER_SCORES,
    REVIEW_ROW_FIELDS,
    SIGNIFICANT,
    ReviewRow,
    iter_review_rows,
    review_rows,
    review_values,
    signed_reviews,
    value_chunks,
)

__all__ = [
    "CACHE_SECONDS",
    "DISCREPANT",
    "DISTANCE_KEYS",
    "HISTOGRAM_BINS",
    "MISSING",
    "RADPEER_SCORES",
    "REVIEW_ROW_FIELDS",
    "SCOPES",
    "SIGNIFICANT",
    "ReviewRow",
    "_compute_bundle",
    "_compute_bundle_from_tables",
    "auroc_presorted",
    "cached_bundle",
    "cached_label_tables",
    "draft_accuracy",
    "draft_label_pairs",
    "edit_distance_by_radpeer",
    "fingerprint_digest",
    "iter_review_rows",
    "label_agreement",
    "label_agreement_from_rows",
    "overview",
    "radpeer_by",
    "radpeer_by_value",
    "radpeer_summary",
    "reader_names",
    "review_rows",
    "review_values",
    "signed_reviews",
    "spearman_radpeer_vs_distance",
    "stats_fingerprint",
    "value_chunks",
]
