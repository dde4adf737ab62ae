"""The statistics rows: per signed review and per label confirmation, exactly the numbers the
research statistics read, packed as fixed-width big-endian bytes (PostgreSQL only).

Why they exist: quartiles, rank correlations and AUROCs need every review's value (no counter
gives them), and gathering those values from the base tables at the first view after a change
(JSON keys of the edit distances, the newest label extraction of two reports, 17 findings per
draft) took seconds at 100,000 reviews. A ``ReviewStatistics`` row holds them once, computed by
the write that changes them (``reviewer.services.statistics``, in the same transaction), so a
cold statistics view reads one narrow table with one ``string_agg`` and numpy reads the result
in one call.

This module is the format, shared by the writer (the SQL that fills a row from the base tables)
and the reader (``reviewer.research.stats``: the dtypes and the queries that read the rows); it
imports no other research module, so both sides can import it without a cycle.
"""

from __future__ import annotations

import numpy as np
from django.db import connection, models

from ml.conditions import CONDITION_KEYS
from reviewer.models import (
    Arbitration,
    ConfirmationStatistics,
    Draft,
    DraftJob,
    Finding,
    LabelConfirmation,
    LabelExtraction,
    ModelVersion,
    Review,
    ReviewStatistics,
)

RADPEER_SCORES = ("1", "2a", "2b", "3a", "3b")
DISTANCE_KEYS = ("char_levenshtein_norm", "word_levenshtein_norm", "wer")
MISSING = -2  # a condition the labels do not give (absent key or JSON null)
K = len(CONDITION_KEYS)

# ReviewStatistics.packed: RADPEER index (-1 if none), scope flag, whether the review has a draft
# and both label extractions (it then counts in the draft accuracy), the three normalised edit
# distances (NaN where none), the signed report's and the draft's labels (MISSING where absent)
# and the draft's finding probabilities (NaN where none), in ``CONDITION_KEYS`` order.
REVIEW_DTYPE = np.dtype(
    [("radpeer", ">i2"), ("in_scope", ">i2"), ("labelled", ">i2"), *((k, ">f8") for k in DISTANCE_KEYS),
     ("ref", ">i2", K), ("hyp", ">i2", K), ("prob", ">f8", K)]
)  # fmt: skip
# A confirmation as read: report (extraction id), the annotator's rank among the report's
# annotators (by id), and ConfirmationStatistics.packed: the annotator's and the extractor's labels.
CONFIRMATION_DTYPE = np.dtype(
    [("extraction", ">i8"), ("rank", ">i2"), ("annotator", ">i2", K), ("extractor", ">i2", K)]
)


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def radpeer_code_sql(column: str) -> str:
    """The RADPEER score as its index in ``RADPEER_SCORES`` (-1 for anything else)."""
    whens = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(RADPEER_SCORES))
    return f"CASE {column} {whens} ELSE -1 END"


def labels_vector_sql(alias: str) -> str:
    """The 17 labels of ``alias.labels`` as int2 in condition order, ``MISSING`` where absent."""
    return " || ".join(
        f"int2send(coalesce(({alias}.labels ->> '{k}')::smallint, {MISSING}::smallint))" for k in CONDITION_KEYS
    )


# the tables a statistics row is computed from
SOURCE_MODELS = (Review, Draft, DraftJob, Arbitration, LabelExtraction, Finding, LabelConfirmation)

REVIEW_COLUMNS = (
    "review_id", "reader_id", "model_version_id", "pipeline_version", "in_scope", "radpeer", "arbitration_state",
    "packed",
)  # fmt: skip


