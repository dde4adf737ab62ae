"""Per-condition accuracy of the drafts (the paper's Fig. 6e): sensitivity and specificity of the
labels extracted from the draft against those from the signed report, and the AUROC of the
draft's finding probabilities, for all reviews, in scope and out of scope.

``accuracy_table`` does the counting for every path (17 conditions at once per scope, numpy); the
paths differ in how the per-review label vectors arrive: the ORM with one query (SQLite), packed
columns from the base tables (``draft_sql``), or the statistics rows (``bundle``)."""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from django.db import connection
from django.db.models import IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from ml.conditions import CONDITION_KEYS
from reviewer.models import Finding, LabelExtraction, Review
from reviewer.research import aggregates
from reviewer.research.stats.db import fetch_packed, table, unpack, without_jit
from reviewer.research.stats.rows import signed_reviews

labels_vector_sql = aggregates.labels_vector_sql


SCOPES = ("all", "in_scope", "out_of_scope")
_ALL_LABELS = operator.itemgetter(*CONDITION_KEYS)


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


def draft_accuracy(scopes: tuple[str, ...] = SCOPES) -> list[dict]:
    """Per condition and scope: sensitivity, specificity (draft labels vs signed-report labels)
    and AUROC of the draft's finding probability against the signed-report label. Two queries
    (packed columns on PostgreSQL, see ``_draft_arrays``); the counting is vectorised (numpy)."""
    if connection.vendor == "postgresql":
        return accuracy_table(*_draft_arrays(), scopes)
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
    return accuracy_table(ref, hyp, in_scope, prob, scopes)


def by_condition(a: np.ndarray, dtype: type) -> np.ndarray:
    """An (n, 17) array (any byte order or strides, e.g. a field of the packed rows) as a native
    (17, n) array, one contiguous row per condition, converted and transposed in one pass: a
    column of an (n, 17) array is strided, and scanning and sorting it took twice as long."""
    out: np.ndarray = np.empty(a.shape[::-1], dtype=dtype)
    out[...] = a.T
    return out


# the cells of the confusion counts per condition: in scope or not, with a probability or not, and the
# reference's and the draft's class (0 absent, 1 present, 2 anything else: uncertain or missing)
_N_CELLS = 2 * 2 * 3 * 3


def _label_class(labels: np.ndarray) -> np.ndarray:
    """0 for a label 0, 1 for a label 1, 2 for anything else, as uint8 (a few passes of 1 byte)."""
    return (labels != 0).view(np.uint8) * np.uint8(2) - (labels == 1).view(np.uint8)


def accuracy_table(
    ref: np.ndarray, hyp: np.ndarray, in_scope: np.ndarray, prob: np.ndarray, scopes: tuple[str, ...]
) -> list[dict]:
    """The draft-accuracy rows from per-review label vectors ``ref``/``hyp`` (n, 17; -1 uncertain,
    -2 missing), scope flags (n,) and finding probabilities (n, 17; NaN where none).

    Every count (tp, fn, tn, fp, n, n_auroc of each condition and scope) comes from a
    ``bincount`` per condition over (in scope, has probability, reference class, draft class):
    one pass over the labels instead of a boolean mask per count and scope. The AUROCs are
    counted too (``twice_u``), the same floats as from ranks."""
    k = len(CONDITION_KEYS)
    ref, hyp, prob = by_condition(ref, np.int16), by_condition(hyp, np.int16), by_condition(prob, np.float64)
    has_prob = ~np.isnan(prob)
    scope_flag = np.asarray(in_scope, dtype=bool)
    # (in scope, has probability, reference class, draft class) as one small number per review and condition
    cell = (scope_flag.view(np.uint8) * np.uint8(2) + has_prob.view(np.uint8)) * np.uint8(3) + _label_class(ref)
    cell = cell * np.uint8(3) + _label_class(hyp)  # (17, n)
    counts = np.stack([np.bincount(row, minlength=_N_CELLS) for row in cell]).reshape(k, 2, 2, 3, 3)
    out: list[dict] = []
    for scope in scopes:
        chosen = counts.sum(axis=1) if scope == "all" else counts[:, int(scope == "in_scope")]  # (17, prob, ref, hyp)
        definite = chosen[:, :, :2, :2].sum(axis=1)  # (17, ref, hyp): definite on both sides
        with_prob = chosen[:, 1, :2, :].sum(axis=(1, 2))
        for j, key in enumerate(CONDITION_KEYS):
            (tn, fp), (fn, tp) = definite[j].tolist()
            m = tp + fn + tn + fp
            out.append(
                {
                    "condition": key,
                    "scope": scope,
                    "n": m,
                    "prevalence": (tp + fn) / m if m else None,
                    **{"tp": tp, "fn": fn, "tn": tn, "fp": fp},
                    "sensitivity": tp / (tp + fn) if tp + fn else None,
                    "specificity": tn / (tn + fp) if tn + fp else None,
                    "auroc": None,
                    "n_auroc": int(with_prob[j]),
                }
            )
    for j in range(k):
        aurocs = _scope_aurocs(ref[j], prob[j], has_prob[j], scope_flag)
        for i, scope in enumerate(scopes):
            out[i * k + j]["auroc"] = aurocs[scope]
    return out


