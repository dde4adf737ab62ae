"""Recompute every statistics row (``ReviewStatistics``, ``ConfirmationStatistics``) from the
base tables."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from reviewer.services.statistics import rebuild_statistics


class Command(BaseCommand):
    help = (
        "Recompute the statistics rows from reviews, label extractions, findings and confirmations: after "
        "changes made around the services (bulk updates, imports), or to check the incremental rows."
    )

    def handle(self, *args, **options) -> None:
        t0 = time.perf_counter()
        counts = rebuild_statistics()
        self.stdout.write(
            f"{counts['reviews']} review rows, {counts['confirmations']} confirmation rows"
            f" in {time.perf_counter() - t0:.1f} s"
        )
