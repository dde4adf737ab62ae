"""The statistics bundle: every figure of the statistics page, ``/api/stats/`` and the plots,
computed once per change of the data and cached under a fingerprint of everything it depends on.

On PostgreSQL from the statistics rows the services keep (``reviewer.research.aggregates``); on
SQLite by the row functions; ``_compute_bundle_from_tables`` computes the same from the base
tables (what the statistics rows must reproduce, asserted in the tests)."""

from __future__ import annotations

import operator
from collections.abc import Iterable

from django.db import connection

from reviewer.models import Finding, LabelExtraction, Review
from reviewer.research import aggregates
from reviewer.research.stats.accuracy import SCOPES, accuracy_table, draft_accuracy, draft_from_packed, draft_sql
from reviewer.research.stats.agreement import agreement_from_packed, label_agreement
from reviewer.research.stats.db import fetch_one, fetch_packed, table, unpack, without_jit
from reviewer.research.stats.distances import (
    DISTANCE_DTYPE,
    distance_sql,
    distance_tables,
    edit_distance_by_radpeer,
    plot_data_from_rows,
    spearman_radpeer_vs_distance,
)
from reviewer.research.stats.radpeer import (
    model_key,
    radpeer_by,
    radpeer_by_value,
    radpeer_groups_from_tables,
    radpeer_summary,
    scope_summaries,
    summaries,
    summary_of,
)
from reviewer.research.stats.rows import ReviewRow, review_rows

CACHE_SECONDS = 3600


def stats_fingerprint() -> tuple:
    """Changes whenever a figure of ``overview`` could, and costs index lookups only (no count
    over the large tables: at 100,000 reviews those took 0.7 s): the last id of reviews, label
    extractions, confirmations and findings (new rows), the arbitrations (a small table: count,
    resolved, last resolution), model versions (id, name, version), and the last audit event of a
    change that keeps the ids (a signature, an arbitration, a corrected confirmation, recomputed
    edit distances). A deletion alone (a study removed) is seen at the next change or after
    ``CACHE_SECONDS``. One query on PostgreSQL."""
    from reviewer.models import Arbitration, AuditEvent, LabelConfirmation, ModelVersion

    arbitration = table(Arbitration)
    audited = "action = 'review.signed' OR action LIKE 'labels.%%' OR action LIKE 'arbitration.%%'"
    audited += " OR action = 'edit_distance.recomputed' OR action = 'statistics.rebuilt'"
    sql = f"""SELECT
        (SELECT max(id) FROM {table(Review)}),
        (SELECT max(id) FROM {table(LabelExtraction)}),
        (SELECT max(id) FROM {table(LabelConfirmation)}),
        (SELECT max(id) FROM {table(Finding)}),
        (SELECT count(*) FROM {arbitration}),
        (SELECT count(*) FROM {arbitration} WHERE state = 'resolved'),
        (SELECT max(resolved_at) FROM {arbitration}),
        (SELECT id FROM {table(AuditEvent)} WHERE {audited} ORDER BY id DESC LIMIT 1)"""
    if connection.vendor == "postgresql":
        sql += (
            f",\n(SELECT string_agg(id || ':' || name || '@' || version, ',' ORDER BY id) FROM {table(ModelVersion)})"
        )
        return tuple(str(v) for v in fetch_one(sql))
    found = tuple(str(v) for v in fetch_one(sql))
    return found + tuple(ModelVersion.objects.order_by("id").values_list("id", "name", "version"))


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


def _compute_bundle() -> dict:
    """Every figure of the statistics page, the API and the plots, keyed by reader id (names and
    pseudonyms are applied per request). On PostgreSQL from the statistics rows that the
    services keep (``reviewer.research.aggregates``): two queries over narrow tables, whatever
    the number of reviews; elsewhere from the review rows."""
    if connection.vendor != "postgresql":
        return _bundle_from_rows(review_rows())
    with without_jit():
        groups = aggregates.radpeer_groups()
        reviews, confirmations = fetch_packed(
            f"SELECT ({aggregates.packed_reviews_sql()}), ({aggregates.packed_confirmations_sql()})"
        )
    rows = unpack(reviews, aggregates.REVIEW_DTYPE)
    edit, rho, plot_data = distance_tables(rows)
    is_labelled = rows["labelled"] == 1
    labelled = rows if is_labelled.all() else rows[is_labelled]  # no copy of 23 MB where all count
    # the packed fields as they are (big-endian views): accuracy_table converts them in one pass
    accuracy = accuracy_table(labelled["ref"], labelled["hyp"], labelled["in_scope"] != 0, labelled["prob"], SCOPES)
    return _bundle(groups, edit, rho, agreement_from_packed(confirmations), accuracy, plot_data)


def _bundle(groups: list[dict], edit: dict, rho: float | None, agreement: list, accuracy: list, plot: dict) -> dict:
    return {
        "radpeer": summary_of(groups),
        "by_reader_id": summaries(groups, operator.itemgetter("reader_id")),
        "by_model": summaries(groups, model_key),
        "by_scope": scope_summaries(summaries(groups, operator.itemgetter("in_scope"))),
        "edit_distance": edit,
        "spearman_word_norm": rho,
        "label_agreement": agreement,
        "draft_accuracy": accuracy,
        "plot": plot,
    }


def _compute_bundle_from_tables() -> dict:
    """``_compute_bundle`` from the base tables (PostgreSQL): what the statistics rows must
    reproduce, and the cost they save (seconds at 100,000 reviews)."""
    reviews_sql, findings_sql, params = draft_sql()
    with without_jit():
        groups = radpeer_groups_from_tables()
        distances, reviews, findings = fetch_packed(
            f"SELECT ({distance_sql()}), ({reviews_sql}), ({findings_sql})", params
        )
        agreement = label_agreement()
    edit, rho, plot_data = distance_tables(unpack(distances, DISTANCE_DTYPE))
    accuracy = accuracy_table(*draft_from_packed(reviews, findings), SCOPES)
    return _bundle(groups, edit, rho, agreement, accuracy, plot_data)


def _bundle_from_rows(rows: list[ReviewRow]) -> dict:
    """``_compute_bundle`` by the row functions (SQLite, and ``overview(rows=...)``)."""
    return {
        "radpeer": radpeer_summary(rows),
        "by_reader_id": radpeer_by_value(rows, "reader_id"),
        "by_model": radpeer_by(rows, "model_version"),
        "by_scope": scope_summaries(radpeer_by(rows, "in_scope")),
        "edit_distance": edit_distance_by_radpeer(rows),
        "spearman_word_norm": spearman_radpeer_vs_distance(rows),
        "label_agreement": label_agreement(),
        "draft_accuracy": draft_accuracy(),
        "plot": plot_data_from_rows(rows),
    }
