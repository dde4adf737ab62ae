"""Research statistics: RADPEER, edit distances, label agreement, per-condition draft accuracy.

Reads only (no writes); every function loads what it needs in a fixed, small number of
queries (values lists, JSON keys extracted by the database), so the statistics page stays
fast with tens of thousands of reviews. Definitions (also in docs/workflow.md):

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
from collections.abc import Iterable
from dataclasses import dataclass, fields

from django.db import connection
from django.db.models import FloatField, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from ml.conditions import CONDITION_KEYS
from reviewer.metrics import auroc, cohen_kappa, sensitivity_specificity
from reviewer.models import Finding, LabelConfirmation, LabelExtraction, Review

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
    signed_at: object
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
    rows = []
    for v in values:
        model = f"{v[5]}@{v[6]}" if v[5] else (v[7] or "")
        rows.append(ReviewRow(v[0], v[1], v[2], v[3], v[4], model, *v[8:-1], patient_id=v[-1] or ""))
    return rows


def _rate(count: int, n: int) -> float | None:
    return count / n if n else None


def radpeer_summary(rows: Iterable[ReviewRow]) -> dict:
    """Distribution, discrepancy rate (≥ 2) and clinically significant rate (2b + 3b)."""
    rows = list(rows)
    counts = Counter(r.radpeer for r in rows)
    n = len(rows)
    return {
        "n": n,
        "counts": {s: counts.get(s, 0) for s in RADPEER_SCORES},
        "share": {s: _rate(counts.get(s, 0), n) for s in RADPEER_SCORES},
        "discrepancy_rate": _rate(sum(counts[s] for s in DISCREPANT), n),
        "significant_rate": _rate(sum(counts[s] for s in SIGNIFICANT), n),
        "arbitrations_open": sum(1 for r in rows if r.arbitration_state == "open"),
        "arbitrations_resolved": sum(1 for r in rows if r.arbitration_state == "resolved"),
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
    """Per condition: extractor vs annotator (accuracy, kappa) and inter-annotator kappa. Two
    queries."""
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
SORTED_KEYS = sorted(CONDITION_KEYS)
SORTED_COLUMNS = [CONDITION_KEYS.index(k) for k in SORTED_KEYS]


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


def draft_accuracy(scopes: tuple[str, ...] = ("all", "in_scope", "out_of_scope")) -> list[dict]:
    """Per condition and scope: sensitivity, specificity (draft labels vs signed-report labels)
    and AUROC of the draft's finding probability against the signed-report label. Two queries;
    the counting is vectorised (numpy) so that 10,000 reviews x 17 conditions stay cheap."""
    import numpy as np

    pairs = draft_label_pairs()
    keys = CONDITION_KEYS
    n = len(pairs)
    row_of = {p[0]: i for i, p in enumerate(pairs)}
    ref = np.array([_label_vector(p[2]) for p in pairs], dtype=np.int8).reshape(n, len(keys))  # (n, 17)
    hyp = np.array([_label_vector(p[3]) for p in pairs], dtype=np.int8).reshape(n, len(keys))  # (n, 17)
    in_scope = np.array([bool(p[1]) for p in pairs], dtype=bool)  # (n,)
    prob = np.full((n, len(keys)), np.nan)  # (n, 17)
    if n:
        column = {k: j for j, k in enumerate(keys)}
        drafts = signed_reviews().filter(draft__isnull=False).values("draft_id")
        for draft_id, conditions, probabilities in _findings_per_draft(drafts):
            i = row_of.get(draft_id)
            if i is None:
                continue
            if len(conditions) == len(keys) and conditions == SORTED_KEYS:  # the usual case: all 17 findings
                prob[i, SORTED_COLUMNS] = probabilities
                continue
            for condition, p in zip(conditions, probabilities, strict=True):
                if condition in column:
                    prob[i, column[condition]] = p
    out = []
    for scope in scopes:
        chosen = np.ones(n, dtype=bool) if scope == "all" else (in_scope == (scope == "in_scope"))
        for j, key in enumerate(keys):
            definite_ref = chosen & ((ref[:, j] == 0) | (ref[:, j] == 1))
            both = definite_ref & ((hyp[:, j] == 0) | (hyp[:, j] == 1))
            counts = sensitivity_specificity(ref[both, j], hyp[both, j])
            with_prob = definite_ref & ~np.isnan(prob[:, j])
            m = int(both.sum())
            out.append(
                {
                    "condition": key,
                    "scope": scope,
                    "n": m,
                    "prevalence": float((ref[both, j] == 1).mean()) if m else None,
                    **counts,
                    "auroc": auroc(ref[with_prob, j], prob[with_prob, j]),
                    "n_auroc": int(with_prob.sum()),
                }
            )
    return out


def label_fingerprint() -> tuple:
    """Changes whenever the label tables could change: signed reviews (count, last update),
    extractions (count, last id), confirmations (count, last label audit event — a corrected
    confirmation keeps its row but logs an event). Three aggregate queries."""
    from django.db.models import Count, Max

    from reviewer.models import AuditEvent

    reviews = signed_reviews().aggregate(n=Count("id"), t=Max("updated_at"))
    extractions = LabelExtraction.objects.aggregate(n=Count("id"), last=Max("id"))
    confirmations = AuditEvent.objects.filter(action__startswith="labels.").aggregate(last=Max("id"))
    return (reviews["n"], str(reviews["t"]), extractions["n"], extractions["last"], confirmations["last"])


LABEL_CACHE_SECONDS = 3600


def cached_label_tables() -> tuple[list[dict], list[dict]]:
    """(label_agreement, draft_accuracy), cached under ``label_fingerprint`` so that repeated
    page views do not redo the per-condition work over every review; a new signature,
    extraction or confirmation changes the key, so the cache is never stale."""
    import hashlib

    from django.core.cache import cache

    digest = hashlib.sha256(repr(label_fingerprint()).encode()).hexdigest()[:32]
    key = f"spinereview:stats:labels:{digest}"
    found = cache.get(key)
    if found is None:
        found = (label_agreement(), draft_accuracy())
        cache.set(key, found, LABEL_CACHE_SECONDS)
    return found


def overview(*, rows: list[ReviewRow] | None = None, cached: bool = True) -> dict:
    """Everything the statistics page shows."""
    rows = review_rows() if rows is None else rows
    agreement, accuracy = cached_label_tables() if cached else (label_agreement(), draft_accuracy())
    return {
        "radpeer": radpeer_summary(rows),
        "radpeer_by_reader": radpeer_by(rows, "reader"),
        "radpeer_by_model": radpeer_by(rows, "model_version"),
        "radpeer_by_scope": {
            ("in_scope" if k == "True" else "out_of_scope"): v for k, v in radpeer_by(rows, "in_scope").items()
        },
        "edit_distance": edit_distance_by_radpeer(rows),
        "spearman_word_norm": spearman_radpeer_vs_distance(rows),
        "label_agreement": agreement,
        "draft_accuracy": accuracy,
    }


REVIEW_ROW_FIELDS = tuple(f.name for f in fields(ReviewRow))
