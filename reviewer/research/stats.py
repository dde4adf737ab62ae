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
"""

from __future__ import annotations

import math
import operator
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, cast

import numpy as np
from django.db import connection
from django.db.models import FloatField, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from ml.conditions import CONDITION_KEYS
from reviewer.models import Finding, LabelConfirmation, LabelExtraction, Review
from reviewer.research import aggregates
from reviewer.research.metrics import cohen_kappa

if TYPE_CHECKING:
    from django.db.models import Model

RADPEER_SCORES = ("1", "2a", "2b", "3a", "3b")
DISCREPANT = frozenset({"2a", "2b", "3a", "3b"})
SIGNIFICANT = frozenset({"2b", "3b"})
DISTANCE_KEYS = ("char_levenshtein_norm", "word_levenshtein_norm", "wer")


@dataclass
class ReviewRow:
    """One signed review, as the statistics and the exports see it (identities included:
    ``exports`` replaces them by keyed hashes)."""

    review_id: int
    study_id: int
    study_uid: str
    reader_id: int
    reader: str
    model_version: str
    radpeer: str
    in_scope: bool
    signed_at: datetime | None
    draft_id: int | None
    revision_id: int | None
    char_levenshtein: int | None
    char_levenshtein_norm: float | None
    word_levenshtein: int | None
    word_levenshtein_norm: float | None
    wer: float | None
    impression_word_levenshtein_norm: float | None
    impression_wer: float | None
    arbitration_state: str | None
    arbitration_decision: str | None
    patient_id: str = ""  # exports turn it into patient_key (patient-level clustering)


def signed_reviews() -> QuerySet[Review]:
    return Review.objects.filter(signed_at__isnull=False)


def review_rows(queryset: QuerySet[Review] | None = None) -> list[ReviewRow]:
    """Signed reviews as rows, in one query (edit-distance numbers are pulled out of the JSON
    by the database, so per-section detail is not transferred)."""
    return list(iter_review_rows(queryset))


def iter_review_rows(queryset: QuerySet[Review] | None = None, *, chunk_size: int | None = None) -> Iterator[ReviewRow]:
    """``review_rows`` one at a time; with ``chunk_size`` in chunks of that many reviews by id
    (keyset pagination: each chunk an index range scan), so that an export streams instead of
    holding every review in memory. Not a server-side cursor: PostgreSQL plans a cursor for its
    first rows, and the joins then took 20 s instead of 2.7 s at 100,000 reviews."""
    qs = signed_reviews() if queryset is None else queryset.filter(signed_at__isnull=False)
    # Numbers are pulled out of the JSON and cast by the database: no JSON decoding per value here.
    numbers = {
        "ed_char": ("char_levenshtein", IntegerField()),
        "ed_char_norm": ("char_levenshtein_norm", FloatField()),
        "ed_word": ("word_levenshtein", IntegerField()),
        "ed_word_norm": ("word_levenshtein_norm", FloatField()),
        "ed_wer": ("wer", FloatField()),
        "ed_imp_word_norm": ("sections__impression__word_levenshtein_norm", FloatField()),
        "ed_imp_wer": ("sections__impression__wer", FloatField()),
    }
    values = (
        qs.annotate(**{name: Cast(KT(f"edit_distance__{path}"), field) for name, (path, field) in numbers.items()})
        .order_by("id")
        .values_list(
            "id",
            "study_id",
            "study__study_uid",
            "reader_id",
            "reader__username",
            "draft__model_version__name",
            "draft__model_version__version",
            "draft__job__pipeline_version",
            "radpeer",
            "in_scope",
            "signed_at",
            "draft_id",
            "signed_revision_id",
            *numbers,
            "arbitration__state",
            "arbitration__decision",
            "study__patient_id",
        )
    )
    chunks = _keyset_chunks(values, chunk_size) if chunk_size else [values]
    for chunk in chunks:
        for v in chunk:
            model = f"{v[5]}@{v[6]}" if v[5] else (v[7] or "")
            # ReviewRow's fields in order (v[8:-1]: radpeer to arbitration_decision; patient_id last), all
            # by position: mypy cannot count a slice, so a keyword after it reads as a possible duplicate
            in_field_order = (v[0], v[1], v[2], v[3], v[4], model, *v[8:-1], v[-1] or "")
            yield ReviewRow(*in_field_order)


def _keyset_chunks(values: QuerySet, size: int) -> Iterator[list[tuple]]:
    """``values`` (ordered by id, id first) in lists of ``size`` rows, each chunk one query."""
    last = None
    while True:
        chunk = list((values if last is None else values.filter(id__gt=last))[:size])
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0]


def _rate(count: int, n: int) -> float | None:
    return count / n if n else None


def radpeer_summary(rows: Iterable[ReviewRow]) -> dict:
    """Distribution, discrepancy rate (≥ 2) and clinically significant rate (2b + 3b)."""
    rows = list(rows)
    arbitrations = Counter(r.arbitration_state for r in rows)
    return _summary(Counter(r.radpeer for r in rows), len(rows), arbitrations["open"], arbitrations["resolved"])


def _summary(counts: Counter, n: int, arbitrations_open: int, arbitrations_resolved: int) -> dict:
    return {
        "n": n,
        "counts": {s: counts.get(s, 0) for s in RADPEER_SCORES},
        "share": {s: _rate(counts.get(s, 0), n) for s in RADPEER_SCORES},
        "discrepancy_rate": _rate(sum(counts[s] for s in DISCREPANT), n),
        "significant_rate": _rate(sum(counts[s] for s in SIGNIFICANT), n),
        "arbitrations_open": arbitrations_open,
        "arbitrations_resolved": arbitrations_resolved,
    }


def radpeer_by(rows: Iterable[ReviewRow], key: str) -> dict[str, dict]:
    """``radpeer_summary`` per value of ``key`` ("reader", "model_version", "in_scope")."""
    groups: dict[str, list[ReviewRow]] = defaultdict(list)
    for r in rows:
        groups[str(getattr(r, key))].append(r)
    return {k: radpeer_summary(v) for k, v in sorted(groups.items())}


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


# --- label agreement -------------------------------------------------------------------------


def label_agreement() -> list[dict]:
    """Per condition: extractor vs annotator (accuracy, kappa) and inter-annotator kappa. One
    query of confusion counts on PostgreSQL (``_label_agreement_sql``), else two queries and a
    loop over the confirmations."""
    if connection.vendor == "postgresql":
        return _label_agreement_sql()
    return label_agreement_from_rows()


def label_agreement_from_rows() -> list[dict]:
    """``label_agreement`` computed in Python from every confirmation (the reference)."""
    confirmations = list(
        LabelConfirmation.objects.order_by("extraction_id", "annotator_id").values_list(
            "extraction_id", "annotator_id", "labels"
        )
    )
    extractor_labels = dict(
        LabelExtraction.objects.filter(pk__in={c[0] for c in confirmations}).values_list("id", "labels")
    )
    by_extraction: dict[int, list[dict]] = defaultdict(list)
    for extraction_id, _annotator, labels in confirmations:
        by_extraction[extraction_id].append(labels)
    out = []
    for key in CONDITION_KEYS:
        ext, ann = [], []
        for extraction_id, _annotator, labels in confirmations:
            e = extractor_labels.get(extraction_id, {}).get(key)
            if e is not None and key in labels:
                ext.append(int(e))
                ann.append(int(labels[key]))
        first, second = [], []
        for labelled in by_extraction.values():
            if len(labelled) >= 2 and key in labelled[0] and key in labelled[1]:
                first.append(int(labelled[0][key]))
                second.append(int(labelled[1][key]))
        n = len(ext)
        out.append(
            {
                "condition": key,
                "n_confirmations": n,
                "extractor_accuracy": sum(a == b for a, b in zip(ext, ann, strict=True)) / n if n else None,
                "extractor_kappa": _nan_to_none(cohen_kappa(ext, ann)) if n else None,
                "n_double_annotated": len(first),
                "inter_annotator_agreement": (
                    sum(a == b for a, b in zip(first, second, strict=True)) / len(first) if first else None
                ),
                "inter_annotator_kappa": _nan_to_none(cohen_kappa(first, second)) if first else None,
            }
        )
    return out


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


# --- per-condition accuracy of drafts ----------------------------------------------------------


def _labels_subquery(extractions: QuerySet) -> Subquery:
    """The newest extraction's labels: on PostgreSQL as an int[] in canonical condition order
    (-2 where a condition is missing), built by the database, which psycopg decodes in C;
    elsewhere the JSON object."""
    if connection.vendor != "postgresql":
        return Subquery(extractions.values("labels")[:1])
    from django.contrib.postgres.fields import ArrayField
    from django.db.models import Func, Value
    from django.db.models.functions import Coalesce

    vector = Func(
        *[Coalesce(Cast(KT(f"labels__{k}"), IntegerField()), Value(-2)) for k in CONDITION_KEYS],
        template="ARRAY[%(expressions)s]::integer[]",
        output_field=ArrayField(IntegerField()),
    )
    return Subquery(extractions.annotate(vec=vector).values("vec")[:1], output_field=ArrayField(IntegerField()))


def draft_label_pairs() -> list[tuple[int, bool, dict | list, dict | list]]:
    """(draft_id, in_scope, signed labels, draft labels) per signed review whose signed report
    and draft were both label-extracted. One query (two correlated subqueries)."""
    signed = LabelExtraction.objects.filter(
        revision_id=OuterRef("signed_revision_id"), source=LabelExtraction.Source.SIGNED_REPORT
    ).order_by("-id")
    drafted = LabelExtraction.objects.filter(
        study_id=OuterRef("study_id"), source=LabelExtraction.Source.DRAFT, report_text=OuterRef("draft__text")
    ).order_by("-id")
    qs = (
        signed_reviews()
        .filter(draft__isnull=False)
        .annotate(signed_labels=_labels_subquery(signed), draft_labels=_labels_subquery(drafted))
        .filter(signed_labels__isnull=False, draft_labels__isnull=False)
        .order_by("id")
        .values_list("draft_id", "in_scope", "signed_labels", "draft_labels")
    )
    return [(d, s, _as_labels(a), _as_labels(b)) for d, s, a, b in qs]


def _as_labels(value: object) -> dict | list:
    """A label vector (PostgreSQL) or the labels JSON (decoded, or as text on SQLite)."""
    if isinstance(value, str):
        import json

        return json.loads(value)
    return value  # type: ignore[return-value]


_ALL_LABELS = operator.itemgetter(*CONDITION_KEYS)


def _label_vector(labels: dict | list) -> tuple[int, ...]:
    """The 17 labels in canonical order; -2 for a condition the extractor did not report."""
    if isinstance(labels, list):  # already a vector (PostgreSQL, see _labels_subquery)
        return labels  # type: ignore[return-value]
    try:
        return _ALL_LABELS(labels)
    except KeyError:
        return tuple(labels.get(k, -2) for k in CONDITION_KEYS)


def _findings_per_draft(drafts: QuerySet) -> Iterable[tuple[int, list[str], list[float]]]:
    """(draft id, conditions, probabilities) per draft: one row per draft, aggregated by
    PostgreSQL (17x fewer rows to transfer); one row per finding elsewhere (SQLite demo)."""
    findings = Finding.objects.filter(draft_id__in=drafts)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.aggregates import ArrayAgg

        yield from (
            findings.order_by()
            .values("draft_id")
            .annotate(c=ArrayAgg("condition", order_by="condition"), p=ArrayAgg("probability", order_by="condition"))
            .values_list("draft_id", "c", "p")
        )
        return
    for draft_id, condition, p in findings.values_list("draft_id", "condition", "probability"):
        yield draft_id, [condition], [p]


SCOPES = ("all", "in_scope", "out_of_scope")


def draft_accuracy(scopes: tuple[str, ...] = SCOPES) -> list[dict]:
    """Per condition and scope: sensitivity, specificity (draft labels vs signed-report labels)
    and AUROC of the draft's finding probability against the signed-report label. Two queries
    (packed columns on PostgreSQL, see ``_draft_arrays``); the counting is vectorised (numpy)."""
    if connection.vendor == "postgresql":
        return _accuracy_table(*_draft_arrays(), scopes)
    pairs = draft_label_pairs()
    keys = CONDITION_KEYS
    n = len(pairs)
    rows_of: dict[int, list[int]] = defaultdict(list)  # a draft read by several readers: one row each
    for i, p in enumerate(pairs):
        rows_of[p[0]].append(i)
    ref = np.array([_label_vector(p[2]) for p in pairs], dtype=np.int16).reshape(n, len(keys))  # (n, 17)
    hyp = np.array([_label_vector(p[3]) for p in pairs], dtype=np.int16).reshape(n, len(keys))  # (n, 17)
    in_scope = np.array([bool(p[1]) for p in pairs], dtype=bool)  # (n,)
    prob = np.full((n, len(keys)), np.nan)  # (n, 17)
    if n:
        column = {k: j for j, k in enumerate(keys)}
        drafts = signed_reviews().filter(draft__isnull=False).values("draft_id")
        for draft_id, conditions, probabilities in _findings_per_draft(drafts):
            for i in rows_of.get(draft_id, ()):
                for condition, probability in zip(conditions, probabilities, strict=True):
                    if condition in column:
                        prob[i, column[condition]] = probability
    return _accuracy_table(ref, hyp, in_scope, prob, scopes)


def _accuracy_table(
    ref: np.ndarray, hyp: np.ndarray, in_scope: np.ndarray, prob: np.ndarray, scopes: tuple[str, ...]
) -> list[dict]:
    """The draft-accuracy rows from per-review label vectors ``ref``/``hyp`` (n, 17; -1 uncertain,
    -2 missing), scope flags (n,) and finding probabilities (n, 17; NaN where none)."""
    n = len(in_scope)
    # one contiguous row per condition: a column of an (n, 17) array is strided, and scanning and
    # sorting it took twice as long (0.7 s at 100,000 reviews)
    ref, hyp, prob = (np.ascontiguousarray(a.T) for a in (ref, hyp, prob))  # (17, n) each
    definite_ref = (ref == 0) | (ref == 1)
    definite_hyp = (hyp == 0) | (hyp == 1)
    has_prob = ~np.isnan(prob)
    # one sort per condition serves the three scopes (a subset of a sorted column stays sorted);
    # not a stable sort: tied scores share their average rank, so their order changes nothing
    # (the rank sums are of half-integers, exact in float64), and numpy's SIMD sort is 3x faster
    order = np.argsort(prob, axis=1)
    cells = {  # sensitivity_specificity's four counts, for the 17 conditions at once
        "tp": (ref == 1) & (hyp == 1), "fn": (ref == 1) & (hyp == 0),
        "tn": (ref == 0) & (hyp == 0), "fp": (ref == 0) & (hyp == 1),
    }  # fmt: skip
    out = []
    for scope in scopes:
        chosen = np.ones(n, dtype=bool) if scope == "all" else (in_scope == (scope == "in_scope"))
        chosen_ref = chosen & definite_ref  # (17, n)
        both = chosen_ref & definite_hyp
        with_prob = chosen_ref & has_prob
        m_all, n_auroc = both.sum(axis=1), with_prob.sum(axis=1)
        count = {name: (cell & both).sum(axis=1) for name, cell in cells.items()}
        for j, key in enumerate(CONDITION_KEYS):
            tp, fn, tn, fp = (int(count[name][j]) for name in ("tp", "fn", "tn", "fp"))
            scored = order[j][with_prob[j][order[j]]]  # the reviews in the AUROC, by ascending probability
            m = int(m_all[j])
            out.append(
                {
                    "condition": key,
                    "scope": scope,
                    "n": m,
                    "prevalence": (tp + fn) / m if m else None,
                    **{"tp": tp, "fn": fn, "tn": tn, "fp": fp},
                    "sensitivity": tp / (tp + fn) if tp + fn else None,
                    "specificity": tn / (tn + fp) if tn + fp else None,
                    "auroc": auroc_presorted(ref[j][scored], prob[j][scored]),
                    "n_auroc": int(n_auroc[j]),
                }
            )
    return out


def auroc_presorted(truth: np.ndarray, score: np.ndarray) -> float | None:
    """``reviewer.research.metrics.auroc`` for scores already in ascending order, without sorting again:
    the same average ranks of ties (half-integers, summed exactly in float64), so the same
    value to the last bit."""
    n_pos, n_neg = int((truth == 1).sum()), int((truth == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    m = score.size
    starts = np.flatnonzero(np.concatenate(([True], score[1:] != score[:-1])))  # first index of each run of ties
    ends = np.append(starts[1:], m)
    ranks = np.repeat((starts + 1 + ends) / 2.0, ends - starts)  # the run's average 1-based rank
    u = ranks[truth == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


# --- aggregation in PostgreSQL -------------------------------------------------------------------
#
# A quantile, a rank correlation or an AUROC needs every value (no running counter gives them),
# so for those the database extracts exactly the numbers needed (JSON keys, the newest label
# extraction, the finding probabilities) and packs them into one bytea per query (fixed-width
# big-endian fields, ``string_agg``); numpy reads it in one call. Binary floats are exact, so
# the figures equal the row functions' to the last bit. Everything countable is counted there.


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _fetch_one(sql: str, params: list | tuple = ()) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _fetch_packed(sql: str, params: list | tuple = ()) -> tuple:
    """One row of packed (bytea) values in PostgreSQL's binary format: half the bytes of the
    text format's hex, and no hex to encode and decode (tens of MB at 100,000 reviews)."""
    import psycopg

    connection.ensure_connection()
    # Django's cursors bind parameters client-side, which rules out binary results
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cast(tuple, cursor.fetchone())  # an aggregate without GROUP BY: always one row


