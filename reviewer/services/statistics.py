"""The statistics rows (``ReviewStatistics``, ``ConfirmationStatistics``) kept in step with the
writes they summarise.

Why: the research statistics read these rows instead of the base tables so that a cold view
costs the same at 100,000 reviews as at 1,000 (see ``reviewer.research.aggregates``). Each write
that changes a figure calls one function here inside its own transaction, so a committed change
and its row are never apart: sign-off (``reports.sign_review``), arbitration
(``workflow.resolve_arbitration``), recomputed edit distances
(``workflow.recompute_edit_distances``), a label extraction (``labels.extract``) and a
confirmation (``labels.confirm_labels``). Deletions follow by cascade. A change made around the
services (a bulk ``UPDATE``, the synthetic ``populate``) needs ``rebuild_statistics`` (``manage.py
rebuild_statistics``), which recomputes every row from the base tables.

A row is recomputed whole from the base tables by one INSERT … SELECT … ON CONFLICT, not
patched, so the incremental rows equal the rebuilt ones by construction (asserted after random
sequences of writes in tests/platform/test_stats_incremental.py). On a database other than
PostgreSQL (the SQLite demo) these are no-ops: the statistics there are computed from the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, models, transaction

from reviewer.models import ConfirmationStatistics, Review, ReviewStatistics, Study
from reviewer.research import aggregates
from reviewer.services.audit import audit


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _upsert(target: type[models.Model], columns: tuple[str, ...], select: str, params: list) -> None:
    key, *rest = columns
    sql = (
        f"INSERT INTO {aggregates.table(target)} ({', '.join(columns)}) {select}"
        f" ON CONFLICT ({key}) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in rest)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@transaction.atomic
def refresh_review_statistics(*, review_ids: Iterable[int]) -> None:
    """Recompute the rows of these reviews (signed ones; others have none). The reviews are
    locked first, so two writers of the same review (an arbitration and a recomputation) take
    turns and the second recomputes from what the first committed."""
    ids = sorted(set(review_ids))
    if not ids or not _postgres():
        return
    list(Review.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    select, params = aggregates.review_rows_sql("r.id = ANY(%s)")
    _upsert(ReviewStatistics, aggregates.REVIEW_COLUMNS, select, [*params, ids])


@transaction.atomic
def refresh_study_statistics(*, study_id: int) -> None:
    """Recompute the rows of a study's signed reviews: a new label extraction of its signed
    report or of its draft changes which labels they compare. The study row is locked as
    ``sign_review`` locks it, so a reader signing at the same time either sees this extraction
    or is seen by it."""
    if not _postgres():
        return
    Study.objects.select_for_update().filter(pk=study_id).first()
    ids = Review.objects.filter(study_id=study_id, signed_at__isnull=False).values_list("pk", flat=True)
    refresh_review_statistics(review_ids=list(ids))


@transaction.atomic
def refresh_confirmation_statistics(*, confirmation_ids: Iterable[int]) -> None:
    """Recompute the rows of these label confirmations (after a confirmation or a correction)."""
    ids = sorted(set(confirmation_ids))
    if not ids or not _postgres():
        return
    select = aggregates.confirmation_rows_sql("c.id = ANY(%s)")
    _upsert(ConfirmationStatistics, ("confirmation_id", "extraction_id", "annotator_id", "packed"), select, [ids])


@transaction.atomic
def rebuild_statistics(*, actor=None) -> dict[str, int]:
    """Recompute every statistics row from the base tables (after changes made around the
    services, or to check the incremental rows). Returns the number of rows of each kind. The
    audit event changes the statistics fingerprint, so no cached figure survives it."""
    if not _postgres():
        return {"reviews": 0, "confirmations": 0}
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # one pass over every review: compiling costs more than it saves
        # fresh statistics of the tables read: after a bulk load of 100,000 reviews without them,
        # the rebuild ran for over 9 minutes (cancelled) instead of seconds
        cursor.execute(f"ANALYZE {', '.join(aggregates.table(m) for m in aggregates.SOURCE_MODELS)}")
        cursor.execute(f"LOCK TABLE {aggregates.table(ReviewStatistics)}, {aggregates.table(ConfirmationStatistics)}")
        cursor.execute(f"DELETE FROM {aggregates.table(ReviewStatistics)}")
        cursor.execute(f"DELETE FROM {aggregates.table(ConfirmationStatistics)}")
    select, params = aggregates.review_rows_sql("true")
    _upsert(ReviewStatistics, aggregates.REVIEW_COLUMNS, select, params)
    _upsert(
        ConfirmationStatistics, ("confirmation_id", "extraction_id", "annotator_id", "packed"),
        aggregates.confirmation_rows_sql("true"), [],
    )  # fmt: skip
    counts = {
        "reviews": ReviewStatistics.objects.count(),
        "confirmations": ConfirmationStatistics.objects.count(),
    }
    audit(actor=actor, action="statistics.rebuilt", obj=None, **counts)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {aggregates.table(ReviewStatistics)}")
    return counts
