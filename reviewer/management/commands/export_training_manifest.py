"""Export signed reports, confirmed labels and corrected boxes as a de-identified training
manifest (keyed replacement UIDs, scrubbed report text: see reviewer.deid)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reviewer.research import training


class Command(BaseCommand):
    help = (
        "Write OUT/manifest.jsonl (ml.data.manifest format) and OUT/ground_truth/*.json with the "
        "reader-corrected (else AI) boxes, so corrections flow back into training. Labels are the annotators' "
        "confirmed labels (disagreement -> -1). De-identified: UIDs are keyed replacement UIDs (the same as in "
        "images passed through reviewer.deid.deidentify_dataset), report texts are scrubbed of names, dates and ids."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("out", type=Path, help="output folder (created)")
        parser.add_argument("--include-extracted", action="store_true",
                            help="use the extractor's labels of the signed report where none is confirmed")  # fmt: skip

    def handle(self, *args, out: Path, include_extracted: bool, **options) -> None:
        if out.exists() and not out.is_dir():
            raise CommandError(f"{out} exists and is not a folder")
        s = training.write_training_manifest(out, include_extracted=include_extracted)
        self.stdout.write(
            f"{out / 'manifest.jsonl'}: {s.studies} studies ({s.confirmed_labels} with confirmed labels, "
            f"{s.extracted_labels} with extracted labels; boxes: {s.reader_boxes} reader-corrected, {s.ai_boxes} AI)"
        )
