"""One row per signed review (``ReviewRow``), as the row functions of the statistics and the
review export read them, and the constants that name the RADPEER scores and edit distances.

Why a module of its own: the exports stream these rows and the reference computations
(``radpeer``, ``distances``) consume them, while the aggregated path never builds them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime

from django.db.models import FloatField, IntegerField, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from reviewer.models import Review

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


REVIEW_ROW_FIELDS = tuple(f.name for f in fields(ReviewRow))


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
