"""``python manage.py import_dicom PATH...``: files, folders and zip archives into Orthanc."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from reviewer.integrations.ingest import ImportResult, import_paths
from reviewer.integrations.orthanc import OrthancUnavailable, orthanc, ping


class Command(BaseCommand):
    help = "Import DICOM files, folders or zip archives into Orthanc (corrupt files are reported, not fatal)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--workers", type=int, default=4, help="concurrent uploads (default 4)")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, paths: list[str], workers: int, quiet: bool, **options) -> None:
        try:
            ping()
        except OrthancUnavailable as exc:
            raise CommandError(str(exc)) from exc
        bar = tqdm(unit="file", disable=quiet, file=sys.stderr, desc="import")
        rejected: list[ImportResult] = []

        def on_result(result: ImportResult) -> None:
            bar.update()
            if result.status == "rejected":
                rejected.append(result)
                bar.write(f"REJECTED {result.source}: {result.reason}", file=sys.stderr)

        summary = import_paths(paths, client=orthanc(), workers=workers, on_result=on_result)
        bar.close()
        c = summary.counts
        self.stdout.write(
            f"{len(summary.results)} files in {summary.seconds:.1f} s ({summary.rate:.1f} files/s): "
            f"{c['stored']} stored, {c['already_stored']} already stored, {c['rejected']} rejected"
        )
        if rejected and len(rejected) == len(summary.results):
            raise CommandError("nothing could be imported")