@contextmanager
def _without_jit() -> Iterator[None]:
    """A transaction for the statistics queries on PostgreSQL: without JIT compilation (they run
    once per change of the data, and compiling them costs more than it saves: about 90 ms of 480
    at 10,000 reviews) and with room to sort and hash in memory. Re-entrant: an inner use adds
    no savepoint."""
    from django.db import transaction

    if connection.vendor != "postgresql" or getattr(connection, "_stats_without_jit", False):
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            # the packed columns are sorted and hashed in memory, not in temporary files
            cursor.execute("SET LOCAL work_mem = '256MB'")
        connection._stats_without_jit = True
        try:
            yield
        finally:
            connection._stats_without_jit = False


_radpeer_code_sql = aggregates.radpeer_code_sql


def _radpeer_groups() -> list[dict]:
    """Signed reviews counted per (reader, model, scope, score, arbitration state): a few hundred
    rows however many reviews there are."""
    from django.db.models import Count

    return list(
        signed_reviews()
        .order_by()
        .values(
            "reader_id",
            "draft__model_version__name",
            "draft__model_version__version",
            "draft__job__pipeline_version",
            "in_scope",
            "radpeer",
            "arbitration__state",
        )
        .annotate(n=Count("id"))
    )


def _summaries(groups: list[dict], key: Callable[[dict], object]) -> dict:
    """``_summary`` per value of ``key`` over the grouped counts, in ``radpeer_by``'s order."""
    per: dict[object, list[dict]] = defaultdict(list)
    for g in groups:
        per[key(g)].append(g)
    return {k: _summary_of(per[k]) for k in sorted(per, key=str)}


