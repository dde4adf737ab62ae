"""Label extractions and the annotators' confirmation queue.

Why the queue is a read: picking what an annotator labels next changes nothing; the choice is
reproducible (a seeded shuffle, or the extractor's least confident reports first) so that the
sample behind an inter-annotator kappa can be drawn again."""

from __future__ import annotations

import random
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet

from reviewer.models import LabelExtraction

ANNOTATED_SOURCES = (LabelExtraction.Source.SIGNED_REPORT, LabelExtraction.Source.HISTORICAL)
MAX_ANNOTATORS = 2  # a report leaves the queue once two annotators labelled it (inter-annotator kappa)
STRATEGIES = ("random", "uncertain")


def label_extractions() -> QuerySet[LabelExtraction]:
    return LabelExtraction.objects.select_related("study", "revision").prefetch_related("confirmations")


def min_confidence(extraction_confidence: dict) -> float:
    """The extractor's lowest per-condition confidence (1.0 when it gave none): how unsure the
    extraction is where it is least sure."""
    values = [float(v) for v in (extraction_confidence or {}).values() if v is not None]
    return min(values) if values else 1.0


def annotation_queue(*, annotator: Any, strategy: str = "uncertain", seed: int = 0, limit: int = 50) -> list[int]:
    """Ids of the extractions this annotator should label next, best first.

    Only signed and historical reports are annotated (draft extractions are compared
    automatically). A report leaves the queue once the annotator labelled it or
    ``MAX_ANNOTATORS`` annotators did. Reports nobody labelled come first; then reports one
    other annotator labelled (they give the inter-annotator agreement). Within each group:
    ``random`` is a shuffle with ``seed`` (reproducible samples), ``uncertain`` orders by the
    extractor's lowest per-condition confidence, least confident first.
    """
    if strategy not in STRATEGIES:
        raise ValidationError({"strategy": f"must be one of {', '.join(STRATEGIES)}"})
    rows = list(
        LabelExtraction.objects.filter(source__in=ANNOTATED_SOURCES)
        .annotate(
            n_conf=Count("confirmations", distinct=True),
            mine=Count("confirmations", filter=Q(confirmations__annotator=annotator), distinct=True),
        )
        .filter(n_conf__lt=MAX_ANNOTATORS, mine=0)
        .order_by("id")
        .values_list("id", "confidence", "n_conf")
    )
    if strategy == "random":
        rng = random.Random(seed)
        order = {pk: rng.random() for pk, _, _ in rows}
        rows.sort(key=lambda r: (r[2], order[r[0]]))
    else:
        rows.sort(key=lambda r: (r[2], min_confidence(r[1]), r[0]))
    return [pk for pk, _, _ in rows[:limit]]