def review_rows_sql(where: str) -> tuple[str, list]:
    """SELECT of the ``ReviewStatistics`` columns for the signed reviews matching ``where`` (a
    condition on ``r``, the review), and its parameters. The reference is the newest extraction
    of the signed revision, the prediction the newest extraction of the draft's text on the
    study; the probabilities are the draft's findings."""
    extractions = table(LabelExtraction)
    distances = " || ".join(
        f"float8send(coalesce((r.edit_distance ->> '{k}')::double precision, 'NaN'))" for k in DISTANCE_KEYS
    )
    sql = f"""
        SELECT r.id, r.reader_id, dr.model_version_id, coalesce(j.pipeline_version, ''), r.in_scope, r.radpeer,
               coalesce(a.state, ''),
               int2send(({radpeer_code_sql("r.radpeer")})::smallint) || int2send(r.in_scope::int::smallint)
               || int2send((dr.id IS NOT NULL AND s.id IS NOT NULL AND d.id IS NOT NULL)::int::smallint)
               || {distances} || {labels_vector_sql("s")} || {labels_vector_sql("d")} || p.packed
        FROM {table(Review)} r
             LEFT JOIN {table(Draft)} dr ON dr.id = r.draft_id
             LEFT JOIN {table(DraftJob)} j ON j.id = dr.job_id
             LEFT JOIN {table(Arbitration)} a ON a.review_id = r.id
             LEFT JOIN LATERAL (SELECT id, labels FROM {extractions}
                                WHERE revision_id = r.signed_revision_id AND source = %s
                                ORDER BY id DESC LIMIT 1) s ON true
             LEFT JOIN LATERAL (SELECT id, labels FROM {extractions}
                                WHERE dr.id IS NOT NULL AND study_id = r.study_id AND source = %s
                                      AND report_text = dr.text
                                ORDER BY id DESC LIMIT 1) d ON true
             CROSS JOIN LATERAL (SELECT string_agg(float8send(coalesce(f.probability, 'NaN')), ''::bytea
                                                   ORDER BY k.ord) AS packed
                                 FROM unnest(%s::text[]) WITH ORDINALITY AS k(key, ord)
                                      LEFT JOIN {table(Finding)} f ON f.draft_id = r.draft_id
                                                                   AND f.condition = k.key) p
        WHERE r.signed_at IS NOT NULL AND ({where})"""
    params = [LabelExtraction.Source.SIGNED_REPORT, LabelExtraction.Source.DRAFT, list(CONDITION_KEYS)]
    return sql, params


def confirmation_rows_sql(where: str) -> str:
    """SELECT of the ``ConfirmationStatistics`` columns for the confirmations matching ``where``
    (a condition on ``c``, the confirmation)."""
    return f"""
        SELECT c.id, c.extraction_id, c.annotator_id, {labels_vector_sql("c")} || {labels_vector_sql("e")}
        FROM {table(LabelConfirmation)} c JOIN {table(LabelExtraction)} e ON e.id = c.extraction_id
        WHERE {where}"""


# --- reading -------------------------------------------------------------------------------------


def packed_reviews_sql() -> str:
    """Every review row's packed bytes, in review id order, as one value."""
    return f"SELECT string_agg(packed, ''::bytea ORDER BY review_id) FROM {table(ReviewStatistics)}"


def packed_confirmations_sql() -> str:
    """Every confirmation as ``CONFIRMATION_DTYPE``, ordered by report then annotator, as one value."""
    return f"""
        SELECT string_agg(int8send(extraction_id) || int2send(rn::smallint) || packed, ''::bytea
                          ORDER BY extraction_id, annotator_id)
        FROM (SELECT extraction_id, annotator_id, packed,
                     row_number() OVER (PARTITION BY extraction_id ORDER BY annotator_id) AS rn
              FROM {table(ConfirmationStatistics)}) c"""


def radpeer_groups() -> list[dict]:
    """Signed reviews counted per (reader, model, scope, score, arbitration state) from the
    review rows, keyed like ``stats.radpeer.radpeer_groups_from_tables`` (a few hundred rows however
    many reviews). Counted by model version id first, so only the counts are joined to the model
    versions' names, not every review."""
    sql = f"""
        SELECT s.reader_id, m.name, m.version, s.pipeline_version, s.in_scope, s.radpeer, s.arbitration_state, s.n
        FROM (SELECT reader_id, model_version_id, pipeline_version, in_scope, radpeer, arbitration_state,
                     count(*) AS n
              FROM {table(ReviewStatistics)} GROUP BY 1, 2, 3, 4, 5, 6) s
             LEFT JOIN {table(ModelVersion)} m ON m.id = s.model_version_id"""
    keys = (
        "reader_id", "draft__model_version__name", "draft__model_version__version", "draft__job__pipeline_version",
        "in_scope", "radpeer", "arbitration__state", "n",
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]
