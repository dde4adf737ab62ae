"""Recompute the stored draft -> signed edit distances of signed reviews."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from reviewer.services import workflow


class Command(BaseCommand):
    help = "Recompute edit distances (whole report and per section) of all signed reviews, or of --review IDs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--review", type=int, action="append", dest="reviews", help="review id (repeatable)")

    def handle(self, *args, reviews: list[int] | None, **options) -> None:
        n = workflow.recompute_edit_distances(review_ids=reviews)
        self.stdout.write(f"recomputed {n} review(s)")
