"""Import historical reports and run the label-extraction agent on them."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from reviewer.services import labels

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Extract the 17 ternary labels from historical reports: a folder of .txt files (one report per "
        "file, recursive) or a CSV with a 'report' (or 'text') column and an optional 'study_uid' column. "
        "Re-importing the same text is a no-op; a bad report is reported and the batch goes on."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)

    def handle(self, *args, path: Path, **options) -> None:
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        try:
            reports = list(labels.read_reports(path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        created = existing = 0
        rejected: list[tuple[str, str]] = []
        start = time.monotonic()
        for report in tqdm(reports, desc="reports", unit="report", disable=len(reports) < 20):
            try:
                _, new = labels.import_report(report)
            except (ValidationError, ValueError) as exc:
                rejected.append((report.key, "; ".join(getattr(exc, "messages", [str(exc)]))))
                continue
            created += new
            existing += not new
        seconds = time.monotonic() - start
        for key, reason in rejected:
            self.stderr.write(f"REJECTED {key}: {reason}")
        self.stdout.write(
            f"{created} extracted, {existing} already extracted, {len(rejected)} rejected "
            f"({len(reports) / seconds if seconds else 0:.1f} reports/s)"
        )
