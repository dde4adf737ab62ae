"""Write the de-identified research exports: tables (CSV + Parquet), summary.json, plots."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reviewer.research import exports


class Command(BaseCommand):
    help = (
        "Export RADPEER, edit-distance, label-agreement and draft-accuracy statistics (de-identified: "
        "studies and readers as keyed hashes) as CSV/Parquet tables, summary.json and PNG/SVG plots."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("out", type=Path, help="output folder (created)")
        parser.add_argument("--format", action="append", choices=exports.FORMATS, dest="formats",
                            help="table format (repeatable; default: csv and parquet)")  # fmt: skip
        parser.add_argument("--no-plots", action="store_true", help="skip the PNG/SVG plots")

    def handle(self, *args, out: Path, formats: list[str] | None, no_plots: bool, **options) -> None:
        if out.exists() and not out.is_dir():
            raise CommandError(f"{out} exists and is not a folder")
        written = exports.write_exports(
            out, formats=formats or exports.FORMATS, plots=() if no_plots else ("png", "svg")
        )
        for path in written:
            self.stdout.write(f"wrote {path} ({path.stat().st_size} bytes)")