def _summary_of(groups: list[dict]) -> dict:
    counts: Counter = Counter()
    arbitrations: Counter = Counter()
    for g in groups:
        counts[g["radpeer"]] += g["n"]
        arbitrations[g["arbitration__state"]] += g["n"]
    return _summary(counts, sum(counts.values()), arbitrations["open"], arbitrations["resolved"])


def _model_key(g: dict) -> str:
    name = g["draft__model_version__name"]
    return f"{name}@{g['draft__model_version__version']}" if name else (g["draft__job__pipeline_version"] or "")


_DISTANCE_DTYPE = np.dtype([("radpeer", ">i2"), *((k, ">f8") for k in DISTANCE_KEYS)])


def _distance_sql() -> str:
    """(radpeer index, char norm, word norm, WER) per signed review in id order, packed; NaN
    where a review has no stored distance."""
    values = " || ".join(
        f"float8send(coalesce((edit_distance ->> '{k}')::double precision, 'NaN'))" for k in DISTANCE_KEYS
    )
    return (
        f"SELECT string_agg(int2send(({_radpeer_code_sql('radpeer')})::smallint) || {values}, ''::bytea ORDER BY id)"
        f" FROM {_table(Review)} WHERE signed_at IS NOT NULL"
    )


def _unpack(packed: object, dtype: np.dtype) -> np.ndarray:
    return np.frombuffer(bytes(packed or b""), dtype=dtype)  # type: ignore[call-overload]


