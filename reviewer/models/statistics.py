"""Rows kept for the research statistics (``reviewer.services.statistics``), one per signed review
and per label confirmation."""

from __future__ import annotations

from django.db import models

from reviewer.models.labels import LabelConfirmation
from reviewer.models.workflow import Review


class ReviewStatistics(models.Model):
    """Per signed review, the numbers the research statistics read, so that a cold statistics
    view reads one narrow table instead of joining reviews, drafts, label extractions and findings
    (seconds at 100,000 reviews). Written only by ``reviewer.services.statistics`` in the same
    transaction as the change (sign-off, arbitration, label extraction, recomputed distances);
    ``manage.py rebuild_statistics`` recomputes every row. ``packed``: see
    ``reviewer.research.aggregates.REVIEW_DTYPE``. The model version's name is joined at read
    time, so a renamed version needs no rewrite."""

    review = models.OneToOneField(Review, primary_key=True, related_name="+", on_delete=models.CASCADE)
    reader_id = models.BigIntegerField()
    model_version_id = models.BigIntegerField(null=True)
    pipeline_version = models.CharField(max_length=100, blank=True)
    in_scope = models.BooleanField()
    radpeer = models.CharField(max_length=2, blank=True)
    arbitration_state = models.CharField(max_length=10, blank=True)  # "" without arbitration
    packed = models.BinaryField()


class ConfirmationStatistics(models.Model):
    """Per label confirmation, the annotator's and the extractor's labels as two vectors
    (``reviewer.research.aggregates.CONFIRMATION_DTYPE``), for the label agreement; kept like
    ``ReviewStatistics``."""

    confirmation = models.OneToOneField(LabelConfirmation, primary_key=True, related_name="+", on_delete=models.CASCADE)
    extraction_id = models.BigIntegerField()
    annotator_id = models.BigIntegerField()
    packed = models.BinaryField()