def _scope_aurocs(ref: np.ndarray, prob: np.ndarray, has_prob: np.ndarray, in_scope: np.ndarray) -> dict:
    """One condition's AUROC for all reviews, in scope and out of scope, by counting (see
    ``twice_u``): the negatives of each scope sorted once, every positive placed in both, and
    the counts of all reviews are the sums of the four (no sort of all reviews, no ranks)."""
    positive, negative = has_prob & (ref == 1), has_prob & (ref == 0)
    negatives = {flag: np.sort(prob[negative & (in_scope == flag)]) for flag in (True, False)}
    positives = {flag: np.sort(prob[positive & (in_scope == flag)]) for flag in (True, False)}
    u2 = {(p, q): twice_u(positives[p], negatives[q]) for p in (True, False) for q in (True, False)}
    n_pos = {flag: positives[flag].size for flag in (True, False)}
    n_neg = {flag: negatives[flag].size for flag in (True, False)}
    return {
        "all": _auroc(sum(u2.values()), n_pos[True] + n_pos[False], n_neg[True] + n_neg[False]),
        "in_scope": _auroc(u2[(True, True)], n_pos[True], n_neg[True]),
        "out_of_scope": _auroc(u2[(False, False)], n_pos[False], n_neg[False]),
    }


def twice_u(positives: np.ndarray, sorted_negatives: np.ndarray) -> int:
    """Twice the Mann-Whitney U of the positives' scores against the negatives': for each positive
    the negatives below it plus those at or below it (a tie counts one half, twice). An integer,
    so exact: U is the rank sum of the positives less n_pos (n_pos + 1) / 2, which the rank
    computation also gets exactly (half-integers), and the AUROC is the same float."""
    below = np.searchsorted(sorted_negatives, positives, side="left")
    at_or_below = np.searchsorted(sorted_negatives, positives, side="right")
    return int(below.sum()) + int(at_or_below.sum())


def _auroc(u2: int, n_pos: int, n_neg: int) -> float | None:
    if n_pos == 0 or n_neg == 0:
        return None
    return float((u2 / 2) / (n_pos * n_neg))


def auroc_presorted(truth: np.ndarray, score: np.ndarray) -> float | None:
    """``reviewer.research.metrics.auroc`` for scores in ascending order (ties in any order): the
    same float, by ``twice_u`` (the negatives of sorted scores are sorted)."""
    return _auroc(twice_u(score[truth == 1], score[truth == 0]), int((truth == 1).sum()), int((truth == 0).sum()))


_REVIEW_DTYPE = np.dtype(
    [("draft", ">i8"), ("in_scope", ">i2"), ("ref", ">i2", len(CONDITION_KEYS)), ("hyp", ">i2", len(CONDITION_KEYS))]
)
_FINDING_DTYPE = np.dtype([("draft", ">i8"), ("condition", ">i2"), ("p", ">f8")])


def draft_sql() -> tuple[str, str, list]:
    """The two packed queries of ``_draft_arrays`` and their parameters: per signed review whose
    signed report and draft were both label-extracted (the newest extraction of each), in id
    order, the draft id, the scope flag and the two label vectors; and every finding of the
    signed reviews' drafts (draft id, condition number, probability)."""
    from reviewer.models import Draft

    extractions = table(LabelExtraction)

    vector = labels_vector_sql
    reviews_sql = f"""
        SELECT string_agg(int8send(r.draft_id) || int2send(r.in_scope::int::smallint) || {vector("s")}
                          || {vector("d")}, ''::bytea ORDER BY r.id)
        FROM {table(Review)} r
             JOIN {table(Draft)} dr ON dr.id = r.draft_id
             JOIN LATERAL (SELECT labels FROM {extractions}
                           WHERE revision_id = r.signed_revision_id AND source = %s
                           ORDER BY id DESC LIMIT 1) s ON true
             JOIN LATERAL (SELECT labels FROM {extractions}
                           WHERE study_id = r.study_id AND source = %s AND report_text = dr.text
                           ORDER BY id DESC LIMIT 1) d ON true
        WHERE r.signed_at IS NOT NULL"""
    findings_sql = f"""
        SELECT string_agg(int8send(f.draft_id) || int2send(k.ord::smallint) || float8send(f.probability), ''::bytea)
        FROM {table(Finding)} f
             JOIN unnest(%s::text[]) WITH ORDINALITY AS k(key, ord) ON k.key = f.condition
        WHERE f.draft_id IN (SELECT draft_id FROM {table(Review)} WHERE signed_at IS NOT NULL)"""
    params = [LabelExtraction.Source.SIGNED_REPORT, LabelExtraction.Source.DRAFT, list(CONDITION_KEYS)]
    return reviews_sql, findings_sql, params


def _draft_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ref, hyp, in_scope, prob) of ``accuracy_table``. One query."""
    reviews_sql, findings_sql, params = draft_sql()
    with without_jit():
        reviews, findings = fetch_packed(f"SELECT ({reviews_sql}), ({findings_sql})", params)
    return draft_from_packed(reviews, findings)


def draft_from_packed(
    packed_reviews: object, packed_findings: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    reviews = unpack(packed_reviews, _REVIEW_DTYPE)
    n, k = len(reviews), len(CONDITION_KEYS)
    prob = np.full((n, k), np.nan)
    findings = unpack(packed_findings, _FINDING_DTYPE)
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