def _distance_tables(packed: np.ndarray) -> tuple[dict, float | None, dict]:
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


HISTOGRAM_BINS = 20


_CONFIRMATION_DTYPE = aggregates.CONFIRMATION_DTYPE
MISSING = aggregates.MISSING
_labels_vector_sql = aggregates.labels_vector_sql


def _label_agreement_sql() -> list[dict]:
    """``label_agreement`` on PostgreSQL: per confirmation (ordered by report, then annotator id)
    its rank among the report's annotators and the annotator's and the extractor's label
    vectors, packed; the confusion counts are then numpy's. One query."""
    from reviewer.models import LabelConfirmation

    sql = f"""
        SELECT string_agg(int8send(c.extraction_id) || int2send(c.rn::smallint) || {_labels_vector_sql("c")}
                          || {_labels_vector_sql("e")}, ''::bytea ORDER BY c.extraction_id, c.annotator_id)
        FROM (SELECT extraction_id, annotator_id, labels,
                     row_number() OVER (PARTITION BY extraction_id ORDER BY annotator_id) AS rn
              FROM {_table(LabelConfirmation)}) c
             JOIN {_table(LabelExtraction)} e ON e.id = c.extraction_id"""
    with _without_jit():
        (packed,) = _fetch_packed(sql)
    return _agreement_from_packed(packed)


def _agreement_from_packed(packed: object) -> list[dict]:
    """``label_agreement`` from the packed confirmations (``_CONFIRMATION_DTYPE``, by report then
    annotator id): the confusion counts are numpy's."""
    rows = _unpack(packed, _CONFIRMATION_DTYPE)
    annotator = rows["annotator"].astype(np.int64).reshape(len(rows), len(CONDITION_KEYS))
    extractor = rows["extractor"].astype(np.int64).reshape(len(rows), len(CONDITION_KEYS))
    # the first two annotators of a report: a rank-1 row followed by the same report's rank-2 row
    first = np.flatnonzero(rows["rank"][:-1] == 1)
    first = first[rows["rank"][first + 1] == 2]
    out = []
    for j, key in enumerate(CONDITION_KEYS):
        both = (annotator[:, j] != MISSING) & (extractor[:, j] != MISSING)
        ext, ann = extractor[both, j], annotator[both, j]
        pair = (annotator[first, j] != MISSING) & (annotator[first + 1, j] != MISSING)
        one, two = annotator[first[pair], j], annotator[first[pair] + 1, j]
        n, n2 = int(both.sum()), int(pair.sum())
        out.append(
            {
                "condition": key,
                "n_confirmations": n,
                "extractor_accuracy": int((ext == ann).sum()) / n if n else None,
                "extractor_kappa": _nan_to_none(_kappa(ext, ann)) if n else None,
                "n_double_annotated": n2,
                "inter_annotator_agreement": int((one == two).sum()) / n2 if n2 else None,
                "inter_annotator_kappa": _nan_to_none(_kappa(one, two)) if n2 else None,
            }
        )
    return out


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    """``reviewer.research.metrics.cohen_kappa`` of two label arrays with the confusion matrix built by
    numpy (same labels in the same order, same counts, same arithmetic: the same float)."""
    n = len(a)
    if n == 0:
        return math.nan
    labels = np.union1d(a, b)
    k = len(labels)
    cell = np.searchsorted(labels, a) * k + np.searchsorted(labels, b)
    # (k, k) confusion counts; bincount, not np.add.at (same counts, a quarter of the time)
    cm = np.bincount(cell, minlength=k * k).reshape(k, k).astype(np.float64)
    p_observed = np.trace(cm) / n
    p_expected = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if p_expected == 1.0:
        return math.nan
    return float((p_observed - p_expected) / (1.0 - p_expected))


_REVIEW_DTYPE = np.dtype(
    [("draft", ">i8"), ("in_scope", ">i2"), ("ref", ">i2", len(CONDITION_KEYS)), ("hyp", ">i2", len(CONDITION_KEYS))]
)
_FINDING_DTYPE = np.dtype([("draft", ">i8"), ("condition", ">i2"), ("p", ">f8")])


def _draft_sql() -> tuple[str, str, list]:
    """The two packed queries of ``_draft_arrays`` and their parameters: per signed review whose
    signed report and draft were both label-extracted (the newest extraction of each), in id
    order, the draft id, the scope flag and the two label vectors; and every finding of the
    signed reviews' drafts (draft id, condition number, probability)."""
    from reviewer.models import Draft

    extractions = _table(LabelExtraction)

    vector = _labels_vector_sql
    reviews_sql = f"""
        SELECT string_agg(int8send(r.draft_id) || int2send(r.in_scope::int::smallint) || {vector("s")}
                          || {vector("d")}, ''::bytea ORDER BY r.id)
        FROM {_table(Review)} r
             JOIN {_table(Draft)} dr ON dr.id = r.draft_id
             JOIN LATERAL (SELECT labels FROM {extractions}
                           WHERE revision_id = r.signed_revision_id AND source = %s
                           ORDER BY id DESC LIMIT 1) s ON true
             JOIN LATERAL (SELECT labels FROM {extractions}
                           WHERE study_id = r.study_id AND source = %s AND report_text = dr.text
                           ORDER BY id DESC LIMIT 1) d ON true
        WHERE r.signed_at IS NOT NULL"""
    findings_sql = f"""
        SELECT string_agg(int8send(f.draft_id) || int2send(k.ord::smallint) || float8send(f.probability), ''::bytea)
        FROM {_table(Finding)} f
             JOIN unnest(%s::text[]) WITH ORDINALITY AS k(key, ord) ON k.key = f.condition
        WHERE f.draft_id IN (SELECT draft_id FROM {_table(Review)} WHERE signed_at IS NOT NULL)"""
    params = [LabelExtraction.Source.SIGNED_REPORT, LabelExtraction.Source.DRAFT, list(CONDITION_KEYS)]
    return reviews_sql, findings_sql, params


def _draft_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ref, hyp, in_scope, prob) of ``_accuracy_table``. One query."""
    reviews_sql, findings_sql, params = _draft_sql()
    with _without_jit():
        reviews, findings = _fetch_packed(f"SELECT ({reviews_sql}), ({findings_sql})", params)
    return _draft_from_packed(reviews, findings)


def _draft_from_packed(
    packed_reviews: object, packed_findings: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    reviews = _unpack(packed_reviews, _REVIEW_DTYPE)
    n, k = len(reviews), len(CONDITION_KEYS)
    prob = np.full((n, k), np.nan)
    findings = _unpack(packed_findings, _FINDING_DTYPE)
    if n and len(findings):
        # each finding goes to every review of its draft (several readers may review one draft)
        drafts = reviews["draft"].astype(np.int64)
        order = np.argsort(drafts, kind="stable")
        sorted_drafts = drafts[order]
        f_draft = findings["draft"].astype(np.int64)
        lo = np.searchsorted(sorted_drafts, f_draft, side="left")
        per = np.searchsorted(sorted_drafts, f_draft, side="right") - lo
        which = np.repeat(np.arange(len(findings)), per)
        offset = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        rows = order[np.repeat(lo, per) + offset]
        prob[rows, findings["condition"][which].astype(np.int64) - 1] = findings["p"][which].astype(np.float64)
    ref = reviews["ref"].astype(np.int16).reshape(n, k)
    hyp = reviews["hyp"].astype(np.int16).reshape(n, k)
    return ref, hyp, reviews["in_scope"].astype(bool), prob


# --- the cached overview -------------------------------------------------------------------------


def stats_fingerprint() -> tuple:
    """Changes whenever a figure of ``overview`` could, and costs index lookups only (no count
    over the large tables: at 100,000 reviews those took 0.7 s): the last id of reviews, label
    extractions, confirmations and findings (new rows), the arbitrations (a small table: count,
    resolved, last resolution), model versions (id, name, version), and the last audit event of a
    change that keeps the ids (a signature, an arbitration, a corrected confirmation, recomputed
    edit distances). A deletion alone (a study removed) is seen at the next change or after
    ``CACHE_SECONDS``. One query on PostgreSQL."""
    from reviewer.models import Arbitration, AuditEvent, LabelConfirmation, ModelVersion

    arbitration = _table(Arbitration)
    audited = "action = 'review.signed' OR action LIKE 'labels.%%' OR action LIKE 'arbitration.%%'"
    audited += " OR action = 'edit_distance.recomputed' OR action = 'statistics.rebuilt'"
    sql = f"""SELECT
        (SELECT max(id) FROM {_table(Review)}),
        (SELECT max(id) FROM {_table(LabelExtraction)}),
        (SELECT max(id) FROM {_table(LabelConfirmation)}),
        (SELECT max(id) FROM {_table(Finding)}),
        (SELECT count(*) FROM {arbitration}),
        (SELECT count(*) FROM {arbitration} WHERE state = 'resolved'),
        (SELECT max(resolved_at) FROM {arbitration}),
        (SELECT id FROM {_table(AuditEvent)} WHERE {audited} ORDER BY id DESC LIMIT 1)"""
    if connection.vendor == "postgresql":
        sql += (
            f",\n(SELECT string_agg(id || ':' || name || '@' || version, ',' ORDER BY id) FROM {_table(ModelVersion)})"
        )
        return tuple(str(v) for v in _fetch_one(sql))
    found = tuple(str(v) for v in _fetch_one(sql))
    return found + tuple(ModelVersion.objects.order_by("id").values_list("id", "name", "version"))


CACHE_SECONDS = 3600


def _compute_bundle() -> dict:
    """Every figure of the statistics page, the API and the plots, keyed by reader id (names and
    pseudonyms are applied per request). On PostgreSQL from the statistics rows that the
    services keep (``reviewer.research.aggregates``): two queries over narrow tables, whatever
    the number of reviews; elsewhere from the review rows."""
    if connection.vendor != "postgresql":
        return _bundle_from_rows(review_rows())
    with _without_jit():
        groups = aggregates.radpeer_groups()
        reviews, confirmations = _fetch_packed(
            f"SELECT ({aggregates.packed_reviews_sql()}), ({aggregates.packed_confirmations_sql()})"
        )
    rows = _unpack(reviews, aggregates.REVIEW_DTYPE)
    edit, rho, plot_data = _distance_tables(rows)
    labelled = rows[rows["labelled"] == 1]
    n, k = len(labelled), len(CONDITION_KEYS)
    accuracy = _accuracy_table(
        labelled["ref"].astype(np.int16).reshape(n, k), labelled["hyp"].astype(np.int16).reshape(n, k),
        labelled["in_scope"].astype(bool), labelled["prob"].astype(np.float64).reshape(n, k), SCOPES,
    )  # fmt: skip
    return _bundle(groups, edit, rho, _agreement_from_packed(confirmations), accuracy, plot_data)


def _bundle(groups: list[dict], edit: dict, rho: float | None, agreement: list, accuracy: list, plot: dict) -> dict:
    return {
        "radpeer": _summary_of(groups),
        "by_reader_id": _summaries(groups, operator.itemgetter("reader_id")),
        "by_model": _summaries(groups, _model_key),
        "by_scope": _scope_summaries(_summaries(groups, operator.itemgetter("in_scope"))),
        "edit_distance": edit,
        "spearman_word_norm": rho,
        "label_agreement": agreement,
        "draft_accuracy": accuracy,
        "plot": plot,
    }


def _compute_bundle_from_tables() -> dict:
    """``_compute_bundle`` from the base tables (PostgreSQL): what the statistics rows must
    reproduce, and the cost they save (seconds at 100,000 reviews)."""
    reviews_sql, findings_sql, params = _draft_sql()
    with _without_jit():
        groups = _radpeer_groups()
        distances, reviews, findings = _fetch_packed(
            f"SELECT ({_distance_sql()}), ({reviews_sql}), ({findings_sql})", params
        )
        agreement = label_agreement()
    edit, rho, plot_data = _distance_tables(_unpack(distances, _DISTANCE_DTYPE))
    accuracy = _accuracy_table(*_draft_from_packed(reviews, findings), SCOPES)
    return _bundle(groups, edit, rho, agreement, accuracy, plot_data)


def _scope_summaries(by_flag: dict) -> dict:
    return {("in_scope" if str(k) == "True" else "out_of_scope"): v for k, v in by_flag.items()}


def _bundle_from_rows(rows: list[ReviewRow]) -> dict:
    """``_compute_bundle`` by the row functions (SQLite, and ``overview(rows=...)``)."""
    from matplotlib import cbook

    boxes: dict[str, list[dict]] = {}
    for key in DISTANCE_KEYS:
        boxes[key] = []
        for s in RADPEER_SCORES:
            values = [getattr(r, key) for r in rows if r.radpeer == s and getattr(r, key) is not None]
            if values:
                (box,) = cbook.boxplot_stats(np.asarray(values, dtype=np.float64), labels=[s])
                boxes[key].append({**box, "fliers": np.empty(0)})
    histogram = {
        s: np.histogram(
            [r.word_levenshtein_norm for r in rows if r.radpeer == s and r.word_levenshtein_norm is not None],
            bins=HISTOGRAM_BINS, range=(0, 1),
        )[0].tolist()
        for s in RADPEER_SCORES
    }  # fmt: skip
    return {
        "radpeer": radpeer_summary(rows),
        "by_reader_id": radpeer_by_value(rows, "reader_id"),
        "by_model": radpeer_by(rows, "model_version"),
        "by_scope": _scope_summaries(radpeer_by(rows, "in_scope")),
        "edit_distance": edit_distance_by_radpeer(rows),
        "spearman_word_norm": spearman_radpeer_vs_distance(rows),
        "label_agreement": label_agreement(),
        "draft_accuracy": draft_accuracy(),
        "plot": {"boxes": boxes, "histogram": histogram},
    }


def radpeer_by_value(rows: Iterable[ReviewRow], key: str) -> dict[object, dict]:
    """``radpeer_by`` keyed by the value itself (not its string), in the same order."""
    groups: dict[object, list[ReviewRow]] = defaultdict(list)
    for r in rows:
        groups[getattr(r, key)].append(r)
    return {k: radpeer_summary(groups[k]) for k in sorted(groups, key=str)}


def fingerprint_digest() -> str:
    """``stats_fingerprint`` as a short cache-key part (also keys the rendered plots)."""
    import hashlib

    return hashlib.sha256(repr(stats_fingerprint()).encode()).hexdigest()[:32]


def cached_bundle() -> dict:
    """``_compute_bundle`` cached under ``stats_fingerprint``: a signature, arbitration,
    extraction, confirmation or recomputation changes the key, so no change made through the
    services leaves it stale, and only the first view after a change computes."""
    from django.core.cache import cache

    key = f"spinereview:stats:bundle:{fingerprint_digest()}"
    found = cache.get(key)
    if found is None:
        found = _compute_bundle()
        cache.set(key, found, CACHE_SECONDS)
    return found


def cached_label_tables() -> tuple[list[dict], list[dict]]:
    """(label_agreement, draft_accuracy) of the cached bundle."""
    bundle = cached_bundle()
    return bundle["label_agreement"], bundle["draft_accuracy"]


def reader_names(reader_ids: Iterable[int]) -> dict[int, str]:
    """Usernames of the readers (admins' view; looked up per request, never cached)."""
    from django.contrib.auth import get_user_model

    return dict(get_user_model().objects.filter(pk__in=list(reader_ids)).values_list("id", "username"))


def overview(*, rows: list[ReviewRow] | None = None, cached: bool = True, reader_keys: bool = False) -> dict:
    """Everything the statistics page and ``/api/stats/`` show. Readers are named by username,
    or with ``reader_keys`` by ``reviewer.deid``'s reader pseudonym (the ``reader_key`` of the
    exports), in the order of their ids as text, as the exports' per-reader summary."""
    if rows is not None:
        bundle = _bundle_from_rows(rows)
    elif cached:
        bundle = cached_bundle()
    else:
        bundle = _compute_bundle()
    by_id = bundle["by_reader_id"]
    if reader_keys:
        from reviewer import deid

        secret = deid.pseudonym_secret()
        by_reader = {deid.pseudonym("reader", k, secret=secret): by_id[k] for k in sorted(by_id, key=str)}
    else:
        names = reader_names(by_id)
        by_reader = {str(names.get(k, k)): v for k, v in by_id.items()}
        by_reader = dict(sorted(by_reader.items()))
    return {
        "radpeer": bundle["radpeer"],
        "radpeer_by_reader": by_reader,
        "radpeer_by_model": bundle["by_model"],
        "radpeer_by_scope": bundle["by_scope"],
        "edit_distance": bundle["edit_distance"],
        "spearman_word_norm": bundle["spearman_word_norm"],
        "label_agreement": bundle["label_agreement"],
        "draft_accuracy": bundle["draft_accuracy"],
    }


REVIEW_ROW_FIELDS = tuple(f.name for f in fields(ReviewRow))
